"""SM2 (GB/T 32918) over the recommended 256-bit curve: keys, encryption, signatures.

``cryptography`` provides SM3 and SM4 but cannot hold SM2 keys, and the popular ``gmssl``
package (3.2.x, ``sm2.py``) draws its ephemeral scalar from ``random`` (sources in
docs/FIDELITY.md#wrapped-key-material). This module is the small remainder, written against
the standard and proven against OpenSSL 3 in the tests:

* every random scalar comes from ``secrets`` (the OS CSPRNG);
* ciphertexts are C1C3C2 raw (``04 || x1 || y1 || C3 || C2``), the form Alibaba Cloud KMS uses,
  with converters to and from OpenSSL's DER ``SM2Ciphertext``;
* decryption checks that C1 is on the curve and checks C3 in constant time, and any failure is
  one opaque ``Sm2Error``.

Scalar multiplication is a Montgomery ladder over a scalar padded to a fixed 257 bits (k + N or
k + 2N), starting at (P, 2P), so the sequence of group operations and the time do not depend on
the scalar's bit length. Python integers are not constant-time, so this is a
best effort against timing: acceptable for one-off wrapping on a batch host, not a claim of
side-channel resistance.
"""

from __future__ import annotations

import hmac
import secrets

from cryptography.hazmat.primitives import hashes

from . import der

P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_SM2_CURVE = "1.2.156.10197.1.301"
DEFAULT_USER_ID = b"1234567812345678"

_INF = (0, 1, 0)  # Jacobian point at infinity


class Sm2Error(ValueError):
    """An SM2 operation failed. Deliberately says nothing about the inputs."""


def sm3(*parts: bytes | bytearray | memoryview) -> bytes:
    h = hashes.Hash(hashes.SM3())
    for part in parts:
        h.update(bytes(part))
    return h.finalize()


# ---- field and group arithmetic ------------------------------------------------------------


def _double(pt: tuple[int, int, int]) -> tuple[int, int, int]:
    x, y, z = pt
    if z == 0 or y == 0:
        return _INF
    # dbl-2001-b, valid because a = -3 mod p.
    delta = z * z % P
    gamma = y * y % P
    beta = x * gamma % P
    alpha = 3 * (x - delta) * (x + delta) % P
    x3 = (alpha * alpha - 8 * beta) % P
    z3 = ((y + z) ** 2 - gamma - delta) % P
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % P
    return x3, y3, z3


def _add(p1: tuple[int, int, int], p2: tuple[int, int, int]) -> tuple[int, int, int]:
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    if z1 == 0:
        return p2
    if z2 == 0:
        return p1
    z1z1 = z1 * z1 % P
    z2z2 = z2 * z2 % P
    u1 = x1 * z2z2 % P
    u2 = x2 * z1z1 % P
    s1 = y1 * z2 * z2z2 % P
    s2 = y2 * z1 * z1z1 % P
    if u1 == u2:
        return _double(p1) if s1 == s2 else _INF
    h = (u2 - u1) % P
    r = (s2 - s1) % P
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - s1 * hhh) % P
    z3 = h * z1 * z2 % P
    return x3, y3, z3


def _affine(pt: tuple[int, int, int]) -> tuple[int, int] | None:
    x, y, z = pt
    if z == 0:
        return None
    zinv = pow(z, -1, P)
    zinv2 = zinv * zinv % P
    return x * zinv2 % P, y * zinv2 * zinv % P


def _mul(k: int, point: tuple[int, int]) -> tuple[int, int] | None:
    """k * point by a fixed-length Montgomery ladder; ``None`` is the point at infinity.

    A ladder that starts at infinity skips work while the scalar's leading bits are zero (adding
    or doubling infinity returns at once), so its time tracks the scalar's bit length. Here the
    scalar is first made exactly 257 bits long by adding the group order once or twice (every
    point on the curve has order N, so k + N and k + 2N give the same point), and the ladder
    starts at (P, 2P) for that top bit: 256 rounds, each one addition and one doubling of
    points that are not infinity, whatever the scalar.
    """
    k %= N
    k += N
    if k >> 256 == 0:
        k += N
    r0: tuple[int, int, int] = (point[0], point[1], 1)
    r1: tuple[int, int, int] = _double(r0)
    for i in range(255, -1, -1):
        if (k >> i) & 1:
            r0, r1 = _add(r0, r1), _double(r1)
        else:
            r0, r1 = _double(r0), _add(r0, r1)
    return _affine(r0)


def _mul_add(k1: int, p1: tuple[int, int], k2: int, p2: tuple[int, int]) -> tuple[int, int] | None:
    """k1*p1 + k2*p2 for signature verification (public values only)."""
    a = _mul(k1, p1)
    b = _mul(k2, p2)
    if a is None:
        return b
    if b is None:
        return a
    return _affine(_add((a[0], a[1], 1), (b[0], b[1], 1)))


def on_curve(x: int, y: int) -> bool:
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x + A * x + B)) % P == 0


def _b32(n: int) -> bytes:
    return n.to_bytes(32, "big")


# ---- keys ----------------------------------------------------------------------------------


class Sm2PublicKey:
    """An SM2 public point."""

    __slots__ = ("x", "y")

    def __init__(self, x: int, y: int) -> None:
        if not on_curve(x, y):
            raise Sm2Error("point is not on the SM2 curve")
        self.x = x
        self.y = y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sm2PublicKey) and (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))

    def __repr__(self) -> str:
        return f"Sm2PublicKey(x={self.x:064x})"

    def point_bytes(self) -> bytes:
        """Uncompressed SEC1 point ``04 || X || Y``."""
        return b"\x04" + _b32(self.x) + _b32(self.y)

    @classmethod
    def from_point_bytes(cls, data: bytes | bytearray | memoryview) -> Sm2PublicKey:
        data = bytes(data)
        if len(data) != 65 or data[0] != 4:
            raise Sm2Error("SM2 public point must be 65 bytes, uncompressed (04 || X || Y)")
        return cls(int.from_bytes(data[1:33], "big"), int.from_bytes(data[33:], "big"))

    def spki_der(self) -> bytes:
        """DER SubjectPublicKeyInfo, as OpenSSL and KMS write an SM2 key."""
        return der.sequence(
            der.sequence(der.oid(OID_EC_PUBLIC_KEY), der.oid(OID_SM2_CURVE)),
            der.bit_string(self.point_bytes()),
        )

    @classmethod
    def from_spki_der(cls, data: bytes | bytearray | memoryview) -> Sm2PublicKey:
        try:
            alg, bits = der.read(data, der.SEQUENCE).children()
            oids = [der.as_oid(t) for t in der.expect(alg, der.SEQUENCE).children()]
            point = der.as_bit_string(bits)
        except (der.DerError, ValueError) as exc:
            raise Sm2Error("not a DER SubjectPublicKeyInfo") from exc
        if oids != [OID_EC_PUBLIC_KEY, OID_SM2_CURVE]:
            raise Sm2Error("SubjectPublicKeyInfo does not hold an SM2 key")
        return cls.from_point_bytes(point)


def is_sm2_spki(data: bytes | bytearray | memoryview) -> bool:
    """True when ``data`` is a SubjectPublicKeyInfo naming the SM2 curve (no other checks)."""
    try:
        alg = der.read(data, der.SEQUENCE).children()[0]
        oids = [der.as_oid(t) for t in der.expect(alg, der.SEQUENCE).children()]
    except (der.DerError, ValueError, IndexError):
        return False
    return oids == [OID_EC_PUBLIC_KEY, OID_SM2_CURVE]


class Sm2PrivateKey:
    """An SM2 private scalar. Its repr never shows the scalar.

    Python integers cannot be wiped; callers keep the encoded scalar in a ``bytearray`` they
    wipe (see ``material.PrivateKeyMaterial``) and let this object go out of scope quickly.
    """

    __slots__ = ("_d", "_public")

    def __init__(self, d: int) -> None:
        # GB/T 32918.1: d in [1, n-2], so that 1 + d is invertible mod n.
        if not 1 <= d <= N - 2:
            raise Sm2Error("SM2 private scalar out of range [1, n-2]")
        self._d = d
        pub = _mul(d, (GX, GY))
        assert pub is not None  # d < n, so d*G is never the point at infinity
        self._public = Sm2PublicKey(*pub)

    @classmethod
    def generate(cls) -> Sm2PrivateKey:
        return cls(secrets.randbelow(N - 2) + 1)

    @classmethod
    def from_bytes(cls, d: bytes | bytearray | memoryview) -> Sm2PrivateKey:
        if len(d) != 32:
            raise Sm2Error("SM2 private scalar must be 32 bytes")
        return cls(int.from_bytes(d, "big"))

    def scalar_bytes(self) -> bytearray:
        """The 32-byte big-endian scalar D, in a buffer the caller wipes."""
        return bytearray(_b32(self._d))

    def public_key(self) -> Sm2PublicKey:
        return self._public

    def __repr__(self) -> str:
        return "Sm2PrivateKey([SENSITIVE])"

    __str__ = __repr__

    def __reduce__(self):  # pragma: no cover - pickling a private key is a bug
        raise TypeError("Sm2PrivateKey cannot be pickled")

    # -- decryption and signing --

    def decrypt(self, ciphertext: bytes | bytearray | memoryview) -> bytearray:
        """Decrypt C1C3C2 raw ciphertext; raise ``Sm2Error`` on any failure."""
        ct = bytes(ciphertext)
        if len(ct) < 65 + 32 + 1:
            raise Sm2Error("SM2 decryption failed")
        try:
            c1 = Sm2PublicKey.from_point_bytes(ct[:65])
        except Sm2Error:
            raise Sm2Error("SM2 decryption failed") from None
        c3, c2 = ct[65:97], ct[97:]
        shared = _mul(self._d, (c1.x, c1.y))
        if shared is None:
            raise Sm2Error("SM2 decryption failed")
        x2, y2 = _b32(shared[0]), _b32(shared[1])
        t = _kdf(x2 + y2, len(c2))
        if not any(t):
            raise Sm2Error("SM2 decryption failed")
        msg = bytearray(a ^ b for a, b in zip(c2, t, strict=True))
        if not hmac.compare_digest(sm3(x2, msg, y2), c3):
            _wipe(msg)
            raise Sm2Error("SM2 decryption failed")
        return msg

    def sign_digest(self, e: bytes) -> tuple[int, int]:
        """Sign a 32-byte digest ``e = SM3(Z_A || M)``; return ``(r, s)``."""
        ei = int.from_bytes(e, "big")
        while True:
            k = secrets.randbelow(N - 1) + 1
            pt = _mul(k, (GX, GY))
            assert pt is not None
            r = (ei + pt[0]) % N
            if r == 0 or r + k == N:
                continue
            s = pow(1 + self._d, -1, N) * (k - r * self._d) % N
            if s:
                return r, s


def _wipe(buf: bytearray) -> None:
    for i in range(len(buf)):
        buf[i] = 0


def _kdf(z: bytes, klen: int) -> bytes:
    out = bytearray()
    counter = 1
    while len(out) < klen:
        out += sm3(z, counter.to_bytes(4, "big"))
        counter += 1
    return bytes(out[:klen])


def encrypt(public_key: Sm2PublicKey, message: bytes | bytearray | memoryview) -> bytes:
    """SM2 public-key encryption; returns C1C3C2 raw: ``04 || x1 || y1 || C3 || C2``.

    The ephemeral scalar k comes from ``secrets`` and is dropped on return.
    """
    msg = bytes(message)
    if not msg:
        raise Sm2Error("SM2 cannot encrypt an empty message")
    while True:
        k = secrets.randbelow(N - 1) + 1
        c1 = _mul(k, (GX, GY))
        shared = _mul(k, (public_key.x, public_key.y))
        if c1 is None or shared is None:  # pragma: no cover - impossible for k in [1, n-1]
            continue
        x2, y2 = _b32(shared[0]), _b32(shared[1])
        t = _kdf(x2 + y2, len(msg))
        if any(t):
            break
    c2 = bytes(a ^ b for a, b in zip(msg, t, strict=True))
    c3 = sm3(x2, msg, y2)
    return b"\x04" + _b32(c1[0]) + _b32(c1[1]) + c3 + c2


def user_digest(
    public_key: Sm2PublicKey, message: bytes, user_id: bytes = DEFAULT_USER_ID
) -> bytes:
    """``e = SM3(Z_A || M)`` with ``Z_A`` over the user id and public key (GB/T 32918.2)."""
    entl = (len(user_id) * 8).to_bytes(2, "big")
    za = sm3(
        entl, user_id, _b32(A), _b32(B), _b32(GX), _b32(GY), _b32(public_key.x), _b32(public_key.y)
    )
    return sm3(za, message)


def verify_digest(public_key: Sm2PublicKey, e: bytes, r: int, s: int) -> None:
    """Verify ``(r, s)`` over digest ``e``; raise ``Sm2Error`` when it does not verify."""
    if not (1 <= r < N and 1 <= s < N):
        raise Sm2Error("SM2 signature does not verify")
    t = (r + s) % N
    if t == 0:
        raise Sm2Error("SM2 signature does not verify")
    pt = _mul_add(s, (GX, GY), t, (public_key.x, public_key.y))
    if pt is None or (int.from_bytes(e, "big") + pt[0]) % N != r:
        raise Sm2Error("SM2 signature does not verify")


def signature_der(r: int, s: int) -> bytes:
    return der.sequence(der.integer(r), der.integer(s))


def signature_from_der(sig: bytes) -> tuple[int, int]:
    try:
        r, s = der.read(sig, der.SEQUENCE).children()
        return der.as_int(r), der.as_int(s)
    except (der.DerError, ValueError) as exc:
        raise Sm2Error("malformed SM2 signature") from exc


# ---- OpenSSL interop: C1C3C2 raw <-> DER SM2Ciphertext --------------------------------------


def ciphertext_to_der(raw: bytes) -> bytes:
    """``04||x1||y1||C3||C2`` -> DER ``SEQUENCE {x1 INTEGER, y1 INTEGER, C3, C2}`` (OpenSSL)."""
    if len(raw) < 98 or raw[0] != 4:
        raise Sm2Error("not a raw C1C3C2 SM2 ciphertext")
    x1 = int.from_bytes(raw[1:33], "big")
    y1 = int.from_bytes(raw[33:65], "big")
    return der.sequence(
        der.integer(x1), der.integer(y1), der.octet_string(raw[65:97]), der.octet_string(raw[97:])
    )


def ciphertext_from_der(data: bytes) -> bytes:
    """OpenSSL's DER ``SM2Ciphertext`` -> raw ``04||x1||y1||C3||C2``."""
    try:
        x, y, c3, c2 = der.read(data, der.SEQUENCE).children()
        x1, y1 = der.as_int(x), der.as_int(y)
        c3b = bytes(der.expect(c3, der.OCTET_STRING).value)
        c2b = bytes(der.expect(c2, der.OCTET_STRING).value)
    except (der.DerError, ValueError) as exc:
        raise Sm2Error("not a DER SM2 ciphertext") from exc
    if not (0 <= x1 < P and 0 <= y1 < P) or len(c3b) != 32:
        raise Sm2Error("not a DER SM2 ciphertext")
    return b"\x04" + _b32(x1) + _b32(y1) + c3b + c2b

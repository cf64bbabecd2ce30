"""The emulator's own SM2 (GB/T 32918), written apart from the agent's.

aliyun-local signs, verifies, encrypts and decrypts for its SM2 keys and opens the SM2PKE
envelope of imported material with this module, never with ``byok_keeper``: a bug in one SM2
then fails every SM2 canary and import instead of cancelling out (tests/unit/test_emulator_sm2.py
checks the two against each other and against OpenSSL).

* The curve: sm2p256v1, the parameters GB/T 32918.5 recommends.
* Arithmetic: homogeneous projective coordinates and a fixed 4-bit window (the agent uses
  another form). An emulator's: not constant-time.
* SM3: ``hashlib``'s ``sm3`` where the OpenSSL below Python has it, else ``cryptography``'s.
* Signatures (GB/T 32918.2): the caller gives ``e = SM3(Z_A || M)``, as KMS's SM2DSA digest is;
  ``user_digest`` computes it with ``Z_A`` over the default ID ``1234567812345678``.
* Encryption (GB/T 32918.4): raw ``C1 || C3 || C2`` with an uncompressed C1; KMS's
  AsymmetricEncrypt answers the DER form of GM/T 0009 (``ciphertext_to_der``).

Errors are ``Sm2Error`` (a ``ValueError``) with a reason that never quotes the input.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cryptography.hazmat.primitives import hashes

P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = P - 3
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
G = (
    0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
)
DEFAULT_ID = b"1234567812345678"
# DER SubjectPublicKeyInfo of an SM2 key up to the 65-byte point: SEQUENCE { SEQUENCE {
# id-ecPublicKey 1.2.840.10045.2.1, sm2p256v1 1.2.156.10197.1.301 }, BIT STRING (0 unused) }.
SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")

Point = tuple[int, int]


class Sm2Error(ValueError):
    """An SM2 input or operation was refused; the reason never quotes the input."""


# ---- SM3 and the KDF ---------------------------------------------------------------------------

SM3_SOURCE = "hashlib" if "sm3" in hashlib.algorithms_available else "cryptography"


def sm3(data: bytes) -> bytes:
    if SM3_SOURCE == "hashlib":
        return hashlib.new("sm3", data).digest()
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


def kdf(z: bytes, length: int) -> bytes:
    """GB/T 32918.4's key derivation: SM3(Z || ct) for ct = 1, 2, ... (32-bit big-endian)."""
    blocks = (length + 31) // 32
    return b"".join(sm3(z + ct.to_bytes(4, "big")) for ct in range(1, blocks + 1))[:length]


# ---- the curve ---------------------------------------------------------------------------------


def on_curve(pt: Point) -> bool:
    x, y = pt
    return 0 <= x < P and 0 <= y < P and (y * y - x * x * x - A * x - B) % P == 0


# Points in homogeneous projective coordinates (X : Y : Z) for x = X/Z, y = Y/Z; Z = 0 is the
# point at infinity. Formulas: Cohen, Miyaji and Ono (1998), for any a.
_Projective = tuple[int, int, int]
_INFINITY: _Projective = (0, 1, 0)


def _double(pt: _Projective) -> _Projective:
    x1, y1, z1 = pt
    if z1 == 0 or y1 == 0:
        return _INFINITY
    w = (A * z1 * z1 + 3 * x1 * x1) % P
    s = y1 * z1 % P
    b = x1 * y1 * s % P
    h = (w * w - 8 * b) % P
    return 2 * h * s % P, (w * (4 * b - h) - 8 * y1 * y1 * s * s) % P, 8 * s * s * s % P


def _add(p1: _Projective, p2: _Projective) -> _Projective:
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    if z1 == 0:
        return p2
    if z2 == 0:
        return p1
    y1z2, x1z2, z1z2 = y1 * z2 % P, x1 * z2 % P, z1 * z2 % P
    u, v = (y2 * z1 - y1z2) % P, (x2 * z1 - x1z2) % P
    if v == 0:
        return _double(p1) if u == 0 else _INFINITY
    vv = v * v % P
    vvv, r = v * vv % P, vv * x1z2 % P
    a = (u * u * z1z2 - vvv - 2 * r) % P
    return v * a % P, (u * (r - a) - vvv * y1z2) % P, vvv * z1z2 % P


def _times(k: int, pt: Point) -> _Projective:
    """``k * pt`` with a fixed 4-bit window, from the most significant nibble."""
    table = [_INFINITY, (pt[0], pt[1], 1)]
    for _ in range(14):
        table.append(_add(table[-1], table[1]))
    acc = _INFINITY
    for shift in range((max(k.bit_length(), 1) + 3) // 4 * 4 - 4, -4, -4):
        for _ in range(4):
            acc = _double(acc)
        acc = _add(acc, table[(k >> shift) & 0xF])
    return acc


def _affine(pt: _Projective) -> Point | None:
    x, y, z = pt
    if z == 0:
        return None
    inv = pow(z, -1, P)
    return x * inv % P, y * inv % P


def mul(k: int, pt: Point) -> Point | None:
    """``k * pt`` (affine in and out; ``None`` is the point at infinity)."""
    return _affine(_times(k, pt))


def mul_add(k1: int, p1: Point, k2: int, p2: Point) -> Point | None:
    """``k1 * p1 + k2 * p2``."""
    return _affine(_add(_times(k1, p1), _times(k2, p2)))


def _b32(v: int) -> bytes:
    return v.to_bytes(32, "big")


# ---- keys --------------------------------------------------------------------------------------


class Sm2PublicKey:
    __slots__ = ("point",)

    def __init__(self, point: Point) -> None:
        if not on_curve(point):
            raise Sm2Error("the point is not on the SM2 curve")
        self.point = point

    @classmethod
    def from_spki_der(cls, der: bytes) -> Sm2PublicKey:
        data = bytes(der)
        if len(data) != len(SPKI_PREFIX) + 65 or not data.startswith(SPKI_PREFIX + b"\x04"):
            raise Sm2Error("not the DER SubjectPublicKeyInfo of an SM2 key")
        body = data[len(SPKI_PREFIX) + 1 :]
        return cls((int.from_bytes(body[:32], "big"), int.from_bytes(body[32:], "big")))

    def spki_der(self) -> bytes:
        return SPKI_PREFIX + b"\x04" + _b32(self.point[0]) + _b32(self.point[1])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sm2PublicKey) and other.point == self.point

    def __hash__(self) -> int:
        return hash(self.point)


class Sm2PrivateKey:
    """A private scalar ``d`` in [1, n-2] (GB/T 32918.1's range; ``1 + d`` must be invertible)."""

    __slots__ = ("_d", "_public")

    def __init__(self, d: int) -> None:
        if not 1 <= d <= N - 2:
            raise Sm2Error("the SM2 private scalar is out of range")
        self._d = d
        self._public: Sm2PublicKey | None = None

    @classmethod
    def generate(cls) -> Sm2PrivateKey:
        return cls(1 + secrets.randbelow(N - 2))

    @classmethod
    def from_bytes(cls, data: bytes | bytearray) -> Sm2PrivateKey:
        if len(data) != 32:
            raise Sm2Error("an SM2 private scalar is 32 bytes")
        return cls(int.from_bytes(bytes(data), "big"))

    def scalar_bytes(self) -> bytes:
        return _b32(self._d)

    def public_key(self) -> Sm2PublicKey:
        if self._public is None:
            point = mul(self._d, G)
            assert point is not None  # d < n
            self._public = Sm2PublicKey(point)
        return self._public

    def __repr__(self) -> str:
        return "Sm2PrivateKey(<hidden>)"

    def sign_digest(self, e: bytes) -> tuple[int, int]:
        """GB/T 32918.2 section 6.1 for ``e`` (32 bytes, SM3(Z_A || M)); returns (r, s)."""
        if len(e) != 32:
            raise Sm2Error("an SM2 digest is 32 bytes")
        ei, d = int.from_bytes(e, "big"), self._d
        while True:
            k = 1 + secrets.randbelow(N - 1)
            x1 = mul(k, G)[0]  # type: ignore[index]
            r = (ei + x1) % N
            if r == 0 or r + k == N:
                continue
            s = pow(1 + d, -1, N) * (k - r * d) % N
            if s:
                return r, s

    def decrypt(self, ciphertext: bytes) -> bytes:
        """GB/T 32918.4 section 7 for raw ``C1 || C3 || C2``."""
        if len(ciphertext) < 65 + 32 + 1 or ciphertext[0] != 0x04:
            raise Sm2Error("the SM2 ciphertext is not C1C3C2 with an uncompressed C1")
        c1 = (int.from_bytes(ciphertext[1:33], "big"), int.from_bytes(ciphertext[33:65], "big"))
        c3, c2 = ciphertext[65:97], ciphertext[97:]
        if not on_curve(c1):
            raise Sm2Error("C1 is not on the SM2 curve")
        shared = mul(self._d, c1)
        if shared is None:
            raise Sm2Error("C1 is of small order")
        x2, y2 = _b32(shared[0]), _b32(shared[1])
        t = kdf(x2 + y2, len(c2))
        if not any(t):
            raise Sm2Error("the SM2 KDF produced zeros")
        message = bytes(a ^ b for a, b in zip(c2, t, strict=True))
        if not hmac.compare_digest(sm3(x2 + message + y2), c3):
            raise Sm2Error("C3 does not match")
        return message


# ---- signatures and encryption with a public key ------------------------------------------------


def z_value(public: Sm2PublicKey, uid: bytes = DEFAULT_ID) -> bytes:
    """Z_A = SM3(ENTL_A || ID_A || a || b || xG || yG || xA || yA) (GB/T 32918.2 section 5.5)."""
    if len(uid) * 8 > 0xFFFF:
        raise Sm2Error("the SM2 user ID is too long")
    fields = (A, B, G[0], G[1], public.point[0], public.point[1])
    return sm3((len(uid) * 8).to_bytes(2, "big") + uid + b"".join(map(_b32, fields)))


def user_digest(public: Sm2PublicKey, message: bytes, uid: bytes = DEFAULT_ID) -> bytes:
    """e = SM3(Z_A || M): what SM2DSA signs."""
    return sm3(z_value(public, uid) + message)


def verify_digest(public: Sm2PublicKey, e: bytes, r: int, s: int) -> None:
    """GB/T 32918.2 section 7.1; raises ``Sm2Error`` unless (r, s) signs ``e`` under ``public``."""
    if len(e) != 32 or not (1 <= r < N and 1 <= s < N):
        raise Sm2Error("the SM2 signature does not verify")
    t = (r + s) % N
    if t == 0:
        raise Sm2Error("the SM2 signature does not verify")
    point = mul_add(s, G, t, public.point)
    if point is None or (int.from_bytes(e, "big") + point[0]) % N != r:
        raise Sm2Error("the SM2 signature does not verify")


def encrypt(public: Sm2PublicKey, message: bytes) -> bytes:
    """GB/T 32918.4 section 6: raw ``C1 || C3 || C2`` of a non-empty ``message``."""
    if not message:
        raise Sm2Error("an empty message is not encrypted")
    while True:
        k = 1 + secrets.randbelow(N - 1)
        c1, shared = mul(k, G), mul(k, public.point)
        assert c1 is not None and shared is not None  # k < n, and n is prime
        x2, y2 = _b32(shared[0]), _b32(shared[1])
        t = kdf(x2 + y2, len(message))
        if any(t):
            break
    c2 = bytes(a ^ b for a, b in zip(message, t, strict=True))
    return b"\x04" + _b32(c1[0]) + _b32(c1[1]) + sm3(x2 + message + y2) + c2


# ---- DER forms ---------------------------------------------------------------------------------


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _der_int(v: int) -> bytes:
    return _der(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))


def _der_items(data: bytes, tags: tuple[int, ...]) -> list[bytes]:
    """The bodies of a DER SEQUENCE holding exactly ``tags``; ValueError for anything else."""
    seq = _der_read(data, 0, 0x30)
    if seq[1] != len(data):
        raise ValueError("trailing data")
    body, pos, out = seq[0], 0, []
    for tag in tags:
        item, pos = _der_read(body, pos, tag)
        out.append(item)
    if pos != len(body):
        raise ValueError("trailing data")
    return out


def _der_read(data: bytes, pos: int, tag: int) -> tuple[bytes, int]:
    if pos + 2 > len(data) or data[pos] != tag:
        raise ValueError("unexpected tag")
    n, pos = data[pos + 1], pos + 2
    if n & 0x80:
        size = n & 0x7F
        if not 1 <= size <= 3 or pos + size > len(data) or data[pos] == 0:
            raise ValueError("bad length")
        n, pos = int.from_bytes(data[pos : pos + size], "big"), pos + size
        if n < 0x80:
            raise ValueError("length not minimal")
    if pos + n > len(data):
        raise ValueError("truncated")
    return data[pos : pos + n], pos + n


def _int_of(body: bytes) -> int:
    """A non-negative DER INTEGER in its minimal encoding."""
    if not body or body[0] & 0x80 or (len(body) > 1 and body[0] == 0 and not body[1] & 0x80):
        raise ValueError("not a minimal non-negative INTEGER")
    return int.from_bytes(body, "big")


def signature_der(r: int, s: int) -> bytes:
    return _der(0x30, _der_int(r) + _der_int(s))


def signature_from_der(der: bytes) -> tuple[int, int]:
    try:
        r, s = (_int_of(b) for b in _der_items(bytes(der), (0x02, 0x02)))
    except ValueError:
        raise Sm2Error("not a DER SM2 signature") from None
    return r, s


def ciphertext_to_der(raw: bytes) -> bytes:
    """Raw ``C1 || C3 || C2`` as GM/T 0009's SEQUENCE { x, y, hash, ciphertext }."""
    if len(raw) < 65 + 32 + 1 or raw[0] != 0x04:
        raise Sm2Error("not a raw C1C3C2 SM2 ciphertext")
    x, y = int.from_bytes(raw[1:33], "big"), int.from_bytes(raw[33:65], "big")
    return _der(0x30, _der_int(x) + _der_int(y) + _der(0x04, raw[65:97]) + _der(0x04, raw[97:]))


def ciphertext_from_der(der: bytes) -> bytes:
    """GM/T 0009's DER SM2 ciphertext as raw ``C1 || C3 || C2``."""
    try:
        xb, yb, c3, c2 = _der_items(bytes(der), (0x02, 0x02, 0x04, 0x04))
        x, y = _int_of(xb), _int_of(yb)
    except ValueError:
        raise Sm2Error("not a DER SM2 ciphertext") from None
    if x >= P or y >= P or len(c3) != 32 or not c2:
        raise Sm2Error("not a DER SM2 ciphertext")
    return b"\x04" + _b32(x) + _b32(y) + c3 + c2

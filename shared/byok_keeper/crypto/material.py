"""Target key material: load a private key, check it against a key spec, encode it for import.

The identity of a key, everywhere in byok-keeper, is the SHA-256 (lower-case hex) of its public
key as DER SubjectPublicKeyInfo: ``PrivateKeyMaterial.fingerprint``.

Accepted inputs, PEM or DER: PKCS#8 (also passphrase-encrypted), PKCS#1 RSA, SEC1 EC, SM2 keys
as OpenSSL writes them (PKCS#8 ``PRIVATE KEY`` or SEC1 ``SM2 PRIVATE KEY``/``EC PRIVATE KEY``
with the SM2 curve), and a raw 32-byte SM2 scalar. ``cryptography`` loads everything but SM2;
SM2 is parsed here with the strict reader in ``der``.

Limits, said plainly: ``cryptography`` hands back private encodings as immutable ``bytes``;
they are copied at once into a ``bytearray`` that ``wipe()`` zeroes, and the ``bytes`` are
dropped, but CPython may not have overwritten that memory yet. Key objects inside
``cryptography`` live in OpenSSL memory, which OpenSSL frees with cleansing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..domain.errors import KeyMaterialError
from . import der, sm2
from .pbes2 import WRONG_PASSPHRASE as _WRONG_PASSPHRASE
from .pbes2 import UnsupportedScheme as _UnsupportedScheme
from .pbes2 import decrypt_pbes2 as _decrypt_pbes2
from .specs import KEY_SPECS, RAW_SM2_D, KeySpec
from .specs import key_spec as lookup_spec

MAX_KEY_FILE_BYTES = 64 * 1024

_EC_CURVE_SPECS = {"secp256r1": "EC_P256", "secp256k1": "EC_P256K"}
_RSA_BITS = tuple(s.rsa_bits for s in KEY_SPECS.values() if s.rsa_bits)
_PRIVATE_PEM_LABELS = {
    "PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
    "RSA PRIVATE KEY",
    "EC PRIVATE KEY",
    "SM2 PRIVATE KEY",
}
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


def wipe(buf: bytearray | memoryview) -> None:
    """Overwrite a mutable buffer with zeros."""
    buf[:] = bytes(len(buf))


def fingerprint(public_key_der: bytes | bytearray | memoryview) -> str:
    """SHA-256 of a DER SubjectPublicKeyInfo, lower-case hex."""
    return hashlib.sha256(bytes(public_key_der)).hexdigest()


def public_key_der_from(data: str | bytes) -> bytes:
    """Normalise a public key given as PEM (as GetPublicKey returns it), Base64 DER or DER.

    Returns DER SubjectPublicKeyInfo, checked to be a well-formed RSA, EC or SM2 public key.
    Raises ``KeyMaterialError`` otherwise.
    """
    raw = data.encode("ascii", "replace") if isinstance(data, str) else bytes(data)
    if not raw.startswith(b"\x30"):
        # Text forms only: DER is binary, and its last byte may well be 0x0a or 0x20.
        raw = raw.strip()
    if raw.startswith(b"-----BEGIN"):
        m = _PEM_BLOCK.search(raw)
        if not m or m.group(1) != b"PUBLIC KEY":
            raise KeyMaterialError("expected a PEM 'PUBLIC KEY' block")
        raw = _b64(m.group(2), "PEM public key")
    elif not raw.startswith(b"\x30"):
        raw = _b64(raw, "Base64 public key")
    if sm2.is_sm2_spki(raw):
        try:
            return sm2.Sm2PublicKey.from_spki_der(raw).spki_der()
        except sm2.Sm2Error as exc:
            raise KeyMaterialError(f"invalid SM2 public key: {exc}") from None
    try:
        key = serialization.load_der_public_key(raw)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyMaterialError("not a DER SubjectPublicKeyInfo public key") from None
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _b64(data: bytes, what: str) -> bytes:
    try:
        return base64.b64decode(b"".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise KeyMaterialError(f"{what} is not valid Base64") from None


class PrivateKeyMaterial:
    """A target private key, encoded for import, with its public identity.

    ``import_bytes()`` is the exact plaintext KMS expects inside the wrapping (the TAK):
    PKCS#8 DER for RSA and EC keys, the raw 32-byte scalar D for EC_SM2. It lives in a
    ``bytearray`` that ``wipe()`` (or leaving a ``with`` block) zeroes. ``repr`` and ``str``
    show only the spec and fingerprint.
    """

    __slots__ = ("_buf", "fingerprint", "public_key_der", "spec")

    def __init__(self, spec: KeySpec, import_bytes: bytearray, public_key_der: bytes) -> None:
        self.spec = spec
        self._buf = import_bytes
        self.public_key_der = bytes(public_key_der)
        self.fingerprint = fingerprint(self.public_key_der)

    @property
    def key_spec(self) -> str:
        return self.spec.name

    @property
    def wiped(self) -> bool:
        return not any(self._buf)

    def import_bytes(self) -> memoryview:
        """A read-only view of the encoded material (no copy). Raises once wiped."""
        if self.wiped:
            raise KeyMaterialError("key material has been wiped")
        return memoryview(self._buf).toreadonly()

    def wipe(self) -> None:
        wipe(self._buf)

    def __enter__(self) -> PrivateKeyMaterial:
        return self

    def __exit__(self, *exc: object) -> None:
        self.wipe()

    def __repr__(self) -> str:
        return f"PrivateKeyMaterial(key_spec={self.spec.name}, fingerprint={self.fingerprint})"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("PrivateKeyMaterial cannot be pickled")


def load_private_key(
    data: bytes | bytearray,
    *,
    key_spec: str | None = None,
    passphrase: bytes | None = None,
) -> PrivateKeyMaterial:
    """Load a private key and check it against ``key_spec`` (inferred when ``None``).

    Raises ``KeyMaterialError`` with a one-line reason for anything unreadable, unsupported or
    not matching the spec. The caller keeps ownership of ``data`` and should wipe it.
    """
    spec = lookup_spec(key_spec) if key_spec is not None else None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyMaterialError(f"input is larger than {MAX_KEY_FILE_BYTES} bytes; not a key file")
    # Only whitespace up front makes the (rare) full check, which copies the input.
    if not bytes(data[:80]).strip() and not bytes(data).strip():
        raise KeyMaterialError("the key file is empty")
    # Only PEM is copied into immutable bytes (the regex needs them); DER and raw input go
    # straight into a wipeable buffer.
    if bytes(data[:80]).lstrip().startswith(b"-----BEGIN"):
        return _load_pem(bytes(data).strip(), spec, passphrase)
    if len(data) == 32:
        if spec is not None and spec.material_encoding != RAW_SM2_D:
            raise KeyMaterialError(
                f"a raw 32-byte scalar is only accepted for EC_SM2, not {spec.name}"
            )
        if passphrase is not None:
            raise KeyMaterialError("a passphrase was given but the key is not encrypted")
        return _from_sm2_scalar(bytearray(data), spec)
    return _load_der(bytearray(data), spec, passphrase)


def generate_material(key_spec: str) -> PrivateKeyMaterial:
    """A fresh private key of ``key_spec``, made in memory from the OS CSPRNG."""
    spec = lookup_spec(key_spec)
    if spec.curve == "SM2":
        return _from_sm2_scalar(sm2.Sm2PrivateKey.generate().scalar_bytes(), spec)
    if spec.rsa_bits:
        key = rsa.generate_private_key(public_exponent=65537, key_size=spec.rsa_bits)
    else:
        key = ec.generate_private_key(ec.SECP256R1() if spec.curve == "P-256" else ec.SECP256K1())
    der = bytearray(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return _load_der(der, spec, None)  # wipes der


def _load_pem(data: bytes, spec: KeySpec | None, passphrase: bytes | None) -> PrivateKeyMaterial:
    blocks = [(m.group(1).decode(), m.group(2)) for m in _PEM_BLOCK.finditer(data)]
    # `openssl ecparam -genkey` writes an EC PARAMETERS block before the key; skip it.
    keys = [(label, body) for label, body in blocks if label in _PRIVATE_PEM_LABELS]
    if not keys:
        found = ", ".join(sorted({label for label, _ in blocks})) or "no complete PEM block"
        raise KeyMaterialError(f"no private key in the PEM input (found: {found})")
    if len(keys) > 1:
        raise KeyMaterialError("more than one private key in the PEM input; give one")
    label, body = keys[0]
    if b"Proc-Type:" in body:
        # Legacy OpenSSL-encrypted PEM (PKCS#1 or SEC1 with DEK-Info): cryptography decrypts it.
        try:
            return _via_cryptography(
                lambda: serialization.load_pem_private_key(data, password=passphrase),
                spec,
                passphrase,
                encrypted=True,
            )
        except _NotForCryptography:
            raise KeyMaterialError(_WRONG_PASSPHRASE) from None
    buf = bytearray(_b64(body, f"PEM block '{label}'"))
    return _load_der(buf, spec, passphrase)


def _load_der(buf: bytearray, spec: KeySpec | None, passphrase: bytes | None) -> PrivateKeyMaterial:
    """Load from DER held in ``buf``; ``buf`` is wiped before returning."""
    try:
        shape = _der_shape(buf)
        if shape == "encrypted-pkcs8":
            if passphrase is None:
                raise KeyMaterialError("the private key is encrypted; give its passphrase")
            try:
                return _via_cryptography(
                    lambda: serialization.load_der_private_key(bytes(buf), password=passphrase),
                    spec,
                    passphrase,
                    encrypted=True,
                )
            except _NotForCryptography:
                # cryptography refuses SM2 keys and some PBES2 ciphers (SM4-CBC), and cannot
                # tell those from a wrong passphrase. Decrypt PBES2 here and load the
                # plaintext; for schemes we do not implement, its verdict stands.
                pass
            try:
                plain = _decrypt_pbes2(buf, passphrase)
            except _UnsupportedScheme:
                raise KeyMaterialError(_WRONG_PASSPHRASE) from None
            try:
                _der_shape(plain)
            except KeyMaterialError:
                wipe(plain)
                raise KeyMaterialError(_WRONG_PASSPHRASE) from None
            return _load_der(plain, spec, None)
        if passphrase is not None:
            raise KeyMaterialError("a passphrase was given but the key is not encrypted")
        if shape == "sm2":
            return _from_sm2_der(buf, spec)
        return _via_cryptography(
            lambda: serialization.load_der_private_key(bytes(buf), password=None),
            spec,
            passphrase,
            encrypted=False,
        )
    finally:
        wipe(buf)


class _NotForCryptography(Exception):
    """cryptography cannot hold this key type (SM2): parse it ourselves."""


def _der_shape(buf: bytearray | bytes) -> str:
    """Classify DER private-key input: 'sm2', 'encrypted-pkcs8' or 'other'."""
    try:
        items = der.read(buf, der.SEQUENCE).children()
    except der.DerError:
        raise KeyMaterialError(
            "not a private key: malformed or truncated DER (expected PKCS#8, PKCS#1 or SEC1)"
        ) from None
    try:
        if len(items) == 2 and items[0].tag == der.SEQUENCE:
            return "encrypted-pkcs8"
        if len(items) >= 3 and items[0].tag == der.INTEGER:
            version = der.as_int(items[0])
            if version == 0 and items[1].tag == der.SEQUENCE:  # PKCS#8
                oids = [der.as_oid(t) for t in items[1].children() if t.tag == der.OID]
                return "sm2" if sm2.OID_SM2_CURVE in oids else "other"
            if version == 1 and items[1].tag == der.OCTET_STRING:  # SEC1
                for t in items[2:]:
                    if t.tag == 0xA0 and der.as_oid(t.children()[0]) == sm2.OID_SM2_CURVE:
                        return "sm2"
    except (der.DerError, IndexError):
        raise KeyMaterialError("not a private key: malformed DER structure") from None
    return "other"


def _from_sm2_der(buf: bytearray | bytes, spec: KeySpec | None) -> PrivateKeyMaterial:
    """SM2 from PKCS#8 or SEC1 DER (already classified as SM2)."""
    try:
        items = der.read(buf, der.SEQUENCE).children()
        if der.as_int(items[0]) == 0:  # PKCS#8: the ECPrivateKey sits in the OCTET STRING
            items = der.read(der.expect(items[2], der.OCTET_STRING).value, der.SEQUENCE).children()
        if der.as_int(items[0]) != 1:
            raise KeyMaterialError("unsupported ECPrivateKey version")
        scalar = bytearray(der.expect(items[1], der.OCTET_STRING).value)
        embedded = None
        for t in items[2:]:
            if t.tag == 0xA1:
                embedded = bytes(der.as_bit_string(t.children()[0]))
    except (der.DerError, IndexError):
        raise KeyMaterialError("not an SM2 private key: malformed DER structure") from None
    return _from_sm2_scalar(scalar, spec, embedded_public=embedded)


def _from_sm2_scalar(
    scalar: bytearray, spec: KeySpec | None, embedded_public: bytes | None = None
) -> PrivateKeyMaterial:
    """Build SM2 material; takes ownership of ``scalar`` (kept on success, wiped on failure)."""
    try:
        _check_spec("EC_SM2", spec, "an SM2 key")
        try:
            public = sm2.Sm2PrivateKey.from_bytes(scalar).public_key()
        except sm2.Sm2Error as exc:
            raise KeyMaterialError(f"invalid SM2 private key: {exc}") from None
        if embedded_public is not None and embedded_public != public.point_bytes():
            raise KeyMaterialError("the public key in the file does not match its private key")
    except BaseException:
        wipe(scalar)
        raise
    return PrivateKeyMaterial(KEY_SPECS["EC_SM2"], scalar, public.spki_der())


def _via_cryptography(load, spec: KeySpec | None, passphrase, *, encrypted: bool):
    try:
        key = load()
    except TypeError:
        if passphrase is None:
            raise KeyMaterialError("the private key is encrypted; give its passphrase") from None
        raise KeyMaterialError("a passphrase was given but the key is not encrypted") from None
    except UnsupportedAlgorithm:
        if encrypted:
            raise _NotForCryptography from None
        raise KeyMaterialError("unsupported private key type or curve") from None
    except ValueError:
        if encrypted:
            raise _NotForCryptography from None
        raise KeyMaterialError(
            "not a supported private key (PKCS#8, PKCS#1 RSA or SEC1 EC, PEM or DER)"
        ) from None

    if isinstance(key, rsa.RSAPrivateKey):
        bits = key.key_size
        if bits not in _RSA_BITS:
            raise KeyMaterialError(
                f"RSA key has a {bits}-bit modulus; supported sizes are "
                f"{', '.join(map(str, _RSA_BITS))}"
                + (f" ({spec.name} needs {spec.rsa_bits})" if spec and spec.rsa_bits else "")
            )
        resolved = f"RSA_{bits}"
        _check_spec(resolved, spec, f"an RSA-{bits} key")
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        curve = key.curve.name
        if curve not in _EC_CURVE_SPECS:
            raise KeyMaterialError(
                f"EC curve {curve} is not supported; supported curves are P-256 (EC_P256), "
                "secp256k1 (EC_P256K) and SM2 (EC_SM2)"
            )
        resolved = _EC_CURVE_SPECS[curve]
        _check_spec(resolved, spec, f"an EC key on {curve}")
    else:
        raise KeyMaterialError(
            f"key type {type(key).__name__.lstrip('_')} is not supported; expected RSA or EC"
        )
    encoded = bytearray(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return PrivateKeyMaterial(KEY_SPECS[resolved], encoded, public)


def _check_spec(actual: str, spec: KeySpec | None, described: str) -> None:
    if spec is not None and spec.name != actual:
        raise KeyMaterialError(f"key spec {spec.name} does not fit {described} (that is {actual})")

"""KMS's side of ImportKeyMaterial, written apart from the agent's wrapping code.

aliyun-local must not open ``EncryptedKeyMaterial`` with the functions the agent wraps it with:
a wrong parameter on both sides would cancel out and every functional test would pass. So this
module names every parameter from Alibaba Cloud's import procedure itself ("Import key
material into an asymmetric key", step 3; docs/FIDELITY.md#wrapped-key-material) and imports
nothing from
``byok_keeper``:

* ``RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD``: the first 256 bytes are the 32-byte ESK under
  RSA-2048 OAEP with SHA-256, MGF1-SHA-256 and an empty label; the rest is the TAK under
  AES-256-ECB with PKCS#7 padding, a PKCS#8 PrivateKeyInfo.
* ``SM2PKE_SM4_ECB``: the first 113 bytes are the 16-byte ESK under SM2 public-key encryption
  in raw C1C3C2 form (``04 || x1 || y1 || C3 || C2``, GB/T 32918.4 with SM3 and its KDF); the
  rest is the TAK under SM4-ECB with no padding, the raw 32-byte SM2 scalar.

The SM2 arithmetic here is plain affine double-and-add: an emulator's, not constant-time, and
deliberately not the agent's Jacobian Montgomery ladder. ``material_fingerprint`` checks the TAK
and computes the SHA-256 of its public key's SubjectPublicKeyInfo the same independent way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

RSA_OAEP_AES = "RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD"
SM2_SM4 = "SM2PKE_SM4_ECB"
MAX_CHARS = 16 * 1024

# GB/T 32918.5 recommended curve parameters (sm2p256v1).
_P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
_A = _P - 3
_B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
_N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
_G = (
    0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
)
# DER SubjectPublicKeyInfo of an SM2 key up to the 65-byte point: SEQUENCE { SEQUENCE {
# id-ecPublicKey 1.2.840.10045.2.1, sm2p256v1 1.2.156.10197.1.301 }, BIT STRING (0 unused) }.
_SM2_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")
_EC_CURVES = {"EC_P256": "secp256r1", "EC_P256K": "secp256k1"}


class UnwrapFailed(Exception):
    """The material did not open or is not a key of the expected spec (the reason is safe to
    show: it never quotes the input)."""


# ---- SM2 ---------------------------------------------------------------------------------------


def _on_curve(pt: tuple[int, int]) -> bool:
    x, y = pt
    return 0 <= x < _P and 0 <= y < _P and (y * y - x * x * x - _A * x - _B) % _P == 0


def _add(p1: tuple[int, int] | None, p2: tuple[int, int] | None) -> tuple[int, int] | None:
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2:
        if (y1 + y2) % _P == 0:
            return None
        lam = (3 * x1 * x1 + _A) * pow(2 * y1, -1, _P) % _P
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, _P) % _P
    x3 = (lam * lam - x1 - x2) % _P
    return x3, (lam * (x1 - x3) - y1) % _P


def _mul(k: int, pt: tuple[int, int]) -> tuple[int, int] | None:
    result, addend = None, pt
    while k:
        if k & 1:
            result = _add(result, addend)
        addend = _add(addend, addend)
        k >>= 1
    return result


def _sm3(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


def _sm3_kdf(z: bytes, length: int) -> bytes:
    blocks = (length + 31) // 32
    return b"".join(_sm3(z + i.to_bytes(4, "big")) for i in range(1, blocks + 1))[:length]


def sm2_decrypt(d: int, ciphertext: bytes) -> bytes:
    """GB/T 32918.4 decryption of raw C1C3C2. Raises ``UnwrapFailed``."""
    if len(ciphertext) < 65 + 32 + 1 or ciphertext[0] != 0x04:
        raise UnwrapFailed("the SM2 ciphertext is not C1C3C2 with an uncompressed C1")
    c1 = (int.from_bytes(ciphertext[1:33], "big"), int.from_bytes(ciphertext[33:65], "big"))
    c3, c2 = ciphertext[65:97], ciphertext[97:]
    if not _on_curve(c1):
        raise UnwrapFailed("C1 is not on the SM2 curve")
    shared = _mul(d, c1)
    if shared is None:
        raise UnwrapFailed("C1 is of small order")
    x2, y2 = (v.to_bytes(32, "big") for v in shared)
    t = _sm3_kdf(x2 + y2, len(c2))
    if not any(t):
        raise UnwrapFailed("the SM2 KDF produced zeros")
    message = bytes(a ^ b for a, b in zip(c2, t, strict=True))
    if not hmac.compare_digest(_sm3(x2 + message + y2), c3):
        raise UnwrapFailed("C3 does not match")
    return message


def sm2_spki(d: int) -> bytes:
    """DER SubjectPublicKeyInfo of the SM2 key with private scalar ``d``."""
    point = _mul(d, _G)
    assert point is not None
    return _SM2_SPKI_PREFIX + b"\x04" + point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")


# ---- the two wrapping algorithms ----------------------------------------------------------------


def _ecb_decrypt(cipher: algorithms.AES | algorithms.SM4, data: bytes) -> bytes:
    decryptor = Cipher(cipher, modes.ECB()).decryptor()  # noqa: S305 - KMS's TAK layer is ECB
    return decryptor.update(data) + decryptor.finalize()


def unwrap(encrypted_key_material: str, wrapping_key: object, algorithm: str) -> bytearray:
    """Open ``EncryptedKeyMaterial`` with the import token's private key.

    ``wrapping_key`` is a ``cryptography`` RSA private key for the RSA algorithm, and for SM2
    any object with ``scalar_bytes()`` (the emulator stores the token's key that way). Returns
    the TAK; raises ``UnwrapFailed``.
    """
    if len(encrypted_key_material) > MAX_CHARS:
        raise UnwrapFailed("EncryptedKeyMaterial is too long")
    try:
        blob = base64.b64decode(encrypted_key_material, validate=True)
    except (binascii.Error, ValueError):
        raise UnwrapFailed("EncryptedKeyMaterial is not Base64") from None
    if algorithm == RSA_OAEP_AES:
        if not isinstance(wrapping_key, rsa.RSAPrivateKey) or wrapping_key.key_size != 2048:
            raise UnwrapFailed("the token's wrapping key is not RSA-2048")
        enc_esk, enc_tak = blob[:256], blob[256:]
        if len(enc_esk) != 256 or not enc_tak or len(enc_tak) % 16:
            raise UnwrapFailed("wrong length")
        oaep = padding.OAEP(
            mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
        )
        try:
            esk = wrapping_key.decrypt(enc_esk, oaep)
        except ValueError:
            raise UnwrapFailed("the ESK does not open with the import token's key") from None
        if len(esk) != 32:
            raise UnwrapFailed("the ESK is not an AES-256 key")
        padded = _ecb_decrypt(algorithms.AES(esk), enc_tak)
        pad = padded[-1]
        if not 1 <= pad <= 16 or padded[-pad:] != bytes([pad]) * pad:
            raise UnwrapFailed("the TAK's PKCS#7 padding is wrong")
        return bytearray(padded[:-pad])
    if algorithm == SM2_SM4:
        scalar = getattr(wrapping_key, "scalar_bytes", None)
        if scalar is None:
            raise UnwrapFailed("the token's wrapping key is not SM2")
        enc_esk, enc_tak = blob[: 65 + 32 + 16], blob[65 + 32 + 16 :]
        if not enc_tak or len(enc_tak) % 16:
            raise UnwrapFailed("wrong length")
        esk = sm2_decrypt(int.from_bytes(bytes(scalar()), "big"), enc_esk)
        if len(esk) != 16:
            raise UnwrapFailed("the ESK is not an SM4 key")
        return bytearray(_ecb_decrypt(algorithms.SM4(esk), enc_tak))
    raise UnwrapFailed(f"unknown wrapping algorithm {algorithm}")


# ---- what the TAK must be ---------------------------------------------------------------------


def material_fingerprint(tak: bytes | bytearray, key_spec: str) -> str:
    """Check the TAK is a private key of ``key_spec`` in KMS's import encoding; return the
    SHA-256 (hex) of its public key's DER SubjectPublicKeyInfo. Raises ``UnwrapFailed``."""
    if key_spec == "EC_SM2":
        if len(tak) != 32:
            raise UnwrapFailed("EC_SM2 material must be the 32-byte private scalar")
        d = int.from_bytes(bytes(tak), "big")
        if not 1 <= d <= _N - 2:
            raise UnwrapFailed("the SM2 scalar is out of range")
        return hashlib.sha256(sm2_spki(d)).hexdigest()
    # PKCS#8 PrivateKeyInfo: SEQUENCE { INTEGER 0, SEQUENCE AlgorithmIdentifier, ... }. Skip
    # the outer header and look at the first two elements (PKCS#1 and SEC 1 differ there).
    data = bytes(tak)
    if len(data) < 8 or data[0] != 0x30:
        raise UnwrapFailed("expected a PKCS#8 PrivateKeyInfo")
    offset = 2 + (data[1] & 0x7F if data[1] & 0x80 else 0)
    if data[offset : offset + 4] != b"\x02\x01\x00\x30":
        raise UnwrapFailed("expected a PKCS#8 PrivateKeyInfo")
    try:
        key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError):
        raise UnwrapFailed("the PKCS#8 PrivateKeyInfo does not load") from None
    if key_spec.startswith("RSA_"):
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != int(key_spec[4:]):
            raise UnwrapFailed(f"the material is not an {key_spec} key")
    elif not (
        isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == _EC_CURVES.get(key_spec)
    ):
        raise UnwrapFailed(f"the material is not an {key_spec} key")
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()

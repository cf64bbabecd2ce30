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

The SM2 arithmetic is the emulator's own (``sm2.py``: affine double-and-add, not constant-time,
deliberately not the agent's form). ``material_fingerprint`` checks the TAK and computes the
SHA-256 of its public key's SubjectPublicKeyInfo the same independent way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from . import sm2

RSA_OAEP_AES = "RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD"
SM2_SM4 = "SM2PKE_SM4_ECB"
MAX_CHARS = 16 * 1024

_EC_CURVES = {"EC_P256": "secp256r1", "EC_P256K": "secp256k1"}


class UnwrapFailed(Exception):
    """The material did not open or is not a key of the expected spec (the reason is safe to
    show: it never quotes the input)."""


# ---- SM2 (the emulator's own, sm2.py) ----------------------------------------------------------


def sm2_decrypt(d: int, ciphertext: bytes) -> bytes:
    """GB/T 32918.4 decryption of raw C1C3C2. Raises ``UnwrapFailed``."""
    try:
        return sm2.Sm2PrivateKey(d).decrypt(ciphertext)
    except sm2.Sm2Error as exc:
        raise UnwrapFailed(str(exc)) from None


def sm2_spki(d: int) -> bytes:
    """DER SubjectPublicKeyInfo of the SM2 key with private scalar ``d``."""
    return sm2.Sm2PrivateKey(d).public_key().spki_der()


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
        if not 1 <= d <= sm2.N - 2:
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

"""What KMS does with a usable key's material: asymmetric sign/verify/encrypt/decrypt, the
symmetric envelope (Encrypt/Decrypt, GenerateDataKey) and material for KMS-generated keys.

The callers (``KmsBackend``) check the key's state, usage and algorithm first.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import sm2
from .errors import invalid_ciphertext, invalid_parameter
from .keys import Key
from .specs import KEY_SPECS

_CIPHERTEXT_MAGIC = b"ALK1"


def private(key: Key) -> Any:
    """The key's private key object, loaded once and cached on the key."""
    if key._loaded is None:
        assert key.material is not None
        if key.key_spec == "EC_SM2":
            key._loaded = sm2.Sm2PrivateKey.from_bytes(key.material)
        else:
            key._loaded = serialization.load_der_private_key(key.material, password=None)
    return key._loaded


def public_key_pem(key: Key) -> str:
    priv = private(key)
    spki = (
        priv.public_key().spki_der()
        if isinstance(priv, sm2.Sm2PrivateKey)
        else priv.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    body = base64.encodebytes(spki).decode()
    return f"-----BEGIN PUBLIC KEY-----\n{body}-----END PUBLIC KEY-----\n"


def sign(key: Key, algorithm: str, digest: bytes) -> bytes:
    if len(digest) != 32:
        raise invalid_parameter("Digest", "must be a 32-byte digest")
    priv = private(key)
    if algorithm == "SM2DSA":
        return sm2.signature_der(*priv.sign_digest(digest))
    if algorithm == "ECDSA_SHA_256":
        return priv.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    return priv.sign(digest, _rsa_sig_padding(algorithm), utils.Prehashed(hashes.SHA256()))


def verify(key: Key, algorithm: str, digest: bytes, signature: bytes) -> bool:
    if len(digest) != 32:
        raise invalid_parameter("Digest", "must be a 32-byte digest")
    priv = private(key)
    try:
        if algorithm == "SM2DSA":
            sm2.verify_digest(priv.public_key(), digest, *sm2.signature_from_der(signature))
        elif algorithm == "ECDSA_SHA_256":
            priv.public_key().verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        else:
            priv.public_key().verify(
                signature,
                digest,
                _rsa_sig_padding(algorithm),
                utils.Prehashed(hashes.SHA256()),
            )
    except (InvalidSignature, sm2.Sm2Error, ValueError):
        return False
    return True


def asymmetric_encrypt(key: Key, algorithm: str, plaintext: bytes) -> bytes:
    priv = private(key)
    try:
        if algorithm == "SM2PKE":
            # Best guess: KMS returns SM2 ciphertext DER-encoded (GM/T 0009), as OpenSSL does.
            return sm2.ciphertext_to_der(sm2.encrypt(priv.public_key(), plaintext))
        return priv.public_key().encrypt(plaintext, _oaep(algorithm))
    except (ValueError, sm2.Sm2Error):
        raise invalid_parameter("Plaintext", "too long or empty for this key") from None


def asymmetric_decrypt(key: Key, algorithm: str, ciphertext: bytes) -> bytes:
    priv = private(key)
    try:
        if algorithm == "SM2PKE":
            return bytes(priv.decrypt(sm2.ciphertext_from_der(ciphertext)))
        return priv.decrypt(ciphertext, _oaep(algorithm))
    except (ValueError, sm2.Sm2Error):
        raise invalid_ciphertext() from None


# ---- symmetric envelope encryption -----------------------------------------------------------


def _canonical_context(context: dict[str, str] | None) -> bytes:
    if not context:
        return b""
    return json.dumps(context, sort_keys=True, separators=(",", ":")).encode()


def envelope_encrypt(key: Key, plaintext: bytes, context: dict[str, str] | None) -> str:
    """The ciphertext blob (Base64) under the key's primary version."""
    nonce = os.urandom(12)
    kid, ver = key.key_id.encode(), key.primary_version.encode()
    aad = kid + b"\0" + ver + b"\0" + _canonical_context(context)
    ct = AESGCM(key.versions[key.primary_version]).encrypt(nonce, plaintext, aad)
    blob = _CIPHERTEXT_MAGIC + bytes([len(kid)]) + kid + bytes([len(ver)]) + ver + nonce + ct
    return base64.b64encode(blob).decode()


def envelope_parse(blob_b64: str) -> tuple[str, str, bytes, bytes]:
    """(key id, version id, nonce, ciphertext) of a blob ``envelope_encrypt`` made."""
    try:
        blob = base64.b64decode(blob_b64, validate=True)
        if not blob.startswith(_CIPHERTEXT_MAGIC):
            raise ValueError
        pos = len(_CIPHERTEXT_MAGIC)
        kid = blob[pos + 1 : pos + 1 + blob[pos]]
        pos += 1 + blob[pos]
        ver = blob[pos + 1 : pos + 1 + blob[pos]]
        pos += 1 + blob[pos]
        nonce, ct = blob[pos : pos + 12], blob[pos + 12 :]
        return kid.decode(), ver.decode(), nonce, ct
    except (ValueError, IndexError, UnicodeDecodeError):
        raise invalid_ciphertext() from None


def envelope_decrypt(
    key: Key, parsed: tuple[str, str, bytes, bytes], context: dict[str, str] | None
) -> bytes:
    """Open a blob ``envelope_parse`` took apart, with ``key`` (the key it names)."""
    key_id, version, nonce, ct = parsed
    material = key.versions.get(version)
    if material is None or len(nonce) != 12:
        raise invalid_ciphertext()
    aad = key_id.encode() + b"\0" + version.encode() + b"\0" + _canonical_context(context)
    try:
        return AESGCM(material).decrypt(nonce, ct, aad)
    except Exception:  # cryptography raises InvalidTag
        raise invalid_ciphertext() from None


def _rsa_sig_padding(algorithm: str) -> padding.AsymmetricPadding:
    if algorithm == "RSA_PSS_SHA_256":
        return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    return padding.PKCS1v15()


def _oaep(algorithm: str) -> padding.OAEP:
    # RSAES_OAEP_SHA_1 is a KMS algorithm callers may ask for; SHA-1 is its definition.
    h = hashes.SHA256() if algorithm == "RSAES_OAEP_SHA_256" else hashes.SHA1()  # noqa: S303
    return padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None)


def generate_material(key_spec: str) -> bytes:
    """Material for a KMS-generated (Origin Aliyun_KMS) asymmetric key."""
    spec = KEY_SPECS[key_spec]
    if spec.curve == "SM2":
        return bytes(sm2.Sm2PrivateKey.generate().scalar_bytes())
    if spec.rsa_bits:
        key = rsa.generate_private_key(public_exponent=65537, key_size=spec.rsa_bits)
    else:
        curve = ec.SECP256R1() if spec.curve == "P-256" else ec.SECP256K1()
        key = ec.generate_private_key(curve)
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )

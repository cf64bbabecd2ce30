"""Wrap target key material for ImportKeyMaterial, and the inverse.

``EncryptedKeyMaterial = Base64( Enc_IWK(ESK) || Enc_ESK(TAK) )`` where IWK is the wrapping
public key from GetParametersForImport, ESK a fresh ephemeral symmetric key and TAK the target
key encoded for import (``material.PrivateKeyMaterial.import_bytes()``; sources in
docs/FIDELITY.md#wrapped-key-material):

* ``RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD``: a 32-byte ESK under RSA-2048 OAEP (SHA-256,
  MGF1-SHA-256, empty label), then the TAK under AES-256-ECB with PKCS#7 padding.
* ``SM2PKE_SM4_ECB``: a 16-byte ESK under SM2 encryption (C1C3C2, raw), then the TAK under
  SM4-ECB with no padding (the TAK is the 32-byte SM2 scalar).

ECB is what KMS specifies for the TAK layer; each ESK encrypts exactly one TAK, once.

The ESK comes from ``os.urandom`` and is wiped after use. The inverse, ``unwrap_key_material``,
is what KMS does, for the agent's tests; aliyun-local deliberately opens material with its own
implementation (``aliyun_local/kms/unwrap.py``) so that a wrong parameter here cannot cancel out.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..domain.errors import KeyMaterialError, UnwrapError, WrappingError
from . import sm2
from .material import public_key_der_from, wipe
from .specs import RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD, SM2PKE_SM4_ECB
from .specs import wrapping_algorithm as lookup_algorithm

WrappingPrivateKey = rsa.RSAPrivateKey | sm2.Sm2PrivateKey
WrappingPublicKey = rsa.RSAPublicKey | sm2.Sm2PublicKey

RSA_WRAPPING_BITS = 2048
_SM2_ESK_CIPHERTEXT = 65 + 32 + 16  # C1 point, C3 hash, C2 for a 16-byte ESK
MAX_ENCRYPTED_KEY_MATERIAL_CHARS = 16 * 1024


def _ecb(algorithm: algorithms.AES | algorithms.SM4) -> Cipher:
    # ECB is what KMS specifies for the TAK layer; each ESK is fresh and encrypts one TAK once.
    return Cipher(algorithm, modes.ECB())  # noqa: S305


def _oaep() -> asym_padding.OAEP:
    return asym_padding.OAEP(
        mgf=asym_padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
    )


def load_wrapping_public_key(key: str | bytes, algorithm: str) -> WrappingPublicKey:
    """Parse a wrapping public key (Base64 DER as GetParametersForImport returns it, DER or
    PEM) and check it fits ``algorithm``. Raises ``WrappingError``."""
    alg = lookup_algorithm(algorithm)
    try:
        spki = public_key_der_from(key)
    except KeyMaterialError as exc:
        need = "an SM2" if alg.name == SM2PKE_SM4_ECB else "an RSA-2048"
        raise WrappingError(
            f"{alg.name} needs {need} wrapping public key; this one does not load: {exc}"
        ) from None
    if alg.name == SM2PKE_SM4_ECB:
        if not sm2.is_sm2_spki(spki):
            raise WrappingError(f"{alg.name} needs an SM2 wrapping public key")
        return sm2.Sm2PublicKey.from_spki_der(spki)
    if sm2.is_sm2_spki(spki):
        raise WrappingError(f"{alg.name} needs an RSA-2048 wrapping public key, got an SM2 key")
    try:
        pub = serialization.load_der_public_key(spki)
    except (ValueError, UnsupportedAlgorithm):
        raise WrappingError(f"{alg.name} needs an RSA-2048 wrapping public key") from None
    if not isinstance(pub, rsa.RSAPublicKey) or pub.key_size != RSA_WRAPPING_BITS:
        got = f"RSA-{pub.key_size}" if isinstance(pub, rsa.RSAPublicKey) else "a non-RSA key"
        raise WrappingError(f"{alg.name} needs an RSA-2048 wrapping public key, got {got}")
    return pub


def wrap_key_material(
    material: bytes | bytearray | memoryview, wrapping_public_key: str | bytes, algorithm: str
) -> str:
    """Wrap ``material`` (the encoded target key) for ImportKeyMaterial.

    Args:
        material: PKCS#8 DER for RSA/EC keys, the raw 32-byte D for EC_SM2.
        wrapping_public_key: GetParametersForImport's ``PublicKey`` (Base64 DER), raw DER or PEM.
        algorithm: ``RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD`` or ``SM2PKE_SM4_ECB``.

    Returns:
        Base64 of ``Enc_IWK(ESK) || Enc_ESK(TAK)``, ready for ``EncryptedKeyMaterial``.

    Raises:
        WrappingError: unknown algorithm, a wrapping key that does not fit it, or material of a
            length the algorithm cannot carry.
    """
    pub = load_wrapping_public_key(wrapping_public_key, algorithm)
    if len(material) == 0:
        raise WrappingError("key material is empty")
    esk = bytearray(os.urandom(lookup_algorithm(algorithm).esk_bytes))
    try:
        if algorithm == SM2PKE_SM4_ECB:
            if len(material) % 16:
                raise WrappingError(
                    f"{algorithm} carries material in whole 16-byte blocks; "
                    f"got {len(material)} bytes (EC_SM2 material is the 32-byte scalar)"
                )
            assert isinstance(pub, sm2.Sm2PublicKey)
            enc_esk = sm2.encrypt(pub, esk)
            enc = _ecb(algorithms.SM4(esk)).encryptor()
            enc_tak = enc.update(material) + enc.finalize()
        else:
            assert algorithm == RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD
            assert isinstance(pub, rsa.RSAPublicKey)
            # cryptography's RSA encrypt takes only ``bytes``: this one short-lived immutable
            # copy of the ESK cannot be wiped (noted in the module docstring of material).
            enc_esk = pub.encrypt(bytes(esk), _oaep())
            pad = 16 - len(material) % 16
            padded = bytearray(material)
            padded += bytes([pad]) * pad
            try:
                enc = _ecb(algorithms.AES(esk)).encryptor()
                enc_tak = enc.update(padded) + enc.finalize()
            finally:
                wipe(padded)
    finally:
        wipe(esk)
    return base64.b64encode(enc_esk + enc_tak).decode("ascii")


def unwrap_key_material(
    encrypted_key_material: str | bytes,
    wrapping_private_key: WrappingPrivateKey,
    algorithm: str,
) -> bytearray:
    """Inverse of ``wrap_key_material``: what KMS does on import.

    Returns the TAK in a ``bytearray`` the caller wipes. Raises ``WrappingError`` for input
    that is not Base64 or a key that does not fit the algorithm, and the opaque
    ``UnwrapError`` when the ciphertext does not open.
    """
    lookup_algorithm(algorithm)
    if len(encrypted_key_material) > MAX_ENCRYPTED_KEY_MATERIAL_CHARS:
        raise WrappingError("EncryptedKeyMaterial is too long")
    try:
        blob = base64.b64decode(encrypted_key_material, validate=True)
    except (binascii.Error, ValueError):
        raise WrappingError("EncryptedKeyMaterial is not valid Base64") from None

    esk: bytearray | None = None
    try:
        if algorithm == SM2PKE_SM4_ECB:
            if not isinstance(wrapping_private_key, sm2.Sm2PrivateKey):
                raise WrappingError(f"{algorithm} needs an SM2 wrapping private key")
            enc_esk, enc_tak = blob[:_SM2_ESK_CIPHERTEXT], blob[_SM2_ESK_CIPHERTEXT:]
            if not enc_tak or len(enc_tak) % 16:
                raise UnwrapError(algorithm)
            try:
                esk = wrapping_private_key.decrypt(enc_esk)
            except sm2.Sm2Error:
                raise UnwrapError(algorithm) from None
            if len(esk) != 16:
                raise UnwrapError(algorithm)
            return _ecb_decrypt(algorithms.SM4(esk), enc_tak)

        if not (
            isinstance(wrapping_private_key, rsa.RSAPrivateKey)
            and wrapping_private_key.key_size == RSA_WRAPPING_BITS
        ):
            raise WrappingError(f"{algorithm} needs an RSA-2048 wrapping private key")
        n = RSA_WRAPPING_BITS // 8
        enc_esk, enc_tak = blob[:n], blob[n:]
        if len(enc_esk) != n or not enc_tak or len(enc_tak) % 16:
            raise UnwrapError(algorithm)
        try:
            esk = bytearray(wrapping_private_key.decrypt(enc_esk, _oaep()))
        except ValueError:
            raise UnwrapError(algorithm) from None
        if len(esk) != 32:
            raise UnwrapError(algorithm)
        tak = _ecb_decrypt(algorithms.AES(esk), enc_tak)
        pad = tak[-1]
        if not 1 <= pad <= 16 or any(b != pad for b in tak[-pad:]):
            wipe(tak)
            raise UnwrapError(algorithm)
        tak[-pad:] = b""
        return tak
    finally:
        if esk is not None:
            wipe(esk)


def _ecb_decrypt(algorithm: algorithms.AES | algorithms.SM4, ciphertext: bytes) -> bytearray:
    """ECB-decrypt straight into a ``bytearray`` so no immutable plaintext copy is made."""
    out = bytearray(len(ciphertext) + 15)
    dec = _ecb(algorithm).decryptor()
    n = dec.update_into(ciphertext, out)
    dec.finalize()
    del out[n:]  # the spare tail update_into needs; never written
    return out


def new_wrapping_key(algorithm: str) -> WrappingPrivateKey:
    """A fresh import wrapping key pair for ``algorithm`` (what GetParametersForImport makes)."""
    if lookup_algorithm(algorithm).name == SM2PKE_SM4_ECB:
        return sm2.Sm2PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_WRAPPING_BITS)


def wrapping_public_key_der(private_key: WrappingPrivateKey) -> bytes:
    """DER SubjectPublicKeyInfo of a wrapping key's public half."""
    if isinstance(private_key, sm2.Sm2PrivateKey):
        return private_key.public_key().spki_der()
    return private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )

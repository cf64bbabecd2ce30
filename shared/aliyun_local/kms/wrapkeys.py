"""Import wrapping keys: what GetParametersForImport makes for each wrapping algorithm.

An RSA-2048 key pair (``cryptography``) for RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD, an SM2
key pair (the emulator's own ``sm2``) for SM2PKE_SM4_ECB; the public half leaves as DER
SubjectPublicKeyInfo. Nothing here comes from ``byok_keeper``.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from . import sm2
from .specs import RSA_WRAPPING, SM2_WRAPPING

WrappingPrivateKey = rsa.RSAPrivateKey | sm2.Sm2PrivateKey
RSA_WRAPPING_BITS = 2048


def new_wrapping_key(algorithm: str) -> WrappingPrivateKey:
    """A fresh wrapping key pair for ``algorithm`` (one of the two wrapping algorithms)."""
    if algorithm == SM2_WRAPPING:
        return sm2.Sm2PrivateKey.generate()
    if algorithm == RSA_WRAPPING:
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_WRAPPING_BITS)
    raise ValueError("unknown wrapping algorithm")


def wrapping_public_key_der(private_key: WrappingPrivateKey) -> bytes:
    """DER SubjectPublicKeyInfo of a wrapping key's public half."""
    if isinstance(private_key, sm2.Sm2PrivateKey):
        return private_key.public_key().spki_der()
    return private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )

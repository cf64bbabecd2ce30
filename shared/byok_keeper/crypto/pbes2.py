"""PBES2 (PBKDF2 + AES/SM4-CBC) for encrypted PKCS#8 SM2 keys, which ``cryptography`` refuses
(it does not know the curve). Used by ``material``; split out to keep each file short."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from ..domain.errors import KeyMaterialError
from . import der

WRONG_PASSPHRASE = "cannot decrypt the private key: wrong passphrase or damaged data"  # noqa: S105


class UnsupportedScheme(Exception):
    """An encryption scheme we do not implement."""


# ---- PBES2 for encrypted PKCS#8 SM2 keys (cryptography refuses the curve) --------------------

_PBES2 = "1.2.840.113549.1.5.13"
_PBKDF2 = "1.2.840.113549.1.5.12"
_PRFS = {
    "1.2.840.113549.2.7": hashes.SHA1,
    "1.2.840.113549.2.8": hashes.SHA224,
    "1.2.840.113549.2.9": hashes.SHA256,
    "1.2.840.113549.2.10": hashes.SHA384,
    "1.2.840.113549.2.11": hashes.SHA512,
}
_CBC_CIPHERS = {
    "2.16.840.1.101.3.4.1.2": (algorithms.AES, 16),
    "2.16.840.1.101.3.4.1.22": (algorithms.AES, 24),
    "2.16.840.1.101.3.4.1.42": (algorithms.AES, 32),
    "1.2.156.10197.1.104.2": (algorithms.SM4, 16),
}


def decrypt_pbes2(buf: bytearray, passphrase: bytes) -> bytearray:
    """Decrypt PBES2 (PBKDF2 + AES/SM4-CBC) EncryptedPrivateKeyInfo; return plaintext DER."""
    try:
        alg, ciphertext = der.read(buf, der.SEQUENCE).children()
        scheme, params = alg.children()
        if der.as_oid(scheme) != _PBES2:
            raise UnsupportedScheme
        kdf, enc = params.children()
        kdf_oid, kdf_params = kdf.children()
        if der.as_oid(kdf_oid) != _PBKDF2:
            raise UnsupportedScheme
        kp = kdf_params.children()
        salt = bytes(der.expect(kp[0], der.OCTET_STRING).value)
        iterations = der.as_int(kp[1])
        prf = hashes.SHA1
        for t in kp[2:]:
            if t.tag == der.SEQUENCE:
                prf_oid = der.as_oid(t.children()[0])
                if prf_oid not in _PRFS:
                    raise UnsupportedScheme
                prf = _PRFS[prf_oid]
        enc_oid, iv_tlv = enc.children()
        cipher = _CBC_CIPHERS.get(der.as_oid(enc_oid))
        if cipher is None:
            raise UnsupportedScheme
        iv = bytes(der.expect(iv_tlv, der.OCTET_STRING).value)
        body = bytes(der.expect(ciphertext, der.OCTET_STRING).value)
    except (der.DerError, ValueError, IndexError):
        raise KeyMaterialError("malformed encrypted private key") from None
    if not 1 <= iterations <= 10_000_000:
        raise KeyMaterialError("encrypted key has an unreasonable PBKDF2 iteration count")
    algo, key_len = cipher
    key = bytearray(
        PBKDF2HMAC(algorithm=prf(), length=key_len, salt=salt, iterations=iterations).derive(
            passphrase
        )
    )
    try:
        if len(body) == 0 or len(body) % 16 or len(iv) != 16:
            raise KeyMaterialError("malformed encrypted private key")
        dec = Cipher(algo(key), modes.CBC(iv)).decryptor()
        plain = bytearray(dec.update(body) + dec.finalize())
    finally:
        key[:] = bytes(len(key))  # as material.wipe (which imports this module)
    pad = plain[-1]
    if not 1 <= pad <= 16 or plain[-pad:] != bytes([pad]) * pad:
        plain[:] = bytes(len(plain))
        raise KeyMaterialError(WRONG_PASSPHRASE)
    del plain[-pad:]
    return plain

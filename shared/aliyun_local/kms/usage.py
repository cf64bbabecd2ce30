"""Using a key: the state and version checks every cryptographic call makes, then signing,
verifying and asymmetric encryption (``crypto.py``), and symmetric envelope encryption."""

from __future__ import annotations

import threading

from ..clock import Clock
from . import crypto
from .errors import ApiError, invalid_parameter, state_rejected, unsupported_operation
from .keys import ENABLED, Key
from .settings import FidelitySettings
from .specs import KEY_SPECS


class KeyUse:
    """The cryptographic operations of ``KmsBackend`` (``models.py``)."""

    lock: threading.RLock
    region: str
    account_id: str
    clock: Clock
    settings: FidelitySettings
    keys: dict[str, Key]

    def _usable(self, key_id: str, version_id: str | None = None) -> Key:
        key = self.get_key(key_id)
        if key.state != ENABLED:
            raise state_rejected(key.state)
        if version_id is not None and version_id != key.primary_version:
            raise ApiError(
                "Forbidden.KeyVersionNotFound", f"The key version {version_id} is not found.", 404
            )
        return key

    def public_key_pem(self, key_id: str, version_id: str) -> str:
        key = self._usable(key_id, version_id)
        if not key.asymmetric:
            raise unsupported_operation("GetPublicKey needs an asymmetric key.")
        return crypto.public_key_pem(key)

    def _asym(self, key_id: str, version_id: str, usage: str, algorithm: str) -> Key:
        key = self._usable(key_id, version_id)
        spec = KEY_SPECS.get(key.key_spec)
        if spec is None or key.key_usage != usage:
            raise unsupported_operation(f"The key usage of {key_id} is not {usage}.")
        allowed = spec.sign_algorithms if usage == "SIGN/VERIFY" else spec.encrypt_algorithms
        if algorithm not in allowed:
            raise invalid_parameter("Algorithm", f"{key.key_spec} supports {', '.join(allowed)}")
        return key

    def sign(self, key_id: str, version_id: str, algorithm: str, digest: bytes) -> bytes:
        key = self._asym(key_id, version_id, "SIGN/VERIFY", algorithm)
        return crypto.sign(key, algorithm, digest)

    def verify(
        self, key_id: str, version_id: str, algorithm: str, digest: bytes, signature: bytes
    ) -> bool:
        key = self._asym(key_id, version_id, "SIGN/VERIFY", algorithm)
        return crypto.verify(key, algorithm, digest, signature)

    def asymmetric_encrypt(
        self, key_id: str, version_id: str, algorithm: str, plaintext: bytes
    ) -> bytes:
        key = self._asym(key_id, version_id, "ENCRYPT/DECRYPT", algorithm)
        return crypto.asymmetric_encrypt(key, algorithm, plaintext)

    def asymmetric_decrypt(
        self, key_id: str, version_id: str, algorithm: str, ciphertext: bytes
    ) -> bytes:
        key = self._asym(key_id, version_id, "ENCRYPT/DECRYPT", algorithm)
        return crypto.asymmetric_decrypt(key, algorithm, ciphertext)

    def encrypt(
        self, key_id: str, plaintext: bytes, context: dict[str, str] | None
    ) -> tuple[Key, str]:
        key = self._usable(key_id)
        if key.asymmetric:
            raise unsupported_operation("Encrypt needs a symmetric key; use AsymmetricEncrypt.")
        return key, crypto.envelope_encrypt(key, plaintext, context)

    def decrypt(self, blob_b64: str, context: dict[str, str] | None) -> tuple[Key, str, bytes]:
        parsed = crypto.envelope_parse(blob_b64)
        key = self._usable(parsed[0])
        return key, parsed[1], crypto.envelope_decrypt(key, parsed, context)

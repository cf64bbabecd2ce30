"""Bring your own key: GetParametersForImport (a wrapping key and an import token, which expires
and of which a key keeps a bounded number), ImportKeyMaterial (unwrapped and checked by
aliyun-local's own code, ``unwrap.py``) and DeleteKeyMaterial."""

from __future__ import annotations

import secrets
import threading

from ..clock import Clock
from . import unwrap
from .errors import (
    ApiError,
    import_rejected,
    invalid_key_material,
    invalid_parameter,
    unsupported_operation,
    unsupported_origin,
)
from .keypool import RsaKeyPool
from .keys import ENABLED, PENDING_DELETION, ImportToken, Key
from .settings import FidelitySettings
from .specs import HSM, KEY_SPECS
from .wrapkeys import new_wrapping_key, wrapping_public_key_der

TOKEN_TTL_SECONDS = 24 * 3600
MAX_TOKENS_PER_KEY = 50
RSA_WRAPPING = "RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD"


class KeyImport:
    """Import tokens and imported material, for ``KmsBackend`` (``models.py``)."""

    lock: threading.RLock
    region: str
    account_id: str
    clock: Clock
    settings: FidelitySettings
    keys: dict[str, Key]
    tokens: dict[str, ImportToken]
    key_pool: RsaKeyPool

    def get_parameters_for_import(
        self, key_id: str, algorithm: str, wrapping_key_spec: str
    ) -> tuple[ImportToken, bytes]:
        key = self.get_key(key_id)
        if key.origin != "EXTERNAL":
            raise unsupported_origin("GetParametersForImport")
        spec = KEY_SPECS[key.key_spec]
        if algorithm != spec.wrapping_algorithm:
            raise invalid_parameter(
                "WrappingAlgorithm",
                f"{key.key_spec} keys are imported with {spec.wrapping_algorithm}",
            )
        if wrapping_key_spec != spec.wrapping_key_spec:
            raise invalid_parameter(
                "WrappingKeySpec", f"{algorithm} needs wrapping key spec {spec.wrapping_key_spec}"
            )
        if key.protection_level == HSM and not self.settings.hardware_accepts_asymmetric_import:
            raise unsupported_operation(
                "This hardware KMS instance does not accept imported asymmetric key material."
            )
        # Key generation runs outside the lock; RSA keys come from the helper-process pool.
        wrapping_key = (
            self.key_pool.take() if algorithm == RSA_WRAPPING else new_wrapping_key(algorithm)
        )
        token = ImportToken(
            token=secrets.token_urlsafe(48),
            key_id=key.key_id,
            algorithm=algorithm,
            wrapping_key=wrapping_key,
            expires=self.clock.now() + TOKEN_TTL_SECONDS,
        )
        with self.lock:
            self._prune_tokens(key.key_id)
            self.tokens[token.token] = token
            self.changed()
        return token, wrapping_public_key_der(wrapping_key)

    def _prune_tokens(self, key_id: str) -> None:
        now = self.clock.now()
        for t in [t for t, v in self.tokens.items() if v.expires <= now]:
            del self.tokens[t]
        mine = [v for v in self.tokens.values() if v.key_id == key_id]
        for v in sorted(mine, key=lambda v: v.expires)[
            : max(0, len(mine) - MAX_TOKENS_PER_KEY + 1)
        ]:
            del self.tokens[v.token]

    def import_key_material(
        self, key_id: str, encrypted: str, token_text: str, expire_unix: int
    ) -> None:
        key = self.get_key(key_id)
        if key.origin != "EXTERNAL":
            raise unsupported_origin("ImportKeyMaterial")
        if key.state == PENDING_DELETION:
            raise import_rejected(key.state)
        with self.lock:
            token = self.tokens.get(token_text)
        if token is None or token.key_id != key.key_id:
            raise ApiError("InvalidImportToken", "The import token is invalid.", 400)
        now = self.clock.now()
        if token.expires <= now:
            raise ApiError("ExpiredImportToken", "The import token has expired.", 400)
        if expire_unix < 0 or (expire_unix and expire_unix <= now):
            raise invalid_parameter("KeyMaterialExpireUnix", "must be 0 or a time in the future")
        # Opened and checked by aliyun-local's own code, never the agent's (see unwrap.py).
        try:
            tak = unwrap.unwrap(encrypted, token.wrapping_key, token.algorithm)
        except unwrap.UnwrapFailed:
            raise invalid_key_material("it does not unwrap with the import token's key") from None
        try:
            fingerprint = unwrap.material_fingerprint(tak, key.key_spec)
        except unwrap.UnwrapFailed as exc:
            raise invalid_key_material(str(exc)) from None
        finally:
            material = bytes(tak)
            tak[:] = bytes(len(tak))
        with self.lock:
            key = self.get_key(key_id)  # re-read: the state may have moved meanwhile
            if key.state == PENDING_DELETION:
                raise import_rejected(key.state)
            if key.bound_fingerprint is not None and key.bound_fingerprint != fingerprint:
                raise self._different_material()
            key.bound_fingerprint = fingerprint
            if self.settings.disabled_key_after_import == ENABLED:
                key.disabled = False
            key.material = material
            key.material_expire = expire_unix
            key.import_count += 1
            key._loaded = None
            self.changed()

    def _different_material(self) -> ApiError:
        code = self.settings.different_material_error
        if code == "InvalidKeyMaterial":
            return invalid_key_material("it differs from the key's first imported material")
        if code == "InvalidParameter":
            return invalid_parameter("EncryptedKeyMaterial", "the key material is invalid")
        return unsupported_operation("The key material cannot be imported into this key.")

    def delete_key_material(self, key_id: str) -> None:
        with self.lock:
            key = self.get_key(key_id)
            if key.origin != "EXTERNAL":
                raise unsupported_origin("DeleteKeyMaterial")
            key.material = None
            key.material_expire = 0
            key._loaded = None
            self.changed()

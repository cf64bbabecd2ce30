"""Sealers: how an envelope's data key is protected.

* ``LocalKeySealer`` -- a 32-byte key file, for self-hosted runs and tests. The file must be
  owned by the running user and mode 0600 (or 0400); ``byok-keeper seal-key new PATH`` makes one.
* ``KmsSealer`` -- a symmetric KMS key: GenerateDataKey and Decrypt with an EncryptionContext
  naming the byok-keeper key id and fingerprint, so a data key only opens for its own envelope.
  Production FC deployments use this.

Both bind the same context (key id and fingerprint) to the wrapped data key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..crypto.material import wipe
from ..domain.errors import ConfigError, InputError
from ..domain.files import FileTooLarge, read_capped, write_new
from ..gateway.kms.errors import KmsApiError

if TYPE_CHECKING:
    from ..gateway.kms.gateway import KmsGateway  # the vault loads no SDK until a gateway is used

SEAL_KEY_BYTES = 32


class SealError(InputError):
    """A data key did not open: wrong seal key, wrong context, or a tampered envelope.

    An input error (exit 2): the envelope or the configuration must change, retrying will not
    help."""


def seal_context(key_id: str, fingerprint: str) -> dict[str, str]:
    return {"byok-keeper:key-id": key_id, "byok-keeper:fingerprint": fingerprint}


class Sealer(Protocol):
    kind: str
    key_ref: str

    def new_data_key(self, context: dict[str, str]) -> tuple[bytearray, str]: ...

    def open_data_key(self, wrapped: str, context: dict[str, str]) -> bytearray: ...


def _canonical(context: dict[str, str]) -> bytes:
    return json.dumps(context, sort_keys=True, separators=(",", ":")).encode()


class LocalKeySealer:
    kind = "local"

    def __init__(self, key: bytes | bytearray) -> None:
        if len(key) != SEAL_KEY_BYTES:
            raise ConfigError(f"a seal key is exactly {SEAL_KEY_BYTES} bytes")
        self._key = bytearray(key)
        # An identity for the key that reveals nothing about it.
        digest = hashlib.sha256(b"byok-keeper seal key id\0" + bytes(self._key)).hexdigest()
        self.key_ref = f"local:{digest[:16]}"

    @classmethod
    def from_file(cls, path: str | Path) -> LocalKeySealer:
        """Load a seal key file: a regular file (a symlink to one is fine: Kubernetes secret
        mounts), owned by the running user, mode 0600 or stricter, exactly 32 bytes. Checked on
        the opened descriptor; at most 33 bytes are read."""
        path = Path(path)
        try:
            data, st = read_capped(path, SEAL_KEY_BYTES, "seal key file")
        except FileNotFoundError:
            raise ConfigError(f"cannot read seal key file {path}: no such file") from None
        except FileTooLarge:
            raise ConfigError(
                f"seal key file {path} must hold exactly {SEAL_KEY_BYTES} bytes (it holds more)"
            ) from None
        try:
            mode = stat.S_IMODE(st.st_mode)
            if st.st_uid != os.geteuid():
                raise ConfigError(
                    f"seal key file {path} is owned by uid {st.st_uid}, not by the user running "
                    f"byok-keeper (uid {os.geteuid()}); run: chown $(id -u) {path}"
                )
            if mode & 0o077:
                raise ConfigError(
                    f"seal key file {path} is accessible by group or others "
                    f"(mode {mode:04o}); run: chmod 600 {path}"
                )
            if mode & 0o100:
                raise ConfigError(f"seal key file {path} is executable; run: chmod 600 {path}")
            if len(data) != SEAL_KEY_BYTES:
                raise ConfigError(
                    f"seal key file {path} must hold exactly {SEAL_KEY_BYTES} bytes "
                    f"(it holds {len(data)}); make one with: byok-keeper seal-key new {path}"
                )
            return cls(data)
        finally:
            wipe(data)

    def new_data_key(self, context: dict[str, str]) -> tuple[bytearray, str]:
        data_key = bytearray(os.urandom(32))
        nonce = os.urandom(12)
        wrapped = AESGCM(self._key).encrypt(nonce, data_key, _canonical(context))
        return data_key, base64.b64encode(nonce + wrapped).decode()

    def open_data_key(self, wrapped: str, context: dict[str, str]) -> bytearray:
        try:
            blob = base64.b64decode(wrapped, validate=True)
        except (binascii.Error, ValueError):
            raise SealError("the envelope's wrapped data key is not Base64") from None
        if len(blob) != 12 + 32 + 16:
            raise SealError("the envelope's wrapped data key has the wrong length")
        out = bytearray(32)
        try:
            AESGCM(self._key).decrypt_into(blob[:12], blob[12:], _canonical(context), out)
        except InvalidTag:
            raise SealError(
                "the envelope's data key does not open with this seal key and context"
            ) from None
        return out

    def __repr__(self) -> str:
        return f"LocalKeySealer(key_ref={self.key_ref})"


def new_seal_key_file(path: str | Path) -> str:
    """Create a fresh 32-byte seal key file (mode 0600, never overwriting). Returns key_ref."""
    key = bytearray(os.urandom(SEAL_KEY_BYTES))
    try:
        write_new(path, key, "a seal key file")
        return LocalKeySealer(key).key_ref
    finally:
        wipe(key)


class KmsSealer:
    kind = "kms"

    def __init__(self, gateway: KmsGateway, key_id: str) -> None:
        self._gateway = gateway
        self.key_ref = key_id

    def new_data_key(self, context: dict[str, str]) -> tuple[bytearray, str]:
        dk = self._gateway.generate_data_key(self.key_ref, context)
        return dk.plaintext, dk.ciphertext_blob

    def open_data_key(self, wrapped: str, context: dict[str, str]) -> bytearray:
        try:
            return self._gateway.decrypt_data_key(wrapped, context)
        except KmsApiError as exc:
            if exc.code in ("InvalidCiphertext", "Rejected.InvalidCiphertext"):
                raise SealError(
                    "KMS refused to decrypt the envelope's data key: the EncryptionContext "
                    "(key id, fingerprint) does not match, or the data key belongs elsewhere "
                    f"(request id {exc.request_id})"
                ) from None
            raise

    def __repr__(self) -> str:
        return f"KmsSealer(key_ref={self.key_ref})"


def kms_sealer(key_id: str, gateway: KmsGateway | None) -> KmsSealer:
    """The registry's ``kms`` sealer: data keys from the KMS key ``key_id``."""
    if gateway is None:
        raise ConfigError("a KMS sealer needs KMS access")
    return KmsSealer(gateway, key_id or "")

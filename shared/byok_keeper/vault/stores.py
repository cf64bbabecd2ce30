"""Stores: where sealed envelopes live.

* ``FileStore`` (``file://DIR``): one file per key, ``DIR/<key-id>.json``, mode 0600, written
  atomically (temp file, fsync, rename, fsync of the directory); read as regular files only,
  at most the envelope cap plus one byte.
* ``SecretsStore`` (``kms-secrets://PREFIX``): Alibaba Cloud Secrets Manager generic secrets
  named ``PREFIX/<key-id>``; CreateSecret the first time, PutSecretValue for updates (the
  version id is derived from the content, so a retried write is idempotent), GetSecretValue to
  read.

Both refuse to replace an envelope that holds different material (another fingerprint) for the
same key id, and both list their inventory without unsealing anything.

Retiring (``byok-keeper vault retire``, ``retire.py``) moves a ``FileStore`` envelope aside,
unchanged and still sealed, into ``DIR/retired/<key-id>.json`` with one atomic rename (the
inventory does not list it); restoring renames it back. A ``SecretsStore`` cannot retire yet
(moving a secret needs DeleteSecret, which the agent's RAM policy does not grant): it says so.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from ..domain.errors import ConfigError, ExecutionError
from ..domain.files import FileTooLarge, read_capped, replace_atomically
from ..domain.model import check_key_id
from ..gateway.kms.errors import KmsApiError
from .envelope import MAX_ENVELOPE_BYTES, EnvelopeError, parse

if TYPE_CHECKING:
    from ..gateway.kms.gateway import KmsGateway  # the vault loads no SDK until a gateway is used


class VaultConflict(ExecutionError):
    """The vault already holds different material for this key id."""

    exit_code = 2


class Store(Protocol):
    uri: str

    def read(self, key_id: str) -> bytes | None: ...

    def write(self, key_id: str, data: bytes, fingerprint: str) -> None: ...

    def list_key_ids(self) -> list[str]: ...

    def list_retired(self) -> list[str]: ...

    def read_retired(self, key_id: str) -> bytes | None: ...

    def move(self, key_id: str, *, retire: bool) -> None: ...

    def retired_store(self) -> Store | None: ...


def _refuse_other_material(existing: bytes | None, key_id: str, fingerprint: str) -> None:
    if existing is None:
        return
    try:
        current = parse(existing, expected_key_id=key_id).fingerprint
    except EnvelopeError:
        raise VaultConflict(
            f"the vault holds an unreadable envelope for {key_id}; it is never overwritten "
            "automatically: inspect and remove it by hand"
        ) from None
    if current != fingerprint:
        raise VaultConflict(
            f"the vault already holds different material for {key_id} (fingerprint "
            f"{current[:16]}..., this material {fingerprint[:16]}...); refusing to overwrite it"
        )


class FileStore:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.uri = f"file://{self.directory}"

    def _path(self, key_id: str) -> Path:
        return self.directory / f"{check_key_id(key_id)}.json"

    def read(self, key_id: str) -> bytes | None:
        """The envelope's bytes, or None. A regular file only (checked after opening), and
        never more than the envelope cap plus one byte (``parse`` refuses that one)."""
        try:
            data, _ = read_capped(self._path(key_id), MAX_ENVELOPE_BYTES, "envelope")
        except FileNotFoundError:
            return None
        except FileTooLarge as exc:
            raise EnvelopeError(str(exc)) from None
        return bytes(data)

    def write(self, key_id: str, data: bytes, fingerprint: str) -> None:
        _refuse_other_material(self.read(key_id), key_id, fingerprint)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create vault directory {self.directory}: {exc.strerror}"
            ) from None
        replace_atomically(self._path(key_id), data, 0o600)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def list_key_ids(self) -> list[str]:
        return _json_names(self.directory)

    def list_retired(self) -> list[str]:
        return _json_names(self.directory / RETIRED)

    def read_retired(self, key_id: str) -> bytes | None:
        return FileStore(self.directory / RETIRED).read(key_id)

    def retired_store(self) -> FileStore:
        """The retired envelopes as a store of their own (``vault reseal`` reseals them too)."""
        return FileStore(self.directory / RETIRED)

    def move(self, key_id: str, *, retire: bool) -> None:
        """Move the envelope into ``retired/`` (``retire``) or back, never replacing a file,
        then fsync both directories. Raises ``VaultConflict`` when the destination holds other
        material, even one written after the check (a concurrent enrollment)."""
        aside = self.directory / RETIRED
        src, dst = (self.directory, aside) if retire else (aside, self.directory)
        name = f"{check_key_id(key_id)}.json"
        data = FileStore(src).read(key_id)
        if data is None:
            raise EnvelopeError(f"no envelope for {key_id} in {src}")
        fingerprint = parse(data, expected_key_id=key_id).fingerprint
        _refuse_other_material(FileStore(dst).read(key_id), key_id, fingerprint)
        aside.mkdir(mode=0o700, exist_ok=True)
        try:
            os.link(src / name, dst / name)  # unlike a rename, it never replaces the destination
        except FileExistsError:  # written since the check, or left by a crash after the link
            _refuse_other_material(FileStore(dst).read(key_id), key_id, fingerprint)
        os.unlink(src / name)
        for directory in (src, dst):
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


RETIRED = "retired"


def _json_names(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(
        p.name[: -len(".json")]
        for p in directory.iterdir()
        if p.name.endswith(".json") and not p.name.startswith(".")
    )


class SecretsStore:
    def __init__(self, gateway: KmsGateway, prefix: str) -> None:
        prefix = prefix.strip("/")
        if not prefix or not all(c.isalnum() or c in "-_/." for c in prefix):
            raise ConfigError(f"invalid kms-secrets prefix {prefix!r}")
        self._gateway = gateway
        self.prefix = prefix
        self.uri = f"kms-secrets://{prefix}"

    def _name(self, key_id: str) -> str:
        return f"{self.prefix}/{check_key_id(key_id)}"

    def read(self, key_id: str) -> bytes | None:
        value = self._gateway.get_secret_value(self._name(key_id))
        return None if value is None else value.data.encode()

    def write(self, key_id: str, data: bytes, fingerprint: str) -> None:
        name = self._name(key_id)
        existing = self.read(key_id)
        _refuse_other_material(existing, key_id, fingerprint)
        if existing == data:
            return
        version = hashlib.sha256(data).hexdigest()[:32]
        text = data.decode()
        if existing is None:
            try:
                self._gateway.create_secret(name, text, version)
                return
            except KmsApiError as exc:
                if exc.code != "Rejected.ResourceExist":
                    raise
                # Created meanwhile (a retry, or a concurrent enrollment): check it again.
                _refuse_other_material(self.read(key_id), key_id, fingerprint)
        self._gateway.put_secret_value(name, text, version)

    def list_retired(self) -> list[str]:
        return []  # nothing can be retired here yet (see the module docstring)

    def read_retired(self, key_id: str) -> bytes | None:
        return None

    def retired_store(self) -> None:
        return None

    def move(self, key_id: str, *, retire: bool) -> None:
        raise ConfigError(
            f"vault retire/restore works on file:// vaults only; {self.uri} would need "
            "DeleteSecret, which byok-keeper's RAM policy does not grant"
        )

    def list_key_ids(self) -> list[str]:
        start = f"{self.prefix}/"
        return sorted(
            n[len(start) :]
            for n in self._gateway.list_secret_names(start)
            if n.startswith(start) and "/" not in n[len(start) :]
        )


def file_store(uri: str) -> FileStore:
    """``file://DIR`` or a plain path (the registry's ``file`` store)."""
    parts = urlsplit(uri)
    path = (parts.netloc + parts.path) if parts.scheme else uri
    if not path:
        raise ConfigError(f"invalid vault URI {uri!r}: file://DIR needs a directory")
    return FileStore(Path(path))


def secrets_store(uri: str, gateway: KmsGateway | None) -> SecretsStore:
    """``kms-secrets://PREFIX`` (the registry's ``kms-secrets`` store): Secrets Manager in the
    account and region ``gateway`` signs for."""
    if gateway is None:
        raise ConfigError("a kms-secrets:// vault needs KMS access")
    parts = urlsplit(uri)
    return SecretsStore(gateway, parts.netloc + parts.path)

"""Secrets Manager, as far as byok-keeper uses it (the vault's ``kms-secrets`` store): generic
secrets with versions and stages, optionally encrypted under a symmetric KMS key."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import invalid_parameter, resource_exists, resource_not_found


@dataclass
class SecretVersion:
    version_id: str
    data: str
    data_type: str
    created: float
    stages: list[str]


@dataclass
class Secret:
    name: str
    arn: str
    created: float
    updated: float
    description: str
    encryption_key_id: str
    versions: list[SecretVersion] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)

    def version(self, version_id: str | None, stage: str | None) -> SecretVersion:
        for v in self.versions:
            if (version_id is None or v.version_id == version_id) and (
                stage is None or stage in v.stages
            ):
                return v
        raise resource_not_found(f"The secret version of {self.name}")

    def to_state(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["versions"] = [dict(v.__dict__) for v in self.versions]
        return d

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Secret:
        d = dict(d)
        d["versions"] = [SecretVersion(**v) for v in d["versions"]]
        return cls(**d)


class SecretStore:
    """The secrets of one region of one account. Shares the KMS backend's lock; ``check_key``
    is the backend's "is this key usable" rule (a disabled CMK blocks reads, as in KMS)."""

    def __init__(
        self,
        region: str,
        account_id: str,
        now: Callable[[], float],
        check_key: Callable[[str], Any],
        lock: threading.RLock,
        on_change: Callable[[], None],
    ) -> None:
        self.region = region
        self.account_id = account_id
        self._now = now
        self._check_key = check_key
        self.lock = lock
        self._on_change = on_change
        self.secrets: dict[str, Secret] = {}

    def to_state(self) -> list[dict[str, Any]]:
        with self.lock:
            return [s.to_state() for s in self.secrets.values()]

    def load_state(self, state: list[dict[str, Any]]) -> None:
        with self.lock:
            self.secrets = {s["name"]: Secret.from_state(s) for s in state}

    def clear(self) -> None:
        with self.lock:
            self.secrets.clear()

    def _check_secret_key(self, encryption_key_id: str) -> None:
        if encryption_key_id:
            key = self._check_key(encryption_key_id)
            if key.asymmetric:
                raise invalid_parameter("EncryptionKeyId", "must be a symmetric key")

    def create(
        self,
        name: str,
        data: str,
        data_type: str,
        version_id: str,
        encryption_key_id: str,
        description: str,
        tags: dict[str, str],
    ) -> Secret:
        self._check_secret_key(encryption_key_id)
        with self.lock:
            if name in self.secrets:
                raise resource_exists(f"The secret {name}")
            now = self._now()
            secret = Secret(
                name=name,
                arn=f"acs:kms:{self.region}:{self.account_id}:secret/{name}",
                created=now,
                updated=now,
                description=description,
                encryption_key_id=encryption_key_id,
                versions=[SecretVersion(version_id, data, data_type, now, ["ACSCurrent"])],
                tags=dict(tags),
            )
            self.secrets[name] = secret
            self._on_change()
            return secret

    def get(self, name: str) -> Secret:
        with self.lock:
            secret = self.secrets.get(name)
            if secret is None:
                raise resource_not_found(f"The secret {name}")
            return secret

    def get_value(
        self, name: str, version_id: str | None, stage: str | None
    ) -> tuple[Secret, SecretVersion]:
        with self.lock:
            secret = self.get(name)
            if secret.encryption_key_id:
                self._check_key(secret.encryption_key_id)  # a disabled CMK blocks reads
            if version_id is None and stage is None:
                stage = "ACSCurrent"
            return secret, secret.version(version_id, stage)

    def put_value(self, name: str, data: str, data_type: str, version_id: str) -> SecretVersion:
        with self.lock:
            secret = self.get(name)
            for v in secret.versions:
                if v.version_id == version_id:
                    if v.data == data and v.data_type == data_type:
                        return v  # same version, same value: an idempotent success
                    raise resource_exists(f"The secret version {version_id}")
            now = self._now()
            for v in secret.versions:
                if "ACSPrevious" in v.stages:
                    v.stages.remove("ACSPrevious")
                if "ACSCurrent" in v.stages:
                    v.stages.remove("ACSCurrent")
                    v.stages.append("ACSPrevious")
            # Keep the current and previous versions plus a bounded history.
            secret.versions = [v for v in secret.versions if v.stages][-8:]
            new = SecretVersion(version_id, data, data_type, now, ["ACSCurrent"])
            secret.versions.append(new)
            secret.updated = now
            self._on_change()
            return new

    def list(self, filters: Any) -> list[Secret]:
        """ListSecrets' ``Filters``, all secrets sorted by name. Best guess at the filter:
        ``{"Key": "SecretName", "Values": [...]}`` matches names containing any of the values
        (the docs call it a fuzzy match)."""
        needles: list[str] = []
        for f in filters if isinstance(filters, list) else [None]:
            if not isinstance(f, dict) or f.get("Key") != "SecretName":
                raise invalid_parameter("Filters", 'only {"Key": "SecretName", "Values": [...]}')
            needles.extend(str(v) for v in f.get("Values", []))
        with self.lock:
            names = sorted(self.secrets)
            if needles:
                names = [n for n in names if any(x in n for x in needles)]
            return [self.secrets[n] for n in names]

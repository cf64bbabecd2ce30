"""KMS state and rules, per account and region: keys and their lookup here; their lifecycle
(``lifecycle.py``), aliases, tags and policy (``labels.py``), import (``imports.py``), use
(``usage.py``) and secrets (``secrets.py``) in modules of their own.

The rules follow Alibaba Cloud's KMS API reference, each with its source in docs/FIDELITY.md.
Where Alibaba Cloud's documentation is silent, the choice made here is marked "best guess"
and, where it matters to byok-keeper, is a setting.

A key's state is derived, never stored, so it cannot drift from the facts it comes from:
``PendingDeletion`` if deletion is scheduled, else ``PendingImport`` if it has no material
(never imported, deleted or expired), else ``Disabled`` if disabled, else ``Enabled``.
Expiry and the end of a deletion window are judged against the emulator clock on every access.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from ..clock import Clock, iso
from .errors import invalid_parameter, key_not_found
from .imports import KeyImport
from .keypool import RsaKeyPool
from .keys import DISABLED, ENABLED, PENDING_DELETION, PENDING_IMPORT, ImportToken, Key
from .labels import KeyLabels
from .lifecycle import DEFAULT_INSTANCES, KeyLifecycle
from .listing import Listing, next_change
from .secrets import SecretStore
from .settings import FidelitySettings
from .usage import KeyUse

__all__ = ["DISABLED", "ENABLED", "PENDING_DELETION", "PENDING_IMPORT", "KmsBackend"]

MAX_LIST_FILTERS = 10
LIST_FILTER_KEYS = (
    "KeyState",
    "KeySpec",
    "KeyUsage",
    "ProtectionLevel",
    "CreatorType",
    "DKMSInstanceId",
    "keyId",
    "AliasName",
    "Creator",
    "TagKey",
    "TagValue",
)


class KmsBackend(KeyLifecycle, KeyLabels, KeyImport, KeyUse):
    """One region of one account. Every public method takes the lock."""

    def __init__(
        self,
        region: str,
        account_id: str,
        clock: Clock,
        on_change: Callable[[], None] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.region = region
        self.account_id = account_id
        self.clock = clock
        # The settings it was started with (a profile and overrides); reset returns to them.
        self._startup_settings = dict(settings or {})
        self.settings = self._startup()
        self.instances = dict(DEFAULT_INSTANCES)
        self.keys: dict[str, Key] = {}
        self.tokens: dict[str, ImportToken] = {}
        self.aliases: dict[str, str] = {}  # alias name -> key id
        self.lock = threading.RLock()
        self._on_change = on_change or (lambda: None)
        self.secrets = SecretStore(
            region,
            account_id,
            now=lambda: self.clock.now(),
            check_key=self._usable,
            lock=self.lock,
            on_change=self.changed,
        )
        self.key_pool = RsaKeyPool()
        self.listing = Listing()  # ListKeys' answer, kept between pages

    def to_state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "keys": [k.to_state() for k in self.keys.values()],
                "tokens": [t.to_state() for t in self.tokens.values()],
                "secrets": self.secrets.to_state(),
                "aliases": dict(self.aliases),
                "settings": self.settings.to_json(),
            }

    def load_state(self, state: dict[str, Any]) -> None:
        with self.lock:
            self.listing.changed()
            self.keys = {k["key_id"]: Key.from_state(k) for k in state.get("keys", [])}
            self.tokens = {t["token"]: ImportToken.from_state(t) for t in state.get("tokens", [])}
            self.secrets.load_state(state.get("secrets", []))
            self.aliases = dict(state.get("aliases", {}))
            self.settings = FidelitySettings()
            self.settings.update(state.get("settings", {}))
            self.settings.update(self._startup_settings)  # the command line wins

    def reset(self) -> None:
        with self.lock:
            self.listing.changed()
            self.keys.clear()
            self.tokens.clear()
            self.secrets.clear()
            self.aliases.clear()
            self.settings = self._startup()
            self.instances = dict(DEFAULT_INSTANCES)

    def _startup(self) -> FidelitySettings:
        settings = FidelitySettings()
        settings.update(self._startup_settings)
        return settings

    def changed(self) -> None:
        self.listing.changed()
        self._on_change()

    def _refresh(self, key: Key) -> Key | None:
        """Apply the clock: end deletion windows and expire material. None = key is gone."""
        now = self.clock.now()
        if key.delete_at is not None and now >= key.delete_at:
            del self.keys[key.key_id]
            for token in [t for t, v in self.tokens.items() if v.key_id == key.key_id]:
                del self.tokens[token]
            self.changed()
            return None
        if key.material is not None and key.material_expire and now >= key.material_expire:
            key.material = None
            key.material_expire = 0
            key._loaded = None
            self.changed()
        return key

    def get_key(self, key_id: str) -> Key:
        """The key called ``key_id``: a key id, or an alias name (``alias/...``)."""
        with self.lock:
            if key_id.startswith("alias/"):
                key_id = self.aliases.get(key_id, key_id)
            key = self.keys.get(key_id)
            if key is None or self._refresh(key) is None:
                raise key_not_found(key_id)
            return key

    def all_keys(self) -> list[Key]:
        with self.lock:
            return [k for k in list(self.keys.values()) if self._refresh(k) is not None]

    def list_keys(self, filters: Any) -> list[Key]:
        """ListKeys' ``Filters`` (a JSON list of ``{Key, Values}``), oldest key first. The same
        Key twice or several Values: OR. Different Keys: AND."""
        if not isinstance(filters, list) or len(filters) > MAX_LIST_FILTERS:
            raise invalid_parameter("Filters", f"a JSON list of at most {MAX_LIST_FILTERS} filters")
        merged: dict[str, list[str]] = {}
        for f in filters:
            if (
                not isinstance(f, dict)
                or f.get("Key") not in LIST_FILTER_KEYS
                or not isinstance(f.get("Values"), list)
            ):
                raise invalid_parameter(
                    "Filters",
                    f"each filter is {{Key, Values}} with Key in {', '.join(LIST_FILTER_KEYS)}",
                )
            merged.setdefault(f["Key"], []).extend(str(v) for v in f["Values"])

        def build() -> tuple[list[Key], float]:
            keys = sorted(self.all_keys(), key=lambda k: (k.created, k.key_id))
            return [k for k in keys if _matches(k, list(merged.items()))], next_change(keys)

        with self.lock:
            return self.listing.get(json.dumps(merged), self.clock.now(), build)

    def emulator_view(self, key_id: str) -> dict[str, Any]:
        with self.lock:
            key = self.get_key(key_id)
            return {
                "key_id": key.key_id,
                "state": key.state,
                "origin": key.origin,
                "key_spec": key.key_spec,
                # The material bound to the key by its first import (null before it), whether
                # or not that material is present right now (see has_material).
                "material_fingerprint": key.bound_fingerprint,
                "has_material": key.material is not None,
                "material_expire_time": iso(key.material_expire) if key.material_expire else None,
                "import_count": key.import_count,
                "tags": dict(key.tags),
                "aliases": sorted(n for n, k in self.aliases.items() if k == key.key_id),
                "description": key.description,
                "policy": key.policy or None,
            }


def _matches(key: Key, filters: list[tuple[str, list[str]]]) -> bool:
    for name, values in filters:
        if name == "TagKey":
            ok = any(k in values for k in key.tags)
        elif name == "TagValue":
            ok = any(v in values for v in key.tags.values())
        else:
            actual = {
                "KeyState": key.state,
                "KeySpec": key.key_spec,
                "KeyUsage": key.key_usage,
                "ProtectionLevel": key.protection_level,
                "CreatorType": "User",
                "DKMSInstanceId": key.instance_id,
                "keyId": key.key_id,
                "AliasName": "",
                "Creator": key.creator,
            }[name]
            ok = actual in values
        if not ok:
            return False
    return True

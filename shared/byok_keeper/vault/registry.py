"""The vault's backends, one table: a store per URI scheme (``BYOK_VAULT``), a sealer per kind
(the envelope's ``seal.sealer``), each saying what it needs.

A backend is named like an entry point: ``"module:function"``, imported only when first used
(``file://`` never loads the secrets code, ``pkcs11`` never loads the token's module unless
configured). A store's function is ``build(uri) -> Store``, a sealer's ``build(value) ->
Sealer`` with ``value`` its setting's (a path, a key id, a URI); a backend that ``needs_kms`` is
called ``build(value, gateway)``, ``gateway`` None when nothing reached KMS (it refuses that
itself, in one line).

A new built-in backend is one module and one row below. A site adds its own without forking
through entry points, groups ``byok_keeper.stores`` (name: the URI scheme) and
``byok_keeper.sealers`` (name: the kind); the entry point loads a ``StoreBackend`` or
``SealerBackend``. Built-in names resolve without reading entry points (reading them costs a
scan of every installed package); a scheme or kind not built in reads the group once per
process and loads only the entry point of that name. One that fails to load or is not the
backend it names is refused in one line naming it; so, once the group is read, is any entry
point named like a built-in: a built-in is never replaced, silently or at all (docs/CUSTODY.md).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlsplit

from ..domain.errors import ConfigError

STORE_GROUP = "byok_keeper.stores"
SEALER_GROUP = "byok_keeper.sealers"
NO_VAULT = "no vault configured: set BYOK_VAULT or --vault (file://DIR or kms-secrets://PREFIX)"


@dataclass(frozen=True)
class StoreBackend:
    """Where envelopes live. ``shared``: one store every target sees (a target then sees only
    the envelopes of its own account and region, ``multi.TargetVault``); not shared: it lives in
    each target's own account (``kms-secrets``)."""

    scheme: str
    build: str | Callable[..., Any]  # "module:function", or the function itself (plugins)
    needs_kms: bool = False
    shared: bool = True

    def open(self, uri: str, gateway: Any = None) -> Any:
        """The store ``uri`` names (``gateway`` only for a store that needs KMS)."""
        build = _resolve(self.build)
        return build(uri, gateway) if self.needs_kms else build(uri)


@dataclass(frozen=True)
class SealerBackend:
    """What seals an envelope's data key. ``setting``: the ``Settings`` field that selects it
    (None: a plugin, chosen in code); ``check``: validates that setting's value when settings
    load, before anything runs."""

    kind: str
    build: str | Callable[..., Any]
    needs_kms: bool = False
    setting: str | None = None
    check: str | Callable[[str], Any] | None = None

    def open(self, value: str, gateway: Any = None) -> Any:
        """The sealer ``value`` configures (``gateway`` only for a sealer that needs KMS)."""
        build = _resolve(self.build)
        return build(value, gateway) if self.needs_kms else build(value)


_STORES = {
    "file": StoreBackend("file", "byok_keeper.vault.stores:file_store"),
    "kms-secrets": StoreBackend(
        "kms-secrets", "byok_keeper.vault.stores:secrets_store", needs_kms=True, shared=False
    ),
}
_SEALERS = {
    "local": SealerBackend(
        "local", "byok_keeper.vault.sealers:LocalKeySealer.from_file", setting="seal_key_file"
    ),
    "kms": SealerBackend(
        "kms", "byok_keeper.vault.sealers:kms_sealer", needs_kms=True, setting="seal_kms_key_id"
    ),
    "pkcs11": SealerBackend(
        "pkcs11",
        "byok_keeper.vault.pkcs11:build_pkcs11_sealer",
        setting="seal_pkcs11",
        check="byok_keeper.vault.pkcs11_uri:parse_uri",
    ),
}


def _resolve(ref: str | Callable[..., Any]) -> Callable[..., Any]:
    if callable(ref):
        return ref
    module, _, name = ref.partition(":")
    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    return target


@functools.cache
def _plugins(group: str) -> dict[str, tuple[Any, ...]]:
    """The group's entry points by name (read once per process, nothing loaded)."""
    found: dict[str, tuple[Any, ...]] = {}
    for ep in entry_points(group=group):
        found[ep.name] = (*found.get(ep.name, ()), ep)
    return found


def _plugin(group: str, name: str, builtins: dict[str, Any], kind: type, field: str) -> Any:
    """The built-in ``name`` (entry points not read), else the one entry point of that name;
    None if neither. Reading the group refuses any entry point named like a built-in."""
    if name in builtins:
        return builtins[name]
    plugins = _plugins(group)
    shadows = sorted(set(plugins) & set(builtins))
    if shadows:
        shadow = shadows[0]
        raise ConfigError(
            f"{group} plugin {shadow!r} ({plugins[shadow][0].value}) would replace the "
            f"built-in {shadow!r}: refused (a plugin takes a name of its own)"
        )
    eps = plugins.get(name, ())
    if not eps:
        return None
    if len(eps) > 1:
        values = ", ".join(ep.value for ep in eps)
        raise ConfigError(f"{group} plugin {name!r} is installed more than once ({values})")
    (ep,) = eps
    try:
        backend = ep.load()
    except Exception as exc:  # a broken plugin: its name and the error's type and first line
        first = (str(exc).splitlines() or [""])[0][:200]
        raise ConfigError(
            f"{group} plugin {name!r} ({ep.value}) failed to load: {type(exc).__name__}: {first}"
        ) from None
    if not isinstance(backend, kind) or getattr(backend, field) != name:
        raise ConfigError(
            f"{group} plugin {name!r} ({ep.value}) is not a {kind.__name__} named {name!r}"
        )
    return backend


def store_scheme(uri: str) -> str:
    """The URI's scheme; a plain path is ``file``."""
    return urlsplit(uri).scheme or "file"


def store_backend(uri: str) -> StoreBackend:
    """The store ``uri`` names. ``ConfigError`` for no URI or a scheme nobody provides."""
    if not uri:
        raise ConfigError(NO_VAULT)
    backend = _plugin(STORE_GROUP, store_scheme(uri), _STORES, StoreBackend, "scheme")
    if backend is None:
        raise ConfigError(f"invalid vault URI {uri!r}: expected file://DIR or kms-secrets://PREFIX")
    return backend


def sealer_backend(kind: str) -> SealerBackend | None:
    """The sealer of ``kind`` (an envelope's ``seal.sealer``), None if nobody provides it."""
    return _plugin(SEALER_GROUP, kind, _SEALERS, SealerBackend, "kind")


def sealer_settings() -> tuple[SealerBackend, ...]:
    """The built-in sealers a setting selects, in the settings' order."""
    return tuple(b for b in _SEALERS.values() if b.setting)


def check_setting(name: str, value: str) -> None:
    """Validate a sealer setting's value as its backend reads it (``pkcs11`` refuses
    ``pin-value``, a relative or writable module...), when settings load."""
    for backend in sealer_settings():
        if backend.setting == name and backend.check is not None:
            _resolve(backend.check)(value)


def needs_kms(vault_uri: str | None, *sealer_values: tuple[str, str | None]) -> bool:
    """Whether the vault ``vault_uri`` or a configured sealer (``(setting, value)`` pairs)
    lives in KMS. No URI, or one nobody provides: False (building the store says why)."""
    if vault_uri:
        scheme = store_scheme(vault_uri)
        backend = _plugin(STORE_GROUP, scheme, _STORES, StoreBackend, "scheme")
        if backend is not None and backend.needs_kms:
            return True
    chosen = {setting for setting, value in sealer_values if value}
    return any(b.needs_kms for b in sealer_settings() if b.setting in chosen)


def store_is_shared(uri: str) -> bool:
    """Whether the store ``uri`` names is one every target sees (not one per account)."""
    return store_backend(uri).shared

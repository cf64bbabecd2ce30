"""One runtime: the typed dependencies every entrypoint (CLI, FC handlers, daemon) works with,
built in one place from ``Settings``.

``build_deps`` is the only constructor: it builds the KMS gateway under an allowlist (the
entrypoint's least privilege), the vault over it, the audit log and the renewal policy. FC keeps
one ``Deps`` per warm container (``fc.Runtime``); the daemon keeps one for its life; the CLI
builds one per command.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..domain.audit import AuditLog
from ..domain.errors import ConfigError
from ..gateway.kms import Allowlist, KmsGateway
from ..planning.plan import Policy
from ..vault import Vault
from .factory import build_gateway, build_vault
from .settings import Settings

if TYPE_CHECKING:
    from ..gateway.kms.gateway import Renewal
    from ..vault.sealers import Sealer


@dataclass(frozen=True)
class Deps:
    """What the core needs to act: never built by hand outside ``build_deps`` (tests aside)."""

    settings: Settings
    gateway: KmsGateway
    vault: Vault | None  # None for commands that never open an envelope (hold, release)
    audit: AuditLog
    policy: Policy
    region: str
    account_id: str
    credential: Any = None  # the STS credential FC passed, for the FC client too
    renewal: Renewal | None = None  # the target's assumed role behind ``credential``, if any

    @property
    def clock(self) -> Callable[[], datetime]:
        """KMS's clock as this process sees it (``gateway.now``)."""
        return self.gateway.now

    def require_vault(self) -> Vault:
        if self.vault is None:  # pragma: no cover - a wiring bug, not an input
            raise RuntimeError("these dependencies were built without a vault")
        return self.vault


def policy_for(settings: Settings) -> Policy:
    return Policy(
        renew_before=timedelta(seconds=settings.renew_before_seconds),
        sweep_interval=timedelta(seconds=settings.sweep_interval_seconds),
    )


def build_deps(
    settings: Settings,
    allowlist: Allowlist,
    *,
    credential: Any = None,
    with_vault: bool = True,
    region: str | None = None,
    account_id: str | None = None,
    renewal: Renewal | None = None,
) -> Deps:
    """Dependencies under ``allowlist``. ``region``/``account_id`` override the settings' (FC
    takes them from its context); ``credential`` signs KMS (and FC) calls when given;
    ``renewal`` is the assumed role behind it (``multi.target_deps``)."""
    gateway = build_gateway(settings, allowlist, credential=credential, renewal=renewal)
    return Deps(
        settings=settings,
        gateway=gateway,
        vault=build_vault(settings, gateway) if with_vault else None,
        audit=AuditLog(settings.audit_file),
        policy=policy_for(settings),
        region=region or settings.region or "",
        account_id=account_id or settings.account_id or "",
        credential=credential,
        renewal=renewal,
    )


def local_actor() -> str:
    """Who runs this process: ``BYOK_ACTOR``, else the login name (``unknown`` in containers
    without a user database entry)."""
    import getpass

    try:
        return os.environ.get("BYOK_ACTOR") or getpass.getuser()
    except Exception:  # no user database entry (containers)
        return "unknown"


def _sealer_values(settings: Settings) -> tuple[tuple[str, str | None], ...]:
    """The sealer settings and their values (``vault.registry.needs_kms`` reads them)."""
    from ..vault.registry import sealer_settings

    return tuple((b.setting, getattr(settings, b.setting)) for b in sealer_settings() if b.setting)


def build_offline_vault(settings: Settings) -> Vault:
    """The vault for offline work (break-glass ``wrap``): KMS is reached, read-only, only when
    the vault itself or its seal lives there; a file vault with a local seal key needs none."""
    from ..gateway.kms import READ_ONLY
    from ..vault import build_sealer, build_store
    from ..vault.registry import needs_kms

    gateway = None
    if needs_kms(settings.vault, *_sealer_values(settings)):
        gateway = build_gateway(settings, READ_ONLY)  # the vault itself lives in KMS
    return Vault(
        build_store(settings.vault or "", gateway),
        build_sealer(
            seal_key_file=settings.seal_key_file,
            seal_kms_key_id=settings.seal_kms_key_id,
            seal_pkcs11=settings.seal_pkcs11,
            gateway=gateway,
        ),
    )


def build_reseal(
    settings: Settings,
    *,
    to_seal_key_file: str | None,
    to_seal_kms_key_id: str | None,
    to_seal_pkcs11: str | None,
) -> tuple[Vault, Sealer, AuditLog]:
    """For ``vault reseal``: the vault under its configured sealer, the target sealer (exactly
    one of the three), and the audit log. KMS is reached (vault reads and writes only) when the
    vault, its sealer or the target lives there."""
    from ..gateway.kms import RESEAL
    from ..vault import build_sealer, build_store
    from ..vault.registry import needs_kms

    to = (
        ("seal_key_file", to_seal_key_file),
        ("seal_kms_key_id", to_seal_kms_key_id),
        ("seal_pkcs11", to_seal_pkcs11),
    )
    gateway = None
    if needs_kms(settings.vault, *_sealer_values(settings), *to):
        gateway = build_gateway(settings, RESEAL)
    try:
        target = build_sealer(
            seal_key_file=to_seal_key_file,
            seal_kms_key_id=to_seal_kms_key_id,
            seal_pkcs11=to_seal_pkcs11,
            gateway=gateway,
        )
    except ConfigError as exc:
        if "exactly one sealer" not in str(exc):
            raise
        raise ConfigError(
            "give exactly one target: --to-seal-key-file, --to-seal-kms-key-id or --to-seal-pkcs11"
        ) from None
    vault = Vault(
        build_store(settings.vault or "", gateway),
        build_sealer(
            seal_key_file=settings.seal_key_file,
            seal_kms_key_id=settings.seal_kms_key_id,
            seal_pkcs11=settings.seal_pkcs11,
            gateway=gateway,
        ),
    )
    return vault, target, AuditLog(settings.audit_file)

"""Running work on many targets (issue 16): one ``Deps`` and budget per target, targets in
parallel under a bounded total concurrency, one target's failure reported as that target's and
never stopping the others.

Bound: each target works on ``concurrency`` keys at once, so at most
``MAX_TOTAL_CONCURRENCY // concurrency`` targets run at once (8 with the default concurrency of
8); the rest wait for a slot. Each target has its own request budget (KMS quotas are per account
per region), so parallel targets do not compete for one quota.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..domain.audit import AuditLog
from ..domain.errors import ByokError, InputError
from ..gateway.kms import Allowlist, KmsApiError
from ..vault import Vault
from ..vault.registry import store_is_shared
from .deps import Deps, build_deps
from .settings import Settings
from .targets import Target, target_settings

if TYPE_CHECKING:
    from ..gateway.sts import AssumedRoleProvider

T = TypeVar("T")
MAX_TOTAL_CONCURRENCY = 64


@dataclass(frozen=True)
class TargetRun(Generic[T]):
    """One target's result, or why it has none (``error``, one line, no secrets)."""

    target: Target
    value: T | None = None
    error: str | None = None
    bad_input: bool = False  # the target's own configuration is wrong (its vault, ...)

    @property
    def ok(self) -> bool:
        return self.error is None

    def status(self) -> dict[str, Any]:
        """The target's row in JSON outputs and health.json. A sweep that lost KMS access while
        applying (``SweepResult.stopped``: its other keys not attempted) ran, but the target
        is not ok: the row says why."""
        stopped = getattr(self.value, "stopped", None)
        return {
            "target": self.target.name,
            "account_id": self.target.account_id,
            "region": self.target.region,
            "ok": self.ok and not stopped,
            "error": self.error or stopped,
        }


def parallel_targets(n_targets: int, concurrency: int) -> int:
    """How many targets run at once: all of them, up to the total concurrency bound."""
    return max(1, min(n_targets, MAX_TOTAL_CONCURRENCY // max(1, concurrency)))


def target_signing(
    settings: Settings, target: Target, base: Any = None
) -> tuple[Any, AssumedRoleProvider | None]:
    """(credential, role provider) a target's clients sign with: ``base`` (the chain, a
    profile, FC's context) and no provider; or, with ``role_arn``, the role assumed with it --
    assumed here, at once, so a role that cannot be assumed fails this target before any KMS
    call -- and its provider, which the gateway renews when KMS refuses it as expired."""
    if not target.role_arn:
        return base, None
    from ..gateway.sts import AssumedRoleProvider, assumed_role_credential
    from .factory import profile_credential

    if base is None and settings.profile:
        base = profile_credential(settings.profile)
    provider = AssumedRoleProvider(
        role_arn=target.role_arn,
        session_name=target.session_name,
        region=target.region,
        endpoint=target.sts_endpoint,
        base_credential=base,
    )
    provider.get_credentials()
    return assumed_role_credential(provider), provider


def target_deps(
    settings: Settings,
    target: Target,
    allowlist: Allowlist,
    *,
    credential: Any = None,
    with_vault: bool = True,
) -> Deps:
    """``Deps`` for one target: its settings, its credential, its own budget. On the global
    file vault, or any store the registry calls ``shared`` (the target names none of its own),
    it sees only its account's and region's keys; a ``kms-secrets://`` vault lives in each
    target's own KMS, so it is never shared."""
    signing, renewal = target_signing(settings, target, credential)
    deps = build_deps(
        target_settings(settings, target),
        allowlist,
        credential=signing,
        with_vault=with_vault,
        region=target.region,
        account_id=target.account_id,
        renewal=renewal,
    )
    if deps.vault is not None and not target.vault and store_is_shared(deps.vault.uri):
        deps = dataclasses.replace(deps, vault=TargetVault(deps.vault, target))
    return dataclasses.replace(deps, audit=TargetAudit(deps.settings.audit_file, target.name))


class TargetAudit(AuditLog):
    """The audit log, every event naming its target (``"target": NAME``)."""

    def __init__(self, path: str | None, target_name: str) -> None:
        super().__init__(path)
        self.target_name = target_name

    def event(self, event: str, **fields: Any) -> None:
        super().event(event, **{"target": self.target_name, **fields})


class TargetVault(Vault):
    """A vault shared by targets, seen from one: its inventory holds the envelopes whose header
    names the target's account and region (one header read per key, nothing unsealed); an
    envelope that does not parse stays in, so the sweep reports it."""

    def __init__(self, vault: Vault, target: Target) -> None:
        super().__init__(vault.store, vault.sealer)
        self._where = (target.account_id, target.region)

    def inventory(self) -> list[str]:
        def mine(key_id: str) -> bool:
            try:
                envelope = self.get(key_id)
            except ByokError:
                return True
            if envelope is None:
                return False
            return (envelope.header.account_id, envelope.header.region) == self._where

        return [k for k in super().inventory() if mine(k)]


def run_targets(
    targets: Sequence[Target], work: Callable[[Target], T], *, concurrency: int = 8
) -> list[TargetRun[T]]:
    """``work(target)`` for every target, in parallel (bounded), in the targets' order."""

    def one(target: Target) -> TargetRun[T]:
        try:
            return TargetRun(target, value=work(target))
        except ByokError as exc:
            return TargetRun(target, error=str(exc), bad_input=isinstance(exc, InputError))
        except Exception as exc:  # a bug or an SDK surprise: the type only, never the text
            return TargetRun(target, error=f"unexpected {type(exc).__name__}")

    if len(targets) == 1:
        return [one(targets[0])]
    with ThreadPoolExecutor(max_workers=parallel_targets(len(targets), concurrency)) as pool:
        return list(pool.map(one, targets))


class TargetAmbiguous(InputError):
    """A key command could act in several targets: ``--target`` must say which."""


def locate(
    settings: Settings,
    targets: Sequence[Target],
    key_id: str,
    allowlist: Allowlist,
    *,
    credential: Any = None,
    with_vault: bool = True,
) -> tuple[Target, Deps]:
    """The one target holding ``key_id`` and its ``Deps``: one DescribeKey in each candidate. Found
    in exactly one -> that one; in none or several -> ``TargetAmbiguous`` listing them."""
    if len(targets) == 1:
        only = targets[0]
        deps = target_deps(settings, only, allowlist, credential=credential, with_vault=with_vault)
        return only, deps

    def probe(target: Target) -> Deps | None:
        deps = target_deps(
            settings, target, allowlist, credential=credential, with_vault=with_vault
        )
        try:
            deps.gateway.describe_key(key_id)
        except KmsApiError as exc:
            if exc.code == "Forbidden.KeyNotFound":
                return None
            raise
        return deps

    runs = run_targets(targets, probe, concurrency=settings.concurrency)
    found = [r for r in runs if r.ok and r.value is not None]
    if len(found) == 1:
        assert found[0].value is not None
        return found[0].target, found[0].value
    names = ", ".join(t.name for t in targets)
    if found:
        where = ", ".join(r.target.name for r in found)
        raise TargetAmbiguous(f"{key_id} is in several targets ({where}): choose with --target")
    failed = [r for r in runs if not r.ok]
    note = f"; could not look in {', '.join(r.target.name for r in failed)}" if failed else ""
    raise TargetAmbiguous(f"{key_id} is in none of the targets {names}{note}: use --target")

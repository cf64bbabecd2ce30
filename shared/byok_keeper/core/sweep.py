"""Discover -> plan -> apply, with per-key isolation and a summary.

Planning happens once, here; *applying* the due decisions is an ``Applier``'s job:
``InlineApplier`` re-establishes them in a bounded pool in this process (the CLI, the daemon,
FC ``inline``), ``dispatch.FcAsyncApplier`` restores its part and sends the rest in async
``reimport`` batches.

Discovery is inventory-driven: the vault lists enrolled keys and each costs one DescribeKey.
Only keys that may be due (PendingImport, or expiring within the renewal window) have their
envelope header read; ``details="all"`` (the on-call ``plan``) also reads every key's tags so
holds and lease overrides show. ``scan_account`` also pages ListKeys and describes every key to
report EXTERNAL keys nobody holds material for.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from ..domain.audit import AuditLog
from ..domain.errors import ByokError
from ..gateway.kms import KeyInfo, KmsApiError, KmsGateway, NoKmsAccess, format_kms_time
from ..planning.plan import (
    ALERT,
    HOLD,
    OK,
    SKIP,
    Decision,
    EnvelopeFacts,
    KeyFacts,
    Policy,
    needs_details,
    plan,
)
from ..vault import Vault
from .reestablish import FAILED, HELD, NOT_ATTEMPTED, SKIPPED, Outcome, reestablish

if TYPE_CHECKING:
    from .deps import Deps

CLOCK_SKEW_WARNING_SECONDS = 60


@dataclass(frozen=True)
class SweepResult:
    now: datetime
    decisions: tuple[Decision, ...]
    outcomes: tuple[Outcome, ...]
    dry_run: bool
    stats: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None  # KMS access lost while applying: why the rest was not attempted

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.failed]

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.outcomes:
            counts[o.outcome] = counts.get(o.outcome, 0) + 1
        return counts


def bounded_map(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, ahead: int) -> Iterator:
    """``pool.map(fn, items)`` with at most ``ahead`` calls submitted and not yet yielded:
    ``Executor.map`` submits every item at once, a future and a work item per key (about 2 KB
    each: 100 MB at 50,000 keys) before the first result. Results in order."""
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # as Executor.map: a call that raised cancels those not started
        for future in pending:
            future.cancel()


def _describe(gateway: KmsGateway, key_id: str) -> KeyInfo | ByokError | None:
    try:
        return gateway.describe_key(key_id)
    except KmsApiError as exc:
        if exc.code == "Forbidden.KeyNotFound":
            return None
        return exc
    except NoKmsAccess:
        raise  # every call will fail the same way: stop the run with the one reason
    except ByokError as exc:
        return exc


def discover(
    gateway: KmsGateway,
    vault: Vault,
    *,
    policy: Policy,
    details: str = "due",
    scan_account: bool = False,
    concurrency: int = 8,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[list[KeyFacts], list[tuple[str, ByokError]]]:
    """Facts for every enrolled key (and, with ``scan_account``, every key in the account).

    ``on_progress(done, total)`` is called as keys are described (a progress bar).
    Returns the facts and the keys that could not be described (per-key isolation)."""
    enrolled = vault.inventory()
    ids = list(enrolled)
    if scan_account:  # a key retired on purpose is not one "nobody holds material for"
        known = set(ids) | set(vault.retired())
        ids += [k for k in gateway.list_keys() if k not in known]
    enrolled_set = set(enrolled)
    counted = itertools.count(1)

    def describe(key_id: str) -> KeyInfo | ByokError | None:
        result = _describe(gateway, key_id)
        if on_progress is not None:
            on_progress(next(counted), len(ids))
        return result

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        described = list(bounded_map(pool, describe, ids, 4 * concurrency))
    now = gateway.now()

    def facts_for(key_id: str, key: KeyInfo | None) -> KeyFacts:
        if key_id not in enrolled_set:
            return KeyFacts(key_id, key, enrolled=False)
        if details != "all" and not needs_details(key, now, policy):
            return KeyFacts(key_id, key, enrolled=True)
        envelope = vault.get(key_id)
        env = EnvelopeFacts.from_header(envelope.header) if envelope else None
        tags = gateway.list_tags(key_id) if details == "all" and key is not None else None
        return KeyFacts(key_id, key, enrolled=True, envelope=env, tags=tags)

    facts: list[KeyFacts] = []
    errors: list[tuple[str, ByokError]] = []
    todo = []
    for key_id, result in zip(ids, described, strict=True):
        if isinstance(result, ByokError):
            errors.append((key_id, result))
        elif key_id in enrolled_set or (result is not None and result.origin == "EXTERNAL"):
            todo.append((key_id, result))

    def safe_facts(item: tuple[str, KeyInfo | None]) -> KeyFacts | tuple[str, ByokError]:
        try:
            return facts_for(*item)
        except NoKmsAccess:
            raise
        except ByokError as exc:
            return (item[0], exc)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for result in bounded_map(pool, safe_facts, todo, 4 * concurrency):
            if isinstance(result, KeyFacts):
                facts.append(result)
            else:
                errors.append(result)
    return facts, errors


class Applier(Protocol):
    """Applies a plan's due decisions. ``final``: its outcomes are the keys' results (the sweep
    audits one ``key`` line per key); otherwise it only reports keys it could not hand on, and
    whoever it handed them to audits them."""

    final: bool

    def apply(self, due: list[Decision]) -> list[Outcome]: ...


@dataclass
class InlineApplier:
    """Re-establish due keys here, ``concurrency`` at a time.

    ``NoKmsAccess`` while applying (a clock KMS refuses, assumed-role credentials refused as
    expired even just after assuming the role anew, a role STS will not renew, credentials
    gone) is not about one key:
    that key fails with the reason, keys already in flight finish, and every key not yet
    started is reported ``skipped`` ("not attempted: <reason>", the same ``error_code``) without
    a call to KMS -- as discovery stops with the one reason. ``stopped`` keeps the reason."""

    gateway: KmsGateway
    vault: Vault
    dry_run: bool = False
    concurrency: int = 8
    on_outcome: Callable[[Outcome], None] | None = None
    final: bool = True
    # Runs right before a key's import (``reestablish``'s ``before_import``): the intent line.
    before_import: Callable[[Decision], None] | None = None
    stopped: NoKmsAccess | None = field(default=None, init=False)

    def _one(self, d: Decision) -> Outcome:
        lost = self.stopped
        if lost is not None:  # another key lost KMS access: do not try this one
            reason = f"{NOT_ATTEMPTED}{lost}"
            return Outcome(d.key_id, d.decision, SKIPPED, reason, 0, error_code=type(lost).__name__)
        intent = self.before_import
        try:
            return reestablish(
                self.gateway,
                self.vault,
                d.key_id,
                decision=d.decision,
                dry_run=self.dry_run,
                before_import=None if intent is None else lambda: intent(d),
            )
        except NoKmsAccess as exc:  # lost mid-run (clock jumped, credentials revoked)
            if self.stopped is None:
                self.stopped = exc
            return Outcome(d.key_id, d.decision, FAILED, str(exc), 0, error_code=type(exc).__name__)

    def apply(self, due: list[Decision]) -> list[Outcome]:
        self.stopped = None
        outcomes = []
        workers = max(1, self.concurrency)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for outcome in bounded_map(pool, self._one, due, 4 * workers):
                outcomes.append(outcome)
                if self.on_outcome is not None:
                    self.on_outcome(outcome)
        return outcomes


def _static(d: Decision) -> Outcome:
    outcome = {OK: "ok", HOLD: HELD, SKIP: SKIPPED, ALERT: "alert"}[d.decision]
    return Outcome(
        d.key_id,
        d.decision,
        outcome,
        d.reason,
        0,
        key_state=d.key_state,
        alert=d.decision == ALERT,
    )


def sweep_keys(
    gateway: KmsGateway,
    vault: Vault,
    *,
    policy: Policy | None = None,
    dry_run: bool = False,
    scan_account: bool = False,
    details: str = "due",
    concurrency: int = 8,
    audit: AuditLog | None = None,
    trigger: str = "manual",
    actor: str = "",
    on_outcome: Callable[[Outcome], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    log: Callable[..., None] | None = None,
    applier: Applier | None = None,
) -> SweepResult:
    """Discover -> plan (once) -> ``applier`` (default ``InlineApplier`` with ``dry_run``,
    ``concurrency`` and ``on_outcome``). The result's outcomes: keys that could not be
    described, each not-due decision, then what the applier returned."""
    policy = policy or Policy()
    audit = audit or AuditLog()
    applier = applier or InlineApplier(
        gateway,
        vault,
        dry_run,
        concurrency,
        on_outcome,
        before_import=lambda d: audit.importing(d.key_id, d.decision, trigger=trigger, actor=actor),
    )
    facts, errors = discover(
        gateway,
        vault,
        policy=policy,
        details=details,
        scan_account=scan_account,
        concurrency=concurrency,
        on_progress=on_progress,
    )
    offset = gateway.clock_offset
    if offset is not None and abs(offset) > CLOCK_SKEW_WARNING_SECONDS and log is not None:
        log("clock_skew", skew_seconds=round(offset), note="planning against KMS's clock")
    now = gateway.now()
    decisions = plan(facts, now, policy)
    _warn_cadence(decisions, policy, audit, trigger=trigger, actor=actor)
    outcomes: list[Outcome] = [
        Outcome(
            key_id,
            "ALERT",
            FAILED,
            str(err),
            0,
            error_code=getattr(err, "code", type(err).__name__),
        )
        for key_id, err in errors
    ]
    outcomes += [_static(d) for d in decisions if not d.due]
    outcomes += applier.apply([d for d in decisions if d.due])
    lost = getattr(applier, "stopped", None)
    if lost is not None and log is not None:
        skipped = sum(1 for o in outcomes if o.not_attempted)
        log("kms_access_lost", error=str(lost)[:300], error_type=type(lost).__name__,
            not_attempted=skipped)  # fmt: skip
    if applier.final:
        for o in outcomes:  # one canonical line per key per run
            audit.event("key", trigger=trigger, actor=actor, dry_run=dry_run, **o.to_json())
    return SweepResult(now, tuple(decisions), tuple(outcomes), dry_run, dict(gateway.stats),
                       stopped=str(lost)[:300] if lost is not None else None)  # fmt: skip


def run_sweep(
    deps: Deps,
    *,
    trigger: str,
    actor: str,
    dry_run: bool = False,
    scan_account: bool = False,
    concurrency: int | None = None,
    log: Callable[..., None] | None = None,
    applier: Applier | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """One sweep of one ``Deps`` (its gateway, vault, policy and audit log; ``concurrency``
    default its settings'): what the CLI, FC, the daemon and the fleet loop run."""
    return sweep_keys(
        deps.gateway,
        deps.require_vault(),
        policy=deps.policy,
        dry_run=dry_run,
        scan_account=scan_account,
        concurrency=concurrency or deps.settings.concurrency,
        audit=deps.audit,
        trigger=trigger,
        actor=actor,
        on_outcome=on_outcome,
        on_progress=on_progress,
        log=log,
        applier=applier,
    )


@dataclass(frozen=True)
class FleetPlan:
    decisions: list[Decision]
    errors: list[tuple[str, ByokError]]
    aliases: dict[str, list[str] | None]  # filled only when asked for


def aliases_or_none(gateway: KmsGateway, key_id: str) -> list[str] | None:
    """A key's aliases; None when KMS no longer has the key."""
    try:
        return gateway.aliases_of(key_id)
    except KmsApiError as exc:
        if exc.code != "Forbidden.KeyNotFound":
            raise
        return None


def plan_fleet(
    deps: Deps,
    *,
    scan_account: bool = False,
    with_aliases: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> FleetPlan:
    """What a sweep would do for every enrolled key (all details read: tags, holds); changes
    nothing (``byok-keeper plan``)."""
    facts, errors = discover(
        deps.gateway,
        deps.require_vault(),
        policy=deps.policy,
        details="all",
        scan_account=scan_account,
        concurrency=deps.settings.concurrency,
        on_progress=on_progress,
    )
    decisions = plan(facts, deps.gateway.now(), deps.policy)
    aliases = {d.key_id: aliases_or_none(deps.gateway, d.key_id) for d in decisions if with_aliases}
    return FleetPlan(decisions, errors, aliases)


def _warn_cadence(
    decisions: Iterable[Decision], policy: Policy, audit: AuditLog, **fields: str
) -> None:
    """One line per key whose lease is shorter than the gap between sweeps (it lapses between
    them; the plan's reason says it too)."""
    from ..planning.plan import cadence_warning

    for d in decisions:
        warning = cadence_warning(d.lease, policy)
        if warning:
            audit.event("cadence_warning", key_id=d.key_id, reason=warning,
                        lease=str(d.lease), **fields)  # fmt: skip


def decisions_json(decisions: Iterable[Decision]) -> list[dict]:
    return [
        {
            "key_id": d.key_id,
            "decision": d.decision,
            "reason": d.reason,
            "key_state": d.key_state,
            "key_spec": d.key_spec,
            "material_expire_time": format_kms_time(d.material_expire_time),
            "lease": str(d.lease) if d.lease else "",
            "reminder_days": d.reminder_days,
        }
        for d in decisions
    ]

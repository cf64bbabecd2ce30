"""The planner: facts about keys + now + policy -> one decision per key. Pure: no I/O, no clock.

| situation (first match wins)                              | decision |
|-----------------------------------------------------------|----------|
| the key carries the hold tag                              | HOLD     |
| the key is PendingDeletion                                | SKIP     |
| enrolled, but KMS no longer has the key                   | ALERT    |
| EXTERNAL key with no envelope in the vault                | ALERT    |
| envelope without a completed first import                 | ALERT    |
| envelope and key disagree (spec, origin)                  | ALERT    |
| PendingImport (material deleted or expired)               | REIMPORT |
| material expires within the renewal window                | RENEW    |
| Enabled/Disabled, far from expiry or never expiring       | OK       |

The renewal window is ``renew_before`` (default 7 days), but never more than half the lease, so a
short lease (a daily kill switch) is renewed at half-life instead of on every run. With sweeps
``sweep_interval`` apart (FC: every 6 hours), a key whose window opens before the next sweep is
renewed now (early: the same material, a fresh expiry) rather than late; a lease shorter than
the interval lapses between sweeps whatever the planner does, and says so (``cadence_warning``).
Keys that will lapse and that byok-keeper will not renew (HOLD, ALERT) carry a reminder tier:
30, 7 or 1 days.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..domain.errors import InputError
from ..domain.lease import Lease, parse_lease
from ..domain.model import DecisionKind, EnvelopeFacts, KeyInfo, KeyState
from ..domain.tags import HOLD_TAG, LEASE_TAG

REIMPORT, RENEW, OK, HOLD, SKIP, ALERT = (
    DecisionKind.REIMPORT,
    DecisionKind.RENEW,
    DecisionKind.OK,
    DecisionKind.HOLD,
    DecisionKind.SKIP,
    DecisionKind.ALERT,
)
DECISIONS = tuple(DecisionKind)
DUE = frozenset({REIMPORT, RENEW})


@dataclass(frozen=True, slots=True)
class KeyFacts:
    key_id: str
    key: KeyInfo | None  # None: KMS answered that the key does not exist
    enrolled: bool  # the vault lists this key
    envelope: EnvelopeFacts | None = None  # None: not read (or not enrolled)
    tags: dict[str, str] | None = None  # None: not read


@dataclass(frozen=True)
class Policy:
    renew_before: timedelta = timedelta(days=7)
    reminder_days: tuple[int, ...] = (30, 7, 1)
    sweep_interval: timedelta = timedelta(0)  # the longest gap between sweeps; 0: continuous


@dataclass(frozen=True, slots=True)
class Decision:
    key_id: str
    decision: str
    reason: str
    key_state: str
    key_spec: str
    material_expire_time: datetime | None
    lease: Lease | None = None
    reminder_days: int | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def due(self) -> bool:
        return self.decision in DUE


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return f"{_human(-delta)} ago"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {rest // 60}m"
    return f"{rest // 60}m {rest % 60}s"


def effective_lease(
    envelope: EnvelopeFacts | None, tags: dict[str, str] | None
) -> tuple[Lease | None, tuple[str, ...]]:
    """The sealed (authenticated) lease, or the ``byok-keeper:lease`` tag when it is shorter.

    Tags are not authenticated: anyone with TagResource can write one. A tag may therefore only
    shorten the sealed lease (a tighter kill switch); a longer tag, ``never`` over a finite
    lease, an invalid tag, or a tag with no sealed lease to compare with is ignored and noted.
    """
    sealed: Lease | None = None
    notes: tuple[str, ...] = ()
    if envelope is not None:
        try:
            sealed = parse_lease(envelope.lease)
        except InputError:
            notes = (f"envelope lease {envelope.lease!r} is invalid",)
    tag = (tags or {}).get(LEASE_TAG)
    if not tag:
        return sealed, notes
    try:
        tagged = parse_lease(tag)
    except InputError:
        return sealed, (*notes, f"ignored invalid lease tag {tag!r}")
    if sealed is None:
        return None, (*notes, f"ignored lease tag {tag!r}: no sealed lease to compare it with")
    if _seconds(tagged) < _seconds(sealed):
        return tagged, (*notes, "lease from tag")
    if _seconds(tagged) == _seconds(sealed):
        return sealed, notes
    return sealed, (
        *notes,
        f"ignored lease tag {tag!r}: longer than the sealed lease {sealed} (a tag may only "
        "shorten it)",
    )


def _seconds(lease: Lease) -> float:
    return float("inf") if lease.seconds is None else lease.seconds


def renewal_window(policy: Policy, lease: Lease | None) -> timedelta:
    if lease is None or lease.seconds is None:
        return policy.renew_before
    return min(policy.renew_before, timedelta(seconds=lease.seconds / 2))


def cadence_warning(lease: Lease | None, policy: Policy) -> str | None:
    """A lease shorter than the gap between sweeps lapses before the next one: say so."""
    interval = policy.sweep_interval
    if lease is None or lease.seconds is None or not interval:
        return None
    if timedelta(seconds=lease.seconds) >= interval:
        return None
    return (
        f"lease {lease} is shorter than the sweep interval {_human(interval)}: the material "
        "lapses between sweeps (sweep more often, BYOK_SWEEP_INTERVAL and the schedule, or "
        "lengthen the lease)"
    )


def _reminder(expires: datetime | None, now: datetime, policy: Policy) -> int | None:
    if expires is None:
        return None
    left = expires - now
    tiers = [d for d in sorted(policy.reminder_days) if left <= timedelta(days=d)]
    return tiers[0] if tiers else None


def decide(facts: KeyFacts, now: datetime, policy: Policy) -> Decision:
    key = facts.key
    lease, notes = effective_lease(facts.envelope, facts.tags)
    state = key.key_state if key else "NotFound"
    spec = key.key_spec if key else (facts.envelope.key_spec if facts.envelope else "")
    expires = key.material_expire_time if key else None

    def make(decision: str, reason: str, reminder: bool = False) -> Decision:
        tier = _reminder(expires, now, policy) if reminder else None
        if tier is not None and expires is not None:
            left = _human(expires - now)
            reason = f"{reason}; material lapses in {left} (<= {tier}d) and will not be renewed"
        return Decision(facts.key_id, decision, reason, state, spec, expires, lease, tier, notes)

    hold = (facts.tags or {}).get(HOLD_TAG)
    if hold is not None and key is not None:
        return make(HOLD, f"on hold: {hold or 'no reason given'}", reminder=True)
    if key is not None and key.key_state == KeyState.PENDING_DELETION:
        when = f" (deletion {key.delete_date:%Y-%m-%d})" if key.delete_date else ""
        return make(SKIP, f"key is pending deletion{when}")
    if key is None:
        return make(ALERT, "enrolled in the vault but the key no longer exists in KMS")
    if not facts.enrolled:
        if key.origin == "EXTERNAL":
            return make(
                ALERT, "EXTERNAL key with no envelope: nobody can restore it", reminder=True
            )
        return make(OK, "not an EXTERNAL key: nothing to keep alive")
    if key.origin != "EXTERNAL":
        return make(ALERT, f"enrolled, but the key has Origin {key.origin}")
    env = facts.envelope
    if env is not None and env.key_spec != key.key_spec:
        return make(ALERT, f"envelope holds {env.key_spec} material for a {key.key_spec} key")
    if env is not None and not env.first_imported:
        return make(
            ALERT,
            "enrollment incomplete: the envelope records no first import; re-run enroll",
            reminder=True,
        )
    if key.key_state == KeyState.PENDING_IMPORT:
        return make(REIMPORT, "material deleted or expired")
    if expires is None:
        return make(OK, "material never expires")
    window = renewal_window(policy, lease)
    left = expires - now
    warning = cadence_warning(lease, policy)
    if warning:
        notes = (*notes, warning)
    if left <= window:
        reason = f"material expires in {_human(left)} (window {_human(window)})"
    elif left <= window + policy.sweep_interval:
        reason = (
            f"material expires in {_human(left)}: its window ({_human(window)}) opens before "
            f"the next sweep (within {_human(policy.sweep_interval)}), so renew now"
        )
    else:
        return make(OK, f"material expires in {_human(left)}")
    return make(RENEW, f"{reason}; {warning}" if warning else reason)


def plan(facts: Iterable[KeyFacts], now: datetime, policy: Policy | None = None) -> list[Decision]:
    """One decision per key, in input order."""
    policy = policy or Policy()
    return [decide(f, now, policy) for f in facts]


def needs_details(key: KeyInfo | None, now: datetime, policy: Policy) -> bool:
    """Whether a key's tags and envelope must be read to decide (it may be due).

    A healthy key (Enabled/Disabled, expiry beyond the longest possible window) is OK whatever
    its tags and envelope say, so a sweep reads nothing more for it than DescribeKey.
    """
    if key is None or key.key_state == KeyState.PENDING_IMPORT:
        return True
    if key.key_state == KeyState.PENDING_DELETION or key.material_expire_time is None:
        return False
    return key.material_expire_time - now <= policy.renew_before + policy.sweep_interval

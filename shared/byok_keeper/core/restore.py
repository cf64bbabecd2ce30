"""Restore one key on request: ``reimport_one`` (re-establish + one audit line), and
``plan_one`` (one key's fresh decision, for the events function: a look, never fleet-wide).

The single way an explicit request -- the CLI's ``reimport``, the FC ``reimport`` function, and
the ActionTrail events function -- brings back one key's identical material. The sweep
does not come here: it re-establishes what its plan found due (``sweep.InlineApplier``).

Hold semantics are ``reestablish``'s, unchanged: the hold tag is read again right before the
import (and once more before a retry with a fresh token), and a held key is reported ``held``,
not restored. Only ``override_hold=True`` imports a held key, and only an operator's own
identity may ask for it (the CLI's ``--override-hold``); the FC and events entrypoints never
pass it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..domain.lease import Lease
from ..domain.model import EnvelopeFacts, KeyState
from ..gateway.kms import KmsApiError
from ..planning.plan import Decision, KeyFacts, decide, needs_details
from .deps import Deps
from .reestablish import DRY_RUN, RENEWED, RESTORED, Outcome, reestablish

SUCCESS = (RESTORED, RENEWED, DRY_RUN)


def reimport_one(
    deps: Deps,
    key_id: str,
    *,
    reason: str,
    trigger: str,
    actor: str,
    audit_fields: dict[str, Any] | None = None,
    override_hold: bool = False,
    dry_run: bool = False,
    lease_override: Lease | None = None,
    on_step: Callable[[str, str], None] | None = None,
) -> Outcome:
    """Re-establish ``key_id`` (decision ``REIMPORT``) and write one ``key`` audit event, after
    an ``importing`` one written right before the import (``AuditLog.importing``): a run killed
    between KMS taking the material and the ``key`` line still leaves the intent on record.

    ``trigger`` says which entrypoint asked (``cli-reimport``, ``fc-reimport``, e.g.
    ``event-delete``); ``actor`` is who did the work (a user, or ``fc`` for the function's
    role). ``audit_fields`` adds what the entrypoint knows but cannot vouch for, such as
    ``claimed_by`` (an event's ``requested_by``, e.g. ``event:<requestId>``) and
    ``fc_request_id``; the ``reason`` is recorded as ``requested_reason``.

    Never raises for a per-key failure (the outcome says it, ``bad_input`` marks a tampered
    or unreadable envelope); ``NoKmsAccess`` propagates (nothing is audited then), so the
    caller can exit 1 or let FC retry. The key id is the caller's to validate first.
    """
    fields = {"trigger": trigger, "actor": actor, "requested_reason": reason,
              **(audit_fields or {})}  # fmt: skip
    outcome = reestablish(
        deps.gateway,
        deps.require_vault(),
        key_id,
        decision="REIMPORT",
        override_hold=override_hold,
        dry_run=dry_run,
        lease_override=lease_override,
        on_step=on_step,
        before_import=lambda: deps.audit.importing(key_id, "REIMPORT", **fields),
    )
    deps.audit.event("key", **fields, **outcome.to_json())
    return outcome


def succeeded(outcome: Outcome) -> bool:
    """Restored, renewed or (a dry run) would have been."""
    return outcome.outcome in SUCCESS


def plan_one(deps: Deps, key_id: str) -> Decision:
    """The planner's decision for one key, as a sweep would reach it: DescribeKey always; the
    envelope only when the key may be due (``needs_details``); tags are left to the hold
    re-check right before any import. A healthy key costs one DescribeKey.

    ``KmsApiError`` (other than "no such key") and ``NoKmsAccess`` propagate: the caller
    decides whether to retry."""
    gateway = deps.gateway
    try:
        key = gateway.describe_key(key_id)
    except KmsApiError as exc:
        if exc.code != "Forbidden.KeyNotFound":
            raise
        key = None
    now = gateway.now()
    if key is not None and not needs_details(key, now, deps.policy):
        return decide(KeyFacts(key_id, key, enrolled=True), now, deps.policy)
    envelope = deps.require_vault().get(key_id)
    facts = KeyFacts(
        key_id,
        key,
        enrolled=envelope is not None,
        envelope=None if envelope is None else EnvelopeFacts.from_header(envelope.header),
    )
    return decide(facts, now, deps.policy)


STOPPED_STATES = (KeyState.PENDING_DELETION, KeyState.DISABLED)


def stopped_key(deps: Deps, key_id: str) -> str | None:
    """The key's state when one DescribeKey shows a key we manage (the vault holds its
    envelope) PendingDeletion or Disabled; None for anything else (no such key, another
    state, not ours). The vault is read only for a key in one of those states.

    ``KmsApiError`` (other than "no such key") and ``NoKmsAccess`` propagate."""
    try:
        key = deps.gateway.describe_key(key_id)
    except KmsApiError as exc:
        if exc.code != "Forbidden.KeyNotFound":
            raise
        return None
    if key.key_state not in STOPPED_STATES or deps.require_vault().get(key_id) is None:
        return None
    return key.key_state

"""The events function's core (``functions/events/index.py``): ActionTrail KMS events in, one
look at the named key out.

For each event of the FC payload (``byok_keeper.events`` parses and classifies, purely):

* refused (malformed or foreign) -> an alert audit line, ``{"ok": false}``; returned, never
  raised, so FC does not retry what cannot succeed;
* duplicate of an event seen within the window on this instance -> dropped, logged;
* IGNORE -> an info line; ALERT (ScheduleKeyDeletion, DisableKey) -> an alert line and nothing
  else: an operator's act is never fought;
* RESTORE, REPLAN -> ``look``: DescribeKey of that key only, the planner's decision for it,
  and only when that decision is due (REIMPORT, RENEW) the re-establishment, whose hold
  re-check right before import is unchanged. A healthy key costs one DescribeKey.

Raises ``RetryableFailure`` only when KMS could not be used (throttled, 5xx, unreachable, no
access), after un-recording the event so that FC's retry is not dropped as a duplicate.

Integration point for the second pass of issue 15 (after issue 18's refactor lands): only
``_reestablish`` and ``_deps`` below change, to call ``reimport_one(deps, key_id, ...)`` of
the new core module with the typed ``Deps``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from .events import (
    ALERT,
    IGNORE,
    Deployment,
    DuplicateFilter,
    KmsEvent,
    PermanentEventError,
    classify,
    parse_payload,
)

TRIGGER = "fc-events"
DUPLICATES = DuplicateFilter()


def deployment_from(context: Any) -> Deployment:
    """The account and region this function serves: the environment's (set at deploy time),
    else the FC context's."""
    account = os.environ.get("BYOK_ACCOUNT_ID") or getattr(context, "account_id", None) or ""
    region = os.environ.get("ALIBABA_CLOUD_REGION_ID") or getattr(context, "region", None) or ""
    return Deployment(account_id=str(account), region=str(region))


def handler(event: bytes | str | dict | list, context: Any) -> dict[str, Any]:
    from structlog.contextvars import bound_contextvars

    from .hardening import harden_process

    harden_process()  # no core dumps, not dumpable, no SDK debug output
    with bound_contextvars(fc_request_id=_request_id(context)):
        return _handle(event, context)


def _handle(event: bytes | str | dict | list, context: Any) -> dict[str, Any]:
    deployment = deployment_from(context)
    try:
        docs = parse_payload(event)
    except PermanentEventError as exc:
        return {"ok": False, "results": [_refuse(exc, context)]}
    results = []
    for doc in docs:
        try:
            checked = classify(doc, deployment)
        except PermanentEventError as exc:
            results.append(_refuse(exc, context, doc))
            continue
        if DUPLICATES.seen(*checked.dedupe_keys):
            _audit().event("event", outcome="duplicate", **_fields(checked, context))
            results.append({"ok": True, "outcome": "duplicate", **checked.to_json()})
            continue
        try:
            results.append(_act(checked, context))
        except BaseException:
            DUPLICATES.forget(*checked.dedupe_keys)
            raise
    return {"ok": all(r["ok"] for r in results), "results": results}


def _act(event: KmsEvent, context: Any) -> dict[str, Any]:
    """What one classified event leads to; the audit line says it."""
    fields = _fields(event, context)
    if event.action == IGNORE:
        _audit().event("event", outcome="ignored", **fields)
        return {"ok": True, "outcome": "ignored", **event.to_json()}
    if event.action == ALERT:
        _audit().event("event", outcome="alert", alert=True, **fields)
        return {"ok": True, "outcome": "alert", **event.to_json()}
    return look(event, context)


def look(event: KmsEvent, context: Any) -> dict[str, Any]:
    """RESTORE and REPLAN: plan this one key afresh, act only when the plan says so."""
    from .fc import RetryableFailure, _retryable
    from .kms import KmsApiError, NoKmsAccess

    deps = _deps(context)
    try:
        decision = plan_one(deps, event.key_id)
    except NoKmsAccess as exc:
        raise RetryableFailure(f"{event.key_id}: {exc}") from None
    except KmsApiError as exc:
        if _retryable(exc.code):
            raise RetryableFailure(f"{event.key_id}: {exc.code}") from None
        _audit(deps).event("event", outcome="failed", alert=True, error_code=exc.code,
                           **_fields(event, context))  # fmt: skip
        return {"ok": False, "outcome": "failed", "error": exc.code, **event.to_json()}
    if not decision.due:
        _audit(deps).event("event", outcome="looked", decision=decision.decision,
                           decision_reason=decision.reason, key_state=decision.key_state,
                           **_fields(event, context))  # fmt: skip
        return {"ok": True, "outcome": "looked", "decision": decision.decision, **event.to_json()}
    try:
        outcome = _reestablish(deps, event, decision.decision, context)
    except NoKmsAccess as exc:
        raise RetryableFailure(f"{event.key_id}: {exc}") from None
    if outcome.failed and _retryable(outcome.error_code):
        raise RetryableFailure(f"{event.key_id}: {outcome.reason}")
    return {"ok": not outcome.failed, **event.to_json(), **outcome.to_json()}


def plan_one(deps: Any, key_id: str):
    """The planner's decision for one key: DescribeKey always; the envelope only when the key
    may be due (as the sweep's discovery does); tags are left to the hold re-check."""
    from .kms import KmsApiError
    from .plan import EnvelopeFacts, KeyFacts, Policy, decide, needs_details

    gateway, vault, settings = deps["gateway"], deps["vault"], deps["settings"]
    policy = Policy(renew_before=timedelta(seconds=settings.renew_before_seconds))
    try:
        key = gateway.describe_key(key_id)
    except KmsApiError as exc:
        if exc.code != "Forbidden.KeyNotFound":
            raise
        key = None
    now = gateway.now()
    if key is not None and not needs_details(key, now, policy):
        return decide(KeyFacts(key_id, key, enrolled=True), now, policy)
    envelope = vault.get(key_id)
    facts = KeyFacts(
        key_id,
        key,
        enrolled=envelope is not None,
        envelope=None
        if envelope is None
        else EnvelopeFacts(
            envelope.fingerprint,
            envelope.header.key_spec,
            envelope.header.lease,
            envelope.header.first_imported_at is not None,
        ),
    )
    return decide(facts, now, policy)


# ---- integration point (issue 15, second pass) ------------------------------------------------


def _deps(context: Any) -> Any:
    """INTEGRATION POINT: today the FC runtime's dict of settings, gateway and vault; the
    second pass returns the typed ``Deps`` of issue 18 here."""
    from .fc import RUNTIME

    return RUNTIME.deps(context)


def _reestablish(deps: Any, event: KmsEvent, decision: str, context: Any):
    """INTEGRATION POINT: re-establish one key whose fresh plan is due.

    Uses ``byok_keeper.restore.reimport_one(deps, key_id)`` (re-establish + audit, issue 18)
    when that module exists, with only the two arguments known today: the second pass passes
    the decision and ``trigger=TRIGGER`` once its signature is settled. Until then today's
    ``reestablish`` plus the canonical audit line. Either way the hold is re-checked right
    before import, and the outcome (``.failed``, ``.error_code``, ``.to_json()``) returned."""
    try:
        from .restore import reimport_one  # type: ignore[import-not-found]
    except ImportError:
        reimport_one = None
    if reimport_one is not None:
        return reimport_one(deps, event.key_id)
    from .reestablish import reestablish

    outcome = reestablish(deps["gateway"], deps["vault"], event.key_id, decision=decision)
    _audit(deps).event("key", **{**_fields(event, context), **outcome.to_json()})
    return outcome


# ---- audit -----------------------------------------------------------------------------------


def _audit_path(deps: Any = None) -> str | None:
    from .fc import _audit_file

    path = getattr(deps.get("settings"), "audit_file", None) if isinstance(deps, dict) else None
    return path or _audit_file()


def _audit(deps: Any = None):
    from .audit import AuditLog

    return AuditLog(_audit_path(deps))


def _fields(event: KmsEvent, context: Any) -> dict[str, Any]:
    """The audit line's fields: the function acted; who called KMS is only claimed."""
    return {
        "trigger": TRIGGER,
        "actor": "fc",
        "fc_request_id": _request_id(context),
        **event.to_json(),
    }


def _refuse(exc: PermanentEventError, context: Any, doc: Any = None) -> dict[str, Any]:
    from .events import claimed

    claims = {}
    if isinstance(doc, dict):
        claims = {
            "claimed_event_id": claimed(doc.get("id")),
            "claimed_source": claimed(doc.get("source")),
        }
    _audit().event(
        "event",
        outcome="failed",
        alert=True,
        error_code=exc.code,
        reason=str(exc),
        trigger=TRIGGER,
        actor="fc",
        fc_request_id=_request_id(context),
        **claims,
    )
    return {"ok": False, "error": exc.code, "message": str(exc)}


def _request_id(context: Any) -> str:
    return str(getattr(context, "request_id", "") or "")

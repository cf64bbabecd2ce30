"""The events function's core (``functions/events/index.py``): ActionTrail KMS events in, one
look at the named key out.

For each event of the FC payload (``byok_keeper.planning.events`` parses and classifies, purely):

* refused (malformed or foreign) -> an alert audit line, ``{"ok": false}``; returned, never
  raised, so FC does not retry what cannot succeed;
* duplicate of an event (by its ActionTrail event id only) acted on within the window on this
  instance -> dropped, logged;
* IGNORE -> an info line, and the event never enters the duplicate window; ALERT
  (ScheduleKeyDeletion, DisableKey) -> one DescribeKey, and an alert line only when it shows a
  key we manage really PendingDeletion or Disabled (else ``looked``); nothing else: an
  operator's act is never fought;
* RESTORE, REPLAN -> ``look``: DescribeKey of that key only, the planner's decision for it,
  and only when that decision is due (REIMPORT, RENEW) the re-establishment, whose hold
  re-check right before import is unchanged. A healthy key costs one DescribeKey.

Raises ``RetryableFailure`` only when KMS could not be used (throttled, 5xx, unreachable, no
access), after un-recording the event so that FC's retry is not dropped as a duplicate.

The KMS work is the core's: ``restore.plan_one`` (the look) and ``restore.reimport_one`` (the
re-establishment, the same as the ``reimport`` function's) over the warm instance's typed
``Deps`` (``fc.RUNTIME``). No write this function makes can bring it back: the rule never
matches ImportKeyMaterial, and the function writes nothing else.
"""

from __future__ import annotations

import os
from typing import Any

from ..planning.events import (
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

    from .fc import anchor_config, configure_logging
    from .hardening import harden_process

    harden_process()  # no core dumps, not dumpable, no SDK debug output
    anchor_config()  # a relative BYOK_CONFIG names a file of the code package
    configure_logging()  # JSON from the first line, before any dependency is built
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
        # Only events acted on enter the duplicate window, by event id alone (issue 25): an
        # ignored one (like a refused one) must not make a later genuine event a duplicate.
        entered = checked.action != IGNORE
        if entered and DUPLICATES.seen(checked.dedupe_key):
            _audit().event("event", outcome="duplicate", **_fields(checked, context))
            results.append({"ok": True, "outcome": "duplicate", **checked.to_json()})
            continue
        try:
            results.append(_act(checked, context))
        except BaseException:
            if entered:
                DUPLICATES.forget(checked.dedupe_key)
            raise
    return {"ok": all(r["ok"] for r in results), "results": results}


def _act(event: KmsEvent, context: Any) -> dict[str, Any]:
    """What one classified event leads to; the audit line says it."""
    fields = _fields(event, context)
    if event.action == IGNORE:
        _audit().event("event", outcome="ignored", **fields)
        return {"ok": True, "outcome": "ignored", **event.to_json()}
    if event.action == ALERT:
        return look_stopped(event, context)
    return look(event, context)


def _one_look(deps, event: KmsEvent, context: Any, look_at) -> tuple[Any, dict | None]:
    """``look_at(deps, key_id)``'s answer and None; or, when KMS refuses for good, None and the
    answer to return (audited, no FC retry). Lost access and retryable codes raise
    ``RetryableFailure``, so FC retries."""
    from ..gateway.kms import KmsApiError, NoKmsAccess
    from .fc import RetryableFailure, retryable

    try:
        return look_at(deps, event.key_id), None
    except NoKmsAccess as exc:
        raise RetryableFailure(f"{event.key_id}: {exc}") from None
    except KmsApiError as exc:
        if retryable(exc.code):
            raise RetryableFailure(f"{event.key_id}: {exc.code}") from None
        deps.audit.event("event", outcome="failed", alert=True, error_code=exc.code,
                         **_fields(event, context))  # fmt: skip
        return None, {"ok": False, "outcome": "failed", "error": exc.code, **event.to_json()}


def look_stopped(event: KmsEvent, context: Any) -> dict[str, Any]:
    """ScheduleKeyDeletion, DisableKey: an alert only when one DescribeKey shows a key we manage
    really PendingDeletion or Disabled (``restore.stopped_key``); otherwise ``looked`` and
    nothing more. A forged batch naming random or healthy keys pages nobody (issue 25)."""
    from ..core.restore import stopped_key
    from .fc import RUNTIME

    deps = RUNTIME.deps(context)
    fields = _fields(event, context)
    state, refused = _one_look(deps, event, context, stopped_key)
    if refused is not None:
        return refused
    if state is None:
        why = "not a key we manage, or not PendingDeletion or Disabled: no alert"
        deps.audit.event("event", outcome="looked", decision_reason=why, **fields)
        return {"ok": True, "outcome": "looked", **event.to_json()}
    deps.audit.event("event", outcome="alert", alert=True, key_state=state, **fields)
    return {"ok": True, "outcome": "alert", "key_state": state, **event.to_json()}


def look(event: KmsEvent, context: Any) -> dict[str, Any]:
    """RESTORE and REPLAN: plan this one key afresh (``restore.plan_one``), act only when the
    plan says so (``restore.reimport_one``: the hold re-checked right before import, and never
    overridden from here)."""
    from ..core.restore import plan_one
    from ..gateway.kms import NoKmsAccess
    from .fc import RUNTIME, RetryableFailure, retryable

    deps = RUNTIME.deps(context)
    decision, refused = _one_look(deps, event, context, plan_one)
    if refused is not None:
        return refused
    if not decision.due:
        deps.audit.event("event", outcome="looked", decision=decision.decision,
                         decision_reason=decision.reason, key_state=decision.key_state,
                         **_fields(event, context))  # fmt: skip
        return {"ok": True, "outcome": "looked", "decision": decision.decision, **event.to_json()}
    try:
        outcome = _reestablish(deps, event, decision.reason, context)
    except NoKmsAccess as exc:  # nothing was audited: FC retries
        raise RetryableFailure(f"{event.key_id}: {exc}") from None
    if outcome.failed and retryable(outcome.error_code):
        raise RetryableFailure(f"{event.key_id}: {outcome.reason}")
    return {"ok": not outcome.failed, **event.to_json(), **outcome.to_json()}


def _reestablish(deps: Any, event: KmsEvent, why: str, context: Any):
    """The same core as ``reimport``: one ``key`` audit line whose actor is the function;
    who made the KMS call is only claimed (``claimed_by``). Never ``override_hold``."""
    from ..core.restore import reimport_one

    owned = ("trigger", "actor", "key_id", "reason")  # reimport_one and the outcome set these
    fields = {k: v for k, v in _fields(event, context).items() if k not in owned}
    return reimport_one(
        deps,
        event.key_id,
        reason=f"{event.event_name} event: {why}",
        trigger=TRIGGER,
        actor="fc",
        audit_fields=fields,
    )


# ---- audit -----------------------------------------------------------------------------------


def _audit_path() -> str | None:
    from .fc import audit_file

    return audit_file()


def _audit():
    """The audit log for lines that need no KMS (refused, duplicate, ignored, alert): the
    settings' audit file, without building the SDK-backed dependencies."""
    from ..domain.audit import AuditLog

    return AuditLog(_audit_path())


def _fields(event: KmsEvent, context: Any) -> dict[str, Any]:
    """The audit line's fields: the function acted; who called KMS is only claimed."""
    return {
        "trigger": TRIGGER,
        "actor": "fc",
        "fc_request_id": _request_id(context),
        **event.to_json(),
    }


def _refuse(exc: PermanentEventError, context: Any, doc: Any = None) -> dict[str, Any]:
    from ..planning.events import claimed

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

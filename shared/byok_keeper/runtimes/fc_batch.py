"""The FC ``reimport`` function's entrypoint: one key (``{"key_id": ...}``, what on-call sends,
``fc.handle_reimport``) or several (``{"key_ids": [...]}``, what the fc-async sweep sends).

A batch is validated as a whole before any key is touched, as strictly as one key: a non-empty
list of at most ``dispatch.KEYS_PER_REIMPORT`` distinct key ids, each checked like a single
event's; ``reason``, ``requested_by``, ``dry_run`` and ``target`` as in ``fc.parse_reimport_event``
(claims, never authorities; ``override_hold`` refused). A malformed batch is refused once, with
the single event's alert line, and no key of it is imported.

Each key then goes through ``restore.reimport_one`` (its ``importing`` intent line before the
import, its ``key`` line after), ``concurrency`` at a time under this instance's budget. Failure
semantics follow one key's: permanent failures are answered (``ok: false`` with each key's
outcome); a retryable one (or KMS access lost, the keys not yet started left untouched) raises
``fc.RetryableFailure`` once every started key is done, so FC retries the invocation: keys
already restored are then imported again with the same material (idempotent, audited again).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import fc

if TYPE_CHECKING:
    from ..core.deps import Deps
    from ..core.reestablish import Outcome


def handler(event: bytes | str | dict, context: Any) -> dict[str, Any]:
    """``functions/reimport/index.py``'s call: a batch here, one key in ``fc.handle_reimport``."""
    try:
        doc = fc._parse_json(event, "reimport")
    except fc.BadEvent:
        doc = {}  # handle_reimport refuses it with its own line
    if "key_ids" in doc:
        return handle_batch(event, context)
    return fc.handle_reimport(event, context)


def parse_batch_event(event: bytes | str | dict) -> dict[str, Any]:
    """``{"key_ids", "reason", "requested_by", "dry_run"[, "target"]}``; raises ``fc.BadEvent``."""
    from ..core.dispatch import KEYS_PER_REIMPORT
    from ..domain.errors import ByokError
    from ..domain.model import check_key_id

    doc = fc._parse_json(event, "reimport")
    key_ids = doc.get("key_ids")
    if not isinstance(key_ids, list) or not key_ids:
        raise fc.BadEvent("key_ids must be a non-empty list of key ids")
    if len(key_ids) > KEYS_PER_REIMPORT:
        raise fc.BadEvent(f"a reimport batch names at most {KEYS_PER_REIMPORT} keys")
    for key_id in key_ids:
        if not isinstance(key_id, str):
            raise fc.BadEvent("key_ids must be a non-empty list of key ids")
        try:
            check_key_id(key_id)
        except ByokError as exc:  # its message quotes the id cut short (errors.shown)
            raise fc.BadEvent(str(exc)) from None
    if len(set(key_ids)) != len(key_ids):
        raise fc.BadEvent("key_ids names a key more than once")
    if "key_id" in doc:
        raise fc.BadEvent("a reimport event names key_id or key_ids, not both")
    # Every other field exactly as one key's event (override_hold, unknown fields, claims).
    single = {k: v for k, v in doc.items() if k != "key_ids"}
    request = fc.parse_reimport_event({**single, "key_id": key_ids[0]})
    del request["key_id"]
    return {**request, "key_ids": key_ids}


@fc._with_request_id
def handle_batch(event: bytes | str | dict, context: Any) -> dict[str, Any]:
    from ..core.targets import UnknownTarget
    from ..domain.errors import ByokError
    from .fc_targets import reimport_deps
    from .hardening import harden_process

    harden_process()  # no core dumps, not dumpable, no SDK debug output
    try:
        request = parse_batch_event(event)
    except fc.BadEvent as exc:
        return fc._refuse_reimport(exc, event, context)
    try:
        deps = reimport_deps(fc.RUNTIME, request.get("target"), context)
    except UnknownTarget as exc:  # permanent: refused once and audited, never retried
        return fc._refuse_reimport(fc.UnknownTargetRefused(str(exc)), event, context)
    except ByokError as exc:  # the target's role or settings: FC retries and alerts
        raise fc.RetryableFailure(f"{len(request['key_ids'])} keys: {exc}") from None
    outcomes, lost = reimport_many(deps, request, fc._request_id(context))
    if lost is not None:
        raise fc.RetryableFailure(f"{len(request['key_ids'])} keys: {lost}")
    retry = [o.key_id for o in outcomes if o.failed and fc.retryable(o.error_code)]
    if retry:
        raise fc.RetryableFailure(f"{len(retry)} of {len(outcomes)} keys failed: retryable")
    from ..core.restore import succeeded

    result: dict[str, Any] = {
        "ok": all(succeeded(o) for o in outcomes),
        "keys": len(outcomes),
        "results": [o.to_json() for o in outcomes],
    }
    if request.get("target"):
        result["target"] = request["target"]
    return result


def reimport_many(
    deps: Deps, request: dict[str, Any], request_id: str
) -> tuple[list[Outcome], Exception | None]:
    """``reimport_one`` for each key, ``settings.concurrency`` at a time; after ``NoKmsAccess``
    no further key is started (returned as the second value)."""
    from concurrent.futures import ThreadPoolExecutor

    from ..core.restore import reimport_one
    from ..gateway.kms import NoKmsAccess

    lost: list[Exception] = []

    def one(key_id: str) -> Outcome | None:
        if lost:
            return None
        try:
            return reimport_one(
                deps,
                key_id,
                reason=request["reason"],
                trigger="fc-reimport",
                actor="fc",  # the function's role did the work; who asked is only claimed
                audit_fields={"claimed_by": request["requested_by"], "fc_request_id": request_id},
                dry_run=request["dry_run"],
            )
        except NoKmsAccess as exc:
            lost.append(exc)
            return None

    workers = max(1, min(deps.settings.concurrency, len(request["key_ids"])))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = [o for o in pool.map(one, request["key_ids"]) if o is not None]
    return outcomes, (lost[0] if lost else None)

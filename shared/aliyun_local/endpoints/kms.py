"""A KMS request reaching a region's port: the signature, the backend of the signer's account
in that region, the fault hooks around ``kms.responses.dispatch``, the ActionTrail record of a
write (published on the event bus), and the answer, or a dropped connection."""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from .. import actiontrail, rpc
from ..errors import ApiError
from ..kms import responses as kms_responses
from ..kms.models import KmsBackend
from ..kms.responses import quota_class
from . import DROP

if TYPE_CHECKING:
    from ..emulator import Emulator

log = logging.getLogger("aliyun_local")


def _lose_answer(
    emulator: Emulator, action: str, key_id: str | None, **where: str | None
) -> object:
    """The ``ReadTimeout`` fault: hold the connection ``hang_ms``, then drop it unanswered."""
    emulator.calls.record(action, key_id, 0, "ReadTimeout", **where)
    time.sleep(emulator.faults.hang_ms / 1000)
    return DROP


def handle(
    emulator: Emulator,
    method: str,
    raw_path: str,
    headers: dict[str, str],
    body: bytes,
    region: str | None = None,
    *,
    client_ip: str = "127.0.0.1",
) -> tuple[int, dict[str, str], dict[str, Any]] | object:
    """Route one KMS request reaching ``region``'s endpoint: signature, the backend of the
    signer's account there, fault hooks around ``kms.responses.dispatch``, the ActionTrail
    record of a write, the answer (or a dropped connection)."""
    request_id = str(uuid.uuid4()).upper()
    request = rpc.parse(method, raw_path, headers, body)
    action, key_id = request.action, request.key_id
    region = region or emulator.region
    where: dict[str, str | None] = {"account_id": None, "region": region}
    transport_fault = None
    caller = None  # the access key id, once the signature holds
    try:
        rpc.require_action(request)
        access_key_id = rpc.verify_signature(request, emulator.credentials)
        kms = emulator.tenancy.kms(emulator.credentials.account_of(access_key_id), region)
        where["account_id"] = kms.account_id
        kms_responses.check(request)
        transport_fault = emulator.faults.before(
            action,
            quota_class(action),
            kms.settings.throttling_answer,
            scope=(kms.account_id, region),
        )
        if transport_fault == "DropConnection":
            emulator.calls.record(action, key_id, 0, transport_fault, **where)
            return DROP
        caller = access_key_id  # from here on the call reaches KMS: ActionTrail records it
        answer = kms_responses.dispatch(kms, request)
        _trail(emulator, kms, request, request_id, caller, client_ip, None)
        result = emulator.faults.after(action, key_id, answer)
        emulator.flush()
        if transport_fault == "ReadTimeout":  # the work is done; the answer never comes
            return _lose_answer(emulator, action, key_id, **where)
    except ApiError as err:
        emulator.flush()
        if caller is not None:
            _trail(emulator, kms, request, request_id, caller, client_ip, err)
        if transport_fault == "ReadTimeout":  # an error answer is lost all the same
            return _lose_answer(emulator, action, key_id, **where)
        emulator.calls.record(action, key_id, err.status, err.code, **where)
        return err.status, err.headers, kms_responses.error_body(request_id, region, err)
    except Exception as exc:  # a bug in the emulator: answer as KMS would, log the type only
        log.error("internal error in %s: %s", action, type(exc).__name__)
        emulator.calls.record(action, key_id, 500, "InternalFailure", **where)
        return 500, {}, kms_responses.internal_error_body(request_id, region)
    emulator.calls.record(action, key_id, 200, None, **where)
    result["RequestId"] = request_id
    return 200, {}, result


def _trail(
    emulator: Emulator,
    kms: KmsBackend,
    request: rpc.Request,
    request_id: str,
    access_key_id: str,
    client_ip: str,
    error: ApiError | None,
) -> None:
    """ActionTrail: a write call (done or refused by KMS) goes to the event bus. The bus and
    FC are the first account's in the first region: other scopes' events stay there."""
    if request.action not in actiontrail.WRITE_ACTIONS or kms is not emulator.kms:
        return
    record = actiontrail.kms_record(
        action=request.action,
        params=request.params,
        request_id=request_id,
        region=emulator.region,
        account_id=emulator.account_id,
        access_key_id=access_key_id,
        source_ip=client_ip,
        user_agent=request.headers.get("user-agent", ""),
        event_time=emulator.clock.now(),
        error=error,
    )
    source = emulator.kms.settings.actiontrail_event_source
    try:
        emulator.events.publish(
            actiontrail.cloud_event(record, source=source, account_id=emulator.account_id)
        )
    except Exception as exc:  # the call itself stands: never turn it into an error
        log.error(
            "could not publish the ActionTrail event of %s: %s",
            request.action,
            type(exc).__name__,
        )

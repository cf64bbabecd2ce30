"""An STS request reaching the STS port: the signature, the version, the fault hooks (STS has
no quota here, and either transport fault drops the connection), the answer (``sts.py``)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from .. import rpc
from .. import sts as sts_api
from ..errors import ApiError
from . import DROP

if TYPE_CHECKING:
    from ..emulator import Emulator


def handle(
    emulator: Emulator, method: str, raw_path: str, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str], dict[str, Any]] | object:
    """One STS request (the STS port): signature, version, fault hooks (no quota), answer."""
    request_id = str(uuid.uuid4()).upper()
    request = rpc.parse(method, raw_path, headers, body)
    action = request.action
    where: dict[str, str | None] = {"account_id": None, "region": None}
    try:
        rpc.require_action(request)
        access_key_id = rpc.verify_signature(request, emulator.credentials)
        where["account_id"] = emulator.credentials.account_of(access_key_id)
        if request.version != sts_api.API_VERSION:
            raise ApiError(
                "InvalidVersion", f"Specified version {request.version} is invalid.", 400
            )
        if emulator.faults.before(action, None) is not None:  # either transport fault
            emulator.calls.record(action, None, 0, "DropConnection", **where)
            return DROP
        result = emulator.sts.dispatch(access_key_id, action, request.params)
    except ApiError as err:
        emulator.calls.record(action, None, err.status, err.code, **where)
        return err.status, err.headers, sts_api.error_body(request_id, err)
    emulator.calls.record(action, None, 200, None, **where)
    result["RequestId"] = request_id
    return 200, {}, result

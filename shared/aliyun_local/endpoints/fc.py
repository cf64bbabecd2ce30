"""An FC request (``/2021-04-06/`` or ``/2023-03-30/`` paths, any port): the ACS3 signature,
the version, then ``fc.responses``; errors in FC's JSON shape with ``x-fc-request-id``."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from ..errors import ApiError
from ..fc import API_VERSION as FC_VERSION
from ..fc import API_VERSION_V3 as FC3_VERSION
from ..fc import responses as fc_responses
from ..signing import verify_acs3

if TYPE_CHECKING:
    from ..emulator import Emulator


def handle(
    emulator: Emulator, method: str, raw_path: str, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str], bytes]:
    request_id = str(uuid.uuid4())
    parts = urlsplit(raw_path)
    query = parse_qsl(parts.query, keep_blank_values=True)
    action = headers.get("x-acs-action", "")
    try:
        verify_acs3(method, parts.path, query, headers, body, emulator.credentials)
        version = headers.get("x-acs-version")
        if version not in (None, FC_VERSION, FC3_VERSION):
            raise ApiError("InvalidVersion", f"Specified version {version} is invalid.", 400)
        status, extra, out, action = fc_responses.handle(
            emulator.fc, method, parts.path, headers, body, dict(query)
        )
    except ApiError as err:
        emulator.calls.record(action or "FC", None, err.status, err.code)
        payload = {
            "RequestId": request_id,
            "Code": err.code,
            "Message": err.message,
            "ErrorCode": err.code,
            "ErrorMessage": err.message,
        }
        return (
            err.status,
            {"x-fc-request-id": request_id, **err.headers},
            json.dumps(payload).encode(),
        )
    emulator.calls.record(action, None, status, None)
    return status, {"x-fc-request-id": request_id, **extra}, out

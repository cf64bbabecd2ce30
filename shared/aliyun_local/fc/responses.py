"""FC routes: REST paths under /2021-04-06/, JSON bodies, as the fc-open SDK sends them."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote

from ..errors import ApiError
from .models import FcBackend

_ROUTES = [
    (re.compile(r"^/2021-04-06/services/?\Z"), {"POST": "CreateService"}),
    (
        re.compile(r"^/2021-04-06/services/([^/]+)/?\Z"),
        {"GET": "GetService", "PUT": "UpdateService"},
    ),
    (re.compile(r"^/2021-04-06/services/([^/]+)/functions/?\Z"), {"POST": "CreateFunction"}),
    (
        re.compile(r"^/2021-04-06/services/([^/]+)/functions/([^/]+)/?\Z"),
        {"GET": "GetFunction", "PUT": "UpdateFunction"},
    ),
    (
        re.compile(r"^/2021-04-06/services/([^/]+)/functions/([^/]+)/triggers/?\Z"),
        {"POST": "CreateTrigger"},
    ),
    (
        re.compile(r"^/2021-04-06/services/([^/]+)/functions/([^/]+)/triggers/([^/]+)/?\Z"),
        {"GET": "GetTrigger", "PUT": "UpdateTrigger"},
    ),
    (
        re.compile(r"^/2021-04-06/services/([^/]+)/functions/([^/]+)/async-invoke-config/?\Z"),
        {"PUT": "PutFunctionAsyncInvokeConfig", "GET": "GetFunctionAsyncInvokeConfig"},
    ),
    (
        re.compile(r"^/2021-04-06/services/([^/]+)/functions/([^/]+)/invocations/?\Z"),
        {"POST": "InvokeFunction"},
    ),
]


def route(method: str, path: str) -> tuple[str, list[str]]:
    for pattern, methods in _ROUTES:
        m = pattern.match(path)
        if m:
            action = methods.get(method)
            if action is None:
                break
            return action, [unquote(g) for g in m.groups()]
    raise ApiError(
        "InvalidAction.NotFound",
        f"{method} {path} is not part of the FC API aliyun-local emulates",
        404,
    )


def _json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError("InvalidArgument", "the body is not JSON", 400) from None
    if not isinstance(doc, dict):
        raise ApiError("InvalidArgument", "the body must be a JSON object", 400)
    return doc


def handle(
    fc: FcBackend, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str], bytes, str]:
    """Returns (status, headers, body, action)."""
    action, args = route(method, path)
    if action == "InvokeFunction":
        service, function = args
        kind = headers.get("x-fc-invocation-type", "Sync").strip('"')
        if kind == "Async":
            if len(body) > 128 * 1024:
                raise ApiError("InvalidArgument", "async event larger than 128 KB", 400)
            request_id = fc.invoke_async(service, function, body)
            return 202, {"x-fc-request-id": request_id}, b"", action
        if kind != "Sync":
            raise ApiError("InvalidArgument", f"X-Fc-Invocation-Type {kind} is invalid", 400)
        ok, out, _error = fc.invoke(service, function, body)
        extra = {"x-fc-request-id": headers.get("x-acs-signature-nonce", "")[:36] or "sync"}
        if not ok:
            extra["x-fc-error-type"] = "UnhandledInvocationError"
        return 200, extra, out, action
    doc = _json(body) if method in ("POST", "PUT") else {}
    if action == "CreateService":
        result: Any = fc.create_service(doc)
        status = 201
    elif action == "GetService":
        result, status = dict(fc.get_service(args[0])), 200
    elif action == "UpdateService":
        result, status = fc.update_service(args[0], doc), 200
    elif action == "CreateFunction":
        result, status = fc.create_function(args[0], doc), 201
    elif action == "GetFunction":
        result, status = fc.get_function(*args).view(), 200
    elif action == "UpdateFunction":
        result, status = fc.update_function(args[0], args[1], doc), 200
    elif action == "CreateTrigger":
        result, status = fc.put_trigger(args[0], args[1], doc, name=None, create=True), 201
    elif action == "GetTrigger":
        result, status = fc.get_trigger(*args), 200
    elif action == "UpdateTrigger":
        result, status = fc.put_trigger(args[0], args[1], doc, name=args[2], create=False), 200
    elif action == "PutFunctionAsyncInvokeConfig":
        result, status = fc.put_async_config(args[0], args[1], doc), 200
    else:  # GetFunctionAsyncInvokeConfig
        with fc.lock:
            config = fc.async_configs.get((args[0], args[1]))
        if config is None:
            raise ApiError("AsyncConfigNotExists", "no async invoke config", 404)
        result, status = dict(config), 200
    return status, {"content-type": "application/json"}, json.dumps(result).encode(), action

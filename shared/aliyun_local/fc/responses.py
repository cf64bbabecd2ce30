"""FC routes: REST paths under /2021-04-06/ (FC 2.0, the fc-open SDK) and /2023-03-30/ (FC 3.0,
the fc20230330 SDK), JSON bodies, as those SDKs send them.

FC 3.0 functions have no service: the handlers below pass ``V3`` where FC 2.0 passes the
service name, and answer FC 3.0's shapes (``{"functions": [...]}`` lists, ``functionArn``).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote

from ..errors import ApiError
from . import V3
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
    (
        re.compile(r"^/2021-04-06/services/([^/]+)/functions/([^/]+)/on-demand-config/?$"),
        {"PUT": "PutFunctionOnDemandConfig", "GET": "GetFunctionOnDemandConfig"},
    ),
]


_F3 = r"^/2023-03-30/functions/([^/]+)"
_ROUTES_V3 = [
    (re.compile(r"^/2023-03-30/functions/?$"), {"POST": "CreateFunction", "GET": "ListFunctions"}),
    (
        re.compile(_F3 + r"/?$"),
        {"GET": "GetFunction", "PUT": "UpdateFunction", "DELETE": "DeleteFunction"},
    ),
    (re.compile(_F3 + r"/triggers/?$"), {"POST": "CreateTrigger", "GET": "ListTriggers"}),
    (
        re.compile(_F3 + r"/triggers/([^/]+)/?$"),
        {"GET": "GetTrigger", "PUT": "UpdateTrigger", "DELETE": "DeleteTrigger"},
    ),
    (
        re.compile(_F3 + r"/async-invoke-config/?$"),
        {
            "PUT": "PutAsyncInvokeConfig",
            "GET": "GetAsyncInvokeConfig",
            "DELETE": "DeleteAsyncInvokeConfig",
        },
    ),
    (
        re.compile(_F3 + r"/concurrency/?$"),
        {
            "PUT": "PutConcurrencyConfig",
            "GET": "GetConcurrencyConfig",
            "DELETE": "DeleteConcurrencyConfig",
        },
    ),
    (re.compile(_F3 + r"/invocations/?$"), {"POST": "InvokeFunction"}),
]


def route(method: str, path: str) -> tuple[str, list[str]]:
    routes = _ROUTES_V3 if path.startswith("/2023-03-30/") else _ROUTES
    for pattern, methods in routes:
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


# Answered by the same code for both versions, with the service ``V3`` for FC 3.0.
_SHARED_V3 = {"InvokeFunction", "GetTrigger", "UpdateTrigger", "CreateTrigger"}


def _handle_v3(
    fc: FcBackend,
    method: str,
    action: str,
    args: list[str],
    query: dict[str, str],
    body: bytes,
) -> tuple[int, dict[str, str], bytes, str]:
    doc = _json(body) if method in ("POST", "PUT") else {}
    status, result = 200, None
    if action == "CreateFunction":
        result, status = fc.create_function(V3, doc), 200
    elif action == "ListFunctions":
        prefix = query.get("prefix", "")
        result = {"functions": fc.list_functions(V3, prefix), "nextToken": ""}
    elif action == "GetFunction":
        result = fc.get_function(V3, args[0]).view(fc.region, fc.account_id)
    elif action == "UpdateFunction":
        result = fc.update_function(V3, args[0], doc)
    elif action == "DeleteFunction":
        fc.delete_function(V3, args[0])
        status = 204
    elif action == "ListTriggers":
        result = {"triggers": fc.list_triggers(V3, args[0]), "nextToken": ""}
    elif action == "DeleteTrigger":
        fc.delete_trigger(V3, args[0], args[1])
        status = 204
    elif action == "PutAsyncInvokeConfig":
        result = fc.put_async_config(V3, args[0], doc)
    elif action == "GetAsyncInvokeConfig":
        fc.get_function(V3, args[0])
        with fc.lock:
            config = fc.async_configs.get((V3, args[0]))
        if config is None:
            raise ApiError("AsyncConfigNotFound", "no async invoke config", 404)
        result = dict(config)
    elif action == "DeleteAsyncInvokeConfig":
        with fc.lock:
            if fc.async_configs.pop((V3, args[0]), None) is None:
                raise ApiError("AsyncConfigNotFound", "no async invoke config", 404)
        status = 204
    elif action == "PutConcurrencyConfig":
        result = fc.put_concurrency(V3, args[0], doc)
    elif action == "GetConcurrencyConfig":
        fc.get_function(V3, args[0])
        result = fc.get_concurrency(V3, args[0])
    else:  # DeleteConcurrencyConfig
        fc.delete_concurrency(V3, args[0])
        status = 204
    out = b"" if result is None else json.dumps(result).encode()
    return status, {"content-type": "application/json"}, out, action


def handle(
    fc: FcBackend,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    query: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes, str]:
    """Returns (status, headers, body, action)."""
    action, args = route(method, path)
    if path.startswith("/2023-03-30/"):
        args = [V3, *args]
        if action not in _SHARED_V3:
            return _handle_v3(fc, method, action, args[1:], query, body)
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
    if args and args[0] == V3:  # FC 3.0 triggers: same state, FC 3.0's status code on create
        if action == "CreateTrigger":
            result = fc.put_trigger(V3, args[1], doc, name=None, create=True)
        elif action == "GetTrigger":
            result = fc.get_trigger(*args)
        else:
            result = fc.put_trigger(V3, args[1], doc, name=args[2], create=False)
        return 200, {"content-type": "application/json"}, json.dumps(result).encode(), action
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
    elif action in ("PutFunctionOnDemandConfig", "GetFunctionOnDemandConfig"):
        # FC 2.0's cap on a function's on-demand instances: the same cap as FC 3.0's
        # reserved concurrency here.
        if action == "PutFunctionOnDemandConfig":
            cap = doc.get("maximumInstanceCount")
            fc.put_concurrency(args[0], args[1], {"reservedConcurrency": cap})
        fc.get_function(args[0], args[1])
        cap = fc.get_concurrency(args[0], args[1])["reservedConcurrency"]
        resource = f"services/{args[0]}.LATEST/functions/{args[1]}"
        result, status = {"resource": resource, "maximumInstanceCount": cap}, 200
    else:  # GetFunctionAsyncInvokeConfig
        with fc.lock:
            config = fc.async_configs.get((args[0], args[1]))
        if config is None:
            raise ApiError("AsyncConfigNotExists", "no async invoke config", 404)
        result, status = dict(config), 200
    return status, {"content-type": "application/json"}, json.dumps(result).encode(), action

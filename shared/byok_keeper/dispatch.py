"""Dispatching due keys: inline (a bounded pool in this process) or FC async invocations of the
``reimport`` function (one per key), and the only importer of the FC SDKs: FC 3.0
(``alibabacloud-fc20230330``, functions ``<prefix>-sweep`` and ``<prefix>-reimport``, the
default) and FC 2.0 (``alibabacloud-fc-open20210406``, functions in a service).

Inline suits small fleets: one sweep invocation does everything. ``fc-async`` suits large ones:
the sweep plans, then sends one async ``reimport`` event per due key, in batches of
``BYOK_DISPATCH_BATCH`` concurrent sends; FC retries each and routes final failures to OnFailure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, ExecutionError
from .kms import split_endpoint


class InvokeError(ExecutionError):
    """An FC invocation could not be sent or failed."""


@dataclass(frozen=True)
class FcTarget:
    """Where the deployed functions are: FC 3.0 names carry the prefix, FC 2.0 a service."""

    api: str = "3.0"
    prefix: str = "byok-keeper"
    service: str = "byok-keeper"

    @classmethod
    def from_settings(cls, settings: Any) -> FcTarget:
        return cls(settings.fc_api, settings.fc_prefix, settings.fc_service)

    def function(self, role: str) -> str:
        """``sweep`` -> ``byok-keeper-sweep`` (FC 3.0) or ``sweep`` (FC 2.0)."""
        return f"{self.prefix}-{role}" if self.api == "3.0" else role

    def label(self, role: str) -> str:
        return self.function(role) if self.api == "3.0" else f"{self.service}/{role}"


def build_fc_client(
    *,
    region: str,
    account_id: str,
    endpoint: str | None,
    credential: Any = None,
    api: str = "3.0",
):
    from alibabacloud_credentials.client import Client as CredentialClient
    from alibabacloud_tea_openapi.models import Config

    if api == "3.0":
        from alibabacloud_fc20230330.client import Client
    else:
        from alibabacloud_fc_open20210406.client import Client

    if endpoint:
        scheme, host = split_endpoint(endpoint)
    elif account_id:
        scheme, host = "https", f"{account_id}.{region}.fc.aliyuncs.com"
    else:
        raise ConfigError("FC needs BYOK_FC_ENDPOINT or BYOK_ACCOUNT_ID to find its endpoint")
    return Client(
        Config(
            credential=credential or CredentialClient(),
            endpoint=host,
            protocol=scheme,
            region_id=region,
            connect_timeout=5_000,
            read_timeout=900_000,
        )
    )


def invoke(client, target: FcTarget, role: str, event: dict, *, asynchronous: bool) -> dict:
    """Invoke the deployed ``role`` function (``sweep`` or ``reimport``) of ``target``;
    returns ``{"status", "request_id", "result"}``. Raises ``InvokeError``."""
    from alibabacloud_tea_openapi.exceptions import ClientException, ServerException
    from darabonba.runtime import RuntimeOptions

    if target.api == "3.0":
        from alibabacloud_fc20230330 import models as fc

        args: tuple = (target.function(role),)
    else:
        from alibabacloud_fc_open20210406 import models as fc

        args = (target.service, role)
    name = target.label(role)
    headers = fc.InvokeFunctionHeaders(x_fc_invocation_type="Async" if asynchronous else "Sync")
    request = fc.InvokeFunctionRequest(body=json.dumps(event).encode())
    try:
        response = client.invoke_function_with_options(*args, request, headers, RuntimeOptions())
        body = response.body or b""
        if hasattr(body, "read"):  # FC 3.0's SDK answers with a stream
            body = body.read()
    except (ClientException, ServerException) as exc:
        raise InvokeError(
            f"invoking {name} failed: {getattr(exc, 'code', '')} "
            f"(HTTP {getattr(exc, 'status_code', '?')})"
        ) from None
    except Exception as exc:  # transport; the message may quote the URL, so name only the type
        raise InvokeError(f"invoking {name} failed: {type(exc).__name__}") from None
    headers_in = {k.lower(): v for k, v in (response.headers or {}).items()}
    result: Any = None
    if body:
        try:
            result = json.loads(body)
            if isinstance(result, str):  # a handler that returned JSON text
                result = json.loads(result)
        except ValueError:
            result = result if isinstance(result, str) else body.decode("utf-8", "replace")
    if headers_in.get("x-fc-error-type"):
        raise InvokeError(f"{name} raised: {result}")
    return {
        "status": response.status_code,
        "request_id": headers_in.get("x-fc-request-id", ""),
        "result": result,
    }


def dispatch_sweep(
    deps: dict[str, Any],
    options: dict[str, Any],
    *,
    context_request_id: str,
    on_result: Callable[..., None] | None = None,
) -> dict:
    """The sweep function's work: inline, or plan here and fan out async ``reimport`` calls.

    ``on_result(sweep_result, dispatch)`` sees the run's decisions and outcomes (for fc-async,
    the outcomes are the keys that could not be described or dispatched)."""
    from datetime import timedelta

    from .audit import AuditLog
    from .plan import Policy
    from .plan import plan as make_plan
    from .sweep import decisions_json, discover, run_sweep

    settings = deps["settings"]
    gateway, vault = deps["gateway"], deps["vault"]
    policy = Policy(renew_before=timedelta(seconds=settings.renew_before_seconds))
    audit = AuditLog(settings.audit_file)
    if settings.dispatch == "inline" or options["dry_run"]:
        result = run_sweep(
            gateway,
            vault,
            policy=policy,
            dry_run=options["dry_run"],
            scan_account=options["scan_account"],
            concurrency=settings.concurrency,
            audit=audit,
            trigger="fc-timer",
            actor=context_request_id or "fc",
        )
        if on_result is not None:
            on_result(result, "inline")
        return {
            "ok": not result.failed,
            "dispatch": "inline",
            "dry_run": options["dry_run"],
            "summary": result.summary(),
            "failed": [o.key_id for o in result.failed],
        }

    facts, errors = discover(
        gateway,
        vault,
        policy=policy,
        scan_account=options["scan_account"],
        concurrency=settings.concurrency,
    )
    decisions = make_plan(facts, gateway.now(), policy)
    due = [d for d in decisions if d.due]
    client = build_fc_client(
        region=deps["region"],
        account_id=deps["account_id"] or (settings.account_id or ""),
        endpoint=settings.fc_endpoint,
        credential=deps["credential"],
        api=settings.fc_api,
    )
    target = FcTarget.from_settings(settings)

    def send(decision) -> tuple[str, str]:
        event = {
            "key_id": decision.key_id,
            "reason": f"{decision.decision}: {decision.reason}",
            "requested_by": f"sweep:{context_request_id}",
        }
        try:
            sent = invoke(client, target, "reimport", event, asynchronous=True)
            return decision.key_id, sent["request_id"] or "sent"
        except InvokeError as exc:
            return decision.key_id, f"error: {exc}"

    with ThreadPoolExecutor(max_workers=min(settings.dispatch_batch, max(1, len(due)))) as pool:
        sent = list(pool.map(send, due))
    for key_id, status in sent:
        audit.event(
            "dispatch",
            key_id=key_id,
            status=status,
            trigger="fc-timer",
            actor=context_request_id or "fc",
        )
    counts: dict[str, int] = {}
    for d in decisions:
        counts[d.decision] = counts.get(d.decision, 0) + 1
    failed_sends = [k for k, s in sent if s.startswith("error")]
    if on_result is not None:
        from .reestablish import FAILED, Outcome
        from .sweep import SweepResult

        lost = [
            Outcome(k, "ALERT", FAILED, str(e), 0, error_code=type(e).__name__) for k, e in errors
        ]
        unsent = [
            Outcome(d.key_id, d.decision, FAILED, "dispatch failed", 0, error_code="InvokeError")
            for d in due
            if d.key_id in failed_sends
        ]
        result = SweepResult(gateway.now(), tuple(decisions), (*lost, *unsent), False)
        on_result(result, "fc-async")
    return {
        "ok": not failed_sends and not errors,
        "dispatch": "fc-async",
        "decisions": counts,
        "dispatched": [k for k, s in sent if not s.startswith("error")],
        "failed": failed_sends + [k for k, _ in errors],
        "plan": decisions_json(due),
    }

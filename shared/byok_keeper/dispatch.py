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
from dataclasses import dataclass, field, replace
from typing import Any

from .audit import AuditLog
from .errors import ConfigError, ExecutionError
from .kms import split_endpoint
from .logs import get_logger
from .plan import Decision
from .reestablish import FAILED, Outcome
from .runtime import Deps
from .sweep import decisions_json, run_sweep


class InvokeError(ExecutionError):
    """An FC invocation could not be sent or failed."""


# The deployed functions ``invoke`` may call, by role. The functions' own RAM role is granted
# fc:InvokeFunction on exactly these (deploy/ram-policy.json, FanOut): the sweep sends one async
# ``reimport`` per due key (fc-async) and, with many targets, one async ``sweep`` per target
# (``fc_targets``); tests/unit/test_deploy_artefacts.py reads the calls and checks the policy.
REIMPORT = "reimport"
SWEEP = "sweep"
INVOKABLE = (REIMPORT, SWEEP)


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
    if role not in INVOKABLE:
        raise InvokeError(f"invoking {role!r}: not a function byok-keeper invokes")
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


@dataclass
class FcAsyncApplier:
    """Hands each due key to the deployed ``reimport`` function (one async invocation each,
    ``batch`` sends at a time) and audits one ``dispatch`` line per key. Its outcomes are only
    the sends that failed: the reimport function audits each key it restores."""

    client: Any
    target: FcTarget
    audit: AuditLog
    batch: int
    requested_by: str  # the sweep's FC request id, e.g. ``sweep:<id>``
    actor: str
    final: bool = False
    sent: list[tuple[str, str]] = field(default_factory=list)  # (key id, request id or error)
    target_name: str | None = None  # issue 16: the reimport event names the key's target

    def _send(self, decision: Decision) -> tuple[str, str]:
        event = {
            "key_id": decision.key_id,
            "reason": f"{decision.decision}: {decision.reason}",
            "requested_by": self.requested_by,
        }
        if self.target_name:
            event["target"] = self.target_name
        try:
            sent = invoke(self.client, self.target, REIMPORT, event, asynchronous=True)
            return decision.key_id, sent["request_id"] or "sent"
        except InvokeError as exc:
            return decision.key_id, f"error: {exc}"

    def apply(self, due: list[Decision]) -> list[Outcome]:
        with ThreadPoolExecutor(max_workers=min(self.batch, max(1, len(due)))) as pool:
            self.sent = list(pool.map(self._send, due))
        for key_id, status in self.sent:
            self.audit.event(
                "dispatch", key_id=key_id, status=status, trigger="fc-timer", actor=self.actor
            )
        failed = set(self.failed)
        return [
            Outcome(d.key_id, d.decision, FAILED, "dispatch failed", 0, error_code="InvokeError")
            for d in due
            if d.key_id in failed
        ]

    @property
    def failed(self) -> list[str]:
        return [k for k, s in self.sent if s.startswith("error")]

    @property
    def dispatched(self) -> list[str]:
        return [k for k, s in self.sent if not s.startswith("error")]


def fc_async_applier(
    deps: Deps,
    context_request_id: str,
    target_name: str | None = None,
    fc_client: Any = None,
) -> FcAsyncApplier:
    """``fc_client``: the deployment's own FC client (a target's ``Deps`` sign for another
    account, while the functions live in the deployment's)."""
    settings = deps.settings
    client = fc_client or build_fc_client(
        region=deps.region,
        account_id=deps.account_id,
        endpoint=settings.fc_endpoint,
        credential=deps.credential,
        api=settings.fc_api,
    )
    return FcAsyncApplier(
        client,
        FcTarget.from_settings(settings),
        deps.audit,
        settings.dispatch_batch,
        requested_by=f"sweep:{context_request_id}",
        actor=context_request_id or "fc",
        target_name=target_name,
    )


def dispatch_sweep(
    deps: Deps,
    options: dict[str, Any],
    *,
    context_request_id: str,
    on_result: Callable[..., None] | None = None,
    target_name: str | None = None,
    fc_client: Any = None,
) -> dict:
    """The sweep function's work: plan once, then apply inline or fan out async ``reimport``
    calls (``BYOK_DISPATCH``; a dry run is always inline).

    ``on_result(sweep_result, dispatch)`` sees the run's decisions and outcomes (for fc-async,
    the outcomes are the keys that could not be described or dispatched)."""
    settings = deps.settings
    inline = settings.dispatch == "inline" or options["dry_run"]
    applier = None if inline else fc_async_applier(deps, context_request_id, target_name, fc_client)
    log = get_logger("byok_keeper.sweep")  # clock_skew, kms_access_lost: as the CLI logs them
    result = run_sweep(
        deps,
        dry_run=options["dry_run"],
        scan_account=options["scan_account"],
        trigger="fc-timer",
        actor=context_request_id or "fc",
        applier=applier,
        log=(log.bind(target=target_name) if target_name else log).warning,
    )
    if applier is None:
        if on_result is not None:
            on_result(result, "inline")
        return {
            "ok": not result.failed,
            "dispatch": "inline",
            "dry_run": options["dry_run"],
            "summary": result.summary(),
            "stopped": result.stopped,
            "failed": [o.key_id for o in result.failed],
        }
    failed = [o for o in result.outcomes if o.failed]  # not described, or not sent
    if on_result is not None:
        on_result(replace(result, outcomes=tuple(failed), stats={}), "fc-async")
    lost = [o.key_id for o in failed if o.decision == "ALERT"]  # due keys are never ALERT
    counts: dict[str, int] = {}
    for d in result.decisions:
        counts[d.decision] = counts.get(d.decision, 0) + 1
    return {
        "ok": not failed,
        "dispatch": "fc-async",
        "decisions": counts,
        "dispatched": applier.dispatched,
        "failed": applier.failed + lost,
        "plan": decisions_json([d for d in result.decisions if d.due]),
    }

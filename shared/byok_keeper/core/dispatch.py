"""Dispatching due keys: inline (a bounded pool in this process) or FC async invocations of the
``reimport`` function (batches of keys), and the only importer of the FC SDKs: FC 3.0
(``alibabacloud-fc20230330``, functions ``<prefix>-sweep`` and ``<prefix>-reimport``, the
default) and FC 2.0 (``alibabacloud-fc-open20210406``, functions in a service).

Inline suits small fleets: one sweep invocation does everything. ``fc-async`` suits large ones:
the sweep plans, restores a few due keys itself (all of them up to ``BYOK_INLINE_KEYS``, else its
budget's part) and sends the rest as async ``reimport`` events of up to ``KEYS_PER_REIMPORT``
keys each (``split_due``), ``BYOK_DISPATCH_BATCH`` sends at once; FC retries each and routes
final failures to OnFailure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from ..domain.audit import AuditLog
from ..domain.errors import ConfigError, ExecutionError
from ..domain.logs import get_logger
from ..gateway.kms import split_endpoint
from ..planning.plan import Decision
from .deps import Deps
from .reestablish import FAILED, Outcome
from .sweep import InlineApplier, decisions_json, run_sweep


class InvokeError(ExecutionError):
    """An FC invocation could not be sent or failed."""


# The deployed functions ``invoke`` may call, by role. The functions' own RAM role is granted
# fc:InvokeFunction on exactly these (deploy/ram-policy.json, FanOut): the sweep sends async
# ``reimport`` batches of due keys (fc-async) and, with many targets, one async ``sweep`` per target
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


# The fan-out's shape (issue 30). FC bills per invocation, so due keys travel in batches
# (``fc_batch``), and a handful are cheaper restored by the sweep itself.
KEYS_PER_REIMPORT = 100  # the most keys one reimport event names (fc_batch refuses more)
# Keys per batch sent, at most: one batch must end well inside reimport's 120 s Timeout at its
# instance's budget (8 % of the share: 2 reads/s at the default 25), ~5 reads a key. A batch cut
# by the timeout is retried whole by FC and ends the same way (measured at 67 keys a batch).
BATCH_KEYS = 20
FANOUT_WIDTH = 5  # batches to spread over when there are enough keys: reimport's default cap
MIN_BATCH = 10  # keys per batch at least (under 0.1 invocations per key), when there are enough
SWEEP_PART = 1 / 3  # the sweep instance's default budget (20 %) beside reimport's (40 %)


def split_due(n: int, inline_keys: int = 20) -> tuple[int, list[int]]:
    """(how many of ``n`` due keys the sweep restores itself, the sizes of the batches it
    sends): everything inline up to ``inline_keys`` (``BYOK_INLINE_KEYS``; 0 keeps none); else
    the sweep keeps its budget's part (``SWEEP_PART``, at most ``KEYS_PER_REIMPORT``) and sends
    the rest in at least ``min(FANOUT_WIDTH, rest // MIN_BATCH)`` batches of at most
    ``BATCH_KEYS`` keys, sized evenly (so each reserved reimport instance gets work)."""
    if n <= inline_keys:
        return n, []
    # At most one full event's worth: the sweep's own 900 s Timeout also bounds its discovery.
    keep = min(round(n * SWEEP_PART), KEYS_PER_REIMPORT) if inline_keys else 0  # 0: none kept
    rest = n - keep
    batches = max(-(-rest // BATCH_KEYS), min(FANOUT_WIDTH, max(1, rest // MIN_BATCH)))
    return keep, [rest // batches + (1 if i < rest % batches else 0) for i in range(batches)]


@dataclass
class FcAsyncApplier:
    """Restores its part of the due keys here (``inline``, see ``split_due``) and hands the rest
    to the deployed ``reimport`` function in batches (one async invocation each, ``batch`` sends
    at a time), auditing one ``dispatch`` line per key sent. Its outcomes are the keys restored
    here (audited here) and the sends that failed: the reimport function audits the others."""

    client: Any
    target: FcTarget
    audit: AuditLog
    batch: int
    requested_by: str  # the sweep's FC request id, e.g. ``sweep:<id>``
    actor: str
    final: bool = False
    sent: list[tuple[str, str]] = field(default_factory=list)  # (key id, request id or error)
    target_name: str | None = None  # issue 16: the reimport event names the key's target
    inline: InlineApplier | None = None  # None: every due key is sent
    inline_keys: int = 20  # settings.inline_keys
    restored: list[Outcome] = field(default_factory=list)  # the keys restored here
    invocations: int = 0  # reimport invocations sent

    @property
    def stopped(self) -> Any:
        return None if self.inline is None else self.inline.stopped

    def _send(self, chunk: list[Decision]) -> tuple[list[str], str]:
        ids = [d.key_id for d in chunk]
        event: dict[str, Any] = {
            "key_ids": ids,
            "reason": f"sweep: {len(ids)} due",
            "requested_by": self.requested_by,
        }
        if self.target_name:
            event["target"] = self.target_name
        try:
            sent = invoke(self.client, self.target, REIMPORT, event, asynchronous=True)
            return ids, sent["request_id"] or "sent"
        except InvokeError as exc:
            return ids, f"error: {exc}"

    def apply(self, due: list[Decision]) -> list[Outcome]:
        n, self.sent, self.restored = len(due), [], []
        everything = (0, [KEYS_PER_REIMPORT] * -(-n // KEYS_PER_REIMPORT))  # no inline applier
        keep, sizes = split_due(n, self.inline_keys) if self.inline else everything
        chunks, start = [], keep
        for size in sizes:
            chunks.append(due[start : start + size])
            start += size
        chunks = [c for c in chunks if c]
        self.invocations = len(chunks)
        if chunks:
            with ThreadPoolExecutor(max_workers=min(self.batch, len(chunks))) as pool:
                self.sent = [(k, s) for ids, s in pool.map(self._send, chunks) for k in ids]
        for key_id, status in self.sent:
            self.audit.event(
                "dispatch", key_id=key_id, status=status, trigger="fc-timer", actor=self.actor
            )
        failed = set(self.failed)
        outcomes = [
            Outcome(d.key_id, d.decision, FAILED, "dispatch failed", 0, error_code="InvokeError")
            for d in due[keep:]
            if d.key_id in failed
        ]
        if keep and self.inline is not None:
            self.restored = self.inline.apply(due[:keep])
            for o in self.restored:  # final outcomes: one canonical line each, as run_sweep
                self.audit.event("key", trigger="fc-timer", actor=self.actor, dry_run=False,
                                 **o.to_json())  # fmt: skip
        return self.restored + outcomes

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
    actor = context_request_id or "fc"
    audit = deps.audit
    inline = InlineApplier(
        deps.gateway,
        deps.require_vault(),
        concurrency=settings.concurrency,
        before_import=lambda d: audit.importing(d.key_id, d.decision, trigger="fc-timer",
                                                actor=actor),
    )  # fmt: skip
    return FcAsyncApplier(
        client,
        FcTarget.from_settings(settings),
        audit,
        settings.dispatch_batch,
        requested_by=f"sweep:{context_request_id}",
        actor=actor,
        target_name=target_name,
        inline=inline,
        inline_keys=settings.inline_keys,
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
    failed = [o for o in result.outcomes if o.failed]  # not described, not sent or not restored
    if on_result is not None:
        done = [o for o in applier.restored if not o.failed]
        on_result(replace(result, outcomes=tuple(failed + done), stats={}), "fc-async")
    sent = set(applier.failed)
    lost = [o.key_id for o in failed if o.key_id not in sent]  # not described, or not restored
    counts: dict[str, int] = {}
    for d in result.decisions:
        counts[d.decision] = counts.get(d.decision, 0) + 1
    return {
        "ok": not failed,
        "dispatch": "fc-async",
        "decisions": counts,
        "dispatched": applier.dispatched,
        "invocations": applier.invocations,
        "restored": [o.key_id for o in applier.restored if not o.failed],
        "failed": applier.failed + lost,
        "plan": decisions_json([d for d in result.decisions if d.due]),
    }

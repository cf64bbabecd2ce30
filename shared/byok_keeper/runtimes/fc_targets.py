"""FC across targets (issue 16). The deployment lives in one account; ``BYOK_CONFIG`` names the
settings file whose ``[[targets]]`` it covers.

* The sweep function, on its timer: with at most ``INLINE_TARGETS_MAX`` targets it sweeps them
  itself, in parallel (the one fleet loop, ``fleet_sweep.sweep_fleet``), each target's due keys
  applied per ``BYOK_DISPATCH`` (inline, or one async ``reimport`` invocation per key whose
  event carries ``"target"``). With more targets it
  fans out: one async invocation of itself per target (timer payload ``{"target": NAME}``), so
  one invocation's timeout bounds one target's sweep, not the fleet's.
* The reimport function acts in the target its event names (none: the deployment's own
  account and region, as before).

Each target's ``Deps`` is kept per warm instance (``fc.Runtime.targets_cache``), its role
assumed with the function role's credentials. One target failing is its own entry in the
answer; the others still run.

Every target's run logs exactly one ``metrics`` line naming it (``metrics.run_line``): also a
target whose ``Deps`` cannot be built (role not assumable, region unreachable) and one whose
fanned-out invocation could not be sent, as ``result: error`` with no requests, so the SLS
rules grouped by target (deploy/alerts/sls-alerts.json) see it failing.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any

from ..core.fleet_sweep import sweep_fleet
from ..core.targets import Target, load_targets, select
from ..domain.errors import ByokError

INLINE_TARGETS_MAX = 2  # more targets than this: one async sweep invocation per target


def configured_targets() -> tuple[Target, ...]:
    return load_targets(None)


def _fc_client(cache: Any, context: Any) -> Any:
    """The deployment's FC client: its own account, region and credentials (a target's
    ``Deps`` sign for the target's account)."""
    from ..core.dispatch import build_fc_client

    settings = cache.settings
    return build_fc_client(
        region=getattr(context, "region", None) or settings.require_region(),
        account_id=getattr(context, "account_id", None) or os.environ.get("BYOK_ACCOUNT_ID", ""),
        endpoint=settings.fc_endpoint,
        credential=cache.credential,
        api=settings.fc_api,
    )


def _fan_out(cache: Any, targets: tuple[Target, ...], options: dict, context: Any) -> dict:
    from ..core.dispatch import SWEEP, FcTarget, InvokeError, invoke
    from ..operations.metrics import bare_line

    client = _fc_client(cache, context)
    function = FcTarget.from_settings(cache.settings)
    sent: dict[str, dict[str, Any]] = {}
    for target in targets:
        payload = {"target": target.name, "scan_account": options["scan_account"]}
        event = {"triggerName": "byok-keeper-targets", "payload": json.dumps(payload)}
        where = {"region": target.region, "account_id": target.account_id, "target": target.name}
        try:
            answer = invoke(client, function, SWEEP, event, asynchronous=True)
            sent[target.name] = {"ok": True, "request_id": answer["request_id"]}
            result = "dispatched"  # its own invocation writes its line; this one makes it seen
        except InvokeError as exc:  # that target will not run: its metrics line says so
            sent[target.name] = {"ok": False, "error": str(exc)}
            result = "error"
        bare_line(datetime.now(timezone.utc), result, **where, dispatch="per-target")
    return {
        "ok": all(v["ok"] for v in sent.values()),
        "dispatch": "per-target",
        "targets": sent,
    }


def sweep_targets(
    runtime: Any, targets: tuple[Target, ...], options: dict, context: Any, request_id: str
) -> dict[str, Any]:
    """The sweep function with targets: fan out, or sweep the (few, or named) targets here."""
    from ..core.dispatch import dispatch_sweep
    from ..operations.metrics import bare_line, run_line

    try:
        chosen = select(targets, [options["target"]] if "target" in options else [])
    except ByokError as exc:
        return {"ok": False, "error": "BadEvent", "message": str(exc)}
    cache = runtime.targets_cache(context)
    if "target" not in options and not options["dry_run"] and len(chosen) > INLINE_TARGETS_MAX:
        return _fan_out(cache, chosen, options, context)
    inline = cache.settings.dispatch == "inline" or options["dry_run"]
    fc_client = None if inline else _fc_client(cache, context)

    def no_deps(target: Target) -> None:  # no Deps, no run: its one metrics line says so (SLS)
        where = {"region": target.region, "account_id": target.account_id}
        bare_line(datetime.now(timezone.utc), "error", **where, target=target.name)

    def sweep_one(target: Target, deps: Any) -> dict:
        where = {"region": deps.region, "account_id": deps.account_id, "target": target.name}
        with run_line(deps.gateway, **where) as m:
            return dispatch_sweep(
                deps,
                options,
                context_request_id=request_id,
                on_result=m.observe,
                target_name=target.name,
                fc_client=fc_client,
            )

    concurrency = cache.settings.concurrency
    runs = sweep_fleet(chosen, cache.get, sweep_one, concurrency=concurrency, on_no_deps=no_deps)
    answers = {r.target.name: r.value if r.ok else {"ok": False, "error": r.error} for r in runs}
    return {"ok": all(a["ok"] for a in answers.values()), "targets": answers}


def reimport_deps(runtime: Any, target_name: str | None, context: Any) -> Any:
    """The ``Deps`` a reimport event acts with: its target's, or the deployment's own."""
    if target_name is None:
        return runtime.deps(context)
    (target,) = select(configured_targets(), [target_name])
    return runtime.targets_cache(context).get(target)

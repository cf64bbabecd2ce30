"""``plan``, ``sweep`` and ``verify`` across targets (issue 16): each target with its own
``Deps`` and budget, in parallel (``multi.run_targets``). The outputs are the single-target
ones with a ``target`` field on every row (a TARGET column in tables) and a ``targets`` list:
each target's name, account, region, ``ok`` and ``error`` -- a target that fails (a role that
cannot be assumed, a region out of reach) is its own ERROR row and makes the exit code 1,
while the others' rows are complete."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from ...core.deps import local_actor
from ...core.multi import TargetRun, run_targets, target_deps
from ...core.targets import Target
from ...domain import exits
from ...operations.render import expiry, fmt_time, table
from .app import App


def _now(runs: list[TargetRun], now_of) -> datetime:
    times = [now_of(r.value) for r in runs if r.ok]
    return max(times) if times else datetime.now(timezone.utc)


def _statuses(runs: list[TargetRun]) -> list[dict[str, Any]]:
    return [r.status() for r in runs]


def _error_rows(runs: list[TargetRun], width: int) -> list[list[str]]:
    return [
        [r.target.name, "(target)", *[""] * (width - 4), "ERROR", str(r.error)]
        for r in runs
        if not r.ok
    ]


def plan_targets(
    app: App,
    targets: tuple[Target, ...],
    *,
    scan_account: bool,
    show_aliases: bool,
    metrics_file: str | None = None,
) -> int:
    from ...core.sweep import decisions_json, plan_fleet
    from ...gateway.kms import READ_ONLY
    from ...operations.metrics_file import recording, targets_metrics
    from ...planning.plan import ALERT, DUE

    settings = app.settings
    gateways: dict[str, Any] = {}

    def work(target: Target):
        deps = target_deps(settings, target, READ_ONLY)
        gateways[target.name] = deps.gateway
        fleet = plan_fleet(deps, scan_account=scan_account, with_aliases=show_aliases)
        return deps.gateway.now(), fleet

    with recording(metrics_file, targets_metrics(targets)) as recorder:
        runs = run_targets(targets, work, concurrency=settings.concurrency)
        if recorder is not None:
            recorder.runs(_as_plan_results(runs), lambda t: gateways.get(t.name))
    rows: list[list[str]] = []
    decisions: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    pending = alert = False
    for run in runs:
        if not run.ok:
            continue
        name, (_now_t, fleet) = run.target.name, run.value
        aliases = fleet.aliases
        for d, shown in zip(fleet.decisions, decisions_json(fleet.decisions), strict=True):
            pending = pending or d.decision in DUE
            alert = alert or d.decision == ALERT
            label = d.key_id + (
                f" ({', '.join(aliases[d.key_id] or [])})" if aliases.get(d.key_id) else ""
            )
            when = expiry(d.key_state, d.material_expire_time)
            rows.append([name, label, d.key_spec, d.key_state, when, d.decision, d.reason])
            extra = {"aliases": aliases.get(d.key_id) or []} if show_aliases else {}
            decisions.append({"target": name, **shown, **extra})
        for key_id, exc in fleet.errors:
            rows.append([name, key_id, "", "?", "", "ERROR", str(exc)])
            errors.append({"target": name, "key_id": key_id, "error": str(exc)})
    rows += _error_rows(runs, 7)
    payload = {
        "now": fmt_time(_now(runs, lambda v: v[0])),
        "decisions": decisions,
        "errors": errors,
        "targets": _statuses(runs),
    }
    headers = ["TARGET", "KEY", "SPEC", "STATE", "EXPIRES", "DECISION", "REASON"]
    app.emit(payload, table(rows, headers))
    failed = bool(errors) or any(not r.ok for r in runs)
    unwritten = recorder is not None and not recorder.written  # --metrics-file: a failure
    return exits.of_run(failed=failed or unwritten, alert=alert, pending=pending)


def _as_plan_results(runs: list[TargetRun]) -> list[TargetRun]:
    """A plan's runs as the dry-run sweep results the metrics read."""
    from ...core.sweep import SweepResult
    from ...operations.metrics_file import plan_outcomes

    def result(value):
        now, fleet = value
        return SweepResult(now, tuple(fleet.decisions), tuple(plan_outcomes(fleet.errors)), True)

    return [replace(r, value=result(r.value)) if r.ok else r for r in runs]


def sweep_targets(
    app: App,
    targets: tuple[Target, ...],
    *,
    dry_run: bool,
    scan_account: bool,
    concurrency: int | None,
    metrics_file: str | None = None,
) -> int:
    from ...core.fleet_sweep import sweep_fleet, sweeper
    from ...core.sweep import decisions_json
    from ...domain.logs import get_logger
    from ...gateway.kms import SWEEP
    from ...operations.metrics_file import recording, targets_metrics

    settings = app.settings
    per_target = concurrency or settings.concurrency
    gateways: dict[str, Any] = {}

    def deps_for(target: Target):
        deps = target_deps(settings, target, SWEEP)
        gateways[target.name] = deps.gateway
        return deps

    sweep_one = sweeper(
        trigger="cli",
        actor=local_actor(),
        dry_run=dry_run,
        scan_account=scan_account,
        concurrency=per_target,
        log=get_logger("byok_keeper.sweep").warning,
    )
    with recording(metrics_file, targets_metrics(targets)) as recorder:
        runs = sweep_fleet(targets, deps_for, sweep_one, concurrency=per_target)
        if recorder is not None:
            recorder.runs(runs, lambda t: gateways.get(t.name))
    rows: list[list[str]] = []
    outcomes: list[dict[str, Any]] = []
    decisions: list[dict[str, Any]] = []
    summary: dict[str, int] = {}
    calls: dict[str, dict[str, int]] = {}
    failed = alert = False
    for run in runs:
        if not run.ok:
            continue
        name, result = run.target.name, run.value
        failed = failed or bool(result.failed)
        alert = alert or any(o.alert for o in result.outcomes)
        for key, n in result.summary().items():
            summary[key] = summary.get(key, 0) + n
        calls[name] = result.stats
        decisions += [{"target": name, **d} for d in decisions_json(result.decisions)]
        for o in sorted(result.outcomes, key=lambda o: o.key_id):
            new_expiry = fmt_time(o.new_expiry) if o.new_expiry else ""
            rows.append([name, o.key_id, o.decision, o.outcome, o.key_state, new_expiry, o.reason])
            outcomes.append({"target": name, **o.to_json()})
    rows += _error_rows(runs, 7)
    payload = {
        "now": fmt_time(_now(runs, lambda v: v.now)),
        "dry_run": dry_run,
        "summary": summary,
        "decisions": decisions,
        "outcomes": outcomes,
        "calls": calls,
        "targets": _statuses(runs),
    }
    headers = ["TARGET", "KEY", "DECISION", "OUTCOME", "STATE", "NEW EXPIRY", "REASON"]
    human = table(rows, headers) + "\n" + ", ".join(f"{n} {k}" for k, n in sorted(summary.items()))
    bad = [r.target.name for r in runs if not r.ok]
    if bad:
        human += f"\ntargets failed: {', '.join(bad)}"
    app.emit(payload, human)
    unwritten = recorder is not None and not recorder.written  # --metrics-file: a failure
    return exits.of_run(failed=failed or bool(bad) or unwritten, alert=alert)


def verify_targets(app: App, targets: tuple[Target, ...], key_ids: tuple[str, ...]) -> int:
    from ...core.verify import verify_exit, verify_key
    from ...gateway.kms import READ_ONLY

    settings = app.settings

    def work(target: Target):
        deps = target_deps(settings, target, READ_ONLY)
        vault = deps.require_vault()
        mine = vault.inventory()
        wanted = [k for k in key_ids if k in set(mine)] if key_ids else mine
        return [verify_key(deps.gateway, vault, k) for k in wanted]

    runs = run_targets(targets, work, concurrency=settings.concurrency)
    results = [{"target": r.target.name, **v} for r in runs if r.ok for v in r.value]
    found = {v["key_id"] for v in results}
    missing = [k for k in key_ids if k not in found]
    results += [
        {"target": None, "key_id": k, "result": "error", "key_state": "", "detail": "no target"}
        for k in missing
    ]
    rows = [
        [v["target"] or "", v["key_id"], v["result"], v["key_state"], v["detail"]] for v in results
    ]
    rows += [[r.target.name, "(target)", "ERROR", "", str(r.error)] for r in runs if not r.ok]
    payload = {"results": results, "targets": _statuses(runs)}
    app.emit(payload, table(rows, ["TARGET", "KEY", "RESULT", "STATE", "DETAIL"]))
    return verify_exit(results, failed_targets=any(not r.ok for r in runs))

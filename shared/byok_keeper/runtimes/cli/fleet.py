"""Commands on the whole fleet: ``plan``, ``sweep`` and ``report``."""

from __future__ import annotations

import sys

import click

from ...core.deps import local_actor
from ...domain import exits
from ...operations.render import expiry, fmt_time, progress_bar, table
from .app import App, fleet_target_option, metrics_file_option, output_option


@click.command("plan")
@click.option("--scan-account", is_flag=True, help="Also report EXTERNAL keys with no envelope.")
@click.option(
    "--aliases",
    "show_aliases",
    is_flag=True,
    help="Show each key's aliases beside its id (one ListAliasesByKeyId per key).",
)
@fleet_target_option
@metrics_file_option
@output_option
@click.pass_obj
def plan_cmd(
    app: App,
    scan_account: bool,
    show_aliases: bool,
    target_names: tuple[str, ...],
    metrics_file: str | None,
) -> int:
    """Show what a sweep would do for every enrolled key. Changes nothing.

    Exit 1 when a key could not be read, else 4 when a key needs a person (ALERT), else 3 when
    any key is due (REIMPORT or RENEW), else 0 (like terraform plan -detailed-exitcode, keeping
    2 for usage errors).

    With [[targets]] in the --config file every target is planned (a TARGET column, a
    "target" field); --target NAME narrows.

    \b
    Examples:
      byok-keeper plan --output json
      byok-keeper --config targets.toml plan --target prod-hz --target prod-fra
    """
    from ...core.sweep import plan_fleet
    from ...gateway.kms import READ_ONLY
    from ...operations.metrics_file import fleet_metrics, recording
    from ...planning.plan import ALERT, DUE

    targets = app.fleet_targets(target_names)
    if targets is not None:
        from .targeted import plan_targets

        return plan_targets(
            app,
            targets,
            scan_account=scan_account,
            show_aliases=show_aliases,
            metrics_file=metrics_file,
        )
    deps = app.deps(READ_ONLY)
    with recording(metrics_file, fleet_metrics(deps)) as recorder:
        fleet = plan_fleet(
            deps,
            scan_account=scan_account,
            with_aliases=show_aliases,
            on_progress=progress_bar("describing") if sys.stderr.isatty() else None,
        )
        if recorder is not None:
            recorder.plan(deps.gateway.now(), fleet.decisions, fleet.errors)
    decisions, errors = fleet.decisions, fleet.errors
    _emit_plan(app, fleet, fmt_time(deps.gateway.now()), show_aliases)
    code = exits.of_run(
        failed=bool(errors),
        alert=any(d.decision == ALERT for d in decisions),
        pending=any(d.decision in DUE for d in decisions),
    )
    return recorder.exit_code(code) if recorder is not None else code


def _emit_plan(app: App, fleet, now: str, show_aliases: bool) -> None:
    """Print the plan: only the output asked for is built (50,000 keys are big either way)."""
    from ...core.sweep import decisions_json

    decisions, errors, aliases = fleet.decisions, fleet.errors, fleet.aliases
    if app.settings.output == "json":
        shown = decisions_json(decisions)
        if show_aliases:
            shown = [{**row, "aliases": aliases.get(row["key_id"]) or []} for row in shown]
        errs = [{"key_id": k, "error": str(e)} for k, e in errors]
        app.emit({"now": now, "decisions": shown, "errors": errs}, "")
        return
    rows = [
        [
            d.key_id
            + (f" ({', '.join(aliases[d.key_id] or [])})" if aliases.get(d.key_id) else ""),
            d.key_spec,
            d.key_state,
            expiry(d.key_state, d.material_expire_time),
            d.decision,
            d.reason,
        ]
        for d in decisions
    ]
    rows += [[k, "", "?", "", "ERROR", str(e)] for k, e in errors]
    app.emit({}, table(rows, ["KEY", "SPEC", "STATE", "EXPIRES", "DECISION", "REASON"]))


@click.command("sweep")
@click.option("--dry-run", is_flag=True, help="Plan and check, import nothing (like plan).")
@click.option("--scan-account", is_flag=True, help="Also report EXTERNAL keys with no envelope.")
@click.option("--concurrency", type=click.IntRange(1, 64), help="Keys worked on at once.")
@fleet_target_option
@metrics_file_option
@output_option
@click.pass_obj
def sweep_cmd(
    app: App,
    dry_run: bool,
    scan_account: bool,
    concurrency: int | None,
    target_names: tuple[str, ...],
    metrics_file: str | None,
) -> int:
    """Re-establish every key whose material is gone or near expiry.

    Exit 1 when any key failed, else 4 when a key needs a person (ALERT: gone from KMS, no
    envelope, material that does not match), else 0 (holds are not failures). With
    [[targets]] every target is swept in parallel, each with its own budget (--concurrency is
    per target); a target that fails is reported as its own row and exit 1, the others still
    run. --target NAME narrows.

    \b
    Examples:
      byok-keeper sweep --output json
      byok-keeper --config targets.toml sweep --target prod-fra
    """
    from ...core.sweep import run_sweep
    from ...domain.logs import get_logger
    from ...gateway.kms import SWEEP
    from ...operations.metrics_file import fleet_metrics, recording

    targets = app.fleet_targets(target_names)
    if targets is not None:
        from .targeted import sweep_targets

        return sweep_targets(
            app,
            targets,
            dry_run=dry_run,
            scan_account=scan_account,
            concurrency=concurrency,
            metrics_file=metrics_file,
        )
    deps = app.deps(SWEEP)
    show_bar = sys.stderr.isatty() and deps.settings.output == "table"
    log = get_logger("byok_keeper.sweep")
    with recording(metrics_file, fleet_metrics(deps)) as recorder:
        result = run_sweep(
            deps,
            dry_run=dry_run,
            scan_account=scan_account,
            concurrency=concurrency,
            trigger="cli",
            actor=local_actor(),
            on_outcome=(lambda o: click.echo(f"  {o.key_id}: {o.outcome}", err=True))
            if show_bar
            else None,
            on_progress=progress_bar("describing") if show_bar else None,
            log=log.warning,
        )
        if recorder is not None:
            recorder.sweep(result)
    code = _emit_sweep(app, result, dry_run)
    return recorder.exit_code(code) if recorder is not None else code


def _emit_sweep(app: App, result, dry_run: bool) -> int:
    """Print one sweep's outcomes (table or JSON) and return its exit code."""
    from ...core.sweep import decisions_json

    outcomes = sorted(result.outcomes, key=lambda o: o.key_id)
    summary = result.summary()
    if app.settings.output == "json":  # build only what is shown: 50,000 keys are big either way
        payload = {
            "now": fmt_time(result.now),
            "dry_run": dry_run,
            "summary": summary,
            "decisions": decisions_json(result.decisions),
            "outcomes": [o.to_json() for o in outcomes],
            "calls": result.stats,
        }
        app.emit(payload, "")
    else:
        rows = [
            [
                o.key_id,
                o.decision,
                o.outcome,
                o.key_state,
                fmt_time(o.new_expiry) if o.new_expiry else "",
                o.reason,
            ]
            for o in outcomes
        ]
        human = table(rows, ["KEY", "DECISION", "OUTCOME", "STATE", "NEW EXPIRY", "REASON"])
        human += "\n" + ", ".join(f"{n} {k}" for k, n in sorted(summary.items()))
        app.emit({}, human)
    return exits.of_run(failed=bool(result.failed), alert=any(o.alert for o in outcomes))


@click.command("report")
@click.option(
    "--html",
    "html_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Write the page here, mode 0600 (one self-contained file: inline SVG, no scripts, no "
    "network).",
)
@click.option(
    "--schedule",
    help="The sweep schedule, to mark the next sweep: 5-field crontab in UTC, @every 15m, "
    "or FC's timer forms ('0 0 0/6 * * *', seconds first; CRON_TZ=Asia/Shanghai before it). "
    "Default: the --sweep-interval setting (BYOK_SWEEP_INTERVAL: the FC timer's cron, or a "
    "duration), else the daemon's */15 * * * *.",
)
@click.option("--scan-account", is_flag=True, help="Also show EXTERNAL keys with no envelope.")
@click.option(
    "--target",
    "target_names",
    multiple=True,
    metavar="NAME",
    help="The [[targets]] target to draw (one page per target; needed when several are "
    "configured).",
)
@output_option
@click.pass_obj
def report_cmd(
    app: App,
    html_path: str,
    schedule: str | None,
    scan_account: bool,
    target_names: tuple[str, ...],
) -> int:
    """Draw the fleet: every key on a time axis from now to its material expiry, grouped by
    decision, renewal windows shaded, holds and alerts marked, the next sweep. Changes nothing.
    With [[targets]], one target per page (--target).

    \b
    Example:
      byok-keeper report --html fleet.html
    """
    from ...gateway.kms import READ_ONLY
    from ...operations.report import build_report, render_html, report_schedule, write_html

    deps = app.key_deps(READ_ONLY, None, target_names)
    schedule, source = report_schedule(schedule, deps.settings.sweep_interval)
    fleet = build_report(
        deps.gateway,
        deps.require_vault(),
        policy=deps.policy,
        schedule=schedule,
        scan_account=scan_account,
        concurrency=deps.settings.concurrency,
        account_id=deps.account_id,
        target=app.target or "",
        schedule_source=source,
    )
    size = write_html(html_path, render_html(fleet))
    counts: dict[str, int] = {}
    for row in fleet.rows:
        counts[row.decision] = counts.get(row.decision, 0) + 1
    payload = {"path": html_path, "bytes": size, "keys": len(fleet.rows), "decisions": counts}
    app.emit(payload, f"wrote {html_path}: {len(fleet.rows)} keys, {size:,} bytes")
    return 0

"""Operations: ``invoke`` the deployed FC functions, run the ``daemon``, the ``demo``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ...core.deps import local_actor
from .app import App, metrics_file_option, output_option


@click.group("invoke")
def invoke_group() -> None:
    """Trigger the deployed FC functions with your own RAM identity (fc:InvokeFunction only).

    On-call engineers need no KMS permissions of their own: the function's role does the work.
    FC 3.0 by default: functions BYOK_FC_PREFIX-sweep and -reimport (prefix byok-keeper);
    BYOK_FC_API=2.0 for functions in the FC 2.0 service BYOK_FC_SERVICE.
    """


def _fc(app: App):
    """The FC client and where the functions are (FC 3.0 ``BYOK_FC_PREFIX``-named functions by
    default; ``BYOK_FC_API=2.0`` for functions in the FC 2.0 service ``BYOK_FC_SERVICE``)."""
    from ...core.dispatch import FcTarget, build_fc_client

    settings = app.settings
    client = build_fc_client(
        region=settings.require_region(),
        account_id=settings.account_id or "",
        endpoint=settings.fc_endpoint,
        api=settings.fc_api,
    )
    return FcTarget.from_settings(settings), client


@invoke_group.command("reimport")
@click.argument("key_id")
@click.option("--reason", required=True, help="Why (recorded in the function's audit event).")
@click.option("--dry-run", is_flag=True)
@click.option("--async", "asynchronous", is_flag=True, help="Fire and forget (FC retries).")
@output_option
@click.pass_obj
def invoke_reimport(app: App, key_id: str, reason: str, dry_run: bool, asynchronous: bool) -> int:
    """Invoke the deployed reimport function for one key.

    The function never overrides a hold (anyone who may invoke it could ask): lift a hold with
    `byok-keeper release KEY` under your own identity first. Your user name travels in the
    event as requested_by and is audited as claimed_by, not as the actor.

    \b
    Example:
      BYOK_ACCOUNT_ID=1234567890123456 byok-keeper invoke reimport key-xxx --reason "INC-1"
    """
    from ...core.dispatch import invoke
    from ...domain.model import check_key_id

    check_key_id(key_id)
    target, client = _fc(app)
    event = {
        "key_id": key_id,
        "reason": reason,
        "requested_by": local_actor(),
        "dry_run": dry_run,
    }
    result = invoke(client, target, "reimport", event, asynchronous=asynchronous)
    body = result["result"]
    payload = {"request_id": result["request_id"], "status": result["status"], "result": body}
    if asynchronous:
        app.emit(payload, f"sent (request id {result['request_id']})")
        return 0
    ok = isinstance(body, dict) and body.get("ok")
    human = f"{key_id}: {body.get('outcome') if isinstance(body, dict) else body}"
    if isinstance(body, dict):
        human += f" - {body.get('reason', '')}"
    app.emit(payload, human)
    return 0 if ok else 1


@invoke_group.command("sweep")
@click.option("--dry-run", is_flag=True)
@output_option
@click.pass_obj
def invoke_sweep(app: App, dry_run: bool) -> int:
    """Invoke the deployed sweep function now (as its timer would).

    \b
    Example:
      byok-keeper invoke sweep --dry-run
    """
    from ...core.dispatch import invoke

    target, client = _fc(app)
    event = {
        "triggerTime": "",
        "triggerName": "manual",
        "payload": json.dumps({"dry_run": dry_run}),
    }
    result = invoke(client, target, "sweep", event, asynchronous=False)
    body = result["result"]
    app.emit({"request_id": result["request_id"], "result": body}, json.dumps(body, indent=2))
    return 0 if isinstance(body, dict) and body.get("ok") else 1


@click.command("daemon")
@click.option(
    "--schedule",
    default="*/15 * * * *",
    show_default=True,
    help="Sweep schedule: 5-field crontab in UTC, @every 15m, or FC's timer forms "
    "('0 0 0/6 * * *', seconds first; CRON_TZ=Asia/Shanghai before it).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    default="./byok-keeper-state",
    show_default=True,
    help="Where the job store (jobs.sqlite) lives; must be yours and not group/other-writable.",
)
@click.option(
    "--health-file",
    type=click.Path(dir_okay=False),
    help="JSON with the last run's time and outcome (default STATE_DIR/health.json).",
)
@click.option(
    "--once",
    is_flag=True,
    help="Run one sweep and exit: 0 ok, 1 some key failed, 4 a key needs a person (ALERT).",
)
@click.option(
    "--metrics-addr",
    metavar="HOST:PORT",
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (at most 8 connections, each "
    "dropped after 5 s without a request; with --once an error: use --metrics-file).",
)
@metrics_file_option
@click.pass_obj
def daemon_cmd(
    app: App,
    schedule: str,
    state_dir: str,
    health_file: str | None,
    once: bool,
    metrics_addr: str | None,
    metrics_file: str | None,
) -> int:
    """Run the sweep on a schedule (APScheduler, jobs kept in SQLite) until SIGTERM.

    Also places a one-shot job at each key's renewal moment. One job at a time, coalesced,
    with a misfire grace time; SIGTERM lets the key in flight finish, then exits 0. With
    [[targets]] in the --config file every target is swept each run, in parallel; the health
    file lists each target's status.

    \b
    Example:
      byok-keeper daemon --schedule "*/15 * * * *" --state-dir /var/lib/byok-keeper \\
          --metrics-addr 127.0.0.1:9464
      byok-keeper daemon --once --state-dir /var/lib/byok-keeper \\
          --metrics-file /var/lib/node_exporter/textfile_collector/byok-keeper.prom
    """
    from ..daemon import run_daemon

    state = Path(state_dir)
    return run_daemon(
        app.settings,
        schedule=schedule,
        state_dir=state,
        once=once,
        health_file=Path(health_file) if health_file else state / "health.json",
        metrics_addr=metrics_addr,
        targets=app.targets,
        metrics_file=metrics_file,
    )


@click.command("demo")
@click.option("--keep", type=click.Path(file_okay=False), help="Keep the vault in this directory.")
@click.pass_obj
def demo_cmd(app: App, keep: str | None) -> int:
    """Run the whole story against an embedded emulator: enroll six keys, make trouble, plan,
    sweep, and check from outside that every restorable key is back. Exit 0 only if so.

    The emulator is its own distribution: pip install aliyun-local (exit 2 without it).

    \b
    Example:
      byok-keeper demo
    """
    from ..demo import run_demo

    return run_demo(echo=click.echo, keep=keep)

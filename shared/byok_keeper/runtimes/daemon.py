"""The self-hosted daemon: the same sweep on an APScheduler schedule.

* Jobs live in SQLite under ``--state-dir`` (``jobs.sqlite``), so a restart keeps them. The job
  store unpickles what it reads, so the daemon refuses a state directory or job store that is
  not owned by the running user or is writable by group or others (``check_state_dir``).
* ``sweep`` runs on ``--schedule`` (5-field crontab in UTC, ``@every 15m``, or FC's timer forms:
  6-field cron, ``CRON_TZ=<zone>`` before it; default every 15 minutes); after each sweep a
  one-shot ``renew:<key>`` job is (re)placed at each key's renewal moment, so a renewal does
  not wait for the next tick. With targets the job is
  ``renew:<target>:<key>``: its moment is read against that target's KMS clock (its own
  gateway's offset) and the job sweeps that target only, with its own ``Deps`` (credentials,
  budget); a job naming a target no longer configured (or one stored before targets) sweeps
  every target.
* ``max_instances=1``, coalescing and a misfire grace time: a sleeping laptop or a restart
  runs one catch-up sweep, not a storm.
* SIGTERM/SIGINT: stop scheduling, let the job in flight finish, exit 0.
* ``--health-file``: JSON with the last run's time, outcome and summary, written atomically.
* ``--metrics-addr HOST:PORT``: Prometheus metrics of the last sweep
(``byok_keeper.operations.metrics``);
  with targets one series per target, labelled ``target``, ``region`` and ``account_id``
  (``target_metrics``).
* With ``[[targets]]`` (issue 16) each run sweeps every target in parallel
  (``fleet_sweep``); the health file lists each target's status, and a target that fails makes
  the outcome ``failed`` without stopping the others (it is retried next run).
* Core dumps are disabled and the process is not dumpable: a crash must not write key material
  to disk, nor may another process read it from memory.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..core.deps import Deps, build_deps
from ..core.settings import Settings
from ..domain.logs import get_logger
from ..domain.model import format_kms_time

log = get_logger("byok_keeper.daemon")


@dataclass
class DaemonState:
    """The running daemon: its ``Deps`` and what its jobs share. Job functions are stored by
    reference in SQLite and look this up, so no settings or secrets are ever pickled into the
    job store."""

    deps: Deps
    health_file: Path | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    scheduler: Any = None
    stopping: bool = False
    metrics: Any = None
    targets: tuple = ()  # issue 16: every target swept (fleet_sweep); none: the global Deps
    cache: Any = None  # fleet_sweep.TargetDepsCache, with targets
    target_status: list = field(default_factory=list)
    target_runs: list = field(default_factory=list)  # the last sweep's multi.TargetRun each
    metrics_file: Path | None = None  # --metrics-file: rewritten after every sweep
    metrics_written: bool = True  # False after a sweep whose --metrics-file was not written


_STATE: DaemonState | None = None


def _state() -> DaemonState:
    if _STATE is None:  # pragma: no cover - a job loaded before run_daemon
        raise RuntimeError("the daemon is not running")
    return _STATE


def disable_core_dumps() -> None:
    """No core dumps, not dumpable, no SDK debug output (``hardening.harden_process``)."""
    from .hardening import harden_process

    problems = harden_process()
    if problems:  # pragma: no cover - not permitted on this platform
        log.warning("process_not_hardened", failed=problems)


def check_state_dir(state_dir: Path) -> None:
    """Refuse a state directory (or job store) someone else could write.

    APScheduler's SQLAlchemyJobStore unpickles the jobs it reads, so whoever can write
    ``jobs.sqlite`` (or replace it: write the directory) runs code as the daemon, next to the
    key material. Both must be owned by the running user and not writable by group or others.
    Raises ``InputError`` (exit 2).
    """
    from ..domain.errors import InputError

    for path in (state_dir, state_dir / "jobs.sqlite"):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if st.st_uid != os.geteuid():
            raise InputError(
                f"--state-dir: {path} is owned by uid {st.st_uid}, not by the user running the "
                f"daemon (uid {os.geteuid()}); its job store is unpickled, so its owner could "
                "run code here"
            )
        if st.st_mode & 0o022:
            raise InputError(
                f"--state-dir: {path} is writable by group or others (mode "
                f"{st.st_mode & 0o7777:04o}); its job store is unpickled: run chmod go-w {path}"
            )


def write_health(path: Path | None, payload: dict[str, Any]) -> None:
    if path is None:
        return
    from ..domain.files import replace_atomically

    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, json.dumps(payload, sort_keys=True).encode(), 0o600)


def scheduled_sweep(trigger: str = "schedule", target: str | None = None) -> dict[str, Any]:
    """The job: one sweep (``target`` alone for its renewal job), health file, renewal jobs."""
    rt = _state()
    with rt.lock:  # the sweep job and renewal jobs never overlap
        if rt.stopping:  # submitted just before SIGTERM: nothing to do
            return {"outcome": "skipped", "note": "the daemon is stopping"}
        started = datetime.now(timezone.utc)
        only = _only(rt, target)
        try:
            result = _sweep(rt, rt.deps, trigger, only)
        except Exception as exc:  # the daemon keeps running; the health file says what happened
            log.error("sweep_failed", error=str(exc)[:300], error_type=type(exc).__name__)
            _observe(None, started, only)
            payload = {
                "last_run": format_kms_time(started),
                "outcome": "error",
                "error": str(exc)[:300],
                "pid": os.getpid(),
            }
            write_health(rt.health_file, payload)
            return payload
        failed_target = any(not t["ok"] for t in rt.target_status)
        outcome = "failed" if result.failed or failed_target else "ok"
        payload = {
            "last_run": format_kms_time(started),
            "outcome": outcome,
            "alerts": sum(1 for o in result.outcomes if o.alert),  # keys that need a person
            "summary": result.summary(),
            "trigger": trigger,
            "pid": os.getpid(),
        }
        if rt.targets:
            payload["targets"] = rt.target_status
        if only:
            payload["swept"] = [t.name for t in only]
        write_health(rt.health_file, payload)
        log.info("sweep_done", **payload)
        _observe(result, started)
        _schedule_renewals(result)
        return payload


def once_exit(payload: dict[str, Any]) -> int:
    """``daemon --once``'s exit code (``exits``): 1 unless the sweep ended ``ok``, else 4 when
    a key needs a person, else 0."""
    from ..domain import exits

    return exits.of_run(failed=payload["outcome"] != "ok", alert=bool(payload.get("alerts")))


def _only(rt: DaemonState, target: str | None) -> tuple:
    """The target a renewal job names, if it is still configured (else: every target)."""
    if target is None or not rt.targets:
        return ()
    found = tuple(t for t in rt.targets if t.name == target)
    if not found:
        log.warning("renewal_target_unknown", target=target, note="sweeping every target")
    return found


def _sweep(rt: DaemonState, deps: Deps, trigger: str, only: tuple = ()):
    """One sweep: of the global ``Deps``, or of every target (each its own status), or of
    ``only`` those (a renewal job's target: the others keep their last status)."""
    if rt.targets:
        from ..core.fleet_sweep import sweep_all

        result, runs = sweep_all(
            rt.cache,
            only or rt.targets,
            trigger=f"daemon-{trigger}",
            actor="daemon",
            log=log.warning,
        )
        rt.target_runs = list(runs)
        known = {s["target"]: s for s in rt.target_status} if only else {}
        known.update({r.target.name: r.status() for r in runs})
        rt.target_status = [known[t.name] for t in rt.targets if t.name in known]
        for run in runs:
            if not run.ok:
                log.error("target_failed", target=run.target.name, error=run.error)
        return result
    from ..core.sweep import run_sweep

    return run_sweep(
        deps,
        trigger=f"daemon-{trigger}",
        actor="daemon",
        log=log.warning,
    )


def _observe(result, started: datetime, only: tuple = ()) -> None:
    """The run's figures into the metrics; ``result`` None: it failed as a whole (with targets,
    an error for the targets it was sweeping: ``only`` those, else every one)."""
    from ..operations.metrics import error_figures, fleet_figures

    rt = _state()
    metrics = rt.metrics
    if metrics is None:
        return
    if not rt.targets:
        figures = (
            fleet_figures(result.decisions, result.outcomes, now=result.now) if result else None
        )
        metrics.observe(figures or error_figures(started))
    elif result is None:  # each target's own figures, under its own labels (target_metrics)
        metrics.observe_error(started, only=[t.name for t in only])
    else:
        metrics.observe_runs(rt.target_runs, gateway_of=_gateway_of, failed_at=started)
    if rt.metrics_file is not None:  # a file it cannot write is reported, never stops a sweep
        from ..operations.metrics_file import write_or_report

        rt.metrics_written = write_or_report(rt.metrics_file, metrics.samples())


def _gateway_of(target) -> Any:
    deps = _state().cache.peek(target)
    return None if deps is None else deps.gateway


def _schedule_renewals(result) -> None:
    """A one-shot job at each key's renewal moment: without targets from ``result`` and the
    global gateway's clock; with targets from each target's own run, its own gateway's clock
    offset and policy, the job naming its target."""
    rt = _state()
    if rt.scheduler is None or rt.stopping:
        return
    if not rt.targets:
        _renewal_jobs(result.decisions, rt.deps, None)
        return
    for run in rt.target_runs:
        deps = rt.cache.peek(run.target)
        if run.ok and run.value is not None and deps is not None:
            _renewal_jobs(run.value.decisions, deps, run.target.name)


def _renewal_jobs(decisions, deps: Deps, target: str | None) -> None:
    from ..planning.plan import renewal_window

    now = datetime.now(timezone.utc)
    offset = timedelta(seconds=deps.gateway.clock_offset or 0)  # this KMS's clock vs ours
    for d in decisions:
        if d.material_expire_time is None or d.decision not in ("OK", "RENEW"):
            continue
        # Local time of the renewal moment (KMS's clock may differ from ours).
        when = d.material_expire_time - renewal_window(deps.policy, d.lease) - offset
        if when <= now:
            continue
        kwargs: dict[str, Any] = {"trigger": "renewal"}
        if target is not None:  # key ids are unique per account and region, not across targets
            kwargs["target"] = target
        _state().scheduler.add_job(
            "byok_keeper.runtimes.daemon:scheduled_sweep",
            "date",
            run_date=when,
            id=renewal_job_id(d.key_id, target),
            replace_existing=True,
            kwargs=kwargs,
        )


def renewal_job_id(key_id: str, target: str | None = None) -> str:
    """``renew:<key>``, or ``renew:<target>:<key>`` with targets."""
    return f"renew:{key_id}" if target is None else f"renew:{target}:{key_id}"


def _make_metrics(rt: DaemonState) -> None:
    """The daemon's metrics, once: per target with targets, else the global gateway's."""
    from ..operations.metrics_file import fleet_metrics, targets_metrics

    if rt.metrics is None:
        rt.metrics = targets_metrics(rt.targets) if rt.targets else fleet_metrics(rt.deps)


def _serve_metrics(rt: DaemonState, metrics_addr: str) -> None:
    from ..operations.metrics import parse_addr, serve

    parse_addr(metrics_addr)  # a bad address is a usage error before anything runs
    _make_metrics(rt)
    _server, bound = serve(rt.metrics, metrics_addr)
    log.info("metrics_serving", addr=bound, path="/metrics")


def run_daemon(
    settings: Settings,
    *,
    schedule: str,
    state_dir: Path,
    once: bool,
    health_file: Path | None,
    metrics_addr: str | None = None,
    targets: tuple = (),
    metrics_file: str | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or one sweep with ``once``). Returns the exit code.

    Hardened and the schedule checked before anything is built; then one ``Deps`` under the
    ``SWEEP`` allowlist for the daemon's life. Metrics are served at ``metrics_addr`` (never with
    ``once``: a usage error), or written to ``metrics_file`` after every sweep."""
    global _STATE
    from ..domain.errors import InputError
    from ..gateway.kms import SWEEP
    from ..operations.metrics_file import with_metrics_exit

    disable_core_dumps()
    from ..planning.cadence import trigger_for

    trigger = trigger_for(schedule)
    if once and metrics_addr:
        msg = "--metrics-addr serves a running daemon; one run (--once) writes its metrics"
        raise InputError(msg + " with --metrics-file PATH")
    path = Path(metrics_file) if metrics_file else None
    if targets:
        rt = _STATE = _targets_state(settings, targets, health_file)
    else:
        rt = _STATE = DaemonState(build_deps(settings, SWEEP), health_file)
    if path is not None:
        rt.metrics_file = path
        _make_metrics(rt)
    if once:
        return with_metrics_exit(once_exit(scheduled_sweep("once")), rt.metrics_written)
    # SIGTERM/SIGINT stop cleanly from here on, even before the scheduler runs (a stop while
    # metrics are already served but the job store is still opening exits 0, not by signal).
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if metrics_addr:
        _serve_metrics(rt, metrics_addr)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    check_state_dir(state_dir)
    _run_scheduled(rt, trigger, schedule, state_dir, stop)
    return 0


def _targets_state(settings: Settings, targets: tuple, health_file: Path | None) -> DaemonState:
    """With targets: every target swept; at least one target's ``Deps`` must build now (a
    target that cannot be reached now is retried each sweep). Each renewal job reads its own
    target's clock; metrics are per target, each from its own gateway (``target_metrics``)."""
    from ..core.fleet_sweep import TargetDepsCache
    from ..domain.errors import ExecutionError

    cache = TargetDepsCache(settings)
    failures = []
    for target in targets:
        try:
            deps = cache.get(target)
        except Exception as exc:  # the next one may do; each sweep retries this one
            failures.append(f"{target.name}: {str(exc)[:200] or type(exc).__name__}")
            continue
        return DaemonState(deps, health_file, targets=tuple(targets), cache=cache)
    raise ExecutionError(f"no target could be reached: {'; '.join(failures)}")


def _run_scheduled(
    rt: DaemonState, trigger: Any, schedule: str, state_dir: Path, stop: threading.Event
) -> None:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{state_dir / 'jobs.sqlite'}")},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
        timezone=timezone.utc,
    )
    rt.scheduler = scheduler
    if stop.is_set():  # stopped while starting: nothing has run, nothing to wait for
        log.info("daemon_stopping", note="stopped before the first sweep")
        return
    scheduler.start()
    scheduler.add_job(
        "byok_keeper.runtimes.daemon:scheduled_sweep",
        trigger,
        id="sweep",
        replace_existing=True,
        next_run_time=datetime.now(timezone.utc),
    )
    log.info(
        "daemon_started",
        schedule=schedule,
        state_dir=str(state_dir),
        jobs=[j.id for j in scheduler.get_jobs()],
    )
    while not stop.wait(1.0):
        pass
    log.info("daemon_stopping", note="waiting for the job in flight")
    # APScheduler's shutdown(wait=True) holds its job-store lock while it waits for running
    # jobs, and a sweep that ends by adding renewal jobs needs that lock: a deadlock. So stop
    # new runs first, let the job in flight finish (renewals included) under our own lock, and
    # only then shut down; a job submitted meanwhile sees "stopping" and returns at once.
    rt.stopping = True
    scheduler.pause()
    with rt.lock:
        pass
    scheduler.shutdown(wait=True)
    log.info("daemon_stopped")

"""``--metrics-file PATH``: a batch run's metrics (``sweep``, ``plan``, ``daemon --once``) in
Prometheus text format, for node_exporter's textfile collector, the standard for batch jobs.

The same families as ``daemon --metrics-addr`` (``metrics``), written atomically: a temporary
file in the same directory, flushed to disk, then renamed over ``PATH``, so the collector never
reads half a file (it reads only ``*.prom``; the temporary name ends ``.tmp``). The file is
0644: the collector runs as another user, and nothing in it is secret (key ids, specs, counts).
A run that stops before planning (KMS or the vault unreachable) still writes its file, with
``byok_keeper_last_sweep_timestamp_seconds{result="error"}``, then fails as before.

Monitoring never stops restoration: a file that cannot be written (a missing or read-only
directory, ``PATH`` a directory) is not checked up front; the run sweeps, then says so in one
error line (``metrics_file_unwritten``) and exits 1 (``with_metrics_exit``), never silently 0.

Pure but for ``write`` (and ``write_or_report``): the exposition is built here rather than by
``prometheus-client``, which the batch commands do not need.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..core.reestablish import Outcome
from ..domain import exits
from ..domain.errors import ExecutionError
from ..domain.model import OutcomeKind
from .metrics import HELP, METRIC_NAMES, TYPES, FleetMetrics, Sample, error_figures, fleet_figures

FAILED = OutcomeKind.FAILED.value


def _value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def exposition(samples: Iterable[Sample]) -> str:
    """Prometheus text format 0.0.4: every family (even empty) with its HELP and TYPE once."""
    by_name: dict[str, list[Sample]] = {name: [] for name in METRIC_NAMES}
    for s in samples:
        by_name[s.name].append(s)
    lines: list[str] = []
    for name, group in by_name.items():
        lines += [f"# HELP {name} {HELP[name]}", f"# TYPE {name} {TYPES.get(name, 'gauge')}"]
        for s in group:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in s.labels)
            lines.append(f"{name}{{{labels}}} {_value(s.value)}" if labels else
                         f"{name} {_value(s.value)}")  # fmt: skip
    return "\n".join(lines) + "\n"


def write(path: Path, samples: Iterable[Sample]) -> None:
    """Write the exposition atomically (see the module). Raises ``ExecutionError``."""
    from ..domain.files import replace_atomically

    try:
        replace_atomically(path, exposition(samples).encode(), 0o644)
    except OSError as exc:
        raise ExecutionError(f"cannot write --metrics-file {path}: {exc.strerror}") from None


def write_or_report(path: Path, samples: Iterable[Sample]) -> bool:
    """``write``, or one error line (``metrics_file_unwritten``) when it cannot: False then.
    The caller carries on (the sweep is done or still to do) and fails the run."""
    from ..domain.logs import get_logger

    try:
        write(path, samples)
    except ExecutionError as exc:
        get_logger("byok_keeper.metrics").error("metrics_file_unwritten", error=str(exc))
        return False
    return True


def with_metrics_exit(code: int, written: bool) -> int:
    """A run's exit ``code``, a failure (1) at least when its metrics file was not written."""
    return code if written else exits.worst((code, exits.FAILED))


class Recorder:
    """What a run observed, for ``recording``: ``sweep(result)`` with its ``SweepResult``
    (a plan's is a dry run), or ``runs(runs, gateway_of)`` with its targets' runs."""

    def __init__(self, metrics: Any) -> None:
        self.metrics = metrics
        self.written = True  # False once the file could not be written (``exit_code``)

    def exit_code(self, code: int) -> int:
        return with_metrics_exit(code, self.written)

    def sweep(self, result: Any) -> None:
        self.metrics.observe(
            fleet_figures(result.decisions, result.outcomes, now=result.now, dry_run=result.dry_run)
        )

    def plan(self, now: datetime, decisions: Iterable[Any], errors: Iterable[Any]) -> None:
        """A plan's figures: a dry run; a key it could not read counts as ALERT and fails it."""
        self.metrics.observe(fleet_figures(decisions, plan_outcomes(errors), now=now, dry_run=True))

    def runs(self, runs: Iterable[Any], gateway_of: Any) -> None:
        self.metrics.observe_runs(runs, gateway_of=gateway_of, failed_at=_utcnow())


def plan_outcomes(errors: Iterable[Any]) -> list[Outcome]:
    """A plan's unreadable keys ``(key_id, error)`` as the failed outcomes a sweep records."""
    return [Outcome(k, "ALERT", FAILED, str(e)[:300], 0) for k, e in errors]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def fleet_metrics(deps: Any) -> FleetMetrics:
    """The metrics of one account and region's run (its gateway's request counts)."""
    return FleetMetrics(deps.gateway, region=deps.region, account_id=deps.account_id)


def targets_metrics(targets: Iterable[Any]) -> Any:
    """The metrics of a run over ``[[targets]]``: one series per target."""
    from .target_metrics import TargetsMetrics

    return TargetsMetrics(list(targets))


@contextmanager
def recording(path: str | None, metrics: Any) -> Iterator[Recorder | None]:
    """Around one batch run: yields a ``Recorder`` (None without ``path``) and writes the file
    when the block ends (``Recorder.written`` says whether it could, ``Recorder.exit_code``
    fails the run if not); a block that raises records ``result="error"`` and re-raises.
    ``metrics`` is a ``FleetMetrics`` or ``TargetsMetrics`` (zero for what the run adds)."""
    if path is None:
        yield None
        return
    target = Path(path)
    recorder = Recorder(metrics)
    try:
        yield recorder
    except BaseException:
        if isinstance(metrics, FleetMetrics):
            metrics.observe(error_figures(_utcnow()))
        else:
            metrics.observe_error(_utcnow())
        write_or_report(target, metrics.samples())
        raise
    recorder.written = write_or_report(target, metrics.samples())

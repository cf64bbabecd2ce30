"""The daemon's metrics with ``[[targets]]`` (issue 16): one ``metrics.FleetMetrics`` per target.

Every sample carries its target's ``target``, ``region`` and ``account_id`` labels, so each
target is its own series of every metric, and one collector yields each metric as one family
(HELP and TYPE once). A target whose sweep failed (its role could not be assumed, its vault
could not be read...) gets its ``byok_keeper_last_sweep_timestamp_seconds{result="error"}`` and
keeps its last known picture; the other targets' figures are untouched. Each target's
``byok_keeper_kms_requests_total`` reads that target's own gateway (its ``Deps`` in the
daemon's ``fleet_sweep.TargetDepsCache``): none until the target's ``Deps`` could be built.

Without targets the daemon keeps its one ``FleetMetrics`` and its exposition is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from .metrics import FleetMetrics, Sample, error_figures, families, fleet_figures


class TargetsMetrics:
    """One ``FleetMetrics`` per target, exposed together (a ``prometheus_client`` collector).

    Thread-safe as ``FleetMetrics`` is: the sweep job writes, the HTTP server's threads read."""

    def __init__(self, targets: Sequence[Any]) -> None:
        self._metrics = {
            t.name: FleetMetrics(None, region=t.region, account_id=t.account_id, target=t.name)
            for t in targets
        }

    def observe_runs(
        self,
        runs: Iterable[Any],
        *,
        gateway_of: Callable[[Any], Any],
        failed_at: datetime,
    ) -> None:
        """Each target's run (``multi.TargetRun``): its figures, or an error at ``failed_at``.
        ``gateway_of(target)`` is the target's gateway, or None while it has none."""
        for run in runs:
            metrics = self._metrics.get(run.target.name)
            if metrics is None:  # pragma: no cover - only configured targets are swept
                continue
            gateway = gateway_of(run.target)
            if gateway is not None:
                metrics.gateway = gateway
            if not run.ok or run.value is None:
                metrics.observe(error_figures(failed_at))
                continue
            result = run.value
            dry_run = getattr(result, "dry_run", False)  # a plan's runs are dry runs
            metrics.observe(
                fleet_figures(result.decisions, result.outcomes, now=result.now, dry_run=dry_run)
            )

    def observe_error(self, at: datetime, only: Sequence[str] = ()) -> None:
        """The whole sweep stopped before any target ran: an error for every target it was
        sweeping (``only`` those names, a renewal job's target; else every target)."""
        for name, metrics in self._metrics.items():
            if not only or name in only:
                metrics.observe(error_figures(at))

    def samples(self) -> list[Sample]:
        return [s for metrics in self._metrics.values() for s in metrics.samples()]

    def collect(self) -> Iterator[Any]:
        """prometheus_client's collector interface: one family per metric name, all targets."""
        return families(self.samples())

"""One sweep over every target, for the unattended entrypoints (the daemon, FC's sweep function
with few targets): each target's ``Deps`` kept while it works (``TargetDepsCache``), the
targets swept in parallel (``multi.run_targets``), and one merged ``SweepResult`` for the health
file, metrics and renewal jobs beside each target's own status."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from .kms import SWEEP
from .multi import TargetRun, run_targets, target_deps
from .runtime import Deps
from .settings import Settings
from .sweep import SweepResult, run_sweep
from .targets import Target


class TargetDepsCache:
    """One ``Deps`` per target, built on first use and kept (its assumed role refreshes
    itself). A target whose ``Deps`` could not be built is tried again next time."""

    def __init__(self, settings: Settings, *, credential: Any = None) -> None:
        self.settings = settings
        self.credential = credential
        self._lock = threading.Lock()
        self._deps: dict[str, Deps] = {}

    def get(self, target: Target) -> Deps:
        with self._lock:
            cached = self._deps.get(target.name)
        if cached is not None:
            return cached
        deps = target_deps(self.settings, target, SWEEP, credential=self.credential)
        with self._lock:
            return self._deps.setdefault(target.name, deps)

    def peek(self, target: Target) -> Deps | None:
        """The target's ``Deps`` if already built (never builds one)."""
        with self._lock:
            return self._deps.get(target.name)


def merge(runs: Sequence[TargetRun[SweepResult]]) -> SweepResult:
    """The targets' results as one (decisions and outcomes of all; calls summed)."""
    done = [r.value for r in runs if r.ok and r.value is not None]
    stats: dict[str, int] = {}
    for result in done:
        for action, n in result.stats.items():
            stats[action] = stats.get(action, 0) + n
    stopped = [f"{r.target.name}: {r.value.stopped}" for r in runs if r.value and r.value.stopped]
    return SweepResult(
        now=max((r.now for r in done), default=datetime.now(timezone.utc)),
        decisions=tuple(d for r in done for d in r.decisions),
        outcomes=tuple(o for r in done for o in r.outcomes),
        dry_run=any(r.dry_run for r in done),
        stats=stats,
        stopped="; ".join(stopped) or None,
    )


def sweep_all(
    cache: TargetDepsCache,
    targets: Sequence[Target],
    *,
    trigger: str,
    actor: str,
    log: Callable[..., Any] | None = None,
) -> tuple[SweepResult, list[TargetRun[SweepResult]]]:
    """Sweep every target in parallel; a target that fails is its own failed run. Each line a
    target's sweep logs (``clock_skew``, ``kms_access_lost``) names it (``target``)."""
    settings = cache.settings

    def work(target: Target) -> SweepResult:
        deps = cache.get(target)
        return run_sweep(
            deps.gateway,
            deps.require_vault(),
            policy=deps.policy,
            concurrency=settings.concurrency,
            audit=deps.audit,
            trigger=trigger,
            actor=actor,
            log=None if log is None else functools.partial(log, target=target.name),
        )

    runs = run_targets(targets, work, concurrency=settings.concurrency)
    return merge(runs), runs

"""The one fleet loop: every target swept in parallel under one bound (``multi.run_targets``),
each with its own ``Deps`` and its failure its own (``sweep_fleet``). Its users differ only in
what they pass: where a target's ``Deps`` come from (built per run by the CLI, kept per target by
the daemon and FC: ``TargetDepsCache``), what one target's sweep is (``sweeper``: ``run_sweep``
with each log line naming the target; FC's adds its metrics line and dispatch) and what happens
when a target's ``Deps`` cannot be built (FC logs its metrics line). ``sweep_all`` is the
daemon's: one merged ``SweepResult`` for the health file, metrics and renewal jobs beside each
target's own status."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

from ..gateway.kms import SWEEP
from .deps import Deps
from .multi import TargetRun, run_targets, target_deps
from .settings import Settings
from .sweep import SweepResult, run_sweep
from .targets import Target

T = TypeVar("T")


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


def sweeper(
    *,
    trigger: str,
    actor: str,
    dry_run: bool = False,
    scan_account: bool = False,
    concurrency: int | None = None,
    log: Callable[..., Any] | None = None,
) -> Callable[[Target, Deps], SweepResult]:
    """One target's sweep: ``run_sweep`` of its ``Deps``, each line it logs (``clock_skew``,
    ``kms_access_lost``) naming the target (``target``)."""

    def sweep_one(target: Target, deps: Deps) -> SweepResult:
        return run_sweep(
            deps,
            dry_run=dry_run,
            scan_account=scan_account,
            concurrency=concurrency,
            trigger=trigger,
            actor=actor,
            log=None if log is None else functools.partial(log, target=target.name),
        )

    return sweep_one


def sweep_fleet(
    targets: Sequence[Target],
    deps_for: Callable[[Target], Deps],
    sweep_one: Callable[[Target, Deps], T],
    *,
    concurrency: int,
    on_no_deps: Callable[[Target], None] | None = None,
) -> list[TargetRun[T]]:
    """``sweep_one(target, deps_for(target))`` for every target, in parallel (``concurrency``
    bounds the targets at once, ``multi.parallel_targets``), in the targets' order; a target
    that fails -- its ``Deps`` (then ``on_no_deps(target)`` first) or its sweep -- is its own
    failed run and never stops the others."""

    def work(target: Target) -> T:
        try:
            deps = deps_for(target)
        except BaseException:
            if on_no_deps is not None:
                on_no_deps(target)
            raise
        return sweep_one(target, deps)

    return run_targets(targets, work, concurrency=concurrency)


def sweep_all(
    cache: TargetDepsCache,
    targets: Sequence[Target],
    *,
    trigger: str,
    actor: str,
    log: Callable[..., Any] | None = None,
) -> tuple[SweepResult, list[TargetRun[SweepResult]]]:
    """The daemon's sweep of every target (``sweep_fleet``, ``Deps`` from ``cache``), and the
    runs merged into one result."""
    concurrency = cache.settings.concurrency
    sweep_one = sweeper(trigger=trigger, actor=actor, concurrency=concurrency, log=log)
    runs = sweep_fleet(targets, cache.get, sweep_one, concurrency=concurrency)
    return merge(runs), runs

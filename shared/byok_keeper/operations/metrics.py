"""Fleet metrics: what a sweep says about the fleet, as Prometheus samples and as one log line.

Pure but for ``serve`` (which imports ``prometheus-client``) and
``run_line`` (which logs): figures come from a sweep's decisions and outcomes, KMS's ``now``
and the gateway's per-action request counts; nothing here calls KMS or reads a clock.

* ``byok_keeper_material_expiry_timestamp_seconds{key_id,region,account_id,key_spec}`` (gauge):
  each key's expiry, the new one when this sweep renewed it; keys that never expire or hold no
  material are omitted.
* ``byok_keeper_keys{decision}`` (gauge): keys per planner decision in the last sweep (a key
  KMS could not describe counts as ALERT; a due key found on hold at import as HOLD).
* ``byok_keeper_last_sweep_timestamp_seconds{result}`` (gauge): when a sweep last ended ``ok``,
  ``failed``, ``dry-run`` or ``error`` (stopped before planning).
* ``byok_keeper_seconds_until_first_lapse`` (gauge): the soonest expiry among keys nothing will
  renew (HOLD, ALERT, failed this sweep, or not attempted once KMS access was lost); +Inf when
  there is none.
* ``byok_keeper_kms_requests_total{action,code}`` (counter): every KMS attempt, retries
  included; ``code`` is ``OK`` or the error code.
* ``byok_keeper_reestablish_total{outcome}`` (counter): re-establish attempts of due keys.
* ``byok_keeper_build_info{version}`` (gauge, always 1): the version running.

Every labelled counter starts at 0 for its known label values (each ``reestablish`` outcome;
``kms_requests`` with code ``OK`` for each action the gateway may call), so the first failure is
an increase ``increase()`` sees, not a series that appears already at 1. Error codes are not
known in advance: a ``kms_requests`` series with an error code appears at its first error.

With ``[[targets]]`` the daemon keeps one ``FleetMetrics`` per target (``target=``): every
sample then also carries ``target``, ``region`` and ``account_id`` (``target_metrics``).

A key already without material (a held or alerting PendingImport key) has lapsed already: it is
counted in ``byok_keeper_keys``, not in the first lapse. A sweep reads a key's tags only once it
is due, so a held key enters the first lapse when it enters its renewal window (default 7 days,
the alert's threshold); ``byok-keeper report`` reads every key's tags and shows holds sooner.
Nothing secret is in any figure: key ids, specs, states and counts only.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import __version__
from ..core.reestablish import HELD, Outcome
from ..domain.model import OutcomeKind
from ..planning.plan import ALERT, DECISIONS, DUE, HOLD, Decision

EXPIRY = "byok_keeper_material_expiry_timestamp_seconds"
KEYS = "byok_keeper_keys"
LAST_SWEEP = "byok_keeper_last_sweep_timestamp_seconds"
FIRST_LAPSE = "byok_keeper_seconds_until_first_lapse"
KMS_REQUESTS = "byok_keeper_kms_requests_total"
REESTABLISH = "byok_keeper_reestablish_total"
BUILD_INFO = "byok_keeper_build_info"
METRIC_NAMES = (EXPIRY, KEYS, LAST_SWEEP, FIRST_LAPSE, KMS_REQUESTS, REESTABLISH, BUILD_INFO)
RESULTS = ("ok", "failed", "dry-run", "error")
# The FC metrics line lists the soonest expiries only: one log line must stay small at 5,000 keys.
LINE_EXPIRIES = 100

HELP = {
    EXPIRY: "When a key's imported material expires (Unix seconds); never-expiring keys omitted.",
    KEYS: "Keys per planner decision in the last sweep.",
    LAST_SWEEP: "When a sweep last ended with this result (Unix seconds).",
    FIRST_LAPSE: "Seconds until the first key nothing will renew loses its material (+Inf: none).",
    KMS_REQUESTS: "KMS request attempts by action and result code (OK or the error code).",
    REESTABLISH: "Re-establish attempts of due keys by outcome.",
    BUILD_INFO: "Always 1; the byok-keeper version running, as the label version.",
}
TYPES = {KMS_REQUESTS: "counter", REESTABLISH: "counter"}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True)
class KeyExpiry:
    key_id: str
    key_spec: str
    expiry: datetime


@dataclass(frozen=True)
class FleetFigures:
    """What one sweep says about the fleet (no counters: those accumulate elsewhere)."""

    at: datetime
    result: str
    keys: dict[str, int]
    expiries: tuple[KeyExpiry, ...]  # soonest first
    first_lapse: datetime | None
    first_lapse_key_id: str
    reestablish: dict[str, int] = field(default_factory=dict)

    @property
    def seconds_until_first_lapse(self) -> float:
        if self.first_lapse is None:
            return math.inf
        return max(0.0, (self.first_lapse - self.at).total_seconds())


def sweep_result(outcomes: Iterable[Outcome], *, dry_run: bool) -> str:
    if any(o.failed for o in outcomes):
        return "failed"
    return "dry-run" if dry_run else "ok"


def fleet_figures(
    decisions: Iterable[Decision],
    outcomes: Iterable[Outcome],
    *,
    now: datetime,
    dry_run: bool = False,
) -> FleetFigures:
    """Figures from one sweep (or one plan: no outcomes). ``now`` is KMS's clock."""
    decisions = list(decisions)
    outcomes = list(outcomes)
    by_key = {o.key_id: o for o in outcomes}
    keys = dict.fromkeys(DECISIONS, 0)
    for d in decisions:
        keys[_effective(d, by_key.get(d.key_id))] += 1
    decided = {d.key_id for d in decisions}
    keys[ALERT] += sum(1 for o in outcomes if o.key_id not in decided)  # not even described

    expiries: list[KeyExpiry] = []
    lapse: tuple[datetime, str] | None = None
    for d in decisions:
        outcome = by_key.get(d.key_id)
        expiry = (outcome.new_expiry if outcome else None) or d.material_expire_time
        if d.key_state not in ("Enabled", "Disabled") and not (outcome and outcome.new_expiry):
            expiry = None  # no material in KMS: nothing to expire
        if expiry is None:
            continue
        expiries.append(KeyExpiry(d.key_id, d.key_spec, expiry))
        unrenewed = _effective(d, outcome) in (HOLD, ALERT) or (
            outcome is not None and (outcome.failed or outcome.not_attempted)
        )
        if unrenewed and (lapse is None or expiry < lapse[0]):
            lapse = (expiry, d.key_id)
    planned = {d.key_id: d.decision for d in decisions}
    reestablish: dict[str, int] = {}
    for o in outcomes:
        if planned.get(o.key_id) in DUE:
            reestablish[o.outcome] = reestablish.get(o.outcome, 0) + 1
    expiries.sort(key=lambda e: (e.expiry, e.key_id))
    return FleetFigures(
        at=now,
        result=sweep_result(outcomes, dry_run=dry_run),
        keys=keys,
        expiries=tuple(expiries),
        first_lapse=lapse[0] if lapse else None,
        first_lapse_key_id=lapse[1] if lapse else "",
        reestablish=reestablish,
    )


def _effective(decision: Decision, outcome: Outcome | None) -> str:
    """The decision a run acted on: a due key found on hold right before import is HOLD.

    A sweep reads tags only for due keys (``sweep.discover``), so this is how it sees holds."""
    if outcome is not None and outcome.outcome == HELD:
        return HOLD
    return decision.decision


def error_figures(now: datetime) -> FleetFigures:
    """A sweep that stopped before planning (KMS unreachable, vault unreadable...)."""
    return FleetFigures(now, "error", {}, (), None, "")


class FleetMetrics:
    """The daemon's metrics: the last sweep's figures plus counters over the process's life.

    Thread-safe: the scheduler's job thread writes, the HTTP server's threads read. Also a
    ``prometheus_client`` collector (``collect``)."""

    def __init__(
        self, gateway: Any, *, region: str, account_id: str = "", target: str = ""
    ) -> None:
        self.gateway = gateway  # whose request counts are read; None: none yet
        self._region = region
        self._account_id = account_id
        # With a target (``[[targets]]``, issue 16) every sample carries ``target``, ``region``
        # and ``account_id``; without, the exposition is exactly the single-account one.
        self._target = target
        self._lock = threading.Lock()
        self._figures: FleetFigures | None = None
        self._last_sweep: dict[str, float] = {}
        # Zero for every outcome from the start: see the module docstring.
        self._reestablish: dict[str, int] = dict.fromkeys(sorted(k.value for k in OutcomeKind), 0)

    def observe(self, figures: FleetFigures) -> None:
        with self._lock:
            self._last_sweep[figures.result] = figures.at.timestamp()
            if figures.result == "error":
                return  # keep the last known picture of the fleet
            self._figures = figures
            for outcome, n in figures.reestablish.items():
                self._reestablish[outcome] = self._reestablish.get(outcome, 0) + n

    def samples(self) -> list[Sample]:
        with self._lock:
            figures, last, counts = self._figures, dict(self._last_sweep), dict(self._reestablish)
        requests = _requests(self.gateway)
        out = [Sample(BUILD_INFO, (("version", __version__),), 1.0)]
        out += [Sample(LAST_SWEEP, (("result", r),), t) for r, t in sorted(last.items())]
        out += [
            Sample(KMS_REQUESTS, (("action", a), ("code", c)), n)
            for (a, c), n in sorted(requests.items())
        ]
        out += [Sample(REESTABLISH, (("outcome", o),), n) for o, n in sorted(counts.items())]
        if figures is not None:
            out += figure_samples(figures, region=self._region, account_id=self._account_id)
        if not self._target:
            return out
        where = (("target", self._target), ("region", self._region))
        where += (("account_id", self._account_id),)
        return [
            Sample(s.name, where + tuple(kv for kv in s.labels if kv[0] not in _WHERE), s.value)
            for s in out
        ]

    def collect(self) -> Iterator[Any]:
        """prometheus_client's collector interface: one family per metric name."""
        return families(self.samples())


_WHERE = ("target", "region", "account_id")


def families(samples: Iterable[Sample]) -> Iterator[Any]:
    """The samples as ``prometheus_client`` metric families: one per metric name (so HELP and
    TYPE appear once however many targets' samples it holds); every family, even empty."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    by_name: dict[str, list[Sample]] = {name: [] for name in METRIC_NAMES}
    for s in samples:
        by_name[s.name].append(s)
    for name, group in by_name.items():
        labels = [k for k, _ in group[0].labels] if group else []
        if TYPES.get(name) == "counter":
            family: Any = CounterMetricFamily(
                name.removesuffix("_total"), HELP[name], labels=labels
            )
        else:
            family = GaugeMetricFamily(name, HELP[name], labels=labels)
        for s in group:
            family.add_metric([v for _, v in s.labels], s.value)
        yield family


def figure_samples(figures: FleetFigures, *, region: str, account_id: str) -> list[Sample]:
    """The gauges one sweep sets (the counters live in ``FleetMetrics``)."""
    out = [Sample(KEYS, (("decision", d),), float(n)) for d, n in sorted(figures.keys.items())]
    out.append(Sample(FIRST_LAPSE, (), figures.seconds_until_first_lapse))
    out += [
        Sample(
            EXPIRY,
            (
                ("key_id", e.key_id),
                ("region", region),
                ("account_id", account_id),
                ("key_spec", e.key_spec),
            ),
            e.expiry.timestamp(),
        )
        for e in figures.expiries
    ]
    return out


def _requests(gateway: Any) -> dict[tuple[str, str], int]:
    """The gateway's request counts, with a zero ``OK`` for every action it may call."""
    allowlist = getattr(gateway, "allowlist", None)
    counts = dict.fromkeys(((a, "OK") for a in sorted(getattr(allowlist, "actions", ()))), 0)
    lock = getattr(gateway, "_stats_lock", None)
    if lock is None:
        counts.update(getattr(gateway, "requests", {}))
        return counts
    with lock:
        counts.update(gateway.requests)
    return counts


def parse_addr(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (all interfaces) or ``[V6]:PORT``. Raises ``InputError``."""
    from ..domain.errors import InputError

    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise InputError(
            f"invalid --metrics-addr {value!r}: expected HOST:PORT, e.g. 127.0.0.1:9464"
        )
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - ":PORT" asks for every interface
    return host, int(port)


def serve(metrics: FleetMetrics, addr: str, **limits: float) -> tuple[Any, str]:
    """Serve ``/metrics`` on ``addr`` in a daemon thread; returns (server, "host:port" bound).
    ``limits``: ``read_timeout`` (seconds) and ``max_connections`` of ``metrics_http``, whose
    server a pile of idle connections cannot turn into a pile of threads (issue 25)."""
    from prometheus_client import CollectorRegistry

    from ..domain.errors import ConfigError
    from .metrics_http import serve_registry

    host, port = parse_addr(addr)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    try:
        server = serve_registry(registry, host, port, **limits)  # type: ignore[arg-type]
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {addr}: {exc.strerror}") from None
    bound = server.server_address
    return server, f"{host}:{bound[1]}"


# ---- Function Compute: one structured line per sweep run ---------------------------------


def line_fields(
    figures: FleetFigures,
    requests: dict[tuple[str, str], int],
    *,
    region: str,
    account_id: str,
    target: str = "",
    dispatch: str = "",
) -> dict[str, Any]:
    """The ``metrics`` log line's fields: this run's figures and its KMS requests.

    ``target`` is the ``[[targets]]`` name the run swept, ``""`` without targets (the SLS
    rules group by it, so one target's success does not hide another's failure).
    Field names avoid the redaction processor's secret words (``material``, ``token``...)."""
    lapse = figures.seconds_until_first_lapse
    shown = figures.expiries[:LINE_EXPIRIES]
    return {
        "result": figures.result,
        "sweep_timestamp_seconds": round(figures.at.timestamp(), 3),
        "target": target,
        "region": region,
        "account_id": account_id,
        "dispatch": dispatch,
        "keys": dict(figures.keys),
        "keys_total": sum(figures.keys.values()),
        "reestablish": dict(figures.reestablish),
        "seconds_until_first_lapse": None if math.isinf(lapse) else round(lapse, 3),
        "first_lapse_key_id": figures.first_lapse_key_id,
        # A list, not {action: {code: n}}: action and code names (ImportKeyMaterial,
        # ExpiredImportToken) would trip the redaction processor as field names.
        "kms_requests": [
            {"action": a, "code": c, "count": n} for (a, c), n in sorted(requests.items())
        ],
        "expiries": [
            {"key_id": e.key_id, "key_spec": e.key_spec, "expiry_seconds": e.expiry.timestamp()}
            for e in shown
        ],
        "expiries_omitted": len(figures.expiries) - len(shown),
    }


class RunLine:
    """Collects one FC sweep run's figures; see ``run_line``."""

    def __init__(self) -> None:
        self.figures: FleetFigures | None = None
        self.dispatch = ""

    def observe(self, result: Any, dispatch: str = "") -> None:
        """Called with the run's ``SweepResult``."""
        self.figures = fleet_figures(
            result.decisions, result.outcomes, now=result.now, dry_run=result.dry_run
        )
        self.dispatch = dispatch


@contextmanager
def run_line(
    gateway: Any, *, region: str, account_id: str, target: str = "", log: Any = None
) -> Iterator[RunLine]:
    """Log one ``metrics`` line when the block ends: the figures it observed, and the KMS
    requests made inside it (a warm gateway's counts are cumulative, so the line has the
    difference). A block that raises logs ``result=error`` and re-raises."""
    before = _requests(gateway)
    run = RunLine()
    try:
        yield run
    except BaseException:
        figures = error_figures(gateway.now())
        raise
    else:
        figures = run.figures or error_figures(gateway.now())
    finally:
        after = _requests(gateway)
        spent = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
        where = {"region": region, "account_id": account_id, "target": target}
        _log_line(log, line_fields(figures, spent, **where, dispatch=run.dispatch))


def bare_line(
    now: datetime,
    result: str,
    *,
    region: str,
    account_id: str,
    target: str = "",
    dispatch: str = "",
) -> None:
    """A ``metrics`` line without figures or requests: ``error``, a run that could not start
    (its target's role not assumable, its region unreachable: no gateway, so no KMS clock);
    ``dispatched``, the fan-out sent that target its own invocation (which writes the target's
    real line; should it die unlogged, this line still makes the target a group of the SLS
    rules, with no ok run). ``now`` is the caller's clock."""
    figures = FleetFigures(now, result, {}, (), None, "")
    where = {"region": region, "account_id": account_id, "target": target}
    _log_line(None, line_fields(figures, {}, **where, dispatch=dispatch))


def _log_line(log: Any, fields: dict[str, Any]) -> None:
    from ..domain.logs import get_logger

    (log or get_logger("byok_keeper.metrics")).info("metrics", **fields)

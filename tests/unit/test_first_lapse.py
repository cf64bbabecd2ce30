"""``byok_keeper_seconds_until_first_lapse``: the soonest expiry among keys nothing will renew,
across several keys of each kind (held, alerting, failed, not attempted), whatever their order,
and across targets (each target's own figure, and the alert rules' minimum over them).

The one figure on-call pages on: taking the latest lapse instead of the earliest would say "fine"
while a key lapses tomorrow, so every case here has an unrenewable key lapsing later than the
one that must be named, and a renewable key lapsing sooner than both."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from byok_keeper.core.multi import TargetRun
from byok_keeper.core.reestablish import FAILED, NOT_ATTEMPTED, RENEWED, SKIPPED, Outcome
from byok_keeper.core.sweep import SweepResult
from byok_keeper.core.targets import Target
from byok_keeper.operations.metrics import FIRST_LAPSE, fleet_figures, line_fields
from byok_keeper.operations.target_metrics import TargetsMetrics
from byok_keeper.planning.plan import ALERT, HOLD, OK, RENEW, Decision
from tests.functional import sls_rules

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
# What keeps a key from being renewed: its decision, and the outcome of its attempt if any.
UNRENEWED = {
    "held": (HOLD, None),
    "alert": (ALERT, None),
    "failed": (RENEW, FAILED),
    "not-attempted": (RENEW, SKIPPED),
}


def _key(key_id: str, kind: str, expiry: datetime) -> tuple[Decision, Outcome | None]:
    decision, outcome = UNRENEWED.get(kind, (kind, None))
    d = Decision(key_id, decision, "test", "Enabled", "EC_P256", expiry)
    reason = NOT_ATTEMPTED + "KMS access lost" if outcome == SKIPPED else "test"
    return d, (Outcome(key_id, decision, outcome, reason, 1) if outcome else None)


def _sweep(keys: list[tuple[str, str, datetime]]) -> tuple[list[Decision], list[Outcome]]:
    pairs = [_key(*k) for k in keys]
    return [d for d, _ in pairs], [o for _, o in pairs if o is not None]


def _fleet(offsets_days: tuple[int, ...], prefix: str = "key") -> list[tuple[str, str, datetime]]:
    """One key of each unrenewable kind, expiring ``offsets_days`` from now in that order, and
    two keys that will be renewed expiring sooner than any of them (an OK key, a renewed one)."""
    kinds = zip(UNRENEWED, offsets_days, strict=True)
    keys = [(f"{prefix}-{kind}", kind, NOW + d * DAY) for kind, d in kinds]
    return [*keys, (f"{prefix}-ok", OK, NOW + DAY / 2), (f"{prefix}-renewed", RENEW, NOW + DAY)]


@pytest.mark.parametrize("order", list(itertools.permutations((2, 3, 5, 9))), ids=str)
def test_the_first_lapse_is_the_earliest_unrenewed_expiry_whatever_the_order(order):
    keys = _fleet(order)
    decisions, outcomes = _sweep(keys)
    renewed = next(d for d in decisions if d.key_id == "key-renewed")
    outcomes.append(Outcome(renewed.key_id, RENEW, RENEWED, "ok", 1, new_expiry=NOW + 30 * DAY))
    # Every permutation of the list, not only of the expiries: the loop must not keep the
    # first or the last key it sees.
    for shuffled in (decisions, decisions[::-1], decisions[2:] + decisions[:2]):
        figures = fleet_figures(shuffled, outcomes, now=NOW)
        soonest = min(UNRENEWED, key=lambda kind: order[list(UNRENEWED).index(kind)])
        assert figures.first_lapse_key_id == f"key-{soonest}"
        assert figures.first_lapse == NOW + min(order) * DAY
        assert figures.seconds_until_first_lapse == min(order) * 86400


def _target(name: str) -> Target:
    return Target(name, "cn-hangzhou" if name == "hz" else "eu-central-1", "1234567890123456")


def test_each_target_has_its_own_first_lapse_and_the_alerts_take_the_earliest_of_all():
    targets = [_target("hz"), _target("fra"), _target("sg")]
    offsets = {"hz": (9, 6, 8, 7), "fra": (4, 3, 5, 11), "sg": (12, 13, 10, 14)}
    runs, lines = [], []
    for target in targets:
        decisions, outcomes = _sweep(_fleet(offsets[target.name], prefix=target.name))
        result = SweepResult(NOW, tuple(decisions), tuple(outcomes), dry_run=False)
        runs.append(TargetRun(target, result))
        figures = fleet_figures(decisions, outcomes, now=NOW)
        lines.append({"event": "metrics", **line_fields(figures, {}, region=target.region,
                      account_id=target.account_id, target=target.name)})  # fmt: skip
    metrics = TargetsMetrics(targets)
    metrics.observe_runs(runs, gateway_of=lambda t: None, failed_at=NOW)

    # The daemon: one series per target, each that target's soonest.
    lapse = {dict(s.labels)["target"]: s.value for s in metrics.samples() if s.name == FIRST_LAPSE}
    assert lapse == {"hz": 6 * 86400, "fra": 3 * 86400, "sg": 10 * 86400}
    rules = yaml.safe_load((sls_rules.ALERTS.parent / "prometheus-rules.yml").read_text())
    (rule,) = [r for r in rules["groups"][0]["rules"] if FIRST_LAPSE in r["expr"]]
    assert rule["expr"] == f"min({FIRST_LAPSE}) < 7 * 86400"  # the soonest of every series

    # FC: one metrics line per target; the SLS rule names the soonest key and its target.
    got = sls_rules.lowest("byok-keeper-first-lapse-within-7-days", lines)
    assert got == {
        "first_lapse_seconds": 3 * 86400.0,
        "first_lapse_key_id": "fra-alert",
        "first_lapse_target": "fra",
    }

"""Budgets that multiply (issue 25): the KMS requests every instance of every deployed function
may send at once, computed from the rendered artefacts with the agent's own settings code, stay
inside the configured share of the account's quotas (deploy/README.md, "Budgets")."""

from __future__ import annotations

import json
import math

import pytest

from byok_keeper.core.settings import load_settings
from tests.unit.test_deploy_artefacts import (
    ACCOUNT,
    REGION,
    SOURCE,
    deploy,
    from_plan,
    from_s_yaml,
    from_terraform,
)

CLASSES = ("read_qps", "write_qps", "create_qps", "crypto_qps", "tags_qps")


def worst_case(functions: dict[str, dict]) -> tuple[dict[str, float], dict[str, float]]:
    """(the sum over functions of cap x per-instance budget, the configured share), per quota
    class. A function without a cap may run any number of instances: infinity."""
    total = dict.fromkeys(CLASSES, 0.0)
    shares = []
    for fn in functions.values():
        settings = load_settings({}, env=fn["environment"])
        per_instance = settings.instance_budgets()
        cap = fn["concurrency"] or math.inf
        for name in CLASSES:
            total[name] += cap * per_instance[name]
        shares.append({name: getattr(settings, name) for name in CLASSES})
    assert all(s == shares[0] for s in shares), "every function must see the same share"
    return total, shares[0]


@pytest.mark.parametrize("artefact", [from_plan, from_s_yaml, from_terraform],
                         ids=["deploy.py", "s.yaml", "terraform"])  # fmt: skip
def test_every_instance_of_every_function_at_once_stays_inside_the_share(artefact):
    total, share = worst_case(artefact())
    for name in CLASSES:
        assert total[name] <= share[name] * (1 + 1e-9), (name, total[name], share[name])
    # The defaults, as deploy/README.md writes them out: 2 x 5 + 5 x 2 + 2 x 2.5 = 25 reads/s.
    assert total["read_qps"] == pytest.approx(25.0) and share["read_qps"] == 25.0
    assert total["write_qps"] == pytest.approx(15.0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"SweepBudgetPercent": "50", "ReimportBudgetPercent": "40"}, "add up to 110"),
        ({"EventsBudgetPercent": "0"}, "between 1 and 100"),
        ({"SweepBudgetPercent": "a lot"}, "must be an integer"),
    ],
)
def test_deploy_refuses_budget_percents_over_the_share(overrides, message):
    with pytest.raises(deploy.DeployError, match=message):
        deploy.desired_state(SOURCE, overrides, REGION, ACCOUNT)


def test_deploy_refuses_a_function_without_a_cap():
    source = json.loads(json.dumps(SOURCE))
    del source["Functions"]["sweep"]["ReservedConcurrency"]
    with pytest.raises(deploy.DeployError, match="sweep: no ReservedConcurrency"):
        deploy.desired_state(source, {}, REGION, ACCOUNT)
    source = json.loads(json.dumps(SOURCE))
    source["Functions"]["events"]["Environment"]["BYOK_BUDGET_INSTANCES"] = "1"
    with pytest.raises(deploy.DeployError, match="events: BYOK_BUDGET_INSTANCES"):
        deploy.desired_state(source, {}, REGION, ACCOUNT)


def test_the_sum_holds_for_any_caps_and_split():
    overrides = {"SweepConcurrency": "3", "ReimportConcurrency": "9", "EventsConcurrency": "4",
                 "SweepBudgetPercent": "30", "ReimportBudgetPercent": "55",
                 "EventsBudgetPercent": "15", "ReadQps": "40"}  # fmt: skip
    state = deploy.desired_state(SOURCE, overrides, REGION, ACCOUNT)
    functions = {
        r: {"environment": fn["environment"], "concurrency": fn["reserved_concurrency"]}
        for r, fn in state["functions"].items()
    }
    total, share = worst_case(functions)
    assert total["read_qps"] == pytest.approx(40.0) and share["read_qps"] == 40.0

"""Quota-safe fan-out: each of the capped reimport instances gets the configured share divided
by the cap, so the whole fleet stays inside the share of the account's quota."""

from __future__ import annotations

import pytest

from byok_keeper.core.dispatch import FcTarget
from byok_keeper.core.factory import build_gateway
from byok_keeper.core.settings import load_settings
from byok_keeper.domain.errors import ConfigError
from byok_keeper.gateway.kms import SWEEP


def test_a_process_alone_spends_the_whole_configured_share():
    settings = load_settings(env={"BYOK_READ_QPS": "25", "BYOK_WRITE_QPS": "15"})
    assert settings.budget_instances == 1
    assert settings.instance_budgets()["read_qps"] == 25.0
    assert settings.instance_budgets()["write_qps"] == 15.0


def test_one_of_five_capped_instances_gets_a_fifth_of_every_budget():
    env = {"BYOK_READ_QPS": "25", "BYOK_WRITE_QPS": "15", "BYOK_BUDGET_INSTANCES": "5"}
    budgets = load_settings(env=env).instance_budgets()
    assert budgets == {
        "read_qps": 5.0,
        "write_qps": 3.0,
        "create_qps": 1.0,
        "crypto_qps": 20.0,
        "tags_qps": 30.0,
    }
    # Five instances at full speed spend exactly the share, never more.
    assert 5 * budgets["read_qps"] == 25.0 and 5 * budgets["write_qps"] == 15.0


def test_the_gateway_a_reimport_instance_builds_runs_at_its_slice():
    env = {"BYOK_READ_QPS": "25", "BYOK_WRITE_QPS": "15", "BYOK_BUDGET_INSTANCES": "5",
           "BYOK_KMS_ENDPOINT": "http://127.0.0.1:9",
           "ALIBABA_CLOUD_REGION_ID": "cn-hangzhou"}  # fmt: skip
    gateway = build_gateway(load_settings(env=env), SWEEP)
    assert gateway.budget.rate("read") == 5.0
    assert gateway.budget.rate("write") == 3.0


@pytest.mark.parametrize("value", ["0", "-1", "x", "1001"])
def test_budget_instances_must_be_a_sane_integer(value):
    with pytest.raises(ConfigError, match="budget_instances"):
        load_settings(env={"BYOK_BUDGET_INSTANCES": value})


def test_fc_target_names_functions_per_api():
    fc3 = FcTarget.from_settings(load_settings(env={"BYOK_FC_PREFIX": "acme-byok"}))
    assert fc3.function("reimport") == "acme-byok-reimport"
    fc2 = FcTarget.from_settings(load_settings(env={"BYOK_FC_API": "2.0"}))
    assert fc2.function("reimport") == "reimport" and fc2.label("sweep") == "byok-keeper/sweep"
    with pytest.raises(ConfigError, match="fc_api"):
        load_settings(env={"BYOK_FC_API": "1.0"})

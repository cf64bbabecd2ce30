"""Fleet metrics from real sweeps against aliyun-local: the Prometheus exposition the daemon
serves, and the FC sweep function's one ``metrics`` log line."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from byok_keeper.core.reestablish import FAILED
from byok_keeper.core.sweep import sweep_keys
from byok_keeper.operations.metrics import (
    EXPIRY,
    FIRST_LAPSE,
    KEYS,
    KMS_REQUESTS,
    LAST_SWEEP,
    REESTABLISH,
    FleetMetrics,
    fleet_figures,
)
from byok_keeper.planning.plan import DECISIONS
from byok_keeper.runtimes import fc
from tests.functional import sls_rules
from tests.functional.conftest import build_world, enroll_key, fc_context, skew_local_clock

DAY = 86400
ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "alerts"


def scrape(metrics: FleetMetrics) -> dict[str, dict[tuple, float]]:
    """The text exposition, parsed back: name -> {sorted label items: value}."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    text = generate_latest(registry).decode()
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


@pytest.fixture
def fleet(emulator, tmp_path):
    """Four keys six days after enrollment: one healthy (30d lease), one whose material was
    deleted, one held with 4 days left (inside its renewal window, so the sweep tries it and
    finds the hold), one inside its renewal window (8d lease)."""
    emulator.reset()
    world = build_world(emulator, tmp_path)
    ids = {
        "ok": enroll_key(world, lease="30d")[0],
        "gone": enroll_key(world, lease="30d")[0],
        "held": enroll_key(world, lease="10d")[0],
        "renew": enroll_key(world, lease="8d")[0],
    }
    kms = emulator.emulator.kms
    kms.delete_key_material(ids["gone"])
    kms.tag_key(ids["held"], {"byok-keeper:hold": "INC-17"})
    emulator.advance_clock(6 * DAY)
    return world, ids


def test_metrics_from_a_real_sweep(fleet, emulator):
    (_, vault, _, sweeper), ids = fleet
    metrics = FleetMetrics(sweeper, region="cn-hangzhou", account_id="1234567890123456")
    result = sweep_keys(sweeper, vault)
    metrics.observe(fleet_figures(result.decisions, result.outcomes, now=result.now))
    got = scrape(metrics)

    assert got[KEYS][(("decision", "OK"),)] == 1
    assert got[KEYS][(("decision", "REIMPORT"),)] == 1
    assert got[KEYS][(("decision", "RENEW"),)] == 1
    assert got[KEYS][(("decision", "HOLD"),)] == 1
    assert got[KEYS][(("decision", "ALERT"),)] == 0
    assert got[REESTABLISH] == {  # every outcome from the start, at 0 until it happens
        (("outcome", "restored"),): 1,
        (("outcome", "renewed"),): 1,
        (("outcome", "held"),): 1,
        (("outcome", "failed"),): 0,
        (("outcome", "skipped"),): 0,
        (("outcome", "dry-run"),): 0,
    }
    assert set(got[LAST_SWEEP]) == {(("result", "ok"),)}
    assert abs(got[LAST_SWEEP][(("result", "ok"),)] - result.now.timestamp()) < 1

    # The held key lapses in 4 days and nothing will renew it: the fleet's first lapse.
    assert got[FIRST_LAPSE][()] == pytest.approx(4 * DAY, abs=120)
    # Every key with material has its expiry, as KMS now reports it (the renewed and restored
    # keys with their new one), labelled with region, account and spec.
    expiries = {dict(labels)["key_id"]: value for labels, value in got[EXPIRY].items()}
    assert set(expiries) == set(ids.values())
    for key_id in ids.values():
        reported = emulator.key_view(key_id)["material_expire_time"]
        assert abs(expiries[key_id] - _unix(reported)) < 1, key_id
    labels = dict(next(iter(got[EXPIRY])))
    assert labels["region"] == "cn-hangzhou" and labels["account_id"] == "1234567890123456"
    assert labels["key_spec"] == "EC_P256"

    # KMS attempts by action and code, counted by the gateway itself.
    requests = {dict(k)["action"] + "/" + dict(k)["code"]: v for k, v in got[KMS_REQUESTS].items()}
    assert requests["ImportKeyMaterial/OK"] == 2
    assert requests["DescribeKey/OK"] >= 4
    assert sum(requests.values()) == sweeper.stats["calls"]


def test_failures_accumulate_and_an_unrenewable_key_moves_the_first_lapse(fleet, emulator):
    (_, vault, _, sweeper), ids = fleet
    metrics = FleetMetrics(sweeper, region="cn-hangzhou")
    first = sweep_keys(sweeper, vault)
    metrics.observe(fleet_figures(first.decisions, first.outcomes, now=first.now))
    # Five days later the held key has lapsed (no material: nothing left to lose) and the
    # 8-day key is due again; its renewal is refused, so it is the next to lapse.
    emulator.advance_clock(5 * DAY)
    emulator.set_faults(fail_next={"ImportKeyMaterial": "Forbidden.NoPermission"})
    second = sweep_keys(sweeper, vault)
    metrics.observe(fleet_figures(second.decisions, second.outcomes, now=second.now))
    got = scrape(metrics)

    assert [o.key_id for o in second.failed] == [ids["renew"]]
    assert got[REESTABLISH][(("outcome", "failed"),)] == 1
    assert got[REESTABLISH][(("outcome", "renewed"),)] == 1  # from the first sweep
    assert set(got[LAST_SWEEP]) == {(("result", "ok"),), (("result", "failed"),)}
    renew_expiry = _unix(emulator.key_view(ids["renew"])["material_expire_time"])
    assert got[FIRST_LAPSE][()] == pytest.approx(renew_expiry - second.now.timestamp(), abs=1)
    requests = {dict(k)["action"] + "/" + dict(k)["code"]: v for k, v in got[KMS_REQUESTS].items()}
    assert requests["ImportKeyMaterial/Forbidden.NoPermission"] == 1


def test_nothing_unrenewable_means_no_lapse(emulator, tmp_path):
    emulator.reset()
    world = build_world(emulator, tmp_path)
    enroll_key(world, lease="never")
    result = sweep_keys(world[3], world[1])
    figures = fleet_figures(result.decisions, result.outcomes, now=result.now)
    assert math.isinf(figures.seconds_until_first_lapse) and figures.expiries == ()


def test_fc_sweep_logs_one_metrics_line(fleet, emulator, tmp_path, monkeypatch, mocker):
    (_, _vault, _, _), ids = fleet
    monkeypatch.setenv("BYOK_KMS_ENDPOINT", f"http://{emulator.endpoint}")
    monkeypatch.setenv("BYOK_VAULT", f"file://{tmp_path / 'vault'}")
    monkeypatch.setenv("BYOK_SEAL_KEY_FILE", str(tmp_path / "seal.key"))
    monkeypatch.setenv("BYOK_DISPATCH", "inline")
    fc.RUNTIME = fc.Runtime()
    context = fc_context(emulator)
    fc.RUNTIME.deps(context)  # warm: the line counts this run's requests only
    with capture_logs() as logs:
        result = fc.handle_sweep(b"", context)
    assert result["ok"]
    (line,) = [e for e in logs if e["event"] == "metrics"]
    assert line["result"] == "ok" and line["dispatch"] == "inline"
    assert line["keys"]["HOLD"] == 1 and line["keys"]["OK"] == 1 and line["keys_total"] == 4
    assert line["reestablish"] == {"restored": 1, "renewed": 1, "held": 1}
    assert line["first_lapse_key_id"] == ids["held"]
    assert line["seconds_until_first_lapse"] == pytest.approx(4 * DAY, abs=120)
    assert line["account_id"] == "1234567890123456" and line["region"] == "cn-hangzhou"
    assert line["target"] == ""  # no [[targets]]: the SLS rules' one group
    assert sls_rules.firing_groups("byok-keeper-no-successful-sweep", [line]) == {"": False}
    imports = [r for r in line["kms_requests"] if r["action"] == "ImportKeyMaterial"]
    assert imports == [{"action": "ImportKeyMaterial", "code": "OK", "count": 2}]
    assert {e["key_id"] for e in line["expiries"]} == set(ids.values())
    assert line["expiries_omitted"] == 0
    json.dumps(line)  # one JSON line, as SLS receives it
    _sls_queries_read_real_fields(line, [e for e in logs if e["event"] == "key"])

    # A run that stops before planning (KMS refuses this host's clock) still logs its line.
    skew_local_clock(mocker, 3600)
    with capture_logs() as logs, pytest.raises(fc.RetryableFailure):
        fc.handle_sweep(b"", context)
    (error,) = [e for e in logs if e["event"] == "metrics"]
    assert error["result"] == "error" and error["keys_total"] == 0 and error["target"] == ""
    assert sls_rules.firing_groups("byok-keeper-no-successful-sweep", [error]) == {"": True}


def _sls_queries_read_real_fields(metrics_line: dict, key_lines: list[dict]) -> None:
    """Every ``json_extract_scalar(message, '$.a.b')`` in deploy/alerts/sls-alerts.json names a
    field of the metrics line or of a key line (the event the query selects), and every event
    it selects on is one byok-keeper logs. (Rules over the events function's ``event`` lines
    are checked against those lines in tests/functional/test_fc_events_handler.py.)"""
    rules = json.loads((ALERTS / "sls-alerts.json").read_text())
    lines = {"metrics": metrics_line, "key": key_lines[0]}
    for alert in rules["alerts"]:
        query = alert["configuration"]["queryList"][0]["query"]
        events = set(re.findall(r"'\$\.event'\) = '(\w+)'", query))
        if events == {"event"}:
            continue
        assert events and events <= set(lines), (alert["name"], events)
        for path in re.findall(r"'\$\.([\w.]+)'", query):
            if path == "event":
                continue
            head, _, rest = path.partition(".")
            owner = next((lines[e] for e in sorted(events) if head in lines[e]), None)
            assert owner is not None, (alert["name"], path)
            if rest:  # $.keys.ALERT, $.reestablish.failed: a decision or an outcome name
                assert rest in {*DECISIONS, FAILED}, (alert["name"], path)


def _unix(kms_time: str) -> float:
    from datetime import datetime, timezone

    return (
        datetime.strptime(kms_time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    )

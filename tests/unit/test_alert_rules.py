"""The alert rules in deploy/alerts/ parse, and every query names metrics, labels and values
byok-keeper really exports (the SLS queries are checked against a real FC metrics line in
tests/functional/test_metrics.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from byok_keeper.core.reestablish import DRY_RUN, FAILED, HELD, RENEWED, RESTORED, SKIPPED
from byok_keeper.operations.metrics import METRIC_NAMES, RESULTS
from byok_keeper.planning.plan import DECISIONS

ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "alerts"
LABEL_VALUES = {
    "decision": set(DECISIONS),
    "result": set(RESULTS),
    "outcome": {RESTORED, RENEWED, FAILED, HELD, SKIPPED, DRY_RUN},
}


def test_prometheus_rules_use_exported_metrics_and_labels():
    doc = yaml.safe_load((ALERTS / "prometheus-rules.yml").read_text())
    (group,) = doc["groups"]
    rules = {r["alert"]: r for r in group["rules"]}
    assert len(rules) == 3
    for name, rule in rules.items():
        expr = rule["expr"]
        names = set(re.findall(r"\bbyok_keeper_\w+", expr))
        assert names and names <= set(METRIC_NAMES), (name, names)
        for label, value in re.findall(r'(\w+)="([^"]*)"', expr):
            assert value in LABEL_VALUES[label], (name, label, value)
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"]
    assert "7 * 86400" in rules["ByokKeeperFirstLapseWithin7Days"]["expr"]
    assert "1800" in rules["ByokKeeperNoSuccessfulSweep"]["expr"]  # 2 x the 15-minute default


def test_sls_rules_are_create_alert_bodies():
    doc = json.loads((ALERTS / "sls-alerts.json").read_text())
    names = [a["name"] for a in doc["alerts"]]
    assert names == [
        "byok-keeper-key-failed",
        "byok-keeper-no-successful-sweep",
        "byok-keeper-first-lapse-within-7-days",
        "byok-keeper-key-deletion-or-disable",
        "byok-keeper-event-refused",
    ]
    for alert in doc["alerts"]:
        config = alert["configuration"]
        assert config["version"] == "2.0" and alert["schedule"]["type"] == "FixedRate"
        (query,) = config["queryList"]
        assert query["storeType"] == "log" and query["start"].startswith("-")
        # The condition reads only columns the query selects.
        aliases = set(re.findall(r"\bas (\w+)", query["query"]))
        for severity in config["severityConfigurations"]:
            used = set(re.findall(r"[a-z_]+", severity["evalCondition"]["condition"]))
            assert used and used <= aliases, (alert["name"], used, aliases)
        # Grouped rules group by columns the query selects and groups by.
        group = config["groupConfiguration"]
        assert group["type"] in ("no_group", "custom"), alert["name"]
        if group["type"] == "custom":
            grouped = query["query"].split(" group by ")[1].split(", ")
            assert group["fields"] == grouped and set(grouped) <= aliases, alert["name"]
        assert alert["description"] == config["annotations"][1]["value"], alert["name"]
    no_sweep = doc["alerts"][1]["configuration"]
    assert no_sweep["noDataFire"] is True  # no log at all is a dead agent too
    assert no_sweep["queryList"][0]["start"] == "-12h"  # 2 x the 6-hour default (issue 15)
    # One group per target (issue 16): a target with only error lines fires though others
    # succeed; without targets every line's target is "" (one group, as before).
    assert no_sweep["groupConfiguration"] == {"type": "custom", "fields": ["target"]}
    assert "'$.target') as target" in no_sweep["queryList"][0]["query"]
    first_lapse = doc["alerts"][2]["configuration"]
    assert first_lapse["queryList"][0]["start"] == "-7h"  # sees the last sweep's metrics line
    # The minimum over every target's lines (none can hide another's lapse), naming its target.
    assert first_lapse["groupConfiguration"]["type"] == "no_group"
    assert "as first_lapse_target" in first_lapse["queryList"][0]["query"]
    # The events function's rules: an act is not resolved by time passing, so no "resolved";
    # a destroyed or disabled key is critical, one alert per key and call, minutes at most.
    destroy, refused = doc["alerts"][3]["configuration"], doc["alerts"][4]["configuration"]
    assert destroy["sendResolved"] is False and refused["sendResolved"] is False
    assert destroy["severityConfigurations"][0]["severity"] == 10
    assert destroy["groupConfiguration"]["fields"] == ["key_id", "event_name"]
    assert doc["alerts"][3]["schedule"]["interval"] == "1m"
    assert refused["severityConfigurations"][0]["severity"] == 8

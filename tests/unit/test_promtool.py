"""The shipped Prometheus alert rules, checked and unit-tested by Prometheus's own promtool
(deploy/alerts/prometheus-rules.test.yml holds the cases: a one-off failure pages because the
counters start at 0, and would not if the series first appeared at 1)."""

from __future__ import annotations

from tests.promtool import ALERTS, RULES, run


def test_promtool_accepts_the_shipped_rules():
    out = run("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 3 rules found" in out.stdout


def test_the_rules_fire_when_they_should_under_promtool_test_rules():
    out = run("test", "rules", "prometheus-rules.test.yml", cwd=ALERTS)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout

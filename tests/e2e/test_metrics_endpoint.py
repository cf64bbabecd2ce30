"""The daemon's Prometheus endpoint, scraped over HTTP as Prometheus would."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from byok_keeper.operations.metrics import METRIC_NAMES
from tests.e2e.conftest import daemon_metrics, enroll_cli, run_cli

pytestmark = pytest.mark.slow


def _samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_daemon_serves_metrics_of_its_sweeps(cli_env, served, tmp_path):
    key = enroll_cli(cli_env)
    served.emulator.kms.delete_key_material(key["key_id"])
    got = _samples(daemon_metrics(cli_env, tmp_path / "state", ready="byok_keeper_keys{"))

    assert set(METRIC_NAMES) <= set(got), sorted(got)
    assert ({"decision": "REIMPORT"}, 1.0) in got["byok_keeper_keys"]
    # Every outcome is a series from the start, at 0 until it happens (increase() sees the
    # first failure).
    reestablish = {labels["outcome"]: v for labels, v in got["byok_keeper_reestablish_total"]}
    assert reestablish == {"dry-run": 0, "failed": 0, "held": 0, "renewed": 0, "restored": 1,
                           "skipped": 0}  # fmt: skip
    ((labels, when),) = got["byok_keeper_last_sweep_timestamp_seconds"]
    assert labels == {"result": "ok"} and abs(when - time.time()) < 120
    ((labels, expiry),) = got["byok_keeper_material_expiry_timestamp_seconds"]
    assert labels == {"key_id": key["key_id"], "region": "cn-hangzhou", "account_id": "",
                      "key_spec": "EC_P256"}  # fmt: skip
    assert expiry == pytest.approx(time.time() + 30 * 86400, abs=300)
    assert got["byok_keeper_seconds_until_first_lapse"] == [({}, float("inf"))]
    imports = [v for labels, v in got["byok_keeper_kms_requests_total"]
               if labels == {"action": "ImportKeyMaterial", "code": "OK"}]  # fmt: skip
    assert imports == [1.0]


def test_a_bad_metrics_address_is_a_usage_error(cli_env, tmp_path):
    out = run_cli("daemon", "--metrics-addr", "localhost", "--state-dir", str(tmp_path / "s"),
                  env=cli_env)  # fmt: skip
    assert out.returncode == 2 and "invalid --metrics-addr" in out.stderr


def test_a_stop_while_the_daemon_starts_exits_cleanly(cli_env, tmp_path):
    """SIGTERM as soon as metrics are served (the job store may still be opening, the first
    sweep not begun): the daemon stops with exit 0, never killed by the signal."""
    text = daemon_metrics(cli_env, tmp_path / "state", ready="# HELP")
    assert "# HELP byok_keeper_keys " in text


def test_batch_runs_write_their_metrics_for_the_textfile_collector(cli_env, served, tmp_path):
    key = enroll_cli(cli_env)["key_id"]
    served.emulator.kms.delete_key_material(key)
    files = {name: tmp_path / f"{name}.prom" for name in ("plan", "sweep", "once")}
    state = ("--state-dir", str(tmp_path / "state"))
    runs = {
        "plan": (("plan",), 3),
        "sweep": (("sweep",), 0),
        "once": (("daemon", "--once", *state), 0),
    }
    for name, (args, code) in runs.items():
        out = run_cli(*args, "--metrics-file", str(files[name]), env=cli_env)
        assert out.returncode == code, (name, out.stderr[-1500:])
    plan, sweep, once = (_samples(files[n].read_text()) for n in ("plan", "sweep", "once"))
    assert ({"decision": "REIMPORT"}, 1.0) in plan["byok_keeper_keys"]
    assert [labels for labels, _ in plan["byok_keeper_last_sweep_timestamp_seconds"]] == [
        {"result": "dry-run"}  # a plan is no sweep: the no-successful-sweep alert still sees
    ]
    for got in (sweep, once):
        assert set(METRIC_NAMES) <= set(got), sorted(got)
        (info,) = got["byok_keeper_build_info"]
        assert info[0]["version"] and info[1] == 1.0
    assert ({"outcome": "restored"}, 1.0) in sweep["byok_keeper_reestablish_total"]
    assert ({"outcome": "failed"}, 0.0) in sweep["byok_keeper_reestablish_total"]
    assert ({"decision": "OK"}, 1.0) in once["byok_keeper_keys"]  # restored by the sweep
    assert [p.name for p in tmp_path.glob("*.tmp")] == []


def test_metrics_addr_with_once_is_a_usage_error_before_any_call(cli_env, served, tmp_path):
    served.emulator.calls.clear()
    out = run_cli("daemon", "--once", "--state-dir", str(tmp_path / "state"),
                  "--metrics-addr", "127.0.0.1:0", env=cli_env)  # fmt: skip
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "--metrics-file" in out.stderr
    assert served.calls() == []


@pytest.mark.parametrize("where", ["missing/x.prom", "a-file/x.prom"])
def test_a_metrics_file_that_cannot_be_written_never_stops_restoration(
    cli_env, served, tmp_path, where
):
    """Monitoring never stops restoration: each batch run sweeps (plans), then says in one
    line that its metrics file was not written, and fails (1) rather than passing silently.
    (A directory named as the file stays a usage error: click refuses it before any call.)"""
    (tmp_path / "a-file").write_text("")
    key = enroll_cli(cli_env)["key_id"]
    metrics = ("--metrics-file", str(tmp_path / where))
    state = ("--state-dir", str(tmp_path / "state"))
    for args, restores in ((("plan",), False), (("sweep",), True),
                           (("daemon", "--once", *state), True)):  # fmt: skip
        served.emulator.kms.delete_key_material(key)
        served.emulator.calls.clear()
        out = run_cli(*args, *metrics, env=cli_env)
        assert out.returncode == 1, (args, out.stderr[-1500:])
        lines = [line for line in out.stderr.splitlines() if "metrics_file_unwritten" in line]
        assert len(lines) == 1 and "--metrics-file" in lines[0], (args, out.stderr[-1500:])
        imported = [c["action"] for c in served.calls() if c["action"] == "ImportKeyMaterial"]
        assert imported == (["ImportKeyMaterial"] if restores else []), args
    assert sorted(p.name for p in tmp_path.rglob("*.tmp")) == []


def test_a_one_off_failure_written_by_real_runs_fires_the_shipped_alert(cli_env, served, tmp_path):
    """Three ``sweep --metrics-file`` runs (ok, one key failing once, ok again), each file read
    as 10 one-minute scrapes by ``promtool test rules`` against deploy/alerts: the failure
    pages, as the first failure of a series that starts at 0 must."""
    import json

    from tests.promtool import RULES, run

    run("--version")  # skips (or in CI fails) here, before any work, without promtool
    key = enroll_cli(cli_env)["key_id"]
    failed: list[float] = []
    for n, fault in enumerate((None, "InvalidKeyMaterial", None)):
        served.emulator.kms.delete_key_material(key)
        if fault:
            served.set_faults(fail_next={"ImportKeyMaterial": [fault]})
        path = tmp_path / f"run{n}.prom"
        out = run_cli("sweep", "-o", "json", "--metrics-file", str(path), env=cli_env)
        assert out.returncode == (1 if fault else 0), out.stderr[-1500:]
        served.set_faults()
        got = dict((labels["outcome"], v) for labels, v in
                   _samples(path.read_text())["byok_keeper_reestablish_total"])  # fmt: skip
        failed.append(got["failed"])
    assert failed == [0.0, 1.0, 0.0]
    values = " ".join(f"{v:g}x9" for v in failed)  # each file scraped 10 times, a minute apart
    series = 'byok_keeper_reestablish_total{outcome="failed"}'
    cases = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": series, "values": values}],
        "alert_rule_test": [
            {"eval_time": "5m", "alertname": "ByokKeeperKeyFailedOrAlerting", "exp_alerts": []},
            {"eval_time": "15m", "alertname": "ByokKeeperKeyFailedOrAlerting", "exp_alerts": [
                {"exp_labels": {"severity": "critical"}, "exp_annotations": _failed()}]},
        ],
    }]}  # fmt: skip
    test_file = tmp_path / "live.test.yml"
    test_file.write_text(json.dumps(cases))  # JSON is YAML
    out = run("test", "rules", str(test_file))
    assert out.returncode == 0, out.stdout + out.stderr


def _failed() -> dict:
    """The shipped failure alert's annotations, as promtool compares them."""
    import yaml

    from tests.promtool import RULES

    (group,) = yaml.safe_load(RULES.read_text())["groups"]
    (rule,) = [r for r in group["rules"] if r["alert"] == "ByokKeeperKeyFailedOrAlerting"]
    return rule["annotations"]

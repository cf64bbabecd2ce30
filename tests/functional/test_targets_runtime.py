"""Targets in the unattended entrypoints (issue 16): the daemon and the FC handlers sweep two
accounts in two regions of aliyun-local, the second through STS AssumeRole; one vault shared by
both targets (each sees its own keys); a target whose role cannot be assumed fails alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from aliyun_local.server import LocalServer
from byok_keeper.core.dispatch import InvokeError
from byok_keeper.core.settings import load_settings
from byok_keeper.core.targets import load_targets
from byok_keeper.runtimes import fc, fc_targets
from byok_keeper.runtimes.daemon import run_daemon
from tests.functional import sls_rules
from tests.functional.conftest import fc_context
from tests.functional.two_targets import (
    R1,
    R2,
    A,
    B,
    base_credentials,
    enroll_in,
    targets_toml,
)

EVENTS = Path(__file__).resolve().parents[1] / "events"


@pytest.fixture(scope="module")
def cloud():
    with LocalServer(accounts=[A, B], regions=[R1, R2]) as server:
        yield server


def _toml(cloud: LocalServer, tmp_path: Path, *, broken: bool) -> Path:
    text = targets_toml(cloud, tmp_path)
    if broken:
        text += (
            text[text.index('[[targets]]\nname = "fra"') :]
            .replace('name = "fra"', 'name = "nope"')
            .replace("role/byok-keeper", "role/not-there")
            # another account and region than fra's: one account and region is one target
            .replace(f'region = "{R2}"', f'region = "{R1}"')
            .replace(cloud.kms_endpoints[R2], cloud.kms_endpoints[R1])
        )
    path = tmp_path / ("broken.toml" if broken else "byok.toml")
    path.write_text(text)
    return path


@pytest.fixture
def world(cloud, tmp_path, monkeypatch):
    """A key enrolled in each target, its material then deleted; the settings file."""
    cloud.reset()
    base_credentials(monkeypatch, tmp_path)
    path = _toml(cloud, tmp_path, broken=False)
    _toml(cloud, tmp_path, broken=True)
    settings = load_settings({}, env={}, config_path=str(path))
    keys = {t.name: enroll_in(settings, t)[0] for t in load_targets(str(path), env={})}
    return path, keys


def _delete_all(cloud: LocalServer, keys: dict[str, str]) -> None:
    for key_id in keys.values():
        cloud.emulator.tenancy.find(key_id).delete_key_material(key_id)
        assert cloud.key_view(key_id)["state"] == "PendingImport"


def test_the_daemon_sweeps_every_target(cloud, world, tmp_path):
    path, keys = world
    _delete_all(cloud, keys)
    settings = load_settings({}, env={}, config_path=str(path))
    health = tmp_path / "health.json"
    code = run_daemon(settings, schedule="@every 15m", state_dir=tmp_path / "state", once=True,
                      health_file=health, targets=load_targets(str(path), env={}))  # fmt: skip
    assert code == 0
    doc = json.loads(health.read_text())
    assert doc["outcome"] == "ok" and doc["summary"] == {"restored": 2}
    assert [(t["target"], t["ok"]) for t in doc["targets"]] == [("hz", True), ("fra", True)]
    assert {cloud.key_view(k)["state"] for k in keys.values()} == {"Enabled"}


def test_the_daemon_reports_a_failing_target_and_sweeps_the_others(cloud, world, tmp_path):
    _path, keys = world
    _delete_all(cloud, keys)
    broken = str(tmp_path / "broken.toml")
    settings = load_settings({}, env={}, config_path=broken)
    health = tmp_path / "health.json"
    code = run_daemon(settings, schedule="@every 15m", state_dir=tmp_path / "state", once=True,
                      health_file=health, targets=load_targets(broken, env={}))  # fmt: skip
    assert code == 1
    doc = json.loads(health.read_text())
    assert doc["outcome"] == "failed" and doc["summary"] == {"restored": 2}
    status = {t["target"]: t for t in doc["targets"]}
    assert status["hz"]["ok"] and status["fra"]["ok"] and not status["nope"]["ok"]
    assert "cannot assume" in status["nope"]["error"]


@pytest.fixture
def deployed(cloud, world, monkeypatch):
    path, keys = world
    monkeypatch.setenv("BYOK_CONFIG", str(path))
    monkeypatch.setenv("BYOK_DISPATCH", "inline")
    fc.RUNTIME = fc.Runtime()  # a cold instance
    return fc_context(cloud), keys


def test_the_fc_sweep_handler_sweeps_every_target_inline(cloud, deployed):
    context, keys = deployed
    _delete_all(cloud, keys)
    answer = fc.handle_sweep((EVENTS / "timer.json").read_bytes(), context)
    assert answer["ok"], answer
    assert {name: a["summary"] for name, a in answer["targets"].items()} == {
        "hz": {"restored": 1},
        "fra": {"restored": 1},
    }
    # The reimport function acts in the target its event names.
    cloud.emulator.tenancy.find(keys["fra"]).delete_key_material(keys["fra"])
    event = {"key_id": keys["fra"], "reason": "test", "requested_by": "t", "target": "fra"}
    done = fc.handle_reimport(json.dumps(event).encode(), context)
    assert done["ok"] and cloud.key_view(keys["fra"])["state"] == "Enabled"
    assert done["target"] == "fra"
    unknown = fc.handle_sweep(
        json.dumps({"payload": json.dumps({"target": "elsewhere"})}).encode(), context
    )
    assert unknown["ok"] is False and "unknown target 'elsewhere'" in unknown["message"]


def _sweep_lines(context) -> tuple[dict, list[dict]]:
    """One sweep function run: its answer and the ``metrics`` lines it logged (each made one
    JSON line, as FC ships it to the Logstore)."""
    with capture_logs() as logs:
        answer = fc.handle_sweep((EVENTS / "timer.json").read_bytes(), context)
    lines = [json.loads(json.dumps(x)) for x in logs if x["event"] == "metrics"]
    return answer, lines


def test_every_target_writes_one_metrics_line_and_sls_sees_the_failing_one(
    cloud, deployed, monkeypatch
):
    """Two targets, the second's role not assumable: each writes one ``metrics`` line naming
    it, the failing one ``result: error`` (no Deps, no requests), and the SLS rule
    byok-keeper-no-successful-sweep, grouped by target, fires for it alone."""
    context, keys = deployed
    path = Path(os.environ["BYOK_CONFIG"])
    broken = path.with_name("fra-broken.toml")
    broken.write_text(path.read_text().replace("role/byok-keeper", "role/not-there"))
    monkeypatch.setenv("BYOK_CONFIG", str(broken))
    _delete_all(cloud, keys)
    answer, first = _sweep_lines(context)
    assert answer["ok"] is False and answer["targets"]["hz"]["ok"]
    assert "cannot assume" in answer["targets"]["fra"]["error"]
    by_target = {x["target"]: x for x in first}
    assert len(first) == 2 and set(by_target) == {"hz", "fra"}
    hz, fra = by_target["hz"], by_target["fra"]
    assert (hz["result"], hz["region"], hz["account_id"]) == ("ok", R1, A)
    assert hz["reestablish"] == {"restored": 1} and hz["kms_requests"]
    assert (fra["result"], fra["region"], fra["account_id"]) == ("error", R2, B)
    assert fra["keys_total"] == 0 and fra["kms_requests"] == [] and fra["expiries"] == []
    assert fra["seconds_until_first_lapse"] is None
    rule = "byok-keeper-no-successful-sweep"
    assert sls_rules.firing_groups(rule, first) == {"hz": False, "fra": True}
    # The rule without its grouping (one count over every line) would not have fired.
    assert sum(x["result"] == "ok" for x in first) == 1

    # The role fixed, the next run's ok line clears the target within the same window.
    monkeypatch.setenv("BYOK_CONFIG", str(path))
    fc.RUNTIME = fc.Runtime()
    answer, second = _sweep_lines(context)
    assert answer["ok"], answer
    assert sorted(x["target"] for x in second) == ["fra", "hz"]
    assert sls_rules.firing_groups(rule, first + second) == {"hz": False, "fra": False}


def test_a_sweep_event_naming_a_target_without_targets_is_a_bad_event(deployed, monkeypatch):
    context, _keys = deployed
    monkeypatch.delenv("BYOK_CONFIG")
    event = json.dumps({"payload": json.dumps({"target": "hz"})}).encode()
    answer = fc.handle_sweep(event, context)
    assert answer["ok"] is False and answer["error"] == "BadEvent"
    assert "none are configured" in answer["message"]


def test_the_fc_sweep_fans_out_one_async_sweep_per_target_beyond_the_threshold(
    cloud, deployed, monkeypatch, mocker
):
    context, keys = deployed
    monkeypatch.setattr(fc_targets, "INLINE_TARGETS_MAX", 1)
    sent = []

    def fake_invoke(client, function, role, event, *, asynchronous):  # the FC edge
        sent.append((role, json.loads(event["payload"]), asynchronous))
        return {"request_id": f"req-{len(sent)}"}

    mocker.patch("byok_keeper.core.dispatch.invoke", fake_invoke)
    monkeypatch.setenv("BYOK_FC_ENDPOINT", f"http://{cloud.endpoint}")
    with capture_logs() as logs:
        answer = fc.handle_sweep((EVENTS / "timer.json").read_bytes(), context)
    assert answer["ok"] and answer["dispatch"] == "per-target"
    assert [(r, p["target"], a) for r, p, a in sent] == [
        ("sweep", "hz", True),
        ("sweep", "fra", True),
    ]
    # The parent's own line per target ("dispatched"): should an invocation die before it logs,
    # its target is still a group of the SLS rule, with no ok run, and it fires.
    dispatched = [x for x in logs if x["event"] == "metrics"]
    assert [(x["target"], x["result"]) for x in dispatched] == [
        ("hz", "dispatched"),
        ("fra", "dispatched"),
    ]
    ok_hz = {**dispatched[0], "result": "ok"}  # hz's invocation logged its run, fra's died
    rule = "byok-keeper-no-successful-sweep"
    assert sls_rules.firing_groups(rule, [*dispatched, ok_hz]) == {"hz": False, "fra": True}
    # An invocation that cannot be sent: that target will not run, its error line says so.

    def refuse_fra(client, function, role, event, *, asynchronous):
        if json.loads(event["payload"])["target"] == "fra":
            raise InvokeError("FC refused the invocation")
        return {"request_id": "req"}

    mocker.patch("byok_keeper.core.dispatch.invoke", refuse_fra)
    with capture_logs() as logs:
        answer = fc.handle_sweep((EVENTS / "timer.json").read_bytes(), context)
    assert answer["ok"] is False and answer["targets"]["fra"]["ok"] is False
    lines = [(x["target"], x["result"], x["dispatch"]) for x in logs if x["event"] == "metrics"]
    assert lines == [("hz", "dispatched", "per-target"), ("fra", "error", "per-target")]
    # Each fanned-out invocation sweeps its one target; due keys dispatch with the target.
    _delete_all(cloud, {"fra": keys["fra"]})
    monkeypatch.setenv("BYOK_DISPATCH", "fc-async")
    monkeypatch.setenv("BYOK_INLINE_KEYS", "0")  # the sweep keeps none: every due key is sent
    fc.RUNTIME = fc.Runtime()
    sent.clear()

    def fake_reimport(client, function, role, event, *, asynchronous):
        sent.append((role, event))
        return {"request_id": "r"}

    mocker.patch("byok_keeper.core.dispatch.invoke", fake_reimport)
    one = fc.handle_sweep(json.dumps({"payload": json.dumps({"target": "fra"})}).encode(), context)
    assert one["ok"] and list(one["targets"]) == ["fra"]
    assert [(r, e["key_ids"], e["target"]) for r, e in sent] == [("reimport", [keys["fra"]], "fra")]


def test_assumed_role_credentials_are_renewed_before_they_end(cloud):
    from byok_keeper.gateway.kms import static_credential
    from byok_keeper.gateway.sts import REFRESH_MARGIN, AssumedRoleProvider, AssumeRoleFailed

    now = [1000.0]
    provider = AssumedRoleProvider(
        role_arn=f"acs:ram::{B}:role/byok-keeper",
        session_name="byok-keeper-fra",
        region=R2,
        endpoint=f"http://{cloud.sts_endpoint}",
        base_credential=static_credential("local", "local-secret"),
        clock=lambda: now[0],
    )
    first = provider.get_credentials()
    assert provider.assumed == 1 and first.get_security_token()
    assert provider.get_credentials() is first  # cached while fresh
    now[0] += 3600 - REFRESH_MARGIN - 1
    assert provider.get_credentials() is first
    now[0] += 2  # inside the margin: renewed before the end
    second = provider.get_credentials()
    assert provider.assumed == 2 and second.get_access_key_id() != first.get_access_key_id()
    shown = repr(provider)
    assert first.get_security_token() not in shown
    assert first.get_access_key_secret() not in shown

    nobody = AssumedRoleProvider(
        role_arn=f"acs:ram::{B}:role/not-there",
        session_name="byok-keeper-x",
        region=R2,
        endpoint=f"http://{cloud.sts_endpoint}",
        base_credential=static_credential("local", "local-secret"),
    )
    with pytest.raises(
        AssumeRoleFailed, match="cannot assume acs:ram::2222222222222222:role/not-there"
    ):
        nobody.get_credentials()


def test_audit_events_name_their_target(cloud, world, tmp_path):
    path, keys = world
    _delete_all(cloud, {"fra": keys["fra"]})
    audit = tmp_path / "audit.jsonl"
    settings = load_settings({"audit_file": str(audit)}, env={}, config_path=str(path))
    fra = load_targets(str(path), env={})[1]
    from byok_keeper.core.fleet_sweep import TargetDepsCache, sweep_all

    result, runs = sweep_all(TargetDepsCache(settings), [fra], trigger="test", actor="t")
    assert runs[0].ok and result.summary()["restored"] == 1
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert lines and all(line["target"] == "fra" for line in lines)


def test_a_twin_target_of_the_same_account_and_region_is_refused_before_anything_runs(
    cloud, world, tmp_path, capsys
):
    """Two targets of one account and region would each get a full budget and sweep every key
    twice (issue 25): the settings are refused, exit 2, one line."""
    from byok_keeper.runtimes.cli import main

    path, keys = world
    text = path.read_text()
    twin = text[text.index("[[targets]]") : text.index('[[targets]]\nname = "fra"')]
    doubled = tmp_path / "twins.toml"
    doubled.write_text(text + twin.replace('name = "hz"', 'name = "hz-twin"'))
    calls = len(cloud.calls())
    code = main(["--config", str(doubled), "status", keys["hz"]])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "targets 'hz' and 'hz-twin' are the same account" in err
    assert len(cloud.calls()) == calls  # refused before any request


def test_fc_reads_a_relative_byok_config_from_its_code_package_not_the_cwd(tmp_path, monkeypatch):
    """deploy.py sets BYOK_CONFIG=byok-keeper.toml beside byok_keeper/ in the package; FC does
    not document the handler's working directory, so the handlers resolve it against the
    package. A copy of the package runs with another working directory (holding a broken file
    of the same name, never read); the CLI's rule is unchanged: relative to its directory."""
    code = tmp_path / "code"
    shutil.copytree(Path(fc.__file__).parents[1], code / "byok_keeper",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    (code / "byok-keeper.toml").write_text(
        f'[[targets]]\nname = "hz"\nregion = "{R1}"\naccount_id = "{A}"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "byok-keeper.toml").write_text("not = [toml")
    probe = (
        "import os, sys; sys.path.insert(0, sys.argv[1]); from byok_keeper.runtimes import fc; "
        "fc.anchor_config(); from byok_keeper.runtimes.fc_targets import configured_targets; "
        "print(fc.__file__); print(os.environ['BYOK_CONFIG']); "
        "print(*[t.name for t in configured_targets()])"
    )
    env = {**os.environ, "BYOK_CONFIG": "byok-keeper.toml"}
    out = subprocess.run([sys.executable, "-c", probe, str(code)], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    module, config, names = out.stdout.splitlines()
    assert (
        Path(module).resolve() == (code / "byok_keeper" / "runtimes" / "fc.py").resolve()
    )  # the copy ran
    assert Path(config) == (code / "byok-keeper.toml").resolve() and names == "hz"

    absolute = {"BYOK_CONFIG": str(elsewhere / "byok-keeper.toml")}
    fc.anchor_config(absolute)
    assert absolute == {"BYOK_CONFIG": str(elsewhere / "byok-keeper.toml")}  # left alone
    from byok_keeper.domain.errors import ConfigError

    monkeypatch.chdir(elsewhere)  # the CLI and daemon: relative to the current directory
    with pytest.raises(ConfigError, match="byok-keeper.toml is not valid TOML"):
        load_targets(env={"BYOK_CONFIG": "byok-keeper.toml"})  # the cwd's (broken) file


def test_target_metrics_keep_a_failing_targets_last_picture_and_leave_the_others(cloud, world):
    """The daemon's per-target metrics after a real sweep of both targets, then fra failing
    alone, then the whole sweep failing: each target's series move on their own."""
    from datetime import datetime, timedelta, timezone

    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from byok_keeper.core.fleet_sweep import TargetDepsCache, sweep_all
    from byok_keeper.core.multi import TargetRun
    from byok_keeper.operations.target_metrics import TargetsMetrics

    def scrape() -> dict[str, dict[tuple, float]]:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(metrics)
        out: dict[str, dict[tuple, float]] = {}
        for family in text_string_to_metric_families(generate_latest(registry).decode()):
            for s in family.samples:
                labels = s.labels
                key = (labels["target"], labels.get("decision") or labels.get("result", ""))
                out.setdefault(s.name, {})[key] = s.value
        return out

    path, keys = world
    _delete_all(cloud, {"fra": keys["fra"]})
    settings = load_settings({}, env={}, config_path=str(path))
    targets = load_targets(str(path), env={})
    cache = TargetDepsCache(settings)
    metrics = TargetsMetrics(targets)
    # Nothing observed yet: only each target's build_info and its counters at 0, no figures.
    before = scrape()
    assert set(before) == {"byok_keeper_build_info", "byok_keeper_reestablish_total"}
    assert set(before["byok_keeper_reestablish_total"].values()) == {0.0}

    def gateway_of(target):
        deps = cache.peek(target)
        return None if deps is None else deps.gateway

    t0 = datetime.now(timezone.utc)
    _result, runs = sweep_all(cache, targets, trigger="test", actor="t")
    metrics.observe_runs(runs, gateway_of=gateway_of, failed_at=t0)
    first = scrape()
    assert first["byok_keeper_keys"][("fra", "REIMPORT")] == 1
    assert first["byok_keeper_keys"][("hz", "OK")] == 1

    t1 = t0 + timedelta(minutes=15)
    metrics.observe_runs([TargetRun(targets[1], error="cannot assume")], gateway_of=gateway_of,
                         failed_at=t1)  # fmt: skip
    second = scrape()
    assert second["byok_keeper_last_sweep_timestamp_seconds"][("fra", "error")] == t1.timestamp()
    assert ("hz", "error") not in second["byok_keeper_last_sweep_timestamp_seconds"]
    assert second["byok_keeper_keys"] == first["byok_keeper_keys"]  # the last known picture

    t1b = t1 + timedelta(minutes=5)  # a renewal job of hz alone failed as a whole
    metrics.observe_error(t1b, only=["hz"])
    errors = scrape()["byok_keeper_last_sweep_timestamp_seconds"]
    assert (errors[("hz", "error")], errors[("fra", "error")]) == (t1b.timestamp(), t1.timestamp())

    t2 = t1 + timedelta(minutes=15)
    metrics.observe_error(t2)
    last = scrape()["byok_keeper_last_sweep_timestamp_seconds"]
    assert last[("hz", "error")] == last[("fra", "error")] == t2.timestamp()
    assert last[("hz", "ok")] == first["byok_keeper_last_sweep_timestamp_seconds"][("hz", "ok")]

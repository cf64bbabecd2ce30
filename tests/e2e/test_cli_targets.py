"""Targets from the command line (issue 16), as users run it: two accounts in two regions of
aliyun-local, the second reached through STS AssumeRole with the first account's keys."""

from __future__ import annotations

import json
import time

import pytest
from alibabacloud_kms20160120 import models as km
from alibabacloud_kms20160120.client import Client as KmsClient
from alibabacloud_tea_openapi.models import Config
from prometheus_client.parser import text_string_to_metric_families

from aliyun_local.server import LocalServer
from byok_keeper.operations.metrics import METRIC_NAMES
from tests.e2e.conftest import cli_env_for, daemon_metrics, enroll_args, run_cli

A, B = "1111111111111111", "2222222222222222"
R1, R2 = "cn-hangzhou", "eu-central-1"


@pytest.fixture(scope="module")
def cloud():
    with LocalServer(accounts=[A, B], regions=[R1, R2]) as server:
        yield server


def config_text(cloud: LocalServer, *, broken: bool = False) -> str:
    hz, fra = cloud.kms_endpoints[R1], cloud.kms_endpoints[R2]
    text = f"""
[[targets]]
name = "hz"
region = "{R1}"
account_id = "{A}"
kms_endpoint = "http://{hz}"

[[targets]]
name = "fra"
region = "{R2}"
account_id = "{B}"
role_arn = "acs:ram::{B}:role/byok-keeper"
kms_endpoint = "http://{fra}"
sts_endpoint = "http://{cloud.sts_endpoint}"
"""
    if broken:  # a role nobody may assume: this target fails, the others run (in B's R1:
        # one account and region is one target)
        text += f"""
[[targets]]
name = "nope"
region = "{R1}"
account_id = "{B}"
role_arn = "acs:ram::{B}:role/not-there"
kms_endpoint = "http://{hz}"
sts_endpoint = "http://{cloud.sts_endpoint}"
"""
    return text


@pytest.fixture
def env(cloud, tmp_path):
    cloud.reset()
    env = cli_env_for(cloud.endpoint, tmp_path)
    env.pop("BYOK_KMS_ENDPOINT")  # each target names its own
    (tmp_path / "byok.toml").write_text(config_text(cloud))
    (tmp_path / "broken.toml").write_text(config_text(cloud, broken=True))
    env["BYOK_CONFIG"] = str(tmp_path / "byok.toml")
    return env


def cli_json(*args: str, env: dict, code: int = 0) -> dict:
    out = run_cli(*args, "--output", "json", env=env)
    assert out.returncode == code, out.stderr
    return json.loads(out.stdout)


def enroll_in(target: str, env: dict) -> str:
    doc = cli_json(*enroll_args(), "--generate", "--target", target, env=env)
    return doc["key_id"]


def as_b(cloud: LocalServer) -> KmsClient:
    key_id, secret = cloud.access_key(B)
    return KmsClient(
        Config(access_key_id=key_id, access_key_secret=secret, protocol="http",
               endpoint=cloud.kms_endpoints[R2], region_id=R2)
    )  # fmt: skip


def test_plan_sweep_and_narrowing_across_two_accounts_and_regions(cloud, env):
    hz_key = enroll_in("hz", env)
    fra_key = enroll_in("fra", env)
    view = cloud.key_view(fra_key)
    assert (view["account_id"], view["region"]) == (B, R2)
    assert (cloud.key_view(hz_key)["account_id"], cloud.key_view(hz_key)["region"]) == (A, R1)

    plan = cli_json("plan", env=env)
    assert {(d["target"], d["key_id"], d["decision"]) for d in plan["decisions"]} == {
        ("hz", hz_key, "OK"),
        ("fra", fra_key, "OK"),
    }
    assert [t["target"] for t in plan["targets"]] == ["hz", "fra"]
    assert all(t["ok"] for t in plan["targets"])

    as_b(cloud).delete_key_material(km.DeleteKeyMaterialRequest(key_id=fra_key))
    plan = cli_json("plan", "--target", "fra", env=env, code=3)
    assert [(d["target"], d["decision"]) for d in plan["decisions"]] == [("fra", "REIMPORT")]

    sweep = cli_json("sweep", env=env)
    restored = [(o["target"], o["key_id"], o["outcome"]) for o in sweep["outcomes"]]
    assert ("fra", fra_key, "restored") in restored
    assert sweep["summary"]["restored"] == 1
    assert set(sweep["calls"]) == {"hz", "fra"}
    assert cloud.key_view(fra_key)["state"] == "Enabled"

    table = run_cli("plan", env=env)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:2] == ["TARGET", "KEY"]

    verify = cli_json("verify", env=env)
    assert {(r["target"], r["result"]) for r in verify["results"]} == {
        ("hz", "verified"),
        ("fra", "verified"),
    }


def test_key_commands_find_the_one_target_or_ask(cloud, env, tmp_path):
    fra_key = enroll_in("fra", env)
    status = cli_json("status", fra_key, env=env)  # found in exactly one target
    assert status["kms"]["key_id"] == fra_key
    assert status["target"] == "fra"  # outputs name the target the key was found in
    cli_json("hold", fra_key, "--reason", "INC-1 drill", env=env)
    assert cli_json("status", fra_key, "--target", "fra", env=env)["decision"] == "HOLD"
    cli_json("release", fra_key, env=env)

    missing = run_cli("status", "key-00000000-0000-0000-0000-000000000000", env=env)
    assert missing.returncode == 2
    assert "in none of the targets hz, fra" in missing.stderr
    assert missing.stderr.count("\n") == 1

    wrong = cli_json("status", fra_key, "--target", "hz", env=env)
    assert not wrong["kms"]  # --target is taken at its word: the key is not in hz

    page = cli_json("report", "--html", str(tmp_path / "fra.html"), "--target", "fra", env=env)
    assert page["target"] == "fra" and page["keys"] == 1

    create = run_cli(*enroll_args(), "--generate", env=env)
    assert create.returncode == 2
    assert "choose with --target (hz, fra)" in create.stderr


def test_a_target_whose_role_cannot_be_assumed_is_reported_and_the_others_run(cloud, env):
    hz_key = enroll_in("hz", env)
    fra_key = enroll_in("fra", env)
    env = {**env, "BYOK_CONFIG": env["BYOK_CONFIG"].replace("byok.toml", "broken.toml")}

    sweep = cli_json("sweep", env=env, code=1)
    status = {t["target"]: t for t in sweep["targets"]}
    assert status["hz"]["ok"] and status["fra"]["ok"]
    assert not status["nope"]["ok"]
    assert "cannot assume acs:ram::2222222222222222:role/not-there" in status["nope"]["error"]
    assert {d["key_id"] for d in sweep["decisions"]} == {hz_key, fra_key}

    plan = run_cli("plan", env=env)
    assert plan.returncode == 1
    rows = [line.split()[:3] for line in plan.stdout.splitlines()]
    assert ["nope", "(target)", "ERROR"] in rows

    ok = run_cli("plan", "--target", "hz", "--target", "fra", env=env)
    assert ok.returncode == 0, ok.stderr


def test_a_role_refused_twice_while_applying_stops_only_that_targets_keys(cloud, env):
    """fra's assumed-role credentials refused as expired on its first GetParametersForImport,
    and again once the role is assumed anew (aliyun-local's fail_next for account B only): the
    sweep fails that key, attempts no other fra key (each ``skipped``, "not attempted", with
    the one reason and code, in the JSON), restores hz's key, and exits 1."""
    hz_key = enroll_in("hz", env)
    fra_keys = [enroll_in("fra", env) for _ in range(3)]
    cloud.emulator.tenancy.find(hz_key).delete_key_material(hz_key)
    for key_id in fra_keys:
        as_b(cloud).delete_key_material(km.DeleteKeyMaterialRequest(key_id=key_id))
    cloud.emulator.calls.clear()
    expired = "InvalidSecurityToken.Expired"
    cloud.set_faults(fail_next={f"GetParametersForImport@{B}": [expired] * 6})
    out = run_cli("sweep", "--concurrency", "1", "--output", "json", env=env)
    assert out.returncode == 1, out.stderr
    sweep = json.loads(out.stdout)
    status = {t["target"]: t for t in sweep["targets"]}
    assert status["hz"]["ok"] and status["hz"]["error"] is None
    assert not status["fra"]["ok"] and expired in status["fra"]["error"]  # ran, then stopped
    fra = {o["key_id"]: o for o in sweep["outcomes"] if o["target"] == "fra"}
    assert set(fra) == set(fra_keys)
    (failed,) = [o for o in fra.values() if o["outcome"] == "failed"]
    assert failed["error_code"] == "AssumedRoleExpired" and expired in failed["reason"]
    skipped = [o for o in fra.values() if o["outcome"] == "skipped"]
    assert len(skipped) == 2
    assert {(o["error_code"], o["reason"]) for o in skipped} == {
        ("AssumedRoleExpired", "not attempted: " + failed["reason"])
    }
    hz = [o for o in sweep["outcomes"] if o["target"] == "hz"]
    assert [(o["key_id"], o["outcome"]) for o in hz] == [(hz_key, "restored")]
    assert sweep["summary"] == {"failed": 1, "skipped": 2, "restored": 1}
    # One AssumeRole to start the target, one after the first refusal; no fra import.
    calls = cloud.calls()
    assert sum(1 for c in calls if c["action"] == "AssumeRole") == 2
    assert not [c for c in calls if c["action"] == "ImportKeyMaterial" and c["account_id"] == B]
    lost = [line for line in out.stderr.splitlines() if "kms_access_lost" in line]
    assert len(lost) == 1 and "fra" in lost[0]
    assert {cloud.key_view(k)["state"] for k in fra_keys} == {"PendingImport"}


def test_daemon_once_covers_every_target(cloud, env, tmp_path):
    hz_key = enroll_in("hz", env)
    fra_key = enroll_in("fra", env)
    as_b(cloud).delete_key_material(km.DeleteKeyMaterialRequest(key_id=fra_key))
    state = tmp_path / "state"
    out = run_cli("daemon", "--once", "--state-dir", str(state), env=env)
    assert out.returncode == 0, out.stderr
    health = json.loads((state / "health.json").read_text())
    assert health["outcome"] == "ok" and health["summary"] == {"ok": 1, "restored": 1}
    assert [(t["target"], t["ok"]) for t in health["targets"]] == [("hz", True), ("fra", True)]
    assert cloud.key_view(fra_key)["state"] == "Enabled"
    assert cloud.key_view(hz_key)["state"] == "Enabled"


def _series(text: str) -> dict[str, dict[tuple, float]]:
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def _where(target: str, **labels: str) -> tuple:
    account, region = {"hz": (A, R1), "fra": (B, R2), "nope": (B, R1)}[target]
    return tuple(sorted({"target": target, "region": region, "account_id": account,
                         **labels}.items()))  # fmt: skip


def test_daemon_metrics_carry_each_targets_labels_and_a_failing_target_shows(cloud, env, tmp_path):
    """/metrics over HTTP after one sweep of hz and fra (and nope, whose role cannot be
    assumed): one series per target with that target's own figures and labels."""
    hz_key = enroll_in("hz", env)
    fra_key = enroll_in("fra", env)
    as_b(cloud).delete_key_material(km.DeleteKeyMaterialRequest(key_id=fra_key))
    env = {**env, "BYOK_CONFIG": env["BYOK_CONFIG"].replace("byok.toml", "broken.toml")}
    # nope is observed last (targets in order): its last-sweep sample means every target's
    # figures are in (its build_info and zero counters are there from the start).
    ready = 'byok_keeper_last_sweep_timestamp_seconds{target="nope"'
    text = daemon_metrics(env, tmp_path / "state", ready=ready)

    for name in METRIC_NAMES:  # one family each, whatever the number of targets
        assert text.count(f"# HELP {name} ") == 1, name
        assert text.count(f"# TYPE {name} ") == 1, name
    got = _series(text)
    keys = got["byok_keeper_keys"]
    assert keys[_where("hz", decision="OK")] == 1 and keys[_where("hz", decision="REIMPORT")] == 0
    assert keys[_where("fra", decision="REIMPORT")] == 1 and keys[_where("fra", decision="OK")] == 0
    assert not any(dict(k)["target"] == "nope" for k in keys)  # never swept: no picture
    expiry = got["byok_keeper_material_expiry_timestamp_seconds"]
    assert set(expiry) == {
        _where("hz", key_id=hz_key, key_spec="EC_P256"),
        _where("fra", key_id=fra_key, key_spec="EC_P256"),
    }
    assert expiry[_where("fra", key_id=fra_key, key_spec="EC_P256")] == pytest.approx(
        time.time() + 30 * 86400, abs=300
    )
    reestablish = got["byok_keeper_reestablish_total"]
    assert {k: v for k, v in reestablish.items() if v} == {_where("fra", outcome="restored"): 1.0}
    for name in ("hz", "fra", "nope"):  # every outcome a series from the start, at 0
        assert reestablish[_where(name, outcome="failed")] == 0
    last = got["byok_keeper_last_sweep_timestamp_seconds"]
    assert set(last) == {
        _where("hz", result="ok"),
        _where("fra", result="ok"),
        _where("nope", result="error"),
    }
    assert all(abs(when - time.time()) < 120 for when in last.values())
    lapse = got["byok_keeper_seconds_until_first_lapse"]
    assert lapse == {_where("hz"): float("inf"), _where("fra"): float("inf")}
    requests = got["byok_keeper_kms_requests_total"]
    imports = {dict(k)["target"]: v for k, v in requests.items()
               if ("action", "ImportKeyMaterial") in k and v}  # fmt: skip
    assert imports == {"fra": 1.0}  # each target's own gateway: the import was fra's alone
    assert requests[_where("hz", action="DescribeKey", code="OK")] >= 1


def test_a_metrics_file_that_cannot_be_written_never_stops_a_targets_run(cloud, env, tmp_path):
    """With [[targets]] as without: plan and sweep do their work, then say in one line that
    the metrics file was not written, and exit 1."""
    fra_key = enroll_in("fra", env)
    as_b(cloud).delete_key_material(km.DeleteKeyMaterialRequest(key_id=fra_key))
    missing = ("--metrics-file", str(tmp_path / "missing" / "byok-keeper.prom"))
    plan = cli_json("plan", *missing, env=env, code=1)
    assert [(d["target"], d["decision"]) for d in plan["decisions"]] == [("fra", "REIMPORT")]
    out = run_cli("sweep", *missing, "--output", "json", env=env)
    assert out.returncode == 1, out.stderr
    assert out.stderr.count("metrics_file_unwritten") == 1, out.stderr
    assert ("fra", fra_key, "restored") in [
        (o["target"], o["key_id"], o["outcome"]) for o in json.loads(out.stdout)["outcomes"]
    ]
    assert cloud.key_view(fra_key)["state"] == "Enabled"

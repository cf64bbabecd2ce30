"""The on-call commands as an engineer runs them: plan, sweep, reimport, verify, status, hold."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import importable_spec
from tests.e2e.conftest import enroll_cli, run_cli

# Agent tests: run against each aliyun-local profile (docs/FIDELITY.md).
pytestmark = pytest.mark.every_profile


def _decisions(env):
    out = run_cli("plan", "--output", "json", env=env)
    return out.returncode, {d["key_id"]: d for d in json.loads(out.stdout)["decisions"]}


def test_plan_shows_each_decision_and_exits_3_when_work_is_pending(cli_env, served):
    ok = enroll_cli(cli_env)["key_id"]
    code, decisions = _decisions(cli_env)
    assert code == 0 and decisions[ok]["decision"] == "OK"
    gone = enroll_cli(cli_env)["key_id"]
    renew = enroll_cli(cli_env, lease="14d")["key_id"]
    held = enroll_cli(cli_env)["key_id"]
    doomed = enroll_cli(cli_env)["key_id"]
    served.emulator.kms.delete_key_material(gone)
    served.emulator.kms.tag_key(held, {"byok-keeper:hold": "INC-9"})
    served.emulator.kms.schedule_deletion(doomed, 30)
    served.advance_clock(8 * 86400)
    code, decisions = _decisions(cli_env)
    assert code == 3  # work pending (2 stays usage errors, 1 failures)
    got = {k: decisions[k]["decision"] for k in (ok, gone, renew, held, doomed)}
    assert got == {ok: "OK", gone: "REIMPORT", renew: "RENEW", held: "HOLD", doomed: "SKIP"}
    assert set(decisions[gone]) >= {
        "key_id",
        "decision",
        "reason",
        "key_state",
        "material_expire_time",
    }
    table = run_cli("plan", env=cli_env)
    assert "REIMPORT" in table.stdout and "DECISION" in table.stdout


def test_sweep_restores_and_a_second_sweep_has_nothing_to_do(cli_env, served):
    key = enroll_cli(cli_env)
    served.emulator.kms.delete_key_material(key["key_id"])
    dry = run_cli("sweep", "--dry-run", "--output", "json", env=cli_env)
    assert dry.returncode == 0 and json.loads(dry.stdout)["summary"] == {"dry-run": 1}
    out = run_cli("sweep", "--output", "json", env=cli_env)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["summary"] == {"restored": 1}
    assert served.key_view(key["key_id"])["material_fingerprint"] == key["fingerprint"]
    again = run_cli("sweep", "--output", "json", env=cli_env)
    assert json.loads(again.stdout)["summary"] == {"ok": 1}
    assert run_cli("plan", env=cli_env).returncode == 0


def test_sweep_exits_1_when_a_key_fails(cli_env, served):
    key = enroll_cli(cli_env)
    served.emulator.kms.delete_key_material(key["key_id"])
    served.set_faults(fail_next={"ImportKeyMaterial": ["InvalidKeyMaterial"]})
    out = run_cli("sweep", "--output", "json", env=cli_env)
    assert out.returncode == 1
    (outcome,) = json.loads(out.stdout)["outcomes"]
    assert outcome["outcome"] == "failed" and outcome["alert"]


def test_reimport_prints_steps_and_respects_holds(cli_env, served, tmp_path):
    key = enroll_cli(cli_env)["key_id"]
    served.emulator.kms.delete_key_material(key)
    audit = tmp_path / "audit.jsonl"
    env = {**cli_env, "BYOK_AUDIT_FILE": str(audit)}
    hold = run_cli("hold", key, "--reason", "INC-1: kill switch", env=env)
    assert hold.returncode == 0
    refused = run_cli("reimport", key, "--reason", "test", env=env)
    assert refused.returncode == 1 and "held" in refused.stdout
    dry = run_cli("reimport", key, "--reason", "test", "--override-hold", "--dry-run", env=env)
    assert dry.returncode == 0 and "would import" in dry.stdout
    assert served.key_view(key)["state"] == "PendingImport"
    done = run_cli("reimport", key, "--reason", "INC-1 resolved", "--override-hold", env=env)
    assert done.returncode == 0, done.stderr
    for step in ("describe", "unseal", "hold", "import", "verify"):
        assert f"[reimport] {step}:" in done.stderr
    assert served.key_view(key)["state"] == "Enabled"
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    # held, the dry run, then the import's intent and its outcome
    assert [e["event"] for e in events] == ["hold", "key", "key", "importing", "key"]
    assert events[-1]["requested_reason"] == "INC-1 resolved" and events[-1]["override_hold"]
    assert run_cli("release", key, env=env).returncode == 0
    status = json.loads(run_cli("status", key, "--output", "json", env=env).stdout)
    assert "byok-keeper:hold" not in status["tags"]
    assert status["envelope"]["fingerprint"] and status["decision"] == "OK"


def test_verify_and_status(cli_env, served):
    spec = importable_spec(served, "EC_SM2")  # EC_P256K where hardware refuses imports
    key = enroll_cli(cli_env, spec)["key_id"]
    out = run_cli("verify", "--output", "json", env=cli_env)
    assert out.returncode == 0, out.stderr
    (result,) = json.loads(out.stdout)["results"]
    algorithm = {"EC_SM2": "SM2DSA", "EC_P256K": "ECDSA_SHA_256"}[spec]
    assert result["result"] == "verified" and algorithm in result["detail"]
    status = run_cli("status", key, env=cli_env)
    assert status.returncode == 0 and "envelope.fingerprint" in status.stdout
    # KMS showing another public key: verify says so and exits 4 (a key needs a person).
    served.set_faults(lies={key: {"public_key": "other"}})
    try:
        bad = run_cli("verify", key, "--output", "json", env=cli_env)
    finally:
        served.set_faults()
    assert bad.returncode == 4, bad.stderr
    (result,) = json.loads(bad.stdout)["results"]
    assert result["result"] == "mismatch" and result["key_state"] == "Enabled"


@pytest.mark.slow
def test_demo_passes(kms_profile):
    if kms_profile != "default":
        pytest.skip("the demo runs its own emulator, with the default profile")
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    out = run_cli("demo", env=env, timeout=180)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "a second sweep had nothing to do" in out.stdout


THROTTLING_400 = ("Throttling.User", "Throttling", "Throttling.Api")
EVERY_CALL = ("DescribeKey", "CreateKey", "GetKmsInstance", "ListKeyVersions", "GetPublicKey",
              "GetParametersForImport", "ImportKeyMaterial", "ListResourceTags", "TagResource",
              "UntagResource", "AsymmetricSign", "ListKeys")  # fmt: skip


def test_enroll_sweep_verify_reimport_and_hold_survive_throttling_on_every_call(cli_env, served):
    """Against a KMS that omits PrimaryKeyVersion, enforces the tag rules and throttles each
    call once with HTTP 400 and no retry hint, every command still succeeds."""

    def throttle_every_call_once():
        served.set_faults(fail_next={
            a: THROTTLING_400[i % len(THROTTLING_400)] for i, a in enumerate(EVERY_CALL)
        })  # fmt: skip

    throttle_every_call_once()
    key = enroll_cli(cli_env, "EC_P256", lease="1h")["key_id"]
    served.emulator.kms.delete_key_material(key)
    for args in (
        ("sweep",),
        ("verify", key),
        ("reimport", key, "--reason", "INC-1"),
        ("hold", key, "--reason", "INC-2 kill switch"),
        ("release", key),
    ):
        if args[0] == "reimport":
            served.emulator.kms.delete_key_material(key)
        throttle_every_call_once()
        out = run_cli(*args, "--output", "json", env=cli_env)
        assert out.returncode == 0, (args, out.stderr[-1500:])
    throttled = [c for c in served.calls() if (c["code"] or "").startswith("Throttling")]
    assert {c["status"] for c in throttled} == {400} and len(throttled) >= 15
    assert served.key_view(key)["state"] == "Enabled"
    assert served.key_view(key)["import_count"] == 3  # enroll, sweep, reimport: no more


def test_hold_reason_that_breaks_the_tag_rule_is_refused_before_any_call(cli_env, served):
    served.emulator.calls.clear()
    out = run_cli("hold", "key-abc", "--reason", "INC-1, compromised", env=cli_env)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "tag rule" in out.stderr and "@" in out.stderr
    assert served.calls() == []

"""``byok-keeper vault retire`` and ``vault restore`` as an operator runs them: a key deleted on
purpose stops being an ALERT, and plan, sweep, verify, report and the metrics leave it out."""

from __future__ import annotations

import json

from tests.e2e.conftest import enroll_cli, run_cli


def test_a_retired_key_leaves_every_fleet_view_until_it_is_restored(cli_env, served, tmp_path):
    audit = tmp_path / "audit.jsonl"
    env = {**cli_env, "BYOK_AUDIT_FILE": str(audit)}
    kept = enroll_cli(env)["key_id"]
    gone = enroll_cli(env)["key_id"]
    unwanted = enroll_cli(env)["key_id"]  # still in KMS: --scan-account must not report it
    served.emulator.kms.schedule_deletion(gone, 7)  # deleted on purpose: purged a week later
    served.advance_clock(8 * 86400)
    assert run_cli("plan", env=env).returncode == 4  # an enrolled key gone: needs a person
    for key in (gone, unwanted):
        out = run_cli("vault", "retire", key, "--reason", "CHG-42: decommissioned", env=env)
        assert out.returncode == 0 and f"vault restore {key}" in out.stdout, out.stderr

    plan = run_cli("plan", "--scan-account", "-o", "json", env=env)
    assert plan.returncode == 0, plan.stdout[-1500:]
    assert [d["key_id"] for d in json.loads(plan.stdout)["decisions"]] == [kept]
    metrics = tmp_path / "sweep.prom"
    sweep = run_cli("sweep", "--metrics-file", str(metrics), "-o", "json", env=env)
    assert sweep.returncode == 0 and [
        o["key_id"] for o in json.loads(sweep.stdout)["outcomes"]
    ] == [kept]
    text = metrics.read_text()
    assert 'byok_keeper_keys{decision="ALERT"} 0.0' in text
    assert gone not in text and unwanted not in text
    verify = json.loads(run_cli("verify", "-o", "json", env=env).stdout)
    assert [r["key_id"] for r in verify["results"]] == [kept]
    page = tmp_path / "fleet.html"
    assert run_cli("report", "--html", str(page), env=env).returncode == 0
    assert kept in page.read_text() and gone not in page.read_text()

    retired = [json.loads(x) for x in audit.read_text().splitlines()
               if json.loads(x)["event"] == "retire"]  # fmt: skip
    assert [(e["key_id"], e["reason"]) for e in retired] == [
        (gone, "CHG-42: decommissioned"), (unwanted, "CHG-42: decommissioned")]  # fmt: skip
    assert run_cli("vault", "restore", unwanted, env=env).returncode == 0
    plan = json.loads(run_cli("plan", "-o", "json", env=env).stdout)
    assert sorted(d["key_id"] for d in plan["decisions"]) == sorted([kept, unwanted])


def test_retiring_without_a_usable_reason_or_an_envelope_is_one_line_and_exit_2(cli_env):
    key = enroll_cli(cli_env)["key_id"]
    for args in (
        ("vault", "retire", key, "--reason", " "),
        ("vault", "retire", "key-hzz0000000000000000000", "--reason", "x"),
        ("vault", "retire", key),
    ):
        out = run_cli(*args, env=cli_env)
        assert out.returncode == 2 and out.stderr.count("\n") == 1, (args, out.stderr)
    assert run_cli("plan", "-o", "json", env=cli_env).returncode == 0  # nothing moved

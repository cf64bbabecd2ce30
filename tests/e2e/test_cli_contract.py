"""The CLI contract people script against: exit codes, -o, --profile, no silent region, and a
terminal that shows output, not log lines."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess

import pytest

from byok_keeper.runtimes.cli import cli, main
from tests.e2e.conftest import BIN, enroll_cli, run_cli


def _pending(served, key_id):
    served.emulator.kms.delete_key_material(key_id)


def test_plan_exit_codes_0_nothing_3_pending_1_unreadable(cli_env, served):
    key = enroll_cli(cli_env)["key_id"]
    assert run_cli("plan", "-o", "json", env=cli_env).returncode == 0
    _pending(served, key)
    out = run_cli("plan", "-o", "json", env=cli_env)
    assert out.returncode == 3 and json.loads(out.stdout)["decisions"][0]["decision"] == "REIMPORT"
    served.set_faults(fail_next={"DescribeKey": ["Forbidden.NoPermission"]})
    out = run_cli("plan", "-o", "json", env=cli_env)
    assert out.returncode == 1 and json.loads(out.stdout)["errors"][0]["key_id"] == key


def test_an_unexpected_error_is_one_line_and_exit_1(capsys):
    @cli.command("explode")
    def explode():  # pragma: no cover - run through main below
        raise RuntimeError("http://kms/?EncryptedKeyMaterial=c2VjcmV0")

    try:
        assert main(["explode"]) == 1
        _out, err = capsys.readouterr()
        assert err.count("\n") == 1 and "unexpected RuntimeError" in err
        assert "EncryptedKeyMaterial" not in err  # the message may carry a URL: never shown
        assert main(["--debug", "explode"]) == 1
        assert "Traceback" in capsys.readouterr().err
    finally:
        cli.commands.pop("explode")


def test_a_profile_gives_credentials_and_region(cli_env, served, tmp_path):
    key = enroll_cli(cli_env)["key_id"]
    home = tmp_path / "home"
    (home / ".aliyun").mkdir(parents=True)
    (home / ".aliyun" / "config.json").write_text(json.dumps({
        "current": "default",
        "profiles": [{"name": "local", "mode": "AK", "access_key_id": served.access_key_id,
                      "access_key_secret": served.access_key_secret, "region_id": "cn-hangzhou"}],
    }))  # fmt: skip
    env = {k: v for k, v in cli_env.items() if not k.startswith("ALIBABA_CLOUD_")}
    env["HOME"] = str(home)
    served.emulator.calls.clear()
    out = run_cli("--profile", "local", "plan", "-o", "json", env=env)
    assert out.returncode == 0, out.stderr
    # The profile's access key signed the calls, and KMS took them.
    assert next((c["action"], c["status"]) for c in served.calls() if c["key_id"] == key) == (
        "DescribeKey",
        200,
    )
    missing = run_cli("--profile", "nobody", "plan", env=env)
    assert missing.returncode == 2 and "no such profile" in missing.stderr


def test_no_region_anywhere_is_exit_2_naming_the_settings(cli_env):
    env = {k: v for k, v in cli_env.items() if k != "ALIBABA_CLOUD_REGION_ID"}
    out = run_cli("plan", env=env)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "--region, ALIBABA_CLOUD_REGION_ID" in out.stderr


def _on_a_terminal(*args: str, env: dict) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal (stdout a pipe); (code, stdout, stderr)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(BIN / "byok-keeper"), *args], stdout=subprocess.PIPE,
                            stderr=slave, env=env)  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            proc.kill()
            pytest.fail("the CLI did not finish in 60 s")
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its side
            break
        if not data:
            break
        chunks.append(data)
    stdout = proc.stdout.read().decode()
    code = proc.wait(timeout=30)
    os.close(master)
    return code, stdout, b"".join(chunks).decode(errors="replace")


def test_on_a_terminal_logs_stay_out_of_the_way_unless_asked(cli_env, served):
    key = enroll_cli(cli_env)["key_id"]
    _pending(served, key)
    code, stdout, stderr = _on_a_terminal("sweep", env=cli_env)
    assert code == 0 and key in stdout
    assert "[info" not in stderr and '"level": "info"' not in stderr
    _pending(served, key)
    code, _stdout, stderr = _on_a_terminal("-v", "sweep", env=cli_env)
    assert code == 0 and "info" in stderr and key in stderr


def test_a_progress_bar_on_a_terminal_for_many_keys(cli_env, served, tmp_path):
    from byok_keeper.core.enroll import enroll
    from byok_keeper.crypto.material import generate_material
    from byok_keeper.domain.lease import parse_lease
    from byok_keeper.gateway.kms import ENROLL
    from byok_keeper.vault import FileStore, LocalKeySealer, Vault
    from tests.functional.conftest import create_request, make_gateway

    vault = Vault(FileStore(tmp_path / "vault"), LocalKeySealer.from_file(tmp_path / "seal.key"))
    gateway = make_gateway(served, ENROLL)
    for _ in range(25):
        enroll(gateway, vault, generate_material("EC_P256"), lease=parse_lease("30d"),
               create=create_request("EC_P256"))  # fmt: skip
    code, _stdout, stderr = _on_a_terminal("plan", env=cli_env)
    assert code == 0 and "describing [" in stderr and "25/25" in stderr
    out = run_cli("plan", env=cli_env)  # off a terminal: no bar
    assert "describing" not in out.stderr


def test_exit_4_when_a_key_needs_a_person_and_the_most_urgent_code_wins(cli_env, served, tmp_path):
    ok = enroll_cli(cli_env)["key_id"]
    gone = enroll_cli(cli_env)["key_id"]
    served.emulator.kms.schedule_deletion(gone, 7)  # deleted on purpose: purged a week later
    served.advance_clock(8 * 86400)
    state = ("--state-dir", str(tmp_path / "state"))
    for args in (("plan",), ("sweep",), ("verify",), ("daemon", "--once", *state)):
        out = run_cli(*args, "-o", "json", env=cli_env) if args[0] != "daemon" else (
            run_cli(*args, env=cli_env))  # fmt: skip
        assert out.returncode == 4, (args, out.stdout[-1500:], out.stderr[-1500:])
    plan = json.loads(run_cli("plan", "-o", "json", env=cli_env).stdout)
    assert {d["key_id"]: d["decision"] for d in plan["decisions"]} == {ok: "OK", gone: "ALERT"}
    (gone_row,) = [r for r in json.loads(run_cli("verify", "-o", "json", env=cli_env).stdout)[
        "results"] if r["key_id"] == gone]  # fmt: skip
    assert gone_row["result"] == "gone"
    _pending(served, ok)  # work pending too: 4 still wins over 3
    assert run_cli("plan", env=cli_env).returncode == 4
    served.set_faults(fail_next={"DescribeKey": ["Forbidden.NoPermission"]})
    assert run_cli("plan", env=cli_env).returncode == 1  # a failure wins over 4
    assert run_cli("plan", "--bogus", env=cli_env).returncode == 2  # usage wins over all


def test_status_of_a_key_neither_kms_nor_the_vault_knows_is_one_line_and_exit_1(cli_env):
    out = run_cli("status", "key-hzz0000000000000000000", env=cli_env)
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "neither in KMS (region cn-hangzhou) nor in the vault file://" in out.stderr


def _home_with(tmp_path, *profiles: dict, current: str) -> str:
    home = tmp_path / "home"
    (home / ".aliyun").mkdir(parents=True)
    doc = {"current": current, "profiles": list(profiles)}
    (home / ".aliyun" / "config.json").write_text(json.dumps(doc))
    return str(home)


def test_credentials_that_cannot_be_had_or_are_refused_are_named_once(cli_env, served, tmp_path):
    for _ in range(3):
        enroll_cli(cli_env)
    # A profile whose role STS cannot be reached: STS and the profile's setting are named, and
    # --debug shows the cause; not "KMS DescribeKey failed: no answer from KMS".
    broken = {"name": "broken", "mode": "RamRoleArn", "access_key_id": served.access_key_id,
              "access_key_secret": served.access_key_secret, "region_id": "cn-hangzhou",
              "ram_role_arn": "acs:ram::1234567890123456:role/byok", "ram_session_name": "t",
              "sts_region": "nowhere-h7"}  # fmt: skip
    env = {**cli_env, "HOME": _home_with(tmp_path, broken, current="broken")}
    out = run_cli("--profile", "broken", "--debug", "plan", env=env)
    assert out.returncode == 2 and "KMS DescribeKey" not in out.stderr, out.stderr[-2000:]
    (line,) = [x for x in out.stderr.splitlines() if x.startswith("byok-keeper: error:")]
    assert "STS (AssumeRole)" in line and "sts_region" in line
    assert "byok-keeper: cause:" in out.stderr and "gaierror" in out.stderr
    assert out.stdout == ""
    # A wrong access key: one line naming the code and the settings, not one row per key.
    env = {**cli_env, "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI-no-such-key"}
    out = run_cli("plan", env=env)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and out.stdout == "", out.stderr
    assert "InvalidAccessKeyId.NotFound" in out.stderr
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" in out.stderr


def test_the_aliyun_cli_current_profile_gives_the_region_too(cli_env, served, tmp_path):
    enroll_cli(cli_env)
    local = {"name": "local", "mode": "AK", "access_key_id": served.access_key_id,
             "access_key_secret": served.access_key_secret, "region_id": "cn-hangzhou"}  # fmt: skip
    env = {k: v for k, v in cli_env.items() if not k.startswith("ALIBABA_CLOUD_")}
    env["HOME"] = _home_with(tmp_path, local, current="local")
    out = run_cli("plan", "-o", "json", env=env)  # no --profile, no region: the current one's
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["decisions"]) == 1

"""The pkcs11 sealer through the CLI, as an operator runs it, on a SoftHSM2 token (issue 28):
make the token key, enroll RSA and EC keys, delete and expire their material, sweep restores the
identical material; wrong, missing and inline PINs refused with nothing imported; the daemon and
break-glass wrap under the token; a file-sealed vault resealed into the token and used with the
key file gone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from alibabacloud_kms20160120 import models as km

from tests.e2e.conftest import enroll_cli, run_cli
from tests.e2e.test_console_and_breakglass import _console_download
from tests.functional.conftest import describe, make_client
from tests.pkcs11 import make_token


@pytest.fixture
def token(tmp_path):
    return make_token(tmp_path / "hsm")


@pytest.fixture
def hsm_env(cli_env, token):
    """The CLI's environment with the token as its only sealer (no key file configured)."""
    env = {k: v for k, v in cli_env.items() if k != "BYOK_SEAL_KEY_FILE"}
    env.update(token.env, BYOK_SEAL_PKCS11=token.uri())
    out = run_cli("seal-key", "new", "--pkcs11", token.uri(), "--output", "json", env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["key_ref"].startswith("pkcs11:token=byok;object=byok-seal;id=")
    return env


def _imports(served) -> int:
    return sum(1 for c in served.calls() if c["action"] == "ImportKeyMaterial")


def _one_line_exit_2(out, *absent: str) -> str:
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    for text in absent:
        assert text not in out.stderr and text not in out.stdout
    return out.stderr


def test_the_token_seals_enrolls_and_sweep_restores_identical_material(hsm_env, served, token):
    again = run_cli("seal-key", "new", "--pkcs11", token.uri(), env=hsm_env)
    assert "already holds an object labelled 'byok-seal'" in _one_line_exit_2(again)
    deleted = enroll_cli(hsm_env, "RSA_2048")
    expired = enroll_cli(hsm_env, "EC_P256", lease="1d")
    vault = Path(hsm_env["BYOK_VAULT"].removeprefix("file://"))
    envelope = json.loads((vault / f"{deleted['key_id']}.json").read_text())
    assert envelope["seal"]["sealer"] == "pkcs11"
    served.emulator.kms.delete_key_material(deleted["key_id"])
    served.advance_clock(2 * 86400)  # the EC key's one-day material lapses
    assert served.key_view(expired["key_id"])["state"] == "PendingImport"
    before = _imports(served)
    wrong = {**hsm_env, "BYOK_SEAL_PKCS11": token.uri(pin_source=False)}
    wrong["BYOK_PKCS11_PIN"] = "wrong-pin-000"
    inline = {
        **hsm_env,
        "BYOK_SEAL_PKCS11": token.uri(pin_source=False) + f"&pin-value={token.pin}",
    }
    no_pin = {**hsm_env, "BYOK_SEAL_PKCS11": token.uri(pin_source=False)}
    assert "CKR_PIN_INCORRECT" in _one_line_exit_2(run_cli("sweep", env=wrong), "wrong-pin-000")
    assert "pin-value is refused" in _one_line_exit_2(run_cli("sweep", env=inline), token.pin)
    assert "needs a PIN" in _one_line_exit_2(run_cli("sweep", env=no_pin))
    gone = {**hsm_env, "BYOK_SEAL_PKCS11": token.uri().replace("token=byok", "token=absent")}
    assert "no token labelled 'absent'" in _one_line_exit_2(run_cli("sweep", env=gone))
    assert _imports(served) == before  # nothing imported by any refused run
    out = run_cli("sweep", "--output", "json", env=hsm_env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["summary"] == {"restored": 2}
    for key in (deleted, expired):
        assert served.key_view(key["key_id"])["material_fingerprint"] == key["fingerprint"]
    verify = run_cli("verify", "--output", "json", env=hsm_env)
    assert verify.returncode == 0, verify.stderr
    assert token.pin not in out.stdout + out.stderr + verify.stdout + verify.stderr


def test_reimport_status_daemon_and_break_glass_wrap_work_under_the_token(
    hsm_env, served, tmp_path
):
    key = enroll_cli(hsm_env, "RSA_2048")
    served.emulator.kms.delete_key_material(key["key_id"])
    out = run_cli("reimport", key["key_id"], "--reason", "INC-28 drill", env=hsm_env)
    assert out.returncode == 0, out.stderr
    assert served.key_view(key["key_id"])["state"] == "Enabled"
    status = run_cli("status", key["key_id"], "--output", "json", env=hsm_env)
    assert status.returncode == 0, status.stderr
    assert key["fingerprint"] in status.stdout
    served.emulator.kms.delete_key_material(key["key_id"])
    state = tmp_path / "state"
    out = run_cli("daemon", "--once", "--state-dir", str(state), env=hsm_env)
    assert out.returncode == 0, out.stderr
    assert served.key_view(key["key_id"])["material_fingerprint"] == key["fingerprint"]
    served.emulator.kms.delete_key_material(key["key_id"])
    der, import_token = _console_download(served, key["key_id"], "RSA_2048")
    public = tmp_path / "publickey.bin"
    public.write_bytes(der)
    output = tmp_path / "EncryptedKeyMaterial_base64.txt"
    offline = {**hsm_env, "BYOK_KMS_ENDPOINT": "http://127.0.0.1:9"}  # no KMS needed to wrap
    out = run_cli("wrap", key["key_id"], "--wrapping-public-key", str(public), "--output",
                  str(output), env=offline)  # fmt: skip
    assert out.returncode == 0, out.stderr
    make_client(served).import_key_material(km.ImportKeyMaterialRequest(
        key_id=key["key_id"], encrypted_key_material=output.read_text(),
        import_token=import_token, key_material_expire_unix=0,
    ))  # fmt: skip
    assert describe(make_client(served), key["key_id"]).key_state == "Enabled"
    assert served.key_view(key["key_id"])["material_fingerprint"] == key["fingerprint"]


def test_a_file_sealed_vault_resealed_into_the_token_works_with_the_file_gone(
    cli_env, served, token, tmp_path
):
    keys = [enroll_cli(cli_env, spec) for spec in ("RSA_2048", "EC_P256")]
    file_env = {**cli_env, **token.env}
    missing = run_cli("vault", "reseal", "--to-seal-pkcs11", token.uri(), env=file_env)
    assert "holds 0 AES keys" in _one_line_exit_2(missing)  # no key in the token yet
    assert run_cli("seal-key", "new", "--pkcs11", token.uri(), env=file_env).returncode == 0
    vault = tmp_path / "vault"
    before = {p.name: p.read_bytes() for p in vault.iterdir()}
    dry = run_cli("vault", "reseal", "--to-seal-pkcs11", token.uri(), "--dry-run",
                  "--output", "json", env=file_env)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert len(json.loads(dry.stdout)["resealed"]) == 2
    assert {p.name: p.read_bytes() for p in vault.iterdir()} == before  # nothing written
    audit = tmp_path / "audit.jsonl"
    out = run_cli("vault", "reseal", "--to-seal-pkcs11", token.uri(), "--output", "json",
                  env={**file_env, "BYOK_AUDIT_FILE": str(audit)})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert sorted(json.loads(out.stdout)["resealed"]) == sorted(k["key_id"] for k in keys)
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [e["event"] for e in lines] == ["envelope_resealed"] * 2
    os.unlink(cli_env["BYOK_SEAL_KEY_FILE"])  # the file key is gone for good
    hsm_env = {k: v for k, v in file_env.items() if k != "BYOK_SEAL_KEY_FILE"}
    hsm_env["BYOK_SEAL_PKCS11"] = token.uri()
    for key in keys:
        served.emulator.kms.delete_key_material(key["key_id"])
    sweep = run_cli("sweep", "--output", "json", env=hsm_env)
    assert sweep.returncode == 0, sweep.stderr
    assert json.loads(sweep.stdout)["summary"] == {"restored": 2}
    for key in keys:
        assert served.key_view(key["key_id"])["material_fingerprint"] == key["fingerprint"]

"""The seed page's console flow, end to end: enrollment with the console's fields, and the
break-glass path (wrap offline, import by hand as the console would) through the real SDK."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from alibabacloud_kms20160120 import models as km

from tests.conftest import HARDWARE_IMPORTS
from tests.e2e.conftest import enroll_args, run_cli
from tests.functional.conftest import describe, make_client

POLICY = {"Version": "1", "Statement": [{"Effect": "Allow", "Action": ["kms:*"],
          "Principal": {"RAM": ["acs:ram::1234567890123456:*"]}, "Resource": ["*"]}]}  # fmt: skip

# RSA_4096 and EC_SM2 keys here: their hardware instance takes imported material (not the
# emulator's default answer; tests/functional/test_fidelity.py covers both).
EMULATOR_SETTINGS = HARDWARE_IMPORTS


def _json(out):
    assert out.returncode == 0, out.stderr[-1500:]
    return json.loads(out.stdout)


def test_enroll_with_alias_tags_description_and_policy(cli_env, served, tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    result = _json(run_cli(
        *enroll_args("EC_P256"), "--generate", "--alias", "alias/payments", "--tag",
        "team=payments", "--tag", "env=prod", "--description", "payments signing",
        "--policy", str(policy), "--output", "json", env=cli_env,
    ))  # fmt: skip
    key_id = result["key_id"]
    view = served.key_view(key_id)
    assert view["aliases"] == ["alias/payments"] and view["description"] == "payments signing"
    assert {"team": "payments", "env": "prod"}.items() <= view["tags"].items()
    assert json.loads(view["policy"]) == POLICY
    status = _json(run_cli("status", key_id, "--output", "json", env=cli_env))
    assert status["aliases"] == ["alias/payments"]
    human = run_cli("status", key_id, env=cli_env).stdout
    assert "alias alias/payments" in human
    listed = _json(run_cli("vault", "list", "--aliases", "--output", "json", env=cli_env))
    assert listed["keys"][0]["aliases"] == ["alias/payments"]
    plan = _json(run_cli("plan", "--aliases", "--output", "json", env=cli_env))
    assert plan["decisions"][0]["aliases"] == ["alias/payments"]
    assert "(alias/payments)" in run_cli("plan", "--aliases", env=cli_env).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--alias", "payments"), "--alias"),
        (("--tag", "team"), "KEY=VALUE"),
        (("--tag", "team=a,b"), "tag rule"),
        (("--policy", "/nonexistent/policy.json"), "cannot read --policy"),
    ],
)
def test_bad_console_fields_exit_2_in_one_line_and_create_nothing(cli_env, served, args, message):
    out = run_cli(*enroll_args("EC_P256"), "--generate", *args, env=cli_env)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and message in out.stderr
    assert served.emulator.kms.all_keys() == []


# ---- break-glass ---------------------------------------------------------------------------------


def _console_download(served, key_id, spec):
    """What the console's 'Obtain Parameters' hands the engineer: public key and token."""
    algorithm = "SM2PKE_SM4_ECB" if spec == "EC_SM2" else "RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD"
    body = make_client(served).get_parameters_for_import(km.GetParametersForImportRequest(
        key_id=key_id, wrapping_algorithm=algorithm,
        wrapping_key_spec="EC_SM2" if spec == "EC_SM2" else "RSA_2048",
    )).body  # fmt: skip
    return base64.b64decode(body.public_key), body.import_token


@pytest.mark.parametrize(("spec", "form"), [("RSA_2048", "pem"), ("EC_SM2", "der")])
def test_break_glass_wrap_imports_identical_material_by_hand(cli_env, served, tmp_path, spec, form):
    enrolled = _json(run_cli(*enroll_args(spec), "--generate", "--output", "json", env=cli_env))
    key_id = enrolled["key_id"]
    served.emulator.kms.delete_key_material(key_id)
    der, token = _console_download(served, key_id, spec)
    public = tmp_path / f"publickey_{key_id}.{'pem' if form == 'pem' else 'bin'}"
    if form == "pem":
        b64 = base64.encodebytes(der).decode().replace("\n", "")
        lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
        public.write_text(
            "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"
        )
    else:
        public.write_bytes(der)
    output = tmp_path / "EncryptedKeyMaterial_base64.txt"
    audit = tmp_path / "audit.jsonl"
    # KMS unreachable: the wrap needs none of it.
    env = {**cli_env, "BYOK_KMS_ENDPOINT": "http://127.0.0.1:9", "BYOK_AUDIT_FILE": str(audit)}
    served.emulator.calls.clear()
    out = run_cli("wrap", key_id, "--wrapping-public-key", str(public), "--output", str(output),
                  env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Import Key Material" in out.stdout and "verify" in out.stdout
    assert served.calls() == []  # no KMS call
    assert stat.S_IMODE(os.stat(output).st_mode) == 0o600
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [e["event"] for e in events] == ["break_glass_wrap"] and events[0]["key_id"] == key_id
    # The console's upload, done through the SDK as the console would.
    make_client(served).import_key_material(km.ImportKeyMaterialRequest(
        key_id=key_id, encrypted_key_material=output.read_text(), import_token=token,
        key_material_expire_unix=0,
    ))  # fmt: skip
    assert describe(make_client(served), key_id).key_state == "Enabled"
    assert served.key_view(key_id)["material_fingerprint"] == enrolled["fingerprint"]
    assert (
        _json(run_cli("verify", key_id, "--output", "json", env=cli_env))["results"][0]["result"]
        == "verified"
    )


def test_break_glass_wrap_refuses_bad_input_and_never_overwrites(cli_env, served, tmp_path):
    rsa_key = _json(run_cli(*enroll_args("RSA_2048"), "--generate", "--output", "json",
                            env=cli_env))["key_id"]  # fmt: skip
    sm2_key = _json(run_cli(*enroll_args("EC_SM2"), "--generate", "--output", "json",
                            env=cli_env))["key_id"]  # fmt: skip
    sm2_public, _ = _console_download(served, sm2_key, "EC_SM2")
    (tmp_path / "sm2.bin").write_bytes(sm2_public)
    (tmp_path / "junk.pem").write_text(
        "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n"
    )
    existing = tmp_path / "existing.txt"
    existing.write_text("keep me")
    rsa_public, _ = _console_download(served, rsa_key, "RSA_2048")
    (tmp_path / "rsa.bin").write_bytes(rsa_public)
    cases = [
        (rsa_key, "sm2.bin", "new1.txt", "RSA-2048"),  # an SM2 wrapping key for an RSA key
        (sm2_key, "rsa.bin", "new2.txt", "SM2"),  # an RSA wrapping key for an SM2 key
        (rsa_key, "junk.pem", "new3.txt", "does not load"),
        (rsa_key, "rsa.bin", "existing.txt", "never overwritten"),
        ("key-notenrolled000000", "rsa.bin", "new4.txt", "no envelope"),
    ]
    for key_id, public, output, message in cases:
        out = run_cli("wrap", key_id, "--wrapping-public-key", str(tmp_path / public),
                      "--output", str(tmp_path / output), env=cli_env)  # fmt: skip
        assert out.returncode == 2, (public, out.stderr)
        assert out.stderr.count("\n") == 1 and message in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
    assert existing.read_text() == "keep me"
    assert not [p.name for p in tmp_path.glob("new*.txt")]

"""`byok-keeper enroll` as an operator runs it."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from byok_keeper.crypto.material import load_private_key
from tests.conftest import ALL_SPECS, hardware_refused
from tests.e2e.conftest import enroll_args, run_cli

# Agent tests: run against each aliyun-local profile (docs/FIDELITY.md).
pytestmark = pytest.mark.every_profile


def _secret_forms(pem: bytes) -> list[str]:
    """Every form a leak of this private key could take: PEM body lines, DER/import bytes in
    hex and Base64 (and a Base64 chunk of each), the raw scalar for SM2."""
    material = load_private_key(pem)
    raw = bytes(material.import_bytes())
    forms = [raw.hex(), base64.b64encode(raw).decode(), base64.b64encode(raw[:30]).decode()]
    if pem.startswith(b"-----"):
        forms += [line for line in pem.decode().splitlines()[1:-1] if len(line) >= 40][:3]
    return forms


def _assert_no_leak(forms: list[str], *texts: str) -> None:
    for text in texts:
        for form in forms:
            assert form not in text, "private key material leaked"


@pytest.mark.openssl
@pytest.mark.parametrize("spec", ALL_SPECS)
def test_enroll_openssl_key_of_every_spec(
    spec, cli_env, openssl_keys, tmp_path, served, kms_profile
):
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(openssl_keys[spec])
    out = run_cli(
        *enroll_args(spec),
        "--material",
        str(key_file),
        "--lease",
        "30d",
        "--output",
        "json",
        env=cli_env,
    )
    if hardware_refused(kms_profile, spec):
        # KMS's refusal, reported in one line before anything is sealed.
        assert out.returncode == 2, out.stderr
        (line,) = [x for x in out.stderr.splitlines() if x.startswith("byok-keeper: error")]
        assert "refuses imported" in line and "Traceback" not in out.stderr
        assert not list((tmp_path / "vault").glob("*.json"))
        return
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) >= {"key_id", "fingerprint", "material_expire_time"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", result["material_expire_time"])
    assert served.key_view(result["key_id"])["material_fingerprint"] == result["fingerprint"]
    envelopes = "".join(p.read_text() for p in (tmp_path / "vault").iterdir())
    _assert_no_leak(_secret_forms(openssl_keys[spec]), out.stdout, out.stderr, envelopes)


def test_enroll_generate_prints_a_human_summary(cli_env):
    out = run_cli(
        *enroll_args("EC_P256"),
        "--generate",
        env=cli_env,
    )
    assert out.returncode == 0, out.stderr
    assert "created and enrolled" in out.stdout and "only copy" in out.stdout
    assert "[enroll] import: ok" in out.stderr


def test_encrypted_pem_with_passphrase_from_the_environment(cli_env, tmp_path):
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256K1())
    path = tmp_path / "enc.pem"
    path.write_bytes(
        key.private_bytes(
            ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.BestAvailableEncryption(b"s3cret")
        )
    )
    args = [
        *enroll_args("EC_P256K"),
        "--material",
        str(path),
    ]
    missing = run_cli(*args, env=cli_env)
    assert missing.returncode == 2 and "give its passphrase" in missing.stderr
    env = {**cli_env, "KEY_PASS": "s3cret"}
    ok = run_cli(*args, "--passphrase-env", "KEY_PASS", "--output", "json", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "s3cret" not in ok.stdout + ok.stderr


def test_vault_list_shows_inventory_without_unsealing(cli_env):
    run_cli(
        *enroll_args("EC_P256"),
        "--generate",
        env=cli_env,
    )
    env = {k: v for k, v in cli_env.items() if k != "BYOK_SEAL_KEY_FILE"}
    out = run_cli("vault", "list", "--output", "json", env=env)
    assert out.returncode == 0, out.stderr
    keys = json.loads(out.stdout)["keys"]
    assert len(keys) == 1 and keys[0]["first_imported_at"]


def test_config_file_and_debug(cli_env, tmp_path):
    config = tmp_path / "byok.toml"
    config.write_text('[byok-keeper]\noutput = "json"\nbogus = 1\n')
    out = run_cli("--config", str(config), "vault", "list", env=cli_env)
    assert out.returncode == 2 and "unknown settings: bogus" in out.stderr
    debug = run_cli("--debug", "--config", str(config), "vault", "list", env=cli_env)
    assert "Traceback" in debug.stderr and debug.returncode == 2
    assert Path(config).exists()

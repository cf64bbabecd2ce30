"""The FC handlers in-process with typed events from tests/events and a fake context, against
aliyun-local (the deployed path runs in tests/e2e/test_fc_cloud.py)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from byok_keeper.core.enroll import CreateRequest, enroll
from byok_keeper.crypto.material import generate_material
from byok_keeper.domain.lease import parse_lease
from byok_keeper.gateway.kms import ENROLL
from byok_keeper.runtimes import fc
from byok_keeper.vault import FileStore, LocalKeySealer, Vault
from byok_keeper.vault.sealers import new_seal_key_file
from tests.functional.conftest import fc_context, make_gateway, skew_local_clock

# Agent tests: run against each aliyun-local profile (docs/FIDELITY.md).
pytestmark = pytest.mark.every_profile

EVENTS = Path(__file__).resolve().parents[1] / "events"
FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


@pytest.fixture
def deployed(emulator, kms, tmp_path, monkeypatch):
    """Settings as deploy/functions.yml would set them, and a context carrying STS credentials."""
    new_seal_key_file(tmp_path / "seal.key")
    monkeypatch.setenv("BYOK_KMS_ENDPOINT", f"http://{emulator.endpoint}")
    monkeypatch.setenv("BYOK_VAULT", f"file://{tmp_path / 'vault'}")
    monkeypatch.setenv("BYOK_SEAL_KEY_FILE", str(tmp_path / "seal.key"))
    monkeypatch.setenv("BYOK_DISPATCH", "inline")
    context = fc_context(emulator)
    vault = Vault(FileStore(tmp_path / "vault"), LocalKeySealer.from_file(tmp_path / "seal.key"))
    material = generate_material("EC_P256")
    key = enroll(make_gateway(emulator, ENROLL), vault, material, lease=parse_lease("30d"),
                 create=CreateRequest("EC_P256", "SIGN/VERIFY", "kst-local-software"))  # fmt: skip
    fc.RUNTIME = fc.Runtime()  # a cold instance
    return context, key


def _event(key_id: str, **changes) -> bytes:
    doc = json.loads((EVENTS / "reimport.json").read_text())
    doc.update(key_id=key_id, **changes)
    return json.dumps(doc).encode()


def test_reimport_handler_signs_with_the_contexts_sts_credentials(deployed, emulator):
    context, key = deployed
    role = emulator.emulator.fc_role
    assert role["access_key_id"].startswith("STS.") and role["security_token"]
    emulator.emulator.kms.delete_key_material(key.key_id)
    # Another STS token on the context: KMS refuses the calls, so the context's token signs them.
    other = "CAIS" + "x" * 64  # token-shaped, but not the role's
    context.credentials = types.SimpleNamespace(**{**role, "security_token": other})
    refused = fc.handle_reimport(_event(key.key_id), context)
    assert (refused["ok"], refused["error_code"]) == (
        False,
        "InvalidSecurityToken.MismatchWithAccessKey",
    )
    assert emulator.key_view(key.key_id)["state"] == "PendingImport"
    context.credentials = types.SimpleNamespace(**role)  # FC rotated them back: rebuilt
    result = fc.handle_reimport(_event(key.key_id), context)
    assert result["ok"] and result["outcome"] == "restored"
    assert emulator.key_view(key.key_id)["state"] == "Enabled"


_PY312_INVOKE = """
import sys, types
sys.path.insert(0, sys.argv[1])
from index import handler
context = types.SimpleNamespace(request_id="req-312", region="cn-hangzhou",
                                account_id="1234567890123456")  # no credentials attribute
print(handler(sys.argv[2].encode(), context))  # index.handler returns JSON text
"""


@pytest.mark.parametrize("token", ["role", "wrong"])
def test_reimport_handler_on_python312_takes_sts_credentials_from_the_environment(
    deployed, emulator, token
):
    """FC python3.12 runtimes pass no credentials on the context, only ALIBABA_CLOUD_* variables,
    which the SDK reads when it is imported: so a fresh process, as FC starts one."""
    _context, key = deployed
    role = emulator.emulator.fc_role
    emulator.emulator.kms.delete_key_material(key.key_id)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")}
    env.update(
        ALIBABA_CLOUD_ACCESS_KEY_ID=role["access_key_id"],
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=role["access_key_secret"],
        ALIBABA_CLOUD_SECURITY_TOKEN=role["security_token"] if token == "role" else "not-it",
        ALIBABA_CLOUD_ECS_METADATA_DISABLED="true",
    )
    out = subprocess.run(
        [sys.executable, "-c", _PY312_INVOKE, str(FUNCTIONS / "reimport"), _event(key.key_id)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.splitlines()[-1])
    if token == "role":
        assert result["ok"] and result["outcome"] == "restored"
        assert emulator.key_view(key.key_id)["state"] == "Enabled"
    else:
        # "not-it" is no token at all: malformed, not merely another key's.
        assert (result["ok"], result["error_code"]) == (False, "InvalidSecurityToken.Malformed")
        assert emulator.key_view(key.key_id)["state"] == "PendingImport"


def test_permanent_failures_return_and_retryable_ones_raise(deployed, emulator):
    context, key = deployed
    emulator.emulator.kms.delete_key_material(key.key_id)
    emulator.emulator.kms.tag_key(key.key_id, {"byok-keeper:hold": "INC-3"})
    held = fc.handle_reimport(_event(key.key_id), context)
    assert held["ok"] is False and held["outcome"] == "held"
    emulator.emulator.kms.untag_key(key.key_id, ["byok-keeper:hold"])
    emulator.set_faults(error_rate=1.0)
    with pytest.raises(fc.RetryableFailure):
        fc.handle_reimport(_event(key.key_id), context)
    emulator.set_faults()
    missing = fc.handle_reimport(_event("key-notenrolled000000"), context)
    assert missing["ok"] is False and missing["outcome"] == "failed"


def test_sweep_handler_runs_inline_and_honours_dry_run(deployed, emulator):
    context, key = deployed
    emulator.emulator.kms.delete_key_material(key.key_id)
    dry = fc.handle_sweep((EVENTS / "timer-dry-run.json").read_bytes(), context)
    assert (
        dry["summary"] == {"dry-run": 1}
        and emulator.key_view(key.key_id)["state"] == "PendingImport"
    )
    done = fc.handle_sweep((EVENTS / "timer.json").read_bytes(), context)
    assert done["ok"] and done["summary"] == {"restored": 1}


def test_warm_instances_reuse_their_clients_until_credentials_rotate(deployed):
    context, _key = deployed
    first = fc.RUNTIME.deps(context)
    assert fc.RUNTIME.deps(context) is first
    rotated = types.SimpleNamespace(**vars(context))
    rotated.credentials = types.SimpleNamespace(
        access_key_id=context.credentials.access_key_id, access_key_secret="new",
        security_token="new-token")  # fmt: skip
    assert fc.RUNTIME.deps(rotated) is not first


def test_a_function_whose_clock_kms_refuses_raises_so_fc_retries_and_alerts(
    deployed, emulator, mocker
):
    context, key = deployed
    emulator.emulator.kms.delete_key_material(key.key_id)
    skew_local_clock(mocker, 2 * 3600)
    with pytest.raises(fc.RetryableFailure, match="InvalidTimeStamp.Expired") as reimport:
        fc.handle_reimport(_event(key.key_id), context)
    with pytest.raises(fc.RetryableFailure, match="InvalidTimeStamp.Expired"):
        fc.handle_sweep(b"", context)
    assert "\n" not in str(reimport.value)
    assert emulator.key_view(key.key_id)["state"] == "PendingImport"


@pytest.mark.parametrize("form", ["Rejected.Throttling", "Throttling.User", "Throttling"])
def test_throttling_that_outlasts_the_retries_raises_so_fc_retries(deployed, emulator, form):
    context, key = deployed
    emulator.emulator.kms.delete_key_material(key.key_id)
    emulator.set_faults(fail_next={"GetParametersForImport": [form] * 10})
    with pytest.raises(fc.RetryableFailure, match=form.split("/")[0]):
        fc.handle_reimport(_event(key.key_id), context)
    emulator.set_faults()
    assert fc.handle_reimport(_event(key.key_id), context)["ok"] is True


def test_logs_replace_the_runtime_root_handler_and_carry_the_request_id(deployed, emulator, capsys):
    context, key = deployed
    context.request_id = "req-42"
    runtime_out = io.StringIO()
    runtime_handler = logging.StreamHandler(runtime_out)  # what FC's Python runtime installs
    root = logging.getLogger()
    root.addHandler(runtime_handler)
    try:
        emulator.emulator.kms.delete_key_material(key.key_id)
        assert fc.handle_reimport(_event(key.key_id), context)["ok"]
        replaced = runtime_handler not in root.handlers
    finally:
        root.removeHandler(runtime_handler)
    assert replaced and runtime_out.getvalue() == ""  # no line twice
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert any(line.get("key_id") == key.key_id for line in lines)
    assert lines and all(line["fc_request_id"] == "req-42" for line in lines)

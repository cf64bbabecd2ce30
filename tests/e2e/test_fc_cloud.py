"""The cloud path, here: make package -> deploy.py into aliyun-local -> the timer fires -> the
sweep fans out async -> reimport invocations restore keys (checked with the KMS SDK) and a
failing key lands in the OnFailure deliveries."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from byok_keeper.enroll import CreateRequest, enroll
from byok_keeper.kms import ENROLL
from byok_keeper.lease import parse_lease
from byok_keeper.material import generate_material
from byok_keeper.vault import FileStore, LocalKeySealer, Vault
from byok_keeper.vault.sealers import new_seal_key_file
from tests.e2e.conftest import run_cli
from tests.functional.conftest import describe, make_client, make_gateway

ROOT = Path(__file__).resolve().parents[2]
PY = f"{sys.version_info.major}.{sys.version_info.minor}"
pytestmark = pytest.mark.slow


def _package(output: Path) -> str:
    # Built for this interpreter so aliyun-local's worker (this Python) can run it; the
    # template's runtime gets the same code built for its own Python by `make package`.
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "deploy" / "package.py"),
            "--output",
            str(output),
            "--python-version",
            PY,
            "--cache",
            str(ROOT / "dist" / ".wheels"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return hashlib.sha256(output.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    path = tmp_path_factory.mktemp("pkg") / "byok-keeper-fc.zip"
    digest = _package(path)
    return path, digest


# Two hash-checked builds from the package registry: minutes each on a loaded 2-core machine.
@pytest.mark.timeout(1200)
def test_package_is_reproducible_and_handlers_import_from_the_zip_alone(package, tmp_path):
    path, digest = package
    assert _package(tmp_path / "again.zip") == digest
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())
        zf.extractall(tmp_path / "code")
    assert {"sweep/index.py", "reimport/index.py", "byok_keeper/fc.py"} <= set(names)
    assert not any("aliyun_local" in n or "__pycache__" in n for n in names)
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import sweep.index, reimport.index; "
        "print(sweep.index.handler.__module__, reimport.index.handler.__module__)"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe, str(tmp_path / "code")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["sweep.index", "reimport.index"]


def _deploy(package_path: Path, served, vault_dir: Path, seal: Path, *extra: str) -> str:
    args = [
        sys.executable,
        str(ROOT / "deploy" / "deploy.py"),
        "--template",
        str(ROOT / "template.yml"),
        "--code",
        str(package_path),
        "--region",
        served.region,
        "--account-id",
        "1234567890123456",
        "--fc-endpoint",
        f"http://{served.endpoint}",
        "--parameter",
        f"KmsEndpoint=http://{served.endpoint}",
        "--parameter",
        f"FcEndpoint=http://{served.endpoint}",
        "--parameter",
        f"VaultUri=file://{vault_dir}",
        "--parameter",
        f"SealKeyFile={seal}",
        "--parameter",
        "Dispatch=fc-async",
        "--parameter",
        "Schedule=0 0 0 1 1 *",
        *extra,
    ]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(ALIBABA_CLOUD_ACCESS_KEY_ID="local", ALIBABA_CLOUD_ACCESS_KEY_SECRET="local-secret")
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _admin(served, method, path, body=None):
    req = urllib.request.Request(
        f"{served.url}/_local/{path}",
        method=method,
        data=json.dumps(body or {}).encode() if method == "POST" else None,
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def test_timer_fans_out_and_reimport_restores_keys_and_failures_reach_on_failure(
    package, served, tmp_path
):
    path, _digest = package
    served.reset()
    served.emulator.fc.retry_delay_seconds = 0.05
    vault_dir, seal = tmp_path / "vault", tmp_path / "seal.key"
    new_seal_key_file(seal)
    vault = Vault(FileStore(vault_dir), LocalKeySealer.from_file(seal))
    gateway = make_gateway(served, ENROLL)
    keys = {}
    for spec, lease in (("RSA_2048", "30d"), ("EC_P256", "1h"), ("EC_SM2", "30d")):
        instance = "kst-local-hardware" if spec == "EC_SM2" else "kst-local-software"
        result = enroll(
            gateway,
            vault,
            generate_material(spec),
            lease=parse_lease(lease),
            create=CreateRequest(spec, "SIGN/VERIFY", instance),
        )
        keys[spec] = result

    plan = _deploy(path, served, vault_dir, seal, "--plan")
    assert "plan: create service byok-keeper" in plan and "create timer" in plan
    assert served.emulator.fc.services == {}  # --plan changed nothing
    done = _deploy(path, served, vault_dir, seal)
    assert "done: create function byok-keeper/reimport" in done
    assert "update function" in _deploy(path, served, vault_dir, seal)  # idempotent re-deploy

    served.emulator.kms.delete_key_material(keys["RSA_2048"].key_id)
    served.advance_clock(2 * 3600)  # EC_P256's 1 h lease lapses
    _admin(served, "POST", "fc/fire/byok-keeper/schedule")
    assert _admin(served, "POST", "fc/wait", {"timeout": 120})["idle"]
    kms = make_client(served)
    for spec in ("RSA_2048", "EC_P256", "EC_SM2"):
        assert describe(kms, keys[spec].key_id).key_state == "Enabled", spec
        assert served.key_view(keys[spec].key_id)["material_fingerprint"] == keys[spec].fingerprint
    invoked = [i["function"] for i in _admin(served, "GET", "fc/invocations")]
    assert invoked.count("sweep") == 1 and invoked.count("reimport") == 2
    # The functions ran with the service role's STS credentials, not the deployer's.
    assert any(c["action"] == "ImportKeyMaterial" for c in served.calls())

    # A key KMS keeps failing: the reimport raises, FC retries, then delivers to OnFailure.
    served.emulator.kms.delete_key_material(keys["EC_SM2"].key_id)
    served.set_faults(fail_next={"GetParametersForImport": ["ServiceUnavailableTemporary"] * 40})
    _admin(served, "POST", "fc/fire/byok-keeper/schedule")
    assert _admin(served, "POST", "fc/wait", {"timeout": 240})["idle"]
    deliveries = _admin(served, "GET", "fc/deliveries")
    assert len(deliveries) == 1
    (delivery,) = deliveries
    assert delivery["kind"] == "OnFailure" and delivery["function"] == "reimport"
    assert delivery["attempts"] == 4  # the first try and MaxAsyncRetryAttempts: 3
    assert json.loads(delivery["event"])["key_id"] == keys["EC_SM2"].key_id
    assert "acs:mns:" in delivery["destination"]
    served.set_faults()

    # On call, with only fc:InvokeFunction: the same core through the deployed function.
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(
        ALIBABA_CLOUD_ACCESS_KEY_ID="local",
        ALIBABA_CLOUD_ACCESS_KEY_SECRET="local-secret",
        BYOK_FC_ENDPOINT=f"http://{served.endpoint}",
        BYOK_ACCOUNT_ID="1234567890123456",
    )
    out = run_cli(
        "invoke",
        "reimport",
        keys["EC_SM2"].key_id,
        "--reason",
        "INC-7",
        "--output",
        "json",
        env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["result"]["outcome"] == "restored"
    dry = run_cli("invoke", "sweep", "--dry-run", "--output", "json", env=env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert json.loads(dry.stdout)["result"]["dry_run"] is True
    logs = "\n".join(_admin(served, "GET", "fc/logs"))
    for result in keys.values():
        assert result.fingerprint in logs  # the canonical lines made it to the function log
    time.sleep(0)  # keep the module's emulator for the next test

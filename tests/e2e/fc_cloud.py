"""What the FC end-to-end modules share (test_fc_cloud.py, test_fc_events_cloud.py): building the
code package with deploy/package.py, deploying it with deploy.py into aliyun-local, enrolling keys
through the KMS SDK, the admin API and an FC 3.0 client. The package is built once per test
session (``package`` in conftest.py): each build takes 40-50 s on a loaded 2-core machine."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from byok_keeper.core.enroll import CreateRequest, enroll
from byok_keeper.crypto.material import generate_material
from byok_keeper.crypto.specs import HARDWARE_ONLY
from byok_keeper.domain.lease import parse_lease
from byok_keeper.gateway.kms import ENROLL
from byok_keeper.vault import FileStore, LocalKeySealer, Vault
from byok_keeper.vault.sealers import new_seal_key_file
from tests.functional.conftest import make_gateway

ROOT = Path(__file__).resolve().parents[2]
PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def package_zip(output: Path) -> str:
    # Built for this interpreter: the emulator maps the FC runtimes to it (tests/e2e/conftest.py),
    # as `aliyun-local serve --fc-runtime python3.12=...` does for a drill.
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


def deploy_package(package_path: Path, served, vault_dir: Path, seal: Path, *extra: str) -> str:
    args = [
        sys.executable,
        str(ROOT / "deploy" / "deploy.py"),
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
        "InlineKeys=0",  # every due key goes to reimport (batched): the fan-out is under test
        "--parameter",
        "Schedule=0 0 0 1 1 *",  # never by itself: the tests fire it
        "--parameter",
        "SweepInterval=15m",  # the cadence the planner assumes: as if fired every 15 minutes
        *extra,
    ]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(ALIBABA_CLOUD_ACCESS_KEY_ID="local", ALIBABA_CLOUD_ACCESS_KEY_SECRET="local-secret")
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def planned_policies(plan: str) -> tuple[str, list[dict]]:
    """The role and its policy documents as ``deploy.py --plan`` prints them."""
    role, _, document = plan.split("plan: policy of ", 1)[1].partition(" (not applied here): ")
    return role, [json.loads(document.splitlines()[0])]


def admin(served, method, path, body=None):
    req = urllib.request.Request(
        f"{served.url}/_local/{path}",
        method=method,
        data=json.dumps(body or {}).encode() if method == "POST" else None,
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def enroll_keys(served, tmp_path, specs):
    served.reset()
    served.emulator.fc.retry_delay_seconds = 0.05
    vault_dir, seal = tmp_path / "vault", tmp_path / "seal.key"
    new_seal_key_file(seal)
    vault = Vault(FileStore(vault_dir), LocalKeySealer.from_file(seal))
    gateway = make_gateway(served, ENROLL)
    keys = {}
    for spec, lease in specs:
        instance = "kst-local-hardware" if spec in HARDWARE_ONLY else "kst-local-software"
        keys[spec] = enroll(
            gateway,
            vault,
            generate_material(spec),
            lease=parse_lease(lease),
            create=CreateRequest(spec, "SIGN/VERIFY", instance),
        )
    return vault_dir, seal, keys


def fc_cli_env(served, **extra):
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(
        ALIBABA_CLOUD_ACCESS_KEY_ID="local",
        ALIBABA_CLOUD_ACCESS_KEY_SECRET="local-secret",
        ALIBABA_CLOUD_REGION_ID=served.region,
        BYOK_FC_ENDPOINT=f"http://{served.endpoint}",
        BYOK_ACCOUNT_ID="1234567890123456",
        **extra,
    )
    return env


def fc3_client(served):
    from alibabacloud_fc20230330.client import Client
    from alibabacloud_tea_openapi.models import Config

    return Client(
        Config(
            access_key_id="local",
            access_key_secret="local-secret",
            endpoint=served.endpoint,
            protocol="http",
            region_id=served.region,
        )
    )

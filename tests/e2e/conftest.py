"""End-to-end tier: console scripts run as users run them, against aliyun-local."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aliyun_local.server import LocalServer

BIN = Path(sys.executable).parent


INSTANCE = {"EC_SM2": "kst-local-hardware"}


def enroll_cli(env: dict[str, str], spec: str = "EC_P256", lease: str = "30d") -> dict:
    """``byok-keeper enroll --create --generate`` for ``spec``; returns its JSON output."""
    import json

    out = run_cli(
        "enroll",
        "--create",
        "--key-spec",
        spec,
        "--usage",
        "SIGN/VERIFY",
        "--instance",
        INSTANCE.get(spec, "kst-local-software"),
        "--generate",
        "--lease",
        lease,
        "--output",
        "json",
        env=env,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def run_cli(*args: str, env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "byok-keeper"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def served():
    with LocalServer() as server:
        yield server


@pytest.fixture
def cli_env(served, tmp_path):
    """Environment for the CLI: the emulator, a file vault and a fresh seal key."""
    served.reset()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.pop("BYOK_OUTPUT", None)
    env.update(
        BYOK_KMS_ENDPOINT=f"http://{served.endpoint}",
        BYOK_VAULT=f"file://{tmp_path / 'vault'}",
        BYOK_SEAL_KEY_FILE=str(tmp_path / "seal.key"),
        ALIBABA_CLOUD_ACCESS_KEY_ID=served.access_key_id,
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=served.access_key_secret,
        ALIBABA_CLOUD_REGION_ID=served.region,
    )
    out = run_cli("seal-key", "new", env["BYOK_SEAL_KEY_FILE"], env=env)
    assert out.returncode == 0, out.stderr
    return env

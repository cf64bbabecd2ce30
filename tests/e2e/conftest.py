"""End-to-end tier: console scripts run as users run them, against aliyun-local."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from aliyun_local.server import LocalServer
from byok_keeper.crypto.specs import HARDWARE_ONLY

BIN = Path(sys.executable).parent


INSTANCE = dict.fromkeys(HARDWARE_ONLY, "kst-local-hardware")


def enroll_args(spec: str = "EC_P256", instance: str | None = None) -> tuple[str, ...]:
    """``enroll --create`` for a new ``spec`` key on the instance the emulator accepts it on;
    add ``--generate`` or ``--material FILE`` and any options."""
    instance = instance or INSTANCE.get(spec, "kst-local-software")
    return ("enroll", "--create", "--key-spec", spec, "--usage", "SIGN/VERIFY",
            "--instance", instance)  # fmt: skip


def enroll_cli(env: dict[str, str], spec: str = "EC_P256", lease: str = "30d") -> dict:
    """``byok-keeper enroll --create --generate`` for ``spec``; returns its JSON output."""
    import json

    out = run_cli(*enroll_args(spec), "--generate", "--lease", lease, "--output", "json", env=env)
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


def daemon_metrics(
    env: dict[str, str], state_dir, ready: str, timeout: float = 60, exe: Path | None = None
) -> str:
    """Start ``byok-keeper daemon --metrics-addr 127.0.0.1:0``, scrape ``/metrics`` over HTTP
    (checking it is Prometheus text) until ``ready`` appears or ``timeout`` passes, stop it with
    SIGTERM (it must exit 0) and return the last text scraped. ``ready`` names a sample (e.g.
    ``byok_keeper_keys{``): a family's HELP line is there before the first sweep has ended.
    ``exe``: another installed ``byok-keeper`` (default: this environment's)."""
    args = [str(exe or BIN / "byok-keeper"), "daemon", "--schedule", "@every 1h",
            "--state-dir", str(state_dir), "--metrics-addr", "127.0.0.1:0"]  # fmt: skip
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    lines: list[str] = []
    served = threading.Event()

    def read() -> None:  # all of stderr, always: a full pipe would stall the daemon
        for line in proc.stderr:
            lines.append(line)
            if '"metrics_serving"' in line:
                served.set()
        served.set()  # EOF: it exited

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        served.wait(timeout)
        found = [json.loads(x)["addr"] for x in lines if '"metrics_serving"' in x]
        assert found, "the daemon never said where it serves metrics: " + "".join(lines)[-2000:]
        deadline = time.monotonic() + timeout
        text = _scrape_metrics(found[0])
        while ready not in text and time.monotonic() < deadline:
            time.sleep(0.25)
            text = _scrape_metrics(found[0])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(timeout=10)
    assert proc.returncode == 0, "".join(lines)[-2000:]
    return text


def _scrape_metrics(addr: str) -> str:
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        return answer.read().decode()


@pytest.fixture(scope="session")
def package(tmp_path_factory):
    """The FC code package (deploy/package.py for this interpreter) and its sha256, built once
    for every FC module of the session (tests/e2e/fc_cloud.py)."""
    from tests.e2e.fc_cloud import package_zip

    path = tmp_path_factory.mktemp("pkg") / "byok-keeper-fc.zip"
    return path, package_zip(path)


@pytest.fixture(scope="module")
def served(kms_profile, request):
    """One emulator per module and profile; a module's ``EMULATOR_SETTINGS`` (a dict of
    aliyun-local settings) overrides the profile's answers for every test in it, and
    ``reset`` keeps them."""
    # FC runtimes this machine may lack run under the interpreter running the tests (the
    # packages the tests build target it: deploy/package.py --python-version of this Python).
    runtimes = {"python3.10": sys.executable, "python3.12": sys.executable}
    settings = getattr(request.module, "EMULATOR_SETTINGS", None)
    with LocalServer(profile=kms_profile, fc_runtimes=runtimes, settings=settings) as server:
        yield server


@pytest.fixture
def cli_env(served, tmp_path):
    """Environment for the CLI: the emulator, a file vault and a fresh seal key."""
    served.reset()
    return cli_env_for(served.endpoint, tmp_path)


class Served:
    """``aliyun-local serve`` as a subprocess (default credentials)."""

    def __init__(self, proc: subprocess.Popen, info: dict) -> None:
        self.proc = proc
        self.info = info
        self.endpoint = info["kms_endpoint"]
        self.port = int(self.endpoint.rsplit(":", 1)[1])
        self.access_key_id = "local"
        self.access_key_secret = "local-secret"
        self.region = "cn-hangzhou"

    def admin(self, route: str, body: dict | None = None) -> Any:
        """``GET`` (or ``POST`` with ``body``) ``/_local/{route}``; the decoded JSON answer."""
        request = urllib.request.Request(
            f"http://{self.endpoint}/_local/{route}",
            method="GET" if body is None else "POST",
            data=None if body is None else json.dumps(body).encode(),
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())


def serve_subprocess(*args: str, port: int = 0) -> Served:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = subprocess.Popen(
        [str(BIN / "aliyun-local"), "serve", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()  # the server prints this line once it is listening
    if not line:
        proc.kill()
        pytest.fail(f"aliyun-local did not start: {proc.stderr.read()[-500:]}")
    return Served(proc, json.loads(line))


def stop_served(served: Served, sig=signal.SIGTERM) -> tuple[int, str, str]:
    served.proc.send_signal(sig)
    out, err = served.proc.communicate(timeout=30)
    return served.proc.returncode, out, err


def cli_env_for(endpoint: str, directory: Path) -> dict[str, str]:
    """Environment for the CLI against ``endpoint`` with a file vault and seal key in
    ``directory`` (the seal key is created)."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.pop("BYOK_OUTPUT", None)
    env.update(
        BYOK_KMS_ENDPOINT=f"http://{endpoint}",
        BYOK_VAULT=f"file://{directory / 'vault'}",
        BYOK_SEAL_KEY_FILE=str(directory / "seal.key"),
        ALIBABA_CLOUD_ACCESS_KEY_ID="local",
        ALIBABA_CLOUD_ACCESS_KEY_SECRET="local-secret",
        ALIBABA_CLOUD_REGION_ID="cn-hangzhou",
    )
    out = run_cli("seal-key", "new", env["BYOK_SEAL_KEY_FILE"], env=env)
    assert out.returncode == 0, out.stderr
    return env

"""The distributions as a team installs them: ``make dist``'s wheels (deploy/dist.py) in a fresh
venv that holds only the pins of constraints.txt (hash-checked, no resolver), not the dev tree.

byok-keeper alone gives every command (the daemon's APScheduler, job store and metrics endpoint
included) and no emulator, so ``demo`` says in one line to install aliyun-local; with the
aliyun-local wheel added the demo runs from the installed files."""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import daemon_metrics

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # a venv: pip installs ~40 pins


def _module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


dist = _module("byok_dist", ROOT / "deploy" / "dist.py")


PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1


def _deny_write_execute() -> None:
    """In the child, before exec: no memory both writable and executable, the units'
    ``MemoryDenyWriteExecute=yes`` through the kernel's own switch (Linux 6.3+, kept across
    exec). A kernel without it refuses the call; the probe in the demo test says which."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0)


def _env() -> dict[str, str]:
    """No proxies (loopback calls), no dev tree on the path, no settings from the caller."""
    keep = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    for name in [k for k in keep if k.startswith(("BYOK_", "ALIBABA_CLOUD_", "PYTHON"))]:
        keep.pop(name)
    return keep


def _run(*argv: str | Path, timeout: float = 300, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, env=kw.pop("env", _env()), **kw)  # fmt: skip


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    assert dist.main(["--output", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["aliyun_local-0.1.0-py3-none-any.whl", "aliyun_local-0.1.0.tar.gz",
                     "byok-keeper-pins.txt", "byok_keeper-0.1.0-py3-none-any.whl",
                     "byok_keeper-0.1.0.tar.gz"]  # fmt: skip
    return {p.name.split("-")[0]: p for p in out.glob("*.whl")} | {"pins": out / files[2]}


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheels) -> Path:
    """A fresh venv with byok-keeper's runtime pins (hash-checked) and its wheel, nothing else:
    the install steps of deploy/README.md."""
    where = tmp_path_factory.mktemp("venv")
    assert _run(sys.executable, "-m", "venv", where).returncode == 0
    pip = [where / "bin" / "python", "-m", "pip", "--disable-pip-version-check", "-q"]
    done = _run(*pip, "install", "--require-hashes", "--no-deps", "-r", wheels["pins"],
                timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    done = _run(*pip, "install", "--no-index", "--no-deps", wheels["byok_keeper"])
    assert done.returncode == 0, done.stderr[-2000:]
    check = _run(*pip, "check")  # the wheel's requirements are all met by the pins alone
    assert check.returncode == 0, check.stdout
    return where


def test_the_byok_keeper_wheel_carries_no_emulator(venv):
    bin_ = venv / "bin"
    assert (bin_ / "byok-keeper").exists() and not (bin_ / "aliyun-local").exists()
    probe = _run(bin_ / "python", "-c", "import aliyun_local", cwd=venv)
    assert probe.returncode == 1 and "No module named 'aliyun_local'" in probe.stderr


def test_version_is_the_installed_distributions(venv, wheels):
    version = wheels["byok_keeper"].name.split("-")[1]
    out = _run(venv / "bin" / "byok-keeper", "--version", cwd=venv)
    assert out.returncode == 0 and out.stdout.strip() == f"byok-keeper, version {version}"


def test_demo_without_the_emulator_says_to_install_it_in_one_line(venv):
    out = _run(venv / "bin" / "byok-keeper", "demo", cwd=venv)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "pip install aliyun-local" in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_the_daemon_runs_from_the_byok_keeper_wheel(venv, served_here, tmp_path):
    """The long-running daemon: APScheduler with its SQLite job store (SQLAlchemy) and the
    metrics endpoint (prometheus-client), all base dependencies now; before, SQLAlchemy was an
    extra and this failed with "unexpected ImportError"."""
    env = {**_env(), "BYOK_KMS_ENDPOINT": f"http://{served_here.endpoint}",
           "BYOK_VAULT": f"file://{tmp_path / 'vault'}",
           "BYOK_SEAL_KEY_FILE": str(tmp_path / "seal.key"),
           "ALIBABA_CLOUD_ACCESS_KEY_ID": "local",
           "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "local-secret",
           "ALIBABA_CLOUD_REGION_ID": "cn-hangzhou"}  # fmt: skip
    exe = venv / "bin" / "byok-keeper"
    assert _run(exe, "seal-key", "new", tmp_path / "seal.key", env=env).returncode == 0
    swept = "byok_keeper_last_sweep_timestamp_seconds{"
    # daemon_metrics stops it with SIGTERM and fails unless it exits 0.
    text = daemon_metrics(env, tmp_path / "state", ready=swept, exe=exe)
    assert 'byok_keeper_last_sweep_timestamp_seconds{result="ok"}' in text
    assert (tmp_path / "state" / "jobs.sqlite").is_file()


def test_the_demo_runs_from_both_wheels(venv, wheels):
    pip = [venv / "bin" / "python", "-m", "pip", "--disable-pip-version-check", "-q"]
    done = _run(*pip, "install", "--no-index", "--no-deps", wheels["aliyun_local"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert _run(*pip, "check").returncode == 0  # aliyun-local needs only cryptography
    version = _run(venv / "bin" / "aliyun-local", "--version", cwd=venv)
    assert version.stdout.strip() == "aliyun-local 0.1.0"
    # Under the hardened units' MemoryDenyWriteExecute: cryptography, the SDK and the emulator
    # must never need writable-executable memory.
    probe = _run(venv / "bin" / "python", "-c",
                 f"import ctypes; print(ctypes.CDLL(None).prctl({PR_GET_MDWE}, 0, 0, 0, 0))",
                 cwd=venv, preexec_fn=_deny_write_execute)  # fmt: skip
    if probe.stdout.strip() != "1":
        print("this kernel has no PR_SET_MDWE: the demo runs without it")
    out = _run(venv / "bin" / "byok-keeper", "demo", cwd=venv, timeout=240,
               preexec_fn=_deny_write_execute)  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "all restorable keys are Enabled with identical material" in out.stdout
    code = (
        "import aliyun_local, byok_keeper, json; print(json.dumps([m.__file__ for m in "
        "(aliyun_local, byok_keeper)]))"
    )
    where = _run(venv / "bin" / "python", "-c", code, cwd=venv)
    assert all(str(venv) in f for f in json.loads(where.stdout))  # the wheels, not the tree


@pytest.fixture
def served_here():
    from aliyun_local.server import LocalServer

    with LocalServer() as server:
        yield server

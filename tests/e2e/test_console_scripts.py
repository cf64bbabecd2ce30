"""The console scripts as a user runs them."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which(script, path=str(__import__("pathlib").Path(sys.executable).parent))
    assert exe, f"{script} is not installed in this environment"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("script", ["byok-keeper", "aliyun-local"])
def test_help_and_version(script):
    help_ = _run(script, "--help")
    assert help_.returncode == 0
    assert help_.stdout.lower().startswith(f"usage: {script}")
    version = _run(script, "--version")
    assert version.returncode == 0
    assert version.stdout.strip() in (f"{script} 0.1.0", f"{script}, version 0.1.0")


@pytest.mark.parametrize("script", ["byok-keeper", "aliyun-local"])
def test_unknown_command_is_one_line_and_exit_2(script):
    out = _run(script, "frobnicate")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1
    assert "No such command 'frobnicate'" in out.stderr or "invalid choice" in out.stderr
    assert "Traceback" not in out.stderr

"""Prometheus's own ``promtool`` (Debian's prometheus package, ``make promtool``) for the alert
rules: ``check rules`` and ``test rules``. In CI (``CI`` set) a missing promtool fails the test
loudly; elsewhere the test is skipped, saying why."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ALERTS = Path(__file__).resolve().parents[1] / "deploy" / "alerts"
RULES = ALERTS / "prometheus-rules.yml"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI: `make promtool` should have installed it")
        pytest.skip("promtool is not installed (run `make promtool`, as root, to install it)")
    return found


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )

"""The self-hosted daemon as a subprocess: restores a key on its schedule, keeps its jobs in
SQLite across restarts, and exits cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN, enroll_cli, run_cli

pytestmark = pytest.mark.slow


def _jobs(state_dir):
    with sqlite3.connect(state_dir / "jobs.sqlite") as db:
        return {row[0] for row in db.execute("select id from apscheduler_jobs")}


def _wait(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return False


def test_daemon_restores_keeps_jobs_and_stops_cleanly(cli_env, served, tmp_path):
    key = enroll_cli(cli_env)
    served.emulator.kms.delete_key_material(key["key_id"])
    state = tmp_path / "state"
    args = [
        str(BIN / "byok-keeper"),
        "daemon",
        "--schedule",
        "@every 2s",
        "--state-dir",
        str(state),
    ]
    proc = subprocess.Popen(args, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert _wait(lambda: served.key_view(key["key_id"])["state"] == "Enabled"), "not restored"
        # Core dumps are off for the process holding material (soft and hard limit 0).
        limits = Path(f"/proc/{proc.pid}/limits")
        if limits.exists():
            core = next(line for line in limits.read_text().splitlines() if "core file" in line)
            assert core.split()[-3:-1] == ["0", "0"], core
        assert _wait(lambda: f"renew:{key['key_id']}" in _jobs(state))
        health = json.loads((state / "health.json").read_text())
        assert health["outcome"] == "ok" and health["last_run"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "daemon_stopped" in err
    assert served.key_view(key["key_id"])["material_fingerprint"] == key["fingerprint"]

    # A restart finds its jobs where it left them.
    assert {"sweep", f"renew:{key['key_id']}"} <= _jobs(state)
    # Its log goes to a file so the test can wait for the start line, not a fixed time.
    log = tmp_path / "restart.log"
    with log.open("w") as err_file:
        proc = subprocess.Popen(args, env=cli_env, stdout=subprocess.DEVNULL, stderr=err_file)
        try:
            assert _wait(lambda: "daemon_started" in log.read_text()), "no daemon_started line"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    err = log.read_text()
    assert proc.returncode == 0, err[-2000:]
    started = next(json.loads(line) for line in err.splitlines() if "daemon_started" in line)
    assert f"renew:{key['key_id']}" in started["jobs"]


def test_daemon_once_and_bad_schedule(cli_env, served, tmp_path):
    key = enroll_cli(cli_env)
    served.emulator.kms.delete_key_material(key["key_id"])
    out = run_cli("daemon", "--once", "--state-dir", str(tmp_path / "state"), env=cli_env)
    assert out.returncode == 0, out.stderr
    assert served.key_view(key["key_id"])["state"] == "Enabled"
    assert json.loads((tmp_path / "state" / "health.json").read_text())["outcome"] == "ok"
    bad = run_cli("daemon", "--schedule", "every tuesday", "--state-dir", str(tmp_path / "s2"),
                  env=cli_env)  # fmt: skip
    assert bad.returncode == 2 and "invalid --schedule" in bad.stderr

"""Drills against the agent as users run it: console scripts, real processes, real signals.

- SIGKILL a sweep at random points (a bounded number of rounds); a re-run restores every key
  with identical material and the vault is byte-for-byte what enrollment left.
- Two sweeps at once, and a sweep beside an on-call ``reimport`` of the same key.
- aliyun-local itself killed and restarted (``--state``) in the middle of a sweep.

Kill points are drawn from a seeded generator (``BYOK_DRILL_SEED``) over the number of KMS calls
a full sweep makes, so a failure names a point that can be replayed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import HARDWARE_IMPORTS, snapshot
from tests.e2e.conftest import (
    BIN,
    cli_env_for,
    enroll_cli,
    run_cli,
    serve_subprocess,
    stop_served,
)
from tests.figures import key_ok, observe, record

pytestmark = pytest.mark.slow

SPECS = ("RSA_2048", "EC_P256", "EC_SM2", "EC_P256K")

# RSA_4096 and EC_SM2 keys here: their hardware instance takes imported material (not the
# emulator's default answer; tests/functional/test_fidelity.py covers both).
EMULATOR_SETTINGS = HARDWARE_IMPORTS
HARDWARE_SET = ("--set", "hardware_accepts_asymmetric_import=true")  # the same, for serve
KILL_ROUNDS = int(os.environ.get("BYOK_KILL_ROUNDS", "12"))
SEED = int(os.environ.get("BYOK_DRILL_SEED", "20261128"))


def _vault_dir(env: dict[str, str]) -> Path:
    return Path(env["BYOK_VAULT"].removeprefix("file://"))


def _sweep_process(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "byok-keeper"), "sweep", "--output", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for_calls(count_calls, target: int, proc: subprocess.Popen, limit: float = 60) -> int:
    """Poll until ``count_calls()`` reaches ``target`` or the process ends; return the count."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        seen = count_calls()
        if seen >= target or proc.poll() is not None:
            return seen
        time.sleep(0.002)
    raise AssertionError(f"no progress to {target} calls in {limit} s")


def _enroll_all(env) -> dict[str, str]:
    return {enroll_cli(env, spec)["key_id"]: spec for spec in SPECS}


def _assert_restored(view, keys: dict[str, str], fingerprints: dict[str, str]) -> None:
    for key_id in keys:
        state = view(key_id)
        assert state["state"] == "Enabled", (key_id, state["state"])
        assert state["material_fingerprint"] == fingerprints[key_id]


def test_sigkill_at_random_points_loses_nothing(served, cli_env):
    keys = _enroll_all(cli_env)
    fingerprints = {k: served.key_view(k)["material_fingerprint"] for k in keys}
    vault = _vault_dir(cli_env)
    enrolled = snapshot(vault)
    served.set_faults(latency_ms=8)  # room between calls for the kill to land anywhere

    def break_all():
        for key_id in keys:
            served.emulator.kms.delete_key_material(key_id)

    # How many KMS calls does a full sweep of these keys make?
    break_all()
    served.emulator.calls.clear()
    full = run_cli("sweep", env=cli_env)
    assert full.returncode == 0, full.stderr
    total = len(served.calls())
    rng = random.Random(SEED)
    points = sorted(rng.randint(1, total) for _ in range(KILL_ROUNDS))
    kills = 0
    for point in points:
        break_all()
        served.emulator.calls.clear()
        proc = _sweep_process(cli_env)
        try:
            seen = _wait_for_calls(lambda: len(served.calls()), point, proc)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
        killed = proc.returncode == -signal.SIGKILL
        kills += killed
        rerun = run_cli("sweep", "--output", "json", env=cli_env)
        unchanged = snapshot(vault) == enrolled  # no temp files either
        observed = [observe(served.key_view, k, fingerprints[k]) for k in keys]
        record("kill", after_calls=seen, planned=point, killed=killed, rerun_exit=rerun.returncode,
               keys=observed, vault_unchanged=unchanged, seed=SEED,
               full_sweep_calls=total)  # fmt: skip
        assert rerun.returncode == 0, (point, rerun.stdout, rerun.stderr)
        _assert_restored(served.key_view, keys, fingerprints)
        assert unchanged, f"vault changed after a kill at call {point}"
    served.set_faults()
    # The kills landed inside runs (a sweep that finished first proves nothing).
    assert kills >= KILL_ROUNDS - 1, f"only {kills} of {KILL_ROUNDS} rounds killed a running sweep"


def test_two_sweeps_and_an_on_call_reimport_at_once(served, cli_env):
    keys = _enroll_all(cli_env)
    fingerprints = {k: served.key_view(k)["material_fingerprint"] for k in keys}
    target = next(iter(keys))
    audit = Path(cli_env["BYOK_VAULT"].removeprefix("file://")).parent / "audit.jsonl"
    env = {**cli_env, "BYOK_AUDIT_FILE": str(audit)}
    served.set_faults(latency_ms=15)  # long enough for the three runs to overlap
    for key_id in keys:
        served.emulator.kms.delete_key_material(key_id)
    procs = [_sweep_process(env), _sweep_process(env)]
    procs.append(
        subprocess.Popen(
            [str(BIN / "byok-keeper"), "reimport", target, "--reason", "INC-9", "--output", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
    )
    results = [p.communicate(timeout=120) for p in procs]
    served.set_faults()
    imports = [
        c
        for c in served.calls()
        if c["action"] == "ImportKeyMaterial" and c["key_id"] == target and c["status"] == 200
    ]
    observed = [observe(served.key_view, k, fingerprints[k]) for k in keys]
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    record("drill", name="two sweeps + on-call reimport of the same key at once",
           result=f"exit codes {sorted(p.returncode for p in procs)}; {len(imports)} imports of "
           f"the shared key accepted; {sum(map(key_ok, observed))}/{len(observed)} keys Enabled "
           f"with the enrolled material; {len(events)} whole JSON lines in the shared "
           "audit file")  # fmt: skip
    for proc, (out, err) in zip(procs, results, strict=True):
        doc = json.loads(out) if out.strip().startswith("{") else {}
        failed = [o for o in doc.get("outcomes", [doc]) if o.get("outcome") == "failed"]
        assert proc.returncode == 0, " | ".join(f"{o['error_code']}: {o['reason']}" for o in failed)
        assert "Traceback" not in err
    _assert_restored(served.key_view, keys, fingerprints)
    # The runs really overlapped: more than one import of the target key was accepted.
    assert len(imports) >= 2
    # Three processes appended to one audit file: every line is whole JSON, one outcome line
    # each, and an intent line before each run's import (a run that found the key restored has
    # none; a run whose token another run's GetParametersForImport spent imports twice).
    assert len([e for e in events if e.get("key_id") == target and e["event"] == "key"]) == 3
    intents = [e for e in events if e.get("key_id") == target and e["event"] == "importing"]
    assert 1 <= len(intents) <= 3


def test_emulator_killed_and_restarted_mid_sweep(tmp_path):
    state = tmp_path / "state.json"
    first = serve_subprocess("--state", str(state), *HARDWARE_SET)
    restarted = None
    try:
        env = cli_env_for(first.endpoint, tmp_path)
        keys = _enroll_all(env)

        def view(key_id, server):
            return server.admin(f"keys/{key_id}")

        fingerprints = {k: view(k, first)["material_fingerprint"] for k in keys}
        from tests.functional.conftest import make_client

        kms = make_client(first)
        from alibabacloud_kms20160120 import models as km

        for key_id in keys:
            kms.delete_key_material(km.DeleteKeyMaterialRequest(key_id=key_id))
        first.admin("faults", {"latency_ms": 60})
        before = len(first.admin("calls"))
        proc = _sweep_process(env)
        # Wait until the sweep is past discovery and importing, then crash the emulator.
        _wait_for_calls(
            lambda: sum(
                1 for c in first.admin("calls")[before:] if c["action"] == "GetParametersForImport"
            ),
            1,
            proc,
        )
        first.proc.send_signal(signal.SIGKILL)
        first.proc.communicate(timeout=30)
        time.sleep(4)  # down long enough for the sweep's retries to run out
        restarted = serve_subprocess("--state", str(state), *HARDWARE_SET, port=first.port)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, 1), err
        assert "Traceback" not in err
        outcomes = json.loads(out)["outcomes"]
        failed = [o for o in outcomes if o["outcome"] == "failed"]
        assert failed, "the crash should have failed the keys in flight"
        for o in failed:
            assert o["reason"] and "\n" not in o["reason"]
        second = run_cli("sweep", "--output", "json", env=env)
        observed = [observe(lambda k: view(k, restarted), k, fingerprints[k]) for k in keys]
        record("drill", name="aliyun-local SIGKILLed mid-sweep, restarted from --state after 4 s",
               result=f"{len(failed)}/{len(keys)} keys in flight failed with a one-line reason; "
               f"the next sweep exited {second.returncode} and left "
               f"{sum(map(key_ok, observed))}/{len(keys)} keys Enabled with the enrolled "
               "material")  # fmt: skip
        assert second.returncode == 0, second.stderr
        _assert_restored(lambda k: view(k, restarted), keys, fingerprints)
    finally:
        for server in (first, restarted):
            if server is not None and server.proc.poll() is None:
                stop_served(server)

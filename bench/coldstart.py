"""Cold start: importing each FC handler module in a fresh interpreter (median of several runs)
beside importing the bare KMS SDK, and the first (cold) and second (warm) invocation's time.

    python bench/coldstart.py [--runs 7] [--json]

Target: handler import <= 0.2x the bare SDK import (the handlers import nothing heavy until
their first invocation).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

IMPORT_PROBE = (
    "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
)
INVOKE_PROBE = """
import json, sys, time, types
t0 = time.perf_counter()
import reimport.index as h
ctx = types.SimpleNamespace(request_id="r", region="cn-hangzhou", account_id="1",
                            credentials=None, function=None, service=None)
event = json.dumps({"key_id": sys.argv[1], "dry_run": True}).encode()
t1 = time.perf_counter()
first = json.loads(h.handler(event, ctx))
t2 = time.perf_counter()
second = json.loads(h.handler(event, ctx))
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_s": t2 - t1, "warm_s": t3 - t2,
                  "outcome": first["outcome"], "warm_outcome": second["outcome"]}))
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "functions"), str(ROOT / "shared")])
    return env


def import_time(module: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", IMPORT_PROBE.format(module=module)],
            capture_output=True,
            text=True,
            env=_env(),
            check=True,
        )
        times.append(float(out.stdout.strip()))
    return statistics.median(times)


def first_invocation() -> dict:
    from sweep import seed, serve  # bench/sweep.py

    with tempfile.TemporaryDirectory(prefix="byok-coldstart-") as tmp:
        root = Path(tmp)
        state = seed(root, 1, 0.0)
        key_id = json.loads(state.read_text())["kms"]["keys"][0]["key_id"]
        proc, endpoint = serve(state, 0, 1000, 1000)
        try:
            env = _env()
            env.update(
                BYOK_KMS_ENDPOINT=f"http://{endpoint}",
                BYOK_VAULT=f"file://{root / 'vault'}",
                BYOK_SEAL_KEY_FILE=str(root / "seal.key"),
                ALIBABA_CLOUD_ACCESS_KEY_ID="local",
                ALIBABA_CLOUD_ACCESS_KEY_SECRET="local-secret",
                BYOK_LOG_LEVEL="WARNING",
            )
            out = subprocess.run(
                [sys.executable, "-c", INVOKE_PROBE, key_id],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            return json.loads(out.stdout.strip().splitlines()[-1])
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sdk = import_time("alibabacloud_kms20160120.client", args.runs)
    report = {"sdk_import_s": round(sdk, 4)}
    for name in ("sweep", "reimport"):
        t = import_time(f"{name}.index", args.runs)
        report[f"{name}_import_s"] = round(t, 4)
        report[f"{name}_import_ratio"] = round(t / sdk, 3)
    report.update(
        {k: (round(v, 3) if isinstance(v, float) else v) for k, v in first_invocation().items()}
    )
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"bare KMS SDK import          {report['sdk_import_s'] * 1000:7.1f} ms")
    for name in ("sweep", "reimport"):
        print(
            f"{name + '.index':<28} {report[name + '_import_s'] * 1000:7.1f} ms  "
            f"({report[name + '_import_ratio']}x the SDK)"
        )
    print(
        f"first invocation (cold)      {report['first_s'] * 1000:7.1f} ms "
        f"(dry-run reimport: {report['outcome']})"
    )
    print(f"second invocation (warm)     {report['warm_s'] * 1000:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

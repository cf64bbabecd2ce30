"""The fc-async path at the quota bound, and what it costs: the sweep restores its part and
fans the rest out in batches to capped reimport instances on FC 3.0.

    python bench/fc_async.py [--keys 5000] [--due 0.1] [--latency-ms 20] [--read-qps 50]
                             [--write-qps 30] [--cap 5] [--inline-keys N]
                             [--cadence '0 0 0/6 * * *'] [--month] [--json]

Setup (not measured): the same seeded world as bench/sweep.py (N enrolled EC_P256 keys, a
fraction due, the others 30 days from expiry), ``aliyun-local serve`` with the injected latency
and the quotas, FC runtime python3.12 mapped to this interpreter, the code packaged for this
Python, and deploy.py's FC 3.0 deployment with its defaults (reserved concurrency sweep 2,
reimport ``--cap`` = 5, events 2; budgets split 40/40/20) except ``Dispatch=fc-async``,
``ReadQps``/``WriteQps`` equal to the quotas, a timer that never fires by itself, and
``SweepInterval`` = ``--cadence``: the sweep cadence the run simulates, the deployed default
schedule (every 6 hours), so the planner renews only what is due before the next sweep.
Measured: from firing the sweep's timer until every async invocation is done. Every instance of
every function at once stays inside the share, so throttled answers should be 0; every seeded
due key is imported and no other.

The **bound** is bench/sweep.py's: the largest of reads / R, writes / W and the latency chain.
The **budget bound** is the same over the part of the share the functions running here may
spend at once: one sweep instance (SweepBudgetPercent / SweepConcurrency) and every reimport
instance (ReimportBudgetPercent), 20 % + 40 % by default.

**Cost** (FC bills invocations and resource time): every FC invocation of the run and its
GB-seconds (each invocation's duration x its function's memory, as aliyun-local records them).
``--month`` seeds the due share of one sweep at the cadence with 1 % of the keys renewed a day
(``--due`` ignored) and multiplies the sweep's cost by the sweeps in 30 days.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# bench/sweep.py: the seeded world, the call log and the latency chain of the bound.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import sweep as bench_sweep
from byok_keeper.gateway.kms import QUOTA_CLASSES
from byok_keeper.planning.cadence import interval_seconds

ROOT = Path(__file__).resolve().parents[1]
CADENCE = "0 0 0/6 * * *"  # deploy/functions.yml's default Schedule
NEVER = "0 0 0 1 1 *"  # the timer fires by hand below
RENEWED_PER_DAY = 0.01  # --month: the share of keys re-established per day
SHARE_IN_USE = 0.40 / 2 + 0.40  # one sweep instance and every reimport instance (the defaults)
BIN = Path(sys.executable).parent
PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def admin(endpoint: str, method: str, path: str, body: dict | None = None):
    req = urllib.request.Request(
        f"http://{endpoint}/_local/{path}",
        method=method,
        data=json.dumps(body or {}).encode() if method == "POST" else None,
    )
    with urllib.request.urlopen(req, timeout=3600) as resp:
        return json.loads(resp.read())


def serve(state: Path, args) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = subprocess.Popen(
        [str(BIN / "aliyun-local"), "serve", "--seed-state", str(state),
         "--latency-ms", str(args.latency_ms), "--read-qps", str(args.read_qps),
         "--write-qps", str(args.write_qps), "--fc-runtime", f"python3.12={sys.executable}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    return proc, json.loads(proc.stdout.readline())["fc_endpoint"]


def package(output: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "package.py"), "--output", str(output),
         "--python-version", PY, "--cache", str(ROOT / "dist" / ".wheels")],
        check=True, capture_output=True, timeout=1200,
    )  # fmt: skip


def deploy(root: Path, code: Path, endpoint: str, args) -> None:
    params = {
        "KmsEndpoint": f"http://{endpoint}",
        "FcEndpoint": f"http://{endpoint}",
        "VaultUri": f"file://{root / 'vault'}",
        "SealKeyFile": str(root / "seal.key"),
        "Dispatch": "fc-async",
        "Schedule": NEVER,
        "SweepInterval": args.cadence,  # the cadence this run simulates
        "ReadQps": str(args.read_qps),
        "WriteQps": str(args.write_qps),
        "ReimportConcurrency": str(args.cap),
    }
    if args.inline_keys is not None:
        params["InlineKeys"] = str(args.inline_keys)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(ALIBABA_CLOUD_ACCESS_KEY_ID="local", ALIBABA_CLOUD_ACCESS_KEY_SECRET="local-secret")
    argv = [sys.executable, str(ROOT / "deploy" / "deploy.py"), "--code", str(code),
            "--region", "cn-hangzhou", "--account-id", "1234567890123456",
            "--fc-endpoint", f"http://{endpoint}"]  # fmt: skip
    for name, value in params.items():
        argv += ["--parameter", f"{name}={value}"]
    subprocess.run(argv, check=True, capture_output=True, env=env, timeout=300)


def cost(invocations: list[dict]) -> dict:
    """Invocations and GB-seconds (duration x memory), in all and per function."""
    per: dict[str, dict] = {}
    for i in invocations:
        f = per.setdefault(i["function"], {"invocations": 0, "gb_seconds": 0.0})
        f["invocations"] += 1
        f["gb_seconds"] += i["duration_ms"] / 1000 * i["memory_mb"] / 1024
    for f in per.values():
        f["gb_seconds"] = round(f["gb_seconds"], 3)
    return {
        "invocations": len(invocations),
        "gb_seconds": round(sum(f["gb_seconds"] for f in per.values()), 3),
        "per_function": dict(sorted(per.items())),
    }


def due_ids(state: Path) -> set[str]:
    """The seeded keys a sweep must restore: material deleted, expired or inside the window."""
    soon = time.time() + 8 * 86400  # the healthy ones expire in 30 days
    keys = json.loads(state.read_text())["kms"]["keys"]
    return {k["key_id"] for k in keys if not k["material"] or k["material_expire"] < soon}


def run(args) -> tuple[float, bool, list[dict], list[dict], set[str]]:
    with tempfile.TemporaryDirectory(prefix="byok-bench-fc-") as tmp:
        root = Path(tmp)
        state = bench_sweep.seed(root, args.keys, args.due)
        due = due_ids(state)
        code = root / "code.zip"
        package(code)
        proc, endpoint = serve(state, args)
        try:
            deploy(root, code, endpoint, args)
            started = time.monotonic()
            admin(endpoint, "POST", "fc/fire/byok-keeper-sweep/schedule")
            idle = admin(endpoint, "POST", "fc/wait", {"timeout": 3000})["idle"]
            wall = time.monotonic() - started
            log = bench_sweep.calls(endpoint)
            invocations = admin(endpoint, "GET", "fc/invocations")
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return wall, idle, log, invocations, due


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=5000)
    parser.add_argument("--due", type=float, default=0.1)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--read-qps", type=float, default=50.0)
    parser.add_argument("--write-qps", type=float, default=30.0)
    parser.add_argument("--cap", type=int, default=5, help="reimport's reserved concurrency")
    parser.add_argument("--inline-keys", type=int, help="InlineKeys (default: the deployment's)")
    parser.add_argument("--cadence", default=CADENCE, help="the sweep interval simulated")
    parser.add_argument("--month", action="store_true", help="one sweep of a month's cadence")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    sweeps_per_day = 86400 / interval_seconds(args.cadence)
    if args.month:
        args.due = RENEWED_PER_DAY / sweeps_per_day
    wall, idle, log, invocations, due = run(args)
    report = figures(args, wall, idle, log, invocations, due)
    if args.month:
        renewed = args.keys * RENEWED_PER_DAY * 30
        sweeps = round(sweeps_per_day * 30)
        report["month"] = {
            "sweeps": sweeps,
            "renewed": renewed,
            "invocations": report["invocations"] * sweeps,
            "gb_seconds": round(report["gb_seconds"] * sweeps, 1),
            "invocations_per_renewed_key": round(report["invocations"] * sweeps / renewed, 3),
        }
    if args.json:
        print(json.dumps(report))
        return 0
    show(args, report)
    return 0


def figures(args, wall, idle, log, invocations, due) -> dict:
    per_action: dict[str, int] = {}
    for c in log:
        per_action[c["action"]] = per_action.get(c["action"], 0) + 1
    reads = sum(n for a, n in per_action.items() if a in QUOTA_CLASSES["read"])
    writes = sum(n for a, n in per_action.items() if a in QUOTA_CLASSES["write"])
    chain = bench_sweep.CRITICAL_CHAIN * args.latency_ms / 1000
    bound = max(reads / args.read_qps, writes / args.write_qps, chain)
    budget_bound = max(bound / SHARE_IN_USE, chain)
    imported = [c["key_id"] for c in log
                if c["action"] == "ImportKeyMaterial" and c["status"] == 200]  # fmt: skip
    reimports = [i for i in invocations if i["function"] == "byok-keeper-reimport"]
    spent = cost(invocations)
    return {
        "keys": args.keys,
        "due": len(due),
        "cap": args.cap,
        "cadence": args.cadence,
        "idle": idle,
        "wall_s": round(wall, 2),
        "bound_s": round(bound, 2),
        "ratio": round(wall / bound, 3),
        "budget_bound_s": round(budget_bound, 2),
        "budget_ratio": round(wall / budget_bound, 3),
        "throttled": sum(1 for c in log if c["status"] == 429),
        "reimport_invocations": len(reimports),
        "reimport_ok": sum(1 for i in reimports if i["ok"]),
        "imports": per_action.get("ImportKeyMaterial", 0),
        "due_restored": len(due & set(imported)),
        "others_imported": len(set(imported) - due),
        "invocations": spent["invocations"],
        "gb_seconds": spent["gb_seconds"],
        "per_function": spent["per_function"],
        "invocations_per_restored_key": round(spent["invocations"] / max(1, len(due)), 4),
        "calls": dict(sorted(per_action.items())),
    }


def show(args, r: dict) -> None:
    print(
        f"fc-async sweep of {r['keys']} keys ({r['due']} due), cadence {r['cadence']!r}, "
        f"reimport cap {args.cap}, latency {args.latency_ms} ms, "
        f"quotas {args.read_qps:g}/{args.write_qps:g}"
    )
    print(
        f"  wall {r['wall_s']} s, bound {r['bound_s']} s -> ratio {r['ratio']}; budget bound "
        f"{r['budget_bound_s']} s -> {r['budget_ratio']}"
    )
    print(
        f"  due restored {r['due_restored']}/{r['due']}, other keys imported "
        f"{r['others_imported']}, imports {r['imports']}, throttled {r['throttled']}"
    )
    print(
        f"  cost: {r['invocations']} invocations ({r['invocations_per_restored_key']} per "
        f"restored key), {r['gb_seconds']} GB-s; {r['per_function']}"
    )
    if "month" in r:
        m = r["month"]
        print(
            f"  month ({m['sweeps']} sweeps, {m['renewed']:g} keys renewed): "
            f"{m['invocations']} invocations ({m['invocations_per_renewed_key']} per renewed "
            f"key), {m['gb_seconds']} GB-s"
        )
    print(f"  calls {r['calls']}")


if __name__ == "__main__":
    sys.exit(main())

"""The fc-async path at the quota bound: sweep fans out to capped reimport instances on FC 3.0.

    python bench/fc_async.py [--keys 5000] [--due 0.1] [--latency-ms 20] [--read-qps 50]
                             [--write-qps 30] [--cap 4] [--json]

Setup (not measured): the same seeded world as bench/sweep.py (N enrolled EC_P256 keys, a
fraction due), ``aliyun-local serve`` with the injected latency and the quotas, FC runtime
python3.12 mapped to this interpreter, the code packaged for this Python, and deploy.py's FC 3.0
deployment with ``Dispatch=fc-async``, ``ReadQps``/``WriteQps`` equal to the quotas and
``ReimportConcurrency`` = ``--cap``. Measured: from firing the sweep's timer until every async
invocation is done. Each of the ``--cap`` reimport instances spends 1/cap of the budget, so the
fleet never exceeds the quota: throttled answers should be 0.

The bound is bench/sweep.py's: the largest of reads / R, writes / W and the latency chain.
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
from byok_keeper.kms import QUOTA_CLASSES

ROOT = Path(__file__).resolve().parents[1]
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
        "Schedule": "0 0 0 1 1 *",  # fired by hand below
        "ReadQps": str(args.read_qps),
        "WriteQps": str(args.write_qps),
        "ReimportConcurrency": str(args.cap),
    }
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(ALIBABA_CLOUD_ACCESS_KEY_ID="local", ALIBABA_CLOUD_ACCESS_KEY_SECRET="local-secret")
    argv = [sys.executable, str(ROOT / "deploy" / "deploy.py"), "--code", str(code),
            "--region", "cn-hangzhou", "--account-id", "1234567890123456",
            "--fc-endpoint", f"http://{endpoint}"]  # fmt: skip
    for name, value in params.items():
        argv += ["--parameter", f"{name}={value}"]
    subprocess.run(argv, check=True, capture_output=True, env=env, timeout=300)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=5000)
    parser.add_argument("--due", type=float, default=0.1)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--read-qps", type=float, default=50.0)
    parser.add_argument("--write-qps", type=float, default=30.0)
    parser.add_argument("--cap", type=int, default=4, help="reimport's reserved concurrency")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="byok-bench-fc-") as tmp:
        root = Path(tmp)
        state = bench_sweep.seed(root, args.keys, args.due)
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
    per_action: dict[str, int] = {}
    for c in log:
        per_action[c["action"]] = per_action.get(c["action"], 0) + 1
    reads = sum(n for a, n in per_action.items() if a in QUOTA_CLASSES["read"])
    writes = sum(n for a, n in per_action.items() if a in QUOTA_CLASSES["write"])
    bound = max(
        reads / args.read_qps,
        writes / args.write_qps,
        bench_sweep.CRITICAL_CHAIN * args.latency_ms / 1000,
    )
    reimports = [i for i in invocations if i["function"] == "byok-keeper-reimport"]
    report = {
        "keys": args.keys,
        "due": round(args.keys * args.due),
        "cap": args.cap,
        "idle": idle,
        "wall_s": round(wall, 2),
        "bound_s": round(bound, 2),
        "ratio": round(wall / bound, 3),
        "throttled": sum(1 for c in log if c["status"] == 429),
        "reimport_invocations": len(reimports),
        "reimport_ok": sum(1 for i in reimports if i["ok"]),
        "imports": per_action.get("ImportKeyMaterial", 0),
        "calls": dict(sorted(per_action.items())),
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"fc-async sweep of {report['keys']} keys ({report['due']} due), reimport cap "
        f"{args.cap}, latency {args.latency_ms} ms, quotas {args.read_qps:g}/{args.write_qps:g}"
    )
    print(f"  wall {report['wall_s']} s, bound {report['bound_s']} s -> ratio {report['ratio']}")
    print(
        f"  reimport invocations {report['reimport_invocations']} (ok {report['reimport_ok']}), "
        f"imports {report['imports']}, throttled {report['throttled']}"
    )
    print(f"  calls {report['calls']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

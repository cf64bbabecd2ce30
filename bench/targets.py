"""Many targets at once (issue 16): does sweeping T targets cost more than sweeping one?

    python bench/targets.py [--targets 4] [--keys 1250] [--due 0.1] [--latency-ms 20]
                            [--read-qps 50] [--write-qps 30] [--concurrency 8] [--json]

Setup (not measured), with bench/sweep.py's seeding: two accounts in two regions of
``aliyun-local serve --account A --account B --region R1 --region R2``, ``--keys`` keys per
target (account, region), ``--due`` of them due, each target's envelopes in its own vault. The
same latency and quotas apply to every (account, region), as KMS's do. The targets of the second
account are reached through STS AssumeRole. ``byok-keeper sweep`` runs once over all targets.

The **single-target bound** is bench/sweep.py's bound (reads / R, writes / W, the latency chain)
of each target's own calls; targets have their own quotas, so the best possible wall time for
all of them is the largest of those bounds. The goal is wall <= 1.1 x that bound, 0 throttled.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bench/sweep.py: the seeding, the call log and the bound (this script's directory is on the path)
import sweep as bench_sweep
from aliyun_local.server import STATE_FORMAT
from byok_keeper.vault.sealers import new_seal_key_file

BIN = Path(sys.executable).parent
ACCOUNTS = ("1111111111111111", "2222222222222222")
REGIONS = ("cn-hangzhou", "eu-central-1")


def scopes(n: int) -> list[tuple[str, str, str]]:
    """(name, account, region) of ``n`` targets over the two accounts and two regions."""
    pairs = [(a, r) for a in ACCOUNTS for r in REGIONS]
    if not 1 <= n <= len(pairs):
        raise SystemExit(f"--targets must be 1..{len(pairs)}")
    return [(f"t{i}", a, r) for i, (a, r) in enumerate(pairs[:n])]


def seed_all(root: Path, targets, keys: int, due: float) -> Path:
    new_seal_key_file(root / "seal.key")
    primary, others = None, {}
    for name, account, region in targets:
        backend = bench_sweep.seed_scope(
            root, keys, due, region=region, account_id=account, vault_dir=f"vault-{name}"
        )
        if (account, region) == (ACCOUNTS[0], REGIONS[0]):
            primary = backend.to_state()
        else:
            others[f"{account}/{region}"] = backend.to_state()
    state = {"format": STATE_FORMAT, "clock_offset": 0.0, "kms": primary or {}}
    state["kms_scopes"] = others
    path = root / "state.json"
    path.write_text(json.dumps(state))
    return path


def serve(state: Path, args) -> tuple[subprocess.Popen, dict]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    where = [x for a in ACCOUNTS for x in ("--account", a)]
    where += [x for r in REGIONS for x in ("--region", r)]
    proc = subprocess.Popen(
        [str(BIN / "aliyun-local"), "serve", "--seed-state", str(state), *where,
         "--latency-ms", str(args.latency_ms), "--read-qps", str(args.read_qps),
         "--write-qps", str(args.write_qps)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    return proc, json.loads(proc.stdout.readline())


def config(root: Path, targets, info: dict) -> Path:
    lines = [f'seal_key_file = "{root / "seal.key"}"']
    for name, account, region in targets:
        lines += ["[[targets]]", f'name = "{name}"', f'region = "{region}"',
                  f'account_id = "{account}"',
                  f'kms_endpoint = "http://{info["kms_endpoints"][region]}"',
                  f'vault = "file://{root / f"vault-{name}"}"']  # fmt: skip
        if account != ACCOUNTS[0]:
            lines += [f'role_arn = "acs:ram::{account}:role/byok-keeper"',
                      f'sts_endpoint = "http://{info["sts_endpoint"]}"']  # fmt: skip
    path = root / "byok.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(args) -> dict:
    targets = scopes(args.targets)
    with tempfile.TemporaryDirectory(prefix="byok-bench-targets-") as tmp:
        root = Path(tmp)
        state = seed_all(root, targets, args.keys, args.due)
        proc, info = serve(state, args)
        try:
            env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
            env.update(
                BYOK_CONFIG=str(config(root, targets, info)),
                ALIBABA_CLOUD_ACCESS_KEY_ID="local",
                ALIBABA_CLOUD_ACCESS_KEY_SECRET="local-secret",
                BYOK_READ_QPS=str(args.read_qps),
                BYOK_WRITE_QPS=str(args.write_qps),
                BYOK_LOG_LEVEL="WARNING",
            )
            started = time.monotonic()
            sweep = subprocess.Popen(
                [str(BIN / "byok-keeper"), "sweep", "--output", "json",
                 "--concurrency", str(args.concurrency)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            )  # fmt: skip
            out = sweep.stdout.read()
            _pid, status, usage = os.wait4(sweep.pid, 0)
            wall = time.monotonic() - started
            log = bench_sweep.calls(info["kms_endpoint"])
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"sweep failed with exit code {os.waitstatus_to_exitcode(status)}")
    result = json.loads(out)
    per_target = {}
    for name, account, region in targets:
        mine = [c for c in log if (c.get("account_id"), c.get("region")) == (account, region)]
        per_target[name] = round(bench_sweep.quota_bound(mine, args)["bound"], 2)
    bound = max(per_target.values())
    return {
        "targets": len(targets),
        "keys_per_target": args.keys,
        "due_per_target": round(args.keys * args.due),
        "latency_ms": args.latency_ms,
        "read_qps": args.read_qps,
        "write_qps": args.write_qps,
        "concurrency": args.concurrency,
        "wall_s": round(wall, 2),
        "single_target_bound_s": bound,
        "bounds_s": per_target,
        "ratio": round(wall / bound, 3),
        "throttled": sum(1 for c in log if c["status"] == 429),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "summary": result["summary"],
        "targets_ok": all(t["ok"] for t in result["targets"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=4)
    parser.add_argument("--keys", type=int, default=1250, help="keys per target")
    parser.add_argument("--due", type=float, default=0.1)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--read-qps", type=float, default=50.0)
    parser.add_argument("--write-qps", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    report = run(args)
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"sweep of {report['targets']} targets x {args.keys} keys ({report['due_per_target']} "
        f"due each), latency {args.latency_ms} ms, quotas {args.read_qps:g}/{args.write_qps:g} "
        f"QPS per target, concurrency {args.concurrency} per target"
    )
    print(
        f"  wall {report['wall_s']} s, single-target bound {report['single_target_bound_s']} s "
        f"-> ratio {report['ratio']} (goal <= 1.1)"
    )
    print(
        f"  {report['summary']}, throttled {report['throttled']}, "
        f"peak RSS {report['peak_rss_mb']} MB, every target ok: {report['targets_ok']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

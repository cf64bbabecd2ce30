"""Many targets at once (issue 16): does sweeping T targets cost more than sweeping one?

    python bench/targets.py [--targets 4] [--keys 1250] [--due 0.1] [--latency-ms 20]
                            [--read-qps 50] [--write-qps 30] [--concurrency 8] [--json]

Setup (not measured), with bench/sweep.py's seeding: targets over two accounts and two regions,
``--keys`` keys per target (account, region), ``--due`` of them due, each target's envelopes in
its own vault. Every target is served by its own ``aliyun-local serve --account A --account B
--region R`` (``--emulators per-target``, the default: each region's KMS is its own service in
the cloud, and one Python process serving them all measures the emulator's interpreter, not the
agent; ``--emulators one`` runs a single process for comparison), with the same latency and
quotas. The targets of the second account are reached through STS AssumeRole. One
``byok-keeper sweep`` runs over all targets. The report adds the CPU seconds of the sweep and of
the emulators during it.

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
from aliyun_local.emulator import STATE_FORMAT
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


def seed_all(root: Path, targets, keys: int, due: float) -> dict[str, dict]:
    """Every target's keys and vault; returns each target's emulator state."""
    new_seal_key_file(root / "seal.key")
    return {
        name: bench_sweep.seed_scope(
            root, keys, due, region=region, account_id=account, vault_dir=f"vault-{name}"
        ).to_state()
        for name, account, region in targets
    }


def state_file(path: Path, targets, states: dict[str, dict], region: str) -> Path:
    """An emulator state of ``targets`` for a server whose first region is ``region`` (the first
    account's scope there is the primary; every other scope goes under kms_scopes)."""
    primary, others = {}, {}
    for name, account, where in targets:
        if (account, where) == (ACCOUNTS[0], region):
            primary = states[name]
        else:
            others[f"{account}/{where}"] = states[name]
    doc = {"format": STATE_FORMAT, "clock_offset": 0.0, "kms": primary, "kms_scopes": others}
    path.write_text(json.dumps(doc))
    return path


def serve(state: Path, regions, args, targets_served: int = 1) -> tuple[subprocess.Popen, dict]:
    """One aliyun-local for ``targets_served`` targets. Its RSA wrapping keys (one per import)
    are made before it serves: KMS bears that cost on its side, and four emulators making them
    during the run would time this machine's two cores, not the agent (issue 16's figure)."""
    pool = int(args.keys * args.due * targets_served * 1.1) + 16
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    where = [x for a in ACCOUNTS for x in ("--account", a)]
    where += [x for r in regions for x in ("--region", r)]
    proc = subprocess.Popen(
        [str(BIN / "aliyun-local"), "serve", "--seed-state", str(state), *where,
         "--latency-ms", str(args.latency_ms), "--read-qps", str(args.read_qps),
         "--write-qps", str(args.write_qps), "--wrapping-key-pool", str(pool)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    return proc, json.loads(proc.stdout.readline())


def start_emulators(root: Path, targets, states, args) -> dict[str, tuple]:
    """target name -> (process, its JSON line). ``--emulators per-target``: one aliyun-local
    per target (as each region's KMS is its own service; one Python process serving them all
    would measure the emulator's interpreter, not the agent); ``one``: a single process."""
    if args.emulators == "one":
        state = state_file(root / "state.json", targets, states, REGIONS[0])
        served = serve(state, REGIONS, args, targets_served=len(targets))
        return {name: served for name, _a, _r in targets}
    out = {}
    for target in targets:
        name, _account, region = target
        state = state_file(root / f"state-{name}.json", [target], states, region)
        out[name] = serve(state, [region], args)
    return out


def config(root: Path, targets, served: dict[str, tuple]) -> Path:
    lines = [f'seal_key_file = "{root / "seal.key"}"']
    for name, account, region in targets:
        info = served[name][1]
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args) -> dict:
    targets = scopes(args.targets)
    with tempfile.TemporaryDirectory(prefix="byok-bench-targets-") as tmp:
        root = Path(tmp)
        served = start_emulators(root, targets, seed_all(root, targets, args.keys, args.due), args)
        procs = {id(p): p for p, _info in served.values()}
        try:
            cpu_before = {pid: cpu_seconds(p.pid) for pid, p in procs.items()}
            wall, usage, out = sweep(config(root, targets, served), args)
            emulator_cpu = sum(cpu_seconds(p.pid) - cpu_before[pid] for pid, p in procs.items())
            logs = {
                name: bench_sweep.calls(info["kms_endpoint"]) for name, (_p, info) in served.items()
            }
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait(timeout=60)
    result = json.loads(out)
    per_target, throttled = {}, set()
    for name, account, region in targets:
        mine = [
            c
            for c in logs[name]
            if (c.get("account_id"), c.get("region")) in ((account, region), (None, None))
        ]
        per_target[name] = round(bench_sweep.quota_bound(mine, args)["bound"], 2)
        throttled |= {id(c) for c in mine if c["status"] == 429}
    bound = max(per_target.values())
    return {
        "targets": len(targets),
        "emulators": args.emulators,
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
        "throttled": len(throttled),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "sweep_cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "emulator_cpu_s": round(emulator_cpu, 1),
        "summary": result["summary"],
        "targets_ok": all(t["ok"] for t in result["targets"]),
    }


def sweep(config_path: Path, args):
    """``byok-keeper sweep`` over every target, as its own process: (wall, rusage, stdout)."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(
        BYOK_CONFIG=str(config_path),
        ALIBABA_CLOUD_ACCESS_KEY_ID="local",
        ALIBABA_CLOUD_ACCESS_KEY_SECRET="local-secret",
        BYOK_READ_QPS=str(args.read_qps),
        BYOK_WRITE_QPS=str(args.write_qps),
        BYOK_LOG_LEVEL="WARNING",
    )
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(BIN / "byok-keeper"), "sweep", "--output", "json",
         "--concurrency", str(args.concurrency)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"sweep failed with exit code {os.waitstatus_to_exitcode(status)}")
    return wall, usage, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=4)
    parser.add_argument("--keys", type=int, default=1250, help="keys per target")
    parser.add_argument("--due", type=float, default=0.1)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--read-qps", type=float, default=50.0)
    parser.add_argument("--write-qps", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--emulators", choices=["per-target", "one"], default="per-target")
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
    print(
        f"  CPU: sweep {report['sweep_cpu_s']} s, aliyun-local {report['emulator_cpu_s']} s "
        f"({args.emulators} emulator process{'es' if args.emulators == 'per-target' else ''})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

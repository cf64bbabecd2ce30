"""The agent at scale: does its cost grow linearly from 5,000 to 50,000 keys?

    python bench/scale.py [--keys 5000 50000] [--due 0.01] [--concurrency 8] [--no-sweeps]
                          [--no-plan] [--no-report] [--hot] [--json]

Per fleet size: bench/sweep.py's seeded world (timed: the seeding itself must stay quick),
aliyun-local with no injected latency, quotas of 1,000,000 QPS and one RSA wrapping key made
ahead per due key; the agent's budget for every class at the most it accepts (1,000 QPS), so
the agent's CPU, not KMS, is the limit. Then each ``byok-keeper`` command in its own process,
under bench/cpu_sample.py (the CPU spent inside the Alibaba Cloud SDK apart):

1. ``sweep --dry-run`` of a vault of one healthy key per worker: the fixed cost of one run
   (interpreter, imports, each worker's SDK client);
2. ``sweep``: the due keys (``--due``, split between deleted, expired and renewing material)
   re-established, every other key healthy;
3. ``sweep`` again: every key healthy;
4. ``plan`` (every key's envelope and tags read, as on-call sees it);
5. ``report --html``, and the page opened by headless Chromium (``make chromium``).

CPU per healthy key = (3 - 1) / N; per re-established key = (2 - 3) / due plus the healthy
figure (a due key is described too). ``plan`` and ``report`` per key = (run - 1) / N. Peak RSS
is the largest of the runs. The ratios: CPU per key at the largest size / at the smallest
(linear is 1.0; the goal is within 10 %), peak RSS / 250 MB, Chromium's open time / 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import sweep as bench_sweep

ROOT = Path(__file__).resolve().parents[1]
UNLIMITED_QPS = 1_000_000.0  # aliyun-local's quotas
AGENT_QPS = 1000.0  # the agent's budget: the largest it accepts
RSS_GOAL_MB = 250.0
CHROMIUM_GOAL_S = 10.0


def _sampled(run_dir: Path, name: str, argv: list[str], env: dict, ok=(0,)) -> dict:
    """``byok-keeper ARGV`` under the CPU sampler; its figures with the SDK's CPU share."""
    out = run_dir / f"{name}.sample.json"
    sampler = [sys.executable, str(Path(__file__).with_name("cpu_sample.py")), str(out), "--"]
    run = bench_sweep.run_cli([*sampler, *argv], env, ok=ok)
    sample = json.loads(out.read_text())
    run["sdk_cpu_s"] = sample["sdk_cpu_s"]
    run["rss_mb"] = sample["rss_mb"]  # its own peak, not what the fork inherited (wait4's)
    run["hot"] = sample["hot"]
    return run


def _open_in_chromium(page: Path) -> float:
    sys.path.insert(0, str(ROOT))
    from tests.chromium import screenshot

    started = time.perf_counter()
    screenshot(page, page.with_suffix(".png"), width=1240, height=900, timeout=120)
    return time.perf_counter() - started


def one_size(args, n: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="byok-bench-scale-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        state = bench_sweep.seed(root, n, args.due)
        seeded = time.perf_counter() - started
        due = round(n * args.due)
        proc, endpoint = bench_sweep.serve(state, 0.0, UNLIMITED_QPS, UNLIMITED_QPS, pool=due)
        try:
            return _runs(args, root, endpoint, n, due) | {"seed_s": round(seeded, 1)}
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def _runs(args, root: Path, endpoint: str, n: int, due: int) -> dict:
    env = bench_sweep.cli_env(root, endpoint, AGENT_QPS, AGENT_QPS)
    env.update({f"BYOK_{c}_QPS": str(AGENT_QPS) for c in ("TAGS", "CRYPTO", "CREATE")})
    sweep = ["sweep", "--output", "json", "--concurrency", str(args.concurrency)]
    small = root / "small"  # one key per worker: every worker's client made, as in a run
    small.mkdir(mode=0o700)
    for envelope in sorted((root / "vault").glob("*.json"))[-args.concurrency :]:
        shutil.copy2(envelope, small / envelope.name)
    small_env = env | {"BYOK_VAULT": f"file://{small}"}  # a dry run: KMS changes for no key
    runs = {"fixed": _sampled(root, "fixed", [*sweep, "--dry-run"], small_env, ok=(0, 1))}
    restored = None
    if not args.no_sweeps:
        runs["due"] = _sampled(root, "due", sweep, env, ok=(0, 1))
        summary = json.loads(runs["due"]["stdout"])["summary"]
        restored = summary.get("restored", 0) + summary.get("renewed", 0)
        runs["healthy"] = _sampled(root, "healthy", sweep, env, ok=(0, 1))
    if not args.no_plan:
        runs["plan"] = _sampled(root, "plan", ["plan", "--output", "json"], env, ok=(0, 3, 4))
    page = root / "report.html"
    chromium_s = None
    if not args.no_report:
        runs["report"] = _sampled(root, "report", ["report", "--html", str(page)], env)
        chromium_s = _open_in_chromium(page)
    fixed = runs["fixed"]
    per_key = {
        name: (runs[name]["cpu_s"] - fixed["cpu_s"]) / n * 1000
        for name in ("healthy", "plan", "report")
        if name in runs
    }
    sdk_per_key = {
        name: (runs[name]["sdk_cpu_s"] - fixed["sdk_cpu_s"]) / n * 1000 for name in per_key
    }
    if "due" in runs:  # a re-established key: its extra CPU over a healthy one, plus that
        extra = (runs["due"]["cpu_s"] - runs["healthy"]["cpu_s"]) / max(due, 1) * 1000
        extra_sdk = (runs["due"]["sdk_cpu_s"] - runs["healthy"]["sdk_cpu_s"]) / max(due, 1)
        per_key["reestablished"] = extra + per_key["healthy"]
        sdk_per_key["reestablished"] = extra_sdk * 1000 + sdk_per_key["healthy"]
    return {
        "keys": n,
        "due": due,
        "restored": restored,
        "wall_s": {k: round(r["wall_s"], 2) for k, r in runs.items()},
        "cpu_s": {k: round(r["cpu_s"], 2) for k, r in runs.items()},
        "cpu_ms_per_key": {k: round(v, 3) for k, v in per_key.items()},
        "sdk_ms_per_key": {k: round(v, 3) for k, v in sdk_per_key.items()},
        "peak_rss_mb": {k: round(r["rss_mb"], 1) for k, r in runs.items()},
        "page_kib": round(page.stat().st_size / 1024) if page.exists() else None,
        "chromium_s": round(chromium_s, 2) if chromium_s is not None else None,
        "hot": {k: r["hot"][:8] for k, r in runs.items()} if args.hot else None,
    }


def _ratios(sizes: list[dict]) -> dict:
    small, large = sizes[0], sizes[-1]
    cpu = {
        k: round(large["cpu_ms_per_key"][k] / small["cpu_ms_per_key"][k], 3)
        for k in small["cpu_ms_per_key"]
        if small["cpu_ms_per_key"][k] > 0 and k in large["cpu_ms_per_key"]
    }
    rss = max(max(s["peak_rss_mb"].values()) for s in sizes)
    shots = [s["chromium_s"] for s in sizes if s["chromium_s"] is not None]
    return {
        "cpu_per_key_large_vs_small": cpu,
        "peak_rss_vs_goal": round(rss / RSS_GOAL_MB, 3),
        "chromium_vs_goal": round(max(shots) / CHROMIUM_GOAL_S, 3) if shots else None,
    }


def _print(sizes: list[dict], ratios: dict) -> None:
    for s in sizes:
        cpu, sdk = s["cpu_ms_per_key"], s["sdk_ms_per_key"]
        print(f"{s['keys']:,} keys ({s['due']:,} due, {s['restored']} restored): "
              f"seeded in {s['seed_s']} s; wall {s['wall_s']}")  # fmt: skip
        for k in cpu:
            print(f"  CPU per {k} key: {cpu[k]} ms (inside the SDK {sdk[k]} ms)")
        print(f"  peak RSS {s['peak_rss_mb']} MB")
        if s["chromium_s"] is not None:
            print(f"  report page {s['page_kib']} KiB, opened by Chromium in {s['chromium_s']} s")
        for k, hot in (s["hot"] or {}).items():
            print(f"  hot in {k}: " + ", ".join(f"{w} {c}s" for w, c in hot))
    print(f"CPU per key, {sizes[-1]['keys']:,} vs {sizes[0]['keys']:,} keys (goal <= 1.10): "
          f"{ratios['cpu_per_key_large_vs_small']}")  # fmt: skip
    print(f"peak RSS vs 250 MB: {ratios['peak_rss_vs_goal']}; "
          f"Chromium open time vs 10 s: {ratios['chromium_vs_goal']}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--due", type=float, default=0.01)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-sweeps", action="store_true", help="skip the two sweeps")
    parser.add_argument("--no-plan", action="store_true", help="skip plan")
    parser.add_argument("--no-report", action="store_true", help="skip report --html")
    parser.add_argument("--hot", action="store_true", help="print each run's hottest functions")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if any(n < 1 for n in args.keys) or not 0 < args.due <= 1:
        parser.error("--keys >= 1 and 0 < --due <= 1")
    os.environ.pop("BYOK_DEBUG", None)
    sizes = [one_size(args, n) for n in sorted(args.keys)]
    ratios = _ratios(sizes)
    if args.json:
        print(json.dumps({"sizes": sizes, **ratios}))
    else:
        _print(sizes, ratios)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The events path: how fast a deletion comes back, what it costs, and the quota the agent spends.

    python bench/events.py [--keys 200] [--deletions 20] [--latency-ms 20] [--event-delay 0.2]
                           [--fleet 5000] [--json]

Setup (not measured): bench/sweep.py's seeded world (N enrolled, healthy EC_P256 keys, 30-day
leases), ``aliyun-local serve`` with the injected latency, the documented quotas and the
ActionTrail -> EventBridge delivery delay, the code packaged for this Python and deployed by
deploy.py to aliyun-local's FC 3.0 with its defaults (events function and trigger, ``inline``
sweep) except a timer that never fires by itself.

Measured:

(a) **restore latency**: ``--deletions`` keys, one after another, DeleteKeyMaterial through the
    KMS SDK; the time from the DeleteKeyMaterial record to the record of the events function's
    ImportKeyMaterial (the key is Enabled from that answer on), both stamped by aliyun-local's
    ActionTrail emitter (millisecond wall clock). Median and p95; goal p95 <= 5 s.
(b) **read QPS at ``--fleet`` keys**: the sweep's timer fired once on the healthy fleet; its
    read-class calls per key, times the fleet, over the sweep interval, plus renewals (one
    re-establishment per key per lease minus renewal window, at the measured per-restore reads).
    Today's figure is the same fleet at one DescribeKey per key every 15 minutes. Deletion
    events add their per-event reads only when deletions happen (reported per event, not
    assumed as a rate). Goal <= 0.5 QPS (1 % of the 50 QPS read quota).
(c) **calls per deletion event**: every KMS call between a deletion and the settled queue,
    by action, and whether any other key was touched (goal: none, the one key's
    re-establishment only); and its **cost**: the FC invocations and GB-seconds (duration x
    memory, as aliyun-local records each invocation) between the deletion and the settled queue.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fc_async as bench_fc
import sweep as bench_sweep
from byok_keeper.gateway.kms import QUOTA_CLASSES

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SIX_HOURS, FIFTEEN_MINUTES = 6 * 3600, 15 * 60
LEASE_DAYS, WINDOW_DAYS = 30, 7  # the seeded keys' lease, the default renewal window
READ_QUOTA = 50.0


def serve(state: Path, args) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = subprocess.Popen(
        [str(BIN / "aliyun-local"), "serve", "--seed-state", str(state),
         "--latency-ms", str(args.latency_ms), "--read-qps", "50", "--write-qps", "30",
         "--event-delay", str(args.event_delay),
         "--fc-runtime", f"python3.12={sys.executable}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    return proc, json.loads(proc.stdout.readline())["fc_endpoint"]


def deploy(root: Path, code: Path, endpoint: str) -> None:
    params = {
        "KmsEndpoint": f"http://{endpoint}",
        "FcEndpoint": f"http://{endpoint}",
        "VaultUri": f"file://{root / 'vault'}",
        "SealKeyFile": str(root / "seal.key"),
        "Schedule": "0 0 0 1 1 *",  # fired by hand below, once
        "SweepInterval": "0 0 0/6 * * *",  # the default schedule's cadence
    }
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(ALIBABA_CLOUD_ACCESS_KEY_ID="local", ALIBABA_CLOUD_ACCESS_KEY_SECRET="local-secret")
    argv = [sys.executable, str(ROOT / "deploy" / "deploy.py"), "--code", str(code),
            "--region", "cn-hangzhou", "--account-id", "1234567890123456",
            "--fc-endpoint", f"http://{endpoint}"]  # fmt: skip
    for name, value in params.items():
        argv += ["--parameter", f"{name}={value}"]
    subprocess.run(argv, check=True, capture_output=True, env=env, timeout=300)


def kms_client(endpoint: str):
    from alibabacloud_kms20160120.client import Client
    from alibabacloud_tea_openapi.models import Config

    return Client(Config(access_key_id="local", access_key_secret="local-secret",
                         endpoint=endpoint, protocol="http", region_id="cn-hangzhou"))  # fmt: skip


def settle(endpoint: str) -> None:
    bench_fc.admin(endpoint, "POST", "events/wait", {"timeout": 300})
    bench_fc.admin(endpoint, "POST", "fc/wait", {"timeout": 300})


def _at(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def _reads(calls: list[dict]) -> int:
    return sum(1 for c in calls if c["action"] in QUOTA_CLASSES["read"])


def _counts(calls: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in calls:
        if c["action"] != "InvokeFunction":
            out[c["action"]] = out.get(c["action"], 0) + 1
    return out


def deletions(endpoint: str, key_ids: list[str]) -> tuple[list[float], list[dict], bool, dict]:
    """Delete each key's material in turn; the restore latencies, each event's calls, whether
    another key was touched, and the FC cost of every deletion (``bench_fc.cost``)."""
    from alibabacloud_kms20160120 import models as km

    kms = kms_client(endpoint)
    latencies, per_event, others_touched = [], [], False
    invoked = len(bench_fc.admin(endpoint, "GET", "fc/invocations"))
    for key_id in key_ids:
        before = len(bench_sweep.calls(endpoint))
        kms.delete_key_material(km.DeleteKeyMaterialRequest(key_id=key_id))
        settle(endpoint)
        spent = bench_sweep.calls(endpoint)[before + 1 :]  # after the deletion itself
        others_touched |= any(c["key_id"] not in (key_id, None) for c in spent)
        per_event.append(_counts(spent))
        trail = [e for e in bench_fc.admin(endpoint, "GET", "events") if e["key_id"] == key_id]
        deleted = next(e for e in trail if e["event_name"] == "DeleteKeyMaterial")
        imported = [e for e in trail if e["event_name"] == "ImportKeyMaterial"][-1]
        latencies.append(_at(imported["emitted_at"]) - _at(deleted["emitted_at"]))
        state = kms.describe_key(km.DescribeKeyRequest(key_id=key_id)).body.key_metadata
        assert state.key_state == "Enabled", (key_id, state.key_state)
    cost = bench_fc.cost(bench_fc.admin(endpoint, "GET", "fc/invocations")[invoked:])
    return latencies, per_event, others_touched, cost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200, help="enrolled keys in the emulator")
    parser.add_argument("--deletions", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--event-delay", type=float, default=0.2)
    parser.add_argument("--fleet", type=int, default=5000, help="fleet size the QPS is for")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="byok-bench-events-") as tmp:
        root = Path(tmp)
        state = bench_sweep.seed(root, args.keys, 0.0)
        code = root / "code.zip"
        bench_fc.package(code)
        proc, endpoint = serve(state, args)
        try:
            deploy(root, code, endpoint)
            settle(endpoint)
            key_ids = sorted(p.stem for p in (root / "vault").glob("key-*.json"))
            before = len(bench_sweep.calls(endpoint))
            bench_fc.admin(endpoint, "POST", "fc/fire/byok-keeper-sweep/schedule")
            settle(endpoint)
            sweep_calls = bench_sweep.calls(endpoint)[before:]
            latencies, per_event, others, cost = deletions(endpoint, key_ids[: args.deletions])
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    report = figures(args, sweep_calls, latencies, per_event, others)
    report["invocations_per_deletion"] = round(cost["invocations"] / len(latencies), 3)
    report["gb_seconds_per_deletion"] = round(cost["gb_seconds"] / len(latencies), 3)
    report["fc_cost"] = cost
    if args.json:
        print(json.dumps(report))
    else:
        show(report)
    return 0


def figures(args, sweep_calls, latencies, per_event, others) -> dict:
    reads_per_key = _reads(sweep_calls) / args.keys
    restore_reads = statistics.mean(
        sum(n for a, n in e.items() if a in QUOTA_CLASSES["read"]) for e in per_event
    )
    renewals_per_s = args.fleet / ((LEASE_DAYS - WINDOW_DAYS) * 86400)
    sweep_qps = args.fleet * reads_per_key / SIX_HOURS
    new_qps = sweep_qps + renewals_per_s * restore_reads
    today = args.fleet * 1 / FIFTEEN_MINUTES
    p95 = latencies[0]
    if len(latencies) > 1:
        p95 = statistics.quantiles(latencies, n=20, method="inclusive")[-1]
    calls_per_event: dict[str, float] = {}
    for e in per_event:
        for a, n in e.items():
            calls_per_event[a] = calls_per_event.get(a, 0) + n / len(per_event)
    return {
        "deletions": len(latencies),
        "event_delay_s": args.event_delay,
        "latency_ms": args.latency_ms,
        "restore_median_s": round(statistics.median(latencies), 3),
        "restore_p95_s": round(p95, 3),
        "restore_max_s": round(max(latencies), 3),
        "p95_to_goal": round(p95 / 5.0, 3),
        "sweep_reads_per_key": round(reads_per_key, 3),
        "sweep_calls": _counts(sweep_calls),
        "fleet": args.fleet,
        "read_qps_today": round(today, 3),
        "read_qps_sweep_6h": round(sweep_qps, 4),
        "read_qps_renewals": round(renewals_per_s * restore_reads, 4),
        "read_qps_new": round(new_qps, 4),
        "read_qps_to_goal": round(new_qps / 0.5, 3),
        "read_quota_share_new": round(new_qps / READ_QUOTA, 5),
        "reduction": round(today / new_qps, 1),
        "calls_per_deletion": {a: round(n, 2) for a, n in sorted(calls_per_event.items())},
        "reads_per_deletion": round(restore_reads, 2),
        "other_keys_touched": others,
    }


def show(r: dict) -> None:
    print(
        f"(a) DeleteKeyMaterial -> Enabled through the events path, {r['deletions']} deletions "
        f"(delivery delay {r['event_delay_s']} s, KMS latency {r['latency_ms']} ms):"
    )
    print(
        f"    median {r['restore_median_s']} s, p95 {r['restore_p95_s']} s, "
        f"max {r['restore_max_s']} s; p95 / goal (5 s) = {r['p95_to_goal']}"
    )
    print(
        f"(b) read QPS at {r['fleet']} keys: today (15-minute sweep) {r['read_qps_today']}; "
        f"new {r['read_qps_new']} (6-hour sweep {r['read_qps_sweep_6h']} + renewals "
        f"{r['read_qps_renewals']}), {r['read_quota_share_new']:.2%} of the quota, "
        f"{r['reduction']}x less; new / goal (0.5) = {r['read_qps_to_goal']}"
    )
    print(f"    measured sweep reads per key {r['sweep_reads_per_key']} ({r['sweep_calls']})")
    print(
        f"(c) calls per deletion event: {r['calls_per_deletion']} "
        f"({r['reads_per_deletion']} reads); other keys touched: {r['other_keys_touched']}"
    )
    print(
        f"    cost per deletion: {r['invocations_per_deletion']} FC invocations, "
        f"{r['gb_seconds_per_deletion']} GB-s ({r['fc_cost']['per_function']})"
    )


if __name__ == "__main__":
    sys.exit(main())

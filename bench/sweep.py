"""Sweep at the quota bound: how close does a full sweep get to the best possible time?

    python bench/sweep.py [--keys 500] [--due 0.1] [--latency-ms 20] [--read-qps 50]
                          [--write-qps 30] [--concurrency 8] [--no-baseline] [--json]

Setup (not measured) writes aliyun-local's state file directly: N enrolled EC_P256 keys with
their sealed envelopes in a file vault; a fraction ``--due`` of them is due, split evenly
between deleted material, expired material and material inside the renewal window. Then
``aliyun-local serve`` starts with the injected latency and quotas, and ``byok-keeper sweep``
runs as its own process with its budget set to the quotas.

The **bound** is the largest of: read calls / R, write calls / W, and the latency critical path
(the longest chain of sequential calls one key needs, times the latency). The **ratio** is
wall / bound: 1.0 is perfect. The naive baseline is the same sweep at concurrency 1.
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec

from aliyun_local.clock import Clock
from aliyun_local.emulator import STATE_FORMAT
from aliyun_local.kms.models import KmsBackend
from byok_keeper.crypto.material import load_private_key
from byok_keeper.gateway.kms import QUOTA_CLASSES
from byok_keeper.vault import FileStore, Header, LocalKeySealer, Vault
from byok_keeper.vault.sealers import new_seal_key_file

BIN = Path(sys.executable).parent
# Sequential calls on one due key's path: DescribeKey (discovery), DescribeKey, GetPublicKey,
# ListResourceTags, GetParametersForImport, ImportKeyMaterial, DescribeKey, canary.
CRITICAL_CHAIN = 8
ISO = "%Y-%m-%dT%H:%M:%SZ"
SEED_CHUNK = 1000  # keys per seeding task


def seed(root: Path, n: int, due: float) -> Path:
    """Write the emulator state and the vault for ``n`` keys; return the state file."""
    new_seal_key_file(root / "seal.key")
    backend = seed_scope(root, n, due)
    state = root / "state.json"
    state.write_text(
        json.dumps({"format": STATE_FORMAT, "clock_offset": 0.0, "kms": backend.to_state()})
    )
    return state


def seed_scope(
    root: Path,
    n: int,
    due: float,
    *,
    region: str = "cn-hangzhou",
    account_id: str = "1234567890123456",
    vault_dir: str = "vault",
) -> KmsBackend:
    """``n`` keys of one account in one region, their envelopes in ``root/vault_dir`` sealed
    with ``root/seal.key``; returns the backend (its ``to_state()`` goes in the state file).

    Keys are made in chunks on every core (key generation and sealing are the cost: 50,000
    keys are a few minutes on one busy core), each chunk in a backend of its own, merged."""
    (root / vault_dir).mkdir(mode=0o700)
    n_due = round(n * due)
    chunks = [(start, min(start + SEED_CHUNK, n)) for start in range(0, n, SEED_CHUNK)]
    work = functools.partial(_seed_chunk, root, n_due, region, account_id, vault_dir)
    if len(chunks) > 1:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(os.cpu_count() or 1, mp_context=ctx) as pool:
            states = list(pool.map(work, chunks))
    else:
        states = [work(chunk) for chunk in chunks]
    backend = KmsBackend(region, account_id, Clock())
    backend.load_state({"keys": [key for state in states for key in state]})
    return backend


def _seed_chunk(
    root: Path, n_due: int, region: str, account_id: str, vault_dir: str, chunk: tuple[int, int]
) -> list[dict]:
    """Keys ``chunk[0]`` to ``chunk[1] - 1`` (the first ``n_due`` of all are due): their
    envelopes written, their KMS state returned."""
    vault = Vault(FileStore(root / vault_dir), LocalKeySealer.from_file(root / "seal.key"))
    backend = KmsBackend(region, account_id, Clock())
    now = time.time()
    for i in range(*chunk):
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()
        )
        material = load_private_key(pem)
        key = backend.create_key(
            key_spec="EC_P256",
            key_usage="SIGN/VERIFY",
            origin="EXTERNAL",
            instance_id="kst-local-software",
            protection_level="",
            description="bench",
            tags={},
        )
        key.material = bytes(material.import_bytes())
        key.bound_fingerprint = material.fingerprint
        key.import_count = 1
        key.material_expire = int(now + 30 * 86400)
        if i < n_due:
            kind = i % 3
            if kind == 0:
                key.material = None  # deleted
                key.material_expire = 0
            elif kind == 1:
                key.material_expire = int(now - 60)  # expired: PendingImport on first access
            else:
                key.material_expire = int(now + 3 * 86400)  # inside the 7-day window
        header = Header(
            key_id=key.key_id,
            region=region,
            account_id=account_id,
            key_spec="EC_P256",
            key_usage="SIGN/VERIFY",
            protection_level="SOFTWARE",
            public_key_der=base64.b64encode(material.public_key_der).decode(),
            fingerprint=material.fingerprint,
            material_encoding="PKCS8_DER",
            lease="30d",
            enrolled_at=time.strftime(ISO, time.gmtime(now)),
            first_imported_at=time.strftime(ISO, time.gmtime(now)),
        )
        envelope = vault.seal(header, material)
        # Setup is not measured, and needs no fsync per file: write the envelope directly.
        (root / vault_dir / f"{key.key_id}.json").write_bytes(envelope.to_bytes())
        material.wipe()
    return backend.to_state()["keys"]


def serve(state: Path, latency_ms: float, read_qps: float, write_qps: float, pool: int = 0):
    """Start ``aliyun-local serve`` on the seeded ``state``; ``pool`` RSA wrapping keys made
    before it answers (their CPU is the service's, not the agent's)."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = subprocess.Popen(
        [
            str(BIN / "aliyun-local"),
            "serve",
            "--seed-state",
            str(state),
            "--latency-ms",
            str(latency_ms),
            "--read-qps",
            str(read_qps),
            "--write-qps",
            str(write_qps),
            *(["--wrapping-key-pool", str(pool)] if pool else []),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    info = json.loads(proc.stdout.readline())
    return proc, info["kms_endpoint"]


def calls(endpoint: str) -> list[dict]:
    with urllib.request.urlopen(f"http://{endpoint}/_local/calls", timeout=60) as resp:
        return json.loads(resp.read())


def cli_env(root: Path, endpoint: str, read_qps: float, write_qps: float) -> dict[str, str]:
    """``byok-keeper``'s environment for the seeded world in ``root`` against ``endpoint``."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(
        BYOK_KMS_ENDPOINT=f"http://{endpoint}",
        BYOK_VAULT=f"file://{root / 'vault'}",
        BYOK_SEAL_KEY_FILE=str(root / "seal.key"),
        ALIBABA_CLOUD_ACCESS_KEY_ID="local",
        ALIBABA_CLOUD_ACCESS_KEY_SECRET="local-secret",
        ALIBABA_CLOUD_REGION_ID="cn-hangzhou",  # no default region (the CLI contract)
        BYOK_READ_QPS=str(read_qps),
        BYOK_WRITE_QPS=str(write_qps),
        BYOK_LOG_LEVEL="WARNING",
    )
    return env


def run_cli(argv: list[str], env: dict[str, str], ok=(0,)) -> dict:
    """Run ``byok-keeper ARGV`` as its own process: wall and CPU seconds (user + system, from
    ``wait4``), peak RSS in MB and its standard output."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env)
        out = proc.stdout.read()
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        code = os.waitstatus_to_exitcode(status)
        if code not in ok:
            err.seek(0)
            tail = err.read()[-2000:].decode(errors="replace")
            raise SystemExit(f"{' '.join(argv)} failed with exit code {code}: {tail}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
        "stdout": out,
    }


def run_sweep(root: Path, endpoint: str, concurrency: int, read_qps: float, write_qps: float):
    env = cli_env(root, endpoint, read_qps, write_qps)
    argv = [str(BIN / "byok-keeper"), "sweep", "--output", "json", "--concurrency"]
    run = run_cli([*argv, str(concurrency)], env, ok=(0, 1))
    return run["wall_s"], run["rss_mb"], json.loads(run["stdout"])


def measure(args, concurrency: int, seeded: Path) -> dict:
    """One sweep on a fresh copy of the seeded world (state file and vault)."""
    with tempfile.TemporaryDirectory(prefix="byok-bench-run-") as tmp:
        root = Path(tmp)
        shutil.copytree(seeded, root, dirs_exist_ok=True)
        state = root / "state.json"
        proc, endpoint = serve(state, args.latency_ms, args.read_qps, args.write_qps)
        try:
            wall, rss_mb, result = run_sweep(
                root, endpoint, concurrency, args.read_qps, args.write_qps
            )
            log = calls(endpoint)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    figures = quota_bound(log, args)
    summary = result["summary"]
    return {
        "wall_s": round(wall, 2),
        "bound_s": round(figures["bound"], 2),
        "ratio": round(wall / figures["bound"], 3),
        "throttled": sum(1 for c in log if c["status"] == 429),
        "calls": figures["calls"],
        "reads": figures["reads"],
        "writes": figures["writes"],
        "peak_rss_mb": round(rss_mb, 1),
        "summary": summary,
        "restored": summary.get("restored", 0) + summary.get("renewed", 0),
    }


def quota_bound(log: list[dict], args) -> dict:
    """The bound of one account and region's calls ``log``: the largest of read calls / R,
    write calls / W and the latency critical path (``args``: read_qps, write_qps,
    latency_ms)."""
    per_action: dict[str, int] = {}
    for c in log:
        per_action[c["action"]] = per_action.get(c["action"], 0) + 1
    # The read and write quotas the bench enforces (ListResourceTags, CreateKey and the
    # canary's crypto calls have quotas of their own, far above what a sweep spends).
    reads = sum(n for a, n in per_action.items() if a in QUOTA_CLASSES["read"])
    writes = sum(n for a, n in per_action.items() if a in QUOTA_CLASSES["write"])
    bound = max(
        reads / args.read_qps, writes / args.write_qps, CRITICAL_CHAIN * args.latency_ms / 1000
    )
    return {
        "bound": bound,
        "reads": reads,
        "writes": writes,
        "calls": dict(sorted(per_action.items())),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=500)
    parser.add_argument("--due", type=float, default=0.1)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--read-qps", type=float, default=50.0)
    parser.add_argument("--write-qps", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-baseline", action="store_true", help="skip the concurrency-1 run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.keys < 1 or not 0 <= args.due <= 1:
        parser.error("--keys >= 1 and 0 <= --due <= 1")

    with tempfile.TemporaryDirectory(prefix="byok-bench-") as tmp:
        seeded = Path(tmp)
        seed(seeded, args.keys, args.due)
        ours = measure(args, args.concurrency, seeded)
        baseline = None if args.no_baseline else measure(args, 1, seeded)
    report = {
        "keys": args.keys,
        "due": round(args.keys * args.due),
        "latency_ms": args.latency_ms,
        "read_qps": args.read_qps,
        "write_qps": args.write_qps,
        "concurrency": args.concurrency,
        **ours,
        "baseline_wall_s": baseline["wall_s"] if baseline else None,
        "baseline_ratio": baseline["ratio"] if baseline else None,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"sweep of {report['keys']} keys ({report['due']} due), latency {args.latency_ms} ms, "
        f"quotas {args.read_qps:g}/{args.write_qps:g} QPS, concurrency {args.concurrency}"
    )
    print(
        f"  wall {report['wall_s']} s, bound {report['bound_s']} s -> ratio {report['ratio']}"
        + (f" (naive baseline {report['baseline_ratio']})" if baseline else "")
    )
    print(
        f"  restored/renewed {report['restored']}, throttled {report['throttled']}, "
        f"peak RSS {report['peak_rss_mb']} MB"
    )
    print(f"  calls {report['calls']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

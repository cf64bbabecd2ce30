"""Log redaction on hostile input: the time ``logs.redact`` takes per field, up to the largest
event FC hands a function (128 KiB), and whether that time grows linearly with the input.

    python bench/redaction.py [--max-kib 128] [--rounds 5] [--json]

Inputs (each built to exactly N bytes): a run of ``a-a-a-...`` (name characters with no secret
word, which made the old ``name=value`` pattern backtrack quadratically), ``a-a-...-token=``
runs, percent-encoded letters (``%41%41...``, which decode into one long run), Base64-ish runs
just short of a blob (79 characters and a break), hex runs, ``-----BEGIN `` followed by a long
label, whitespace before a missing separator, and ``pin`` words (each a name looked at in
Python). Each is put in a field of an event dict, as a claim from an event would be, and
passed through ``logs.redact`` (the structlog processor).

Measured: the best of ``--rounds`` timings per input and size, on ``time.perf_counter``. The
figure that matters is the growth: seconds per KiB at the largest size divided by seconds per
KiB at 4 KiB (about 1 when linear; 32 when quadratic over 4 -> 128 KiB). Goal: every input at
128 KiB redacted in under 0.25 s and growth under 8 (linear is 1, quadratic 32; the rest is
the noise of a shared machine and caches). ``--old`` also times the previous ``name=value``
pattern on the first input at 1, 2 and 4 KiB (it is quadratic: larger sizes take minutes).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time

from byok_keeper.domain import logs

KIB = 1024
GOAL_SECONDS = 0.25
GOAL_GROWTH = 8.0  # linear is 1; quadratic (over 4 -> 128 KiB) is 32
# The pattern issue 25 replaced, kept here only to show what it cost.
_OLD_PAIR = re.compile(
    r"([A-Za-z0-9_.-]*(?:material|plaintext|secret|token|passphrase|password|private|signature"
    r"|authorization|credential)[A-Za-z0-9_.-]*[\"']?\s*[=:]\s*[\"']?)([^&\s,;\"']+)",
    re.IGNORECASE,
)


def _fill(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


HOSTILE = {
    "name-run": lambda n: _fill("a-", n),
    "secret-word-runs": lambda n: _fill("a-" * 20 + "token=", n),
    "percent-encoded": lambda n: _fill("%41", n),
    "near-blobs": lambda n: _fill("A" * 79 + "-", n),
    "hex-runs": lambda n: _fill("0123456789abcdef" * 5 + " ", n),
    "pem-label": lambda n: "-----BEGIN " + _fill("A ", n - 11),
    "spaces-no-separator": lambda n: _fill("token" + " " * 50 + "x", n),
    "pin-words": lambda n: _fill("pin ", n),  # the one secret word shorter than a name run
}


def _best(fn, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def measure(max_kib: int, rounds: int) -> dict:
    sizes = [k for k in (4, 16, 64, 128, 256) if k <= max_kib] or [max_kib]
    results = {}
    for name, build in HOSTILE.items():
        timings = {}
        for kib in sizes:
            text = build(kib * KIB)
            assert len(text) == kib * KIB
            timings[kib] = _best(lambda t=text: logs.redact(None, "info", {"claim": t}), rounds)
        low, high = sizes[0], sizes[-1]
        growth = (timings[high] / high) / max(timings[low] / low, 1e-9)
        results[name] = {"seconds": timings, "growth": round(growth, 2)}
    return {"sizes_kib": sizes, "inputs": results}


def measure_old() -> dict[int, float]:
    out = {}
    for kib in (1, 2, 4):
        text = HOSTILE["name-run"](kib * KIB)
        out[kib] = _best(lambda t=text: _OLD_PAIR.sub("x", t), 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-kib", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--old", action="store_true", help="also time the replaced pattern")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = measure(args.max_kib, args.rounds)
    if args.old:
        report["old_name_run_seconds"] = measure_old()
    largest = report["sizes_kib"][-1]
    worst = max(r["seconds"][largest] for r in report["inputs"].values())
    growth = max(r["growth"] for r in report["inputs"].values())
    report["goal"] = {"seconds_at_largest": worst, "growth": growth,
                      "met": worst < GOAL_SECONDS and growth < GOAL_GROWTH}  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, r in report["inputs"].items():
            shown = "  ".join(f"{k} KiB {s * 1000:8.2f} ms" for k, s in r["seconds"].items())
            print(f"{name:20} {shown}  growth {r['growth']}")
        if args.old:
            old = "  ".join(f"{k} KiB {s:.2f} s" for k, s in report["old_name_run_seconds"].items())
            print(f"{'old pattern':20} {old}")
        met = "met" if report["goal"]["met"] else "NOT met"
        print(f"goal (< {GOAL_SECONDS} s at {largest} KiB, growth < {GOAL_GROWTH}): {met}")
    return 0 if report["goal"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())

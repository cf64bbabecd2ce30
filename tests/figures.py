"""Reliability figures: drills record what they tried, ``make reliability`` adds them up.

A test calls ``record(kind, **fields)``; nothing happens unless ``BYOK_FIGURES`` names a JSON
lines file (``make reliability`` sets it). ``python -m tests.figures FILE`` prints the summary
that docs/RELIABILITY.md quotes. Kinds: ``fault`` (an injected fault and what became of the
key), ``kill`` (a SIGKILL point), ``input`` (a hostile input and its refusal), ``fuzz`` (cases
and seconds), ``leak_scan`` (streams and fragments searched, hits), ``drill`` (anything else).
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ENV = "BYOK_FIGURES"


def record(kind: str, **fields: Any) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"kind": kind, **fields}, sort_keys=True, default=str) + "\n")


def summarise(lines: list[dict[str, Any]]) -> str:
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        by_kind[line["kind"]].append(line)
    out: list[str] = []

    faults = by_kind["fault"]
    if faults:
        survived = sum(1 for f in faults if f.get("survived"))
        first_run = Counter(f.get("first_run", "?") for f in faults)
        out.append(f"faults injected: {len(faults)}; key restored or cleanly failed and then ")
        out[-1] += f"completed by the next run: {survived}/{len(faults)}"
        per_code = Counter(f["code"] for f in faults)
        out.append("  by fault: " + ", ".join(f"{c} {n}" for c, n in sorted(per_code.items())))
        per_path = Counter(f["path"] for f in faults)
        out.append("  by path: " + ", ".join(f"{p} {n}" for p, n in sorted(per_path.items())))
        actions = sorted({f["action"] for f in faults})
        out.append(f"  actions: {len(actions)} ({', '.join(actions)})")
        out.append("  first run: " + ", ".join(f"{k} {n}" for k, n in sorted(first_run.items())))
        wrong = sum(1 for f in faults if f.get("wrong_material"))
        out.append(f"  wrong material imported: {wrong}")
    kills = by_kind["kill"]
    if kills:
        points = sorted({k["after_calls"] for k in kills})
        landed = sum(1 for k in kills if k.get("killed"))
        unchanged = sum(1 for k in kills if k.get("vault_unchanged") and k.get("restored"))
        full = max(k.get("full_sweep_calls", 0) for k in kills)
        out.append(
            f"SIGKILL rounds: {len(kills)} (seed {kills[0].get('seed')}), {landed} killed mid-run "
            f"after {points[0]}..{points[-1]} of the {full} KMS calls a full sweep makes "
            f"({len(points)} distinct points); re-run restored every key with identical material "
            f"and the vault byte-for-byte unchanged: {unchanged}/{len(kills)}"
        )
    inputs = by_kind["input"]
    if inputs:
        total = sum(i.get("count", 1) for i in inputs)
        refused = sum(i.get("count", 1) for i in inputs if i.get("refused"))
        groups: Counter[str] = Counter()
        for i in inputs:
            groups[i["group"]] += i.get("count", 1)
        out.append(f"hostile inputs: {total}; refused cleanly, nothing written: {refused}")
        out.append("  by group: " + ", ".join(f"{g} {n}" for g, n in sorted(groups.items())))
    fuzz = by_kind["fuzz"]
    if fuzz:
        cases = sum(f["cases"] for f in fuzz)
        seconds = max(f["seconds"] for f in fuzz)  # one module: the targets share its clock
        failures = sum(f.get("failures", 0) for f in fuzz)
        parts = ", ".join(f"{f['target']} {f['cases']}" for f in fuzz)
        out.append(f"fuzz: {cases} cases in {seconds:.1f} s ({parts}); failures {failures}")
    scans = by_kind["leak_scan"]
    if scans:
        streams = sum(s["streams"] for s in scans)
        bytes_ = sum(s["bytes"] for s in scans)
        needles = max(s["needles"] for s in scans)
        hits = sum(s["hits"] for s in scans)
        out.append(
            f"leak scans: {len(scans)} runs over {streams} captured streams ({bytes_:,} bytes), "
            f"{needles} fragments of private and ephemeral keys searched; leaks found: {hits}"
        )
    for drill in by_kind["drill"]:
        out.append(f"drill {drill['name']}: {drill['result']}")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.figures FIGURES.jsonl", file=sys.stderr)
        return 2
    path = Path(argv[0])
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    print(summarise(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

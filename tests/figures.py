"""Reliability figures: drills record what they observed, ``make reliability`` adds them up.

A test calls ``record(kind, **fields)``; nothing happens unless ``BYOK_FIGURES`` names a JSON
lines file (``make reliability`` sets it). Tests record *observations*, taken from KMS (the
emulator's view of the key: state, the fingerprint of the material it holds, its import count)
and from the run (the outcome each run reported), and they record them *before* asserting, so
a case that goes wrong is counted as what it was. Whether a key survived, or holds the wrong
material, is decided here from those observations, never passed in as a constant.

``python -m tests.figures FILE`` prints the summary; ``--write docs/RELIABILITY.md`` replaces
the generated blocks (between ``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->``) there.
Kinds: ``fault`` (an injected fault and what became of the key), ``kill`` (a SIGKILL point),
``input`` (a hostile input and its refusal), ``fuzz`` (cases and seconds), ``leak_scan``
(streams and fragments searched, hits), ``drill`` (anything else).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENV = "BYOK_FIGURES"
GOOD_RUNS = frozenset({"restored", "renewed", "ok", "enrolled"})


def record(kind: str, **fields: Any) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"kind": kind, **fields}, sort_keys=True, default=str) + "\n")


def observe(view: Callable[[str], dict[str, Any]], key_id: str, expected: str) -> dict[str, Any]:
    """What KMS shows for ``key_id`` now (``view`` is ``key_view`` or the admin API's
    ``keys/{id}``), beside the fingerprint the vault holds (``expected``)."""
    try:
        seen = view(key_id)
    except Exception as exc:  # the key is gone: that is an observation too
        seen = {"state": f"unreadable: {type(exc).__name__}"}
    return {
        "key_id": key_id,
        "state": seen.get("state"),
        # The fingerprint of the material KMS holds right now (none while it holds none).
        "kms_fingerprint": seen.get("material_fingerprint") if seen.get("has_material") else None,
        "expected_fingerprint": expected,
        "import_count": seen.get("import_count"),
    }


def key_ok(o: dict[str, Any]) -> bool:
    """The key is usable and holds exactly the enrolled material."""
    return o.get("state") == "Enabled" and o.get("kms_fingerprint") == o.get("expected_fingerprint")


def wrong_material(o: dict[str, Any]) -> bool:
    """KMS holds material, and it is not the enrolled material."""
    fp = o.get("kms_fingerprint")
    return fp is not None and fp != o.get("expected_fingerprint")


def _fault_survived(f: dict[str, Any]) -> bool:
    return f.get("final_run") in GOOD_RUNS and key_ok(f.get("key", {}))


def summarise(lines: list[dict[str, Any]]) -> str:
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        by_kind[line["kind"]].append(line)
    out: list[str] = []

    faults = by_kind["fault"]
    if faults:
        survived = sum(1 for f in faults if _fault_survived(f))
        fired = sum(1 for f in faults if f.get("fired"))
        first_run = Counter(f.get("first_run", "?") for f in faults)
        wrong = sum(1 for f in faults if wrong_material(f.get("key", {})))
        imports = [f["key"]["import_count"] for f in faults if f.get("key", {}).get("import_count")]
        per_code = Counter(f["code"] for f in faults)
        per_path = Counter(f["path"] for f in faults)
        actions = sorted({f["action"] for f in faults})
        out.append("| | |")
        out.append("|---|---|")
        out.append(f"| faults injected | **{len(faults)}** (seen to fire at KMS: {fired}) |")
        out.append(
            f"| key Enabled with the enrolled material after the last run, which reported "
            f"success | **{survived}/{len(faults)}** |"
        )
        out.append(
            "| by fault | " + ", ".join(f"{c} {n}" for c, n in sorted(per_code.items())) + " |"
        )
        out.append(
            "| by path | " + ", ".join(f"{p} {n}" for p, n in sorted(per_path.items())) + " |"
        )
        out.append(f"| KMS actions covered | {len(actions)}: {', '.join(actions)} |")
        out.append(
            "| first run reported | "
            + ", ".join(f"{k} {n}" for k, n in sorted(first_run.items()))
            + " |"
        )
        if imports:
            out.append(
                f"| imports KMS accepted per key (enrollment's included) | "
                f"{min(imports)} to {max(imports)} |"
            )
        out.append(f"| KMS holding other material than the vault's | **{wrong}** |")
    kills = by_kind["kill"]
    if kills:
        points = sorted({k["after_calls"] for k in kills})
        landed = sum(1 for k in kills if k.get("killed"))
        good = sum(
            1 for k in kills if k.get("vault_unchanged") and all(key_ok(o) for o in k["keys"])
        )
        wrong = sum(1 for k in kills for o in k["keys"] if wrong_material(o))
        full = max(k.get("full_sweep_calls", 0) for k in kills)
        out.append("| | |")
        out.append("|---|---|")
        out.append(
            f"| SIGKILL rounds | **{len(kills)}** (seed {kills[0].get('seed')}); the sweep was "
            f"still running when killed in {landed} |"
        )
        out.append(
            f"| kill points | after {points[0]}..{points[-1]} of the {full} KMS calls a full "
            f"sweep makes ({len(points)} distinct) |"
        )
        out.append(
            f"| re-run left every key Enabled with the enrolled material and the vault "
            f"byte-for-byte unchanged | **{good}/{len(kills)}** |"
        )
        out.append(f"| keys holding other material than the vault's | **{wrong}** |")
    inputs = by_kind["input"]
    if inputs:
        total = sum(i.get("count", 1) for i in inputs)
        refused = sum(
            i.get("refused_count", i.get("count", 1)) if i.get("untouched") else 0
            for i in inputs
            if i.get("refused") or "refused_count" in i
        )
        groups: Counter[str] = Counter()
        for i in inputs:
            groups[i["group"]] += i.get("count", 1)
        out.append("| group | inputs |")
        out.append("|---|---|")
        out.extend(f"| {g} | {n} |" for g, n in sorted(groups.items()))
        out.append(f"| **total** | **{total}**; refused cleanly with nothing changed: "
                   f"**{refused}** |")  # fmt: skip
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
        out.append(f"- {drill['name']}: {drill['result']}")
    return "\n".join(out)


def blocks(lines: list[dict[str, Any]]) -> dict[str, str]:
    """One generated block per kind, for docs/RELIABILITY.md."""
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        by_kind[line["kind"]].append(line)
    return {kind: summarise(items) for kind, items in by_kind.items()}


def write(doc: Path, lines: list[dict[str, Any]]) -> list[str]:
    """Replace each ``<!-- figures:KIND -->`` block of ``doc``; return the kinds written."""
    text = doc.read_text()
    written = []
    for kind, body in blocks(lines).items():
        pattern = re.compile(
            rf"(<!-- figures:{kind} -->\n).*?(<!-- /figures:{kind} -->)", re.DOTALL
        )
        text, n = pattern.subn(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), text)
        if n:
            written.append(kind)
    doc.write_text(text)
    return written


def main(argv: list[str]) -> int:
    args = list(argv)
    target = None
    if "--write" in args:
        i = args.index("--write")
        target = Path(args[i + 1])
        del args[i : i + 2]
    if len(args) != 1:
        print("usage: python -m tests.figures FIGURES.jsonl [--write DOC.md]", file=sys.stderr)
        return 2
    lines = [json.loads(x) for x in Path(args[0]).read_text().splitlines() if x.strip()]
    print(summarise(lines))
    if target is not None:
        written = write(target, lines)
        print(f"wrote {', '.join(written) or 'nothing'} into {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

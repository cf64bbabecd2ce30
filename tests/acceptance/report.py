"""What an acceptance run saw: findings (an answer, next to aliyun-local's default answer for
the same docs/FIDELITY.md row), checks (the agent did what it must) and the keys it made."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aliyun_local.kms.settings import SETTINGS

# docs/FIDELITY.md rows that are not settings: what aliyun-local's default profile answers.
DOCUMENTED = {
    "Key states and which calls each allows": "PendingImport",
    "Specs per protection level": "",  # filled in per instance type
}


def default_answer(row: str) -> Any:
    """aliyun-local's default answer for ``row`` (a setting's name or a documented row)."""
    if row in SETTINGS:
        return SETTINGS[row].default
    return DOCUMENTED[row]


@dataclass
class Finding:
    row: str  # its docs/FIDELITY.md row: a setting's name or the behaviour's first words
    observed: Any
    aliyun_local_default: Any
    detail: str = ""

    @property
    def differs(self) -> bool:
        return self.observed != self.aliyun_local_default


@dataclass
class Report:
    run_id: str
    region: str
    instance_id: str
    findings: list[Finding] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    keys: list[dict[str, Any]] = field(default_factory=list)
    # keys carrying the acceptance tag that no acceptance run made: listed, never deleted
    leftover_refused: list[dict[str, str]] = field(default_factory=list)

    def finding(self, row: str, observed: Any, detail: str = "", default: Any = None) -> None:
        """Record an answer once per row and observed value (several keys may see it)."""
        expected = default_answer(row) if default is None else default
        if any(f.row == row and f.observed == observed for f in self.findings):
            return
        self.findings.append(Finding(row, observed, expected, detail))

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append({"name": name, "ok": ok, "detail": detail[:300]})

    @property
    def ok(self) -> bool:
        scheduled = all(k.get("deletion_scheduled") for k in self.keys)
        return scheduled and all(c["ok"] for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "region": self.region,
            "instance_id": self.instance_id,
            "ok": self.ok,
            "differences": [asdict(f) for f in self.findings if f.differs],
            "findings": [{**asdict(f), "differs": f.differs} for f in self.findings],
            "checks": self.checks,
            "keys": self.keys,
            "leftover_refused": self.leftover_refused,
        }

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")

    def lines(self) -> list[str]:
        """The summary: each difference with its FIDELITY.md row, failed checks, the keys."""
        out = [
            f"DIFFERS  docs/FIDELITY.md {f.row!r}: observed {f.observed!r}, aliyun-local's "
            f"default {f.aliyun_local_default!r}" + (f" ({f.detail})" if f.detail else "")
            for f in self.findings
            if f.differs
        ]
        out += [f"FAILED   {c['name']}: {c['detail']}" for c in self.checks if not c["ok"]]
        out += [f"KEPT     {k['key_id']}: has the acceptance tag, but {k['not_deleted_because']}"
                for k in self.leftover_refused]  # fmt: skip
        scheduled = sum(1 for k in self.keys if k.get("deletion_scheduled"))
        out.append(
            f"{len(self.findings)} answers recorded, {sum(f.differs for f in self.findings)} "
            f"differ from aliyun-local's default; {sum(c['ok'] for c in self.checks)}/"
            f"{len(self.checks)} checks passed; {scheduled}/{len(self.keys)} keys scheduled "
            "for deletion (7 days)"
        )
        return out

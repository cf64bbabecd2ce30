"""The function role's RAM policy, past what one template can say: documents RAM accepts (at most
6,144 characters each, split by statement and then by resource), and the import grants pinned
to the enrolled keys' ARNs (``--pin-keys``). deploy.py renders with these; docs/SECURITY.md has
the trade-off of pinning.

Sources: RAM's CreatePolicy (Resource Management API reference, ``PolicyDocument``: "1 to 6,144
characters"; docs/FIDELITY.md).
"""

from __future__ import annotations

import json
from typing import Any

MAX_POLICY_CHARS = 6144
PINNED_SID = "ImportEnrolledKeysOnly"
PINNED_ACTIONS = ("kms:GetParametersForImport", "kms:ImportKeyMaterial")


class PolicyError(Exception):
    """A policy deploy.py cannot render within RAM's limits."""


def compact(document: dict[str, Any]) -> str:
    """The document as deploy.py prints it and RAM would store it: no whitespace."""
    return json.dumps(document, separators=(",", ":"))


def _fits(statements: list[dict[str, Any]], version: str, limit: int) -> bool:
    return len(compact({"Version": version, "Statement": statements})) <= limit


def _cut(statement: dict[str, Any], version: str, limit: int) -> list[dict[str, Any]]:
    """``statement`` as it is, or cut into statements over consecutive runs of its resources,
    each fitting a document of its own (the later ones' Sid numbered)."""
    if _fits([statement], version, limit):
        return [statement]
    runs: list[list[str]] = [[]]
    for resource in statement["Resource"]:
        if not _fits([{**statement, "Resource": [resource]}], version, limit):
            raise PolicyError(f"one resource of {statement.get('Sid', 'a statement')} is too long")
        if runs[-1] and not _fits([{**statement, "Resource": runs[-1] + [resource]}], version,
                                  limit):  # fmt: skip
            runs.append([])
        runs[-1].append(resource)
    sid = statement.get("Sid", "Part")
    return [
        {**statement, "Sid": sid if i == 0 else f"{sid}{i + 1}", "Resource": run}
        for i, run in enumerate(runs)
    ]


def split_policy(policy: dict[str, Any], limit: int = MAX_POLICY_CHARS) -> list[dict[str, Any]]:
    """``policy`` as documents of at most ``limit`` characters each (compact JSON), together
    granting exactly what it grants: itself when it fits, else its statements packed in order,
    a statement too large for one document cut by resource. Raises ``PolicyError``."""
    version = policy.get("Version", "1")
    if len(compact(policy)) <= limit:
        return [policy]
    documents: list[list[dict[str, Any]]] = [[]]
    for statement in policy["Statement"]:
        for piece in _cut(statement, version, limit):
            if documents[-1] and not _fits(documents[-1] + [piece], version, limit):
                documents.append([])
            documents[-1].append(piece)
    return [{"Version": version, "Statement": statements} for statements in documents]


def key_arn(region: str, account_id: str, key_id: str) -> str:
    return f"acs:kms:{region}:{account_id}:key/{key_id}"


def pin_imports(policy: dict[str, Any], key_arns: list[str]) -> dict[str, Any]:
    """``policy`` with GetParametersForImport and ImportKeyMaterial taken out of every
    statement and granted again on exactly ``key_arns`` (``ImportEnrolledKeysOnly``; left out
    when there are none). The other actions keep their resources."""
    statements = []
    for s in policy["Statement"]:
        actions = [a for a in s["Action"] if a not in PINNED_ACTIONS]
        if actions:
            statements.append({**s, "Action": actions})
    if key_arns:
        pinned = {"Sid": PINNED_SID, "Effect": "Allow", "Action": list(PINNED_ACTIONS)}
        statements.append({**pinned, "Resource": sorted(set(key_arns))})
    return {**policy, "Statement": statements}

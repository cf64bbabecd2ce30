"""The slice of RAM that aliyun-local's FC needs: the policies attached to a function's role, and
whether they allow one action on one resource.

RAM itself (users, roles, trust policies, the RAM API) is not emulated. A test, or an operator
running a drill, attaches the role's policy documents through ``POST /_local/ram/roles``
(``{"role": ARN, "policies": [document, ...]}``), typically the documents ``deploy.py --plan``
prints. FC then checks that role before it publishes a failed asynchronous invocation to its
OnFailure destination, as FC does with the function's role (docs/FIDELITY.md, Function Compute).
A role nobody attached a policy to is not checked (every earlier drill and test relies on
that): ``allows`` answers ``None`` for it.

Evaluation follows RAM's documented order: an explicit ``Deny`` wins, else an ``Allow`` is
needed. ``Action`` matches case-insensitively, ``Resource`` case-sensitively, both with ``*``
and ``?`` wildcards. A statement with a ``Condition`` is not evaluated (no request context is
emulated): it never allows, and a conditional ``Deny`` is ignored.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from .errors import ApiError

MAX_POLICIES_PER_ROLE = 20  # a bound for the emulator's memory, not a RAM quota


def _pattern(glob: str, *, fold: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(body, re.IGNORECASE | re.DOTALL if fold else re.DOTALL)


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ApiError("InvalidParameter", "Action and Resource must be a string or strings", 400)


def _check_document(document: Any) -> list[dict[str, Any]]:
    if not isinstance(document, dict) or not isinstance(document.get("Statement"), list):
        raise ApiError("InvalidParameter", "a policy is an object with a Statement list", 400)
    statements = []
    for s in document["Statement"]:
        if not isinstance(s, dict) or s.get("Effect") not in ("Allow", "Deny"):
            raise ApiError("InvalidParameter", "each statement needs Effect Allow or Deny", 400)
        _as_list(s.get("Action", [])), _as_list(s.get("Resource", []))
        statements.append(s)
    return statements


def _matches(statement: dict[str, Any], action: str, resource: str) -> bool:
    actions = _as_list(statement.get("Action", []))
    resources = _as_list(statement.get("Resource", []))
    return any(_pattern(a, fold=True).fullmatch(action) for a in actions) and any(
        _pattern(r, fold=False).fullmatch(resource) for r in resources
    )


class RolePolicies:
    """Role ARN -> the statements of the policies attached to it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._roles: dict[str, list[dict[str, Any]]] = {}
        self._documents: dict[str, list[dict[str, Any]]] = {}

    def attach(self, role: Any, policies: Any) -> None:
        """Replace what ``role`` is attached to with ``policies`` (a list of documents)."""
        if not isinstance(role, str) or not role.startswith("acs:ram::"):
            raise ApiError("InvalidParameter", "role must be acs:ram::<account>:role/<name>", 400)
        if not isinstance(policies, list) or len(policies) > MAX_POLICIES_PER_ROLE:
            raise ApiError("InvalidParameter", "policies must be a list of documents", 400)
        statements = [s for doc in policies for s in _check_document(doc)]
        with self._lock:
            self._roles[role] = statements
            self._documents[role] = list(policies)

    def view(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return {role: list(docs) for role, docs in self._documents.items()}

    def reset(self) -> None:
        with self._lock:
            self._roles.clear()
            self._documents.clear()

    def allows(self, role: str, actions: tuple[str, ...], resource: str) -> bool | None:
        """Whether ``role`` may do any of ``actions`` on ``resource``; ``None``: no policy was
        attached to that role here, so nothing is checked."""
        with self._lock:
            statements = self._roles.get(role)
        if statements is None:
            return None
        plain = [s for s in statements if "Condition" not in s]
        for action in actions:
            hits = [s for s in plain if _matches(s, action, resource)]
            if any(s["Effect"] == "Deny" for s in hits):
                continue
            if any(s["Effect"] == "Allow" for s in hits):
                return True
        return False

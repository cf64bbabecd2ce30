"""A small deterministic mutation runner: ``make mutation`` (not part of ``make test``).

For each module that guards material and keys, every mutation point inside its functions is
enumerated from the AST in source order, and each mutant is run, one at a time, against the
unit and functional tests chosen for that module (``MODULES``). A mutant is *killed* when those
tests fail (or time out), and *survives* when they pass. The module is never changed in place:
each worker holds a copy of ``shared/`` that comes first on ``PYTHONPATH``.

Operators (one change per mutant, all deterministic):

- comparison swapped: ``==``/``!=``, ``<``/``>=``, ``>``/``<=``, ``in``/``not in``,
  ``is``/``is not``
- ``and``/``or`` swapped; ``not x`` -> ``x``
- arithmetic swapped: ``+``/``-``, ``*``/``/``, ``//`` -> ``/``, ``%`` -> ``*``, ``**`` -> ``*``
- a number ``n`` -> ``n + 1``; ``True``/``False`` flipped
- an ``if`` guard never taken (``if cond:`` -> ``if False:``)
- ``return value`` -> ``return None``
- a call made as a statement removed (``material.wipe()`` -> ``pass``)

Strings, f-strings, docstrings and annotations are not mutated (messages would only add noise).
This is mutmut's core set of operators, not all of it; see docs/RELIABILITY.md for scores and
every survivor explained.

    python -m tests.mutation                  # every module in MODULES
    python -m tests.mutation reestablish plan # some of them
    python -m tests.mutation shared/byok_keeper/gateway/kms/gateway.py  # a target named by its file
    python -m tests.mutation --jobs 2 --list  # how many mutants each would run
    python -m tests.mutation --survivors plan # only what survived last time (tests added)
    python -m tests.mutation --report         # the table for docs/RELIABILITY.md
    python -m tests.mutation --lines 59,77 sm2  # a chunk: the mutants on these lines only

Each mutant runs only the tests that execute the mutated lines (found by one traced run of the
module's tests, ``tests/mutation_trace.py``), fastest first, stopping at the first failure. A
mutant no traced test reaches runs the module's whole selection (a child process, which the
tracer does not follow, may run it); if that passes it is reported "not covered" and counts as
a survivor.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT / "shared"
RESULTS = ROOT / ".mutation"

F = "tests/functional/"
U = "tests/unit/"


@dataclass(frozen=True)
class Target:
    path: str  # under shared/
    # Every unit and functional test file that asserts the module's behaviour, wherever it
    # lives (not those that only use it to set up): a bug only a file left out would catch is
    # a gap in this selection, never a kill. Fastest first: pytest -x stops at the first failure.
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()  # only these (qualified names); empty = every function


MODULES: dict[str, Target] = {
    "reestablish": Target(
        "byok_keeper/core/reestablish.py",
        (F + "test_hostile_kms.py", F + "test_agent.py"),
    ),
    "plan": Target(
        "byok_keeper/planning/plan.py",
        (
            U + "test_plan.py",
            U + "test_cadence.py",
            U + "test_attacks.py",
            F + "test_hostile_kms.py",
        ),
    ),
    "wrapping": Target(
        "byok_keeper/crypto/wrapping.py",
        (U + "test_wrapping.py", U + "test_openssl_oracle.py", F + "test_emulator_import.py"),
    ),
    "sm2": Target(
        "byok_keeper/crypto/sm2.py",
        (U + "test_sm2.py", U + "test_openssl_oracle.py", U + "test_wrapping.py"),
    ),
    "verify": Target(
        "byok_keeper/core/verify.py", (F + "test_hostile_kms.py", F + "test_agent.py")
    ),
    "enroll": Target(
        "byok_keeper/core/enroll.py",
        (
            F + "test_enroll.py",
            F + "test_hostile_kms.py",
            F + "test_attacks.py",
            F + "test_faults.py",
        ),
    ),
    "creation": Target(
        "byok_keeper/core/creation.py",
        (F + "test_enroll.py", F + "test_console_fields.py", F + "test_attacks.py"),
    ),
    "importing": Target(
        "byok_keeper/core/importing.py",
        (F + "test_hostile_kms.py", F + "test_agent.py", F + "test_enroll.py"),
    ),
    "envelope": Target(
        "byok_keeper/vault/envelope.py",
        (U + "test_attacks.py", F + "test_vault.py", "tests/fuzz/test_fuzz_parsers.py"),
    ),
    "sealers": Target("byok_keeper/vault/sealers.py", (F + "test_vault.py",)),
    "gateway": Target(
        "byok_keeper/gateway/kms/gateway.py",
        # Every tier that exercises the gateway's own behaviour: its retries and allowlist, the
        # request counts (metrics), the assumed role's renewal and refusals (sts).
        (
            F + "test_gateway.py",
            F + "test_fidelity.py",
            F + "test_sts_failures.py",
            F + "test_sts_renewal.py",
            F + "test_metrics.py",
        ),
        functions=("KmsGateway._call", "KmsGateway._backoff", "KmsGateway.with_allowlist"),
    ),
    "logs": Target(
        "byok_keeper/domain/logs.py", (U + "test_logs.py",), functions=("_scrub", "redact")
    ),
    "retire": Target("byok_keeper/operations/retire.py", (F + "test_retire.py",)),
    "reseal": Target(
        "byok_keeper/vault/reseal.py", (F + "test_retire.py", F + "test_pkcs11_sealer.py")
    ),
    "pkcs11": Target(
        "byok_keeper/vault/pkcs11.py",
        (F + "test_pkcs11_seal_key.py", F + "test_pkcs11_sealer.py", F + "test_pkcs11_targets.py"),
    ),
    "pkcs11_uri": Target(
        "byok_keeper/vault/pkcs11_uri.py",
        (
            U + "test_pkcs11_uri_refusals.py",
            "tests/fuzz/test_fuzz_pkcs11_uri.py",
            F + "test_pkcs11_sealer.py",
        ),
    ),
    # The events function's duplicate window: the id duplicates are recognised by, and the filter.
    "events": Target(
        "byok_keeper/planning/events.py",
        (U + "test_events.py", F + "test_fc_events_handler.py", F + "test_runtime_attacks.py"),
        functions=("KmsEvent.dedupe_key", "DuplicateFilter"),
    ),
}

_COMPARE_SWAP = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_BIN_SWAP = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.Mult,
    ast.Pow: ast.Mult,
}


class _Mutator(ast.NodeTransformer):
    """Walks a module in a fixed order, numbering mutation points. With ``target`` set, applies
    only that one; ``found`` lists (line, operator) for every point seen."""

    def __init__(self, target: int = -1, functions: tuple[str, ...] = ()) -> None:
        self.target = target
        self.functions = functions
        self.found: list[tuple[int, int, str, str]] = []  # (line, end line, operator, function)
        self._scope: list[str] = []
        self._in_function = 0

    # -- where to mutate --

    def _active(self) -> bool:
        if not self._in_function:
            return False
        if not self.functions:
            return True
        name = ".".join(self._scope)
        return any(name == f or name.startswith(f + ".") for f in self.functions)

    def _site(self, node: ast.AST, operator: str) -> bool:
        """Record a mutation point; True if it is the one to apply."""
        if not self._active():
            return False
        where = node.test if isinstance(node, ast.If) else node  # an if: its condition only
        line = getattr(where, "lineno", 0)
        end = getattr(where, "end_lineno", None) or line
        self.found.append((line, end, operator, ".".join(self._scope)))
        return len(self.found) - 1 == self.target

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self._scope.append(node.name)
        node.body = [self.visit(s) for s in node.body]
        self._scope.pop()
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        self._scope.append(node.name)
        self._in_function += 1
        node.args.defaults = [self.visit(d) for d in node.args.defaults]
        body = node.body
        start = 1 if body and _is_docstring(body[0]) else 0
        node.body = body[:start] + [self._stmt(s) for s in body[start:]]
        self._in_function -= 1
        self._scope.pop()
        return node

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def _stmt(self, stmt: ast.stmt) -> ast.stmt:
        result = self.visit(stmt)
        return result if result is not None else ast.Pass()

    # -- never mutated --

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is not None:
            node.value = self.visit(node.value)
        return node

    # -- operators --

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        for i, op in enumerate(node.ops):
            swap = _COMPARE_SWAP.get(type(op))
            if swap and self._site(node, f"{type(op).__name__}->{swap.__name__}"):
                node.ops[i] = swap()
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        other = ast.Or if isinstance(node.op, ast.And) else ast.And
        if self._site(node, f"{type(node.op).__name__}->{other.__name__}"):
            node.op = other()
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not) and self._site(node, "not x->x"):
            return node.operand
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        swap = _BIN_SWAP.get(type(node.op))
        if swap and self._site(node, f"{type(node.op).__name__}->{swap.__name__}"):
            node.op = swap()
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        value = node.value
        if isinstance(value, bool):
            if self._site(node, f"{value}->{not value}"):
                return ast.copy_location(ast.Constant(not value), node)
        elif isinstance(value, int | float) and self._site(node, f"{value}->{value + 1}"):
            return ast.copy_location(ast.Constant(value + 1), node)
        return node

    def visit_If(self, node: ast.If) -> ast.AST:
        guard = self._site(node, "if cond->if False")
        self.generic_visit(node)
        if guard:
            node.test = ast.copy_location(ast.Constant(False), node.test)
        return node

    def visit_Return(self, node: ast.Return) -> ast.AST:
        self.generic_visit(node)
        trivial = node.value is None or (
            isinstance(node.value, ast.Constant) and node.value.value is None
        )
        if not trivial and self._site(node, "return x->return None"):
            node.value = None
        return node

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.value, ast.Call) and self._site(node, "call statement->pass"):
            return ast.copy_location(ast.Pass(), node)
        return node


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


@dataclass
class Mutant:
    module: str
    index: int
    line: int
    end_line: int
    operator: str
    function: str
    code: str  # the mutated source line(s), for the report
    status: str = ""  # killed | survived | timeout | not covered
    seconds: float = 0.0
    tests_run: int = 0


def mutants(name: str, target: Target) -> Iterator[tuple[Mutant, str]]:
    """Every mutant of ``target`` as (description, whole mutated source)."""
    source = (SHARED / target.path).read_text()
    tree = ast.parse(source)
    survey = _Mutator(functions=target.functions)
    survey.visit(copy.deepcopy(tree))
    original = ast.unparse(tree)
    lines = source.splitlines()
    for index, (line, end, operator, function) in enumerate(survey.found):
        mutated_tree = _Mutator(index, target.functions).visit(copy.deepcopy(tree))
        mutated = ast.unparse(ast.fix_missing_locations(mutated_tree))
        if mutated == original:
            continue
        code = lines[line - 1].strip() if 0 < line <= len(lines) else ""
        yield Mutant(name, index, line, end, operator, function, code), mutated


def _run_tests(
    workdir: Path, tests: list[str] | tuple[str, ...], timeout: float, extra_env: dict | None = None
) -> tuple[bool, bool, float]:
    """Run ``tests`` with ``workdir/shared`` first on the path: (passed, timed out, seconds)."""
    env = dict(os.environ, PYTHONPATH=str(workdir / "shared"), PYTHONDONTWRITEBYTECODE="1")
    env.update(extra_env or {})
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(proxy, None)
    argv = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    if extra_env:
        argv += ["-p", "tests.mutation_trace"]
    started = time.monotonic()
    proc = subprocess.Popen(
        [*argv, *tests],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return False, True, time.monotonic() - started
    except BaseException:  # interrupted: take the test run (and its helpers) down with us
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return code == 0, False, time.monotonic() - started


def _trace(workdir: Path, target: Target) -> tuple[dict[int, set[str]], dict[str, float]]:
    """Run the module's tests once, unmutated, recording which test runs which line."""
    out = workdir / "trace.json"
    passed, _, _ = _run_tests(
        workdir,
        target.tests,
        3600,
        {
            "BYOK_MUTATION_TRACE": str(workdir / "shared" / target.path),
            "BYOK_MUTATION_TRACE_OUT": str(out),
        },
    )
    if not passed or not out.exists():
        raise SystemExit(f"mutation: the tests for {target.path} fail without any mutant")
    data = json.loads(out.read_text())
    lines = {int(k): set(v) for k, v in data["lines"].items()}
    return lines, data["durations"]


def _covering(mutant: Mutant, lines: dict[int, set[str]], durations: dict[str, float]) -> list:
    """The tests that run the mutated lines, fastest first (all of them for import-time code)."""
    tests: set[str] = set()
    for line in range(mutant.line, mutant.end_line + 1):
        tests |= lines.get(line, set())
    if "" in tests:  # run at import (a default value, a decorator): every test depends on it
        tests = set(durations)
    return sorted(tests, key=lambda t: (durations.get(t, 0.0), t))


def _previous(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _todo(name: str, survivors_only: bool, lines: frozenset[int]) -> tuple[list, list[Mutant]]:
    """The mutants to run, and the results kept from the last run (``--survivors``)."""
    todo = list(mutants(name, MODULES[name]))
    if lines:  # a chunk: only the mutants on these lines (results kept apart, see main)
        todo = [(m, src) for m, src in todo if m.line in lines]
    previous = _previous(name) if survivors_only else None
    if previous is None:
        return todo, []
    # Re-run only what survived last time (after tests were added); keep the rest as was.
    again = {
        (m["index"], m["line"], m["operator"])
        for m in previous["results"]
        if m["status"] in ("survived", "not covered")
    }
    kept = [
        Mutant(**m)
        for m in previous["results"]
        if (m["index"], m["line"], m["operator"]) not in again
    ]
    return [(m, src) for m, src in todo if (m.index, m.line, m.operator) in again], kept


def run_module(
    name: str, jobs: int, survivors_only: bool = False, lines: frozenset[int] = frozenset()
) -> dict:
    target = MODULES[name]
    todo, kept = _todo(name, survivors_only, lines)
    workdirs = []
    for _ in range(max(1, jobs)):
        work = Path(tempfile.mkdtemp(prefix=f"byok-mutation-{name}-"))
        shutil.copytree(SHARED, work / "shared", ignore=shutil.ignore_patterns("*.egg-info"))
        workdirs.append(work)
    try:
        started = time.monotonic()
        covered, durations = _trace(workdirs[0], target)  # not `lines`: the chunk asked for
        print(f"{name}: {len(todo)} mutants; {len(durations)} tests traced in "
              f"{time.monotonic() - started:.0f} s", flush=True)  # fmt: skip
        free = list(workdirs)

        def one(item: tuple[Mutant, str]) -> Mutant:
            mutant, source = item
            tests = _covering(mutant, covered, durations)
            traced = bool(tests)
            if not traced:
                # No traced test ran these lines in pytest's process; a test may still run them
                # in a child process (aliyun-local's FC worker, a console script), which the
                # tracer does not follow: the whole selection decides, never the trace alone.
                tests = list(target.tests)
            mutant.tests_run = len(tests)
            timeout = 60 + 3 * sum(durations.values() if not traced else
                                   (durations.get(t, 0.0) for t in tests))  # fmt: skip
            work = free.pop()
            path = work / "shared" / target.path
            original = path.read_text()
            try:
                path.write_text(source)
                ok, timed_out, seconds = _run_tests(work, tests, timeout)
            finally:
                path.write_text(original)
                free.append(work)
            mutant.status = "timeout" if timed_out else ("survived" if ok else "killed")
            if ok and not traced:
                mutant.status = "not covered"  # survived every selected test, none traced it
            mutant.seconds = round(seconds, 1)
            mark = "SURVIVED" if ok else mutant.status
            print(f"  {mark:8} {target.path}:{mutant.line} {mutant.operator}: {mutant.code}",
                  flush=True)  # fmt: skip
            return mutant

        with ThreadPoolExecutor(max_workers=len(workdirs)) as pool:
            done = sorted([*kept, *pool.map(one, todo)], key=lambda m: m.index)
    finally:
        for work in workdirs:
            shutil.rmtree(work, ignore_errors=True)
    killed = sum(1 for m in done if m.status in ("killed", "timeout"))
    result = {
        "module": name,
        "path": target.path,
        "tests": list(target.tests),
        "functions": list(target.functions),
        "mutants": len(done),
        "killed": killed,
        "score": round(100 * killed / len(done), 1) if done else 100.0,
        "results": [asdict(m) for m in done],
    }
    if lines:
        result["lines"] = sorted(lines)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}{'.lines' if lines else ''}.json").write_text(json.dumps(result, indent=1))
    return result


def summary(results: list[dict]) -> str:
    out = ["| module | mutants | killed | score | tests |", "|---|---|---|---|---|"]
    for r in results:
        tests = ", ".join(Path(t).name for t in r["tests"])
        scope = f" ({', '.join(r['functions'])})" if r["functions"] else ""
        out.append(
            f"| `{r['path']}`{scope} | {r['mutants']} | {r['killed']} | {r['score']} % | {tests} |"
        )
    for r in results:
        for m in r["results"]:
            if m["status"] in ("survived", "not covered"):
                out.append(f"- {m['status']} `{r['path']}:{m['line']}` {m['operator']}: "
                           f"`{m['code']}`")  # fmt: skip
    return "\n".join(out)


def _by_path(name: str) -> str:
    """A module name, or the file's path (``shared/byok_keeper/gateway/kms/gateway.py``, with or
    without ``shared/``) -> the name of the target that mutates that file."""
    path = name.removeprefix("shared/")
    return next((n for n, t in MODULES.items() if t.path == path), name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__)
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=", ".join(MODULES))
    parser.add_argument("--jobs", type=int, default=1, help="parallel workers (default 1)")
    parser.add_argument("--list", action="store_true", help="count mutants, run nothing")
    parser.add_argument("--report", action="store_true", help="summarise .mutation/*.json")
    parser.add_argument(
        "--survivors", action="store_true", help="re-run only the last run's survivors"
    )
    parser.add_argument(
        "--lines",
        default="",
        metavar="N,M",
        help="only the mutants on these source lines, a chunk of a slow module (results in "
        ".mutation/NAME.lines.json, never mixed with a whole run's)",
    )
    args = parser.parse_args(argv)
    names = [_by_path(n) for n in args.modules] or list(MODULES)
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        parser.error(f"unknown modules {unknown}; choose from {', '.join(MODULES)}")
    if args.list:
        for name in names:
            print(f"{name}: {sum(1 for _ in mutants(name, MODULES[name]))} mutants")
        return 0
    if args.report:
        files = [RESULTS / f"{n}.json" for n in names if (RESULTS / f"{n}.json").exists()]
        print(summary([json.loads(f.read_text()) for f in files]))
        return 0
    try:
        lines = frozenset(int(n) for n in args.lines.split(",") if n.strip())
    except ValueError:
        parser.error("--lines takes line numbers separated by commas")
    if lines and args.survivors:
        parser.error("--lines and --survivors do not combine")
    results = [run_module(name, args.jobs, args.survivors, lines) for name in names]
    print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

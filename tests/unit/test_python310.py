"""Python 3.10 is supported (pyproject's ``requires-python``, the FC runtime's python3.10
fallback), but no 3.10 interpreter runs here: the code shipped (shared/byok_keeper, functions/)
is held to 3.10 statically. Every module parses with ``feature_version=(3, 10)`` (``except*``
and other 3.11 syntax fail), names only 3.11+ has are forbidden (``enum.StrEnum``,
``datetime.UTC``, ``typing.Self``, ``ExceptionGroup``, ...), ``tomllib`` is imported only under a
version or ImportError guard, and no regular expression uses 3.11's possessive quantifiers or
atomic groups."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TREES = (ROOT / "shared" / "byok_keeper", ROOT / "functions")

NEW_IN_311 = {
    "datetime": {"UTC"},
    "typing": {"Self", "LiteralString", "Never", "assert_never", "assert_type", "reveal_type",
               "TypeVarTuple", "Unpack", "Required", "NotRequired", "dataclass_transform",
               "get_overloads", "clear_overloads"},
    "enum": {"StrEnum", "ReprEnum", "EnumCheck", "verify", "member", "nonmember", "global_enum"},
    "asyncio": {"TaskGroup", "timeout", "Runner"},
    "hashlib": {"file_digest"},
    "contextlib": {"chdir"},
    "re": {"NOFLAG"},
    "math": {"cbrt", "exp2"},
    "logging": {"getLevelNamesMapping"},
}  # fmt: skip
NEW_BUILTINS = {"ExceptionGroup", "BaseExceptionGroup"}
RE_FUNCTIONS = {"compile", "match", "search", "fullmatch", "sub", "subn", "split", "findall",
                "finditer"}  # fmt: skip


def _sources() -> list[pathlib.Path]:
    return sorted(p for tree in TREES for p in tree.rglob("*.py"))


def _regex_311(pattern: str) -> bool:
    """A possessive quantifier (``*+ ++ ?+ }+``) or an atomic group ``(?>`` outside escapes
    and character classes."""
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            if i < n and pattern[i] == "]":
                i += 1
            while i < n and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
            i += 1
            continue
        if pattern.startswith("(?>", i):
            return True
        if c in "*+?}" and i + 1 < n and pattern[i + 1] == "+":
            return True
        i += 1
    return False


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside ``try: ... except ImportError`` or ``if sys.version_info ...``."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try):
            return True
        if isinstance(node, ast.If) and "version_info" in ast.unparse(node.test):
            return True
    return False


def findings(source: str) -> tuple[list[str], list[str]]:
    """(3.11-only names and syntax, 3.11-only regular expressions) in one module's source."""
    try:
        tree = ast.parse(source, feature_version=(3, 10))
    except SyntaxError as exc:
        return [f"line {exc.lineno}: not 3.10 syntax: {exc.msg}"], []
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    names: list[str] = []
    regexes: list[str] = []
    for node in ast.walk(tree):
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and node.module in NEW_IN_311:
            names += [f"{where}: {node.module}.{a.name}" for a in node.names
                      if a.name in NEW_IN_311[node.module]]  # fmt: skip
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            if "tomllib" in mods and not _guarded(node, parents):
                names.append(f"{where}: tomllib without a 3.10 fallback")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.attr in NEW_IN_311.get(node.value.id, ()):
                names.append(f"{where}: {node.value.id}.{node.attr}")
        if isinstance(node, ast.Name) and node.id in NEW_BUILTINS:
            names.append(f"{where}: {node.id}")
        if isinstance(node, ast.Attribute) and node.attr == "add_note":  # BaseException's, 3.11
            names.append(f"{where}: .add_note")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "re"
            and node.func.attr in RE_FUNCTIONS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and _regex_311(node.args[0].value)
        ):
            regexes.append(f"{where}: {node.args[0].value!r}")
    return names, regexes


@pytest.mark.parametrize(
    "snippet",
    [
        "from enum import StrEnum",
        "import enum\nclass K(enum.StrEnum): pass",
        "from datetime import UTC",
        "import datetime\nnow = datetime.datetime.now(datetime.UTC)",
        "from typing import Self",
        "try:\n    pass\nexcept* ValueError:\n    pass",
        "raise ExceptionGroup('x', [])",
        "from contextlib import chdir",
        "import re\nflags = re.NOFLAG",
        "try:\n    pass\nexcept ValueError as exc:\n    exc.add_note('x')",
        "import tomllib",
        "import re\nre.compile(r'a*+b')",
        "import re\nre.compile(r'[a-z]{2,}+')",
        "import re\nre.search(r'(?>ab|a)c', 's')",
    ],
)
def test_the_checker_sees_each_311_only_feature(snippet):
    names, regexes = findings(snippet)
    assert names or regexes, snippet


@pytest.mark.parametrize(
    "snippet",
    [
        "import sys\nif sys.version_info >= (3, 11):\n    import tomllib\nelse:\n    import tomli",
        "from datetime import timezone\nUTC = timezone.utc",
        "import re\nre.compile(r'\\++[+]+(?:a)+')",
        "class E(str, __import__('enum').Enum): pass",
    ],
)
def test_the_checker_allows_310_spellings(snippet):
    assert findings(snippet) == ([], [])


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_module_is_python_310(path):
    rel = str(path.relative_to(ROOT))
    names, regexes = findings(path.read_text())
    assert names == [], f"{rel}: 3.11-only {names}"
    assert regexes == [], f"{rel}: 3.11-only regular expressions {regexes}"

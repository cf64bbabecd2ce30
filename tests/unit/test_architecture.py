"""The house rules of docs/ARCHITECTURE.md, held by a test.

- importing the pure planner loads no Alibaba SDK module (the domain floor is SDK-free);
- the modules that import an Alibaba SDK (at any level, or by name through ``importlib``) are
  exactly those ARCHITECTURE.md names;
- no import circle between byok_keeper modules (function-level imports count too);
- no file in shared/byok_keeper over 450 lines, no function over 80 lines.
"""

from __future__ import annotations

import ast
import pathlib
import re
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "shared" / "byok_keeper"
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 80
ARCHITECTURE = PACKAGE.parents[1] / "docs" / "ARCHITECTURE.md"
SDK_ROOTS = ("alibabacloud", "Tea", "darabonba")


def _sources() -> list[pathlib.Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_imports(path: pathlib.Path) -> set[str]:
    """byok_keeper modules this module imports, at module level or inside functions."""
    tree = ast.parse(path.read_text())
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                found.add(module)
                found.update(f"{module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            else:
                visit([c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)])

    visit(tree.body)
    return found


def test_importing_the_planner_loads_no_alibaba_sdk():
    code = (
        "import sys, byok_keeper.plan\n"
        "prefixes = ('alibabacloud', 'Tea', 'darabonba')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(prefixes))\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "", f"byok_keeper.plan loads: {out.stdout.strip()[:300]}"


def _loads_an_sdk(path: pathlib.Path) -> bool:
    """Imports an SDK module (any level but ``TYPE_CHECKING``), or names one in a module that
    calls ``importlib.import_module`` (``logs._SDK_MODULES``)."""
    if any(m.split(".")[0].startswith(SDK_ROOTS) for m in _top_level_imports(path)):
        return True
    tree = ast.parse(path.read_text())
    if "import_module" not in {getattr(n, "attr", getattr(n, "id", "")) for n in ast.walk(tree)}:
        return False
    return any(
        isinstance(n, ast.Constant)
        and isinstance(n.value, str)
        and re.fullmatch(r"(alibabacloud\w*|Tea|darabonba)(\.\w+)*", n.value)
        for n in ast.walk(tree)
    )


def test_architecture_names_every_module_that_imports_an_alibaba_sdk():
    importers = {str(p.relative_to(PACKAGE)) for p in _sources() if _loads_an_sdk(p)}
    text = " ".join(ARCHITECTURE.read_text().split())
    sentence = re.search(r"The Alibaba SDKs .*? nowhere else\.", text)
    assert sentence, "ARCHITECTURE.md: the sentence naming the SDK importers is gone"
    named = set(re.findall(r"`([\w/]+\.py)`", sentence.group(0)))
    assert importers, "the SDK import scanner found nothing: is it broken?"
    assert sorted(importers - named) == [], "SDK importers ARCHITECTURE.md does not name"
    assert sorted(named - importers) == [], "modules ARCHITECTURE.md names that load no SDK"


def test_no_import_circle():
    modules = {_module_name(p): p for p in _sources()}
    graph = {
        name: {m for m in _top_level_imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan, bounded by the module count
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    assert circles == []


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_file_and_function_sizes(path):
    source = path.read_text()
    lines = source.count("\n")
    assert lines <= MAX_FILE_LINES, f"{path.name}: {lines} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []

"""The house rules of docs/ARCHITECTURE.md, held by a test.

- the package's top is the floors and nothing else, and imports point down the floors;
- importing the pure planner or the events parser loads no Alibaba SDK module;
- the modules that import an Alibaba SDK (at any level, or by name through ``importlib``) are
  exactly those ARCHITECTURE.md names;
- no import circle in the repository's Python (shared/, functions/, bench/, deploy/, tests/;
  function-level imports count too, ``if TYPE_CHECKING:`` blocks do not);
- no file in shared/byok_keeper or shared/aliyun_local over 450 lines, no function over 80 lines.
"""

from __future__ import annotations

import ast
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"
PACKAGES = (SHARED / "byok_keeper", SHARED / "aliyun_local")
# Where the repository's Python lives; the two packages import from shared/, the tests and the
# functions from the repository root, bench/'s and deploy/'s scripts also import their
# neighbours by bare name.
TREES = (SHARED, ROOT / "functions", ROOT / "bench", ROOT / "deploy", ROOT / "tests")
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 80
AGENT = SHARED / "byok_keeper"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
SDK_ROOTS = ("alibabacloud", "Tea", "darabonba")


def _sources() -> list[pathlib.Path]:
    return sorted(p for package in PACKAGES for p in package.rglob("*.py"))


def _module_name(path: pathlib.Path, base: pathlib.Path = SHARED) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: pathlib.Path, package: str) -> set[str]:
    """Modules this file imports, at module level or inside functions: absolute names, and
    relative ones resolved against ``package`` (the dotted name of the file's package)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = parts[: len(parts) - node.level + 1]
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


def _resolve(name: str, importer: pathlib.Path) -> pathlib.Path | None:
    """The repository file ``name`` is, from ``importer``: a module under shared/ or the
    repository root (``tests.conftest``, ``functions.sweep.index``), else, from a script
    directory (no ``__init__.py``: bench/), its neighbour (``import sweep``)."""
    relative = pathlib.Path(*name.split("."))
    bases = [SHARED, ROOT]
    script_directory = not (importer.parent / "__init__.py").exists()
    if script_directory and name.split(".")[0] not in sys.stdlib_module_names:
        bases.append(importer.parent)
    for base in bases:
        for candidate in (base / relative.with_suffix(".py"), base / relative / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _import_graph() -> dict[pathlib.Path, set[pathlib.Path]]:
    files = sorted(p for tree in TREES for p in tree.rglob("*.py"))
    graph: dict[pathlib.Path, set[pathlib.Path]] = {}
    for path in files:
        base = SHARED if path.is_relative_to(SHARED) else ROOT
        package = _module_name(path, base)
        if path.name != "__init__.py":
            package = package.rpartition(".")[0]
        targets = {_resolve(name, path) for name in _imports(path, package) if name}
        graph[path] = {t for t in targets if t is not None and t != path}
    known = set(graph)
    return {path: targets & known for path, targets in graph.items()}


@pytest.mark.parametrize("module", ["byok_keeper.planning.plan", "byok_keeper.planning.events"])
def test_the_planner_and_the_events_parser_load_no_alibaba_sdk(module):
    code = (
        f"import sys, {module}\n"
        "prefixes = ('alibabacloud', 'Tea', 'darabonba')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(prefixes))\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "", f"{module} loads: {out.stdout.strip()[:300]}"


def _loads_an_sdk(path: pathlib.Path) -> bool:
    """Imports an SDK module (any level but ``TYPE_CHECKING``), or names one in a module that
    calls ``importlib.import_module`` (``logs._SDK_MODULES``)."""
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    if any(m.split(".")[0].startswith(SDK_ROOTS) for m in _imports(path, package)):
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
    agent = sorted(AGENT.rglob("*.py"))
    importers = {str(p.relative_to(AGENT)) for p in agent if _loads_an_sdk(p)}
    text = " ".join(ARCHITECTURE.read_text().split())
    sentence = re.search(r"The Alibaba SDKs .*? nowhere else\.", text)
    assert sentence, "ARCHITECTURE.md: the sentence naming the SDK importers is gone"
    named = set(re.findall(r"`([\w/]+\.py)`", sentence.group(0)))
    assert importers, "the SDK import scanner found nothing: is it broken?"
    assert sorted(importers - named) == [], "SDK importers ARCHITECTURE.md does not name"
    assert sorted(named - importers) == [], "modules ARCHITECTURE.md names that load no SDK"


def test_no_import_circle():
    graph = _import_graph()
    index: dict[pathlib.Path, int] = {}
    low: dict[pathlib.Path, int] = {}
    stack: list[pathlib.Path] = []
    circles: list[list[str]] = []

    def strongconnect(v: pathlib.Path) -> None:  # Tarjan, bounded by the module count
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
                circles.append(sorted(str(p.relative_to(ROOT)) for p in component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    assert circles == []


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(SHARED)))
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


# The floors of docs/ARCHITECTURE.md, bottom first: a module imports its own floor or lower ones.
FLOORS = ("domain", "crypto", "gateway", "vault", "planning", "core", "operations", "runtimes")
MAX_TOP_LEVEL_ENTRIES = 20


def _floor(module: str) -> int | None:
    parts = module.split(".")
    return FLOORS.index(parts[1]) if len(parts) > 1 and parts[1] in FLOORS else None


def test_the_package_top_shows_the_floors_and_nothing_else():
    entries = sorted(p.name for p in AGENT.iterdir() if p.name != "__pycache__")
    assert len(entries) <= MAX_TOP_LEVEL_ENTRIES, entries
    assert entries == sorted(["__init__.py", *FLOORS]), entries


def test_imports_point_down_the_floors():
    modules = {_module_name(p): p for p in sorted(AGENT.rglob("*.py"))}
    up = sorted(
        f"{name} -> {target}"
        for name, path in modules.items()
        for target in _imports(path, _package(name, path))
        if target in modules
        and _floor(name) is not None
        and _floor(target) is not None
        and _floor(target) > _floor(name)
    )
    assert up == [], "imports pointing up a floor: " + "; ".join(up)


def _package(name: str, path: pathlib.Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def test_the_emulator_imports_nothing_from_the_agent():
    """aliyun-local is the agent's independent other side (its own SM2, specs and wrapping
    keys); tests/unit/test_emulator_independent.py also imports and serves it without
    byok_keeper on the path."""
    emulator = SHARED / "aliyun_local"
    found = sorted(
        f"{path.relative_to(SHARED)}: {name}"
        for path in emulator.rglob("*.py")
        for name in _imports(path, _package(_module_name(path), path))
        if name.split(".")[0] == "byok_keeper"
    )
    assert found == []

"""byok-keeper's runtime pins, shared by deploy/package.py (the FC code package) and
deploy/dist.py (the hashed pins beside the wheels): constraints.txt's hashed pins, and the
closure of pyproject's runtime dependencies for a target Python, from the installed metadata.
Its own module so the two scripts that need it do not import each other."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def runtime_requirements() -> list[str]:
    """pyproject's runtime dependencies (markers evaluated by pip)."""
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(doc["project"]["dependencies"])


def parse_pins(constraints: Path) -> dict[str, dict]:
    """constraints.txt (pip-compile, hashed) -> {normalised name: {"line", "version", "block"}}.

    ``block`` is the pin with its ``--hash`` options, ready for a ``--require-hashes`` file.
    """
    pins: dict[str, dict] = {}
    text = constraints.read_text().replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = line.split()[0].split(";")[0]
        if "==" not in requirement:
            raise SystemExit(f"package.py: constraints.txt line {requirement!r} is not a pin")
        name, version = requirement.split("==", 1)
        if "--hash=sha256:" not in line:
            raise SystemExit(f"package.py: the pin {requirement} in constraints.txt has no hash")
        pins[norm(name)] = {"line": requirement, "version": version, "block": line}
    return pins


def runtime_closure(python_version: str) -> list[str]:
    """Normalised names of pyproject's runtime dependencies and theirs, for the target Python,
    read from this environment's installed metadata (``make install`` installed exactly the
    pins). No resolver run, no index: the pins' files are fetched hash-checked afterwards."""
    from importlib import metadata

    from packaging.requirements import Requirement

    env = {"python_version": python_version, "python_full_version": f"{python_version}.0"}
    todo = [(Requirement(r), {""}) for r in runtime_requirements()]
    seen: set[str] = set()
    while todo:
        requirement, extras = todo.pop()
        marker = requirement.marker
        if marker and not any(marker.evaluate({**env, "extra": e}) for e in extras):
            continue
        name = norm(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise SystemExit(
                f"package.py: {requirement.name} is not installed: make install"
            ) from None
        wanted = {"", *requirement.extras}
        todo += [(Requirement(r), wanted) for r in dist.requires or []]
    return sorted(seen)


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()

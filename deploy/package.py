"""Build the Function Compute code package: ``dist/byok-keeper-fc.zip``.

    python deploy/package.py [--output dist/byok-keeper-fc.zip] [--python-version 3.10]
                             [--platform manylinux2014_x86_64] [--cache DIR]

Contents: ``sweep/`` and ``reimport/`` (from ``functions/``; handlers ``sweep.index.handler``
and ``reimport.index.handler``), the ``byok_keeper`` package, and every runtime dependency at
the version pinned in ``constraints.txt``, as wheels for the target runtime (binary wheels for
that platform and Python; pure-Python wheels built locally when only an sdist exists).

Reproducible: same inputs, same bytes. Entries are sorted, timestamps fixed to 1980-01-01,
permissions normalised, bytecode and caches left out. ``--cache`` keeps downloaded wheels
between builds.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
EXCLUDE = re.compile(r"(^|/)(__pycache__|[^/]+\.pyc|[^/]+\.pyo)(/|$)")
FUNCTIONS = ("sweep", "reimport")


def _pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "-q"], check=True
    )


def runtime_requirements() -> list[str]:
    """pyproject's runtime dependencies (markers evaluated by pip)."""
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(doc["project"]["dependencies"])


def fetch_wheels(cache: Path, python_version: str, platform: str) -> list[Path]:
    """Resolve the runtime closure and collect one wheel per distribution for the target.

    Some Alibaba Cloud packages publish only sdists (pure Python), so the closure is resolved
    and built into wheels here first; the binary distributions among them are then fetched
    again as wheels for the target platform and Python.
    """
    target = cache / f"cp{python_version.replace('.', '')}-{platform}"
    local = cache / "local-build"
    target.mkdir(parents=True, exist_ok=True)
    local.mkdir(parents=True, exist_ok=True)
    reqs = cache / "requirements.txt"
    reqs.write_text("\n".join(runtime_requirements()) + "\n")
    constraints = str(ROOT / "constraints.txt")
    _pip("wheel", "-r", str(reqs), "-c", constraints, "-w", str(local))
    binary = []
    for wheel in local.glob("*.whl"):
        if wheel.name.endswith("-none-any.whl"):
            shutil.copy2(wheel, target / wheel.name)
        else:
            binary.append(wheel.name.split("-")[0])
    pins = _pins(constraints, binary)
    if pins:
        _pip(
            "download",
            *pins,
            "--no-deps",
            "-d",
            str(target),
            "--only-binary=:all:",
            "--platform",
            platform,
            "--python-version",
            python_version,
            "--implementation",
            "cp",
        )
    return sorted(target.glob("*.whl"))


def _pins(constraints: str, names: list[str]) -> list[str]:
    wanted = {_norm(n) for n in names}
    pins = []
    for line in Path(constraints).read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name = line.split("==")[0].strip()
            if _norm(name) in wanted:
                pins.append(line.strip())
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _select(wheels: list[Path], python_version: str) -> list[Path]:
    """One wheel per distribution: prefer the one built for the target Python."""
    tag = f"cp{python_version.replace('.', '')}"
    chosen: dict[str, Path] = {}
    for wheel in wheels:
        name = _norm(wheel.name.split("-")[0])
        current = chosen.get(name)
        if current is None or (tag in wheel.name and tag not in current.name):
            chosen[name] = wheel
    return sorted(chosen.values())


def build(output: Path, python_version: str, platform: str, cache: Path) -> str:
    wheels = _select(fetch_wheels(cache, python_version, platform), python_version)
    files: dict[str, bytes] = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.endswith("/") or EXCLUDE.search(name):
                    continue
                # Wheel .data/purelib and platlib install into site-packages like the rest.
                m = re.match(r"^[^/]+\.data/(purelib|platlib)/(.+)$", name)
                target = m.group(2) if m else name
                if re.match(r"^[^/]+\.data/", target):
                    continue  # scripts and headers have no place in a function package
                files[target] = zf.read(name)
    for path in sorted((ROOT / "shared" / "byok_keeper").rglob("*")):
        rel = path.relative_to(ROOT / "shared").as_posix()
        if path.is_file() and not EXCLUDE.search(rel):
            files[rel] = path.read_bytes()
    for function in FUNCTIONS:
        source = ROOT / "functions" / function
        for path in sorted(source.rglob("*.py")):
            rel = f"{function}/{path.relative_to(source).as_posix()}"
            if not EXCLUDE.search(rel):
                files[rel] = path.read_bytes()
        files.setdefault(f"{function}/__init__.py", b"")

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix
            zf.writestr(info, files[name])
    tmp.replace(output)
    return hashlib.sha256(output.read_bytes()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "dist" / "byok-keeper-fc.zip")
    parser.add_argument(
        "--python-version",
        default="3.12",
        help="the FC runtime's Python (deploy/functions.yml uses python3.12; a drill on a "
        "machine without it: this machine's Python, and aliyun-local serve --fc-runtime)",
    )
    parser.add_argument("--platform", default="manylinux2014_x86_64")
    parser.add_argument("--cache", type=Path, default=ROOT / "dist" / ".wheels")
    args = parser.parse_args()
    if not re.fullmatch(r"3\.\d{1,2}", args.python_version):
        parser.error("--python-version must look like 3.10")
    try:
        digest = build(args.output, args.python_version, args.platform, args.cache)
    except subprocess.CalledProcessError as exc:
        print(f"package.py: pip failed ({exc.returncode}); see its output above", file=sys.stderr)
        return 2
    size = args.output.stat().st_size
    print(f"{args.output} {size / 1e6:.1f} MB sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

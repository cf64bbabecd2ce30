"""Build the distributions: wheels and sdists of ``byok-keeper`` and ``aliyun-local``.

    python deploy/dist.py [--output dist]        # make dist

``byok-keeper`` is the root ``pyproject.toml`` (the agent, its CLI and daemon: package
``byok_keeper``); ``aliyun-local`` is ``shared/pyproject.toml`` (the emulator, package
``aliyun_local``), its own distribution as moto is beside boto3. Each sdist is built from the
source tree with setuptools' PEP 517 hooks, then each wheel from the unpacked sdist (as
``python -m build`` does), so a file the sdist leaves out fails the wheel instead of shipping a
broken sdist. No build isolation and no index: setuptools is the one constraints.txt pins and
hashes, installed by ``make install``. ``SOURCE_DATE_EPOCH`` fixes the wheels' timestamps.

Then the checks ``twine check`` makes and more, each failure one line and exit 1:
``packaging.metadata`` validates every PKG-INFO and METADATA (core metadata 2.x fields, names,
versions, requirement syntax), the long description is present and declared Markdown, the sdist's
and the wheel's metadata agree, every file of a wheel is in its RECORD with its sha256, the
byok-keeper wheel carries no ``aliyun_local`` (and the aliyun-local wheel no ``byok_keeper``),
aliyun-local does not require byok-keeper (the emulator shares no code with the agent it tests),
and CHANGELOG.md has a section for the version built.

Beside them, ``byok-keeper-pins.txt``: byok-keeper's runtime dependencies and theirs, each
pinned with its sha256 hashes as constraints.txt has them, so a host installs the wheel with
``pip install --require-hashes --no-deps -r byok-keeper-pins.txt`` first (deploy/README.md).
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# 2026-01-01T00:00:00Z: wheels' entries carry this time, not the build's.
SOURCE_DATE_EPOCH = "1767225600"


@dataclass(frozen=True)
class Project:
    name: str  # the distribution
    source: Path  # the directory holding its pyproject.toml
    package: str  # its one top-level package
    foreign: str  # the other project's package, which must not be in this one


PROJECTS = (
    Project("byok-keeper", ROOT, "byok_keeper", "aliyun_local"),
    Project("aliyun-local", ROOT / "shared", "aliyun_local", "byok_keeper"),
)


class DistError(Exception):
    """A build or a check failed; the message is the one line printed."""


def _hook(cwd: Path, hook: str, out: Path) -> Path:
    """Run one setuptools PEP 517 hook in a child process (as a frontend does) and return the
    file it wrote. Setuptools' chatter goes to the child's stderr, kept for a failure."""
    code = (
        "import contextlib, sys\n"
        "from setuptools import build_meta\n"
        "with contextlib.redirect_stdout(sys.stderr):\n"
        f"    name = build_meta.{hook}(sys.argv[1])\n"
        "print(name)\n"
    )
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise DistError(f"{hook} in {cwd} failed ({done.returncode}): {last}")
    return out / done.stdout.strip().splitlines()[-1]


def build(project: Project, out: Path) -> tuple[Path, Path]:
    """(sdist, wheel) of one project in ``out``: the sdist from the tree, the wheel from it."""
    sdist = _hook(project.source, "build_sdist", out)
    with tempfile.TemporaryDirectory(prefix="byok-dist-") as tmp:
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        (unpacked,) = Path(tmp).iterdir()
        wheel = _hook(unpacked, "build_wheel", out)
    return sdist, wheel


# ---- the checks -------------------------------------------------------------------------------


def check_metadata(raw: bytes, where: str):
    """Core metadata, validated field by field by ``packaging.metadata``; the parsed form."""
    from packaging.metadata import ExceptionGroup, InvalidMetadata, Metadata

    try:
        meta = Metadata.from_email(raw, validate=True)
    except (InvalidMetadata, ExceptionGroup) as exc:
        problems = getattr(exc, "exceptions", [exc])
        raise DistError(f"{where}: invalid metadata: {'; '.join(map(str, problems))}") from None
    if not (meta.description or "").strip():
        raise DistError(f"{where}: no long description (readme)")
    if meta.description_content_type != "text/markdown":
        raise DistError(
            f"{where}: the description is {meta.description_content_type}, not Markdown"
        )
    return meta


def _sdist_metadata(sdist: Path) -> bytes:
    with tarfile.open(sdist) as tar:
        (pkg_info,) = [m for m in tar.getmembers() if m.name.count("/") == 1 and
                       m.name.endswith("/PKG-INFO")]  # fmt: skip
        return tar.extractfile(pkg_info).read()


def check_record(wheel: zipfile.ZipFile, where: str) -> None:
    """Every file of the wheel is in its RECORD with the right sha256 and size (PEP 376/427)."""
    (record_name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/RECORD")]
    rows = {r[0]: r for r in csv.reader(io.StringIO(wheel.read(record_name).decode()))}
    for name in wheel.namelist():
        if name == record_name:
            continue
        data = wheel.read(name)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        if rows.get(name, [None, None, None])[1:] != [f"sha256={digest}", str(len(data))]:
            raise DistError(f"{where}: {name} does not match its RECORD entry")
    if set(rows) != set(wheel.namelist()):
        raise DistError(f"{where}: RECORD lists files the wheel lacks")


def check(project: Project, sdist: Path, wheel: Path, versions: dict[str, str]):
    """All checks of one project's pair; its metadata."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = check_metadata(zf.read(meta_name), wheel.name)
        check_record(zf, wheel.name)
    sdist_meta = check_metadata(_sdist_metadata(sdist), sdist.name)
    for field in ("name", "version", "requires_dist", "requires_python", "license_expression"):
        if getattr(meta, field) != getattr(sdist_meta, field):
            raise DistError(f"{wheel.name}: {field} differs from {sdist.name}'s")
    if str(meta.name) != project.name or str(meta.version) != versions[project.name]:
        raise DistError(f"{wheel.name}: is {meta.name} {meta.version}, expected {project.name}")
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    if tops != {project.package}:
        raise DistError(f"{wheel.name}: carries {sorted(tops)}, expected only {project.package}")
    with tarfile.open(sdist) as tar:
        if any(f"/{project.foreign}/" in m.name for m in tar.getmembers()):
            raise DistError(f"{sdist.name}: carries {project.foreign}")
    return meta


def tree_version(package: str) -> str:
    """The version a package declares (``__version__``), read without importing it."""
    import ast

    tree = ast.parse((ROOT / "shared" / package / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "__version__":
            return ast.literal_eval(node.value)
    raise DistError(f"{package}/__init__.py declares no __version__")


def runtime_pins() -> str:
    """byok-keeper's runtime closure for this Python, as constraints.txt's hashed pins."""
    sys.path.insert(0, str(Path(__file__).parent))
    from pins import parse_pins, runtime_closure

    pins = parse_pins(ROOT / "constraints.txt")
    closure = runtime_closure(f"{sys.version_info.major}.{sys.version_info.minor}")
    head = "# byok-keeper's runtime dependencies, hash-checked: pip install --require-hashes "
    return head + "--no-deps -r THIS\n" + "".join(f"{pins[n]['block']}\n" for n in closure)


def check_changelog(version: str) -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    if not any(line.startswith(f"## {version} ") for line in text.splitlines()):
        raise DistError(f"CHANGELOG.md has no '## {version} ...' section")


def build_all(out: Path) -> list[Path]:
    """Build and check both projects into ``out``; the four files, sdist and wheel each, and
    the runtime pins."""
    versions = {p.name: tree_version(p.package) for p in PROJECTS}
    check_changelog(versions["byok-keeper"])
    out.mkdir(parents=True, exist_ok=True)
    files, metas = [], {}
    with tempfile.TemporaryDirectory(prefix="byok-dist-out-") as tmp:
        for project in PROJECTS:
            sdist, wheel = build(project, Path(tmp))
            metas[project.name] = check(project, sdist, wheel, versions)
            files += [sdist, wheel]
        required = [r.name for r in metas["aliyun-local"].requires_dist or []]
        if "byok-keeper" in required:
            raise DistError("aliyun-local requires byok-keeper; the emulator must not")
        pins = Path(tmp) / "byok-keeper-pins.txt"
        pins.write_text(runtime_pins())
        for old in out.glob("*"):  # earlier builds of these two only
            if old.name.startswith(("byok_keeper-", "aliyun_local-")):
                old.unlink()
        return [Path(f.replace(out / f.name)) for f in [*files, pins]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "dist", help="default: dist/")
    args = parser.parse_args(argv)
    try:
        files = build_all(args.output.resolve())
    except DistError as exc:
        print(f"dist.py: {exc}", file=sys.stderr)
        return 1
    for path in files:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        print(f"{path} {path.stat().st_size / 1e3:.0f} kB sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

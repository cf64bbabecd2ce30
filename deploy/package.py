"""Build the Function Compute code package: ``dist/byok-keeper-fc.zip``.

    python deploy/package.py [--output dist/byok-keeper-fc.zip] [--python-version 3.10]
                             [--platform manylinux2014_x86_64] [--cache DIR] [--config FILE]
                             [--wheel dist/byok_keeper-VERSION-py3-none-any.whl]

Contents: ``sweep/``, ``reimport/`` and ``events/`` (from ``functions/``; handlers
``sweep.index.handler``, ``reimport.index.handler`` and ``events.index.handler``), the
byok-keeper distribution installed from its wheel (``--wheel FILE``, e.g. ``make dist``'s; by
default built here from the tree as ``make dist`` builds it: sdist, then the wheel from it), and
every runtime dependency at the version pinned in ``constraints.txt``, as wheels for the target
runtime (binary wheels for that platform and
Python; pure-Python wheels built locally when only an sdist exists). With ``--config FILE``
(targets, issue 16), the settings file too, checked first, as ``byok-keeper.toml`` at the root.

Supply chain: every file comes hash-checked against constraints.txt (``--require-hashes``),
each wheel's version must equal its pin (else the build stops), and wheels are collected in a
fresh temporary directory per build, so a stale or planted wheel from an earlier build is never
picked up. ``--cache`` is only pip's download cache, and its files are hash-checked too.

Reproducible: same inputs, same bytes. Entries are sorted, timestamps fixed to 1980-01-01,
permissions normalised, bytecode and caches left out.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # deploy/'s neighbours (pins, dist), whether run or loaded by path
    sys.path.insert(0, _HERE)
from pins import norm as _norm  # noqa: E402 (after the path above)
from pins import parse_pins, runtime_closure  # noqa: E402 (parse_pins: tests use it here)

ROOT = Path(__file__).resolve().parents[1]
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
EXCLUDE = re.compile(r"(^|/)(__pycache__|[^/]+\.pyc|[^/]+\.pyo)(/|$)")
FUNCTIONS = ("sweep", "reimport", "events")
CONFIG_NAME = "byok-keeper.toml"  # --config FILE in the package; deploy.py's CONFIG_NAME


def check_config(path: Path) -> bytes:
    """The settings file, checked by the agent's parsers (settings and ``[[targets]]``) as
    deploy.py --config checks it: a bad file stops the build with one line."""
    sys.path.insert(0, str(ROOT / "shared"))
    from byok_keeper.core.settings import load_settings
    from byok_keeper.core.targets import load_targets
    from byok_keeper.domain.errors import ConfigError

    try:
        text = path.read_bytes()
        load_settings(env={}, config_path=str(path))
        load_targets(str(path), env={})
    except OSError as exc:
        raise SystemExit(f"package.py: --config: cannot read {path}: {exc.strerror}") from None
    except ConfigError as exc:
        raise SystemExit(f"package.py: --config {path}: {exc}") from None
    return text


def _pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "-q"], check=True
    )


def wheel_version(wheel: Path) -> tuple[str, str]:
    """(normalised name, version) from a wheel's file name (PEP 427)."""
    name, version = wheel.name.split("-")[:2]
    return _norm(name), version


def fetch_wheels(work: Path, python_version: str, platform: str, cache: Path | None) -> list[Path]:
    """One wheel per runtime distribution for the target, each at its pinned version and from
    a file whose sha256 constraints.txt pins (``--require-hashes``). ``work`` is fresh per build.

    The runtime closure comes from the installed metadata (``runtime_closure``); then every file
    is fetched hash-checked: pure-Python wheels as they are, sdists (some Alibaba Cloud packages
    publish only those) built into wheels here, binary distributions again for the target
    platform and Python.
    """
    pins = parse_pins(ROOT / "constraints.txt")
    cache_args = ["--cache-dir", str(cache)] if cache else []
    closure = runtime_closure(python_version)
    missing = [name for name in closure if name not in pins]
    if missing:
        raise SystemExit(f"package.py: no pin in constraints.txt for {missing}: run make lock")

    def hashed(names: list[str], path: Path) -> Path:
        path.write_text("".join(f"{pins[n]['block']}\n" for n in names))
        return path

    source, target, built = work / "source", work / "target", work / "built"
    for d in (source, target, built):
        d.mkdir()
    # No build isolation: sdists' metadata is prepared with this venv's setuptools, which
    # constraints.txt pins and hashes, instead of whatever the index offers at build time.
    _pip("download", "--require-hashes", "--no-deps", "--no-build-isolation", "-r",
         str(hashed(closure, work / "all.txt")), "-d", str(source), *cache_args)  # fmt: skip
    binary = []
    for path in sorted(source.iterdir()):
        name = _norm(path.name.split("-")[0])
        if path.name.endswith("-none-any.whl"):
            shutil.copy2(path, target / path.name)
        elif path.suffix == ".whl":
            binary.append(name)
        else:  # an sdist, already hash-checked: build it here (pure Python)
            _pip(
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                str(path),
                "-w",
                str(built),
                *cache_args,
            )
    for wheel in built.glob("*.whl"):
        shutil.copy2(wheel, target / wheel.name)
    if binary:
        _pip("download", "--require-hashes", "--no-deps", "-r",
             str(hashed(binary, work / "binary.txt")), "-d", str(target), "--only-binary=:all:",
             "--platform", platform, "--python-version", python_version, "--implementation",
             "cp", *cache_args)  # fmt: skip
    wheels = sorted(target.glob("*.whl"))
    check_versions(wheels, pins, closure)
    return wheels


def check_versions(wheels: list[Path], pins: dict[str, dict], closure: list[str]) -> None:
    """Every wheel's version equals its pin, and every distribution of the closure has one."""
    seen = set()
    for wheel in wheels:
        name, version = wheel_version(wheel)
        pinned = pins.get(name, {}).get("version")
        if version != pinned:
            raise SystemExit(
                f"package.py: {wheel.name} is version {version}, constraints.txt pins {pinned}"
            )
        seen.add(name)
    if sorted(seen) != sorted(closure):
        raise SystemExit(f"package.py: wheels {sorted(seen)} do not match {closure}")


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


def byok_keeper_wheel(work: Path, given: Path | None) -> Path:
    """The byok-keeper wheel: ``given`` (checked to be one), else built from this tree by
    deploy/dist.py (sdist, then the wheel from it; its checks included)."""
    if given is not None:
        if not re.fullmatch(r"byok_keeper-[^-]+-py3-none-any\.whl", given.name):
            raise SystemExit(f"package.py: --wheel {given.name} is not a byok-keeper wheel")
        return given
    from dist import PROJECTS, DistError, tree_version
    from dist import build as build_distribution
    from dist import check as check_distribution

    out = work / "byok-keeper"
    out.mkdir()
    project = PROJECTS[0]
    try:
        sdist, wheel = build_distribution(project, out)
        check_distribution(project, sdist, wheel, {project.name: tree_version(project.package)})
    except DistError as exc:
        raise SystemExit(f"package.py: {exc}") from None
    return wheel


def build(
    output: Path,
    python_version: str,
    platform: str,
    cache: Path | None,
    config: bytes | None = None,
    wheel: Path | None = None,
) -> str:
    with tempfile.TemporaryDirectory(prefix="byok-keeper-wheels-") as work:
        wheels = _select(fetch_wheels(Path(work), python_version, platform, cache), python_version)
        return _zip(output, [*wheels, byok_keeper_wheel(Path(work), wheel)], config)


def _zip(output: Path, wheels: list[Path], config: bytes | None = None) -> str:
    files: dict[str, bytes] = {} if config is None else {CONFIG_NAME: config}
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
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="pip's download cache (files are hash-checked on every build; wheels are collected "
        "in a fresh directory each time)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"settings file with [[targets]], checked and added as {CONFIG_NAME} (for "
        "Terraform's config_file and s.yaml's configFile; deploy.py --config adds it itself)",
    )
    parser.add_argument(
        "--wheel",
        type=Path,
        metavar="FILE",
        help="the byok-keeper wheel to install (make dist's); default: built from this tree",
    )
    args = parser.parse_args()
    if not re.fullmatch(r"3\.\d{1,2}", args.python_version):
        parser.error("--python-version must look like 3.10")
    config = None if args.config is None else check_config(args.config)
    try:
        digest = build(
            args.output, args.python_version, args.platform, args.cache, config, args.wheel
        )
    except subprocess.CalledProcessError as exc:
        print(f"package.py: pip failed ({exc.returncode}); see its output above", file=sys.stderr)
        return 2
    size = args.output.stat().st_size
    print(f"{args.output} {size / 1e6:.1f} MB sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The systemd units in deploy/systemd/ checked by systemd's own tools: ``systemd-analyze security
--offline=yes`` scores each service 3.0 or lower, ``systemd-analyze verify`` finds nothing to say
about the units as installed, and ``systemd-sysusers`` creates the dedicated user from the
shipped sysusers.d file. Where systemd is missing the checks skip; in CI (``CI`` set, after
``make systemd-tools``) they fail instead."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from byok_keeper.runtimes.cli import cli

SYSTEMD = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
SERVICES = ("byok-keeper.service", "byok-keeper-once.service")
UNITS = (*SERVICES, "byok-keeper.timer")
EXE = "/opt/byok-keeper/bin/byok-keeper"  # where deploy/README.md installs the wheel
MAX_EXPOSURE = 3.0


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing in CI: `make systemd-tools` should have installed it")
        pytest.skip(f"{name} is not installed (run `make systemd-tools`, as root, to install it)")
    return found


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def _service(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((SYSTEMD / name).read_text())
    return parser["Service"]


@pytest.mark.parametrize("unit", SERVICES)
def test_security_exposure_is_at_most_3(unit):
    tool = _tool("systemd-analyze")
    out = _run(tool, "security", "--offline=yes", f"--threshold={int(MAX_EXPOSURE * 10)}",
               str(SYSTEMD / unit))  # fmt: skip
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out.stdout)
    assert score, out.stdout[-2000:] + out.stderr
    assert float(score.group(1)) <= MAX_EXPOSURE, out.stdout
    assert out.returncode == 0, out.stderr  # --threshold: systemd's own verdict agrees


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A root directory laid out as a host after deploy/README.md's install: the units in
    /etc/systemd/system, the console script at EXE, systemd's own units beside them."""
    tree = tmp_path_factory.mktemp("root")
    (tree / "etc" / "systemd" / "system").mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(SYSTEMD / unit, tree / "etc" / "systemd" / "system" / unit)
    exe = tree / EXE.lstrip("/")
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    system_units = Path("/usr/lib/systemd/system")
    if system_units.is_dir():  # sysinit.target and friends, which every unit pulls in
        shutil.copytree(system_units, tree / "usr/lib/systemd/system", symlinks=True)
    return tree


def test_verify_finds_nothing_to_say(root):
    tool = _tool("systemd-analyze")
    out = _run(tool, "verify", f"--root={root}", *(f"/etc/systemd/system/{u}" for u in UNITS))
    # verify exits 0 on mere warnings (an unknown or misspelt key is "ignoring"): none wanted.
    assert out.returncode == 0 and out.stderr == "", out.stderr


def test_verify_catches_a_misspelt_setting(root, tmp_path):
    """The check above is not blind: a misspelt hardening key is reported."""
    tool = _tool("systemd-analyze")
    bad = root / "etc/systemd/system/byok-keeper-typo.service"
    bad.write_text((SYSTEMD / SERVICES[0]).read_text().replace("ProtectSystem=", "ProtectSytem="))
    try:
        out = _run(tool, "verify", f"--root={root}", "/etc/systemd/system/byok-keeper-typo.service")
    finally:
        bad.unlink()
    assert "Unknown key" in out.stderr and "ProtectSytem" in out.stderr


def test_sysusers_creates_the_dedicated_user_the_units_run_as(tmp_path):
    tool = _tool("systemd-sysusers")
    (tmp_path / "etc" / "sysusers.d").mkdir(parents=True)
    (tmp_path / "etc" / "passwd").write_text("")
    (tmp_path / "etc" / "group").write_text("")
    shutil.copy(SYSTEMD / "byok-keeper.sysusers", tmp_path / "etc/sysusers.d/byok-keeper.conf")
    out = _run(tool, f"--root={tmp_path}")
    assert out.returncode == 0 and "ignoring" not in out.stderr.lower(), out.stderr
    (user,) = [line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()]
    assert user[0] == "byok-keeper" and int(user[2]) < 1000  # a system user
    assert user[5] == "/var/lib/byok-keeper" and user[6].endswith("nologin")
    for unit in SERVICES:
        service = _service(unit)
        assert (service["User"], service["Group"]) == ("byok-keeper", "byok-keeper")
        assert (
            service["StateDirectory"] == "byok-keeper" and service["StateDirectoryMode"] == "0700"
        )


@pytest.mark.parametrize("unit", SERVICES)
def test_units_run_the_installed_console_script(unit):
    argv = shlex.split(_service(unit)["ExecStart"])
    assert argv[0] == EXE


def test_the_daemon_unit_serves_metrics_on_loopback_for_the_shipped_rules():
    """deploy/alerts/prometheus-rules.yml reads the daemon's /metrics (test_alert_rules.py holds
    the rules to the exported families, tests/e2e/test_metrics_endpoint.py the endpoint to
    them): the unit must turn the endpoint on, on loopback, at the documented address."""
    argv = shlex.split(_service("byok-keeper.service")["ExecStart"])
    command = cli.get_command(cli.make_context("byok-keeper", [argv[1]]), argv[1])
    params = command.make_context(argv[1], argv[2:]).params
    assert params["metrics_addr"] == "127.0.0.1:9464" and params["once"] is False
    assert "127.0.0.1:9464" in (SYSTEMD.parent / "README.md").read_text()

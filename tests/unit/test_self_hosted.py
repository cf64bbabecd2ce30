"""The self-hosted artefacts in deploy/: the systemd units and the ACK CronJob. Their commands
must parse with the CLI they run, and their settings must be ones the CLI reads."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest
import yaml

from byok_keeper.core.settings import ENV
from byok_keeper.runtimes.cli import cli

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SYSTEMD = DEPLOY / "systemd"


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((SYSTEMD / name).read_text())
    return parser


def _parses(argv: list[str]) -> dict:
    """Parse ``byok-keeper ARGS`` with the real CLI (no command runs); the command's params."""
    assert Path(argv[0]).name == "byok-keeper", argv
    name, *rest = argv[1:]  # the units and the manifest put no global flags first
    command = cli.get_command(cli.make_context("byok-keeper", [name]), name)
    return command.make_context(name, rest).params


@pytest.mark.parametrize("unit", ["byok-keeper.service", "byok-keeper-once.service"])
def test_service_units_run_a_command_the_cli_accepts(unit):
    service = _unit(unit)["Service"]
    params = _parses(shlex.split(service["ExecStart"]))
    assert params["state_dir"] == "/var/lib/byok-keeper"
    assert params["once"] is (unit == "byok-keeper-once.service")
    if params["once"]:  # a batch run writes its metrics for node_exporter, where it may write
        metrics_dir = str(Path(params["metrics_file"]).parent)
        assert metrics_dir == f"/run/{service['RuntimeDirectory']}" and not params["metrics_addr"]
    assert service["LimitCORE"] == "0" and service["UMask"] == "0077"
    assert service["EnvironmentFile"] == "/etc/byok-keeper/env"


def test_the_one_shot_unit_makes_its_metrics_directory_its_own():
    """node_exporter's directory belongs to another user (and a directory someone else can
    write is one they can plant a symlink in): systemd itself makes the unit's own directory,
    owned by its user, readable by node_exporter, kept between runs; nothing runs as root."""
    service = _unit("byok-keeper-once.service")["Service"]
    metrics = Path(_parses(shlex.split(service["ExecStart"]))["metrics_file"])
    assert metrics.parent == Path("/run") / service["RuntimeDirectory"]
    assert service["RuntimeDirectoryMode"] == "0755"
    assert service["RuntimeDirectoryPreserve"] == "yes"  # read between runs, until reboot
    assert not any(k.startswith("ExecStartPre") for k in service)
    assert "ReadWritePaths" not in service


def test_the_timer_starts_the_one_shot_sweep_and_catches_up_after_downtime():
    timer = _unit("byok-keeper.timer")["Timer"]
    assert timer["Persistent"] == "true"
    assert timer["Unit"] == "byok-keeper-once.service"
    assert (SYSTEMD / timer["Unit"]).exists()
    assert timer["OnCalendar"] == "*:0/15"
    assert _unit("byok-keeper-once.service")["Service"]["Type"] == "oneshot"


def test_the_cronjob_uses_rrsa_and_runs_a_command_the_cli_accepts():
    docs = {
        d["kind"]: d
        for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "cronjob.yaml").read_text())
    }
    namespace, account, job = docs["Namespace"], docs["ServiceAccount"], docs["CronJob"]
    assert namespace["metadata"]["labels"]["pod-identity.alibabacloud.com/injection"] == "on"
    assert "pod-identity.alibabacloud.com/role-name" in account["metadata"]["annotations"]
    spec = job["spec"]
    assert spec["concurrencyPolicy"] == "Forbid" and len(spec["schedule"].split()) == 5
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    (container,) = pod["containers"]
    params = _parses(container["command"])
    assert params["once"] is True
    names = {e["name"] for e in container["env"]}
    # Only settings the CLI reads, and no stored credentials: RRSA injects them.
    assert names <= set(ENV.values())
    assert not {n for n in names if "ACCESS_KEY" in n or "SECRET" in n}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert params["state_dir"] in mounts
    assert str(Path(params["metrics_file"]).parent) in mounts  # node-exporter's hostPath


def test_the_cronjob_hands_its_user_the_metrics_directory_before_it_runs():
    """A hostPath is root-owned and the job runs as runAsUser: an init container, root with
    CAP_CHOWN alone, gives the job's user the very directory its --metrics-file is in."""
    job = next(d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "cronjob.yaml").read_text())
               if d["kind"] == "CronJob")  # fmt: skip
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    metrics_dir = str(Path(_parses(container["command"])["metrics_file"]).parent)
    (volume,) = [m["name"] for m in container["volumeMounts"] if m["mountPath"] == metrics_dir]
    (init,) = pod["initContainers"]
    uid = pod["securityContext"]["runAsUser"]
    assert init["command"] == ["chown", f"{uid}:{uid}", metrics_dir]
    assert {"name": volume, "mountPath": metrics_dir} in init["volumeMounts"]
    context = init["securityContext"]
    assert context["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert context["allowPrivilegeEscalation"] is False
    (host,) = [v["hostPath"] for v in pod["volumes"] if v["name"] == volume]
    assert host["path"] == metrics_dir  # byok-keeper's own directory, not node-exporter's


def test_the_cronjob_image_installs_the_byok_keeper_wheel_from_hashed_pins():
    """deploy/kubernetes/Containerfile (no image is built here: no container engine) installs
    what deploy/dist.py writes, hash-checked, runs as the CronJob's user, and puts the console
    script the CronJob's command names on PATH."""
    from byok_keeper import __version__

    text = (DEPLOY / "kubernetes" / "Containerfile").read_text().replace("\\\n", " ")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    args = dict(line.split()[1].split("=", 1) for line in lines if line.startswith("ARG "))
    assert args["VERSION"] == __version__
    wheel = "byok_keeper-${VERSION}-py3-none-any.whl"
    (copy,) = [line.split()[1:] for line in lines if line.startswith("COPY ")]
    assert copy == ["byok-keeper-pins.txt", wheel, "/tmp/dist/"]  # no aliyun-local
    (run,) = [line for line in lines if line.startswith("RUN ")]
    steps = [shlex.split(step) for step in run[4:].split("&&")]
    pins = {"install", "--require-hashes", "--no-deps", "-r", "/tmp/dist/byok-keeper-pins.txt"}
    assert pins <= set(steps[1])
    assert {"--no-deps", "--no-index", f"/tmp/dist/{wheel}"} <= set(steps[2])
    assert steps[3][-1] == "check"
    pod = next(
        d
        for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "cronjob.yaml").read_text())
        if d["kind"] == "CronJob"
    )["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    user = pod["securityContext"]["runAsUser"]
    assert f"USER {user}:{user}" in lines
    (env,) = [line for line in lines if line.startswith("ENV ")]
    assert "PATH=/opt/byok-keeper/bin:" in env
    assert steps[0] == ["python", "-m", "venv", "/opt/byok-keeper"]
    assert pod["containers"][0]["command"][0] == "byok-keeper"

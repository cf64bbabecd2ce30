"""deploy.py with targets (issue 16): the role's policy grants sts:AssumeRole on exactly the
--config file's role ARNs (none without targets), and a bad settings file is refused before
anything is deployed."""

from __future__ import annotations

import importlib.util
import io
import json
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
REGION, ACCOUNT = "cn-hangzhou", "1234567890123456"
A, B = "1111111111111111", "2222222222222222"

_spec = importlib.util.spec_from_file_location("deploy_script", ROOT / "deploy" / "deploy.py")
deploy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(deploy)
SOURCE = yaml.safe_load((ROOT / "deploy" / "functions.yml").read_text())

TWO_TARGETS = f"""
[[targets]]
name = "a"
region = "cn-hangzhou"
account_id = "{A}"
role_arn = "acs:ram::{A}:role/byok-keeper"

[[targets]]
name = "b"
region = "eu-central-1"
account_id = "{B}"
role_arn = "acs:ram::{B}:role/byok-keeper"

[[targets]]
name = "home"
region = "cn-shanghai"
account_id = "{ACCOUNT}"
"""


def _assume(policy: dict) -> list[dict]:
    return [s for s in policy["Statement"] if "sts:AssumeRole" in s["Action"]]


def test_without_targets_the_policy_grants_no_assume_role():
    policy = deploy.desired_state(SOURCE, {}, REGION, ACCOUNT)["policy"]
    assert _assume(policy) == []
    assert "${" not in json.dumps(policy)  # every placeholder filled
    sweep = deploy.desired_state(SOURCE, {}, REGION, ACCOUNT)["functions"]["sweep"]
    assert sweep["environment"]["BYOK_CONFIG"] == ""  # empty: no settings file


def test_two_targets_grant_assume_role_on_exactly_their_two_arns(tmp_path):
    path = tmp_path / "byok.toml"
    path.write_text(TWO_TARGETS)
    _text, arns = deploy.check_config(path)
    state = deploy.desired_state(SOURCE, {"ConfigFile": "byok-keeper.toml"}, REGION, ACCOUNT,
                                 "3.0", arns)  # fmt: skip
    (statement,) = _assume(state["policy"])
    assert statement["Action"] == ["sts:AssumeRole"] and statement["Effect"] == "Allow"
    assert statement["Resource"] == [
        f"acs:ram::{A}:role/byok-keeper",
        f"acs:ram::{B}:role/byok-keeper",
    ]
    assert not any("*" in r for r in statement["Resource"])
    env = {role: fn["environment"].get("BYOK_CONFIG") for role, fn in state["functions"].items()}
    assert env == {"sweep": "byok-keeper.toml", "reimport": "byok-keeper.toml", "events": None}


def test_plan_with_config_ships_the_file_and_prints_the_grant(monkeypatch, tmp_path, capsys):
    class Empty:
        def get_function(self, *args):
            return None  # nothing deployed yet: every change is a create

    monkeypatch.setattr(deploy, "_fc_client", lambda *args: Empty())
    shipped = {}
    real = deploy.deploy_v3

    def deploy_v3(state, code, client, plan):
        shipped["code"] = code
        return real(state, code, client, plan)

    monkeypatch.setattr(deploy, "deploy_v3", deploy_v3)
    monkeypatch.setattr(deploy, "_exists", lambda call: None)
    code = tmp_path / "code.zip"
    with zipfile.ZipFile(code, "w") as zf:  # deploy.py checks every handler's module is there
        for role in ("sweep", "reimport", "events"):
            zf.writestr(f"{role}/index.py", "")
    config = tmp_path / "byok.toml"
    config.write_text(TWO_TARGETS)
    rc = deploy.main(["--code", str(code), "--region", REGION, "--account-id", ACCOUNT,
                      "--config", str(config), "--plan"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    with zipfile.ZipFile(io.BytesIO(shipped["code"])) as zf:
        assert zf.read("byok-keeper.toml").decode() == TWO_TARGETS
        assert "sweep/index.py" in zf.namelist()
    (line,) = [x for x in out.splitlines() if x.startswith("plan: policy of ")]
    policy = json.loads(line.split("(not applied here): ", 1)[1])
    assert _assume(policy)[0]["Resource"] == [f"acs:ram::{A}:role/byok-keeper",
                                              f"acs:ram::{B}:role/byok-keeper"]  # fmt: skip


def _refused(tmp_path, capsys, monkeypatch, text: str, *extra: str) -> str:
    monkeypatch.setattr(deploy, "_fc_client", lambda *args: (_ for _ in ()).throw(AssertionError))
    code = tmp_path / "code.zip"
    code.write_bytes(b"PK")
    config = tmp_path / "bad.toml"
    config.write_text(text)
    rc = deploy.main(["--code", str(code), "--region", REGION, "--account-id", ACCOUNT,
                      "--config", str(config), *extra])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    return err


def test_a_bad_targets_file_is_one_line_exit_2_and_nothing_deployed(tmp_path, capsys, monkeypatch):
    bad_arn = TWO_TARGETS.replace(f"acs:ram::{B}:role/byok-keeper", "acs:ram::*:role/x")
    assert "role" in _refused(tmp_path, capsys, monkeypatch, bad_arn)
    duplicate = TWO_TARGETS.replace('name = "b"', 'name = "a"')
    assert "twice" in _refused(tmp_path, capsys, monkeypatch, duplicate)
    assert "--config" in _refused(tmp_path, capsys, monkeypatch, "not = [toml")
    err = _refused(tmp_path, capsys, monkeypatch, TWO_TARGETS, "--parameter", "ConfigFile=x")
    assert "ConfigFile is set by --config" in err


def test_package_config_ships_the_checked_file_and_refuses_a_bad_one(tmp_path):
    spec = importlib.util.spec_from_file_location("byok_package", ROOT / "deploy" / "package.py")
    package = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(package)
    assert package.CONFIG_NAME == deploy.CONFIG_NAME
    good = tmp_path / "byok.toml"
    good.write_text(TWO_TARGETS)
    package._zip(tmp_path / "fc.zip", [], package.check_config(good))
    with zipfile.ZipFile(tmp_path / "fc.zip") as zf:
        assert zf.read("byok-keeper.toml").decode() == TWO_TARGETS
    bad = tmp_path / "bad.toml"
    bad.write_text(TWO_TARGETS.replace(f'account_id = "{B}"', 'account_id = "22"'))
    try:
        package.check_config(bad)
    except SystemExit as exc:
        assert str(exc).startswith("package.py: --config") and "\n" not in str(exc)
    else:
        raise AssertionError("a bad targets file was packaged")

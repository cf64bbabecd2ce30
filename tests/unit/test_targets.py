"""Targets (issue 16): the [[targets]] tables of the settings file, every refusal one line and
exit 2 before anything runs, and each target's own settings and budget."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from byok_keeper.core.multi import parallel_targets, run_targets
from byok_keeper.core.settings import Settings, load_settings
from byok_keeper.core.targets import load_targets, parse_targets, select, target_settings
from byok_keeper.domain.errors import ConfigError
from byok_keeper.runtimes.cli import main

A, B = "1111111111111111", "2222222222222222"
GOOD = f"""
vault = "file:///tmp/global-vault"
read_qps = 20

[[targets]]
name = "hz"
region = "cn-hangzhou"
account_id = "{A}"

[[targets]]
name = "fra"
region = "eu-central-1"
account_id = "{B}"
role_arn = "acs:ram::{B}:role/byok-keeper"
kms_endpoint = "http://127.0.0.1:9001"
sts_endpoint = "http://127.0.0.1:9002"
vault = "file:///tmp/fra-vault"
read_qps = 10
write_qps = 5
"""


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "byok.toml"
    path.write_text(text)
    return str(path)


def test_targets_parse_and_narrow_the_global_settings(tmp_path):
    path = _write(tmp_path, GOOD)
    settings = load_settings({}, env={}, config_path=path)
    hz, fra = load_targets(path, env={})
    assert (hz.name, hz.region, hz.account_id, hz.role_arn) == ("hz", "cn-hangzhou", A, None)
    assert fra.session_name == "byok-keeper-fra"
    narrowed = target_settings(settings, fra)
    assert (narrowed.region, narrowed.account_id) == ("eu-central-1", B)
    assert narrowed.kms_endpoint == "http://127.0.0.1:9001"
    assert narrowed.vault == "file:///tmp/fra-vault"
    assert (narrowed.read_qps, narrowed.write_qps, narrowed.create_qps) == (10.0, 5.0, 5.0)
    plain = target_settings(settings, hz)  # the global vault and budget, no endpoint override
    assert (plain.vault, plain.read_qps, plain.kms_endpoint) == (settings.vault, 20.0, None)


def test_targets_under_the_byok_keeper_table(tmp_path):
    text = '[byok-keeper]\nregion = "cn-hangzhou"\n[[byok-keeper.targets]]\nname = "x"\n'
    text += f'region = "cn-shanghai"\naccount_id = "{A}"\n'
    path = _write(tmp_path, text)
    assert load_settings({}, env={}, config_path=path).region == "cn-hangzhou"
    assert [t.name for t in load_targets(path, env={})] == ["x"]


def test_without_targets_nothing_changes(tmp_path):
    assert load_targets(None, env={}) == ()
    assert load_targets(_write(tmp_path, 'region = "cn-hangzhou"\n'), env={}) == ()


def _target(**over):
    base = {"name": "t", "region": "cn-hangzhou", "account_id": A}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([_target(name=None)], "has no name"),
        ([_target(name="bad name")], "name must be"),
        ([_target(), _target()], "declared twice"),
        ([_target(region=None)], "has no region"),
        ([_target(region="Hangzhou")], "region must be"),
        ([_target(account_id=None)], "account_id must be 16 digits"),
        ([_target(account_id="12345")], "account_id must be 16 digits"),
        ([_target(account_id=1111111111111111)], "account_id must be a string"),
        ([_target(role_arn="arn:aws:iam::1:role/x")], "role_arn must be"),
        ([_target(role_arn=f"acs:ram::{A}:user/x")], "role_arn must be"),
        ([_target(role_arn=f"acs:ram::{B}:role/byok-keeper")], "another account"),
        ([_target(kms_endpoint="http://kms.example.com")], "kms_endpoint"),
        ([_target(sts_endpoint="http://10.0.0.1:80")], "sts_endpoint"),
        ([_target(sts_endpoint="ftp://127.0.0.1")], "sts_endpoint"),
        ([_target(read_qps=0)], "read_qps must be between"),
        ([_target(colour="blue")], "unknown settings: colour"),
        ({"name": "t"}, "array of tables"),
    ],
)
def test_every_bad_target_is_refused_in_one_line(raw, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_targets(raw)
    assert "\n" not in str(info.value)


def test_select_narrows_and_refuses_unknown_names():
    hz, fra = parse_targets([_target(name="hz"), _target(name="fra", region="eu-central-1")])
    assert select((hz, fra), []) == (hz, fra)
    assert select((hz, fra), ["fra", "fra"]) == (fra,)
    with pytest.raises(ConfigError, match="unknown target 'nope'; configured: hz, fra"):
        select((hz, fra), ["nope"])
    with pytest.raises(ConfigError, match="none are configured"):
        select((), ["hz"])


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        (GOOD, ["plan", "--target", "nope"], "unknown target 'nope'"),
        ('region = "cn-hangzhou"\n', ["sweep", "--target", "hz"], "none are configured"),
        (GOOD + GOOD.split("read_qps = 20", 1)[1], ["plan"], "declared twice"),
        ('[[targets]]\nname = "x"\nregion = "cn-hangzhou"\naccount_id = "1"\n',
         ["status", "key-x"], "16 digits"),
        (f'[[targets]]\nname = "x"\nregion = "cn-hangzhou"\naccount_id = "{A}"\n'
         f'kms_endpoint = "http://kms.example.com"\n', ["verify"], "not this machine"),
    ],
)  # fmt: skip
def test_the_cli_refuses_bad_targets_exit_2_one_line(tmp_path, capsys, text, args, message):
    code = main(["--config", _write(tmp_path, text), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1


def test_key_commands_need_target_when_several_could_hold_a_new_key(tmp_path, capsys):
    args = ["enroll", "--create", "--generate", "--key-spec", "EC_P256", "--usage", "SIGN/VERIFY"]
    code = main(["--config", _write(tmp_path, GOOD), *args, "--instance", "kst-x"])
    err = capsys.readouterr().err
    assert code == 2
    assert "choose with --target (hz, fra)" in err


def test_help_teaches_target():
    for command in ("plan", "sweep", "verify", "enroll", "reimport", "status", "hold", "release"):
        out = CliRunner().invoke(main_group(), [command, "--help"]).output
        assert "--target NAME" in out, command


def main_group():
    from byok_keeper.runtimes.cli import cli

    return cli


def test_parallel_targets_is_bounded_and_one_failure_stays_its_own():
    assert parallel_targets(4, 8) == 4
    assert parallel_targets(20, 8) == 8
    assert parallel_targets(3, 64) == 1
    targets = parse_targets([_target(name="a"), _target(name="b", region="cn-shanghai"),
                             _target(name="c", region="cn-beijing")])  # fmt: skip

    def work(target):
        if target.name == "b":
            raise ConfigError("b is broken")
        if target.name == "c":
            raise RuntimeError("secret text never shown")
        return target.name.upper()

    runs = run_targets(targets, work)
    assert [(r.target.name, r.value, r.error) for r in runs] == [
        ("a", "A", None),
        ("b", None, "b is broken"),
        ("c", None, "unexpected RuntimeError"),
    ]
    assert runs[1].bad_input and not runs[2].bad_input
    assert runs[0].status() == {
        "target": "a", "account_id": A, "region": "cn-hangzhou", "ok": True, "error": None,
    }  # fmt: skip


def test_settings_dataclass_is_untouched_by_targets():
    assert "targets" not in Settings.__dataclass_fields__


def test_report_draws_one_target_and_asks_which(tmp_path, capsys):
    code = main(["--config", _write(tmp_path, GOOD), "report", "--html", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert code == 2
    assert "choose with --target (hz, fra)" in err

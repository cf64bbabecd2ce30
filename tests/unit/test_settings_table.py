"""The settings table in byok_keeper.core.settings is a contract: every row is a real global flag,
environment variable and TOML key, and each of the three reaches the same setting."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest
from click.testing import CliRunner

from byok_keeper.core import settings as settings_module
from byok_keeper.core.settings import ENV, Settings, load_settings
from byok_keeper.runtimes.cli import App, cli

ROWS = [
    tuple(cell.strip() for cell in line.strip().strip("|").split("|"))
    for line in (settings_module.__doc__ or "").splitlines()
    if re.match(r"\|\s*[a-zA-Z]", line) and "environment" not in line
]
SAMPLES = {
    "region": ("cn-shanghai", "cn-shanghai"),
    "profile": ("ops", "ops"),
    "kms_endpoint": ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    "vault": ("file:///tmp/v", "file:///tmp/v"),
    "seal_key_file": ("/tmp/seal.key", "/tmp/seal.key"),
    "seal_kms_key_id": ("key-seal", "key-seal"),
    # Parsed when loaded: /bin/sh stands for a module path that is absolute and root's.
    "seal_pkcs11": ("pkcs11:token=t;object=o?module-path=/bin/sh",) * 2,
    "output": ("json", "json"),
    "read_qps": ("12", 12.0),
    "write_qps": ("7", 7.0),
    "create_qps": ("3", 3.0),
    "crypto_qps": ("50", 50.0),
    "tags_qps": ("60", 60.0),
    "renew_before": ("3d", "3d"),
    "audit_file": ("/tmp/audit.jsonl", "/tmp/audit.jsonl"),
    "concurrency": ("4", 4),
    "dispatch": ("fc-async", "fc-async"),
    "dispatch_batch": ("20", 20),
    "inline_keys": ("0", 0),
    "fc_endpoint": ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
    "fc_service": ("byok-x", "byok-x"),
    "fc_api": ("2.0", "2.0"),
    "fc_prefix": ("byok-y", "byok-y"),
    "budget_instances": ("4", 4),
    "budget_percent": ("40", 40),
    "account_id": ("1234567890123456", "1234567890123456"),
    "kms_timeout": ("9", 9.0),
    "sweep_interval": ("6h", "6h"),
}


def test_the_table_lists_every_setting_once():
    names = [row[3] for row in ROWS]
    assert sorted(names) == sorted(f.name for f in fields(Settings))
    assert len(names) == len(set(names))


@pytest.mark.parametrize("row", ROWS, ids=[r[3] for r in ROWS])
def test_each_row_is_a_real_flag_variable_and_toml_key(row, tmp_path, monkeypatch):
    _label, flag, variable, key = row
    raw, expected = SAMPLES[key]
    home = {"HOME": str(_aliyun_home(tmp_path))}  # for the profile row
    assert ENV[key] == variable
    assert getattr(load_settings(env={variable: raw, **home}), key) == expected
    toml = tmp_path / "byok.toml"
    toml.write_text(f'{key} = "{raw}"\n')
    assert getattr(load_settings(env=home, config_path=toml), key) == expected
    # The flag is a global option whose value lands in the same setting.
    seen: dict = {}

    @cli.command("probe-settings")
    def probe():  # pragma: no cover - run by the CliRunner below
        from click import get_current_context

        seen["settings"] = get_current_context().find_object(App).settings

    try:
        result = CliRunner().invoke(cli, [flag, raw, "probe-settings"], obj=App(), env=home)
    finally:
        cli.commands.pop("probe-settings")
    assert result.exit_code == 0, result.output
    assert getattr(seen["settings"], key) == expected


def _aliyun_home(tmp_path):
    home = tmp_path / "home"
    (home / ".aliyun").mkdir(parents=True, exist_ok=True)
    (home / ".aliyun" / "config.json").write_text(
        '{"current": "ops", "profiles": [{"name": "ops", "mode": "AK", "access_key_id": "a",'
        ' "access_key_secret": "b", "region_id": "cn-beijing"}]}'
    )
    return home


def test_profile_gives_credentials_source_and_region(tmp_path):
    home = _aliyun_home(tmp_path)
    env = {"HOME": str(home), "ALIBABA_CLOUD_PROFILE": "ops"}
    assert load_settings(env=env).region == "cn-beijing"
    assert load_settings({"region": "cn-shanghai"}, env=env).region == "cn-shanghai"
    from byok_keeper.domain.errors import ConfigError

    with pytest.raises(ConfigError, match="no such profile"):
        load_settings({"profile": "typo"}, env={"HOME": str(home)})
    with pytest.raises(ConfigError, match="--region, ALIBABA_CLOUD_REGION_ID"):
        load_settings(env={}).require_region()

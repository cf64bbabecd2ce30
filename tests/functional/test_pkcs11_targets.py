"""One token serves every target (issue 28): two accounts in two regions of aliyun-local, the
second through STS AssumeRole, one vault sealed by one SoftHSM2 token key; the daemon restores a
key in each with one module load and one login for the process."""

from __future__ import annotations

import json

import pytest

from aliyun_local.server import LocalServer
from byok_keeper.core.settings import load_settings
from byok_keeper.core.targets import load_targets
from byok_keeper.runtimes.daemon import run_daemon
from byok_keeper.vault import pkcs11
from tests.functional.two_targets import R1, R2, A, B, base_credentials, enroll_in, targets_toml
from tests.pkcs11 import make_token


@pytest.fixture(scope="module")
def cloud():
    with LocalServer(accounts=[A, B], regions=[R1, R2]) as server:
        yield server


def test_one_token_serves_every_target_with_one_login(cloud, tmp_path, monkeypatch):
    base_credentials(monkeypatch, tmp_path)
    token = make_token(tmp_path / "hsm")
    monkeypatch.setenv("SOFTHSM2_CONF", str(token.conf))
    pkcs11.new_token_key(token.uri())
    text = targets_toml(cloud, tmp_path).replace(
        f'seal_key_file = "{tmp_path / "seal.key"}"', f'seal_pkcs11 = "{token.uri()}"'
    )
    assert "seal_key_file" not in text
    path = tmp_path / "byok.toml"
    path.write_text(text)
    try:
        settings = load_settings({}, env={}, config_path=str(path))
        targets = load_targets(str(path), env={})
        keys = {t.name: enroll_in(settings, t)[0] for t in targets}
        for key_id in keys.values():
            cloud.emulator.tenancy.find(key_id).delete_key_material(key_id)
        health = tmp_path / "health.json"
        code = run_daemon(settings, schedule="@every 15m", state_dir=tmp_path / "state",
                          once=True, health_file=health, targets=targets)  # fmt: skip
        assert code == 0
        doc = json.loads(health.read_text())
        assert doc["outcome"] == "ok" and doc["summary"] == {"restored": 2}
        assert {cloud.key_view(k)["state"] for k in keys.values()} == {"Enabled"}
        assert len(pkcs11._TOKENS) == 1  # one module load and one login for both targets
    finally:
        pkcs11.close_all()

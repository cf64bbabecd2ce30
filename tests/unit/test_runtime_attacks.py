"""Issue 25, the runtime side, where a test needs no emulator (the rest is in
tests/functional/test_runtime_attacks.py): budgets for every action, linear redaction that
still masks what it masked, the report's mode, URLs in refusals, targets, the settings file."""

from __future__ import annotations

import os
import re
import stat

import pytest

from byok_keeper.domain.logs import REDACTED, redact
from byok_keeper.gateway.kms import ENROLL, HOLD_ACTIONS, READ_ONLY, SWEEP
from byok_keeper.gateway.kms.budget import RequestBudget

# ---- 1. redaction: linear, and masking what it masked ---------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a-a-a-ImportToken=abc&x=1", f"a-a-a-ImportToken={REDACTED}&x=1"),
        ("foo=token=abc", f"foo=token={REDACTED}"),
        ("x-a-a-a password: 'hunter2'", f"x-a-a-a password: '{REDACTED}'"),
        ("EncryptedKeyMaterial%3DAAAA%2B%2F", f"EncryptedKeyMaterial={REDACTED}"),
        ("A" * 79 + "-" + "A" * 79, "A" * 79 + "-" + "A" * 79),
        ("-" + "0f" * 48, f"-{REDACTED}"),
        ("-----BEGIN " + "A " * 40 + "PRIVATE KEY-----", REDACTED),
        ("-----BEGIN EC PRIVATE KEY-----\nMHc", REDACTED),
    ],
)
def test_linear_redaction_masks_what_the_quadratic_pattern_masked(text, expected):
    assert redact(None, "info", {"claim": text})["claim"] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pin=123456", f"pin={REDACTED}"),
        ("BYOK_PKCS11_PIN=4321 next", f"BYOK_PKCS11_PIN={REDACTED} next"),
        ("pkcs11:object=k?pin-value=9876", f"pkcs11:object=k?pin-value={REDACTED}"),
        ("user_pin: 0000", f"user_pin: {REDACTED}"),
        ("spinning=fast pinned=yes pinout=12", "spinning=fast pinned=yes pinout=12"),
    ],
)
def test_a_pin_is_masked_as_a_whole_word_and_words_holding_pin_are_not(text, expected):
    assert redact(None, "info", {"claim": text})["claim"] == expected


@pytest.mark.parametrize(
    ("name", "masked"),
    [("pin", True), ("BYOK_PKCS11_PIN", True), ("so_pin", True), ("spinning", False),
     ("pinned", False)],
)  # fmt: skip
def test_a_field_named_pin_is_masked(name, masked):
    assert (redact(None, "info", {name: "1234"})[name] == REDACTED) is masked


def test_the_redaction_patterns_need_nothing_newer_than_python_3_10():
    """Possessive quantifiers and atomic groups arrived in Python 3.11; the FC runtime is
    python3.10 (pyproject's requires-python), where compiling them fails at import."""
    from byok_keeper.domain import logs

    patterns = [v.pattern for v in vars(logs).values() if isinstance(v, re.Pattern)]
    assert patterns
    for pattern in patterns:
        assert not re.search(r"[*+?}]\+|\(\?>", pattern), pattern


# ---- 4. every call the agent may send spends a budget ------------------------------------------

ALL_ACTIONS = sorted(SWEEP.actions | READ_ONLY.actions | ENROLL.actions | HOLD_ACTIONS.actions)


@pytest.mark.parametrize("action", ALL_ACTIONS)
def test_every_action_a_caller_may_send_spends_a_budget(action):
    """Decrypt, GetSecretValue and the other vault calls included: 2 QPS with a burst of half
    a second lets one through, then the next waits."""
    waits: list[float] = []
    budget = RequestBudget.flat(2, monotonic=lambda: 100.0, sleep=waits.append)
    for _ in range(3):
        budget.spend(action)
    assert waits and waits[-1] == pytest.approx(1.0)


def test_a_vault_rate_can_be_set_by_class_and_unknown_classes_are_refused():
    waits: list[float] = []
    budget = RequestBudget(vault_qps={"secret_read": 4}, monotonic=lambda: 0.0, sleep=waits.append)
    for _ in range(3):  # half a second of burst at 4 QPS: two at once, the third waits
        budget.spend("GetSecretValue")
    assert waits == [pytest.approx(0.25)]
    with pytest.raises(ValueError, match="not vault quota classes"):
        RequestBudget(vault_qps={"read": 1})


# ---- 9. smaller items ------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000])
def test_the_html_report_is_written_0600_whatever_the_umask(tmp_path, umask):
    from byok_keeper.operations.report import write_html

    old = os.umask(umask)
    try:
        write_html(tmp_path / "fleet.html", "<p>keys</p>")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "fleet.html").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("check", "value"),
    [
        ("url", "http://svc:s3cr3t-pass@evil.example:8080/creds"),
        ("endpoint", "http://svc:s3cr3t-pass@evil.example"),
        ("client", "http://svc:s3cr3t-pass@evil.example:443"),
        ("client", "http://svc:s3cr3t-pass@evil.example/path"),
    ],
)
def test_refusals_name_the_host_never_the_urls_userinfo(check, value):
    from byok_keeper.domain.errors import ConfigError
    from byok_keeper.gateway.kms.client import split_endpoint
    from byok_keeper.gateway.transport import check_endpoint, check_url

    call = {
        "url": lambda: check_url(value, "ALIBABA_CLOUD_CREDENTIALS_URI"),
        "endpoint": lambda: check_endpoint(value, "kms_endpoint"),
        "client": lambda: split_endpoint(value),
    }[check]
    with pytest.raises(ConfigError) as refused:
        call()
    assert "evil.example" in str(refused.value)
    assert "s3cr3t" not in str(refused.value) and "svc" not in str(refused.value)


def test_two_targets_of_the_same_account_and_region_are_refused():
    from byok_keeper.core.targets import parse_targets
    from byok_keeper.domain.errors import ConfigError

    one = {"region": "cn-hangzhou", "account_id": "1234567890123456"}
    with pytest.raises(ConfigError, match="'a' and 'b' are the same account 1234567890123456"):
        parse_targets([{"name": "a", **one}, {"name": "b", **one}])
    other_region = {**one, "region": "cn-shanghai"}
    assert len(parse_targets([{"name": "a", **one}, {"name": "b", **other_region}])) == 2


@pytest.mark.parametrize("change", ["group-writable", "other-writable", "another-owner"])
def test_a_settings_file_someone_else_could_write_is_refused(tmp_path, change):
    from byok_keeper.core.settings import load_settings
    from byok_keeper.domain.errors import ConfigError

    config = tmp_path / "byok-keeper.toml"
    config.write_text('kms_endpoint = "https://kms.attacker.example"\n')
    config.chmod(0o644)
    assert load_settings(env={}, config_path=config).kms_endpoint  # as written: accepted
    if change == "another-owner":
        if os.geteuid() != 0:
            pytest.skip("giving a file away needs root")
        os.chown(config, 54321, -1)
    else:
        config.chmod(0o664 if change == "group-writable" else 0o646)
    with pytest.raises(ConfigError, match="config file"):
        load_settings(env={}, config_path=config)


def test_a_key_id_check_quotes_a_long_id_cut_short_for_every_caller():
    """domain.check_key_id is where the CLI, the vault and the FC handlers refuse an id: its
    message quotes the id through errors.shown, so no caller carries 128 KiB into a line."""
    from byok_keeper.domain.errors import InputError
    from byok_keeper.domain.model import check_key_id

    with pytest.raises(InputError) as refused:
        check_key_id("k" * 131072 + "/")
    assert len(str(refused.value)) < 120 and "..." in str(refused.value)

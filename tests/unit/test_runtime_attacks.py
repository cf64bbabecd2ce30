"""Issue 25, the runtime side, where a test needs no emulator (the rest is in
tests/functional/test_runtime_attacks.py): budgets for every action, linear redaction that
still masks what it masked, the report's mode, URLs in refusals, targets, the settings file."""

from __future__ import annotations

import pytest

from byok_keeper.logs import REDACTED, redact

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

"""Issue 25, the runtime side, where a test needs no emulator (the rest is in
tests/functional/test_runtime_attacks.py): budgets for every action, linear redaction that
still masks what it masked, the report's mode, URLs in refusals, targets, the settings file."""

from __future__ import annotations

import pytest

from byok_keeper.kms import ENROLL, HOLD, READ_ONLY, SWEEP
from byok_keeper.kms.budget import RequestBudget
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


# ---- 4. every call the agent may send spends a budget ------------------------------------------

ALL_ACTIONS = sorted(SWEEP.actions | READ_ONLY.actions | ENROLL.actions | HOLD.actions)


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

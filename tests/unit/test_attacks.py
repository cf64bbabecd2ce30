"""Issue 13, pure parts: each attack as a test that fails without its defence (see
docs/SECURITY.md)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from byok_keeper.plan import LEASE_TAG, EnvelopeFacts, KeyFacts, Policy, decide, effective_lease
from tests.unit.test_plan import key as make_key

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
FP = "ab" * 32


def _sealed(lease: str) -> EnvelopeFacts:
    return EnvelopeFacts(FP, "EC_P256", lease, True)


# ---- 3. the lease tag lengthens the sealed lease ---------------------------------------------


@pytest.mark.parametrize(
    ("sealed", "tag", "effective"),
    [("1h", "never", "1h"), ("1h", "30d", "1h"), ("30d", "90d", "30d"), ("1d", "2d", "1d")],
)
def test_a_lease_tag_longer_than_the_sealed_lease_is_ignored_and_reported(sealed, tag, effective):
    lease, notes = effective_lease(_sealed(sealed), {LEASE_TAG: tag})
    assert str(lease) == effective
    assert any("ignored lease tag" in n and "longer than the sealed lease" in n for n in notes)


@pytest.mark.parametrize(("sealed", "tag"), [("30d", "1d"), ("never", "30d"), ("2w", "1h")])
def test_a_lease_tag_may_shorten_the_sealed_lease(sealed, tag):
    lease, notes = effective_lease(_sealed(sealed), {LEASE_TAG: tag})
    assert str(lease) == tag and "lease from tag" in notes


def test_a_lease_tag_with_no_sealed_lease_to_compare_is_ignored():
    lease, notes = effective_lease(None, {LEASE_TAG: "never"})
    assert lease is None and any("no sealed lease" in n for n in notes)


def test_the_planner_renews_on_the_sealed_lease_despite_a_never_tag():
    key = make_key(spec="EC_P256", expires=NOW + timedelta(minutes=20))
    facts = KeyFacts("key-1", key, True, _sealed("1h"), {LEASE_TAG: "never"})
    decision = decide(facts, NOW, Policy())
    assert decision.decision == "RENEW" and str(decision.lease) == "1h"

"""The planner, table by table. Pure: no I/O, no mocks."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest

from byok_keeper.domain.lease import parse_lease
from byok_keeper.gateway.kms import KeyInfo
from byok_keeper.planning.plan import (
    ALERT,
    HOLD,
    OK,
    REIMPORT,
    RENEW,
    SKIP,
    EnvelopeFacts,
    KeyFacts,
    Policy,
    cadence_warning,
    decide,
    needs_details,
    plan,
    renewal_window,
)

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)
FP = "ab" * 32


def key(state="Enabled", expires=None, origin="EXTERNAL", spec="RSA_2048", delete=None):
    return KeyInfo(
        "key-1",
        "acs:kms:cn-hangzhou:1:key/key-1",
        spec,
        "SIGN/VERIFY",
        state,
        origin,
        "SOFTWARE",
        "kst-1",
        expires,
        delete,
        NOW,
        "",
    )


def env(lease="30d", first=True, spec="RSA_2048"):
    return EnvelopeFacts(FP, spec, lease, first)


def facts(k=..., *, enrolled=True, envelope=..., tags=None):
    return KeyFacts(
        "key-1", key() if k is ... else k, enrolled, env() if envelope is ... else envelope, tags
    )


DEFAULT = Policy()


def d(f, policy=DEFAULT):
    return decide(f, NOW, policy)


@pytest.mark.parametrize(
    ("f", "decision", "reason"),
    [
        (facts(key("PendingImport")), REIMPORT, "material deleted or expired"),
        (facts(key(expires=NOW + timedelta(days=3))), RENEW, "material expires in 3d 0h"),
        (facts(key(expires=NOW + timedelta(days=20))), OK, "material expires in 20d 0h"),
        (facts(key(expires=None)), OK, "material never expires"),
        (facts(key("Disabled", expires=NOW + timedelta(days=1))), RENEW, "expires in 1d 0h"),
        (facts(key("PendingImport"), tags={"byok-keeper:hold": "INC-7"}), HOLD, "on hold: INC-7"),
        (facts(key("PendingDeletion", delete=NOW + timedelta(days=7))), SKIP, "pending deletion"),
        (facts(key(), enrolled=False, envelope=None), ALERT, "no envelope: nobody can restore"),
        (facts(key(origin="Aliyun_KMS"), enrolled=False, envelope=None), OK, "not an EXTERNAL"),
        (facts(key("PendingImport"), envelope=env(first=False)), ALERT, "enrollment incomplete"),
        (facts(None), ALERT, "no longer exists in KMS"),
        (facts(key(origin="Aliyun_KMS")), ALERT, "Origin Aliyun_KMS"),
        (facts(key(spec="RSA_3072")), ALERT, "RSA_2048 material for a RSA_3072 key"),
    ],
)
def test_every_row_of_the_table(f, decision, reason):
    out = d(f)
    assert out.decision == decision
    assert reason in out.reason


def test_hold_wins_over_everything_and_pending_deletion_over_the_rest():
    held = facts(key("PendingDeletion"), tags={"byok-keeper:hold": ""})
    assert d(held).decision == HOLD and "no reason given" in d(held).reason
    assert d(facts(key("PendingDeletion"), envelope=env(first=False))).decision == SKIP


@pytest.mark.parametrize(
    ("left", "decision"),
    [
        (timedelta(days=7), RENEW),  # exactly at the window: inclusive
        (timedelta(days=7, seconds=1), OK),
        (timedelta(seconds=1), RENEW),
        (timedelta(seconds=-30), RENEW),  # KMS has not flipped the state yet
    ],
)
def test_window_boundaries(left, decision):
    assert d(facts(key(expires=NOW + left))).decision == decision


HOURLY = Policy(sweep_interval=timedelta(hours=1))


@pytest.mark.parametrize(
    ("left", "decision", "reason"),
    [
        (timedelta(days=7), RENEW, "material expires in 7d 0h (window 7d 0h)"),
        (timedelta(days=7, hours=1), RENEW, "opens before the next sweep (within 1h 0m)"),
        (timedelta(days=7, hours=1, seconds=1), OK, "material expires in 7d 1h"),
    ],
)
def test_a_window_opening_before_the_next_sweep_renews_now_and_not_a_second_earlier(
    left, decision, reason
):
    """With sweeps an hour apart, a key whose window opens before the next sweep is renewed in
    this one; the planner reads its details exactly then (``needs_details``), not later."""
    got = d(facts(key(expires=NOW + left)), HOURLY)
    assert (got.decision, reason in got.reason) == (decision, True), got.reason
    assert needs_details(key(expires=NOW + left), NOW, HOURLY) is (decision == RENEW)


def test_renew_before_is_a_policy():
    f = facts(key(expires=NOW + timedelta(days=10)))
    assert d(f).decision == OK
    assert d(f, Policy(renew_before=timedelta(days=14))).decision == RENEW


def test_short_leases_renew_at_half_life_not_every_run():
    daily = facts(key(expires=NOW + timedelta(hours=13)), envelope=env(lease="1d"))
    assert d(daily).decision == OK
    assert (
        d(facts(key(expires=NOW + timedelta(hours=12)), envelope=env(lease="1d"))).decision == RENEW
    )
    assert renewal_window(Policy(), parse_lease("30d")) == timedelta(days=7)
    assert renewal_window(Policy(), parse_lease("never")) == timedelta(days=7)


def test_lease_tag_may_only_shorten_the_sealed_lease_and_a_bad_tag_is_ignored():
    shorter = d(facts(key(expires=NOW + timedelta(days=30)), tags={"byok-keeper:lease": "3d"}))
    assert str(shorter.lease) == "3d" and "lease from tag" in shorter.notes
    bad = d(facts(key(expires=NOW + timedelta(days=30)), tags={"byok-keeper:lease": "soon"}))
    assert str(bad.lease) == "30d"
    assert any("ignored invalid lease tag" in n for n in bad.notes)
    never = d(facts(key(expires=None), envelope=env(lease="never")))
    assert never.lease.never and never.decision == OK


@pytest.mark.parametrize(
    ("left", "tier"),
    [
        (timedelta(days=40), None),
        (timedelta(days=30), 30),
        (timedelta(days=8), 30),
        (timedelta(days=7), 7),
        (timedelta(hours=30), 7),
        (timedelta(hours=20), 1),
    ],
)
def test_reminders_for_keys_that_will_lapse_unrenewed(left, tier):
    held = d(facts(key(expires=NOW + left), tags={"byok-keeper:hold": "x"}))
    assert held.decision == HOLD and held.reminder_days == tier
    if tier:
        assert f"(<= {tier}d) and will not be renewed" in held.reason
    # Keys byok-keeper will renew carry no reminder.
    assert d(facts(key(expires=NOW + left))).reminder_days is None


def test_plan_keeps_input_order_and_leaves_its_input_alone():
    fs = [facts(key("PendingImport")), facts(key(expires=None))]
    before = copy.deepcopy(fs)
    assert [x.decision for x in plan(fs, NOW)] == [REIMPORT, OK]
    assert [x.decision for x in plan(fs[::-1], NOW)] == [OK, REIMPORT]
    assert [x.key_id for x in plan(fs, NOW)] == [f.key_id for f in fs]
    assert fs == before


def test_needs_details_only_for_keys_that_may_be_due():
    p = Policy()
    assert needs_details(key("PendingImport"), NOW, p)
    assert needs_details(None, NOW, p)
    assert needs_details(key(expires=NOW + timedelta(days=6)), NOW, p)
    assert not needs_details(key(expires=NOW + timedelta(days=8)), NOW, p)
    assert not needs_details(key(expires=None), NOW, p)
    assert not needs_details(key("PendingDeletion"), NOW, p)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(days=2, hours=3, minutes=59), "2d 3h"),
        (timedelta(hours=5, minutes=7, seconds=59), "5h 7m"),
        (timedelta(minutes=3, seconds=4), "3m 4s"),
        (timedelta(seconds=0), "0m 0s"),
        (-timedelta(hours=2, minutes=1), "2h 1m ago"),
    ],
)
def test_durations_in_reasons_are_read_by_people(delta, text):
    from byok_keeper.planning.plan import _human

    assert _human(delta) == text


def test_a_held_key_far_from_lapsing_carries_no_reminder():
    held = d(facts(key(expires=NOW + timedelta(days=60)), tags={"byok-keeper:hold": "x"}))
    assert held.decision == HOLD and held.reminder_days is None
    assert held.reason == "on hold: x"


@pytest.mark.parametrize(
    "f",
    [
        facts(key(expires=NOW + timedelta(days=5)), enrolled=False, envelope=None),
        facts(key(expires=NOW + timedelta(days=5)), envelope=env(first=False)),
    ],
    ids=["unmanaged", "enrollment-incomplete"],
)
def test_alerts_for_keys_nobody_will_renew_carry_a_reminder(f):
    alert = d(f)
    assert alert.decision == ALERT and alert.reminder_days == 7
    assert "(<= 7d) and will not be renewed" in alert.reason


def test_plan_uses_the_policy_it_is_given():
    fs = [facts(key(expires=NOW + timedelta(days=10)), envelope=env(lease="90d"))]
    assert [x.decision for x in plan(fs, NOW)] == [OK]
    assert [x.decision for x in plan(fs, NOW, Policy(renew_before=timedelta(days=20)))] == [RENEW]


@pytest.mark.parametrize(
    ("lease", "policy"),
    [(None, HOURLY), ("never", HOURLY), ("1h", DEFAULT), ("1h", HOURLY), ("2h", HOURLY)],
    ids=["no lease", "never", "continuous sweeps", "lease = interval", "longer"],
)
def test_no_cadence_warning_unless_a_lease_is_shorter_than_the_gap_between_sweeps(lease, policy):
    assert cadence_warning(parse_lease(lease) if lease else None, policy) is None
    if lease:
        decision = d(facts(key(expires=NOW + timedelta(days=3)), envelope=env(lease)), policy)
        assert decision.notes == ()


def test_a_lease_shorter_than_the_gap_between_sweeps_is_warned_about():
    warning = cadence_warning(parse_lease("1h"), Policy(sweep_interval=timedelta(hours=2)))
    assert warning and "lease 1h is shorter than the sweep interval 2h 0m" in warning

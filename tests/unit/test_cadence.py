"""The sweep's cadence: the longest gap between sweeps (cadence.py), renewals that would fall
between two sweeps done early, and a lease shorter than the gap reported (issue 15)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from byok_keeper.core.deps import policy_for
from byok_keeper.core.settings import load_settings
from byok_keeper.domain.errors import ConfigError, InputError
from byok_keeper.planning.cadence import interval_seconds
from byok_keeper.planning.plan import OK, RENEW, Policy, cadence_warning, needs_details
from tests.unit.test_plan import NOW, d, env, facts, key

H = 3600


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15m", 900),
        ("6h", 6 * H),
        ("1d", 86400),
        ("@every 15m", 900),
        ("@every 6h", 6 * H),
        ("0 0 0/6 * * *", 6 * H),  # the deploy default
        ("0 0/15 * * * *", 900),  # as often as before events
        ("0 30 1,13 * * *", 12 * H),
        ("0 0 9,17 * * *", 16 * H),  # uneven: the longest gap counts
        ("0 0 3 * * 1", 7 * 86400),  # Mondays
        ("0 0 9 * * 1-5", 3 * 86400),  # weekdays: Friday to Monday
        ("0 0 0 1 1 *", 366 * 86400),  # yearly, across a leap year
        ("CRON_TZ=Asia/Shanghai 0 0 0/6 * * *", 6 * H),  # FC's documented CRON_TZ form
        ("CRON_TZ=UTC 0 0 9 * * 1-5", 3 * 86400),
        ("CRON_TZ=Europe/Berlin 0 0 3 * * *", 25 * H),  # daylight saving: an hour longer
    ],
)
def test_the_longest_gap_between_sweeps(text, seconds):
    assert interval_seconds(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "6",
        "6x",
        "0m",
        "* * * * *",
        "61 * * * * *",
        "0 0 0 30 2 *",
        "0 0 0 29 2 *",
        "CRON_TZ=Mars/Olympus 0 0 0/6 * * *",
        "CRON_TZ=../../etc/passwd 0 0 0/6 * * *",
        "CRON_TZ=Asia/Shanghai @every 6h",
        "CRON_TZ=Asia/Shanghai 6h",
    ],
)
def test_what_is_not_a_cadence_is_refused_in_one_line(text):
    with pytest.raises(InputError) as refused:
        interval_seconds(text)
    assert "\n" not in str(refused.value)


def test_the_setting_is_checked_and_reaches_the_policy():
    settings = load_settings(env={"BYOK_SWEEP_INTERVAL": "0 0 0/6 * * *"})
    assert policy_for(settings).sweep_interval == timedelta(hours=6)
    assert policy_for(load_settings(env={})).sweep_interval == timedelta(0)  # continuous
    with pytest.raises(ConfigError, match="sweep interval"):
        load_settings(env={"BYOK_SWEEP_INTERVAL": "sometimes"})


SIX_HOURS = Policy(sweep_interval=timedelta(hours=6))


def test_a_renewal_that_would_fall_between_two_sweeps_is_done_now():
    # 7 days and 4 hours left: the 7-day window opens before the next sweep, 6 hours away.
    soon = facts(key(expires=NOW + timedelta(days=7, hours=4)))
    assert d(soon).decision == OK  # continuous sweeps: not yet
    early = d(soon, SIX_HOURS)
    assert early.decision == RENEW and "before the next sweep" in early.reason
    later = facts(key(expires=NOW + timedelta(days=7, hours=7)))
    assert d(later, SIX_HOURS).decision == OK  # the next sweep is still in time
    assert needs_details(soon.key, NOW, SIX_HOURS) and not needs_details(later.key, NOW, SIX_HOURS)


def test_a_lease_shorter_than_the_cadence_is_reported_in_the_plan():
    hourly = facts(key(expires=NOW + timedelta(minutes=50)), envelope=env(lease="1h"))
    decision = d(hourly, SIX_HOURS)
    assert decision.decision == RENEW
    assert "shorter than the sweep interval 6h 0m" in decision.reason
    assert any("lapses between sweeps" in n for n in decision.notes)
    assert d(hourly).decision == OK and "sweep interval" not in d(hourly).reason  # continuous
    daily = facts(key(expires=NOW + timedelta(days=2)), envelope=env(lease="30d"))
    assert cadence_warning(d(daily, SIX_HOURS).lease, SIX_HOURS) is None


@pytest.mark.parametrize(
    ("schedule", "after", "fires"),
    [
        # FC's 6-field form, seconds first, UTC (report --schedule refused it before).
        ("0 0 0/6 * * *", "2026-11-28T07:00:00", "2026-11-28T12:00:00"),
        # CRON_TZ: midnight, 06:00, ... in Shanghai are 16:00, 22:00, ... UTC.
        ("CRON_TZ=Asia/Shanghai 0 0 0/6 * * *", "2026-11-28T07:00:00", "2026-11-28T10:00:00"),
        # FC counts weekdays from Sunday = 0: 1 is Monday (2026-11-30).
        ("0 0 3 * * 1", "2026-11-28T07:00:00", "2026-11-30T03:00:00"),
        ("30 * * * *", "2026-11-28T07:00:00", "2026-11-28T07:30:00"),  # the daemon's crontab
    ],
)
def test_the_daemon_and_report_read_every_schedule_form_the_sweep_interval_reads(
    schedule, after, fires
):
    from datetime import datetime, timezone

    from byok_keeper.planning.cadence import trigger_for

    now = datetime.fromisoformat(after).replace(tzinfo=timezone.utc)
    nxt = trigger_for(schedule).get_next_fire_time(None, now)
    assert nxt.astimezone(timezone.utc) == datetime.fromisoformat(fires).replace(
        tzinfo=timezone.utc
    )


@pytest.mark.parametrize("schedule", ["@every 6h", "6h"])
def test_the_daemon_reads_durations_as_the_sweep_interval_does(schedule):
    from byok_keeper.planning.cadence import trigger_for

    assert trigger_for(schedule).interval == timedelta(seconds=interval_seconds(schedule))


@pytest.mark.parametrize("schedule", ["every tuesday", "CRON_TZ=Mars/Olympus 0 0 0/6 * * *"])
def test_a_schedule_the_daemon_cannot_read_is_one_line(schedule):
    from byok_keeper.planning.cadence import trigger_for

    with pytest.raises(InputError) as refused:
        trigger_for(schedule)
    assert "--schedule" in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("interval", "after", "next_sweep"),
    [
        ("0 0 0/6 * * *", "2026-12-07T18:05", "2026-12-08T00:00"),  # FC's default timer
        ("0 0 3 ? * 1", "2026-12-07T18:05", "2026-12-14T03:00"),  # Mondays (FC: 0 = Sunday)
        ("0 0 3 * * 0/2", "2026-12-07T18:05", "2026-12-08T03:00"),  # Sun, Tue, Thu, Sat
    ],
)
def test_the_sweep_interval_gives_the_reports_next_sweep(interval, after, next_sweep):
    from datetime import datetime, timezone

    from byok_keeper.operations.report import report_schedule
    from byok_keeper.planning.cadence import trigger_for

    schedule, source = report_schedule(None, interval)
    assert source == f"BYOK_SWEEP_INTERVAL {interval}"
    start = datetime.fromisoformat(after).replace(tzinfo=timezone.utc)
    fired = trigger_for(schedule).get_next_fire_time(None, start)
    assert fired.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M") == next_sweep


def test_the_report_follows_the_given_schedule_else_the_setting_else_the_daemons():
    from byok_keeper.operations.report import DAEMON_SCHEDULE, report_schedule

    assert report_schedule("@every 1h", "6h") == ("@every 1h", "--schedule")
    assert report_schedule(None, "") == (DAEMON_SCHEDULE, "the daemon's default")

"""aliyun-local's FC timer schedules."""

from datetime import datetime, timezone

import pytest

from aliyun_local.fc import cron


def at(h, m, s, day=28):
    return datetime(2026, 11, day, h, m, s, tzinfo=timezone.utc)


def test_every_15_minutes_in_fc_syntax():
    schedule = cron.parse("0 0/15 * * * *")
    assert schedule.matches(at(6, 45, 0)) and schedule.matches(at(7, 0, 0))
    assert not schedule.matches(at(6, 45, 1)) and not schedule.matches(at(6, 50, 0))


def test_ranges_lists_steps_and_weekdays():
    schedule = cron.parse("30 5-10/5 9,17 * * 1-5")  # weekdays, 09:05:30, 09:10:30, 17:...
    assert schedule.matches(at(9, 5, 30, day=27))  # Friday
    assert not schedule.matches(at(9, 5, 30, day=29))  # Sunday
    assert not schedule.matches(at(9, 6, 30, day=27))


def test_every_interval():
    assert cron.parse("@every 15m").every_seconds == 900
    assert cron.parse("@every 2s").every_seconds == 2


@pytest.mark.parametrize("bad", ["* * * * *", "61 * * * * *", "0 */0 * * * *", "@every 0m", "x"])
def test_bad_schedules_are_refused(bad):
    with pytest.raises(cron.CronError):
        cron.parse(bad)


def test_cron_tz_reads_the_fields_on_that_zones_clock():
    # FC's documented form: CRON_TZ=<IANA zone> before the six fields.
    schedule = cron.parse("CRON_TZ=Asia/Shanghai 0 0 0/6 * * *")
    # 00:00, 06:00, 12:00, 18:00 in Shanghai (UTC+8) are 16:00, 22:00, 04:00, 10:00 UTC.
    assert [h for h in range(24) if schedule.matches(at(h, 0, 0))] == [4, 10, 16, 22]
    assert cron.parse("CRON_TZ=UTC 0 0 0/6 * * *").matches(at(0, 0, 0))
    assert cron.parse("0 0 0/6 * * *").matches(at(0, 0, 0))  # no CRON_TZ: UTC
    # The weekday is Shanghai's too: Saturday 00:30 there is Friday 16:30 UTC.
    saturdays = cron.parse("CRON_TZ=Asia/Shanghai 0 30 0 * * 6")
    assert saturdays.matches(at(16, 30, 0, day=27)) and not saturdays.matches(at(0, 30, 0, day=28))


@pytest.mark.parametrize(
    "bad",
    [
        "CRON_TZ=Mars/Olympus 0 0 0/6 * * *",
        "CRON_TZ=../../etc/passwd 0 0 0/6 * * *",
        "CRON_TZ=Asia/Shanghai @every 15m",
        "CRON_TZ=Asia/Shanghai 0 0 0/6 * *",
        "CRON_TZ= 0 0 0/6 * * *",
    ],
)
def test_a_bad_cron_tz_is_refused(bad):
    with pytest.raises(cron.CronError):
        cron.parse(bad)

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

"""Sweep schedules, read once for everyone: the planner's longest gap between two sweeps
(``interval_seconds``), the daemon's and ``report --schedule``'s trigger (``parse_schedule``,
``trigger_for``: APScheduler's, loaded only when a trigger is asked for).

Pure, no I/O. A schedule is one of:

* a duration: ``15m``, ``6h``, ``1d``, ``2w`` (and ``s`` for seconds);
* an FC timer schedule, as deploy/functions.yml hands the sweep its own ``Schedule``:
  ``@every 6h`` or a 6-field cron in UTC, seconds first (``0 0 0/6 * * *``). Fields take ``*``
  or ``?``, numbers, ranges ``a-b``, lists ``a,b``, steps ``*/n`` and FC's ``a/n``; day of week
  0-6 (0 = Sunday). Day of month, month and day of week must all match (the stricter reading:
  fewer firings, a longer gap, renewals earlier rather than later);
* FC's ``CRON_TZ=<IANA zone> <6 fields>`` (``CRON_TZ=Asia/Shanghai 0 0 0/6 * * *``): the same
  fields read on that zone's clock (needs the system's time zone database).

The gap of a cron schedule is its longest, over eight years of days (every leap-year and
weekday alignment that matters), so ``0 0 3 * * 1`` (Mondays 03:00) is a week and
``0 0 0/6 * * *`` six hours. In a zone with daylight saving time the gap is widened by the
zone's yearly swing of its UTC offset (an hour longer where the clock goes back).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..domain.errors import InputError

_DURATION = re.compile(r"^([1-9][0-9]{0,6})([smhdw])\Z")
_CRON_TZ = re.compile(r"^CRON_TZ=(\S{1,64})\s+(.*)\Z", re.DOTALL)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_SPAN_START, _SPAN_DAYS = date(2024, 1, 1), 8 * 366
MAX_INTERVAL_SECONDS = 366 * 86400


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: ``every_seconds`` for a duration or ``@every``, else the six cron
    ``fields`` (seconds, minutes, hours, day, month, day of week with 0 = Sunday) on ``zone``."""

    every_seconds: int | None = None
    fields: tuple[frozenset[int], ...] | None = None
    zone: tzinfo = timezone.utc


def parse_schedule(text: str, what: str = "sweep interval") -> Schedule:
    """Read a duration, ``@every``, 6-field FC cron or ``CRON_TZ=<zone>`` cron. ``InputError``
    (one line, naming ``what``) for anything else."""
    value = text.strip()
    zone: tzinfo = timezone.utc
    m = _CRON_TZ.fullmatch(value)
    if m:
        zone, value = _zone(m.group(1), what), m.group(2).strip()
        if len(value.split()) != 6:
            raise InputError(_usage(text, what))
    if value.startswith("@every"):
        value = value[len("@every") :].strip()
    fields = value.split()
    if len(fields) == 1:
        d = _DURATION.fullmatch(value.lower())
        if not d:
            raise InputError(_usage(text, what))
        return Schedule(every_seconds=int(d.group(1)) * _UNITS[d.group(2)])
    if len(fields) != 6:
        raise InputError(_usage(text, what))
    parsed = tuple(_field(f, lo, hi) for f, (lo, hi) in zip(fields, _RANGES, strict=True))
    return Schedule(fields=parsed, zone=zone)


def interval_seconds(text: str) -> int:
    """The longest gap between two sweeps, in seconds. ``InputError`` naming the form."""
    schedule = parse_schedule(text)
    if schedule.fields is None:
        seconds = schedule.every_seconds or 0
    else:
        seconds = _cron_gap(list(schedule.fields)) + _offset_swing(schedule.zone)
    if seconds > MAX_INTERVAL_SECONDS:
        raise InputError(f"sweep interval {text!r} is longer than a year")
    return seconds


def _zone(name: str, what: str) -> tzinfo:
    if name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise InputError(
            f"{what}: unknown time zone {shown!r} in CRON_TZ (an IANA name such as Asia/Shanghai)"
        ) from None


def _offset_swing(zone: tzinfo) -> int:
    """How far the zone's UTC offset moves over a year (daylight saving), in seconds."""
    start = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)
    offsets = {(start + timedelta(days=n)).astimezone(zone).utcoffset() for n in range(366)}
    seconds = [o.total_seconds() for o in offsets if o is not None]
    return int(max(seconds) - min(seconds)) if seconds else 0


def _usage(text: str, what: str) -> str:
    shown = text if len(text) <= 40 else text[:40] + "..."
    return (
        f"{what} {shown!r} is neither a duration (15m, 6h) nor an FC schedule (@every 6h, "
        "6-field cron such as '0 0 0/6 * * *', or CRON_TZ=Asia/Shanghai before the fields)"
    )


def _field(text: str, low: int, high: int) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise InputError(f"bad step in cron field {text!r}")
            step = int(step_text)
            if part not in ("*", "?") and "-" not in part:
                part = f"{part}-{high}"
        if part in ("*", "?"):
            start, end = low, high
        elif "-" in part and all(p.isdigit() for p in part.split("-", 1)):
            start, end = (int(p) for p in part.split("-", 1))
        elif part.isdigit():
            start = end = int(part)
        else:
            raise InputError(f"bad cron field {text!r}")
        if not low <= start <= end <= high:
            raise InputError(f"cron field {text!r} is outside {low}-{high}")
        out.update(range(start, end + 1, step))
    return frozenset(out)


def _cron_gap(fields: list[frozenset[int]]) -> int:
    sec, minute, hour, dom, month, dow = fields
    times = sorted(h * 3600 + m * 60 + s for h in hour for m in minute for s in sec)
    days = [
        n
        for n in range(_SPAN_DAYS)
        if (d := _SPAN_START + timedelta(days=n)).day in dom
        and d.month in month
        and (d.weekday() + 1) % 7 in dow
    ]
    if len(days) < 2:
        raise InputError("the cron schedule fires (almost) never")
    within = max((b - a for a, b in pairwise(times)), default=0)
    across = max((b - a) * 86400 + times[0] - times[-1] for a, b in pairwise(days))
    return max(within, across)


def trigger_for(schedule: str):
    """The APScheduler trigger of ``--schedule``: a 5-field crontab in UTC (the daemon's own
    form), or any form ``parse_schedule`` reads (``@every 15m``, ``6h``, FC's 6-field
    cron, ``CRON_TZ=<zone> <6 fields>``), read by the same function as the sweep interval."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if len(schedule.split()) == 5:
        try:
            return CronTrigger.from_crontab(schedule, timezone=timezone.utc)
        except ValueError as exc:
            raise InputError(f"invalid --schedule {schedule!r}: {exc}") from None
    parsed = parse_schedule(schedule, what="invalid --schedule")
    if parsed.fields is None:
        return IntervalTrigger(seconds=parsed.every_seconds, timezone=timezone.utc)
    names = ("second", "minute", "hour", "day", "month", "day_of_week")
    # FC counts weekdays from Sunday (0); APScheduler from Monday (0).
    sec, minute, hour, day, month, dow = parsed.fields
    fields = (sec, minute, hour, day, month, frozenset((d - 1) % 7 for d in dow))
    full = (60, 60, 24, 31, 12, 7)
    spec = {
        n: "*" if len(f) == size else ",".join(map(str, sorted(f)))
        for n, f, size in zip(names, fields, full, strict=True)
    }
    return CronTrigger(**spec, timezone=parsed.zone)

"""FC timer schedules: 6-field cron (seconds first, UTC), the same after ``CRON_TZ=<zone> ``
(read on that IANA zone's clock: ``CRON_TZ=Asia/Shanghai 0 0 0/6 * * *``) and
``@every <n><s|m|h>``.

Fields accept ``*``, numbers, ranges ``a-b``, lists ``a,b``, steps ``*/n`` and FC's ``a/n``
(start at a, every n). Day-of-week 0-6 (0 = Sunday). ``?`` is accepted as ``*``. Under a zone
with daylight saving time a wall-clock time the clock skips never fires and one it repeats
fires twice (FC documents neither).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_RANGES = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]
_EVERY = re.compile(r"^@every\s+([1-9][0-9]*)([smh])\Z")
_CRON_TZ = re.compile(r"^CRON_TZ=(\S{1,64})\s+(.*)\Z", re.DOTALL)


class CronError(ValueError):
    pass


def _field(text: str, low: int, high: int) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"bad step in {text!r}")
            step = int(step_text)
            if part not in ("*", "?") and "-" not in part:
                part = f"{part}-{high}"
        if part in ("*", "?"):
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            if not (a.isdigit() and b.isdigit()):
                raise CronError(f"bad range in {text!r}")
            start, end = int(a), int(b)
        elif part.isdigit():
            start = end = int(part)
        else:
            raise CronError(f"bad field {text!r}")
        if not low <= start <= end <= high:
            raise CronError(f"{text!r} is outside {low}-{high}")
        out.update(range(start, end + 1, step))
    return frozenset(out)


@dataclass(frozen=True)
class Schedule:
    fields: tuple[frozenset[int], ...] | None
    every_seconds: int | None
    zone: tzinfo = timezone.utc

    def matches(self, when: datetime) -> bool:
        """For cron schedules: does this whole second (aware, any zone) match?"""
        if self.fields is None:
            return False
        when = when.astimezone(self.zone)
        sec, minute, hour, day, month, dow = self.fields
        weekday = (when.weekday() + 1) % 7
        return (
            when.second in sec
            and when.minute in minute
            and when.hour in hour
            and when.day in day
            and when.month in month
            and weekday in dow
        )


def parse(expression: str) -> Schedule:
    expression = expression.strip()
    zone: tzinfo = timezone.utc
    tz = _CRON_TZ.fullmatch(expression)
    if tz:
        zone, expression = _zone(tz.group(1)), tz.group(2).strip()
    m = _EVERY.fullmatch(expression)
    if m and not tz:
        unit = {"s": 1, "m": 60, "h": 3600}[m.group(2)]
        return Schedule(None, int(m.group(1)) * unit)
    parts = expression.split()
    if len(parts) != 6:
        raise CronError(
            "FC cron has 6 fields (seconds first), optionally after CRON_TZ=<zone>, "
            "or is @every <n>m"
        )
    fields = tuple(_field(p, lo, hi) for p, (lo, hi) in zip(parts, _RANGES, strict=True))
    return Schedule(fields, None, zone)


def _zone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown time zone {name[:64]!r} in CRON_TZ") from None

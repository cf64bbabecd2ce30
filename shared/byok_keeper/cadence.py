"""How often the full sweep runs, as the planner needs it: the longest gap between two sweeps.

Pure, no I/O. ``interval_seconds`` takes what ``BYOK_SWEEP_INTERVAL`` may hold:

* a duration: ``15m``, ``6h``, ``1d``, ``2w`` (and ``s`` for seconds);
* an FC timer schedule, as deploy/functions.yml hands the sweep its own ``Schedule``:
  ``@every 6h`` or a 6-field cron in UTC, seconds first (``0 0 0/6 * * *``). Fields take ``*``
  or ``?``, numbers, ranges ``a-b``, lists ``a,b``, steps ``*/n`` and FC's ``a/n``; day of week
  0-6 (0 = Sunday). Day of month, month and day of week must all match (the stricter reading:
  fewer firings, a longer gap, renewals earlier rather than later).

The gap of a cron schedule is its longest, over eight years of days (every leap-year and
weekday alignment that matters), so ``0 0 3 * * 1`` (Mondays 03:00) is a week and
``0 0 0/6 * * *`` six hours.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from itertools import pairwise

from .errors import InputError

_DURATION = re.compile(r"^([1-9][0-9]{0,6})([smhdw])\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_SPAN_START, _SPAN_DAYS = date(2024, 1, 1), 8 * 366
MAX_INTERVAL_SECONDS = 366 * 86400


def interval_seconds(text: str) -> int:
    """The longest gap between two sweeps, in seconds. ``InputError`` naming the form."""
    value = text.strip()
    if value.startswith("@every"):
        value = value[len("@every") :].strip()
    fields = value.split()
    if len(fields) == 1:
        m = _DURATION.fullmatch(value.lower())
        if not m:
            raise InputError(_usage(text))
        seconds = int(m.group(1)) * _UNITS[m.group(2)]
    elif len(fields) == 6:
        seconds = _cron_gap(
            [_field(f, lo, hi) for f, (lo, hi) in zip(fields, _RANGES, strict=True)]
        )
    else:
        raise InputError(_usage(text))
    if seconds > MAX_INTERVAL_SECONDS:
        raise InputError(f"sweep interval {text!r} is longer than a year")
    return seconds


def _usage(text: str) -> str:
    shown = text if len(text) <= 40 else text[:40] + "..."
    return (
        f"sweep interval {shown!r} is neither a duration (15m, 6h) nor an FC schedule "
        "(@every 6h, or 6-field cron such as '0 0 0/6 * * *')"
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


def as_schedule(text: str) -> str:
    """``BYOK_SWEEP_INTERVAL`` as the daemon's schedule syntax, to find the next sweep (the
    fleet report's line): ``@every 6h`` stays, a duration becomes ``@every`` in hours or less
    (``1d`` is ``@every 24h``), and an FC 6-field cron loses its seconds field, ``?`` becomes
    ``*``, FC's ``a/n`` becomes ``a-MAX/n`` and days of week are named (a crontab).
    ``InputError`` as ``interval_seconds``."""
    interval_seconds(text)  # the same checks, the same message
    value = text.strip()
    fields = value.split()
    if len(fields) == 6:
        out = []
        for f, (_low, high) in zip(fields[1:], _RANGES[1:], strict=True):
            f = "*" if f == "?" else f
            out.append(",".join(_crontab_step(part, high) for part in f.split(",")))
        days = _field("*" if fields[5] == "?" else fields[5], 0, 6)
        out[4] = "*" if len(days) == 7 else ",".join(_DAYS[d] for d in sorted(days))
        return " ".join(out)
    if value.startswith("@every"):
        value = value[len("@every") :].strip()
    m = _DURATION.fullmatch(value.lower())
    if m is None:  # pragma: no cover - interval_seconds accepted it: a duration
        raise InputError(_usage(text))
    n, unit = int(m.group(1)), m.group(2)
    return f"@every {n * _UNITS[unit] // 3600}h" if unit in "dw" else f"@every {n}{unit}"


# FC's day of week (0 = Sunday) by name: the daemon's scheduler reads a number 0 as Monday.
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _crontab_step(part: str, high: int) -> str:
    start, slash, step = part.partition("/")
    if slash and start not in ("*", "") and "-" not in start:
        return f"{start}-{high}/{step}"
    return part

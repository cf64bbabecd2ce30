"""A picture of the fleet: one self-contained HTML page with inline SVG (no script, no network,
no external fonts).

Every key is a row on a time axis from now to its material expiry, coloured by its decision;
the renewal window is shaded behind the bar, holds carry a pause mark and alerts a warning
triangle, keys without material a square at "now", and a dashed line marks the next sweep.
Keys are grouped by decision (most urgent first) and sorted by expiry; a group shows at most
``rows_per_group`` rows, and the rest as a count and a histogram of their expiries, so the page
stays small and quick at 5,000 keys.

``build_report`` gathers the facts (as ``plan`` does, tags included); ``render_html`` is pure.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..planning.plan import ALERT, HOLD, OK, REIMPORT, RENEW, SKIP, Decision, Policy, renewal_window

# Most urgent first. ERROR: KMS could not describe the key.
GROUPS = (ALERT, REIMPORT, RENEW, HOLD, SKIP, OK)
COLOURS = {
    ALERT: "#c62828",
    REIMPORT: "#ef6c00",
    RENEW: "#1565c0",
    HOLD: "#6a1b9a",
    SKIP: "#757575",
    OK: "#2e7d32",
}
WINDOW_COLOUR = "#ffd54f"  # the renewal window, behind the bar
SWEEP_COLOUR = "#000000"
ROWS_PER_GROUP = 200
LABEL_W, CHART_W, ROW_H, AXIS_H, PAD_R = 300, 820, 18, 40, 90
HIST_PX = 10  # histogram slice width
MARK_X = 196  # hold and alert marks: between the key id and the spec
MIN_HORIZON, MAX_HORIZON = timedelta(days=14), timedelta(days=400)
_TICK_DAYS = (1, 2, 7, 14, 30, 60, 90, 180, 365)


@dataclass(frozen=True)
class Row:
    key_id: str
    decision: str
    key_spec: str
    key_state: str
    expiry: datetime | None
    window: timedelta
    reason: str


@dataclass(frozen=True)
class Fleet:
    now: datetime
    next_sweep: datetime | None
    region: str
    rows: tuple[Row, ...]
    account_id: str = ""
    target: str = ""  # the [[targets]] name, "" without targets
    schedule: str = ""  # the sweep schedule the next-sweep line follows, and where it came from


def rows_from(
    decisions: Iterable[Decision], errors: Iterable[tuple[str, object]], policy: Policy
) -> list[Row]:
    rows = [
        Row(
            d.key_id,
            d.decision,
            d.key_spec,
            d.key_state,
            d.material_expire_time if d.key_state in ("Enabled", "Disabled") else None,
            renewal_window(policy, d.lease),
            d.reason,
        )
        for d in decisions
    ]
    rows += [Row(k, ALERT, "", "?", None, policy.renew_before, str(e)) for k, e in errors]
    return rows


DAEMON_SCHEDULE = "*/15 * * * *"


def report_schedule(given: str | None, sweep_interval: str) -> tuple[str, str]:
    """The schedule the next-sweep line follows, and where it came from: ``--schedule``, else
    the sweep interval setting (an FC deployment's timer cron, or a duration:
    ``cadence.trigger_for`` reads every form the setting takes), else the daemon's default."""
    if given:
        return given, "--schedule"
    if sweep_interval:
        return sweep_interval, f"BYOK_SWEEP_INTERVAL {sweep_interval}"
    return DAEMON_SCHEDULE, "the daemon's default"


def build_report(
    gateway,
    vault,
    *,
    policy: Policy,
    schedule: str,
    scan_account: bool,
    concurrency: int,
    account_id: str = "",
    target: str = "",
    schedule_source: str = "",
) -> Fleet:
    """Discover every key with its tags (holds show however far from expiry), plan, and find
    the next sweep of ``schedule`` (the daemon's syntax: ``cadence.trigger_for``;
    ``schedule_source`` says where it came from, for the page). Changes nothing."""
    from ..core.sweep import discover
    from ..planning.cadence import trigger_for
    from ..planning.plan import plan

    trigger = trigger_for(schedule)
    facts, errors = discover(
        gateway,
        vault,
        policy=policy,
        details="all",
        scan_account=scan_account,
        concurrency=concurrency,
    )
    now = gateway.now()
    decisions = plan(facts, now, policy)
    next_sweep = trigger.get_next_fire_time(None, now)  # on the schedule's zone (CRON_TZ)
    return Fleet(
        now,
        next_sweep.astimezone(timezone.utc) if next_sweep else None,
        gateway.region,
        tuple(rows_from(decisions, errors, policy)),
        account_id=account_id,
        target=target,
        schedule=f"{schedule} ({schedule_source})" if schedule_source else schedule,
    )


def write_html(path: str | Path, page: str) -> int:
    """Write atomically (a reader never sees half a page), mode 0600 whatever the umask;
    returns the size in bytes."""
    from ..domain.errors import InputError
    from ..domain.files import replace_atomically

    path = Path(path)
    data = page.encode()
    try:  # 0600 whatever the umask: key ids, states, expiries (like break-glass)
        replace_atomically(path, data, 0o600)
    except OSError as exc:
        raise InputError(f"cannot write the report to {path}: {exc.strerror}") from None
    return len(data)


# ---- rendering (pure) ------------------------------------------------------------------------


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _fmt(when: datetime | None) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC") if when else "never"


def _expires(row: Row) -> str:
    """When the row's material expires: a time, "never" only for material that never expires,
    else why there is none (deleted or expired, the key pending deletion or gone)."""
    if row.expiry is not None:
        return f"expires {_fmt(row.expiry)}"
    if row.key_state in ("Enabled", "Disabled"):
        return "never expires"
    return _NO_MATERIAL.get(row.key_state, "no material")


class _Axis:
    def __init__(self, now: datetime, rows: Iterable[Row]) -> None:
        latest = max((r.expiry for r in rows if r.expiry), default=now)
        span = min(max(latest - now, MIN_HORIZON), MAX_HORIZON)
        self.step = next((d for d in _TICK_DAYS if span / timedelta(days=d) <= 12), _TICK_DAYS[-1])
        days = math.ceil(span / timedelta(days=self.step)) * self.step
        self.now = now
        self.end = now + timedelta(days=days)

    def x(self, when: datetime) -> float:
        frac = (when - self.now) / (self.end - self.now)
        return LABEL_W + CHART_W * min(max(frac, 0.0), 1.0)

    def ticks(self) -> list[datetime]:
        out, t = [], self.now
        while t <= self.end:
            out.append(t)
            t += timedelta(days=self.step)
        return out


def _axis_svg(axis: _Axis, y: float, next_sweep: datetime | None) -> list[str]:
    out = [f'<line x1="{LABEL_W}" y1="{y}" x2="{LABEL_W + CHART_W}" y2="{y}" class="ax"/>']
    for t in axis.ticks():
        x = axis.x(t)
        label = "now" if t == axis.now else f"+{(t - axis.now).days}d {t:%m-%d}"
        out.append(f'<line x1="{x:.1f}" y1="{y - 4}" x2="{x:.1f}" y2="{y}" class="ax"/>')
        out.append(f'<text x="{x:.1f}" y="{y - 7}" class="tick">{label}</text>')
    if next_sweep is not None:
        out.append(
            f'<text x="{axis.x(next_sweep) + 3:.1f}" y="{y + 12}" class="sweep">'
            f"next sweep {next_sweep:%H:%M}</text>"
        )
    return out


_NO_MATERIAL = {
    "PendingImport": "no material (deleted or expired)",
    "PendingDeletion": "pending deletion",
    "NotFound": "key gone from KMS",
    "?": "KMS could not describe it",
}


def _keys(n: int) -> str:
    return f"{n:,} key" if n == 1 else f"{n:,} keys"


def _overview_svg(groups: dict[str, list[Row]], axis: _Axis, next_sweep: datetime | None) -> str:
    """Every key at once: per decision, how many expire in each interval of the axis."""
    present = [g for g in GROUPS if groups[g]]
    height = AXIS_H + ROW_H * 2 * len(present) + 6
    width = LABEL_W + CHART_W + PAD_R
    out = [f'<svg width="{width}" height="{height}" role="img" aria-label="overview">']
    out += _axis_svg(axis, AXIS_H - 22, next_sweep)
    for i, g in enumerate(present):
        y = AXIS_H + i * ROW_H * 2
        rows = groups[g]
        timeless = sum(1 for r in rows if r.expiry is None)
        out.append(
            f'<text x="6" y="{y + ROW_H + 4}" class="k"><a href="#{g}">{g}</a> '
            f"{len(rows):,}</text>"
            + (
                f'<text x="{LABEL_W - 8}" y="{y + ROW_H + 4}" class="s">{timeless:,} without '
                "expiry</text>"
                if timeless
                else ""
            )
        )
        out += _histogram_svg(rows, axis, y, COLOURS[g])
    out.append("</svg>")
    return "\n".join(out)


def _row_svg(row: Row, axis: _Axis, y: float) -> list[str]:
    colour = COLOURS[row.decision]
    mid = y + ROW_H / 2
    tip = _esc(
        f"{row.key_id} {row.key_spec} {row.key_state}: {row.decision}, {_expires(row)}; "
        f"{row.reason}"
    )
    out = [f"<g><title>{tip}</title>"]
    out.append(f'<text x="6" y="{mid + 4:.1f}" class="k">{_esc(row.key_id)}</text>')
    out.append(f'<text x="{LABEL_W - 8}" y="{mid + 4:.1f}" class="s">{_esc(row.key_spec)}</text>')
    x0 = axis.x(axis.now)
    if row.expiry is None and row.key_state in ("Enabled", "Disabled"):  # never expires
        out.append(
            f'<rect x="{x0}" y="{mid - 4}" width="{CHART_W}" height="8" fill="{colour}" '
            f'opacity="0.35"/><text x="{x0 + CHART_W + 4}" y="{mid + 4:.1f}" class="s0">never'
            "</text>"
        )
    elif row.expiry is None:  # no material (PendingImport) or no key: a square at now
        out.append(
            f'<rect x="{x0}" y="{mid - 5}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x0 + 14}" y="{mid + 4:.1f}" class="s0">'
            f"{_NO_MATERIAL.get(row.key_state, 'no material')}</text>"
        )
    else:
        xe = axis.x(row.expiry)
        xw = axis.x(row.expiry - row.window)
        if xe > xw:
            out.append(
                f'<rect x="{xw:.1f}" y="{y + 1}" width="{xe - xw:.1f}" height="{ROW_H - 2}" '
                f'fill="{WINDOW_COLOUR}"/>'
            )
        out.append(
            f'<rect x="{x0}" y="{mid - 4}" width="{max(xe - x0, 2):.1f}" height="8" '
            f'fill="{colour}"/>'
        )
        beyond = "\u2192 " if row.expiry > axis.end else ""
        out.append(
            f'<text x="{max(xe, x0 + 2) + 4:.1f}" y="{mid + 4:.1f}" class="s0">'
            f"{beyond}{row.expiry:%Y-%m-%d}</text>"
        )
    mark_x = MARK_X
    if row.decision == HOLD:  # a pause mark
        out.append(
            f'<rect x="{mark_x}" y="{mid - 6}" width="3.5" height="12" fill="{colour}"/>'
            f'<rect x="{mark_x + 6}" y="{mid - 6}" width="3.5" height="12" fill="{colour}"/>'
        )
    elif row.decision == ALERT:  # a warning triangle
        out.append(
            f'<path d="M{mark_x + 5},{mid - 7}l6,13h-12z" fill="{colour}"/>'
            f'<rect x="{mark_x + 4.2}" y="{mid - 3}" width="1.6" height="5" fill="#fff"/>'
        )
    out.append("</g>")
    return out


def _histogram_svg(rows: list[Row], axis: _Axis, y: float, colour: str) -> list[str]:
    """Keys as counts of expiries per ``HIST_PX``-wide slice of the axis (2 rows high)."""
    buckets: dict[int, int] = {}
    for r in rows:
        if r.expiry is not None:
            i = min(int((axis.x(r.expiry) - LABEL_W) // HIST_PX), CHART_W // HIST_PX - 1)
            buckets[i] = buckets.get(i, 0) + 1
    top = max(buckets.values(), default=1)
    out = []
    for i, n in sorted(buckets.items()):
        h = max(2.0, (ROW_H * 2 - 4) * n / top)
        out.append(
            f'<rect x="{LABEL_W + i * HIST_PX + 0.5}" y="{y + ROW_H * 2 - h:.1f}" '
            f'width="{HIST_PX - 1}" height="{h:.1f}" fill="{colour}" opacity="0.6">'
            f"<title>{_keys(n)}</title></rect>"
        )
    return out


def _group_svg(
    decision: str, rows: list[Row], axis: _Axis, next_sweep: datetime | None, cap: int
) -> str:
    shown, rest = rows[:cap], rows[cap:]
    height = AXIS_H + ROW_H * len(shown) + (ROW_H * 3 if rest else 0) + 6
    width = LABEL_W + CHART_W + PAD_R
    out = [
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{decision} keys">'
    ]
    out += _axis_svg(axis, AXIS_H - 22, next_sweep)
    for i, row in enumerate(shown):
        y = AXIS_H + i * ROW_H
        if i % 2:
            out.append(f'<rect x="0" y="{y}" width="{width}" height="{ROW_H}" class="z"/>')
        out += _row_svg(row, axis, y)
    if rest:
        y = AXIS_H + len(shown) * ROW_H
        out.append(
            f'<text x="6" y="{y + ROW_H + 4}" class="k">\u2026 and {len(rest):,} more '
            f"{decision} keys (not drawn one by one)</text>"
            f'<text x="6" y="{y + ROW_H * 2 + 2}" class="s0">expiries per interval \u2192</text>'
        )
        out += _histogram_svg(rest, axis, y + 4, COLOURS[decision])
    if next_sweep is not None:
        xs = axis.x(next_sweep)
        out.append(
            f'<line x1="{xs:.1f}" y1="{AXIS_H - 22}" x2="{xs:.1f}" y2="{height}" '
            f'stroke="{SWEEP_COLOUR}" stroke-width="1.5" stroke-dasharray="4 3"/>'
        )
    out.append("</svg>")
    return "\n".join(out)


_CSS = """
body{font:13px/1.35 sans-serif;margin:16px;color:#212121;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:18px 0 2px}
.meta{color:#555;margin-bottom:8px}.legend span{display:inline-block;margin-right:14px}
.sw{display:inline-block;width:12px;height:12px;vertical-align:-2px;margin-right:4px}
.k{font:12px monospace;fill:#212121}.s{font:11px sans-serif;fill:#555;text-anchor:end}
.s0{font:11px sans-serif;fill:#555}.tick{font:10px sans-serif;fill:#555}
.sweep{font:10px sans-serif;fill:#000}.ax{stroke:#9e9e9e}.z{fill:#f5f5f5}
svg{display:block}table.why{border-collapse:collapse;margin:4px 0 8px}
.why th,.why td{text-align:left;padding:1px 10px 1px 0;vertical-align:top}
.why td.k{font:12px monospace}
"""


def _why_table(rows: list[Row], cap: int) -> str:
    """Why each key needs a person or is held, in text on the page (a screenshot shows it; a
    tooltip does not)."""
    lines = ['<table class="why"><tr><th>key</th><th>state</th><th>material</th><th>why</th></tr>']
    lines += [
        f'<tr><td class="k">{_esc(r.key_id)}</td><td>{_esc(r.key_state)}</td>'
        f"<td>{_esc(_expires(r))}</td><td>{_esc(r.reason)}</td></tr>"
        for r in rows[:cap]
    ]
    if len(rows) > cap:
        lines.append(f'<tr><td colspan="4">\u2026 and {len(rows) - cap:,} more</td></tr>')
    lines.append("</table>")
    return "\n".join(lines)


def render_html(fleet: Fleet, *, rows_per_group: int = ROWS_PER_GROUP) -> str:
    """The whole page. Pure: the same fleet gives the same bytes."""
    axis = _Axis(fleet.now, fleet.rows)
    groups: dict[str, list[Row]] = {g: [] for g in GROUPS}
    for row in fleet.rows:
        groups[row.decision].append(row)
    far = fleet.now + timedelta(days=100_000)
    for rows in groups.values():
        rows.sort(key=lambda r: (r.expiry or far, r.key_id))
    legend = "".join(
        f'<span><i class="sw" style="background:{COLOURS[g]}"></i>{g} {len(groups[g]):,}</span>'
        for g in GROUPS
    )
    legend += (
        f'<span><i class="sw" style="background:{WINDOW_COLOUR}"></i>renewal window</span>'
        "<span>- - - next sweep</span>"
    )
    where = " \u00b7 ".join(
        x
        for x in (
            f"target {fleet.target}" if fleet.target else "",
            f"account {fleet.account_id or '(not set)'}",
            f"region {fleet.region}",
        )
        if x
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>byok-keeper fleet {_esc(where)} {_fmt(fleet.now)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>byok-keeper fleet \u2014 {_esc(where)}</h1>",
        f'<div class="meta">{_keys(len(fleet.rows))} \u00b7 now {_fmt(fleet.now)} (KMS clock)'
        f" \u00b7 next sweep {_fmt(fleet.next_sweep)}"
        + (f" (schedule {_esc(fleet.schedule)})" if fleet.schedule else "")
        + f" \u00b7 axis to {_fmt(axis.end)}</div>",
        f'<div class="legend">{legend}</div>',
        "<h2>All keys: expiries per interval</h2>",
        _overview_svg(groups, axis, fleet.next_sweep),
    ]
    for g in GROUPS:
        rows = groups[g]
        if not rows:
            continue
        note = f" (first {rows_per_group:,} by expiry)" if len(rows) > rows_per_group else ""
        parts.append(f'<h2 id="{g}">{g}: {_keys(len(rows))}{note}</h2>')
        parts.append(_group_svg(g, rows, axis, fleet.next_sweep, rows_per_group))
        if g in (ALERT, HOLD):  # the reasons, readable without hovering (below the drawing)
            parts.append(_why_table(rows, rows_per_group))
    if not fleet.rows:
        parts.append("<p>No keys enrolled.</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"

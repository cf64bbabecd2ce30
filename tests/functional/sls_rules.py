"""The SLS alert rules of deploy/alerts/sls-alerts.json evaluated on log lines byok-keeper
really writes, as FC ships them to the Logstore (one JSON line of stdout/stderr is one log's
``message``). Only the SQL forms the rules use are understood; anything else fails the
assertion that parses it, so an evaluation here is the query's. Not run against a real SLS."""

from __future__ import annotations

import json
import re
from pathlib import Path

ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "alerts" / "sls-alerts.json"
_FIELD = r"json_extract_scalar\(message, '\$\.([\w.]+)'\)"
_CONDITION = re.compile(_FIELD + r" = '([^']*)'")
_GROUP_KEY = re.compile(r"\* \| select " + _FIELD + r" as (\w+), ")
_COUNT_IF = re.compile(r"count_if\((" + _FIELD + r" = '[^']*')\) as (\w+)")
_BELOW = re.compile(r"(\w+) < (\d+)")


def queries() -> dict[str, str]:
    """Each rule's query by rule name."""
    alerts = json.loads(ALERTS.read_text())["alerts"]
    return {a["name"]: a["configuration"]["queryList"][0]["query"] for a in alerts}


def rule(name: str) -> dict:
    (alert,) = [a for a in json.loads(ALERTS.read_text())["alerts"] if a["name"] == name]
    return alert


def scalar(line: dict, path: str) -> str | None:
    """SLS's ``json_extract_scalar(message, '$.a.b')``: a scalar as text, else NULL."""
    value: object = line
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


def _holds(condition: str, line: dict) -> bool:
    """A conjunction of ``json_extract_scalar(message, '$.f') = 'v'``."""
    terms = condition.split(" and ")
    parsed = [_CONDITION.fullmatch(t) for t in terms]
    assert all(parsed), [t for t, m in zip(terms, parsed, strict=True) if not m]
    return all(scalar(line, m[1]) == m[2] for m in parsed if m)


def selects(query: str, line: dict) -> bool:
    """Whether ``query``'s WHERE clause keeps ``line``."""
    return _holds(query.split(" where ", 1)[1].split(" group by ", 1)[0], line)


def firing_groups(name: str, lines: list[dict]) -> dict[str | None, bool]:
    """A rule of the form ``select json_extract_scalar(..) as K, count_if(..) as N, ...
    where .. group by K`` with the condition ``N < m``: each group (K's value, ``None`` for
    SQL NULL) and whether it fires. No group at all: only ``noDataFire`` can fire."""
    alert = rule(name)
    config = alert["configuration"]
    query = config["queryList"][0]["query"]
    key = _GROUP_KEY.match(query)
    assert key and query.endswith(f" group by {key[2]}"), query
    assert config["groupConfiguration"] == {"type": "custom", "fields": [key[2]]}
    counts = {m[3]: m[1] for m in _COUNT_IF.finditer(query)}
    (severity,) = config["severityConfigurations"]
    below = _BELOW.fullmatch(severity["evalCondition"]["condition"])
    assert below and below[1] in counts, severity
    groups: dict[str | None, int] = {}
    for line in (x for x in lines if selects(query, x)):
        group = scalar(line, key[1])
        groups[group] = groups.get(group, 0) + _holds(counts[below[1]], line)
    return {group: n < int(below[2]) for group, n in groups.items()}


_MIN = re.compile(r"min\(cast\(" + _FIELD + r" as double\)\) as (\w+)")
_MIN_BY = re.compile(r"min_by\(" + _FIELD + r", cast\(" + _FIELD + r" as double\)\) as (\w+)")


def lowest(name: str, lines: list[dict]) -> dict[str, str | float | None]:
    """A rule of the form ``select min(cast(F as double)) as A, min_by(G, cast(F as double))
    as B, ... where ..`` (no group): each column over the lines the query keeps. SQL's min
    skips NULLs; min_by takes G from the line whose F is least."""
    query = rule(name)["configuration"]["queryList"][0]["query"]
    select = query.split(" | select ", 1)[1].split(" where ", 1)[0]
    columns = [c.strip() for c in select.split(", min_by(")]
    columns = columns[:1] + ["min_by(" + c for c in columns[1:]]
    kept = [x for x in lines if selects(query, x)]
    out: dict[str, str | float | None] = {}
    for column in columns:
        if m := _MIN.fullmatch(column):
            values = [float(v) for x in kept if (v := scalar(x, m[1])) is not None]
            out[m[2]] = min(values, default=None)
        else:
            by = _MIN_BY.fullmatch(column)
            assert by, column  # a form this evaluator does not know: fail, never guess
            ranked = [(float(v), scalar(x, by[1])) for x in kept if (v := scalar(x, by[2]))]
            out[by[3]] = min(ranked, key=lambda r: r[0])[1] if ranked else None
    return out

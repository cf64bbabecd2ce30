"""FC event parsing and the handlers' permanent-failure results (no KMS needed)."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

from byok_keeper.runtimes.fc import (
    BadEvent,
    credentials_from,
    handle_reimport,
    handle_sweep,
    parse_reimport_event,
    parse_timer_event,
)

EVENTS = Path(__file__).resolve().parents[1] / "events"


def test_timer_events_parse():
    options = parse_timer_event((EVENTS / "timer.json").read_bytes())
    assert options == {"trigger_time": "2026-11-28T06:45:00Z", "trigger_name": "schedule",
                       "dry_run": False, "scan_account": False}  # fmt: skip
    assert parse_timer_event((EVENTS / "timer-dry-run.json").read_bytes())["dry_run"] is True
    assert parse_timer_event(b"")["dry_run"] is False


@pytest.mark.parametrize(
    ("event", "message"),
    [(b"not json", "not JSON"), (b"[1]", "JSON object"),
     (json.dumps({"payload": "{\"dry_run\": \"yes\"}"}).encode(), "true or false"),
     (json.dumps({"payload": "{\"rm_rf\": true}"}).encode(), "unknown sweep options"),
     (b"x" * 200_000, "larger than")],
)  # fmt: skip
def test_bad_timer_events_are_refused(event, message):
    with pytest.raises(BadEvent, match=message):
        parse_timer_event(event)


def test_reimport_events_parse():
    parsed = parse_reimport_event((EVENTS / "reimport.json").read_bytes())
    assert parsed["key_id"] == "key-example0000000000" and parsed["requested_by"] == "sweep:req-1"


@pytest.mark.parametrize(
    ("event", "message"),
    [((EVENTS / "reimport-bad.json").read_bytes(), "invalid key id"),
     (b"{}", "needs key_id"), (b'{"key_id": "k", "dry_run": 1}', "true or false"),
     (b'{"key_id": "k", "extra": 1}', "unknown reimport fields")],
)  # fmt: skip
def test_bad_reimport_events_are_refused(event, message):
    with pytest.raises(BadEvent, match=message):
        parse_reimport_event(event)


def test_handlers_return_failure_results_for_bad_events_without_raising():
    context = types.SimpleNamespace(request_id="r-1", credentials=None)
    result = handle_reimport((EVENTS / "reimport-bad.json").read_bytes(), context)
    assert (result["ok"], result["error"]) == (False, "BadEvent")
    assert "invalid key id" in result["message"] and "\n" not in result["message"]
    assert set(result) == {"ok", "error", "message"}
    swept = handle_sweep(b"[]", context)
    assert (swept["ok"], swept.get("error")) == (False, "BadEvent")


def test_credentials_come_from_the_context_or_the_environment():
    creds = types.SimpleNamespace(access_key_id="STS.x", access_key_secret="hush-hush",
                                  security_token="tok-tok")  # fmt: skip
    got = credentials_from(types.SimpleNamespace(credentials=creds))
    assert got.access_key_id == "STS.x"
    assert "hush-hush" not in repr(got) and "tok-tok" not in repr(got)
    assert credentials_from(types.SimpleNamespace()) is None

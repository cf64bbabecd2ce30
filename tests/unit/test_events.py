"""ActionTrail KMS events: parsing, checking and classifying (byok_keeper.planning.events, pure),
the
duplicate window, and the events function's refusals and non-KMS paths
(byok_keeper.runtimes.fc_events).

The samples in tests/events/actiontrail-*.json follow the CloudEvents envelope EventBridge
delivers and the ActionTrail record it carries (docs/FIDELITY.md, "Events (ActionTrail via
EventBridge)")."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from byok_keeper.planning import events
from byok_keeper.planning.events import (
    ALERT,
    EVENT_NAMES,
    IGNORE,
    REPLAN,
    RESTORE,
    Deployment,
    DuplicateFilter,
    PermanentEventError,
    classify,
    parse_payload,
)
from byok_keeper.runtimes import fc_events

EVENTS = Path(__file__).resolve().parents[1] / "events"
HERE = Deployment(account_id="1234567890123456", region="cn-hangzhou")
KEY = "key-example0000000000"


def sample(name: str):
    return json.loads((EVENTS / f"actiontrail-{name}.json").read_bytes())


def with_call(name: str, params: dict | None = None, **data) -> dict:
    doc = copy.deepcopy(sample("delete-key-material"))
    doc["data"]["eventName"] = name
    doc["data"]["requestParameters"] = {"KeyId": KEY} if params is None else params
    doc["data"].update(data)
    return doc


def one(doc) -> events.KmsEvent:
    (parsed,) = parse_payload(json.dumps(doc).encode())
    return classify(parsed, HERE)


# ---- the classes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "action"),
    [("delete-key-material", RESTORE), ("schedule-key-deletion", ALERT),
     ("untag-hold", REPLAN), ("import-key-material", IGNORE), ("delete-failed", IGNORE)],
)  # fmt: skip
def test_samples_classify(name, action):
    event = one(sample(name))
    assert event.action == action and event.reason
    assert event.key_id == KEY and event.event_id and event.request_id
    assert event.claimed_by == "oncall-alice"


@pytest.mark.parametrize(
    ("name", "params", "action"),
    [("DeleteKeyMaterial", None, RESTORE),
     ("ScheduleKeyDeletion", None, ALERT),
     ("DisableKey", None, ALERT),
     ("CancelKeyDeletion", None, REPLAN),
     ("TagResource", {"KeyId": KEY, "Tags": '[{"TagKey":"byok-keeper:hold","TagValue":"x"}]'},
      REPLAN),
     ("TagResource", {"KeyId": KEY, "Tags": [{"TagKey": "byok-keeper:hold", "TagValue": ""}]},
      REPLAN),
     ("TagResource", {"KeyId": KEY, "Tags": '[{"TagKey":"team","TagValue":"pay"}]'}, IGNORE),
     ("UntagResource", {"KeyId": KEY, "TagKeys": '["byok-keeper:hold"]'}, REPLAN),
     ("UntagResource", {"KeyId": KEY, "TagKeys": ["team", "owner"]}, IGNORE),
     ("UntagResource", {"KeyId": KEY, "TagKeys": "not json"}, REPLAN),  # unreadable: look
     ("TagResource", {"KeyId": KEY}, REPLAN),
     ("TagResource", {"SecretName": "byok-keeper/envelopes/k",
                      "Tags": '[{"TagKey":"byok-keeper:hold","TagValue":"x"}]'}, IGNORE),
     ("UntagResource", {"CertificateId": "c-1", "TagKeys": '["byok-keeper:hold"]'}, IGNORE),
     ("ImportKeyMaterial", None, IGNORE),
     ("EnableKey", None, IGNORE),
     ("CreateKey", {}, IGNORE)],  # no key id needed for what is ignored
)  # fmt: skip
def test_every_class(name, params, action):
    assert one(with_call(name, params)).action == action


def test_failed_calls_are_ignored_whatever_they_are():
    for name in EVENT_NAMES:
        event = one(with_call(name, errorCode="Forbidden.NoPermission"))
        assert event.action == IGNORE and "failed" in event.reason


def test_the_rule_names_exactly_the_classified_calls_and_never_our_import():
    assert set(EVENT_NAMES) == {"DeleteKeyMaterial", "ScheduleKeyDeletion", "DisableKey",
                                "CancelKeyDeletion", "TagResource", "UntagResource"}  # fmt: skip
    assert "ImportKeyMaterial" not in EVENT_NAMES


def test_a_key_arn_of_this_deployment_names_the_key():
    arn = f"acs:kms:cn-hangzhou:1234567890123456:key/{KEY}"
    assert one(with_call("DeleteKeyMaterial", {"KeyId": arn})).key_id == KEY


def test_batches_are_lists_of_events():
    docs = parse_payload((EVENTS / "actiontrail-batch.json").read_bytes())
    assert [classify(d, HERE).action for d in docs] == [RESTORE, ALERT, IGNORE]
    assert len(parse_payload(sample("delete-key-material"))) == 1  # a dict, as a test console
    assert len(parse_payload(json.dumps(sample("batch")))) == 3  # a str


# ---- hostile input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message"),
    [(b"x" * (events.MAX_PAYLOAD_BYTES + 1), "larger than"),
     ("é" * events.MAX_PAYLOAD_BYTES, "larger than"),
     (b"[" * 50_000 + b"]" * 50_000, "nested too deeply|larger than"),
     (b"not json", "not JSON"), (b"\xff\xfe{}", "not JSON"),
     (b"[]", "empty"), (b"[1]", "JSON object"), (b"null", "JSON object"), (b'"s"', "JSON object"),
     (json.dumps([{}] * (events.MAX_BATCH + 1)).encode(), "at most")],
)  # fmt: skip
def test_bad_payloads_are_permanent(payload, message):
    with pytest.raises(PermanentEventError, match=message):
        parse_payload(payload)


def _mutate(path: str, value):
    doc = copy.deepcopy(sample("delete-key-material"))
    *parents, last = path.split(".")
    target = doc
    for p in parents:
        target = target[p]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [("source", "acs.oss", "source"), ("source", 7, "source"), ("source", KeyError, "source"),
     ("type", "actiontrail:ActionTrail:ConsoleOperation", "type"),
     ("aliyunaccountid", "6543210987654321", "account"), ("aliyunaccountid", KeyError, "account"),
     ("aliyunregionid", "cn-shanghai", "region"),
     ("data", [], "ActionTrail record"), ("data", "{}", "ActionTrail record"),
     ("data.serviceName", "Ecs", "serviceName"), ("data.serviceName", "KMS", "serviceName"),
     ("data.acsRegion", "cn-shanghai", "acsRegion"), ("data.acsRegion", KeyError, "acsRegion"),
     ("data.recipientAccountId", "6543210987654321", "recipientAccountId"),
     ("data.eventName", "DeleteKeyMaterial\nforged=1", "printable"),
     ("data.eventName", 1, "string"), ("data.eventName", "D" * 200, "string"),
     ("data.eventId", "e\u202eid", "printable"), ("data.eventId", "x" * 129, "string"),
     ("data.requestParameters", "KeyId=key-1", "JSON object"),
     ("data.requestParameters", KeyError, "JSON object"),
     ("data.requestParameters.KeyId", KeyError, "missing"),
     ("data.requestParameters.KeyId", 12, "missing"),
     ("data.requestParameters.KeyId", "../../etc/passwd", "invalid key id"),
     ("data.requestParameters.KeyId", "key-1\n", "invalid key id"),
     ("data.requestParameters.KeyId", "key-1\x00", "invalid key id"),
     ("data.requestParameters.KeyId", "key-1 ", "invalid key id"),
     ("data.requestParameters.KeyId", "ключ-1", "invalid key id"),
     ("data.requestParameters.KeyId", "key\u00ad1", "invalid key id"),
     ("data.requestParameters.KeyId", "-key", "invalid key id"),
     ("data.requestParameters.KeyId", "k" * 129, "invalid key id"),
     ("data.requestParameters.KeyId", "alias/payments", "alias"),
     ("data.requestParameters.KeyId", f"acs:kms:cn-shanghai:1234567890123456:key/{KEY}", "region"),
     ("data.requestParameters.KeyId", f"acs:kms:cn-hangzhou:6543210987654321:key/{KEY}", "account"),
     ("data.requestParameters.KeyId", "acs:kms:cn-hangzhou:1234567890123456:alias/x", "ARN"),
     ("data.requestParameters.KeyId", "acs:kms:cn-hangzhou:1234567890123456:key/a/../b",
      "invalid key id")],
)  # fmt: skip
def test_foreign_or_malformed_events_are_permanent(path, value, message):
    with pytest.raises(PermanentEventError, match=message) as caught:
        classify(_mutate(path, value), HERE)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


def test_the_foreign_sample_and_an_unconfigured_deployment_are_refused():
    with pytest.raises(PermanentEventError, match="account"):
        one(sample("foreign-account"))
    with pytest.raises(PermanentEventError, match="not configured"):
        classify(sample("delete-key-material"), Deployment(account_id="", region="cn-hangzhou"))


def test_an_event_needs_an_id():
    doc = _mutate("data.eventId", KeyError)
    doc.pop("id")
    doc["data"].pop("requestId")
    with pytest.raises(PermanentEventError, match="neither"):
        classify(doc, HERE)


def test_claims_are_one_printable_line_cut_short():
    doc = with_call("DisableKey", userIdentity={"userName": "mallory\n\x1b[31mroot" + "x" * 500},
                    eventTime="2026-11-28T06:45:00Z\r\nforged")  # fmt: skip
    event = one(doc)
    assert event.claimed_by.startswith("mallory") and "\n" not in event.claimed_by
    assert "\x1b" not in event.claimed_by and len(event.claimed_by) <= events.MAX_CLAIM_CHARS
    assert "\r" not in event.event_time and "\n" not in event.event_time


def test_importing_the_events_module_loads_no_sdk():
    code = (
        "import sys, byok_keeper.planning.events; "
        "print(sorted(m for m in sys.modules if m.startswith(('alibabacloud', 'Tea'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- the duplicate window -----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_duplicates_within_the_window_are_dropped_and_not_after():
    clock = Clock()
    seen = DuplicateFilter(window=60, capacity=10, clock=clock)
    assert not seen.seen("event:a")
    assert seen.seen("event:a")
    assert not seen.seen("event:b")  # another event id: never a duplicate (issue 25)
    assert not seen.seen("") and not seen.seen("")  # no event id: never dropped
    clock.now += 61
    assert not seen.seen("event:a")


def test_the_window_is_bounded_in_size():
    clock = Clock()
    seen = DuplicateFilter(window=3600, capacity=5, clock=clock)
    for i in range(50):
        assert not seen.seen(f"event:{i}")
        clock.now += 1
    assert len(seen) == 5
    assert not seen.seen("event:0")  # evicted, so seen again: one extra look, no more
    assert seen.seen("event:49")


def test_forget_lets_a_retry_through_and_bad_bounds_are_refused():
    seen = DuplicateFilter(clock=Clock())
    seen.seen("event:a")
    seen.forget("event:a")
    assert not seen.seen("event:a")
    with pytest.raises(ValueError):
        DuplicateFilter(window=0)
    with pytest.raises(ValueError):
        DuplicateFilter(capacity=0)


# ---- the events function: what needs no KMS -----------------------------------------------


@pytest.fixture
def function(monkeypatch, tmp_path):
    """The handler with this deployment's environment, a fresh window, the audit in a file, and
    ``look`` (the one path that calls KMS) recorded instead of run."""
    monkeypatch.setenv("BYOK_ACCOUNT_ID", HERE.account_id)
    monkeypatch.setenv("ALIBABA_CLOUD_REGION_ID", HERE.region)
    audit = tmp_path / "audit.jsonl"
    monkeypatch.setattr(fc_events, "_audit_path", lambda: str(audit))
    monkeypatch.setattr(fc_events, "DUPLICATES", DuplicateFilter())
    looked: list[events.KmsEvent] = []

    def look(event, context):
        looked.append(event)
        return {"ok": True, "outcome": "looked", **event.to_json()}

    def look_stopped(event, context):  # one DescribeKey, alert for a managed key stopped
        looked.append(event)
        return {"ok": True, "outcome": "alert", **event.to_json()}

    monkeypatch.setattr(fc_events, "look", look)
    monkeypatch.setattr(fc_events, "look_stopped", look_stopped)
    context = types.SimpleNamespace(request_id="fc-req-1", account_id=None, region=None)

    def run(payload):
        result = fc_events.handler(payload, context)
        lines = [json.loads(x) for x in audit.read_text().splitlines()] if audit.exists() else []
        return result, lines, looked

    return run


def test_restore_replan_and_alert_events_look_and_ignored_ones_do_not(function):
    """An alert event is a claim too: it is looked at (tests/functional/test_runtime_attacks.py
    holds what the look decides); an ignored one costs nothing."""
    result, lines, looked = function((EVENTS / "actiontrail-batch.json").read_bytes())
    assert result["ok"] and [r["outcome"] for r in result["results"]] == [
        "looked", "alert", "ignored"]  # fmt: skip
    assert [e.event_name for e in looked] == ["DeleteKeyMaterial", "ScheduleKeyDeletion"]
    ignored = next(x for x in lines if x.get("outcome") == "ignored")
    assert ignored["actor"] == "fc" and ignored["trigger"] == "fc-events"
    assert ignored["fc_request_id"] == "fc-req-1"


def test_a_replayed_event_is_dropped(function):
    payload = (EVENTS / "actiontrail-delete-key-material.json").read_bytes()
    first, _, looked = function(payload)
    second, lines, looked = function(payload)
    assert first["results"][0]["outcome"] == "looked"
    assert second["results"][0]["outcome"] == "duplicate" and len(looked) == 1
    assert any(x.get("outcome") == "duplicate" for x in lines)


def test_refusals_are_returned_not_raised_and_audited(function):
    result, lines, looked = function((EVENTS / "actiontrail-foreign-account.json").read_bytes())
    assert result["ok"] is False and result["results"][0]["error"] == "PermanentEventError"
    assert not looked
    refused = [x for x in lines if x.get("outcome") == "failed"]
    assert refused and refused[0]["alert"] is True and "account" in refused[0]["reason"]
    result, _, _ = function(b"x" * (events.MAX_PAYLOAD_BYTES + 1))
    assert result["ok"] is False and "larger than" in result["results"][0]["message"]


def test_one_bad_event_does_not_sink_the_batch(function):
    batch = [sample("foreign-account"), sample("delete-key-material")]
    result, _, looked = function(json.dumps(batch).encode())
    assert [r["ok"] for r in result["results"]] == [False, True] and len(looked) == 1
    assert result["ok"] is False


def test_a_retryable_failure_forgets_the_event_so_the_retry_runs(function, monkeypatch):
    from byok_keeper.runtimes.fc import RetryableFailure

    def throttled(event, context):
        raise RetryableFailure("throttled")

    monkeypatch.setattr(fc_events, "look", throttled)
    payload = (EVENTS / "actiontrail-delete-key-material.json").read_bytes()
    with pytest.raises(RetryableFailure):
        fc_events.handler(payload, types.SimpleNamespace(request_id="r"))
    assert not fc_events.DUPLICATES.seen(one(sample("delete-key-material")).dedupe_key)


def test_the_entry_returns_json():
    source = (Path(__file__).resolve().parents[2] / "functions" / "events" / "index.py").read_text()
    assert "from byok_keeper.runtimes.fc_events import handler" in source and "json.dumps" in source


# ---- bounded fuzzing: refused with our error only, never a crash ---------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)
FIELDS = ["source", "type", "aliyunaccountid", "aliyunregionid", "data", "data.serviceName",
          "data.acsRegion", "data.eventName", "data.eventId", "data.requestId", "data.errorCode",
          "data.userIdentity", "data.requestParameters", "data.requestParameters.KeyId",
          "data.requestParameters.Tags", "data.requestParameters.TagKeys",
          "data.recipientAccountId", "data.eventTime"]  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=st.binary(max_size=2048) | json_values.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_payloads_are_refused_cleanly(payload):
    try:
        docs = parse_payload(payload)
    except PermanentEventError:
        return
    for doc in docs:
        try:
            classify(doc, HERE)
        except PermanentEventError:
            pass


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(changes=st.lists(st.tuples(st.sampled_from(FIELDS), json_values), min_size=1, max_size=3),
       name=st.sampled_from([*EVENT_NAMES, "ImportKeyMaterial"]))  # fmt: skip
def test_hostile_fields_of_a_real_record_are_refused_cleanly(changes, name):
    doc = with_call(name)
    for path, value in changes:
        *parents, last = path.split(".")
        target = doc
        for p in parents:
            target = target.get(p) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target[last] = value
    try:
        event = classify(doc, HERE)
    except PermanentEventError as exc:
        assert "\n" not in str(exc)
        return
    assert event.action in events.ACTIONS
    assert event.key_id == "" or events.KEY_ID_RE.fullmatch(event.key_id)
    assert all(c.isprintable() for c in event.claimed_by + event.event_time)


def test_the_default_window_is_ten_minutes_and_holds_4096_event_ids():
    """The events function's filter (``fc_events.DUPLICATES``) uses the defaults: a replay up to
    600 s later is dropped, not at 600 s; the 4097th id pushes out the first."""
    clock = Clock()
    seen = DuplicateFilter(clock=clock)
    assert not seen.seen("event:a")
    clock.now += 599.5
    assert seen.seen("event:a")
    clock.now += 0.5
    assert not seen.seen("event:a")
    for i in range(4097):
        seen.seen(f"event:{i}")
    assert len(seen) == 4096


def test_the_smallest_window_and_capacity_are_accepted():
    clock = Clock()
    seen = DuplicateFilter(window=0.5, capacity=1, clock=clock)
    assert not seen.seen("event:a") and seen.seen("event:a")
    assert not seen.seen("event:b") and len(seen) == 1


def test_an_expired_id_goes_and_a_newer_one_inside_the_window_stays():
    clock = Clock()
    seen = DuplicateFilter(window=60, capacity=10, clock=clock)
    assert not seen.seen("event:old")
    clock.now += 50
    assert not seen.seen("event:new")
    clock.now += 11  # "old" is 61 s old, "new" 11 s
    assert len(seen) == 2 and not seen.seen("") and len(seen) == 1
    assert seen.seen("event:new") and not seen.seen("event:old")

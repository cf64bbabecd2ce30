"""The events function's handler in-process against aliyun-local's KMS, with ActionTrail-shaped
CloudEvents built from tests/events (the EventBridge delivery itself is the second pass of
issue 15: aliyun-local's emitter and rules, then tests/e2e)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from alibabacloud_kms20160120 import models as km

from byok_keeper.core.enroll import CreateRequest, enroll
from byok_keeper.crypto.material import generate_material
from byok_keeper.domain.lease import parse_lease
from byok_keeper.gateway.kms import ENROLL, FORBIDDEN
from byok_keeper.planning.events import DuplicateFilter
from byok_keeper.runtimes import fc, fc_events
from byok_keeper.vault import FileStore, LocalKeySealer, Vault
from byok_keeper.vault.sealers import new_seal_key_file
from tests.functional import sls_rules
from tests.functional.conftest import fc_context, make_gateway

pytestmark = pytest.mark.every_profile

EVENTS = Path(__file__).resolve().parents[1] / "events"
ACCOUNT = "1234567890123456"


@pytest.fixture
def deployed(emulator, kms, tmp_path, monkeypatch):
    """The environment deploy/functions.yml gives the events function, one enrolled key, a cold
    instance with an empty duplicate window."""
    new_seal_key_file(tmp_path / "seal.key")
    monkeypatch.setenv("BYOK_KMS_ENDPOINT", f"http://{emulator.endpoint}")
    monkeypatch.setenv("BYOK_VAULT", f"file://{tmp_path / 'vault'}")
    monkeypatch.setenv("BYOK_SEAL_KEY_FILE", str(tmp_path / "seal.key"))
    monkeypatch.setenv("BYOK_ACCOUNT_ID", ACCOUNT)
    monkeypatch.setenv("ALIBABA_CLOUD_REGION_ID", emulator.region)
    monkeypatch.setenv("BYOK_AUDIT_FILE", str(tmp_path / "audit.jsonl"))
    vault = Vault(FileStore(tmp_path / "vault"), LocalKeySealer.from_file(tmp_path / "seal.key"))
    key = enroll(make_gateway(emulator, ENROLL), vault, generate_material("EC_P256"),
                 lease=parse_lease("30d"),
                 create=CreateRequest("EC_P256", "SIGN/VERIFY", "kst-local-software"))  # fmt: skip
    fc.RUNTIME = fc.Runtime()
    monkeypatch.setattr(fc_events, "DUPLICATES", DuplicateFilter())
    emulator.emulator.calls.clear()
    return fc_context(emulator), key.key_id


_serial = iter(range(1, 10_000))


def event(emulator, name: str, key_id: str, params: dict | None = None) -> bytes:
    """A fresh ActionTrail record of ``name`` on ``key_id`` in the emulator's region."""
    doc = json.loads((EVENTS / "actiontrail-delete-key-material.json").read_text())
    n = next(_serial)
    doc["id"] = doc["data"]["eventId"] = f"evt-{n:06d}"
    doc["data"]["requestId"] = f"REQ-{n:06d}"
    doc["aliyunregionid"] = doc["data"]["acsRegion"] = emulator.region
    doc["data"]["eventName"] = name
    doc["data"]["requestParameters"] = {"KeyId": key_id, **(params or {})}
    return json.dumps(doc).encode()


def audit_lines() -> list[dict]:
    import os

    path = Path(os.environ["BYOK_AUDIT_FILE"])
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def calls(emulator, key_id: str) -> list[str]:
    return [c["action"] for c in emulator.calls() if c.get("key_id") == key_id]


def test_a_deletion_event_restores_that_key_with_one_import(deployed, emulator):
    context, key_id = deployed
    emulator.emulator.kms.delete_key_material(key_id)
    payload = event(emulator, "DeleteKeyMaterial", key_id)
    result = fc_events.handler(payload, context)
    assert result["ok"] and result["results"][0]["outcome"] == "restored"
    assert emulator.key_view(key_id)["state"] == "Enabled"
    replay = fc_events.handler(payload, context)  # FC's at-least-once delivery
    assert replay["results"][0]["outcome"] == "duplicate"
    actions = calls(emulator, key_id)
    assert actions.count("ImportKeyMaterial") == 1 and not set(actions) & FORBIDDEN
    (line,) = [x for x in audit_lines() if x.get("event") == "key"]
    assert (line["trigger"], line["actor"], line["outcome"]) == ("fc-events", "fc", "restored")
    assert line["claimed_by"] and line["event_name"] == "DeleteKeyMaterial"  # who is only claimed


def test_a_forged_deletion_event_on_a_healthy_key_costs_one_describe(deployed, emulator):
    context, key_id = deployed
    result = fc_events.handler(event(emulator, "DeleteKeyMaterial", key_id), context)
    assert result["ok"] and result["results"][0]["outcome"] == "looked"
    assert result["results"][0]["decision"] == "OK"
    assert calls(emulator, key_id) == ["DescribeKey"]


def test_a_held_key_is_untouched_and_released_hold_replans_it(deployed, emulator):
    context, key_id = deployed
    emulator.emulator.kms.delete_key_material(key_id)
    emulator.emulator.kms.tag_key(key_id, {"byok-keeper:hold": "INC-7 kill switch"})
    held = fc_events.handler(event(emulator, "DeleteKeyMaterial", key_id), context)
    assert held["results"][0]["outcome"] == "held"
    assert emulator.key_view(key_id)["state"] == "PendingImport"
    assert "ImportKeyMaterial" not in calls(emulator, key_id)
    emulator.emulator.kms.untag_key(key_id, ["byok-keeper:hold"])
    released = event(emulator, "UntagResource", key_id, {"TagKeys": '["byok-keeper:hold"]'})
    result = fc_events.handler(released, context)
    assert result["results"][0]["outcome"] == "restored"
    assert emulator.key_view(key_id)["state"] == "Enabled"


def test_operators_are_never_fought(deployed, emulator, kms):
    context, key_id = deployed
    kms.disable_key(km.DisableKeyRequest(key_id=key_id))  # an operator's act, through the SDK
    emulator.emulator.calls.clear()
    for name in ("ScheduleKeyDeletion", "DisableKey"):
        result = fc_events.handler(event(emulator, name, key_id), context)
        assert result["ok"] and result["results"][0]["outcome"] == "alert"
    assert calls(emulator, key_id) == ["DescribeKey"] * 2  # one look each, never a write
    assert emulator.key_view(key_id)["state"] == "Disabled"


def test_kms_unavailable_raises_and_the_retry_is_not_dropped(deployed, emulator):
    context, key_id = deployed
    emulator.emulator.kms.delete_key_material(key_id)
    payload = event(emulator, "DeleteKeyMaterial", key_id)
    emulator.set_faults(error_rate=1.0)
    with pytest.raises(fc.RetryableFailure):
        fc_events.handler(payload, context)
    emulator.set_faults()
    result = fc_events.handler(payload, context)  # FC's retry of the same event
    assert result["results"][0]["outcome"] == "restored"


# ---- the SLS alert rules over the lines the handler really writes ------------------------------


def test_the_sls_rules_fire_on_the_lines_the_handler_writes(deployed, emulator, kms, capfd):
    """Every kind of line the handler writes, as FC ships it to the Logstore (one JSON line of
    stdout/stderr is one log's ``message``), against the two rules over the events function:
    byok-keeper-key-deletion-or-disable keeps exactly the ScheduleKeyDeletion and DisableKey
    alerts, byok-keeper-event-refused exactly the refused and KMS-failed events."""
    context, key_id = deployed
    kms.disable_key(km.DisableKeyRequest(key_id=key_id))  # the alerts need a really stopped key
    foreign = json.loads(event(emulator, "DeleteKeyMaterial", key_id))
    foreign["aliyunaccountid"] = "9999999999999999"
    payloads = [
        event(emulator, "ScheduleKeyDeletion", key_id),  # alert
        event(emulator, "DisableKey", key_id),  # alert
        event(emulator, "DeleteKeyMaterial", key_id),  # looked (healthy)
        event(emulator, "ImportKeyMaterial", key_id),  # ignored
        json.dumps(foreign).encode(),  # refused: another account
        event(emulator, "DeleteKeyMaterial", "../" + key_id),  # refused: no key id
        b"{not json",  # refused
    ]
    capfd.readouterr()
    for payload in payloads:
        fc_events.handler(payload, context)
    fc_events.handler(payloads[2], context)  # a duplicate
    emulator.set_faults(fail_next={"DescribeKey": ["InvalidParameter"]})
    failed = fc_events.handler(event(emulator, "DeleteKeyMaterial", key_id), context)
    emulator.set_faults()
    assert failed["results"][0]["outcome"] == "failed", failed  # KMS refused the look for good
    out, err = capfd.readouterr()
    lines = [json.loads(x) for x in (out + err).splitlines() if x.startswith("{")]
    events = [x for x in lines if x.get("event") == "event"]
    outcomes = sorted(x["outcome"] for x in events)
    assert outcomes == sorted(["alert", "alert", "looked", "ignored", "duplicate"] +
                              ["failed"] * 4)  # fmt: skip

    queries = sls_rules.queries()
    over_events = {n for n, q in queries.items() if "'$.event') = 'event'" in q}
    assert over_events == {"byok-keeper-key-deletion-or-disable", "byok-keeper-event-refused"}
    kept = {}
    for name in over_events:
        query = queries[name]
        kept[name] = [x for x in lines if sls_rules.selects(query, x)]
        for path in set(re.findall(r"'\$\.([\w.]+)'", query)):  # every field read is written
            assert any(sls_rules.scalar(x, path) is not None for x in kept[name]), (name, path)
    destroyed = kept["byok-keeper-key-deletion-or-disable"]
    assert sorted(x["event_name"] for x in destroyed) == ["DisableKey", "ScheduleKeyDeletion"]
    assert {x["key_id"] for x in destroyed} == {key_id}  # the group's fields are there
    assert all(x["level"] == "warning" and x["claimed_by"] for x in destroyed)
    refused = kept["byok-keeper-event-refused"]
    codes = sorted(x["error_code"] for x in refused)
    assert codes == ["InvalidParameter"] + ["PermanentEventError"] * 3
    assert all(x["alert"] is True for x in destroyed + refused)

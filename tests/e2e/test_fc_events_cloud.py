"""The events path, end to end: make package -> deploy.py (FC 3.0) into aliyun-local, with the
events function's EventBridge trigger -> KMS write calls through the KMS SDK -> ActionTrail
records -> EventBridge -> FC's async queue -> the deployed function -> the key restored.

The sweep's timer is set to once a year and never fired, and the clock never moves: whatever is
restored here was restored by an event. Run under both emulator profiles: ``default`` publishes
KMS calls as ``acs.actiontrail``/``actiontrail:ActionTrail:ApiCall``, ``strict`` as
``acs.kms``/``kms:ActionTrail:ApiCall`` (the disputed spelling, docs/FIDELITY.md), and the
deployed rules must catch both. The deployed ``asyncInvocationType`` (false: asynchronous under
FC 3.0's reading) is read as FC 3.0's current page says under ``default`` (deliveries go through
FC's async queue, its retries and OnFailure) and as FC 2.0's under ``strict`` (synchronous, one
invocation each): the events path restores the keys either way."""

from __future__ import annotations

import json
import time

import pytest
from alibabacloud_fc20230330 import models as fc
from alibabacloud_kms20160120 import models as km

from byok_keeper.core.enroll import CreateRequest, enroll
from byok_keeper.crypto.material import generate_material
from byok_keeper.domain.lease import parse_lease
from byok_keeper.gateway.kms import ENROLL
from byok_keeper.vault import FileStore, LocalKeySealer, Vault
from tests.e2e.conftest import run_cli
from tests.e2e.fc_cloud import admin, deploy_package, enroll_keys, fc3_client, fc_cli_env
from tests.functional.conftest import describe, make_client, make_gateway

pytestmark = [pytest.mark.slow, pytest.mark.every_profile]

SPECS = (("EC_P256", "30d"), ("EC_P256K", "30d"), ("RSA_2048", "30d"), ("EC_P256", "90d"))
EVENTS = "byok-keeper-events"
SOURCES = {"default": "acs.actiontrail", "strict": "acs.kms"}
INVOCATION = {"default": "async", "strict": "sync"}  # the eventbridge_async_invocation_type


@pytest.fixture
def deployed(package, served, tmp_path):
    """Four enrolled keys, the three functions deployed, the events trigger live."""
    vault_dir, seal, _none = enroll_keys(served, tmp_path, ())  # reset, a fresh seal key
    keys = []
    vault = Vault(FileStore(vault_dir), LocalKeySealer.from_file(seal))
    gateway = make_gateway(served, ENROLL)
    for spec, lease in SPECS:
        keys.append(
            enroll(
                gateway,
                vault,
                generate_material(spec),
                lease=parse_lease(lease),
                create=CreateRequest(spec, "SIGN/VERIFY", "kst-local-software"),
            )
        )
    done = deploy_package(package[0], served, vault_dir, seal)
    assert "eventbridge trigger" in done and "byok-keeper-events" in done
    assert served.wait_events(timeout=60)
    return keys, vault_dir, seal


def _imports(served, since: int, key_id: str | None = None) -> int:
    return sum(
        1
        for c in served.calls()[since:]
        if c["action"] == "ImportKeyMaterial" and key_id in (None, c.get("key_id"))
    )


def _actions(served, since: int, key_id: str) -> list[str]:
    return [c["action"] for c in served.calls()[since:] if c.get("key_id") == key_id]


def _settle(served) -> None:
    assert served.wait_events(timeout=180)
    assert admin(served, "POST", "fc/wait", {"timeout": 180})["idle"]


def _event_lines(served, until=lambda lines: True, timeout: float = 20.0) -> list[dict]:
    """The functions' JSON log lines, once ``until(lines)`` holds: FC's log lines are drained
    from the instances' stderr apart from their answers, so they may land a moment later."""
    deadline = time.monotonic() + timeout
    while True:
        lines = _json_lines(served)
        if until(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def _json_lines(served) -> list[dict]:
    out = []
    for line in admin(served, "GET", "fc/logs"):
        text = line.split(": ", 1)[-1]
        if text.startswith("{"):
            try:
                out.append(json.loads(text))
            except ValueError:
                continue
    return out


def test_deletions_are_restored_by_events_once_each_with_no_timer_and_no_loop(
    deployed, served, kms_profile
):
    keys, _vault, _seal = deployed
    kms = make_client(served)
    start = len(served.calls())
    offset = served.emulator.clock.offset

    for key in keys[:3]:  # three deletions at once, through the KMS SDK
        kms.delete_key_material(km.DeleteKeyMaterialRequest(key_id=key.key_id))
    _settle(served)

    for key in keys[:3]:
        assert describe(kms, key.key_id).key_state == "Enabled", key.key_id
        assert served.key_view(key.key_id)["material_fingerprint"] == key.fingerprint
        assert _imports(served, start, key.key_id) == 1  # exactly one import per deletion
    assert _actions(served, start, keys[3].key_id) == []  # nothing fleet-wide
    assert served.emulator.clock.offset == offset  # no clock moved
    invoked = [i["function"] for i in admin(served, "GET", "fc/invocations")]
    assert "byok-keeper-sweep" not in invoked and "byok-keeper-reimport" not in invoked
    assert invoked.count(EVENTS) == 3

    deletions = [e for e in served.events() if e["event_name"] == "DeleteKeyMaterial"]
    assert {e["source"] for e in deletions} == {SOURCES[kms_profile]}
    assert all(d["state"] == "succeeded" for e in deletions for d in e["deliveries"])
    invocations = {d["invocation"] for e in deletions for d in e["deliveries"]}
    assert invocations == {INVOCATION[kms_profile]}
    assert all(d["trigger"] == "actiontrail" for e in deletions for d in e["deliveries"])
    # The function's own writes (ImportKeyMaterial, under its role) were recorded and matched
    # nothing: no loop. After settling, nothing further happens.
    own = [e for e in served.events() if e["event_name"] == "ImportKeyMaterial"][-3:]
    assert all(e["event"]["data"]["userIdentity"]["type"] == "assumed-role" for e in own)
    assert all(not e["deliveries"] for e in own)
    settled_calls, settled_events = len(served.calls()), len(served.events())
    time.sleep(1.0)
    _settle(served)
    assert (len(served.calls()), len(served.events())) == (settled_calls, settled_events)
    assert _imports(served, start) == 3

    lines = _event_lines(served, lambda got: sum(x.get("event") == "key" for x in got) >= 3)
    restored = [x for x in lines if x.get("event") == "key"]
    assert {x["key_id"] for x in restored} == {k.key_id for k in keys[:3]}
    assert all(x["trigger"] == "fc-events" and x["actor"] == "fc" for x in restored)
    assert all(x["outcome"] == "restored" and x["claimed_by"] for x in restored)


def test_a_held_key_stays_deleted_and_operators_are_not_fought(deployed, served):
    keys, _vault, _seal = deployed
    kms = make_client(served)
    held, disabled, doomed = keys[0], keys[1], keys[2]
    env = fc_cli_env(served, BYOK_KMS_ENDPOINT=f"http://{served.endpoint}")
    out = run_cli("hold", held.key_id, "--reason", "INC-9 kill switch", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    _settle(served)  # the hold's TagResource: a re-plan, one look, nothing else
    hold_event = [e for e in served.events() if e["event_name"] == "TagResource"][-1]
    assert [d["trigger"] for d in hold_event["deliveries"]] == ["actiontrail-tags"]  # once
    start = len(served.calls())

    kms.delete_key_material(km.DeleteKeyMaterialRequest(key_id=held.key_id))
    kms.disable_key(km.DisableKeyRequest(key_id=disabled.key_id))
    kms.schedule_key_deletion(
        km.ScheduleKeyDeletionRequest(key_id=doomed.key_id, pending_window_in_days=7)
    )
    operator = len(served.calls())  # the three calls above
    _settle(served)

    assert _actions(served, operator, disabled.key_id) == ["DescribeKey"]  # one look, no write
    assert _actions(served, operator, doomed.key_id) == ["DescribeKey"]
    assert "GetParametersForImport" not in _actions(served, operator, held.key_id)
    assert _imports(served, start) == 0
    assert describe(kms, held.key_id).key_state == "PendingImport"
    assert describe(kms, disabled.key_id).key_state == "Disabled"
    assert describe(kms, doomed.key_id).key_state == "PendingDeletion"
    lines = _event_lines(
        served, lambda got: len([x for x in got if x.get("outcome") in ("held", "alert")]) >= 3
    )
    (said,) = [x for x in lines if x.get("event") == "key" and x["key_id"] == held.key_id]
    assert said["outcome"] == "held" and said["trigger"] == "fc-events"
    alerts = {x["event_name"] for x in lines if x.get("outcome") == "alert"}
    assert alerts == {"DisableKey", "ScheduleKeyDeletion"}  # JSON even on a cold instance
    looked = [x for x in lines if x.get("outcome") == "looked" and x["key_id"] == held.key_id]
    assert looked and looked[0]["event_name"] == "TagResource"  # the hold itself: one look

    # Released by an operator: the UntagResource event re-plans the key and restores it.
    out = run_cli("release", held.key_id, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    _settle(served)
    assert describe(kms, held.key_id).key_state == "Enabled"
    assert _imports(served, start, held.key_id) == 1


def test_a_forged_event_invoked_directly_costs_one_describe(deployed, served):
    keys, _vault, _seal = deployed
    key = keys[3]
    forged = {
        "id": "forged-1",
        "source": "acs.actiontrail",
        "type": "actiontrail:ActionTrail:ApiCall",
        "specversion": "1.0",
        "aliyunaccountid": "1234567890123456",
        "aliyunregionid": served.region,
        "data": {
            "eventId": "forged-1",
            "eventName": "DeleteKeyMaterial",
            "serviceName": "Kms",
            "acsRegion": served.region,
            "requestId": "FORGED-1",
            "requestParameters": {"KeyId": key.key_id},
            "userIdentity": {"type": "ram-user", "userName": "mallory"},
        },
    }
    start = len(served.calls())
    answer = fc3_client(served).invoke_function(
        EVENTS, fc.InvokeFunctionRequest(body=json.dumps(forged).encode())
    )
    result = json.loads(answer.body.read())
    assert result["ok"] and result["results"][0]["outcome"] == "looked"
    assert result["results"][0]["claimed_by"] == "mallory"
    assert _actions(served, start, key.key_id) == ["DescribeKey"]
    kms_calls = [c["action"] for c in served.calls()[start:] if c["action"] != "InvokeFunction"]
    assert kms_calls == ["DescribeKey"]  # and nothing else, for any key

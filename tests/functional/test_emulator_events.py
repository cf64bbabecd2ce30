"""aliyun-local's ActionTrail -> EventBridge -> FC path, driven by the real SDKs: an FC 3.0
function with an ``eventbridge`` trigger (``alibabacloud-fc20230330``) receives the
CloudEvents envelope of a KMS write made with ``alibabacloud-kms20160120``; reads emit nothing,
a pattern that does not match delivers nothing, and the delivery delay is honoured."""

from __future__ import annotations

import base64
import io
import json
import sys
import time
import urllib.request
import zipfile

import pytest
from alibabacloud_fc20230330 import models as fc
from alibabacloud_fc20230330.client import Client as FcClient
from alibabacloud_kms20160120 import models as km
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.models import Config

from aliyun_local.eventbridge import PatternError, check_pattern, matches
from aliyun_local.server import LocalServer
from byok_keeper.crypto.material import load_private_key
from tests.functional.conftest import create_external_key, describe, import_material, make_client

RECORDER = """
import json

def handler(event, context):
    print("EVENT " + json.dumps(json.loads(event)), flush=True)
    return "recorded"

def failing(event, context):
    raise RuntimeError("KMS could not be used")
"""
# The pattern the events function is meant to use: KMS write calls delivered by ActionTrail,
# whichever of the two documented sources EventBridge puts on them.
KMS_DELETIONS = {
    "source": ["acs.actiontrail", "acs.kms"],
    "type": ["actiontrail:ActionTrail:ApiCall", "kms:ActionTrail:ApiCall"],
    "data": {"serviceName": ["Kms"], "eventName": ["DeleteKeyMaterial"]},
}


def _zip() -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.py", RECORDER)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def server():
    with LocalServer(fc_runtimes={"python3.12": sys.executable}) as served:
        yield served


@pytest.fixture
def clients(server):
    server.wait_events(timeout=20)  # the last test's deliveries land before the reset
    server.reset()
    fc_client = FcClient(
        Config(
            access_key_id=server.access_key_id,
            access_key_secret=server.access_key_secret,
            endpoint=server.endpoint,
            protocol="http",
            region_id=server.region,
            read_timeout=60_000,
        )
    )
    fc_client.create_function(
        fc.CreateFunctionRequest(
            body=fc.CreateFunctionInput(
                function_name="recorder",
                handler="index.handler",
                runtime="python3.12",
                code=fc.InputCodeLocation(zip_file=_zip()),
                timeout=30,
            )
        )
    )
    return fc_client, make_client(server)


def create_eventbridge_trigger(
    fc_client: FcClient,
    pattern: dict,
    name: str = "kms-events",
    schema: str = "CloudEvents",
    async_invocation_type: bool = True,
    function: str = "recorder",
):
    """How a deployment wires the events function: an FC 3.0 ``eventbridge`` trigger."""
    config = {
        "triggerEnable": True,
        "asyncInvocationType": async_invocation_type,
        "eventRuleFilterPattern": json.dumps(pattern),
        "eventSourceConfig": {"eventSourceType": "Default"},
        "eventSinkConfig": {"deliveryOption": {"mode": "event-driven", "eventSchema": schema}},
    }
    return fc_client.create_trigger(
        function,
        fc.CreateTriggerRequest(
            body=fc.CreateTriggerInput(
                trigger_name=name,
                trigger_type="eventbridge",
                trigger_config=json.dumps(config),
                qualifier="LATEST",
            )
        ),
    ).body


def _external_key(kms, target_keys) -> str:
    key_id = create_external_key(kms, "EC_P256")
    import_material(kms, key_id, load_private_key(target_keys["EC_P256"], key_spec="EC_P256"))
    return key_id


def _received(server) -> list[dict]:
    return [
        json.loads(line.split("EVENT ", 1)[1])
        for line in list(server.emulator.fc.logs)
        if "EVENT " in line
    ]


def test_a_deletion_reaches_the_function_as_an_actiontrail_cloud_event(
    server, clients, target_keys
):
    fc_client, kms = clients
    trigger = create_eventbridge_trigger(fc_client, KMS_DELETIONS)
    assert trigger.trigger_type == "eventbridge"
    assert json.loads(trigger.trigger_config)["eventRuleFilterPattern"]
    key_id = _external_key(kms, target_keys)

    request_id = kms.delete_key_material(km.DeleteKeyMaterialRequest(key_id=key_id)).body.request_id
    assert server.wait_events(timeout=20)

    (event,) = _received(server)
    assert event["specversion"] == "1.0"
    assert event["source"] == "acs.actiontrail"
    assert event["type"] == "actiontrail:ActionTrail:ApiCall"
    assert event["aliyunaccountid"] == server.emulator.account_id
    assert event["aliyunregionid"] == server.region
    assert event["subject"].endswith(f":key/{key_id}")
    for name in ("id", "time", "aliyunpublishtime", "aliyuneventbusname"):
        assert event[name]
    data = event["data"]
    assert data["eventName"] == "DeleteKeyMaterial"
    assert data["serviceName"] == "Kms"
    assert data["eventRW"] == "Write" and data["eventType"] == "ApiCall"
    assert data["requestParameters"]["KeyId"] == key_id
    assert data["requestId"] == request_id
    assert data["acsRegion"] == server.region
    assert data["eventId"] == event["id"]
    assert data["userIdentity"]["accessKeyId"] == server.access_key_id
    assert "errorCode" not in data

    (entry,) = [e for e in server.events() if e["event_name"] == "DeleteKeyMaterial"]
    (delivery,) = entry["deliveries"]
    assert delivery["function"] == "recorder" and delivery["trigger"] == "kms-events"
    assert delivery["state"] == "succeeded" and delivery["attempts"] == 1
    assert delivery["request_id"] and delivery["delivered_at"]
    # The writes before it were recorded too, and matched nothing.
    names = [e["event_name"] for e in server.events()]
    assert names == ["CreateKey", "ImportKeyMaterial", "DeleteKeyMaterial"]
    assert all(not e["deliveries"] for e in server.events()[:2])


def test_no_event_ever_carries_key_material_or_the_import_token(server, clients, target_keys):
    _fc_client, kms = clients
    _external_key(kms, target_keys)
    (imported,) = [e for e in server.events() if e["event_name"] == "ImportKeyMaterial"]
    parameters = imported["event"]["data"]["requestParameters"]
    assert "EncryptedKeyMaterial" not in parameters and "ImportToken" not in parameters
    assert "Signature" not in parameters and "AccessKeyId" not in parameters


def test_read_calls_emit_nothing(server, clients, target_keys):
    fc_client, kms = clients
    create_eventbridge_trigger(fc_client, {"source": ["acs.actiontrail"]})
    key_id = _external_key(kms, target_keys)
    before = len(server.events())
    describe(kms, key_id)
    kms.list_keys(km.ListKeysRequest())
    kms.list_resource_tags(km.ListResourceTagsRequest(key_id=key_id))
    kms.list_key_versions(km.ListKeyVersionsRequest(key_id=key_id))
    assert len(server.events()) == before == 2  # CreateKey and ImportKeyMaterial only


def test_a_pattern_that_does_not_match_delivers_nothing(server, clients, target_keys):
    fc_client, kms = clients
    create_eventbridge_trigger(
        fc_client, {**KMS_DELETIONS, "data": {"eventName": ["ScheduleKeyDeletion"]}}
    )
    key_id = _external_key(kms, target_keys)
    kms.delete_key_material(km.DeleteKeyMaterialRequest(key_id=key_id))
    assert server.wait_events(timeout=10)
    time.sleep(0.3)
    assert _received(server) == []
    assert all(not e["deliveries"] for e in server.events())


def test_a_refused_write_is_recorded_with_its_error_code(server, clients):
    fc_client, kms = clients
    create_eventbridge_trigger(fc_client, {"data": {"errorCode": [{"exists": True}]}})
    with pytest.raises(ClientException):
        kms.delete_key_material(km.DeleteKeyMaterialRequest(key_id="key-missing"))
    assert server.wait_events(timeout=20)
    (event,) = _received(server)
    assert event["data"]["errorCode"] == "Forbidden.KeyNotFound"


def test_the_delivery_delay_is_honoured_and_set_over_the_admin_api(server, clients, target_keys):
    fc_client, kms = clients
    create_eventbridge_trigger(fc_client, KMS_DELETIONS)
    key_id = _external_key(kms, target_keys)
    request = urllib.request.Request(
        f"{server.url}/_local/events/config",
        data=json.dumps({"delivery_delay_seconds": 2.0}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.load(answer)["delivery_delay_seconds"] == 2.0

    started = time.monotonic()
    kms.delete_key_material(km.DeleteKeyMaterialRequest(key_id=key_id))
    time.sleep(0.2)
    (entry,) = [e for e in server.events() if e["event_name"] == "DeleteKeyMaterial"]
    assert entry["deliveries"][0]["state"] == "scheduled"  # not yet: the delay holds it
    assert server.wait_events(timeout=20)
    assert time.monotonic() - started >= 2.0
    assert len(_received(server)) == 1

    server.reset()  # back to the startup delay
    assert server.emulator.events.config()["delivery_delay_seconds"] == 0.2
    with urllib.request.urlopen(f"{server.url}/_local/events", timeout=10) as answer:
        assert json.load(answer) == []


def test_raw_data_delivers_the_actiontrail_record_alone(server, clients, target_keys):
    fc_client, kms = clients
    create_eventbridge_trigger(fc_client, KMS_DELETIONS, schema="RawData")
    key_id = _external_key(kms, target_keys)
    kms.delete_key_material(km.DeleteKeyMaterialRequest(key_id=key_id))
    assert server.wait_events(timeout=20)
    (record,) = _received(server)
    assert record["eventName"] == "DeleteKeyMaterial" and "specversion" not in record


def test_the_strict_profile_publishes_under_the_kms_source(server, clients, target_keys):
    fc_client, kms = clients
    server.emulator.kms.settings.update({"actiontrail_event_source": "acs.kms"})
    create_eventbridge_trigger(fc_client, KMS_DELETIONS)
    key_id = _external_key(kms, target_keys)
    kms.delete_key_material(km.DeleteKeyMaterialRequest(key_id=key_id))
    assert server.wait_events(timeout=20)
    (event,) = _received(server)
    assert (event["source"], event["type"]) == ("acs.kms", "kms:ActionTrail:ApiCall")


def test_a_disabled_trigger_or_an_unemulated_operator(server, clients, target_keys):
    fc_client, kms = clients
    with pytest.raises(ClientException) as refused:
        create_eventbridge_trigger(fc_client, {"data": {"x": [{"numeric": [">", 0]}]}})
    assert "numeric" in refused.value.message
    config = {"triggerEnable": False, "eventRuleFilterPattern": json.dumps(KMS_DELETIONS)}
    fc_client.create_trigger(
        "recorder",
        fc.CreateTriggerRequest(
            body=fc.CreateTriggerInput(
                trigger_name="off", trigger_type="eventbridge", trigger_config=json.dumps(config)
            )
        ),
    )
    key_id = _external_key(kms, target_keys)
    kms.delete_key_material(km.DeleteKeyMaterialRequest(key_id=key_id))
    assert server.wait_events(timeout=10)
    assert all(not e["deliveries"] for e in server.events())


ON_FAILURE = "acs:mns:cn-hangzhou:1234567890123456:/topics/byok-keeper-failures/messages"


@pytest.mark.parametrize(
    ("reading", "flag", "invocation"),
    [
        ("true-is-sync", False, "async"),  # FC 3.0's page and SDK: what deploy.py sends
        ("true-is-sync", True, "sync"),
        ("true-is-async", False, "sync"),  # FC 2.0's reading: the deployed value goes sync
        ("true-is-async", True, "async"),
    ],
)
def test_async_invocation_type_is_read_as_the_setting_says(
    server, clients, target_keys, reading, flag, invocation
):
    # Asynchronous: FC's async queue, its retries and OnFailure. Synchronous: one invocation,
    # neither (EventBridge's own retry is not emulated). docs/FIDELITY.md, "Events".
    fc_client, kms = clients
    server.emulator.fc.retry_delay_seconds = 0.01
    server.emulator.kms.settings.update({"eventbridge_async_invocation_type": reading})
    body = fc.CreateFunctionInput(function_name="failing", handler="index.failing",
                                  runtime="python3.12", code=fc.InputCodeLocation(zip_file=_zip()),
                                  timeout=30)  # fmt: skip
    fc_client.create_function(fc.CreateFunctionRequest(body=body))
    destination = fc.DestinationConfig(on_failure=fc.Destination(destination=ON_FAILURE))
    config = fc.PutAsyncInvokeConfigInput(
        max_async_retry_attempts=1, destination_config=destination
    )
    fc_client.put_async_invoke_config("failing", fc.PutAsyncInvokeConfigRequest(body=config))
    create_eventbridge_trigger(fc_client, KMS_DELETIONS, async_invocation_type=flag,
                               function="failing")  # fmt: skip
    key_id = _external_key(kms, target_keys)

    kms.delete_key_material(km.DeleteKeyMaterialRequest(key_id=key_id))
    assert server.wait_events(timeout=30)

    (entry,) = [e for e in server.events() if e["event_name"] == "DeleteKeyMaterial"]
    (delivery,) = entry["deliveries"]
    assert (delivery["invocation"], delivery["state"]) == (invocation, "failed")
    failures = [d for d in server.emulator.fc.deliveries if d.function == "failing"]
    if invocation == "async":
        assert delivery["attempts"] == 2  # one retry, then OnFailure
        assert [(d.kind, d.destination, d.attempts) for d in failures] == [
            ("OnFailure", ON_FAILURE, 2)
        ]
    else:
        assert delivery["attempts"] == 1 and failures == []


SIX_KMS_CALLS = ["DeleteKeyMaterial", "ScheduleKeyDeletion", "DisableKey", "CancelKeyDeletion",
                 "TagResource", "UntagResource"]  # fmt: skip


def test_a_rule_over_eventbridges_5_expressions_per_field_is_refused(server, clients):
    # EventBridge's limits page: at most 5 expressions per field. The events function's first
    # rule named six calls in one field; a real account would refuse it, so does aliyun-local.
    fc_client, _kms = clients
    over = {**KMS_DELETIONS, "data": {"serviceName": ["Kms"], "eventName": SIX_KMS_CALLS}}
    with pytest.raises(ClientException) as refused:
        create_eventbridge_trigger(fc_client, over, name="six")
    assert refused.value.status_code == 400
    assert "data.eventName: 6 expressions" in refused.value.message
    assert "at most 5" in refused.value.message
    split = [SIX_KMS_CALLS[:4], SIX_KMS_CALLS[4:]]
    for i, names in enumerate(split):  # the same calls over two rules: accepted
        pattern = {**KMS_DELETIONS, "data": {"serviceName": ["Kms"], "eventName": names}}
        create_eventbridge_trigger(fc_client, pattern, name=f"part-{i}")
    # An update cannot sneak past the limit either.
    body = fc.UpdateTriggerInput(
        trigger_config=json.dumps({"eventRuleFilterPattern": json.dumps(over)})
    )
    with pytest.raises(ClientException, match="at most 5"):
        fc_client.update_trigger("recorder", "part-0", fc.UpdateTriggerRequest(body=body))
    names = [t.trigger_name for t in fc_client.list_triggers("recorder", fc.ListTriggersRequest()
                                                             ).body.triggers]  # fmt: skip
    assert sorted(names) == ["part-0", "part-1"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({}, True),
        ({"source": ["acs.actiontrail"]}, True),
        ({"source": ["acs.kms"]}, False),
        ({"source": [{"prefix": "acs."}]}, True),
        ({"subject": [{"suffix": ":key/key-1"}]}, True),
        ({"type": [{"contains": "ApiCall"}]}, True),
        ({"data": {"eventName": [{"anything-but": ["ImportKeyMaterial"]}]}}, True),
        ({"data": {"eventName": [{"anything-but": {"prefix": "Delete"}}]}}, False),
        ({"data": {"errorCode": [{"exists": False}]}}, True),
        ({"data": {"errorCode": [{"exists": True}]}}, False),
        ({"data": {"requestParameters": {"KeyId": ["key-1", "key-2"]}}}, True),
        ({"data": {"requestParameters": {"KeyId": ["key-2"]}}}, False),
        ({"data": {"isGlobal": [False]}}, True),
        ({"data": {"isGlobal": [0]}}, False),  # false is not 0
        ({"data": {"tags": ["b"]}}, True),  # an array in the event: any element
        ({"data": {"eventName": ["DeleteKeyMaterial"]}, "source": ["acs.oss"]}, False),
    ],
)
def test_event_patterns(pattern, expected):
    event = {
        "source": "acs.actiontrail",
        "type": "actiontrail:ActionTrail:ApiCall",
        "subject": "acs:kms:cn-hangzhou:1:key/key-1",
        "data": {
            "eventName": "DeleteKeyMaterial",
            "isGlobal": False,
            "tags": ["a", "b"],
            "requestParameters": {"KeyId": "key-1"},
        },
    }
    check_pattern(pattern)
    assert matches(pattern, event) is expected


@pytest.mark.parametrize(
    "pattern",
    [
        [],
        {"source": "acs.kms"},
        {"source": []},
        {"n": [{"cidr": "10.0.0.0/24"}]},
        {"n": [{"prefix": 1}]},
        {"n": [{"exists": "yes"}]},
        {"n": [{"prefix": "a", "suffix": "b"}]},
        {"n": [{"wildcard": "*"}]},
        {"n": ["a", "b", "c", "d", "e", "f"]},  # EventBridge: at most 5 expressions per field
        {"data": {"n": [{"prefix": p} for p in "abcdef"]}},
    ],
)
def test_patterns_aliyun_local_cannot_evaluate_are_refused(pattern):
    with pytest.raises(PatternError):
        check_pattern(pattern)

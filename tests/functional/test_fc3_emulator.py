"""aliyun-local's FC 3.0 (API 2023-03-30) answered to Alibaba's own ``alibabacloud-fc20230330``
SDK, unchanged: functions with zip code, timer triggers, async invoke config, concurrency
config, Sync and Async invocations, retries and OnFailure, the runtime -> interpreter map."""

from __future__ import annotations

import base64
import io
import json
import sys
import time
import zipfile

import pytest
from alibabacloud_fc20230330 import models as fc
from alibabacloud_fc20230330.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.models import Config
from darabonba.runtime import RuntimeOptions

from aliyun_local.server import LocalServer

HANDLER = """
import json, os, time

def handler(event, context):
    doc = json.loads(event or b"{}")
    if doc.get("fail"):
        raise RuntimeError("asked to fail")
    time.sleep(doc.get("sleep", 0))
    return json.dumps({"got": doc, "request_id": context.request_id,
                       "env": os.environ.get("GREETING", ""), "pid": os.getpid()})
"""


def _zip() -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("hello/__init__.py", "")
        zf.writestr("hello/index.py", HANDLER)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def server():
    # This machine may not have python3.12: map it to the interpreter running the tests.
    with LocalServer(fc_runtimes={"python3.12": sys.executable}) as served:
        served.emulator.fc.retry_delay_seconds = 0.02
        yield served


@pytest.fixture
def client(server) -> Client:
    server.reset()
    return Client(
        Config(
            access_key_id=server.access_key_id,
            access_key_secret=server.access_key_secret,
            endpoint=server.endpoint,
            protocol="http",
            region_id=server.region,
            read_timeout=60_000,
        )
    )


def _create(client: Client, name: str = "hello", runtime: str = "python3.12") -> fc.Function:
    return client.create_function(
        fc.CreateFunctionRequest(
            body=fc.CreateFunctionInput(
                function_name=name,
                handler="hello.index.handler",
                runtime=runtime,
                code=fc.InputCodeLocation(zip_file=_zip()),
                role="acs:ram::1234567890123456:role/hello",
                log_config=fc.LogConfig(project="p", logstore="s"),
                vpc_config=fc.VPCConfig(vpc_id="vpc-1", v_switch_ids=["vsw-1"]),
                environment_variables={"GREETING": "hi"},
                memory_size=256,
                timeout=30,
            )
        )
    ).body


def _invoke(client: Client, name: str, event: dict, kind: str = "Sync"):
    return client.invoke_function_with_options(
        name,
        fc.InvokeFunctionRequest(body=json.dumps(event).encode()),
        fc.InvokeFunctionHeaders(x_fc_invocation_type=kind),
        RuntimeOptions(),
    )


def test_function_lifecycle_through_the_fc3_sdk(client):
    made = _create(client)
    assert made.function_arn == "acs:fc:cn-hangzhou:1234567890123456:functions/hello"
    assert made.role.endswith("role/hello") and made.log_config.logstore == "s"
    assert made.vpc_config.vpc_id == "vpc-1" and made.runtime == "python3.12"
    with pytest.raises(ClientException) as again:
        _create(client)
    assert again.value.status_code == 409

    client.update_function(
        "hello",
        fc.UpdateFunctionRequest(
            body=fc.UpdateFunctionInput(environment_variables={"GREETING": "hello"}, timeout=60)
        ),
    )
    got = client.get_function("hello", fc.GetFunctionRequest()).body
    assert got.environment_variables == {"GREETING": "hello"} and got.timeout == 60
    assert got.role.endswith("role/hello")  # an update leaves what it does not name
    listed = client.list_functions(fc.ListFunctionsRequest(prefix="hel")).body.functions
    assert [f.function_name for f in listed] == ["hello"]

    config = json.dumps({"cronExpression": "0 0 0 1 1 *", "enable": True, "payload": "{}"})
    client.create_trigger(
        "hello",
        fc.CreateTriggerRequest(
            body=fc.CreateTriggerInput(
                trigger_name="tick", trigger_type="timer", trigger_config=config
            )
        ),
    )
    trigger = client.get_trigger("hello", "tick").body
    assert trigger.trigger_type == "timer" and json.loads(trigger.trigger_config)["enable"]

    client.put_async_invoke_config(
        "hello",
        fc.PutAsyncInvokeConfigRequest(
            body=fc.PutAsyncInvokeConfigInput(
                max_async_retry_attempts=2,
                destination_config=fc.DestinationConfig(
                    on_failure=fc.Destination(destination="acs:mns:cn-hangzhou:1:/topics/t")
                ),
            )
        ),
    )
    async_config = client.get_async_invoke_config("hello", fc.GetAsyncInvokeConfigRequest()).body
    assert async_config.max_async_retry_attempts == 2
    assert async_config.function_arn.endswith(":functions/hello")
    client.put_concurrency_config(
        "hello",
        fc.PutConcurrencyConfigRequest(body=fc.PutConcurrencyInput(reserved_concurrency=2)),
    )
    assert client.get_concurrency_config("hello").body.reserved_concurrency == 2

    with pytest.raises(ClientException) as busy:
        client.delete_function("hello")
    assert busy.value.status_code == 409  # triggers first, as FC asks
    client.delete_trigger("hello", "tick")
    client.delete_function("hello")
    with pytest.raises(ClientException) as gone:
        client.get_function("hello", fc.GetFunctionRequest())
    assert gone.value.status_code == 404


@pytest.mark.parametrize(
    ("expression", "accepted"),
    [
        ("CRON_TZ=Asia/Shanghai 0 0 0/6 * * *", True),  # FC's documented CRON_TZ form
        ("0 0 0/6 * * *", True),
        ("CRON_TZ=Mars/Olympus 0 0 0/6 * * *", False),
        ("CRON_TZ=Asia/Shanghai @every 15m", False),
    ],
)
def test_timer_triggers_take_fc_cron_tz_form(client, expression, accepted):
    _create(client)
    config = json.dumps({"cronExpression": expression, "enable": True, "payload": "{}"})
    body = fc.CreateTriggerInput(trigger_name="tick", trigger_type="timer", trigger_config=config)
    if accepted:
        client.create_trigger("hello", fc.CreateTriggerRequest(body=body))
        got = json.loads(client.get_trigger("hello", "tick").body.trigger_config)
        assert got["cronExpression"] == expression
        return
    with pytest.raises(ClientException) as refused:
        client.create_trigger("hello", fc.CreateTriggerRequest(body=body))
    assert refused.value.status_code == 400 and "CRON_TZ" in refused.value.message


def test_sync_and_async_invocations_retries_and_on_failure(client, server):
    _create(client)
    client.put_async_invoke_config(
        "hello",
        fc.PutAsyncInvokeConfigRequest(
            body=fc.PutAsyncInvokeConfigInput(
                max_async_retry_attempts=1,
                destination_config=fc.DestinationConfig(
                    on_failure=fc.Destination(destination="acs:mns:cn-hangzhou:1:/topics/t")
                ),
            )
        ),
    )
    sync = _invoke(client, "hello", {"n": 1})
    answer = json.loads(sync.body.read())
    assert sync.status_code == 200 and answer["got"] == {"n": 1} and answer["env"] == "hi"

    queued = _invoke(client, "hello", {"fail": True}, "Async")
    assert queued.status_code == 202 and queued.headers["x-fc-request-id"]
    assert server.emulator.fc.wait_idle(60)
    (delivery,) = [d.view() for d in server.emulator.fc.deliveries]
    assert delivery["kind"] == "OnFailure" and delivery["function"] == "hello"
    assert delivery["attempts"] == 2 and "asked to fail" in delivery["error"]

    failed = _invoke(client, "hello", {"fail": True})
    assert failed.headers.get("x-fc-error-type") == "UnhandledInvocationError"


TOPIC = "acs:mns:cn-hangzhou:1234567890123456:/topics/failures/messages"
ROLE = "acs:ram::1234567890123456:role/hello"


def _statement(effect: str, action: str, resource: str = TOPIC) -> dict:
    return {"Effect": effect, "Action": [action], "Resource": [resource]}


@pytest.mark.parametrize(
    ("statements", "delivered"),
    [
        ([_statement("Allow", "mns:PublishMessage")], True),
        ([_statement("Allow", "mns:SendMessage")], True),  # FC's page accepts either
        ([_statement("Allow", "mns:*", "acs:mns:cn-hangzhou:1234567890123456:/topics/*")], True),
        ([], False),
        ([_statement("Allow", "mns:PublishMessage", TOPIC.replace("failures", "other"))], False),
        ([_statement("Allow", "fc:InvokeFunction", "*")], False),
        (
            [
                _statement("Allow", "mns:PublishMessage"),
                _statement("Deny", "mns:*", "*"),
            ],
            False,
        ),
    ],
    ids=["publish", "send", "wildcards", "no-statement", "other-topic", "other-action", "deny"],
)
def test_on_failure_is_delivered_only_when_the_role_may_publish_to_the_topic(
    client, server, statements, delivered
):
    """FC publishes a failed async invocation with the function's role: a role whose attached
    policies do not allow mns:PublishMessage (or SendMessage) on the topic gets no delivery,
    only a refusal in the function's log."""
    _create(client)
    client.put_async_invoke_config(
        "hello",
        fc.PutAsyncInvokeConfigRequest(
            body=fc.PutAsyncInvokeConfigInput(
                max_async_retry_attempts=0,
                destination_config=fc.DestinationConfig(
                    on_failure=fc.Destination(destination=TOPIC)
                ),
            )
        ),
    )
    server.attach_role_policies(ROLE, [{"Version": "1", "Statement": statements}])
    _invoke(client, "hello", {"fail": True}, "Async")
    assert server.emulator.fc.wait_idle(60)
    deliveries = [d.view() for d in server.emulator.fc.deliveries]
    refusals = [line for line in server.emulator.fc.logs if "refused" in line]
    if delivered:
        assert [d["destination"] for d in deliveries] == [TOPIC] and refusals == []
    else:
        assert deliveries == []
        (line,) = refusals
        assert TOPIC in line and ROLE in line and "mns:PublishMessage" in line


@pytest.mark.parametrize(
    ("variables", "refused"),
    [
        ({"FC_REGION": "elsewhere"}, "reserved"),
        ({"fc_custom": "x"}, "reserved"),
        ({"BIG": "x" * 4096}, "more than 4096"),
        ({"BIG": "x" * (4096 - len('{"BIG":""}'))}, None),  # exactly 4 KB
    ],
    ids=["fc-name", "fc-lowercase", "over-4kb", "exactly-4kb"],
)
def test_fc_refuses_reserved_names_and_more_than_4kb_of_environment(client, variables, refused):
    _create(client)
    request = fc.UpdateFunctionRequest(body=fc.UpdateFunctionInput(environment_variables=variables))
    if refused is None:
        client.update_function("hello", request)
        got = client.get_function("hello", fc.GetFunctionRequest()).body.environment_variables
        assert got == variables
        return
    with pytest.raises(ClientException) as update:
        client.update_function("hello", request)
    assert update.value.status_code == 400 and refused in update.value.message
    body = fc.CreateFunctionInput(
        function_name="other",
        handler="hello.index.handler",
        runtime="python3.12",
        code=fc.InputCodeLocation(zip_file=_zip()),
        environment_variables=variables,
    )
    with pytest.raises(ClientException) as create:
        client.create_function(fc.CreateFunctionRequest(body=body))
    assert create.value.status_code == 400 and refused in create.value.message
    names = [
        f.function_name for f in client.list_functions(fc.ListFunctionsRequest()).body.functions
    ]
    assert names == ["hello"]


def test_reserved_concurrency_caps_parallel_instances(client, server):
    _create(client)
    client.put_concurrency_config(
        "hello",
        fc.PutConcurrencyConfigRequest(body=fc.PutConcurrencyInput(reserved_concurrency=2)),
    )
    for _ in range(8):
        _invoke(client, "hello", {"sleep": 0.3}, "Async")
    started = time.monotonic()
    assert server.emulator.fc.wait_idle(60)
    assert server.emulator.fc.peak_concurrency[("", "hello")] == 2
    assert time.monotonic() - started >= 0.3 * 8 / 2 * 0.8  # the cap made them queue


def test_a_runtime_without_an_interpreter_fails_saying_how_to_package(client):
    _create(client, "old", runtime="python3.99")
    out = _invoke(client, "old", {})
    error = json.loads(out.body.read())
    assert out.headers.get("x-fc-error-type") == "UnhandledInvocationError"
    assert error["errorType"] == "RuntimeNotAvailable"
    assert "python3.99" in error["errorMessage"]
    assert "deploy/package.py --python-version 3.99" in error["errorMessage"]
    assert "--fc-runtime python3.99=" in error["errorMessage"]

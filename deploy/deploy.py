"""Deploy byok-keeper to Function Compute through the FC API (2021-04-06).

    python deploy/deploy.py --template template.yml --code dist/byok-keeper-fc.zip \\
        --region cn-hangzhou --account-id 1234567890123456 \\
        [--role acs:ram::ACCOUNT:role/byok-keeper] [--fc-endpoint http://127.0.0.1:PORT] \\
        [--parameter SealKmsKeyId=key-xxx ...] [--plan]

Creates or updates the service, both functions (code, handler, runtime, memory, timeout,
environment), the sweep's timer trigger and the reimport function's async configuration.
``--plan`` prints what would change and changes nothing. Credentials come from the standard
Alibaba Cloud chain. The service role is not created here (that needs the RAM API): create it
once with ``deploy/ram-policy.json`` and pass ``--role``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

SERVICE_TYPE = "Aliyun::Serverless::Service"
FUNCTION_TYPE = "Aliyun::Serverless::Function"


class DeployError(Exception):
    pass


def resolve(value: Any, params: dict[str, str]) -> Any:
    """Evaluate the template's ``Ref`` and ``Fn::Sub`` (the only intrinsics it uses)."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            name = value["Ref"]
            if name not in params:
                raise DeployError(f"unknown parameter {name}")
            return params[name]
        if set(value) == {"Fn::Sub"}:

            def repl(m: re.Match) -> str:
                if m.group(1) not in params:
                    raise DeployError(f"unknown parameter {m.group(1)}")
                return params[m.group(1)]

            return re.sub(r"\$\{([^}]+)\}", repl, value["Fn::Sub"])
        return {k: resolve(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, params) for v in value]
    return value


def desired_state(
    template: dict, overrides: dict[str, str], region: str, account_id: str
) -> dict[str, Any]:
    declared = template.get("Parameters", {})
    unknown = set(overrides) - set(declared)
    if unknown:
        raise DeployError(f"unknown --parameter {', '.join(sorted(unknown))}")
    params = {k: str(v.get("Default", "")) for k, v in declared.items()}
    params.update(overrides)
    for name, spec in declared.items():
        allowed = spec.get("AllowedValues")
        if allowed and params[name] not in allowed:
            raise DeployError(f"{name} must be one of {', '.join(allowed)}")
    params.update({"ALIYUN::Region": region, "ALIYUN::AccountId": account_id})
    services = {n: r for n, r in template["Resources"].items() if r["Type"] == SERVICE_TYPE}
    if len(services) != 1:
        raise DeployError("the template must hold exactly one service")
    ((service_name, service),) = services.items()
    props = resolve(service.get("Properties", {}), params)
    functions = {}
    for name, res in service.items():
        if isinstance(res, dict) and res.get("Type") == FUNCTION_TYPE:
            fp = resolve(res["Properties"], params)
            events = resolve(res.get("Events", {}), params)
            functions[name] = {"properties": fp, "events": events}
    return {"service": service_name, "properties": props, "functions": functions}


def _fc_client(endpoint: str | None, region: str, account_id: str):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shared"))
    from byok_keeper.dispatch import build_fc_client

    return build_fc_client(region=region, account_id=account_id, endpoint=endpoint)


def _exists(call) -> Any | None:
    from alibabacloud_tea_openapi.exceptions import ClientException

    try:
        return call()
    except ClientException as exc:
        if exc.status_code == 404:
            return None
        raise


def deploy(state: dict[str, Any], code: bytes, role: str, client, plan: bool) -> list[str]:
    from alibabacloud_fc_open20210406 import models as fc

    changes: list[str] = []
    svc = state["service"]
    log = state["properties"].get("LogConfig", {})
    log_config = fc.LogConfig(project=log.get("Project", ""), logstore=log.get("Logstore", ""))
    existing = _exists(lambda: client.get_service(svc, fc.GetServiceRequest()))
    if existing is None:
        changes.append(f"create service {svc}")
        if not plan:
            client.create_service(
                fc.CreateServiceRequest(
                    service_name=svc,
                    role=role,
                    description=state["properties"].get("Description", ""),
                    internet_access=bool(state["properties"].get("InternetAccess", True)),
                    log_config=log_config,
                )
            )
    else:
        changes.append(f"update service {svc}")
        if not plan:
            client.update_service(
                svc,
                fc.UpdateServiceRequest(
                    role=role,
                    description=state["properties"].get("Description", ""),
                    log_config=log_config,
                ),
            )

    zip_b64 = base64.b64encode(code).decode()
    checksum = str(int.from_bytes(hashlib.sha256(code).digest()[:8], "big"))
    for name, spec in state["functions"].items():
        p = spec["properties"]
        env = {k: str(v) for k, v in (p.get("EnvironmentVariables") or {}).items()}
        common = dict(
            handler=p["Handler"],
            runtime=p["Runtime"],
            memory_size=int(p["MemorySize"]),
            timeout=int(p["Timeout"]),
            environment_variables=env,
            description=p.get("Description", ""),
            code=fc.Code(zip_file=zip_b64),
        )
        current = (
            None
            if existing is None
            else _exists(lambda n=name: client.get_function(svc, n, fc.GetFunctionRequest()))
        )
        if current is None:
            changes.append(f"create function {svc}/{name} ({p['Handler']}, {p['Runtime']})")
            if not plan:
                client.create_function(svc, fc.CreateFunctionRequest(function_name=name, **common))
        else:
            same_code = current.body.code_checksum == checksum
            changes.append(f"update function {svc}/{name}" + ("" if same_code else " (new code)"))
            if not plan:
                client.update_function(svc, name, fc.UpdateFunctionRequest(**common))
        for trigger_name, event in spec["events"].items():
            if event.get("Type") != "Timer":
                raise DeployError(f"only Timer events are supported, not {event.get('Type')}")
            ep = event["Properties"]
            config = json.dumps(
                {
                    "cronExpression": ep["CronExpression"],
                    "enable": bool(ep.get("Enable", True)),
                    "payload": ep.get("Payload", ""),
                }
            )
            present = (
                None
                if current is None
                else _exists(lambda n=name, t=trigger_name: client.get_trigger(svc, n, t))
            )
            verb = "create" if present is None else "update"
            changes.append(f"{verb} timer {svc}/{name}/{trigger_name} ({ep['CronExpression']})")
            if not plan and present is None:
                client.create_trigger(
                    svc,
                    name,
                    fc.CreateTriggerRequest(
                        trigger_name=trigger_name, trigger_type="timer", trigger_config=config
                    ),
                )
            elif not plan:
                client.update_trigger(
                    svc, name, trigger_name, fc.UpdateTriggerRequest(trigger_config=config)
                )
        async_config = p.get("AsyncConfiguration")
        if async_config:
            dest = async_config.get("Destination", {})
            changes.append(
                f"put async config {svc}/{name} (retries "
                f"{async_config.get('MaxAsyncRetryAttempts', 3)})"
            )
            if not plan:
                client.put_function_async_invoke_config(
                    svc,
                    name,
                    fc.PutFunctionAsyncInvokeConfigRequest(
                        max_async_retry_attempts=int(async_config.get("MaxAsyncRetryAttempts", 3)),
                        max_async_event_age_in_seconds=int(
                            async_config.get("MaxAsyncEventAgeInSeconds", 86400)
                        ),
                        destination_config=fc.DestinationConfig(
                            on_failure=fc.Destination(destination=dest["OnFailure"])
                            if dest.get("OnFailure")
                            else None,
                            on_success=fc.Destination(destination=dest["OnSuccess"])
                            if dest.get("OnSuccess")
                            else None,
                        ),
                    ),
                )
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 2)[2],
    )
    parser.add_argument("--template", type=Path, default=Path("template.yml"))
    parser.add_argument("--code", type=Path, default=Path("dist/byok-keeper-fc.zip"))
    parser.add_argument("--region", required=True)
    parser.add_argument("--account-id", required=True)
    parser.add_argument(
        "--role", help="service role ARN (default acs:ram::ACCOUNT:role/byok-keeper)"
    )
    parser.add_argument("--fc-endpoint", help="FC endpoint with scheme (aliyun-local for drills)")
    parser.add_argument("--parameter", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--plan", action="store_true", help="print the changes, change nothing")
    args = parser.parse_args(argv)
    try:
        overrides = {}
        for item in args.parameter:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise DeployError(f"--parameter {item!r}: expected NAME=VALUE")
            overrides[name] = value
        try:
            template = yaml.safe_load(args.template.read_text())
            code = args.code.read_bytes()
        except OSError as exc:
            raise DeployError(f"cannot read {exc.filename}: {exc.strerror}") from None
        state = desired_state(template, overrides, args.region, args.account_id)
        role = args.role or f"acs:ram::{args.account_id}:role/byok-keeper"
        client = _fc_client(args.fc_endpoint, args.region, args.account_id)
        for change in deploy(state, code, role, client, args.plan):
            print(("plan: " if args.plan else "done: ") + change)
    except DeployError as exc:
        print(f"deploy.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Deploy byok-keeper to Function Compute: FC 3.0 (API 2023-03-30), or FC 2.0 with --api 2.0.

    python deploy/deploy.py --code dist/byok-keeper-fc.zip \\
        --region cn-hangzhou --account-id 1234567890123456 \\
        [--template deploy/functions.yml] [--api 3.0|2.0] [--role ARN] \\
        [--fc-endpoint http://127.0.0.1:PORT] [--parameter Name=Value ...] [--config FILE] \\
        [--pin-keys] [--plan]

What is deployed comes from deploy/functions.yml (the one source of truth; s.yaml and
deploy/terraform/ say the same). FC 3.0 (alibabacloud-fc20230330): functions
<FunctionPrefix>-sweep, <FunctionPrefix>-reimport and <FunctionPrefix>-events, each with its
role, log config, environment and VPC; the Runtime parameter's runtime (python3.12, or
python3.10 where 3.12 is still preview); the sweep's timer trigger; the events function's
EventBridge triggers (triggerType eventbridge: ActionTrail KMS calls of this account and region,
by event name, two rules as EventBridge takes at most 5 expressions per pattern field: a longer
field is refused here); the reimport and events functions' async invoke config (retries,
OnFailure); every function's reserved concurrency, its instances splitting their percent of the
KMS budgets (refused when a function has no cap or the percents add up to more than 100:
deploy/README.md, "Budgets"). FC 2.0 (alibabacloud-fc-open20210406, for accounts still on FC 2.0
services): the service <FunctionPrefix> holding functions sweep, reimport and events, runtime
python3.10 (the newest FC 2.0 lists), the same triggers (FC 2.0 documents the same
EventBridgeTriggerConfig) and async config, and the cap as each function's on-demand
maximumInstanceCount (PutFunctionOnDemandConfig, qualifier LATEST).

EventBridge must be activated in the account, with its service-linked role
AliyunServiceRoleForEventBridgeSendToFC (deploy/README.md); each trigger creates its rule on the
default bus.

Targets (many accounts and regions): --config FILE is the agent's settings file with
[[targets]]. It is checked with the agent's own parsers before anything is created (a bad file:
one line, exit 2), added to the code package as byok-keeper.toml, and named by BYOK_CONFIG on
the sweep and reimport functions (the events function handles its own account only); the
handlers read it from the code package, not from their working directory. Its
role_arns fill the AssumeTargetRoles statement of deploy/ram-policy.json (sts:AssumeRole on
exactly those roles; the statement is left out without any).

Creates what is missing and updates what exists, so re-running is safe. --plan prints the
changes and the role's rendered policy (one line per RAM policy document, each at most 6,144
characters), and changes nothing. --pin-keys grants GetParametersForImport and
ImportKeyMaterial on exactly the keys the vault holds instead of key/* (re-render after every
enrollment; docs/SECURITY.md). Bad input (a --code file that is not the code package, no
credentials, an environment FC would refuse) is one line and exit 2, before FC is called.
Credentials come from the standard Alibaba Cloud chain. The RAM role is not created here (that
needs the RAM API): create it once with the policy --plan prints (or deploy/terraform/) and pass
its ARN as --role (default acs:ram::ACCOUNT:role/byok-keeper).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # rampolicy, beside this script
from rampolicy import PolicyError, compact, key_arn, pin_imports, split_policy

SOURCE = Path(__file__).resolve().with_name("functions.yml")
FC2_RUNTIME = "python3.10"  # FC 2.0's runtime list stops there
APIS = ("3.0", "2.0")


class DeployError(Exception):
    pass


def substitute(value: Any, params: dict[str, str]) -> Any:
    """Replace ``${Name}`` in every string of ``value`` with the parameter's value."""
    if isinstance(value, dict):
        return {k: substitute(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, params) for v in value]
    if not isinstance(value, str):
        return value

    def repl(m: re.Match) -> str:
        if m.group(1) not in params:
            raise DeployError(f"unknown parameter {m.group(1)}")
        return params[m.group(1)]

    return re.sub(r"\$\{([A-Za-z]+)\}", repl, value)


def _int(value: Any, what: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise DeployError(f"{what} must be an integer, not {value!r}") from None
    if not low <= number <= high:
        raise DeployError(f"{what} must be between {low} and {high}")
    return number


def parameters(
    source: dict, overrides: dict[str, str], region: str, account_id: str
) -> dict[str, str]:
    declared = source.get("Parameters", {})
    unknown = set(overrides) - set(declared)
    if unknown:
        raise DeployError(f"unknown --parameter {', '.join(sorted(unknown))}")
    params = {"Region": region, "AccountId": account_id}
    params.update({k: str(v.get("Default", "")) for k, v in declared.items()})
    params.update(overrides)
    # Defaults may refer to Region/AccountId (the role ARN); one more pass resolves them.
    params = {k: substitute(v, params) for k, v in params.items()}
    for name, spec in declared.items():
        allowed = spec.get("AllowedValues")
        if allowed and params[name] not in allowed:
            raise DeployError(f"{name} must be one of {', '.join(allowed)}")
    return params


# The pkcs11 sealer needs a token this package cannot carry: a local token does not exist in FC,
# and a network HSM needs the vendor's PKCS#11 library (and its client) in a layer and the
# function in the HSM's VPC (docs/CUSTODY.md). FC keeps the KMS sealer.
NO_PKCS11 = (
    "FC cannot use the pkcs11 sealer as deployed here (no token, no vendor PKCS#11 library in "
    "the package): keep SealKmsKeyId for FC, use pkcs11 with the daemon, CLI or CronJob, or see "
    "docs/CUSTODY.md for the Cloud HSM pattern"
)
PKCS11_ENV = ("BYOK_SEAL_PKCS11", "BYOK_PKCS11_PIN")

CONFIG_NAME = "byok-keeper.toml"  # the --config file's name in the package and in BYOK_CONFIG
TARGETS_SID = "AssumeTargetRoles"
TARGETS_PLACEHOLDER = "${target_role_arns}"


def check_config(path: Path) -> tuple[bytes, list[str]]:
    """The settings file's bytes and its targets' role ARNs (each once, in file order), checked
    by the agent's own parsers (settings and ``[[targets]]``): a bad file is a ``DeployError``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shared"))
    from byok_keeper.core.settings import config_section, load_settings
    from byok_keeper.core.targets import load_targets
    from byok_keeper.domain.errors import ConfigError

    try:
        text = path.read_bytes()
        if config_section(path).get("seal_pkcs11"):
            raise DeployError(f"--config {path}: seal_pkcs11: {NO_PKCS11}")
        load_settings(env={}, config_path=str(path))
        targets = load_targets(str(path), env={})
    except OSError as exc:
        raise DeployError(f"--config: cannot read {path}: {exc.strerror}") from None
    except ConfigError as exc:
        raise DeployError(f"--config {path}: {exc}") from None
    return text, list(dict.fromkeys(t.role_arn for t in targets if t.role_arn))


def render_policy(template: str, values: dict[str, str], target_role_arns: list[str]) -> dict:
    """deploy/ram-policy.json filled as Terraform's ``templatefile`` fills it (``${name}`` from
    ``values``); the ``AssumeTargetRoles`` statement names exactly ``target_role_arns`` and is
    left out without any: no targets, no ``sts:AssumeRole`` at all."""
    text = template.replace(TARGETS_PLACEHOLDER, '","'.join(target_role_arns))

    def repl(m: re.Match) -> str:
        if m.group(1) not in values:
            raise DeployError(f"ram-policy.json: no value for ${{{m.group(1)}}}")
        return values[m.group(1)]

    policy = json.loads(re.sub(r"\$\{(\w+)\}", repl, text))
    policy["Statement"] = [
        s for s in policy["Statement"] if s.get("Sid") != TARGETS_SID or target_role_arns
    ]
    return policy


NO_CREDENTIALS = (
    "no Alibaba Cloud credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID and "
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET, or an aliyun CLI profile, or run with an instance role"
)


def check_code(code: bytes, path: Path, state: dict[str, Any]) -> None:
    """The code package is a zip holding every planned handler's module (``make package``
    builds one); anything else is a ``DeployError`` before FC is called."""
    try:
        with zipfile.ZipFile(io.BytesIO(code)) as zf:
            names = set(zf.namelist())
    except zipfile.BadZipFile:
        raise DeployError(f"--code {path} is not a zip archive (make package builds one)") from None
    for fn in state["functions"].values():
        module = fn["handler"].rsplit(".", 1)[0].replace(".", "/") + ".py"
        if module not in names:
            raise DeployError(f"--code {path} holds no {module} for {fn['handler']}")


def with_config(code: bytes, config: bytes) -> bytes:
    """The code package with the settings file added at its root as ``CONFIG_NAME``, beside
    ``byok_keeper/``: the FC handlers resolve the relative ``BYOK_CONFIG=byok-keeper.toml``
    against that directory, whatever FC's working directory
    (``byok_keeper.runtimes.fc.anchor_config``)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(code)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename != CONFIG_NAME:
                dst.writestr(info, src.read(info))
        entry = zipfile.ZipInfo(CONFIG_NAME, date_time=(1980, 1, 1, 0, 0, 0))
        entry.external_attr = 0o644 << 16
        entry.compress_type = zipfile.ZIP_DEFLATED
        dst.writestr(entry, config)
    return out.getvalue()


def check_budgets(functions: dict[str, dict[str, Any]]) -> None:
    """Every instance of every function that may run at once stays inside the configured share
    of the KMS quotas: each function is capped (reserved concurrency), its instances split
    ``BYOK_BUDGET_PERCENT`` of the share (``BYOK_BUDGET_INSTANCES`` = its cap), and the percents
    add up to at most 100 (deploy/README.md, "Budgets"). Raises ``DeployError``."""
    total = 0
    for role, fn in functions.items():
        env, cap = fn["environment"], fn["reserved_concurrency"]
        if cap is None:
            raise DeployError(f"{role}: no ReservedConcurrency, so its KMS budget multiplies")
        if env.get("BYOK_BUDGET_INSTANCES") != str(cap):
            raise DeployError(f"{role}: BYOK_BUDGET_INSTANCES must be its ReservedConcurrency")
        total += _int(env.get("BYOK_BUDGET_PERCENT"), f"{role} budget percent", 1, 100)
    if total > 100:
        raise DeployError(f"the functions' budget percents add up to {total}, more than 100")


MAX_ENVIRONMENT_BYTES = 4096  # FC: all of a function's variables together (docs/FIDELITY.md)


def check_environment(functions: dict[str, dict[str, Any]]) -> None:
    """FC reserves variable names starting ``FC_`` and takes at most 4 KB of variables per
    function, counted here as the compact JSON map the API carries (the stricter reading: FC's
    page does not say how it counts). Raises ``DeployError`` before anything is created."""
    for role, fn in functions.items():
        env = fn["environment"]
        reserved = sorted(k for k in env if k.upper().startswith("FC_"))
        if reserved:
            raise DeployError(f"{role}: environment names starting FC_ are FC's: {reserved[0]}")
        size = len(json.dumps(env, separators=(",", ":")).encode())
        if size > MAX_ENVIRONMENT_BYTES:
            raise DeployError(
                f"{role}: environment is {size} bytes, FC takes at most {MAX_ENVIRONMENT_BYTES}"
            )


TRIGGER_TYPES = ("timer", "eventbridge")
# EventBridge's limits page: at most 5 expressions per field of an event pattern (the ROS
# ALIYUN::EventBridge::Rule page: "up to five values"); a longer list is split over triggers.
MAX_EXPRESSIONS_PER_FIELD = 5


def _check_pattern_fields(where: str, pattern: dict[str, Any], path: str = "") -> None:
    """Refuse a pattern field EventBridge would refuse: more than 5 expressions in its list."""
    for name, rule in pattern.items():
        field = f"{path}.{name}" if path else name
        if isinstance(rule, dict):
            _check_pattern_fields(where, rule, field)
        elif isinstance(rule, list) and len(rule) > MAX_EXPRESSIONS_PER_FIELD:
            raise DeployError(
                f"{where}: EventPattern field {field} has {len(rule)} expressions; EventBridge "
                f"takes at most {MAX_EXPRESSIONS_PER_FIELD} per field (split it over triggers)"
            )


def async_invocation_type(asynchronous: bool, api: str) -> bool:
    """The ``asyncInvocationType`` that asks FC for an asynchronous invocation (its retries and
    OnFailure) or a synchronous one. Disputed (docs/FIDELITY.md, "Events"): FC 3.0's current
    EventBridgeTriggerConfig page and SDK 4.8.3 read ``true`` as synchronous, FC 2.0's page as
    asynchronous. Each API gets the value its own documentation gives."""
    return asynchronous if api == "2.0" else not asynchronous


def _trigger(role: str, name: str, t: dict[str, Any], api: str = "3.0") -> dict[str, Any]:
    """A trigger of functions.yml in the plan's shape: a timer (cron, payload) or an EventBridge
    trigger (the event pattern as compact JSON, whether the invocation is asynchronous and the
    ``asyncInvocationType`` that says so to ``api``, the event source type)."""
    kind = t.get("Type")
    if kind not in TRIGGER_TYPES:
        raise DeployError(f"{role} trigger {name}: Type must be one of {', '.join(TRIGGER_TYPES)}")
    if kind == "timer":
        return {
            "type": kind,
            "cron": t["CronExpression"],
            "enable": bool(t.get("Enable", True)),
            "payload": t.get("Payload", ""),
        }
    pattern = t.get("EventPattern")
    if not isinstance(pattern, dict) or not pattern:
        raise DeployError(f"{role} trigger {name}: EventPattern must be a non-empty mapping")
    _check_pattern_fields(f"{role} trigger {name}", pattern)
    asynchronous = bool(t.get("AsyncInvocation", True))
    return {
        "type": kind,
        "enable": bool(t.get("Enable", True)),
        "async": asynchronous,
        "async_invocation_type": async_invocation_type(asynchronous, api),
        "source_type": str(t.get("EventSourceType", "Default")),
        "pattern": json.dumps(pattern, separators=(",", ":")),
    }


def desired_state(
    source: dict,
    overrides: dict[str, str],
    region: str,
    account_id: str,
    api: str = "3.0",
    target_role_arns: list[str] | None = None,
) -> dict[str, Any]:
    """What should exist: ``{"api", "service", "functions": {role: {...}}, "policy"}``.

    ``role`` is ``sweep``, ``reimport`` or ``events``; each function carries its FC name,
    handler, runtime, memory, timeout, RAM role, log and VPC config, environment, triggers (timer or
    eventbridge), async config and reserved concurrency. ``policy`` is the role's policy,
    rendered (``render_policy``) with ``sts:AssumeRole`` on ``target_role_arns``. Raises
    ``DeployError``.
    """
    if api not in APIS:
        raise DeployError(f"--api must be one of {', '.join(APIS)}")
    params = parameters(source, overrides, region, account_id)
    common = substitute(source["Common"], params)
    vpc = common.get("VpcConfig") or {}
    vpc_config = None
    if vpc.get("VpcId"):
        vpc_config = {
            "vpc_id": vpc["VpcId"],
            "vswitch_ids": [v for v in vpc.get("VSwitchIds", "").split(",") if v],
            "security_group_id": vpc.get("SecurityGroupId", ""),
        }
    prefix = params["FunctionPrefix"]
    functions: dict[str, Any] = {}
    for role, raw in source["Functions"].items():
        spec = substitute(raw, params)
        env = {
            k: str(v) for k, v in {**common["Environment"], **spec.get("Environment", {})}.items()
        }
        async_config = spec.get("AsyncInvokeConfig")
        concurrency = spec.get("ReservedConcurrency")
        functions[role] = {
            "name": spec["Name"],
            "handler": spec["Handler"],
            "runtime": common["Runtime"],
            "memory": _int(spec["MemorySize"], f"{role} MemorySize", 128, 32768),
            "timeout": _int(spec["Timeout"], f"{role} Timeout", 1, 86400),
            "description": spec.get("Description", ""),
            "role": common["Role"],
            "internet_access": bool(common.get("InternetAccess", True)),
            "log_config": {
                "project": common["LogConfig"]["Project"],
                "logstore": common["LogConfig"]["Logstore"],
            },
            "vpc_config": vpc_config,
            "environment": env,
            "triggers": {
                name: _trigger(role, name, t, api)
                for name, t in (spec.get("Triggers") or {}).items()
            },
            "async": None
            if not async_config
            else {
                "retries": _int(async_config["MaxAsyncRetryAttempts"], "AsyncRetries", 0, 8),
                "max_age": _int(async_config["MaxAsyncEventAgeInSeconds"], "event age", 1, 86400),
                "on_failure": async_config.get("OnFailure", ""),
            },
            "reserved_concurrency": None
            if concurrency is None
            else _int(concurrency, f"{role} ReservedConcurrency", 1, 1000),
        }
    check_budgets(functions)
    if api == "2.0":
        for role, fn in functions.items():
            fn["name"] = role
            fn["runtime"] = FC2_RUNTIME
            fn["environment"].update(BYOK_FC_API="2.0", BYOK_FC_SERVICE=prefix)
    check_environment(functions)
    state = {
        "api": api,
        "service": prefix if api == "2.0" else None,
        "functions": functions,
        "policy": render_policy(
            (SOURCE.parent / source.get("Policy", "ram-policy.json")).read_text(),
            {
                "region": region,
                "account_id": account_id,
                "seal_kms_key_id": params["SealKmsKeyId"],
                "log_project": params["LogProject"],
                "log_store": params["LogStore"],
                "function_prefix": prefix,
                "failure_topic": params["FailureTopic"],
            },
            list(target_role_arns or []),
        ),
        "parameters": params,
    }
    return with_policies(state)


def with_policies(state: dict[str, Any], pinned_key_ids: list[str] | None = None) -> dict:
    """``state`` with ``policies``: its policy as documents RAM accepts (``split_policy``), and
    with ``pinned_key_ids`` (``--pin-keys``) GetParametersForImport and ImportKeyMaterial
    granted on exactly those keys of the deployment's account and region (``pin_imports``).
    Raises ``DeployError``."""
    policy = state["policy"]
    if pinned_key_ids is not None:
        where = (state["parameters"]["Region"], state["parameters"]["AccountId"])
        policy = pin_imports(policy, [key_arn(*where, k) for k in pinned_key_ids])
    try:
        return {**state, "policy": policy, "policies": split_policy(policy)}
    except PolicyError as exc:
        raise DeployError(f"ram-policy.json: {exc}") from None


def enrolled_key_ids(params: dict[str, str], region: str) -> list[str]:
    """The vault's inventory (the ``VaultUri`` parameter), listed as the agent lists it, for
    ``--pin-keys``: nothing is unsealed. Raises ``DeployError``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shared"))
    from byok_keeper.core.factory import build_gateway
    from byok_keeper.core.settings import load_settings
    from byok_keeper.domain.errors import ByokError
    from byok_keeper.gateway.kms import READ_ONLY
    from byok_keeper.vault import build_store
    from byok_keeper.vault.registry import needs_kms

    uri = params["VaultUri"]
    try:
        settings = load_settings(
            {"vault": uri, "region": region, "kms_endpoint": params["KmsEndpoint"] or None},
            env={},
        )
        gateway = build_gateway(settings, READ_ONLY) if needs_kms(uri) else None
        return sorted(build_store(uri, gateway).list_key_ids())
    except ByokError as exc:
        raise DeployError(f"--pin-keys: reading the vault {uri}: {exc}") from None


def _fc_client(endpoint: str | None, region: str, account_id: str, api: str):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shared"))
    from byok_keeper.core.dispatch import build_fc_client

    return build_fc_client(region=region, account_id=account_id, endpoint=endpoint, api=api)


def _exists(call) -> Any | None:
    from alibabacloud_tea_openapi.exceptions import ClientException

    try:
        return call()
    except ClientException as exc:
        if exc.status_code == 404:
            return None
        raise


def _trigger_config(trigger: dict[str, Any]) -> str:
    """A trigger's triggerConfig, the same JSON for FC 3.0 and FC 2.0 (both APIs document the
    timer config and EventBridgeTriggerConfig alike; docs/FIDELITY.md, Events)."""
    if trigger["type"] == "timer":
        return json.dumps(
            {
                "cronExpression": trigger["cron"],
                "enable": trigger["enable"],
                "payload": trigger["payload"],
            }
        )
    return json.dumps(
        {
            "triggerEnable": trigger["enable"],
            "asyncInvocationType": trigger["async_invocation_type"],
            "eventSourceConfig": {"eventSourceType": trigger["source_type"]},
            "eventRuleFilterPattern": trigger["pattern"],
        }
    )


def _trigger_label(trigger: dict[str, Any]) -> str:
    """How a change line names a trigger: ``timer NAME (cron)`` or ``eventbridge trigger ...``."""
    if trigger["type"] == "timer":
        return f"timer {{}} ({trigger['cron']})"
    names = json.loads(trigger["pattern"]).get("data", {}).get("eventName", [])
    return f"eventbridge trigger {{}} ({', '.join(names) or 'pattern'})"


def deploy_v3(state: dict[str, Any], code: bytes, client, plan: bool) -> list[str]:
    """Create or update the FC 3.0 functions, triggers, async and concurrency configs."""
    from alibabacloud_fc20230330 import models as fc

    changes: list[str] = []
    zip_b64 = base64.b64encode(code).decode()
    for fn in state["functions"].values():
        name = fn["name"]
        vpc = fn["vpc_config"]
        settings = dict(
            handler=fn["handler"],
            runtime=fn["runtime"],
            memory_size=fn["memory"],
            timeout=fn["timeout"],
            description=fn["description"],
            role=fn["role"],
            internet_access=fn["internet_access"],
            environment_variables=fn["environment"],
            log_config=fc.LogConfig(**fn["log_config"]),
            vpc_config=fc.VPCConfig(
                vpc_id=vpc["vpc_id"],
                v_switch_ids=vpc["vswitch_ids"],
                security_group_id=vpc["security_group_id"],
            )
            if vpc
            else None,
            code=fc.InputCodeLocation(zip_file=zip_b64),
        )
        current = _exists(lambda n=name: client.get_function(n, fc.GetFunctionRequest()))
        if current is None:
            changes.append(f"create function {name} ({fn['handler']}, {fn['runtime']})")
            if not plan:
                body = fc.CreateFunctionInput(function_name=name, **settings)
                client.create_function(fc.CreateFunctionRequest(body=body))
        else:
            changes.append(f"update function {name} ({fn['handler']}, {fn['runtime']})")
            if not plan:
                body = fc.UpdateFunctionInput(**settings)
                client.update_function(name, fc.UpdateFunctionRequest(body=body))
        for trigger_name, trigger in fn["triggers"].items():
            config = _trigger_config(trigger)
            present = (
                None
                if current is None
                else _exists(lambda n=name, t=trigger_name: client.get_trigger(n, t))
            )
            verb = "create" if present is None else "update"
            changes.append(f"{verb} " + _trigger_label(trigger).format(f"{name}/{trigger_name}"))
            if plan:
                continue
            if present is None:
                body = fc.CreateTriggerInput(
                    trigger_name=trigger_name,
                    trigger_type=trigger["type"],
                    trigger_config=config,
                    qualifier="LATEST",
                )
                client.create_trigger(name, fc.CreateTriggerRequest(body=body))
            else:
                body = fc.UpdateTriggerInput(trigger_config=config)
                client.update_trigger(name, trigger_name, fc.UpdateTriggerRequest(body=body))
        if fn["async"]:
            a = fn["async"]
            changes.append(
                f"put async config {name} (retries {a['retries']}, on failure {a['on_failure']})"
            )
            if not plan:
                destination = fc.DestinationConfig(
                    on_failure=fc.Destination(destination=a["on_failure"])
                    if a["on_failure"]
                    else None
                )
                body = fc.PutAsyncInvokeConfigInput(
                    max_async_retry_attempts=a["retries"],
                    max_async_event_age_in_seconds=a["max_age"],
                    destination_config=destination,
                )
                client.put_async_invoke_config(name, fc.PutAsyncInvokeConfigRequest(body=body))
        if fn["reserved_concurrency"] is not None:
            cap = fn["reserved_concurrency"]
            changes.append(f"put concurrency {name} (reserved {cap})")
            if not plan:
                body = fc.PutConcurrencyInput(reserved_concurrency=cap)
                client.put_concurrency_config(name, fc.PutConcurrencyConfigRequest(body=body))
    return changes


def deploy_v2(state: dict[str, Any], code: bytes, client, plan: bool) -> list[str]:
    """Create or update the FC 2.0 service, its functions, triggers and async config."""
    from alibabacloud_fc_open20210406 import models as fc

    changes: list[str] = []
    svc = state["service"]
    first = next(iter(state["functions"].values()))
    log_config = fc.LogConfig(**first["log_config"])
    existing = _exists(lambda: client.get_service(svc, fc.GetServiceRequest()))
    changes.append(f"{'create' if existing is None else 'update'} service {svc}")
    if not plan and existing is None:
        client.create_service(
            fc.CreateServiceRequest(
                service_name=svc,
                role=first["role"],
                description="byok-keeper sweep and reimport",
                internet_access=first["internet_access"],
                log_config=log_config,
            )
        )
    elif not plan:
        client.update_service(
            svc, fc.UpdateServiceRequest(role=first["role"], log_config=log_config)
        )
    zip_b64 = base64.b64encode(code).decode()
    for name, fn in state["functions"].items():
        common = dict(
            handler=fn["handler"],
            runtime=fn["runtime"],
            memory_size=fn["memory"],
            timeout=fn["timeout"],
            environment_variables=fn["environment"],
            description=fn["description"],
            code=fc.Code(zip_file=zip_b64),
        )
        current = (
            None
            if existing is None
            else _exists(lambda n=name: client.get_function(svc, n, fc.GetFunctionRequest()))
        )
        if current is None:
            changes.append(f"create function {svc}/{name} ({fn['handler']}, {fn['runtime']})")
            if not plan:
                client.create_function(svc, fc.CreateFunctionRequest(function_name=name, **common))
        else:
            changes.append(f"update function {svc}/{name} ({fn['handler']}, {fn['runtime']})")
            if not plan:
                client.update_function(svc, name, fc.UpdateFunctionRequest(**common))
        for trigger_name, trigger in fn["triggers"].items():
            config = _trigger_config(trigger)
            present = (
                None
                if current is None
                else _exists(lambda n=name, t=trigger_name: client.get_trigger(svc, n, t))
            )
            verb = "create" if present is None else "update"
            label = _trigger_label(trigger).format(f"{svc}/{name}/{trigger_name}")
            changes.append(f"{verb} {label}")
            if not plan and present is None:
                client.create_trigger(
                    svc,
                    name,
                    fc.CreateTriggerRequest(
                        trigger_name=trigger_name,
                        trigger_type=trigger["type"],
                        trigger_config=config,
                    ),
                )
            elif not plan:
                client.update_trigger(
                    svc, name, trigger_name, fc.UpdateTriggerRequest(trigger_config=config)
                )
        if fn["async"]:
            a = fn["async"]
            changes.append(f"put async config {svc}/{name} (retries {a['retries']})")
            if not plan:
                client.put_function_async_invoke_config(
                    svc,
                    name,
                    fc.PutFunctionAsyncInvokeConfigRequest(
                        max_async_retry_attempts=a["retries"],
                        max_async_event_age_in_seconds=a["max_age"],
                        destination_config=fc.DestinationConfig(
                            on_failure=fc.Destination(destination=a["on_failure"])
                            if a["on_failure"]
                            else None
                        ),
                    ),
                )
        if fn["reserved_concurrency"] is not None:
            cap = fn["reserved_concurrency"]
            changes.append(f"put on-demand config {svc}/{name} (maximum instances {cap})")
            if not plan:
                client.put_function_on_demand_config(
                    svc,
                    name,
                    fc.PutFunctionOnDemandConfigRequest(
                        qualifier="LATEST", maximum_instance_count=cap
                    ),
                )
    return changes


def _print_policy(state: dict[str, Any], plan: bool) -> None:
    """The role's policy is not applied here (no RAM API): --plan prints each document RAM
    takes (one line each, compact JSON: at most 6,144 characters), a deploy names the
    AssumeRole grant the role must carry."""
    role = next(iter(state["functions"].values()))["role"]
    arns = [r for s in state["policy"]["Statement"] if "sts:AssumeRole" in s["Action"]
            for r in s["Resource"]]  # fmt: skip
    documents = state["policies"]
    if plan:
        for i, document in enumerate(documents, 1):
            which = "policy" if len(documents) == 1 else f"policy {i}/{len(documents)}"
            print(f"plan: {which} of {role} (not applied here): {compact(document)}")
    elif len(documents) > 1:
        print(f"note: {role} needs {len(documents)} policy documents (--plan prints them)")
    if arns and not plan:
        print(f"note: {role} must allow sts:AssumeRole on {', '.join(arns)} (--plan prints it)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 2)[2],
    )
    parser.add_argument(
        "--template", type=Path, default=SOURCE, help=f"default {SOURCE.name} next to this script"
    )
    parser.add_argument("--api", choices=APIS, default="3.0", help="FC API (default 3.0)")
    parser.add_argument("--code", type=Path, default=Path("dist/byok-keeper-fc.zip"))
    parser.add_argument("--region", required=True)
    parser.add_argument("--account-id", required=True)
    parser.add_argument("--role", help="RAM role ARN (the Role parameter; default byok-keeper)")
    parser.add_argument("--fc-endpoint", help="FC endpoint with scheme (aliyun-local for drills)")
    parser.add_argument("--parameter", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="settings file with [[targets]] (the agent's --config): checked first, shipped in "
        f"the package as {CONFIG_NAME}, BYOK_CONFIG of sweep and reimport; its role_arns are "
        "the policy's sts:AssumeRole resources",
    )
    parser.add_argument(
        "--pin-keys",
        action="store_true",
        help="grant GetParametersForImport and ImportKeyMaterial on exactly the keys the vault "
        "(VaultUri) holds, not on key/*; re-render and re-apply after every enrollment "
        "(docs/SECURITY.md)",
    )
    parser.add_argument("--plan", action="store_true", help="print the changes, change nothing")
    args = parser.parse_args(argv)
    try:
        overrides = {}
        for item in args.parameter:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise DeployError(f"--parameter {item!r}: expected NAME=VALUE")
            overrides[name] = value
        if args.role:
            overrides["Role"] = args.role
        if "ConfigFile" in overrides:
            raise DeployError("ConfigFile is set by --config FILE, not by --parameter")
        config, arns = (None, []) if args.config is None else check_config(args.config)
        if config is not None:
            overrides["ConfigFile"] = CONFIG_NAME
        try:
            source = yaml.safe_load(args.template.read_text())
            code = args.code.read_bytes()
        except OSError as exc:
            raise DeployError(f"cannot read {exc.filename}: {exc.strerror}") from None
        if not isinstance(source, dict) or "Functions" not in source:
            raise DeployError(f"{args.template} is not a byok-keeper functions file")
        state = desired_state(source, overrides, args.region, args.account_id, args.api, arns)
        for fn in state["functions"].values():
            if any(fn["environment"].get(name) for name in PKCS11_ENV):
                raise DeployError(f"{fn['name']}: {'/'.join(PKCS11_ENV)}: {NO_PKCS11}")
        check_code(code, args.code, state)
        if args.pin_keys:
            state = with_policies(state, enrolled_key_ids(state["parameters"], args.region))
        if config is not None:
            code = with_config(code, config)
        client = _fc_client(args.fc_endpoint, args.region, args.account_id, args.api)
        run = deploy_v3 if args.api == "3.0" else deploy_v2
        try:
            for change in run(state, code, client, args.plan):
                print(("plan: " if args.plan else "done: ") + change)
            _print_policy(state, args.plan)
        except Exception as exc:
            from alibabacloud_tea_openapi.exceptions import ClientException

            from byok_keeper.gateway.kms.errors import is_credential_error

            if is_credential_error(exc):  # the chain's own text runs to several screens
                raise DeployError(NO_CREDENTIALS) from None
            if not isinstance(exc, ClientException):
                raise
            # e.g. an eventbridge trigger where EventBridge is not activated or lacks its
            # service-linked role (deploy/README.md): one line, what was done stays done.
            print(
                f"deploy.py: error: FC refused the next change: {exc.code}: {exc.message} "
                "(the changes printed above are done; re-running is safe)",
                file=sys.stderr,
            )
            return 1
    except DeployError as exc:
        print(f"deploy.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

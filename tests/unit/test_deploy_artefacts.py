"""One source of truth: deploy.py's plan (from deploy/functions.yml), s.yaml (Serverless Devs,
fc3), deploy/terraform/ (alicloud fcv3 resources) and template.yml (ROS, rendered from
functions.yml by deploy/ros.py; tests/unit/ros_template.py reads it back) must agree on function
names, handlers, runtime, environment, schedule, the events function's EventBridge rule, async
retries, concurrency and the role's policy. And the policy (deploy/ram-policy.json) is least
privilege.

Terraform is parsed with python-hcl2; its expressions are evaluated only as far as this module
uses them (variables, locals, string interpolation, jsonencode of the timer and of the
EventBridge trigger, the functions' merge); anything else fails the test rather than pass
unevaluated."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from byok_keeper.gateway.kms import FORBIDDEN, SWEEP
from byok_keeper.planning.events import EVENT_NAMES, SOURCES, TYPES
from tests.unit.ros_template import Ros, from_ros

ROOT = Path(__file__).resolve().parents[2]
REGION, ACCOUNT = "cn-hangzhou", "1234567890123456"

_spec = importlib.util.spec_from_file_location("deploy_script", ROOT / "deploy" / "deploy.py")
deploy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(deploy)
SOURCE = yaml.safe_load((ROOT / "deploy" / "functions.yml").read_text())
POLICY_TEXT = (ROOT / "deploy" / "ram-policy.json").read_text()


def _plan(api: str = "3.0") -> dict[str, Any]:
    return deploy.desired_state(SOURCE, {}, REGION, ACCOUNT, api)


def _canonical(fn: dict[str, Any]) -> dict[str, Any]:
    """The facts all three artefacts must agree on, in one shape."""
    fields = ("name", "handler", "runtime", "memory", "timeout", "role", "log", "environment",
              "schedule", "events", "async", "concurrency")  # fmt: skip
    return {k: fn[k] for k in fields}


def from_plan() -> dict[str, dict[str, Any]]:
    out = {}
    for role, fn in _plan()["functions"].items():
        out[role] = _canonical(
            {
                **fn,
                "log": (fn["log_config"]["project"], fn["log_config"]["logstore"]),
                "schedule": {
                    n: t["cron"] for n, t in fn["triggers"].items() if t["type"] == "timer"
                },
                "events": {
                    n: (
                        json.loads(t["pattern"]),
                        t["async_invocation_type"],
                        t["enable"],
                        t["source_type"],
                    )
                    for n, t in fn["triggers"].items()
                    if t["type"] == "eventbridge"
                },
                "async": None
                if fn["async"] is None
                else (fn["async"]["retries"], fn["async"]["max_age"], fn["async"]["on_failure"]),
                "concurrency": fn["reserved_concurrency"],
            }
        )
    return out


# ---- s.yaml -----------------------------------------------------------------------------------


def from_s_yaml() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((ROOT / "s.yaml").read_text())
    variables = {k: v for k, v in doc["vars"].items() if not isinstance(v, dict)}
    variables["accountId"] = ACCOUNT  # ${config('AccountID')}: the deploying account
    assert doc["vars"]["accountId"] == "${config('AccountID')}"

    def resolve(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if not isinstance(value, str):
            return value
        whole = re.fullmatch(r"\$\{vars\.(\w+)\}", value)
        if whole:
            return variables[whole.group(1)]
        out = re.sub(r"\$\{vars\.(\w+)\}", lambda m: str(variables[m.group(1)]), value)
        assert "${" not in out, f"s.yaml: unresolved {out}"
        return out

    out = {}
    for role, resource in doc["resources"].items():
        assert resource["component"] == "fc3"
        p = resolve(resource["props"])
        assert p["region"] == REGION and p["code"] == "./dist/byok-keeper-fc.zip"
        a = p.get("asyncInvokeConfig")
        out[role] = _canonical(
            {
                "name": p["functionName"],
                "handler": p["handler"],
                "runtime": p["runtime"],
                "memory": p["memorySize"],
                "timeout": p["timeout"],
                "role": p["role"],
                "log": (p["logConfig"]["project"], p["logConfig"]["logstore"]),
                "environment": {k: str(v) for k, v in p["environmentVariables"].items()},
                "schedule": {
                    t["triggerName"]: t["triggerConfig"]["cronExpression"]
                    for t in p.get("triggers", [])
                    if t["triggerType"] == "timer"
                },
                "events": {
                    t["triggerName"]: (
                        json.loads(t["triggerConfig"]["eventRuleFilterPattern"]),
                        t["triggerConfig"]["asyncInvocationType"],
                        t["triggerConfig"]["triggerEnable"],
                        t["triggerConfig"]["eventSourceConfig"]["eventSourceType"],
                    )
                    for t in p.get("triggers", [])
                    if t["triggerType"] == "eventbridge"
                },
                "async": None
                if a is None
                else (
                    a["maxAsyncRetryAttempts"],
                    a["maxAsyncEventAgeInSeconds"],
                    a["destinationConfig"]["onFailure"]["destination"],
                ),
                "concurrency": (p.get("concurrencyConfig") or {}).get("reservedConcurrency"),
            }
        )
    return out


# ---- Terraform --------------------------------------------------------------------------------


class Terraform:
    def __init__(self, directory: Path) -> None:
        self.variables: dict[str, Any] = {}
        self.locals: dict[str, Any] = {}
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        for path in sorted(directory.glob("*.tf")):
            doc = hcl2.loads(path.read_text())
            for block in doc.get("variable", []):
                for name, body in block.items():
                    self.variables[name.strip('"')] = self.literal(body.get("default"))
            for block in doc.get("resource", []):
                for kind, named in block.items():
                    for name, body in named.items():
                        self.resources[(kind.strip('"'), name.strip('"'))] = body
            for block in doc.get("locals", []):
                self.locals.update({k: v for k, v in block.items() if not k.startswith("__")})
        # The module asks the provider for these two; the test plays the provider.
        raw = {**self.locals, "region": f'"{REGION}"', "account_id": f'"{ACCOUNT}"'}
        self.locals = {}
        for name in ("region", "account_id", *sorted(set(raw) - {"region", "account_id"})):
            self.locals[name] = self.value(raw[name])

    @staticmethod
    def literal(raw: Any) -> Any:
        if isinstance(raw, str) and len(raw) >= 2 and raw[0] == raw[-1] == '"':
            return raw[1:-1]
        return raw

    def ref(self, expr: str) -> Any:
        scope, name = expr.split(".", 1)
        if scope == "var":
            return self.variables[name]
        if scope == "local":
            return self.locals[name]
        raise AssertionError(f"terraform: cannot evaluate {expr}")

    def value(self, raw: Any) -> Any:
        if isinstance(raw, dict):
            return {k: self.value(v) for k, v in raw.items() if not k.startswith("__")}
        if isinstance(raw, list):
            return [self.value(v) for v in raw]
        if not isinstance(raw, str):
            return raw
        whole = re.fullmatch(r"\$\{((?:var|local)\.\w+)\}", raw)
        if whole:
            return self.ref(whole.group(1))
        if raw.startswith('"') and raw.endswith('"'):
            return re.sub(
                r"\$\{((?:var|local)\.\w+)\}", lambda m: str(self.ref(m.group(1))), raw[1:-1]
            )
        raise AssertionError(f"terraform: expression not evaluated here: {raw}")

    def resource(self, kind: str, name: str) -> dict[str, Any]:
        return self.resources[(kind, name)]


def eventbridge(tf: Terraform, body: dict[str, Any]) -> tuple[Any, ...]:
    """An eventbridge trigger_config: jsonencode({..., eventRuleFilterPattern =
    jsonencode(local.NAME)}), with literal booleans and source type."""
    config = body["trigger_config"]
    pattern = re.search(r"eventRuleFilterPattern = jsonencode\(local\.(\w+)\)", config)
    flags = {k: re.search(rf"{k} = (true|false)", config) for k in ("asyncInvocationType",
                                                                     "triggerEnable")}  # fmt: skip
    source = re.search(r'eventSourceType = "(\w+)"', config)
    assert pattern and source and all(flags.values()), config
    on = {k: m.group(1) == "true" for k, m in flags.items()}
    return (tf.locals[pattern.group(1)], on["asyncInvocationType"], on["triggerEnable"],
            source.group(1))  # fmt: skip


def from_terraform() -> dict[str, dict[str, Any]]:
    tf = Terraform(ROOT / "deploy" / "terraform")
    role_arn = f"acs:ram::{ACCOUNT}:role/{tf.variables['role_name']}"
    out = {}
    for role in ("sweep", "reimport", "events"):
        body = tf.resource("alicloud_fcv3_function", role)
        assert body["role"] == "${alicloud_ram_role.byok_keeper.arn}"
        env_raw = body["environment_variables"]
        if env_raw == "${local.environment}":
            env = dict(tf.locals["environment"])
        else:  # merge(local.environment, {NAME = tostring(var.x), ...[, BYOK_CONFIG = ...]})
            m = re.fullmatch(
                r"\$\{merge\(local\.environment, \{((?:\w+ = tostring\(var\.\w+\)(?:, )?)+)"
                r'(, BYOK_CONFIG = var\.config_file == "" \? "" : "([\w.-]+)")?\}\)\}',
                env_raw,
            )
            assert m, f"terraform: environment not evaluated here: {env_raw}"
            env = dict(tf.locals["environment"])
            for name, var in re.findall(r"(\w+) = tostring\(var\.(\w+)\)", m.group(1)):
                env[name] = str(tf.variables[var])
            if m.group(2):
                env["BYOK_CONFIG"] = m.group(3) if tf.variables["config_file"] else ""
        log = body["log_config"][0]
        out[role] = {
            "name": tf.value(body["function_name"]),
            "handler": tf.value(body["handler"]),
            "runtime": tf.value(body["runtime"]),
            "memory": body["memory_size"],
            "timeout": body["timeout"],
            "role": role_arn,
            "log": (tf.value(log["project"]), tf.value(log["logstore"])),
            "environment": {k: str(v) for k, v in env.items()},
            "schedule": {},
            "events": {},
            "async": None,
            "concurrency": None,
        }
    for (kind, _name), body in tf.resources.items():
        target = re.fullmatch(r"\$\{alicloud_fcv3_function\.(\w+)\.function_name\}",
                              body.get("function_name", ""))  # fmt: skip
        if kind == "alicloud_fcv3_trigger" and tf.value(body["trigger_type"]) == "eventbridge":
            out[target.group(1)]["events"][tf.value(body["trigger_name"])] = eventbridge(tf, body)
        elif kind == "alicloud_fcv3_trigger":
            assert tf.value(body["trigger_type"]) == "timer"
            cron = re.search(r"cronExpression = var\.(\w+)", body["trigger_config"])
            assert cron, body["trigger_config"]
            out[target.group(1)]["schedule"][tf.value(body["trigger_name"])] = tf.variables[
                cron.group(1)
            ]
        elif kind == "alicloud_fcv3_async_invoke_config":
            on_failure = body["destination_config"][0]["on_failure"][0]["destination"]
            out[target.group(1)]["async"] = (
                tf.value(body["max_async_retry_attempts"]),
                body["max_async_event_age_in_seconds"],
                tf.value(on_failure),
            )
        elif kind == "alicloud_fcv3_concurrency_config":
            out[target.group(1)]["concurrency"] = tf.value(body["reserved_concurrency"])
    return out


# ---- ROS (template.yml) -----------------------------------------------------------------------

_ros_spec = importlib.util.spec_from_file_location("deploy_ros", ROOT / "deploy" / "ros.py")
ros = importlib.util.module_from_spec(_ros_spec)
_ros_spec.loader.exec_module(ros)


def from_template() -> dict[str, dict[str, Any]]:
    return from_ros(ROOT / "template.yml", REGION, ACCOUNT)


def test_template_yml_is_what_ros_py_renders_from_functions_yml():
    # Generated, never edited: a change to functions.yml or ram-policy.json reaches template.yml
    # by `make template`, and this fails until it has.
    assert (ROOT / "template.yml").read_text() == ros.render()
    doc = yaml.safe_load((ROOT / "template.yml").read_text())
    assert doc["ROSTemplateFormatVersion"] == "2015-09-01"
    kinds = {r["Type"] for r in doc["Resources"].values()}
    assert kinds == {"ALIYUN::RAM::Role", "ALIYUN::MNS::Topic", "ALIYUN::FC3::Function",
                     "ALIYUN::FC3::Trigger", "ALIYUN::FC3::AsyncInvokeConfig",
                     "ALIYUN::FC3::ConcurrencyConfig"}  # fmt: skip
    assert not set(doc["Parameters"]) & set(doc["Resources"])  # one namespace in ROS


@pytest.mark.parametrize("arns", [[], ["acs:ram::2222222222222222:role/byok-target"]])
def test_the_ros_role_carries_ram_policy_json_as_deploy_py_renders_it(arns):
    template = Ros(ROOT / "template.yml", REGION, ACCOUNT, TargetRoleArns=",".join(arns))
    assert (
        template.policy()
        == deploy.desired_state(SOURCE, {}, REGION, ACCOUNT, "3.0", arns)["policy"]
    )
    ((_name, role),) = template.of_type("ALIYUN::RAM::Role")
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": ["fc.aliyuncs.com"]
    }
    (topic,) = [p["TopicName"] for _n, p in template.of_type("ALIYUN::MNS::Topic")]
    assert from_plan()["reimport"]["async"][2].endswith(f"/topics/{topic}/messages")


def test_ros_refuses_a_policy_placeholder_it_has_no_parameter_for():
    renderer = ros.Renderer(SOURCE, POLICY_TEXT.replace("${log_store}", "${no_such_thing}"))
    with pytest.raises(ros.RosError, match="no parameter for"):
        renderer.render()


def test_an_empty_sweep_interval_means_the_schedule_in_ros_too():
    env = lambda t: dict(t.of_type("ALIYUN::FC3::Function")[0][1]["EnvironmentVariables"])  # noqa: E731
    assert (
        env(Ros(ROOT / "template.yml", REGION, ACCOUNT))["BYOK_SWEEP_INTERVAL"]
        == (from_plan()["sweep"]["environment"]["BYOK_SWEEP_INTERVAL"])
    )
    given = Ros(ROOT / "template.yml", REGION, ACCOUNT, SweepInterval="15m")
    assert env(given)["BYOK_SWEEP_INTERVAL"] == "15m"


# ---- the agreement ----------------------------------------------------------------------------


@pytest.mark.parametrize("artefact", [from_s_yaml, from_terraform, from_template],
                         ids=["s.yaml", "terraform", "template.yml"])  # fmt: skip
def test_artefact_agrees_with_deploy_plan(artefact):
    expected, actual = from_plan(), artefact()
    assert set(actual) == set(expected) == {"sweep", "reimport", "events"}
    for role in expected:
        for field in expected[role]:
            assert actual[role][field] == expected[role][field], (role, field)


def test_plan_names_runtime_and_the_budget_slice_follow_the_cap():
    plan = from_plan()
    assert plan["sweep"]["name"] == "byok-keeper-sweep"
    assert plan["reimport"]["name"] == "byok-keeper-reimport"
    assert {fn["runtime"] for fn in plan.values()} == {"python3.12"}
    for fn in plan.values():  # every function capped, its slice following its cap
        assert fn["concurrency"] and fn["environment"]["BYOK_BUDGET_INSTANCES"] == str(
            fn["concurrency"]
        )


def test_fc2_plan_is_a_service_on_python310():
    state = _plan("2.0")
    assert state["service"] == "byok-keeper"
    assert {(r, fn["name"], fn["runtime"]) for r, fn in state["functions"].items()} == {
        ("sweep", "sweep", "python3.10"),
        ("reimport", "reimport", "python3.10"),
        ("events", "events", "python3.10"),
    }
    assert state["functions"]["sweep"]["environment"]["BYOK_FC_API"] == "2.0"


@pytest.mark.parametrize(("api", "wire"), [("3.0", False), ("2.0", True)])
def test_events_are_invoked_asynchronously_in_each_apis_own_reading(api, wire):
    # asyncInvocationType: FC 3.0's page and SDK read true as synchronous, FC 2.0's page as
    # asynchronous (docs/FIDELITY.md, disputed); each API gets the value that means async.
    for trigger in _plan(api)["functions"]["events"]["triggers"].values():
        assert trigger["async"] is True
        assert json.loads(deploy._trigger_config(trigger))["asyncInvocationType"] is wire


def test_every_parameter_is_used():
    text = (ROOT / "deploy" / "functions.yml").read_text().split("\nCommon:", 1)[1]
    for name in SOURCE["Parameters"]:
        assert "${" + name + "}" in text, name


@pytest.mark.parametrize("role", ["sweep", "reimport", "events"])
def test_handlers_resolve_to_a_handler_function(role):
    handler = _plan()["functions"][role]["handler"]
    module, function = handler.rsplit(".", 1)
    package, module_name = module.split(".")
    source = ROOT / "functions" / package / f"{module_name}.py"
    assert source.exists(), f"{handler} does not resolve"
    tree = ast.parse(source.read_text())
    assert function in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert _plan()["functions"][role]["timeout"] >= 60


def test_timer_is_a_six_field_utc_cron_every_6_hours_and_still_a_parameter():
    # Issue 15: deletions arrive as events, so the full sweep runs every 6 hours by default.
    from aliyun_local.fc import cron

    default = _plan()["functions"]["sweep"]["triggers"]["schedule"]["cron"]
    assert len(default.split()) == 6
    schedule = cron.parse(default)
    assert schedule.fields[2] == frozenset({0, 6, 12, 18})
    assert schedule.fields[1] == {0} and schedule.fields[0] == {0}
    often = deploy.desired_state(SOURCE, {"Schedule": "0 0/15 * * * *"}, REGION, ACCOUNT)
    assert often["functions"]["sweep"]["triggers"]["schedule"]["cron"] == "0 0/15 * * * *"


def test_the_events_rules_match_this_account_region_and_exactly_the_classified_calls():
    triggers = _plan()["functions"]["events"]["triggers"]
    assert set(triggers) == {"actiontrail", "actiontrail-tags"}
    names: list[str] = []
    for trigger in triggers.values():
        assert trigger["type"] == "eventbridge" and trigger["enable"] and trigger["async"]
        assert trigger["source_type"] == "Default"
        pattern = json.loads(trigger["pattern"])
        assert pattern["source"] == list(SOURCES)  # both disputed spellings (FIDELITY)
        assert pattern["type"] == list(TYPES)
        assert pattern["aliyunaccountid"] == [ACCOUNT]
        assert pattern["data"]["serviceName"] == ["Kms"]
        assert pattern["data"]["acsRegion"] == [REGION]
        names += pattern["data"]["eventName"]
        config = json.loads(deploy._trigger_config(trigger))
        assert config["eventSourceConfig"] == {"eventSourceType": "Default"}
        assert json.loads(config["eventRuleFilterPattern"]) == pattern
        assert config["triggerEnable"] is True
        # Asynchronous (FC's retries and OnFailure) under FC 3.0's reading: false.
        assert config["asyncInvocationType"] is False
    # Every classified call exactly once (no event lost, none delivered twice), and never
    # ImportKeyMaterial: our own restores must not trigger anything.
    assert sorted(names) == sorted(EVENT_NAMES) and len(names) == len(set(names))
    assert "ImportKeyMaterial" not in names


def _fields(pattern: dict[str, Any], path: str = "") -> dict[str, list]:
    out: dict[str, list] = {}
    for name, rule in pattern.items():
        where = f"{path}.{name}" if path else name
        out.update(_fields(rule, where) if isinstance(rule, dict) else {where: rule})
    return out


@pytest.mark.parametrize("artefact", [from_plan, from_s_yaml, from_terraform, from_template],
                         ids=["functions.yml", "s.yaml", "terraform", "template.yml"])  # fmt: skip
def test_every_rule_stays_within_eventbridges_5_expressions_per_field(artefact):
    rules = [r[0] for fn in artefact().values() for r in fn["events"].values()]
    assert len(rules) == 2
    for pattern in rules:
        for field, rule in _fields(pattern).items():
            assert len(rule) <= deploy.MAX_EXPRESSIONS_PER_FIELD, field


def test_deploy_refuses_a_rule_over_eventbridges_limit_before_anything_is_created():
    source = json.loads(json.dumps(SOURCE))
    triggers = source["Functions"]["events"]["Triggers"]
    triggers["actiontrail"]["EventPattern"]["data"]["eventName"] = list(EVENT_NAMES)  # six
    with pytest.raises(deploy.DeployError, match=r"data\.eventName has 6 expressions.*at most 5"):
        deploy.desired_state(source, {}, REGION, ACCOUNT)


def test_the_events_function_is_capped_and_takes_its_budget_slice():
    events = from_plan()["events"]
    assert events["concurrency"] == 2 and events["environment"]["BYOK_BUDGET_INSTANCES"] == "2"
    assert events["async"] and events["async"][2].startswith("acs:mns:")


def test_an_unknown_trigger_type_is_refused():
    source = json.loads(json.dumps(SOURCE))
    source["Functions"]["events"]["Triggers"]["actiontrail"]["Type"] = "mns_topic"
    with pytest.raises(deploy.DeployError, match="Type must be one of"):
        deploy.desired_state(source, {}, REGION, ACCOUNT)
    source["Functions"]["events"]["Triggers"]["actiontrail"] = {"Type": "eventbridge"}
    with pytest.raises(deploy.DeployError, match="EventPattern"):
        deploy.desired_state(source, {}, REGION, ACCOUNT)


def test_the_package_carries_every_planned_function():
    spec = importlib.util.spec_from_file_location("byok_package", ROOT / "deploy" / "package.py")
    package = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(package)
    handlers = {fn["handler"].split(".")[0] for fn in _plan()["functions"].values()}
    assert set(package.FUNCTIONS) == handlers


def test_reimport_has_async_retries_and_an_on_failure_destination():
    config = _plan()["functions"]["reimport"]["async"]
    assert 0 < config["retries"] <= 8
    assert re.match(r"acs:mns:cn-hangzhou:1234567890123456:/topics/.+/messages$",
                    config["on_failure"])  # fmt: skip


# ---- the policy -------------------------------------------------------------------------------

STATEMENTS = json.loads(POLICY_TEXT)["Statement"]
ALLOWED_OTHER = {"fc:InvokeFunction", "log:PostLogStoreLogs", "sts:AssumeRole",
                 "mns:PublishMessage"}  # fmt: skip
MANAGEMENT = {"DescribeKey", "ListResourceTags", "ListKeyVersions", "GetParametersForImport",
              "ImportKeyMaterial", "GetPublicKey"}  # fmt: skip


def test_terraform_attaches_exactly_ram_policy_json_with_every_placeholder_filled():
    tf = Terraform(ROOT / "deploy" / "terraform")
    policy = tf.resource("alicloud_ram_policy", "byok_keeper")["policy_document"]
    # jsonencode of ram-policy.json's statements, AssumeTargetRoles only with target ARNs
    m = re.fullmatch(r'\$\{jsonencode\(\{Version = "1", Statement = \[for s in jsondecode\('
                     r'templatefile\("\$\{path\.module\}/\.\./ram-policy\.json", \{(.*)\}\)\)'
                     r'\.Statement : s if s\.Sid != "AssumeTargetRoles" \|\| '
                     r"length\(var\.target_role_arns\) > 0\]\}\)\}", policy)  # fmt: skip
    assert m, policy
    given = {k for k, _ in re.findall(r"(\w+) = ([\w.]+|join\(.*?\))", m.group(1))}
    assert given == set(re.findall(r"\$\{(\w+)\}", POLICY_TEXT))
    assert 'target_role_arns = join("\\",\\"", var.target_role_arns)' in m.group(1)
    assert tf.variables["target_role_arns"] == [] and tf.variables["config_file"] == ""
    attach = tf.resource("alicloud_ram_role_policy_attachment", "byok_keeper")
    assert tf.value(attach["policy_type"]) == "Custom"
    assert SOURCE["Policy"] == "ram-policy.json"


def test_policy_is_the_sweep_allowlist_and_nothing_that_rotates_or_deletes():
    actions = {a for s in STATEMENTS for a in s["Action"]}
    kms = {a.split(":", 1)[1] for a in actions if a.startswith("kms:")}
    assert kms <= SWEEP.actions, kms - SWEEP.actions
    assert not kms & FORBIDDEN
    assert not kms & {"CreateKey", "TagResource", "UntagResource", "GenerateDataKey",
                      "PutSecretValue", "CreateSecret"}  # fmt: skip
    assert actions - {f"kms:{a}" for a in kms} <= ALLOWED_OTHER
    assert all(s["Effect"] == "Allow" for s in STATEMENTS)
    decrypt = {s["Sid"]: s for s in STATEMENTS}["OpenEnvelopeDataKeys"]["Resource"]
    assert decrypt == ["acs:kms:${region}:${account_id}:key/${seal_kms_key_id}"]


def test_tag_conditions_guard_cryptographic_operations_only():
    # RAM documents the kms:tag/<key> condition for cryptographic operations only; behind it,
    # the management calls could be denied on a real account (docs/SECURITY.md).
    for s in STATEMENTS:
        kms = {a.split(":", 1)[1] for a in s["Action"] if a.startswith("kms:")}
        tagged = "kms:tag" in json.dumps(s.get("Condition", {}))
        if kms & MANAGEMENT:
            assert not tagged, s["Sid"]
            assert s["Resource"] == ["acs:kms:${region}:${account_id}:key/*"]
        if tagged:
            assert kms <= {"AsymmetricSign", "AsymmetricVerify", "AsymmetricEncrypt",
                           "AsymmetricDecrypt"}, s["Sid"]  # fmt: skip


def test_the_role_is_the_same_everywhere():
    tf = Terraform(ROOT / "deploy" / "terraform")
    s_vars = yaml.safe_load((ROOT / "s.yaml").read_text())["vars"]
    plan_role = _plan()["functions"]["sweep"]["role"]
    assert plan_role == f"acs:ram::{ACCOUNT}:role/{tf.variables['role_name']}"
    assert plan_role.endswith(f":role/{s_vars['roleName']}")
    assert {fn["role"] for fn in from_template().values()} == {plan_role}


def test_terraform_requires_the_provider_that_has_what_it_uses():
    # alicloud_ram_role's role_name/assume_role_policy_document arrived in provider 1.252.0
    # (docs/FIDELITY.md, "Deployment artefacts"); an older provider would refuse the module.
    doc = hcl2.loads((ROOT / "deploy" / "terraform" / "main.tf").read_text())
    (block,) = doc["terraform"][0]["required_providers"]
    floor = re.fullmatch(r'">= (\d+)\.(\d+)\.(\d+)"', block["alicloud"]["version"])
    assert floor, block["alicloud"]["version"]
    assert tuple(map(int, floor.groups())) >= (1, 252, 0)
    role = Terraform(ROOT / "deploy" / "terraform").resource("alicloud_ram_role", "byok_keeper")
    assert {"role_name", "assume_role_policy_document"} <= set(role)
    assert not {"name", "document"} & set(role)


def test_an_fc_refusal_is_one_line_and_exit_1(monkeypatch, tmp_path, capsys):
    from alibabacloud_tea_openapi.exceptions import ClientException

    class Refusing:
        def get_function(self, *args):
            raise ClientException(code="Forbidden.EventBridge", message="no SLR", status_code=403)

    monkeypatch.setattr(deploy, "_fc_client", lambda *args: Refusing())
    code = tmp_path / "code.zip"
    with zipfile.ZipFile(code, "w") as zf:  # a package holding the three handlers' modules
        for role in ("sweep", "reimport", "events"):
            zf.writestr(f"{role}/index.py", "")
    rc = deploy.main(["--code", str(code), "--region", REGION, "--account-id", ACCOUNT])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "Forbidden.EventBridge" in err

"""Render template.yml, the deployment as a ROS template (Resource Orchestration Service, Alibaba
Cloud's own infrastructure as code), from deploy/functions.yml and deploy/ram-policy.json.

    python deploy/ros.py            # rewrite template.yml (make template)
    python deploy/ros.py --check    # exit 1 when template.yml is not what this renders

template.yml is generated, never edited: tests/unit/test_deploy_artefacts.py fails when it differs
from what this renders, and reads it back against deploy.py's plan like s.yaml and Terraform.
What is rendered: the role (ALIYUN::RAM::Role, trusting fc.aliyuncs.com, with ram-policy.json
inline), the failure topic (ALIYUN::MNS::Topic), and for each function of functions.yml an
ALIYUN::FC3::Function, its ALIYUN::FC3::Trigger(s) (timer, eventbridge), its
ALIYUN::FC3::AsyncInvokeConfig and ALIYUN::FC3::ConcurrencyConfig. Trigger configs come from
deploy.py itself (the same triggerConfig it sends to FC 3.0). `${Name}` becomes a ROS parameter
reference, `${Region}`/`${AccountId}` the pseudo parameters ALIYUN::Region/ALIYUN::AccountId; a
parameter whose default names another (SweepInterval: `${Schedule}`) defaults to empty and means
that other one when left empty. ram-policy.json's `${snake_case}` placeholders become the
CamelCase parameter of the same name (`${log_store}` -> LogStore); an unknown one is refused.
The code package comes from OSS (CodeBucket, CodeObject): ROS does not upload local files.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE.parent / "template.yml"
PSEUDO = {"Region": "ALIYUN::Region", "AccountId": "ALIYUN::AccountId"}
POLICY_PSEUDO = {"region": "Region", "account_id": "AccountId"}
NO_VALUE = {"Ref": "ALIYUN::NoValue"}
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")

_spec = importlib.util.spec_from_file_location("byok_deploy", HERE / "deploy.py")
deploy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(deploy)


class RosError(Exception):
    pass


def _logical(name: str) -> str:
    """A ROS logical id from a functions.yml name: ``actiontrail-tags`` -> ``ActiontrailTags``."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_]", name))


class Renderer:
    """functions.yml and ram-policy.json to one ROS template (a dict)."""

    def __init__(self, source: dict[str, Any], policy_text: str) -> None:
        self.source = source
        self.policy_text = policy_text
        declared = source["Parameters"]
        # A default naming another parameter cannot be a ROS default: empty means that one.
        self.deferred = {
            name: str(spec.get("Default", ""))
            for name, spec in declared.items()
            if name != "Role" and "${" in str(spec.get("Default", ""))
        }
        self.numbers: set[str] = set()

    # ---- values --------------------------------------------------------------------------

    def _var(self, name: str) -> Any:
        if name in PSEUDO:
            return {"Ref": PSEUDO[name]}
        if name == "Role":  # the role this template creates
            return {"Fn::GetAtt": ["Role", "Arn"]}
        if name not in self.source["Parameters"]:
            raise RosError(f"functions.yml: unknown parameter {name}")
        if name in self.deferred:
            return {"Fn::If": [f"{name}Empty", self.value(self.deferred[name]), {"Ref": name}]}
        return {"Ref": name}

    def value(self, raw: Any, number: bool = False) -> Any:
        """A functions.yml value in ROS: literals as they are, ``${Name}`` as references."""
        if isinstance(raw, dict):
            return {k: self.value(v) for k, v in raw.items()}
        if isinstance(raw, list):
            return [self.value(v) for v in raw]
        if not isinstance(raw, str) or "${" not in raw:
            return raw
        whole = re.fullmatch(r"\$\{(\w+)\}", raw)
        if whole:
            if number:
                self.numbers.add(whole.group(1))
            return self._var(whole.group(1))
        names = _PLACEHOLDER.findall(raw)
        if "Role" in names:
            raise RosError(f"functions.yml: the role ARN cannot be part of a string: {raw}")
        text = _PLACEHOLDER.sub(lambda m: "${" + PSEUDO.get(m.group(1), m.group(1)) + "}", raw)
        inline = {n: self._var(n) for n in names if n in self.deferred}
        for n in names:
            self._var(n)  # refuses an unknown parameter
        return {"Fn::Sub": [text, inline]} if inline else {"Fn::Sub": text}

    # ---- parameters ------------------------------------------------------------------------

    def parameters(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, spec in self.source["Parameters"].items():
            if name == "Role":
                continue
            default = "" if name in self.deferred else str(spec.get("Default", ""))
            description = " ".join(str(spec.get("Description", "")).split())
            if name in self.deferred:
                other = _PLACEHOLDER.sub(r"the \1 parameter", self.deferred[name])
                description += f" Empty: {other}."
            param: dict[str, Any] = {"Type": "String", "Default": default}
            if name in self.numbers:
                param = {"Type": "Number", "Default": int(default)}
            if spec.get("AllowedValues"):
                param["AllowedValues"] = list(spec["AllowedValues"])
            param["Description"] = description
            out[name] = param
        role = str(self.source["Parameters"]["Role"]["Default"]).rsplit("/", 1)[-1]
        out["RoleName"] = {
            "Type": "String",
            "Default": role,
            "Description": "RAM role this stack creates for the functions (ram-policy.json).",
        }
        out["TargetRoleArns"] = {
            "Type": "CommaDelimitedList",
            "Default": "",
            "Description": "Role ARNs of the [[targets]] (deploy.py --config FILE --plan "
            "prints them); empty: no sts:AssumeRole at all.",
        }
        out["CodeBucket"] = {
            "Type": "String",
            "Description": "OSS bucket holding the code package (make package).",
        }
        out["CodeObject"] = {
            "Type": "String",
            "Default": "byok-keeper-fc.zip",
            "Description": "OSS object name of the code package in CodeBucket.",
        }
        return out

    def conditions(self) -> dict[str, Any]:
        out = {f"{n}Empty": {"Fn::Equals": ["", {"Ref": n}]} for n in self.deferred}
        vpc = self.source["Common"].get("VpcConfig") or {}
        if vpc:
            out["HasVpc"] = {"Fn::Not": [{"Fn::Equals": ["", self.value(vpc["VpcId"])]}]}
        out["HasTargets"] = {
            "Fn::Not": [{"Fn::Equals": ["", {"Fn::Join": [",", {"Ref": "TargetRoleArns"}]}]}]
        }
        return out

    # ---- resources -------------------------------------------------------------------------

    def role(self) -> dict[str, Any]:
        statements = []
        for statement in json.loads(self.policy_text)["Statement"]:
            if statement.get("Sid") == deploy.TARGETS_SID:
                body = {**statement, "Resource": {"Ref": "TargetRoleArns"}}
                statements.append({"Fn::If": ["HasTargets", self._policy(body), NO_VALUE]})
            else:
                statements.append(self._policy(statement))
        return {
            "Type": "ALIYUN::RAM::Role",
            "Properties": {
                "RoleName": {"Ref": "RoleName"},
                "Description": "byok-keeper FC functions: re-import identical BYOK material, "
                "never rotate",
                "AssumeRolePolicyDocument": {
                    "Version": "1",
                    "Statement": [
                        {
                            "Action": "sts:AssumeRole",
                            "Effect": "Allow",
                            "Principal": {"Service": ["fc.aliyuncs.com"]},
                        }
                    ],
                },
                "Policies": [
                    {
                        "PolicyName": {"Ref": "RoleName"},
                        "PolicyDocument": {"Version": "1", "Statement": statements},
                    }
                ],
            },
        }

    def _policy(self, value: Any) -> Any:
        """ram-policy.json's ``${snake_case}`` as the parameter ``SnakeCase``."""
        if isinstance(value, dict):
            return {k: self._policy(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._policy(v) for v in value]
        if not isinstance(value, str) or "${" not in value:
            return value

        def name(m: re.Match) -> str:
            snake = m.group(1)
            camel = POLICY_PSEUDO.get(snake) or _logical(snake)
            if camel not in PSEUDO and camel not in self.source["Parameters"]:
                raise RosError(f"ram-policy.json: no parameter for ${{{snake}}}")
            return "${" + camel + "}"

        return self.value(_PLACEHOLDER.sub(name, value))

    def function(self, role: str, spec: dict[str, Any]) -> dict[str, Any]:
        common = self.source["Common"]
        vpc = common.get("VpcConfig") or {}
        props: dict[str, Any] = {
            "FunctionName": self.value(spec["Name"]),
            "Description": spec.get("Description", ""),
            "Handler": spec["Handler"],
            "Runtime": self.value(common["Runtime"]),
            "Code": {
                "OssBucketName": {"Ref": "CodeBucket"},
                "OssObjectName": {"Ref": "CodeObject"},
            },
            "MemorySize": self.value(spec["MemorySize"], number=True),
            "Timeout": self.value(spec["Timeout"], number=True),
            "Role": self.value(common["Role"]),
            "InternetAccess": bool(common.get("InternetAccess", True)),
            "LogConfig": {
                "Project": self.value(common["LogConfig"]["Project"]),
                "Logstore": self.value(common["LogConfig"]["Logstore"]),
            },
            "EnvironmentVariables": self.value(
                {
                    k: str(v)
                    for k, v in {**common["Environment"], **spec.get("Environment", {})}.items()
                }
            ),
        }
        if vpc:
            props["VpcConfig"] = {
                "Fn::If": [
                    "HasVpc",
                    {
                        "VpcId": self.value(vpc["VpcId"]),
                        "VSwitchIds": {"Fn::Split": [",", self.value(vpc["VSwitchIds"])]},
                        "SecurityGroupId": self.value(vpc["SecurityGroupId"]),
                    },
                    NO_VALUE,
                ]
            }
        return {"Type": "ALIYUN::FC3::Function", "Properties": props}

    def extras(self, role: str, spec: dict[str, Any]) -> dict[str, Any]:
        """The function's triggers, async invoke config and concurrency config."""
        fn = _logical(role)
        name = {"Fn::GetAtt": [fn, "FunctionName"]}
        out: dict[str, Any] = {}
        for trigger_name, raw in (spec.get("Triggers") or {}).items():
            trigger = deploy._trigger(role, trigger_name, raw, "3.0")
            out[f"{fn}{_logical(trigger_name)}Trigger"] = {
                "Type": "ALIYUN::FC3::Trigger",
                "Properties": {
                    "FunctionName": name,
                    "TriggerName": trigger_name,
                    "TriggerType": trigger["type"],
                    "Qualifier": "LATEST",
                    "TriggerConfig": self.value(json.loads(deploy._trigger_config(trigger))),
                },
            }
        config = spec.get("AsyncInvokeConfig")
        if config:
            async_props: dict[str, Any] = {
                "FunctionName": name,
                "MaxAsyncRetryAttempts": self.value(config["MaxAsyncRetryAttempts"], number=True),
                "MaxAsyncEventAgeInSeconds": self.value(
                    config["MaxAsyncEventAgeInSeconds"], number=True
                ),
            }
            if config.get("OnFailure"):
                async_props["DestinationConfig"] = {
                    "OnFailure": {"Destination": self.value(config["OnFailure"])}
                }
            out[f"{fn}AsyncInvokeConfig"] = {
                "Type": "ALIYUN::FC3::AsyncInvokeConfig",
                "DependsOn": ["FailureMnsTopic"],
                "Properties": async_props,
            }
        if spec.get("ReservedConcurrency") is not None:
            out[f"{fn}ConcurrencyConfig"] = {
                "Type": "ALIYUN::FC3::ConcurrencyConfig",
                "Properties": {
                    "FunctionName": name,
                    "ReservedConcurrency": self.value(spec["ReservedConcurrency"], number=True),
                },
            }
        return out

    def render(self) -> dict[str, Any]:
        resources: dict[str, Any] = {"Role": self.role()}
        resources["FailureMnsTopic"] = {  # not "FailureTopic": parameters share the ids
            "Type": "ALIYUN::MNS::Topic",
            "Properties": {"TopicName": self.value("${FailureTopic}")},
        }
        for role, spec in self.source["Functions"].items():
            resources[_logical(role)] = self.function(role, spec)
            resources.update(self.extras(role, spec))
        outputs = {
            f"{_logical(role)}FunctionName": {
                "Value": {"Fn::GetAtt": [_logical(role), "FunctionName"]}
            }
            for role in self.source["Functions"]
        }
        outputs["RoleArn"] = {"Value": {"Fn::GetAtt": ["Role", "Arn"]}}
        # Parameters last: rendering the resources found which ones are numbers.
        return {
            "ROSTemplateFormatVersion": "2015-09-01",
            "Description": "byok-keeper on Function Compute 3.0: keeps imported (BYOK) KMS key "
            "material alive by re-importing it, never rotating. Generated from "
            "deploy/functions.yml by deploy/ros.py: do not edit.",
            "Parameters": self.parameters(),
            "Conditions": self.conditions(),
            "Resources": resources,
            "Outputs": outputs,
        }


class _Dumper(yaml.SafeDumper):
    """Plain YAML: every value written out where it is used, no ``&id``/``*id`` aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


HEADER = (
    "# Generated by deploy/ros.py from deploy/functions.yml and deploy/ram-policy.json: do not\n"
    "# edit (make template). A ROS template: `aliyun ros CreateStack` or the ROS console\n"
    "# (deploy/README.md).\n"
)


def render(source_path: Path = deploy.SOURCE) -> str:
    """template.yml's text, from functions.yml and the policy file it names."""
    source = yaml.safe_load(source_path.read_text())
    policy = (source_path.parent / source.get("Policy", "ram-policy.json")).read_text()
    doc = Renderer(source, policy).render()
    return HEADER + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    try:
        text = render()
    except (RosError, deploy.DeployError) as exc:
        print(f"ros.py: error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if not TEMPLATE.exists() or TEMPLATE.read_text() != text:
            print("ros.py: template.yml is not what deploy/ros.py renders (make template)",
                  file=sys.stderr)  # fmt: skip
            return 1
        return 0
    TEMPLATE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

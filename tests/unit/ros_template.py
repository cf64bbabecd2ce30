"""Reads template.yml (the ROS template) back into the facts tests/unit/test_deploy_artefacts.py
compares across artefacts, playing ROS for the intrinsic functions the template uses: Ref
(parameters and the pseudo parameters ALIYUN::Region, ALIYUN::AccountId, ALIYUN::NoValue),
Fn::Sub (both forms), Fn::If, Fn::Equals, Fn::Not, Fn::Join, Fn::Split, and Fn::GetAtt of the
role's Arn and a function's FunctionName. Anything else fails the test rather than pass
unevaluated."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

NO_VALUE = object()
FC3 = "ALIYUN::FC3::"


class Ros:
    def __init__(self, path: Path, region: str, account: str, **parameters: str) -> None:
        self.doc = yaml.safe_load(path.read_text())
        self.resources: dict[str, Any] = self.doc["Resources"]
        self.params: dict[str, Any] = {}
        for name, spec in self.doc["Parameters"].items():
            raw = parameters.get(name, spec.get("Default"))
            if spec["Type"] == "CommaDelimitedList":
                raw = str(raw).split(",")
            self.params[name] = raw
        self.params.update({"ALIYUN::Region": region, "ALIYUN::AccountId": account})
        self.account = account
        self.conditions = {
            name: self.value(expr) for name, expr in self.doc.get("Conditions", {}).items()
        }

    def value(self, raw: Any) -> Any:
        if isinstance(raw, list):
            return [v for v in (self.value(x) for x in raw) if v is not NO_VALUE]
        if not isinstance(raw, dict):
            return raw
        if len(raw) == 1:
            ((key, arg),) = raw.items()
            if key == "Ref" or key.startswith("Fn::"):
                return self.function(key, arg)
        out = {k: self.value(v) for k, v in raw.items()}
        return {k: v for k, v in out.items() if v is not NO_VALUE}

    def function(self, key: str, arg: Any) -> Any:
        if key == "Ref":
            return NO_VALUE if arg == "ALIYUN::NoValue" else self.params[arg]
        if key == "Fn::Sub":
            text, extra = (arg, {}) if isinstance(arg, str) else arg
            scope = {**self.params, **{k: self.value(v) for k, v in extra.items()}}
            return re.sub(r"\$\{([\w:]+)\}", lambda m: str(scope[m.group(1)]), text)
        if key == "Fn::If":
            condition, then, otherwise = arg
            return self.value(then if self.conditions[condition] else otherwise)
        if key == "Fn::Equals":
            left, right = (self.value(x) for x in arg)
            return left == right
        if key == "Fn::Not":
            return not self.value(arg[0])
        if key == "Fn::Join":
            return arg[0].join(self.value(arg[1]))
        if key == "Fn::Split":
            return self.value(arg[1]).split(arg[0])
        if key == "Fn::GetAtt":
            name, attribute = arg
            props = self.resources[name]["Properties"]
            if (self.resources[name]["Type"], attribute) == ("ALIYUN::RAM::Role", "Arn"):
                return f"acs:ram::{self.account}:role/{self.value(props['RoleName'])}"
            if attribute == "FunctionName":
                return self.value(props["FunctionName"])
        raise AssertionError(f"template.yml: {key} {arg} not evaluated here")

    def of_type(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        return [
            (name, self.value(r["Properties"]))
            for name, r in self.resources.items()
            if r["Type"] == kind
        ]

    def policy(self) -> dict[str, Any]:
        ((_name, role),) = self.of_type("ALIYUN::RAM::Role")
        ((policy,),) = [role["Policies"]]
        assert policy["PolicyName"] == role["RoleName"]
        return policy["PolicyDocument"]


def from_ros(path: Path, region: str, account: str) -> dict[str, dict[str, Any]]:
    """Each function's facts in the shape of test_deploy_artefacts._canonical."""
    ros = Ros(path, region, account)
    out: dict[str, dict[str, Any]] = {}
    by_name: dict[str, dict[str, Any]] = {}
    for logical, p in ros.of_type(FC3 + "Function"):
        fn = {
            "name": p["FunctionName"],
            "handler": p["Handler"],
            "runtime": p["Runtime"],
            "memory": p["MemorySize"],
            "timeout": p["Timeout"],
            "role": p["Role"],
            "log": (p["LogConfig"]["Project"], p["LogConfig"]["Logstore"]),
            "environment": {k: str(v) for k, v in p["EnvironmentVariables"].items()},
            "schedule": {},
            "events": {},
            "async": None,
            "concurrency": None,
        }
        out[logical.lower()] = by_name[p["FunctionName"]] = fn
    for _logical, p in ros.of_type(FC3 + "Trigger"):
        fn, config = by_name[p["FunctionName"]], p["TriggerConfig"]
        assert p["Qualifier"] == "LATEST"
        if p["TriggerType"] == "timer":
            fn["schedule"][p["TriggerName"]] = config["cronExpression"]
            continue
        assert p["TriggerType"] == "eventbridge"
        fn["events"][p["TriggerName"]] = (
            json.loads(config["eventRuleFilterPattern"]),
            config["asyncInvocationType"],
            config["triggerEnable"],
            config["eventSourceConfig"]["eventSourceType"],
        )
    for _logical, p in ros.of_type(FC3 + "AsyncInvokeConfig"):
        by_name[p["FunctionName"]]["async"] = (
            p["MaxAsyncRetryAttempts"],
            p["MaxAsyncEventAgeInSeconds"],
            p["DestinationConfig"]["OnFailure"]["Destination"],
        )
    for _logical, p in ros.of_type(FC3 + "ConcurrencyConfig"):
        by_name[p["FunctionName"]]["concurrency"] = p["ReservedConcurrency"]
    return out

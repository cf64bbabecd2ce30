"""template.yml and deploy/ram-policy.json: handlers resolve, the policy is least privilege."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from byok_keeper.kms import FORBIDDEN, SWEEP

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = yaml.safe_load((ROOT / "template.yml").read_text())
SERVICE = TEMPLATE["Resources"]["byok-keeper"]
FUNCTIONS = {k: v for k, v in SERVICE.items() if isinstance(v, dict) and "Type" in v}
STATEMENTS = SERVICE["Properties"]["Policies"][0]["Statement"]
# KMS actions beyond the sweep allowlist that the role may use: none; vault reads are in it.
ALLOWED_OTHER = {"fc:InvokeFunction", "log:PostLogStoreLogs"}


def test_service_and_functions_are_named_as_checks_expect():
    assert SERVICE["Type"] == "Aliyun::Serverless::Service"
    assert set(FUNCTIONS) == {"sweep", "reimport"}
    assert TEMPLATE["Transform"] == "Aliyun::Serverless-2018-04-03"


@pytest.mark.parametrize("name", ["sweep", "reimport"])
def test_handlers_resolve_to_a_handler_function(name):
    handler = FUNCTIONS[name]["Properties"]["Handler"]
    module, function = handler.rsplit(".", 1)
    package, module_name = module.split(".")
    source = ROOT / "functions" / package / f"{module_name}.py"
    assert source.exists(), f"{handler} does not resolve"
    tree = ast.parse(source.read_text())
    assert function in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert FUNCTIONS[name]["Properties"]["Runtime"].startswith("python3.")
    assert int(FUNCTIONS[name]["Properties"]["Timeout"]) >= 60


def test_policy_is_the_sweep_allowlist_and_nothing_that_rotates_or_deletes():
    actions = {a for s in STATEMENTS for a in s["Action"]}
    kms = {a.split(":", 1)[1] for a in actions if a.startswith("kms:")}
    assert kms <= SWEEP.actions, kms - SWEEP.actions
    assert not kms & FORBIDDEN
    assert not kms & {"CreateKey", "TagResource", "UntagResource", "GenerateDataKey",
                      "PutSecretValue", "CreateSecret"}  # fmt: skip
    assert actions - {f"kms:{a}" for a in kms} <= ALLOWED_OTHER
    assert all(s["Effect"] == "Allow" for s in STATEMENTS)


def test_invoke_is_scoped_to_the_reimport_function_and_decrypt_to_the_seal_key():
    by_sid = {s["Sid"]: s for s in STATEMENTS}
    assert by_sid["FanOut"]["Resource"][0]["Fn::Sub"].endswith("functions/reimport")
    assert by_sid["OpenEnvelopeDataKeys"]["Resource"][0]["Fn::Sub"].endswith("${SealKmsKeyId}")
    assert by_sid["CanaryOnManagedKeys"]["Condition"]


# RAM documents the kms:tag/<key> condition for cryptographic operations only; behind it, the
# management calls could be denied on a real account (docs/SECURITY.md, docs/FIDELITY.md).
MANAGEMENT = {"DescribeKey", "ListResourceTags", "ListKeyVersions", "GetParametersForImport",
              "ImportKeyMaterial", "GetPublicKey"}  # fmt: skip


def test_tag_conditions_guard_cryptographic_operations_only():
    doc = json.loads((ROOT / "deploy" / "ram-policy.json").read_text())
    for statements in (STATEMENTS, doc["Statement"]):
        for s in statements:
            kms = {a.split(":", 1)[1] for a in s["Action"] if a.startswith("kms:")}
            tagged = "kms:tag" in json.dumps(s.get("Condition", {}))
            if kms & MANAGEMENT:
                assert not tagged, s["Sid"]
                resources = json.dumps(s["Resource"])
                assert ":key/*" in resources
                assert "Region" in resources or "<region>" in resources
            if tagged:
                assert kms <= {"AsymmetricSign", "AsymmetricVerify", "AsymmetricEncrypt",
                               "AsymmetricDecrypt"}, s["Sid"]  # fmt: skip


def test_ram_policy_document_matches_the_template():
    doc = json.loads((ROOT / "deploy" / "ram-policy.json").read_text())
    assert [(s["Sid"], s["Action"]) for s in doc["Statement"]] == [
        (s["Sid"], s["Action"]) for s in STATEMENTS
    ]


def test_every_parameter_reaches_the_functions():
    env = FUNCTIONS["sweep"]["Properties"]["EnvironmentVariables"]
    assert FUNCTIONS["reimport"]["Properties"]["EnvironmentVariables"] == env
    referenced = {v["Ref"] for v in env.values() if isinstance(v, dict)}
    used_elsewhere = {"Schedule", "FailureTopic", "LogProject", "LogStore"}
    assert set(TEMPLATE["Parameters"]) - used_elsewhere <= referenced
    for name in ("KmsEndpoint", "FcEndpoint", "VaultUri", "SealKmsKeyId", "SealKeyFile",
                 "Dispatch", "Schedule", "ReadQps", "WriteQps"):  # fmt: skip
        assert name in TEMPLATE["Parameters"]


def test_timer_is_a_six_field_utc_cron_every_15_minutes():
    from aliyun_local.fc import cron

    event = FUNCTIONS["sweep"]["Events"]["schedule"]
    assert event["Type"] == "Timer"
    default = TEMPLATE["Parameters"]["Schedule"]["Default"]
    assert len(default.split()) == 6
    schedule = cron.parse(default)
    assert schedule.fields[1] == frozenset({0, 15, 30, 45}) and schedule.fields[0] == {0}


def test_reimport_has_async_retries_and_an_on_failure_destination():
    config = FUNCTIONS["reimport"]["Properties"]["AsyncConfiguration"]
    assert 0 < config["MaxAsyncRetryAttempts"] <= 8
    assert re.search(r"acs:mns:.*topics", config["Destination"]["OnFailure"]["Fn::Sub"])

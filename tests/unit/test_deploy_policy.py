"""The function role's policy as deploy.py renders it (deploy/ram-policy.json): exactly the
fc:InvokeFunction grants the code's own invocations need, and mns:PublishMessage on exactly the
OnFailure topic FC publishes exhausted invocations to with that role (issues 25 and 26)."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from byok_keeper.core import dispatch

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "shared" / "byok_keeper"
REGION, ACCOUNT = "cn-hangzhou", "1234567890123456"

_spec = importlib.util.spec_from_file_location("deploy_script", ROOT / "deploy" / "deploy.py")
deploy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(deploy)
rampolicy = sys.modules["rampolicy"]  # deploy.py's sibling, imported by it
SOURCE = yaml.safe_load((ROOT / "deploy" / "functions.yml").read_text())


def _state(api: str = "3.0", **overrides: str) -> dict:
    return deploy.desired_state(SOURCE, overrides, REGION, ACCOUNT, api)


def _statement(policy: dict, sid: str) -> dict:
    (found,) = [s for s in policy["Statement"] if s["Sid"] == sid]
    return found


def invoked_by_functions() -> set[str]:
    """The roles the deployed functions invoke: the third argument of every ``invoke(...)``
    call in byok_keeper outside ``cli/`` (the CLI runs as the operator, not as the role),
    resolved through dispatch's own constants. A literal or an unknown name fails here."""
    roles = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        if "cli" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "invoke":
                role = node.args[2]
                assert isinstance(role, ast.Name), f"{path.name}: invoke() role must be a constant"
                roles.add(getattr(dispatch, role.id))
    return roles


def test_the_code_invokes_only_its_declared_functions():
    assert invoked_by_functions() == set(dispatch.INVOKABLE) == {"reimport", "sweep"}


def test_the_role_may_invoke_exactly_the_functions_the_code_invokes():
    # With more than two targets the sweep invokes itself once per target (fc_targets): a
    # policy granting only reimport would have every per-target sweep refused on a real account.
    for prefix in ("byok-keeper", "keeper-b"):
        state = _state(FunctionPrefix=prefix)
        granted = set(_statement(state["policy"], "FanOut")["Resource"])
        v3 = dispatch.FcTarget("3.0", prefix, prefix)
        v2 = dispatch.FcTarget("2.0", prefix, _state("2.0", FunctionPrefix=prefix)["service"])
        expected = {f"acs:fc:{REGION}:{ACCOUNT}:functions/{v3.function(r)}" for r in
                    invoked_by_functions()} | {
            f"acs:fc:{REGION}:{ACCOUNT}:services/{v2.service}/functions/{v2.function(r)}"
            for r in invoked_by_functions()
        }  # fmt: skip
        assert granted == expected
        planned = {fn["name"] for fn in state["functions"].values()}
        assert {v3.function(r) for r in invoked_by_functions()} <= planned


def test_invoke_refuses_a_function_the_policy_does_not_grant():
    with pytest.raises(dispatch.InvokeError, match="not a function byok-keeper invokes"):
        dispatch.invoke(None, dispatch.FcTarget(), "events", {}, asynchronous=True)


def test_failures_may_be_published_to_exactly_the_on_failure_topic():
    for topic in ("byok-keeper-failures", "team-b-failures"):
        state = _state(FailureTopic=topic)
        destinations = {fn["async"]["on_failure"] for fn in state["functions"].values()
                        if fn["async"]}  # fmt: skip
        assert destinations == {f"acs:mns:{REGION}:{ACCOUNT}:/topics/{topic}/messages"}
        publish = _statement(state["policy"], "PublishFailures")
        assert publish["Action"] == ["mns:PublishMessage"]
        assert set(publish["Resource"]) == destinations
        mns = {a for s in state["policy"]["Statement"] for a in s["Action"] if a.startswith("mns")}
        assert mns == {"mns:PublishMessage"}


# ---- RAM's document limit (issue 26) -----------------------------------------------------------

LIMIT = 6144  # RAM CreatePolicy: PolicyDocument of 1 to 6,144 characters (docs/FIDELITY.md)


def _grants(statements: list[dict]) -> set[tuple]:
    return {(s["Effect"], a, r, json.dumps(s.get("Condition"), sort_keys=True))
            for s in statements for a in s["Action"] for r in s["Resource"]}  # fmt: skip


def _targets(n: int) -> list[str]:
    return [f"acs:ram::{1000000000000000 + i}:role/byok-keeper" for i in range(n)]


@pytest.mark.parametrize("targets", [0, 2, 100, 400])
def test_the_policy_is_rendered_as_documents_ram_accepts_granting_exactly_the_same(targets):
    state = deploy.desired_state(SOURCE, {}, REGION, ACCOUNT, "3.0", _targets(targets))
    documents = state["policies"]
    assert all(len(rampolicy.compact(d)) <= LIMIT for d in documents)
    everything = [s for d in documents for s in d["Statement"]]
    assert _grants(everything) == _grants(state["policy"]["Statement"])
    for d in documents:
        sids = [s["Sid"] for s in d["Statement"]]
        assert len(sids) == len(set(sids))
    whole = len(rampolicy.compact(state["policy"]))
    assert (len(documents) > 1) == (whole > LIMIT)
    if targets == 100:  # about 90 target roles fit one document: 100 do not
        assert whole > LIMIT and len(documents) == 2


def test_plan_prints_each_document_on_its_own_line_within_the_limit(monkeypatch, tmp_path, capsys):
    class Empty:
        def get_function(self, *args):
            return None

    monkeypatch.setattr(deploy, "_fc_client", lambda *args: Empty())
    monkeypatch.setattr(deploy, "_exists", lambda call: None)
    code = tmp_path / "code.zip"
    with zipfile.ZipFile(code, "w") as zf:
        for role in ("sweep", "reimport", "events"):
            zf.writestr(f"{role}/index.py", "")
    config = tmp_path / "byok.toml"
    config.write_text("".join(
        f'[[targets]]\nname = "t{i}"\nregion = "cn-shanghai"\n'
        f'account_id = "{arn.split(":")[3]}"\nrole_arn = "{arn}"\n\n'
        for i, arn in enumerate(_targets(100))
    ))  # fmt: skip
    rc = deploy.main(["--code", str(code), "--region", REGION, "--account-id", ACCOUNT,
                      "--config", str(config), "--plan"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    lines = [x for x in out.splitlines() if x.startswith("plan: policy ")]
    assert [x.split(" of ")[0] for x in lines] == ["plan: policy 1/2", "plan: policy 2/2"]
    documents = [json.loads(x.split("(not applied here): ", 1)[1]) for x in lines]
    assert all(len(rampolicy.compact(d)) <= LIMIT for d in documents)
    assumed = {r for d in documents for s in d["Statement"] if "sts:AssumeRole" in s["Action"]
               for r in s["Resource"]}  # fmt: skip
    assert assumed == set(_targets(100))


def test_one_resource_too_long_for_any_document_is_refused():
    policy = {"Version": "1", "Statement": [
        {"Sid": "Huge", "Effect": "Allow", "Action": ["kms:DescribeKey"],
         "Resource": ["acs:kms:x:1:key/" + "k" * LIMIT]}]}  # fmt: skip
    with pytest.raises(rampolicy.PolicyError, match="Huge"):
        rampolicy.split_policy(policy)


# ---- pinning the import grants to the enrolled keys (issue 25) ---------------------------------

IMPORTS = {"kms:GetParametersForImport", "kms:ImportKeyMaterial"}


def test_by_default_the_role_may_import_into_any_key_of_the_account_and_region():
    # The default deployment keeps key/* (docs/SECURITY.md states what that allows).
    policy = _state()["policy"]
    (manage,) = [s for s in policy["Statement"] if IMPORTS <= set(s["Action"])]
    assert manage["Resource"] == [f"acs:kms:{REGION}:{ACCOUNT}:key/*"]


@pytest.mark.parametrize("keys", [["key-a", "key-b"], []], ids=["two-keys", "empty-vault"])
def test_pinned_imports_name_exactly_the_enrolled_keys(keys):
    state = deploy.with_policies(_state(), keys)
    statements = state["policy"]["Statement"]
    importing = [s for s in statements if IMPORTS & set(s["Action"])]
    arns = {f"acs:kms:{REGION}:{ACCOUNT}:key/{k}" for k in keys}
    if keys:
        (pinned,) = importing
        assert set(pinned["Action"]) == IMPORTS and set(pinned["Resource"]) == arns
    else:
        assert importing == []  # nothing enrolled: no import grant at all
    # Everything else is untouched: the reads still cover key/*.
    (manage,) = [s for s in statements if s["Sid"] == "ManageImportedKeys"]
    assert "kms:DescribeKey" in manage["Action"] and not IMPORTS & set(manage["Action"])
    assert manage["Resource"] == [f"acs:kms:{REGION}:{ACCOUNT}:key/*"]
    assert _grants(statements) - _grants(_state()["policy"]["Statement"]) == {
        ("Allow", a, arn, "null") for a in IMPORTS for arn in arns
    }


def test_pin_keys_reads_the_file_vault_and_refuses_one_it_cannot_read(tmp_path):
    vault = tmp_path / "vault"
    params = {**_state()["parameters"], "VaultUri": f"file://{vault}"}
    vault.mkdir()
    assert deploy.enrolled_key_ids(params, REGION) == []
    with pytest.raises(deploy.DeployError, match="--pin-keys: reading the vault"):
        deploy.enrolled_key_ids({**params, "VaultUri": "nowhere://x"}, REGION)


# ---- FC's environment limits and the runtime (issue 26) ----------------------------------------


def test_deploy_refuses_more_than_4kb_of_environment_before_anything_is_created():
    state = _state(VaultUri="file:///" + "v" * 3550)  # just under 4 KB with the rest: accepted
    size = len(json.dumps(state["functions"]["sweep"]["environment"], separators=(",", ":")))
    assert 4000 < size <= deploy.MAX_ENVIRONMENT_BYTES
    with pytest.raises(deploy.DeployError, match=r"sweep: environment is \d+ bytes, FC takes"):
        _state(VaultUri="file:///" + "v" * 3600)


def test_deploy_refuses_environment_names_fc_reserves():
    source = json.loads(json.dumps(SOURCE))
    source["Functions"]["events"]["Environment"]["FC_FUNC_CODE_PATH"] = "/elsewhere"
    with pytest.raises(deploy.DeployError, match="events: environment names starting FC_"):
        deploy.desired_state(source, {}, REGION, ACCOUNT)


@pytest.mark.parametrize("runtime", ["python3.12", "python3.10"])
def test_the_runtime_is_a_parameter_with_python310_as_the_fallback(runtime):
    state = _state(Runtime=runtime)
    assert {fn["runtime"] for fn in state["functions"].values()} == {runtime}


def test_a_runtime_fc_does_not_list_is_refused():
    with pytest.raises(deploy.DeployError, match="Runtime must be one of python3.12, python3.10"):
        _state(Runtime="python3.9")

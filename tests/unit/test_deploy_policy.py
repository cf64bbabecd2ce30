"""The function role's policy as deploy.py renders it (deploy/ram-policy.json): exactly the
fc:InvokeFunction grants the code's own invocations need, and mns:PublishMessage on exactly the
OnFailure topic FC publishes exhausted invocations to with that role (issues 25 and 26)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from byok_keeper import dispatch

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "shared" / "byok_keeper"
REGION, ACCOUNT = "cn-hangzhou", "1234567890123456"

_spec = importlib.util.spec_from_file_location("deploy_script", ROOT / "deploy" / "deploy.py")
deploy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(deploy)
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

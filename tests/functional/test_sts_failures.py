"""A target's role that STS will not renew (issue 16, review of the renewal): STS refusing
(``EntityNotExist.Role``) or failing for a moment (throttled, 503) while the agent assumes the
role anew inside a KMS call. A permanent refusal stops the target with one reason and one
AssumeRole; a transient failure is retried inside the provider and the sweep completes; FC's
reimport raises so FC retries. Real SDKs, real STS and KMS of aliyun-local serving two
accounts; the role's credentials are dropped by a KMS ``InvalidSecurityToken.Expired`` refusal
(injected for account B only), so the next call assumes the role anew."""

from __future__ import annotations

import dataclasses
import json

import pytest
from structlog.testing import capture_logs

from aliyun_local.server import LocalServer
from byok_keeper.core.fleet_sweep import TargetDepsCache, sweep_all
from byok_keeper.gateway.kms import RoleUnavailable, static_credential
from byok_keeper.gateway.sts import (
    ASSUME_ATTEMPTS,
    ASSUME_BACKOFF,
    AssumedRoleProvider,
    AssumeRoleFailed,
)
from byok_keeper.runtimes import fc
from tests.functional.conftest import fc_context
from tests.functional.two_targets import (
    R1,
    A,
    B,
    base_credentials,
    enroll_in,
    load_world,
)

EXPIRED = "InvalidSecurityToken.Expired"
KEYS = 5


@pytest.fixture(scope="module")
def cloud():
    with LocalServer(accounts=[A, B], regions=[R1]) as server:
        yield server


@pytest.fixture
def world(cloud, tmp_path, monkeypatch):
    """Two targets in R1, ``hz`` (account A, long-term keys) and ``fra`` (account B through its
    role); ``KEYS`` keys in ``fra`` and two in ``hz``, every one without its material (due)."""
    cloud.reset()
    base_credentials(monkeypatch, tmp_path)
    path, settings, loaded = load_world(cloud, tmp_path, fra_region=R1)
    targets = {t.name: t for t in loaded}
    keys = {name: enroll_in(settings, targets[name], n) for name, n in (("fra", KEYS), ("hz", 2))}
    for key_id in keys["fra"] + keys["hz"]:
        cloud.emulator.tenancy.find(key_id).delete_key_material(key_id)
    return path, settings, targets, keys


def _assumed(cloud: LocalServer, code: str | None = None, *, any_code: bool = False) -> int:
    return sum(
        1 for c in cloud.calls() if c["action"] == "AssumeRole" and (any_code or c["code"] == code)
    )


def _cache(settings, targets, slept: list[float]) -> TargetDepsCache:
    """A daemon's ``Deps`` cache, ``fra``'s role assumed once, its backoff recorded (no wait)."""
    cache = TargetDepsCache(settings)
    provider = cache.get(targets["fra"]).renewal
    assert isinstance(provider, AssumedRoleProvider)
    provider._sleep = slept.append  # the one edge: the provider's sleep
    return cache


@pytest.mark.parametrize("concurrency", [1, 8])
def test_a_role_sts_refuses_while_applying_stops_that_target_after_one_refusal(
    cloud, world, concurrency
):
    """(a) and (c): KMS refuses ``fra``'s credentials once as expired, and STS refuses to assume
    the role anew (``EntityNotExist.Role``, permanent): the key in hand fails with
    ``RoleUnavailable``, no key of ``fra`` not yet started is attempted, the refusal is never
    retried (at most one AssumeRole per key in flight; one in all, one key at a time), and
    ``hz`` restores its keys."""
    _path, settings, targets, keys = world
    settings = dataclasses.replace(settings, concurrency=concurrency)
    slept: list[float] = []
    cache = _cache(settings, targets, slept)
    cloud.emulator.calls.clear()
    cloud.set_faults(fail_next={f"GetParametersForImport@{B}": [EXPIRED],
                                "AssumeRole": ["EntityNotExist.Role"] * KEYS})  # fmt: skip
    logged: list[tuple[str, dict]] = []
    with capture_logs() as logs:
        result, runs = sweep_all(cache, [targets["hz"], targets["fra"]], trigger="t", actor="t",
                                 log=lambda event, **kw: logged.append((event, kw)))  # fmt: skip
    status = {r.target.name: r for r in runs}
    assert status["hz"].ok and status["hz"].value.summary() == {"restored": 2}
    fra = {o.key_id: o for o in status["fra"].value.outcomes}
    assert set(fra) == set(keys["fra"])
    failed = [o for o in fra.values() if o.outcome == "failed"]
    skipped = [o for o in fra.values() if o.outcome == "skipped"]
    assert failed and {o.error_code for o in failed + skipped} == {"RoleUnavailable"}
    role = targets["fra"].role_arn
    assert all(f"cannot assume {role}: EntityNotExist.Role" in o.reason for o in failed)
    stopped = status["fra"].value.stopped  # the first refusal's reason
    assert stopped and all(o.reason == f"not attempted: {stopped}" for o in skipped)
    done = [o for o in fra.values() if o.outcome == "restored"]  # past STS before the refusal
    assert len(failed) + len(skipped) + len(done) == KEYS
    # A refusal is permanent: never retried, no backoff; keys in flight that waited behind it
    # share its failure, so at most one AssumeRole per key in flight (never one per due key).
    refused = _assumed(cloud, "EntityNotExist.Role")
    assert _assumed(cloud, any_code=True) == refused and not slept
    assert 1 <= refused <= len(failed)
    assert status["fra"].status()["ok"] is False
    lost = [kw for event, kw in logged if event == "kms_access_lost"]
    assert [(x["target"], x["error_type"]) for x in lost] == [("fra", "RoleUnavailable")]
    if concurrency == 1:  # one key at a time: one key tried, one AssumeRole, the rest skipped
        assert (len(failed), len(skipped), len(done), refused) == (1, KEYS - 1, 0, 1)
    warned = [e for e in logs if e["event"] == "assumed_role_unavailable"]
    assert warned and all(e["code"] == "EntityNotExist.Role" for e in warned)
    assert result.failed
    # STS accepts again: the next sweep assumes the role once and restores every key.
    cloud.set_faults()
    again, runs = sweep_all(cache, [targets["fra"]], trigger="t", actor="t")
    summary = again.summary()  # a key refused after its import went through is ok now
    assert runs[0].ok and set(summary) <= {"restored", "ok"}
    assert summary.get("restored", 0) + summary.get("ok", 0) == KEYS - len(done)
    assert {cloud.key_view(k)["state"] for k in keys["fra"]} == {"Enabled"}


@pytest.mark.parametrize(
    "transient", [["Throttling.User"], ["ServiceUnavailable", "InternalError"]]
)
def test_a_transient_sts_failure_is_retried_and_the_sweep_completes(cloud, world, transient):
    """(b): STS throttles or answers 5xx on the renewal inside a KMS call; the provider retries
    with backoff and the sweep restores every key, none failed."""
    _path, settings, targets, _keys = world
    settings = dataclasses.replace(settings, concurrency=1)
    slept: list[float] = []
    cache = _cache(settings, targets, slept)
    cloud.emulator.calls.clear()
    cloud.set_faults(fail_next={f"GetParametersForImport@{B}": [EXPIRED],
                                "AssumeRole": list(transient)})  # fmt: skip
    result, runs = sweep_all(cache, [targets["hz"], targets["fra"]], trigger="t", actor="t")
    assert all(r.ok for r in runs) and not result.failed
    assert result.summary() == {"restored": KEYS + 2}
    assert _assumed(cloud, any_code=True) == len(transient) + 1  # failed ones, then success
    assert slept == list(ASSUME_BACKOFF[: len(transient)])


def test_sts_failing_on_every_attempt_is_bounded_and_transient(cloud, world):
    """Throttled on every attempt: ``ASSUME_ATTEMPTS`` AssumeRoles, then the target stops with
    ``RoleUnavailable`` marked transient (the cached credentials were refused: none to keep)."""
    _path, settings, targets, _keys = world
    slept: list[float] = []
    deps = _cache(settings, targets, slept).get(targets["fra"])
    cloud.emulator.calls.clear()
    throttled = ["Throttling.User"] * (ASSUME_ATTEMPTS + 1)
    cloud.set_faults(fail_next={f"DescribeKey@{B}": [EXPIRED], "AssumeRole": throttled})
    with pytest.raises(RoleUnavailable) as exc:
        deps.gateway.describe_key("missing")
    assert exc.value.transient and exc.value.code == "Throttling.User"
    assert _assumed(cloud, any_code=True) == ASSUME_ATTEMPTS and len(slept) == ASSUME_ATTEMPTS - 1


def test_still_valid_credentials_are_kept_when_a_refresh_fails_transiently(cloud):
    """Past the refresh margin but before their end, a refresh STS answers 503 keeps the cached
    credentials (one warning), asks STS again only a minute later, and fails once they end."""
    from byok_keeper.gateway.sts import REFRESH_MARGIN, RETRY_REFRESH_AFTER

    cloud.reset()
    now = [1000.0]
    slept: list[float] = []
    provider = AssumedRoleProvider(
        role_arn=f"acs:ram::{B}:role/byok-keeper",
        session_name="byok-keeper-fra",
        region=R1,
        endpoint=f"http://{cloud.sts_endpoint}",
        base_credential=static_credential("local", "local-secret"),
        clock=lambda: now[0],
        sleep=slept.append,
    )
    first = provider.get_credentials()
    now[0] += 3600 - REFRESH_MARGIN + 1  # inside the margin: a refresh is due
    cloud.set_faults(fail_next={"AssumeRole": ["ServiceUnavailable"] * 10})
    with capture_logs() as logs:
        assert provider.get_credentials() is first
        assert provider.get_credentials() is first  # no second refresh before a minute
    assert _assumed(cloud, "ServiceUnavailable") == ASSUME_ATTEMPTS
    warned = [e for e in logs if e["event"] == "assumed_role_refresh_failed"]
    assert [(e["code"], e["role_arn"]) for e in warned] == [
        ("ServiceUnavailable", provider.role_arn)
    ]
    assert first.get_security_token() not in repr(logs)
    now[0] += RETRY_REFRESH_AFTER
    cloud.set_faults()
    second = provider.get_credentials()
    assert second is not first and provider.assumed == 2
    # A permanent refusal is never papered over, even with credentials still valid.
    now[0] += 3600 - REFRESH_MARGIN + 1
    cloud.set_faults(fail_next={"AssumeRole": ["NoPermission"]})
    with pytest.raises(AssumeRoleFailed, match="NoPermission") as exc:
        provider.get_credentials()
    assert exc.value.transient is False
    # Past their end, a transient failure is raised too.
    now[0] += REFRESH_MARGIN
    cloud.set_faults(fail_next={"AssumeRole": ["Throttling.User"] * ASSUME_ATTEMPTS})
    with pytest.raises(AssumeRoleFailed, match="Throttling.User") as exc:
        provider.get_credentials()
    assert exc.value.transient is True


def test_fc_reimport_raises_so_fc_retries_a_transient_role_failure(cloud, world, monkeypatch):
    """(d): the reimport function, its target's role not assumable anew for a moment (STS 503
    on every attempt), raises ``RetryableFailure``: FC retries, and the retry restores the key."""
    path, _settings, targets, keys = world
    monkeypatch.setenv("BYOK_CONFIG", str(path))
    monkeypatch.setenv("BYOK_DISPATCH", "inline")
    fc.RUNTIME = fc.Runtime()  # a cold instance
    context = fc_context(cloud)
    key_id = keys["fra"][0]
    event = json.dumps({"key_id": key_id, "reason": "t", "requested_by": "t", "target": "fra"})
    provider = fc.RUNTIME.targets_cache(context).get(targets["fra"]).renewal
    monkeypatch.setattr(provider, "_sleep", lambda _s: None)
    down = ["ServiceUnavailable"] * ASSUME_ATTEMPTS
    cloud.set_faults(fail_next={f"DescribeKey@{B}": [EXPIRED], "AssumeRole": down})
    with pytest.raises(fc.RetryableFailure, match="cannot assume .*: ServiceUnavailable"):
        fc.handle_reimport(event.encode(), context)
    assert cloud.key_view(key_id)["state"] == "PendingImport"
    assert fc.retryable("RoleUnavailable")
    done = fc.handle_reimport(event.encode(), context)  # FC's retry, STS back
    assert done["ok"] and cloud.key_view(key_id)["state"] == "Enabled"

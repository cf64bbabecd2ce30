"""A target's assumed role refused as expired mid-run (issue 16): KMS answers
``InvalidSecurityToken.Expired`` for credentials our own clock still holds fresh (the emulator's
clock jumped past the session's end). The agent drops them, assumes the role once more and
retries the call once; refused again, the target stops with one clear error. Real SDKs, real
STS and KMS of aliyun-local serving two accounts."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from structlog.testing import capture_logs

from aliyun_local.server import LocalServer
from byok_keeper.core.enroll import CreateRequest, enroll
from byok_keeper.core.fleet_sweep import TargetDepsCache, sweep_all
from byok_keeper.core.multi import target_deps
from byok_keeper.crypto.material import generate_material
from byok_keeper.domain.lease import parse_lease
from byok_keeper.gateway.kms import (
    ENROLL,
    READ_ONLY,
    AssumedRoleExpired,
    KmsApiError,
    NoKmsAccess,
    RoleUnavailable,
    static_credential,
)
from byok_keeper.gateway.sts import AssumedRoleProvider
from tests.functional.two_targets import (
    R1,
    A,
    B,
    base_credentials,
    enroll_in,
    load_world,
)

EXPIRED = "InvalidSecurityToken.Expired"
KEYS = 6  # more than one sweep thread meets the refusal at once (concurrency 8)


@pytest.fixture(scope="module")
def cloud():
    with LocalServer(accounts=[A, B], regions=[R1]) as server:
        yield server


@pytest.fixture
def world(cloud, tmp_path, monkeypatch):
    """Settings with two targets in R1: ``hz`` (account A, long-term keys) and ``fra``
    (account B through its role); ``KEYS`` keys enrolled in ``fra``."""
    cloud.reset()
    base_credentials(monkeypatch, tmp_path)
    _path, settings, loaded = load_world(cloud, tmp_path, fra_region=R1)
    targets = {t.name: t for t in loaded}
    keys = enroll_in(settings, targets["fra"], KEYS)
    return settings, targets, keys


def _calls(cloud: LocalServer, action: str | None, code: str | None = None) -> int:
    return sum(
        1 for c in cloud.calls() if action in (None, c["action"]) and code in (None, c["code"])
    )


def _lose_material(cloud: LocalServer, key_id: str) -> None:
    cloud.emulator.tenancy.find(key_id).delete_key_material(key_id)


def test_a_sweep_recovers_when_its_role_is_refused_as_expired_between_runs(cloud, world):
    settings, targets, keys = world
    cache = TargetDepsCache(settings)  # one Deps for the daemon's life, as run_daemon keeps it
    _lose_material(cloud, keys[0])
    result, runs = sweep_all(cache, [targets["fra"]], trigger="test", actor="t")
    assert runs[0].ok and result.summary().get("restored") == 1
    assumed = _calls(cloud, "AssumeRole")
    # The role's session ends (KMS's clock), 59 minutes before our clock would renew it.
    cloud.advance_clock(3601)
    _lose_material(cloud, keys[1])
    with capture_logs() as logs:
        result, runs = sweep_all(cache, [targets["fra"]], trigger="test", actor="t")
    assert runs[0].ok, runs[0].error
    assert result.summary().get("restored") == 1
    assert {cloud.key_view(k)["state"] for k in keys} == {"Enabled"}
    # Several threads were refused at once; the role was assumed exactly once more.
    assert _calls(cloud, "AssumeRole") == assumed + 1
    refused = _calls(cloud, None, EXPIRED)
    assert 1 <= refused <= KEYS
    provider = cache.get(targets["fra"]).renewal
    assert provider is not None and provider.invalidated == 1
    lines = [e for e in logs if e["event"] == "assumed_role_expired"]
    assert len(lines) == refused and sum(e["dropped"] for e in lines) == 1
    assert all(e["role_arn"] == targets["fra"].role_arn for e in lines)
    secret = provider.get_credentials()
    shown = repr(lines)
    assert secret.get_security_token() not in shown
    assert secret.get_access_key_secret() not in shown


def test_the_same_deps_recovers_between_two_operations(cloud, world):
    settings, targets, keys = world
    deps = target_deps(settings, targets["fra"], READ_ONLY)
    assert deps.gateway.describe_key(keys[0]).key_state == "Enabled"
    cloud.advance_clock(3601)
    assumed = _calls(cloud, "AssumeRole")
    # The retry is signed with the new credentials: KMS accepts it (the old ones stay refused).
    assert deps.gateway.describe_key(keys[1]).key_state == "Enabled"
    assert _calls(cloud, "AssumeRole") == assumed + 1
    assert _calls(cloud, "DescribeKey", EXPIRED) == 1
    assert deps.gateway.describe_key(keys[2]).key_state == "Enabled"  # no more renewals
    assert _calls(cloud, "AssumeRole") == assumed + 1


def test_a_second_refusal_after_assuming_anew_is_one_clear_error(cloud, world):
    settings, targets, keys = world
    deps = target_deps(settings, targets["fra"], READ_ONLY)
    assumed, described = _calls(cloud, "AssumeRole"), _calls(cloud, "DescribeKey")
    cloud.set_faults(fail_next={"DescribeKey": [EXPIRED] * 3})
    with pytest.raises(AssumedRoleExpired) as exc:
        deps.gateway.describe_key(keys[0])
    assert exc.value.code == EXPIRED and targets["fra"].role_arn in str(exc.value)
    assert "also just after assuming the role anew" in str(exc.value)
    # Bounded: two attempts, one AssumeRole, the third fault still pending.
    assert _calls(cloud, "DescribeKey") == described + 2
    assert _calls(cloud, "AssumeRole") == assumed + 1
    assert cloud.emulator.faults.to_json()["fail_next"] == {"DescribeKey": [EXPIRED]}


def test_a_role_that_cannot_be_assumed_anew_fails_the_call_with_stss_reason(cloud, world):
    settings, targets, keys = world
    deps = target_deps(settings, targets["fra"], READ_ONLY)
    cloud.advance_clock(3601)
    assumed = _calls(cloud, "AssumeRole")
    cloud.set_faults(fail_next={"AssumeRole": ["EntityNotExist.Role"] * 2})
    with pytest.raises(RoleUnavailable, match="cannot assume .*: EntityNotExist.Role") as exc:
        deps.gateway.describe_key(keys[0])
    assert isinstance(exc.value, NoKmsAccess)  # the target stops, not one key fails
    assert (exc.value.code, exc.value.role_arn) == ("EntityNotExist.Role", targets["fra"].role_arn)
    assert exc.value.transient is False
    # Permanent: one AssumeRole, not retried by STS's provider nor as if KMS were down.
    assert _calls(cloud, "AssumeRole") == assumed + 1
    cloud.set_faults()
    assert deps.gateway.describe_key(keys[0]).key_state == "Enabled"  # STS is back
    assert _calls(cloud, "AssumeRole") == assumed + 2


def test_long_term_credentials_are_not_retried(cloud, world):
    settings, targets, _keys = world
    deps = target_deps(settings, targets["hz"], READ_ONLY)
    assert deps.renewal is None and deps.gateway.renewal is None
    listed, assumed = _calls(cloud, "ListKeys"), _calls(cloud, "AssumeRole")
    cloud.set_faults(fail_next={"ListKeys": [EXPIRED] * 2})
    with pytest.raises(KmsApiError) as exc:
        deps.gateway.list_keys()
    assert not isinstance(exc.value, AssumedRoleExpired)
    assert (exc.value.code, exc.value.status) == (EXPIRED, 403)
    assert _calls(cloud, "ListKeys") == listed + 1
    assert _calls(cloud, "AssumeRole") == assumed


def test_invalidate_drops_the_credentials_once_when_many_threads_ask(cloud):
    cloud.reset()
    provider = AssumedRoleProvider(
        role_arn=f"acs:ram::{B}:role/byok-keeper",
        session_name="byok-keeper-fra",
        region=R1,
        endpoint=f"http://{cloud.sts_endpoint}",
        base_credential=static_credential("local", "local-secret"),
    )
    assert provider.invalidate() is False  # this thread was never served
    first = provider.get_credentials()
    threads_n = 8
    barrier = threading.Barrier(threads_n)
    dropped: list[bool] = []
    lock = threading.Lock()

    def refused_caller() -> None:
        provider.get_credentials()  # signed a call with generation 1 ...
        barrier.wait(timeout=30)  # ... which KMS refused, in every thread at once
        result = provider.invalidate()
        with lock:
            dropped.append(result)

    workers = [threading.Thread(target=refused_caller) for _ in range(threads_n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert sorted(dropped) == [False] * (threads_n - 1) + [True]
    second = provider.get_credentials()
    assert provider.assumed == 2 and second.get_access_key_id() != first.get_access_key_id()
    # Late refusals of generation 1 cannot drop generation 2.
    assert provider.invalidate(generation=1) is False
    assert provider.get_credentials() is second and provider.assumed == 2
    assert provider.invalidate() is True and provider.invalidated == 2  # this thread's: 2


def _lose_all(cloud: LocalServer, settings, target, keys: list[str], more: int) -> list[str]:
    """Enroll ``more`` keys in ``target``; every key of ``keys`` and those lose their material."""
    deps = target_deps(settings, target, ENROLL)
    create = CreateRequest("EC_P256", "SIGN/VERIFY", "kst-local-software")
    keys = keys + [
        enroll(deps.gateway, deps.require_vault(), generate_material("EC_P256"),
               lease=parse_lease("30d"), create=create).key_id
        for _ in range(more)
    ]  # fmt: skip
    for key_id in keys:
        _lose_material(cloud, key_id)
    return keys


@pytest.mark.parametrize("concurrency", [1, 8])
def test_a_role_refused_twice_while_applying_stops_that_target_only(cloud, world, concurrency):
    """KMS refuses ``fra``'s assumed-role credentials as expired on its first import's
    GetParametersForImport, and again after the role is assumed anew (injected for account B
    only): the key in hand fails with ``AssumedRoleExpired``, no key of ``fra`` not yet started
    is attempted (each ``skipped``, "not attempted", same reason), the refusal costs at most one
    AssumeRole per key in flight, and ``hz`` restores its keys."""
    settings, targets, keys = world
    settings = dataclasses.replace(settings, concurrency=concurrency)
    cache = TargetDepsCache(settings)
    fra_keys = _lose_all(cloud, settings, targets["fra"], keys, 0)
    hz_keys = _lose_all(cloud, settings, targets["hz"], [], 2)
    cache.get(targets["fra"])  # the role assumed once, before the count
    cloud.emulator.calls.clear()
    assumed = _calls(cloud, "AssumeRole")
    cloud.set_faults(fail_next={f"GetParametersForImport@{B}": [EXPIRED] * (2 * KEYS)})
    logged: list[tuple[str, dict]] = []
    result, runs = sweep_all(cache, [targets["hz"], targets["fra"]], trigger="t", actor="t",
                             log=lambda event, **kw: logged.append((event, kw)))  # fmt: skip
    status = {r.target.name: r for r in runs}
    assert status["hz"].ok and status["fra"].ok
    hz = {o.key_id: o for o in status["hz"].value.outcomes}
    assert {hz[k].outcome for k in hz_keys} == {"restored"}
    fra = status["fra"].value.outcomes
    assert {o.key_id for o in fra} == set(fra_keys)
    failed = [o for o in fra if o.outcome == "failed"]
    skipped = [o for o in fra if o.outcome == "skipped"]
    assert failed and len(failed) + len(skipped) == KEYS
    assert {o.error_code for o in fra} == {"AssumedRoleExpired"}
    assert all(o.reason == f"not attempted: {failed[0].reason}" for o in skipped)
    # Every key fra attempted was refused twice; none reached ImportKeyMaterial.
    gpfi = [c for c in cloud.calls() if c["action"] == "GetParametersForImport"]
    assert sum(1 for c in gpfi if c["account_id"] == B) == 2 * len(failed)
    assert not [c for c in cloud.calls() if c["action"] == "ImportKeyMaterial"
                and c["account_id"] == B]  # fmt: skip
    assert {cloud.key_view(k)["state"] for k in fra_keys} == {"PendingImport"}
    renewed = _calls(cloud, "AssumeRole") - assumed
    assert 1 <= renewed <= len(failed)
    if concurrency == 1:  # one key at a time: exactly one key tried, one AssumeRole more
        assert (len(failed), renewed) == (1, 1)
    lost = [kw for event, kw in logged if event == "kms_access_lost"]
    expected = {"target": "fra", "error": failed[0].reason[:300]}
    assert lost == [{**expected, "error_type": "AssumedRoleExpired", "not_attempted": len(skipped)}]
    # The merged result fails (exit 1), and the next sweep, KMS accepting again, restores fra.
    assert result.failed
    cloud.set_faults()
    again, runs = sweep_all(cache, [targets["fra"]], trigger="t", actor="t")
    assert runs[0].ok and again.summary() == {"restored": KEYS}


def _fra_gateway(settings, fra, sleeps: list[float]):
    """fra's gateway on its assumed role, as ``target_deps`` builds it, sleeping into ``sleeps``."""
    from byok_keeper.core.multi import target_signing
    from byok_keeper.gateway.kms import KmsGateway, build_client

    signing, provider = target_signing(settings, fra)
    client = build_client(region=fra.region, endpoint=fra.kms_endpoint, credential=signing)
    return KmsGateway(client, READ_ONLY, region=fra.region, sleep=sleeps.append, renewal=provider)


def test_the_call_refused_as_expired_is_sent_again_at_once(cloud, world):
    """The refused attempt did nothing: after assuming the role anew the call is sent again
    without a backoff (one AssumeRole already stands between the two)."""
    settings, targets, keys = world
    sleeps: list[float] = []
    gateway = _fra_gateway(settings, targets["fra"], sleeps)
    cloud.set_faults(fail_next={"DescribeKey": [EXPIRED]})
    assert gateway.describe_key(keys[0]).key_state == "Enabled"
    assert sleeps == [0.0]
    assert gateway.requests == {("DescribeKey", EXPIRED): 1, ("DescribeKey", "OK"): 1}


def test_the_renewals_own_try_does_not_spend_the_retry_budget(cloud, world):
    """After the renewal the call still has every one of its retries for KMS's own faults."""
    settings, targets, keys = world
    sleeps: list[float] = []
    gateway = _fra_gateway(settings, targets["fra"], sleeps)
    attempts = gateway.retry.max_attempts
    cloud.set_faults(fail_next={"DescribeKey": [EXPIRED] + ["InternalFailure"] * (attempts - 1)})
    assert gateway.describe_key(keys[0]).key_state == "Enabled"
    assert sum(gateway.requests.values()) == attempts + 1
    assert len(sleeps) == attempts

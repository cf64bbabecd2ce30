"""The KMS gateway: allowlists, retries, backoff, the request budget and the clock."""

from __future__ import annotations

import os

import pytest

from byok_keeper.domain.errors import ConfigError
from byok_keeper.gateway.kms import (
    ENROLL,
    FORBIDDEN,
    READ_ONLY,
    SWEEP,
    ActionNotAllowed,
    KmsApiError,
    KmsUnavailable,
    RequestBudget,
    RetryPolicy,
    split_endpoint,
)
from tests.functional.conftest import make_gateway


@pytest.mark.parametrize("action", sorted(FORBIDDEN))
def test_a_forbidden_action_is_refused_even_from_an_allowlist_that_names_it(emulator, kms, action):
    # kms.py asserts at import that no shipped allowlist names a forbidden action; this is the
    # second wall, in the one path to the SDK, for an allowlist built anywhere else.
    from byok_keeper.gateway.kms import Allowlist

    rogue = make_gateway(emulator, Allowlist("rogue", frozenset({action, "DescribeKey"})))
    method = getattr(rogue._client, _snake(action), lambda *a: pytest.fail("reached the SDK"))
    with pytest.raises(ActionNotAllowed, match=f"{action} is not allowed for rogue"):
        rogue._call(action, method, object())
    assert emulator.calls() == []


def _snake(action: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in action).lstrip("_")


def test_each_allowlist_holds_what_its_caller_needs_and_no_more():
    assert "CreateKey" in ENROLL.actions and "CreateKey" not in SWEEP.actions
    assert "TagResource" in ENROLL.actions and "TagResource" not in SWEEP.actions
    assert SWEEP.actions & {"ImportKeyMaterial"} and not READ_ONLY.actions & {"ImportKeyMaterial"}


def test_action_outside_the_allowlist_never_reaches_kms(emulator, kms):
    gateway = make_gateway(emulator, SWEEP)
    with pytest.raises(ActionNotAllowed, match="CreateKey is not allowed for sweep"):
        gateway.create_key(
            key_spec="EC_P256", key_usage="SIGN/VERIFY", instance_id="x", description="", tags={}
        )
    with pytest.raises(ActionNotAllowed):
        gateway.tag_key("key-x", {"a": "b"})
    assert emulator.calls() == []


def test_throttling_is_retried_after_the_servers_hint(emulator, kms):
    sleeps: list[float] = []
    gateway = make_gateway(emulator, READ_ONLY, sleep=sleeps.append)
    emulator.set_faults(fail_next={"ListKeys": ["Rejected.Throttling"] * 2})
    assert gateway.list_keys() == []
    assert sleeps == [1.0, 1.0]  # x-acs-retry-after: 1000 ms, honoured
    assert gateway.stats["throttled"] == 2 and gateway.stats["retries"] == 2


class _Dice:
    """The jitter's random source (a true edge), fixed at a fraction of each draw's range."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, low: float, high: float) -> float:
        self.ranges.append((low, high))
        return low + (high - low) * self.fraction


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_5xx_and_dropped_connections_back_off_with_capped_full_jitter(emulator, kms, fraction):
    sleeps: list[float] = []
    dice = _Dice(fraction)
    gateway = make_gateway(
        emulator,
        READ_ONLY,
        sleep=sleeps.append,
        rng=dice,
        retry=RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=1.0),
    )
    emulator.set_faults(
        fail_next={"ListKeys": ["InternalFailure", "DropConnection", "ServiceUnavailableTemporary"]}
    )
    assert gateway.list_keys() == []
    # Full jitter: each delay is drawn from [0, min(cap, base * 2^(attempt-1))].
    assert dice.ranges == [(0, 0.5), (0, 1.0), (0, 1.0)]
    assert sleeps == [0.5 * fraction, 1.0 * fraction, 1.0 * fraction]


def test_backoff_with_the_real_random_source_is_neither_zero_nor_over_the_cap(emulator, kms):
    sleeps: list[float] = []
    gateway = make_gateway(
        emulator, READ_ONLY, sleep=sleeps.append, retry=RetryPolicy(max_attempts=40, max_delay=2.0)
    )
    emulator.set_faults(fail_next={"ListKeys": ["InternalFailure"] * 30})
    assert gateway.list_keys() == []
    assert len(sleeps) == 30 and all(0 <= s <= 2.0 for s in sleeps)
    assert sum(sleeps) > 5  # 30 draws from ranges averaging ~1 s: a zero backoff cannot pass


def test_client_errors_are_not_retried_and_carry_their_fields(emulator, kms):
    sleeps: list[float] = []
    gateway = make_gateway(emulator, READ_ONLY, sleep=sleeps.append)
    with pytest.raises(KmsApiError) as exc:
        gateway.describe_key("key-missing")
    assert (exc.value.code, exc.value.status, exc.value.action) == (
        "Forbidden.KeyNotFound",
        404,
        "DescribeKey",
    )
    assert exc.value.request_id and exc.value.request_id in str(exc.value)
    assert sleeps == [] and len(emulator.calls()) == 1


def test_retries_are_bounded(emulator, kms):
    gateway = make_gateway(emulator, READ_ONLY, retry=RetryPolicy(max_attempts=3))
    emulator.set_faults(error_rate=1.0)
    with pytest.raises(KmsApiError) as exc:
        gateway.list_keys()
    assert exc.value.code == "ServiceUnavailableTemporary"
    assert len(emulator.calls()) == 3


def test_create_key_is_not_retried_after_an_unknown_outcome(emulator, kms):
    gateway = make_gateway(emulator, ENROLL)
    emulator.set_faults(fail_next={"CreateKey": ["DropConnection"]})
    with pytest.raises(KmsUnavailable) as exc:
        gateway.create_key(
            key_spec="EC_P256",
            key_usage="SIGN/VERIFY",
            instance_id="kst-local-software",
            description="",
            tags={},
        )
    assert "EncryptedKeyMaterial" not in str(exc.value) and "?" not in str(exc.value)
    assert len(emulator.calls()) == 1


def test_budget_spaces_calls_to_the_configured_rate():
    now = [0.0]
    waits: list[float] = []
    budget = RequestBudget(read_qps=10, write_qps=5, monotonic=lambda: now[0], sleep=waits.append)
    for _ in range(30):
        budget.spend("DescribeKey")
    # Half a second of burst (5 calls), then 25 calls at 10 per second: the last waits ~2.5 s.
    assert len(waits) == 25
    assert max(waits) == pytest.approx(2.5, abs=0.11)
    budget.spend("AsymmetricSign")  # not a key-management call: free
    assert len(waits) == 25


def test_clock_comes_from_the_date_header(emulator, kms):
    gateway = make_gateway(emulator, READ_ONLY)
    assert gateway.clock_offset is None
    emulator.advance_clock(3600)
    gateway.list_keys()
    assert gateway.clock_offset == pytest.approx(3600, abs=2)
    assert gateway.now().timestamp() == pytest.approx(emulator.now(), abs=2)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://127.0.0.1:8080", ("http", "127.0.0.1:8080")),
        ("kms.cn-hangzhou.aliyuncs.com", ("https", "kms.cn-hangzhou.aliyuncs.com")),
        ("HTTPS://kms.example/", ("https", "kms.example")),
    ],
)
def test_endpoint_parsing(endpoint, expected):
    assert split_endpoint(endpoint) == expected


@pytest.mark.parametrize("endpoint", ["ftp://x", "http://", "http://a/b"])
def test_bad_endpoints_are_config_errors(endpoint):
    with pytest.raises(ConfigError):
        split_endpoint(endpoint)


def test_a_clock_kms_refuses_stops_at_the_first_call_without_retrying(emulator, kms, mocker):
    from byok_keeper.gateway.kms import ClockSkewError
    from tests.functional.conftest import skew_local_clock

    sleeps: list[float] = []
    gateway = make_gateway(emulator, READ_ONLY, sleep=sleeps.append)
    skew_local_clock(mocker, 3 * 3600)
    with pytest.raises(ClockSkewError, match="InvalidTimeStamp.Expired"):
        gateway.list_keys()
    assert [c["code"] for c in emulator.calls()] == ["InvalidTimeStamp.Expired"]
    assert sleeps == [] and gateway.stats["retries"] == 0


def test_every_attempt_spends_the_budget_and_is_counted(emulator, kms):
    """A retried call costs the account one request per attempt: the budget must see each."""
    spent: list[str] = []

    class Recording(RequestBudget):
        def spend(self, action: str) -> None:
            spent.append(action)

    gateway = make_gateway(emulator, READ_ONLY, budget=Recording())
    emulator.set_faults(fail_next={"ListKeys": ["InternalFailure", "Throttling.User"]})
    assert gateway.list_keys() == []
    assert spent == ["ListKeys"] * 3
    assert gateway.stats["calls"] == 3 and gateway.stats["retries"] == 2
    assert len(emulator.calls()) == 3


def test_a_gateway_under_another_allowlist_shares_budget_clock_and_key_versions(emulator, kms):
    gateway = make_gateway(emulator, ENROLL)
    other = gateway.with_allowlist(READ_ONLY)
    assert other is not None and other.allowlist is READ_ONLY
    assert other.budget is gateway.budget and other.region == gateway.region
    with pytest.raises(ActionNotAllowed):
        other.tag_key("key-x", {"a": "b"})


# ---- what each attempt costs, and when CreateKey is sent again -----------------------------

_CREATE = dict(key_spec="EC_P256", key_usage="SIGN/VERIFY", instance_id="kst-local-software",
               description="", tags={})  # fmt: skip


@pytest.mark.parametrize(
    "fault, sent_again",
    [
        ("DropConnection", False),  # no answer: KMS may have created it
        ("InternalFailure", False),  # a 5xx: the same
        ("ServiceUnavailableTemporary", False),
        ("Rejected.Throttling", True),  # refused for rate: nothing was done
        ("Throttling.User", True),
    ],
)
def test_create_key_is_sent_again_only_after_a_refusal_that_did_nothing(
    emulator, kms, fault, sent_again
):
    gateway = make_gateway(emulator, ENROLL)
    emulator.set_faults(fail_next={"CreateKey": [fault]})
    if sent_again:
        assert gateway.create_key(**_CREATE).key_id
        assert [c["action"] for c in emulator.calls()] == ["CreateKey", "CreateKey"]
    else:
        with pytest.raises((KmsApiError, KmsUnavailable)):
            gateway.create_key(**_CREATE)
        assert len(emulator.calls()) == 1
    assert gateway.stats["calls"] == (2 if sent_again else 1)


@pytest.mark.parametrize(
    "fault, max_delay, slept",
    [
        ("Rejected.Throttling", 5.0, [1.0]),  # x-acs-retry-after: 1000 ms is one second
        ("Rejected.Throttling", 0.25, [0.25]),  # a hint over the cap is capped
        ("Rejected.Throttling/no-retry-after", 5.0, [0.3]),  # no hint: the backoff's draw
        ("Throttling.Api", 5.0, [0.3]),
    ],
)
def test_a_throttled_call_waits_for_the_hint_in_seconds_capped_else_backs_off(
    emulator, kms, fault, max_delay, slept
):
    sleeps: list[float] = []
    dice = _Dice(0.5)
    retry = RetryPolicy(max_attempts=5, base_delay=0.6, max_delay=max_delay)
    gateway = make_gateway(emulator, READ_ONLY, sleep=sleeps.append, rng=dice, retry=retry)
    emulator.set_faults(fail_next={"ListKeys": [fault]})
    assert gateway.list_keys() == []
    assert sleeps == pytest.approx(slept)
    assert gateway.stats["throttled"] == 1 and gateway.stats["retries"] == 1


def test_backoff_doubles_with_each_attempt_up_to_the_cap(emulator, kms):
    dice = _Dice(1.0)
    retry = RetryPolicy(max_attempts=6, base_delay=0.5, max_delay=3.0)
    gateway = make_gateway(emulator, READ_ONLY, rng=dice, retry=retry)
    emulator.set_faults(fail_next={"ListKeys": ["InternalFailure"] * 5})
    assert gateway.list_keys() == []
    assert dice.ranges == [(0, 0.5), (0, 1.0), (0, 2.0), (0, 3.0), (0, 3.0)]


def test_every_attempt_is_counted_by_action_and_result_code(emulator, kms):
    """``byok_keeper_kms_requests_total``: each attempt once, retries and the last failure
    included, under the code KMS answered (OK for success)."""
    gateway = make_gateway(emulator, READ_ONLY)
    faults = ["InternalFailure", "Throttling.User", "Rejected.Throttling"]
    emulator.set_faults(fail_next={"ListKeys": faults})
    gateway.list_keys()
    with pytest.raises(KmsApiError):
        gateway.describe_key("key-missing")
    assert gateway.requests == {
        ("ListKeys", "InternalFailure"): 1,
        ("ListKeys", "Throttling.User"): 1,
        ("ListKeys", "Rejected.Throttling"): 1,
        ("ListKeys", "OK"): 1,
        ("DescribeKey", "Forbidden.KeyNotFound"): 1,
    }


def test_no_credentials_anywhere_is_credentials_missing_before_any_request(
    emulator, kms, monkeypatch, tmp_path
):
    """The SDK's default chain finds nothing (no variables, no profile, no instance role): one
    ``CredentialsMissing`` (a ``NoKmsAccess``: the run stops), not a retried KMS outage."""
    from byok_keeper.gateway.kms import CredentialsMissing, KmsGateway, NoKmsAccess, build_client

    for name in [n for n in os.environ if n.startswith("ALIBABA_CLOUD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.alibabacloud or ~/.aliyun profiles
    sleeps: list[float] = []
    client = build_client(region=emulator.region, endpoint=f"http://{emulator.endpoint}")
    gateway = KmsGateway(client, READ_ONLY, region=emulator.region, sleep=sleeps.append)
    with pytest.raises(CredentialsMissing) as exc:
        gateway.list_keys()
    assert isinstance(exc.value, NoKmsAccess)
    assert emulator.calls() == [] and sleeps == []


@pytest.fixture
def debug_lines():
    """structlog at DEBUG for one test (the library default is INFO), captured."""
    import logging

    import structlog
    from structlog.testing import capture_logs

    old = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(**old)


def test_each_attempt_is_one_debug_line_of_names_and_codes(emulator, kms, debug_lines):
    gateway = make_gateway(emulator, READ_ONLY, retry=RetryPolicy(max_attempts=2))
    emulator.set_faults(fail_next={"ListKeys": ["InternalFailure"],
                                   "DescribeKey": ["InternalFailure"] * 2})  # fmt: skip
    gateway.list_keys()
    with pytest.raises(KmsApiError):
        gateway.describe_key("key-abc")
    lines = [{k: v for k, v in e.items() if k != "log_level"} for e in debug_lines
             if e["event"] == "kms_call"]  # fmt: skip
    failure = {"event": "kms_call", "result": "InternalFailure"}
    assert lines == [
        {**failure, "action": "ListKeys", "attempt": 1, "retry": True},
        {"event": "kms_call", "action": "ListKeys", "attempt": 2, "result": "ok"},
        {**failure, "action": "DescribeKey", "attempt": 1, "retry": True},
        {**failure, "action": "DescribeKey", "attempt": 2, "retry": False},
    ]

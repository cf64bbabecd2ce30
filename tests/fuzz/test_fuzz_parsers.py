"""Bounded fuzzing (hypothesis) of what reads untrusted bytes: the envelope parser and opener,
and aliyun-local's request parsing (unsigned garbage, and correctly signed requests with hostile
parameters that reach every action's parameter parsing). Each must refuse with its own error
type or a clean 4xx, never crash or answer 500. Bounded by example counts, not time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from datetime import datetime, timezone
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aliyun_local.server import LocalServer
from byok_keeper.domain.errors import InputError
from byok_keeper.vault.envelope import MAX_ENVELOPE_BYTES, parse
from tests.figures import record

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
CASES: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _figures():
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    for target, cases in sorted(CASES.items()):
        record("fuzz", target=target, cases=cases, seconds=elapsed, failures=0)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_envelope_parser_refuses_arbitrary_bytes_cleanly(data):
    CASES["envelope parser"] += 1
    # Arbitrary input is never a valid envelope: it must be refused, with our error only.
    with pytest.raises(InputError):
        parse(data, expected_key_id="key-fuzz")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=30,
)


@FUZZ
@given(
    doc=st.dictionaries(
        st.sampled_from(["format", "header", "seal", "material", "x"]), json_values, max_size=5
    )
)
def test_envelope_parser_refuses_wrong_shapes_cleanly(doc):
    CASES["envelope parser"] += 1
    # Arbitrary input is never a valid envelope: it must be refused, with our error only.
    with pytest.raises(InputError):
        parse(json.dumps(doc).encode())


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 200_000 + b"]" * 200_000,
        b"\xff\xfe\x00bad",
        b"{" * 10,
        b"x" * (MAX_ENVELOPE_BYTES + 1),
        b'{"format": "byok-keeper-envelope/1"',
        b"",
    ],
)
def test_hostile_envelope_corpus(data):
    CASES["envelope parser"] += 1
    with pytest.raises(InputError):
        parse(data)


@pytest.fixture(scope="module")
def server():
    with LocalServer() as s:
        yield s


def _post(server, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(f"{server.url}{path}", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    query=st.lists(st.tuples(st.text(min_size=1, max_size=12), st.text(max_size=40)), max_size=6),
    action=st.sampled_from(["DescribeKey", "ImportKeyMaterial", "CreateKey", "Nope", ""]),
    auth=header_text,
    body=st.binary(max_size=256),
)
def test_emulator_answers_garbage_requests_with_clean_4xx(server, query, action, auth, body):
    CASES["aliyun-local requests"] += 1
    path = "/?" + urlencode(query)
    headers = {
        "x-acs-action": action,
        "x-acs-version": "2016-01-20",
        "authorization": auth,
        "x-acs-content-sha256": "0" * 64,
        "content-type": "application/x-www-form-urlencoded",
    }
    status, doc = _post(server, path, headers, body)
    assert 400 <= status < 500, (status, doc)
    assert set(doc) >= {"RequestId", "Code", "Message"}
    assert all(c["status"] != 500 for c in server.calls()[-1:])


# ---- signed requests with hostile parameters -------------------------------------------------

ACTIONS = [
    "CreateKey", "DescribeKey", "ListKeys", "GetParametersForImport", "ImportKeyMaterial",
    "DeleteKeyMaterial", "GetPublicKey", "AsymmetricSign", "AsymmetricVerify",
    "AsymmetricEncrypt", "AsymmetricDecrypt", "TagResource", "UntagResource",
    "ListResourceTags", "EnableKey", "DisableKey", "ScheduleKeyDeletion", "CancelKeyDeletion",
    "GenerateDataKey", "Decrypt", "CreateSecret", "GetSecretValue", "PutSecretValue",
    "ListSecrets", "DescribeSecret",
]  # fmt: skip
PARAMS = [
    "KeyId", "KeySpec", "KeyUsage", "Origin", "DKMSInstanceId", "WrappingAlgorithm",
    "WrappingKeySpec", "ImportToken", "EncryptedKeyMaterial", "KeyMaterialExpireUnix",
    "Algorithm", "Digest", "Message", "Value", "CiphertextBlob", "Tags", "TagKeys",
    "Filters", "PageNumber", "PageSize", "EncryptionContext", "NumberOfBytes", "SecretName",
    "SecretData", "VersionId", "VersionStages", "PendingWindowInDays", "Protection",
]  # fmt: skip
hostile_text = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.sampled_from(["", "-1", "0", "99999999999999999999", "null", "[]", "{}", "[{}]",
                     '[{"TagKey": 1}]', '{"a": [1, {"b": null}]}', "[" * 5000 + "]" * 5000,
                     "key-" + "x" * 500, "%00", "\\x00", "AAAA", "====",
                     "1e309", "NaN", "true"]),
)  # fmt: skip


def _rpc_v1(params: dict[str, str], secret: str) -> dict[str, str]:
    """Sign as RPC v1 (HMAC-SHA1) does: the test's own signer, so requests reach the actions."""

    def enc(value: str) -> str:
        return quote(value, safe="~")

    signed = dict(
        params,
        Format="JSON",
        Version="2016-01-20",
        AccessKeyId="local",
        SignatureMethod="HMAC-SHA1",
        SignatureVersion="1.0",
        SignatureNonce=str(uuid.uuid4()),
        Timestamp=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    canonical = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(signed.items()))
    to_sign = f"POST&%2F&{enc(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    signed["Signature"] = base64.b64encode(digest).decode()
    return signed


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    action=st.sampled_from(ACTIONS),
    params=st.dictionaries(st.sampled_from(PARAMS), hostile_text, max_size=6),
)
def test_signed_requests_with_hostile_parameters_never_crash_the_emulator(server, action, params):
    CASES["aliyun-local signed requests"] += 1
    body = urlencode(_rpc_v1({"Action": action, **params}, server.access_key_secret)).encode()
    headers = {"content-type": "application/x-www-form-urlencoded"}
    status, doc = _post(server, "/", headers, body)
    assert status < 500, (action, params, doc)
    if status >= 400:
        assert set(doc) >= {"RequestId", "Code", "Message"}


def test_the_fuzz_signer_reaches_the_actions(server):
    """Guards the fuzzer: its signed requests pass authentication and reach the parameters."""
    body = urlencode(_rpc_v1({"Action": "ListKeys"}, server.access_key_secret)).encode()
    status, doc = _post(server, "/", {"content-type": "application/x-www-form-urlencoded"}, body)
    assert status == 200 and "Keys" in doc, doc
    body = urlencode(
        _rpc_v1({"Action": "TagResource", "KeyId": "key-x", "Tags": "[" * 5000 + "]" * 5000},
                server.access_key_secret)
    ).encode()  # fmt: skip
    status, doc = _post(server, "/", {"content-type": "application/x-www-form-urlencoded"}, body)
    assert 400 <= status < 500 and doc["Code"] != "IncompleteSignature", doc

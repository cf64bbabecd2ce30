"""Bounded fuzzing (hypothesis) of what reads untrusted bytes: the envelope parser and opener,
and aliyun-local's request parsing. Each must refuse with its own error type, never crash."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aliyun_local.server import LocalServer
from byok_keeper.errors import InputError
from byok_keeper.vault.envelope import MAX_ENVELOPE_BYTES, parse

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(data=st.binary(max_size=4096))
def test_envelope_parser_refuses_arbitrary_bytes_cleanly(data):
    try:
        parse(data, expected_key_id="key-fuzz")
    except InputError:
        pass


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
    try:
        parse(json.dumps(doc).encode())
    except InputError:
        pass


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
    from urllib.parse import urlencode

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

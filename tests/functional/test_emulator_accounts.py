"""aliyun-local with two accounts in two regions (issue 16), through the real KMS and STS SDKs:
each (account, region) its own KMS, AssumeRole into another account, and one admin API."""

from __future__ import annotations

import json
import urllib.request
from datetime import datetime, timezone

import pytest
from alibabacloud_kms20160120 import models as km
from alibabacloud_kms20160120.client import Client as KmsClient
from alibabacloud_sts20150401 import models as sm
from alibabacloud_sts20150401.client import Client as StsClient
from alibabacloud_tea_openapi.exceptions import ClientException, ThrottlingException
from alibabacloud_tea_openapi.models import Config

from aliyun_local.server import LocalServer

A, B = "1111111111111111", "2222222222222222"
R1, R2 = "cn-hangzhou", "cn-shanghai"
SCOPES = [(A, R1), (A, R2), (B, R1), (B, R2)]


@pytest.fixture(scope="module")
def cloud():
    with LocalServer(accounts=[A, B], regions=[R1, R2]) as server:
        yield server


@pytest.fixture
def two(cloud):
    cloud.reset()
    return cloud


def kms_client(server, account, region, **overrides) -> KmsClient:
    key_id, secret = server.access_key(account)
    config = dict(
        access_key_id=key_id,
        access_key_secret=secret,
        endpoint=server.kms_endpoints[region],
        protocol="http",
        region_id=region,
        read_timeout=30_000,
        connect_timeout=5_000,
    )
    config.update(overrides)
    return KmsClient(Config(**config))


def sts_client(server, account) -> StsClient:
    key_id, secret = server.access_key(account)
    return StsClient(
        Config(
            access_key_id=key_id,
            access_key_secret=secret,
            endpoint=server.sts_endpoint,
            protocol="http",
            region_id=R1,
            read_timeout=30_000,
            connect_timeout=5_000,
        )
    )


def assume(server, caller, role_account, **request):
    request.setdefault("role_arn", f"acs:ram::{role_account}:role/byok-keeper")
    request.setdefault("role_session_name", "byok-keeper-test")
    return sts_client(server, caller).assume_role(sm.AssumeRoleRequest(**request)).body


def as_role(server, credentials, region, **overrides) -> KmsClient:
    settings = dict(
        access_key_id=credentials.access_key_id,
        access_key_secret=credentials.access_key_secret,
        security_token=credentials.security_token,
    )
    settings.update(overrides)
    return kms_client(server, A, region, **settings)


def new_key(client) -> km.CreateKeyResponseBodyKeyMetadata:
    return client.create_key(
        km.CreateKeyRequest(
            key_spec="EC_P256",
            key_usage="SIGN/VERIFY",
            origin="EXTERNAL",
            dkmsinstance_id="kst-local-software",
        )
    ).body.key_metadata


def key_ids(client) -> set[str]:
    keys = client.list_keys(km.ListKeysRequest(page_size=100)).body.keys.key
    return {k.key_id for k in keys}


def refused(call) -> tuple[str, int]:
    with pytest.raises((ClientException, ThrottlingException)) as exc:
        call()
    return exc.value.code, exc.value.status_code


def _admin(url, path, body=None):
    req = urllib.request.Request(
        f"http://{url}/_local/{path}",
        method="POST" if body is not None else "GET",
        data=json.dumps(body).encode() if body is not None else None,
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


# ---- one KMS per account and region ----------------------------------------------------------


def test_each_account_and_region_has_its_own_keys_and_sees_no_other(two):
    clients = {scope: kms_client(two, *scope) for scope in SCOPES}
    keys = {scope: new_key(clients[scope]) for scope in SCOPES}
    for (account, region), meta in keys.items():
        assert meta.arn == f"acs:kms:{region}:{account}:key/{meta.key_id}"
        assert meta.creator == account
    for scope, client in clients.items():
        assert key_ids(client) == {keys[scope].key_id}
        for other, meta in keys.items():
            if other == scope:
                continue
            request = km.DescribeKeyRequest(key_id=meta.key_id)
            code = refused(lambda c=client, r=request: c.describe_key(r))
            assert code == ("Forbidden.KeyNotFound", 404)


def test_aliases_instances_and_secrets_are_per_account_and_region(two):
    ids = {}
    for scope in SCOPES:
        client = kms_client(two, *scope)
        ids[scope] = new_key(client).key_id
        # The same alias name in every scope: each names its own scope's key.
        client.create_alias(km.CreateAliasRequest(alias_name="alias/same", key_id=ids[scope]))
        instance = client.get_kms_instance(
            km.GetKmsInstanceRequest(kms_instance_id="kst-local-hardware")
        )
        assert instance.body.kms_instance.instance_id == "kst-local-hardware"
    client = kms_client(two, B, R2)
    named = client.describe_key(km.DescribeKeyRequest(key_id="alias/same")).body.key_metadata
    assert named.key_id == ids[(B, R2)]
    client.create_secret(km.CreateSecretRequest(secret_name="s", secret_data="b", version_id="1"))
    elsewhere = kms_client(two, B, R1)
    code, status = refused(
        lambda: elsewhere.get_secret_value(km.GetSecretValueRequest(secret_name="s"))
    )
    assert status == 404 and code.startswith("Forbidden.")


def test_quotas_are_per_account_and_region(two):
    two.set_faults(read_qps=1)
    for scope in SCOPES:  # each scope's first read takes its own bucket's only token
        kms_client(two, *scope).list_keys(km.ListKeysRequest())
    code, status = refused(lambda: kms_client(two, B, R2).list_keys(km.ListKeysRequest()))
    assert status == 429 and code == "Rejected.Throttling"


def test_the_admin_api_sees_every_account_and_region_on_every_port(two):
    meta = new_key(kms_client(two, B, R2))
    ports = [*two.kms_endpoints.values(), two.sts_endpoint]
    for port in ports:
        view = _admin(port, f"keys/{meta.key_id}")
        assert (view["key_id"], view["account_id"], view["region"]) == (meta.key_id, B, R2)
    _admin(two.sts_endpoint, "clock", {"advance_seconds": 600})
    for port in ports:
        assert 590 < _admin(port, "clock")["offset_seconds"] < 610
    (call,) = [c for c in _admin(ports[0], "calls") if c["action"] == "CreateKey"]
    assert (call["account_id"], call["region"], call["status"]) == (B, R2, 200)
    _admin(ports[1], "reset", {})
    assert _admin(ports[0], "calls") == []
    assert key_ids(kms_client(two, B, R2)) == set()


def test_the_state_file_keeps_every_account_and_region(tmp_path):
    state = tmp_path / "state.json"
    with LocalServer(accounts=[A, B], regions=[R1, R2], state_path=state) as first:
        key_id = new_key(kms_client(first, B, R2)).key_id
    with LocalServer(accounts=[A, B], regions=[R1, R2], state_path=state) as second:
        assert key_ids(kms_client(second, B, R2)) == {key_id}
        assert key_ids(kms_client(second, A, R1)) == set()
    # Served again as one account: B's keys are kept in the file, not dropped.
    with LocalServer(accounts=[A], regions=[R1], state_path=state) as third:
        assert key_ids(kms_client(third, A, R1)) == set()
    assert f"{B}/{R2}" in json.loads(state.read_text())["kms_scopes"]


def test_without_accounts_or_regions_one_account_in_one_region_as_before():
    with LocalServer() as server:
        assert server.kms_endpoints == {"cn-hangzhou": server.endpoint}
        assert server.sts_endpoint != server.endpoint
        assert server.accounts == ["1234567890123456"]
        assert new_key(kms_client(server, "1234567890123456", "cn-hangzhou")).arn.startswith(
            "acs:kms:cn-hangzhou:1234567890123456:key/"
        )


@pytest.mark.parametrize(
    ("accounts", "regions", "why"),
    [
        (["123"], ["cn-hangzhou"], "16 digits"),
        ([A, A], ["cn-hangzhou"], "given twice"),
        ([A], ["cn-hangzhou", "cn-hangzhou"], "given twice"),
        ([A], ["Hangzhou"], "region id"),
    ],
)
def test_bad_accounts_and_regions_are_refused(accounts, regions, why):
    with pytest.raises(ValueError, match=why):
        LocalServer(accounts=accounts, regions=regions)


# ---- STS AssumeRole --------------------------------------------------------------------------


def test_assume_role_gives_credentials_valid_in_the_roles_account_only(two):
    theirs = {region: new_key(kms_client(two, B, region)).key_id for region in (R1, R2)}
    mine = new_key(kms_client(two, A, R2)).key_id
    body = assume(two, A, B, duration_seconds=1800)
    creds = body.credentials
    assert creds.access_key_id.startswith("STS.") and creds.security_token
    assert body.assumed_role_user.arn == f"acs:ram::{B}:role/byok-keeper/byok-keeper-test"
    assert body.assumed_role_user.assumed_role_id.endswith(":byok-keeper-test")
    assert body.request_id
    expires = datetime.strptime(creds.expiration, "%Y-%m-%dT%H:%M:%SZ")
    left = expires.replace(tzinfo=timezone.utc).timestamp() - two.now()
    assert 1790 < left <= 1800
    for region in (R1, R2):
        role = as_role(two, creds, region)
        assert key_ids(role) == {theirs[region]}
        code = refused(lambda role=role: role.describe_key(km.DescribeKeyRequest(key_id=mine)))
        assert code == ("Forbidden.KeyNotFound", 404)
    made = new_key(as_role(two, creds, R1))
    assert made.arn.startswith(f"acs:kms:{R1}:{B}:key/")
    calls = [c for c in two.calls() if c["action"] == "AssumeRole"]
    assert [(c["account_id"], c["status"]) for c in calls] == [(A, 200)]


def test_temporary_credentials_expire_on_the_emulator_clock(two):
    creds = assume(two, A, B).credentials  # default duration: 3600 s
    role = as_role(two, creds, R1)
    two.advance_clock(3590)
    assert key_ids(role) == set()
    two.advance_clock(20)
    assert refused(lambda: role.list_keys(km.ListKeysRequest())) == (
        "InvalidSecurityToken.Expired",
        403,
    )


def test_a_wrong_missing_or_malformed_security_token_is_refused(two):
    creds = assume(two, A, B).credentials
    other = assume(two, A, B).credentials  # a valid token, of another temporary key
    mismatch = ("InvalidSecurityToken.MismatchWithAccessKey", 400)
    for token in (creds.security_token[:-2] + "xx", other.security_token):
        forged = as_role(two, creds, R1, security_token=token)
        assert refused(lambda c=forged: c.list_keys(km.ListKeysRequest())) == mismatch
    bare = as_role(two, creds, R2, security_token=None)
    assert refused(lambda: bare.list_keys(km.ListKeysRequest())) == ("MissingSecurityToken", 400)
    for token in ("not-a-token", "CAIS", creds.security_token + "!"):
        odd = as_role(two, creds, R1, security_token=token)
        assert refused(lambda c=odd: c.list_keys(km.ListKeysRequest())) == (
            "InvalidSecurityToken.Malformed",
            400,
        )
    # A long-term key with a token (it has none): the token is not the key's.
    stray = kms_client(two, A, R1, security_token=creds.security_token)
    assert refused(lambda: stray.list_keys(km.ListKeysRequest())) == mismatch
    odd = kms_client(two, A, R1, security_token="not-a-token")
    assert refused(lambda: odd.list_keys(km.ListKeysRequest()))[0] == (
        "InvalidSecurityToken.Malformed"
    )
    assert key_ids(as_role(two, creds, R1)) == set()  # the right token still works
    # The reset forgets every temporary key.
    two.reset()
    assert refused(lambda: as_role(two, creds, R1).list_keys(km.ListKeysRequest())) == (
        "InvalidAccessKeyId.NotFound",
        404,
    )


@pytest.mark.parametrize(
    ("request_fields", "code", "status"),
    [
        ({"role_arn": "acs:ram::3333333333333333:role/byok-keeper"}, "EntityNotExist.Role", 403),
        ({"role_arn": f"acs:ram::{B}:role/other"}, "EntityNotExist.Role", 403),
        ({"role_arn": f"acs:ram::{B}:user/byok-keeper"}, "InvalidParameter.RoleArn", 400),
        ({"role_session_name": "a"}, "InvalidParameter.RoleSessionName", 400),
        ({"role_session_name": "no spaces"}, "InvalidParameter.RoleSessionName", 400),
        ({"duration_seconds": 899}, "InvalidParameter.DurationSeconds", 400),
        ({"duration_seconds": 3601}, "InvalidParameter.DurationSeconds", 400),
        ({"policy": "not json"}, "InvalidParameter.PolicyGrammar", 400),
    ],
)
def test_assume_role_refuses_what_sts_refuses(two, request_fields, code, status):
    assert refused(lambda: assume(two, A, B, **request_fields)) == (code, status)


def test_an_account_may_assume_its_own_role_and_sts_knows_who_calls(two):
    assert assume(two, B, B, duration_seconds=900).credentials.access_key_id.startswith("STS.")
    creds = assume(two, B, A).credentials
    client = StsClient(
        Config(
            access_key_id=creds.access_key_id,
            access_key_secret=creds.access_key_secret,
            security_token=creds.security_token,
            endpoint=two.sts_endpoint,
            protocol="http",
            region_id=R1,
        )
    )
    who = client.get_caller_identity().body
    assert (who.account_id, who.identity_type) == (A, "AssumedRoleUser")
    assert who.arn == f"acs:ram::{A}:role/byok-keeper/byok-keeper-test"
    plain = sts_client(two, B).get_caller_identity().body
    assert (plain.account_id, plain.identity_type) == (B, "RAMUser")


def test_kms_is_not_served_on_the_sts_port(two):
    client = kms_client(two, A, R1, endpoint=two.sts_endpoint)
    assert refused(lambda: client.list_keys(km.ListKeysRequest())) == ("InvalidVersion", 400)


def test_actiontrail_events_reach_the_first_accounts_bus_from_its_first_region_only(two):
    # The event bus and FC are the first account's in the first region (docs/FIDELITY.md).
    for scope in SCOPES:
        new_key(kms_client(two, *scope))
    events = two.events()
    assert len(events) == 1
    text = json.dumps(events[0])
    assert A in text and R1 in text and B not in text and R2 not in text


def test_the_older_rpc_v1_sdk_signs_with_temporary_credentials_too(two):
    from aliyunsdkcore.acs_exception.exceptions import ServerException as V1Error
    from aliyunsdkcore.auth.credentials import StsTokenCredential
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkkms.request.v20160120 import ListKeysRequest

    theirs = new_key(kms_client(two, B, R2)).key_id
    creds = assume(two, A, B).credentials
    host, port = two.kms_endpoints[R2].rsplit(":", 1)
    credential = StsTokenCredential(
        creds.access_key_id, creds.access_key_secret, creds.security_token
    )
    client = AcsClient(region_id=R2, credential=credential, port=int(port))

    def list_keys():
        request = ListKeysRequest.ListKeysRequest()
        request.set_endpoint(host)
        request.set_protocol_type("http")
        return json.loads(client.do_action_with_exception(request))

    assert [k["KeyId"] for k in list_keys()["Keys"]["Key"]] == [theirs]
    two.advance_clock(3601)
    with pytest.raises(V1Error) as exc:
        list_keys()
    assert (exc.value.get_error_code(), exc.value.get_http_status()) == (
        "InvalidSecurityToken.Expired",
        403,
    )


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (None, "MissingSecurityToken"),
        ("not-a-token", "InvalidSecurityToken.Malformed"),
        ("other", "InvalidSecurityToken.MismatchWithAccessKey"),
    ],
)
def test_the_older_rpc_v1_sdk_sees_the_same_security_token_codes(two, token, code):
    from aliyunsdkcore.acs_exception.exceptions import ServerException as V1Error
    from aliyunsdkcore.auth.credentials import AccessKeyCredential, StsTokenCredential
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkkms.request.v20160120 import ListKeysRequest

    creds = assume(two, A, B).credentials
    if token is None:
        credential = AccessKeyCredential(creds.access_key_id, creds.access_key_secret)
    else:
        sent = assume(two, A, B).credentials.security_token if token == "other" else token
        credential = StsTokenCredential(creds.access_key_id, creds.access_key_secret, sent)
    host, port = two.kms_endpoints[R1].rsplit(":", 1)
    client = AcsClient(region_id=R1, credential=credential, port=int(port))
    request = ListKeysRequest.ListKeysRequest()
    request.set_endpoint(host)
    request.set_protocol_type("http")
    with pytest.raises(V1Error) as exc:
        client.do_action_with_exception(request)
    assert (exc.value.get_error_code(), exc.value.get_http_status()) == (code, 400)

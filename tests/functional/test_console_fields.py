"""Enrollment with the console's fields (alias, tags, description, key policy), as the seed
page's console offers them, through the real SDK against aliyun-local."""

from __future__ import annotations

import json

import pytest
from alibabacloud_kms20160120 import models as km
from alibabacloud_tea_openapi.exceptions import ClientException

from byok_keeper.core.enroll import FINGERPRINT_TAG, CreateRequest, enroll
from byok_keeper.crypto.material import generate_material
from byok_keeper.domain.errors import InputError
from byok_keeper.domain.lease import parse_lease
from tests.functional.conftest import build_world, create_external_key, describe

POLICY = json.dumps(
    {
        "Version": "1",
        "Statement": [
            {
                "Sid": "signers",
                "Effect": "Allow",
                "Principal": {"RAM": ["acs:ram::1234567890123456:role/signer"]},
                "Action": ["kms:AsymmetricSign"],
                "Resource": ["*"],
            }
        ],
    }
)


class Crash(BaseException):
    """Stands in for the process dying between two steps."""


def _crash_after_create(step, _detail):
    """Dies after CreateKey, before the alias is created."""
    if step == "create":
        raise Crash(step)


@pytest.fixture
def world(emulator, kms, tmp_path):
    return build_world(emulator, tmp_path)


def _request(**fields) -> CreateRequest:
    return CreateRequest("EC_P256", "SIGN/VERIFY", "kst-local-software", **fields)


def _aliases(kms, key_id):
    body = kms.list_aliases_by_key_id(km.ListAliasesByKeyIdRequest(key_id=key_id)).body
    return [a.alias_name for a in body.aliases.alias or []]


def _creates(emulator):
    return [c for c in emulator.calls() if c["action"] == "CreateKey"]


def test_enroll_carries_alias_tags_description_and_policy_into_kms(world, kms):
    emulator, vault, enroller, _ = world
    request = _request(
        description="payments signing",
        alias="alias/payments-signing",
        tags={"team": "payments", "cost-center": "cc/42"},
        policy=POLICY,
    )
    result = enroll(enroller, vault, generate_material("EC_P256"), lease=parse_lease("30d"),
                    create=request)  # fmt: skip
    assert _aliases(kms, result.key_id) == ["alias/payments-signing"]
    assert describe(kms, "alias/payments-signing").key_id == result.key_id
    assert describe(kms, result.key_id).description == "payments signing"
    view = emulator.key_view(result.key_id)
    assert {"team": "payments", "cost-center": "cc/42"}.items() <= view["tags"].items()
    assert FINGERPRINT_TAG in view["tags"] and len(view["tags"]) == 6
    policy = kms.get_key_policy(km.GetKeyPolicyRequest(key_id=result.key_id, policy_name="default"))
    assert json.loads(policy.body.policy) == json.loads(POLICY)
    assert enroller.with_allowlist(enroller.allowlist).aliases_of(result.key_id) == [
        "alias/payments-signing"
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"alias": "payments"}, "alias/ followed by"),
        ({"alias": "alias/has space"}, "alias/ followed by"),
        ({"alias": "alias/acs-reserved"}, "reserved"),
        ({"alias": "alias/" + "a" * 250}, "255"),
        ({"tags": {"team": "a,b"}}, "tag rule"),
        ({"tags": {"acs:x": "v"}}, "tag rule"),
        ({"tags": {"byok-keeper:hold": "x"}}, "byok-keeper's own"),
        ({"tags": {f"t{i}": "v" for i in range(17)}}, "at most 16 --tag"),
        ({"policy": "{not json"}, "not JSON"),
        ({"policy": "[]"}, "Statement"),
        ({"policy": json.dumps({"Statement": [], "pad": "x" * 33_000})}, "32768 bytes"),
    ],
)
def test_bad_console_fields_are_refused_before_anything_is_created(world, fields, message):
    emulator, vault, enroller, _ = world
    with pytest.raises(InputError, match=message):
        enroll(enroller, vault, generate_material("EC_P256"), lease=parse_lease("30d"),
               create=_request(**fields))  # fmt: skip
    assert not _creates(emulator)
    assert emulator.emulator.kms.all_keys() == [] and vault.inventory() == []


def test_an_alias_that_names_another_key_is_refused_before_creating_and_never_moved(world, kms):
    emulator, vault, enroller, _ = world
    other = create_external_key(kms, "EC_P256")
    kms.create_alias(km.CreateAliasRequest(alias_name="alias/taken", key_id=other))
    emulator.emulator.calls.clear()
    with pytest.raises(InputError, match="already names"):
        enroll(enroller, vault, generate_material("EC_P256"), lease=parse_lease("30d"),
               create=_request(alias="alias/taken"))  # fmt: skip
    assert not _creates(emulator) and not [
        c for c in emulator.calls() if c["action"] == "CreateAlias"
    ]
    assert describe(kms, "alias/taken").key_id == other


def test_a_crash_before_the_alias_is_resumed_and_the_alias_added(world, kms):
    emulator, vault, enroller, _ = world
    material = generate_material("EC_P256")

    with pytest.raises(Crash):
        enroll(enroller, vault, material, lease=parse_lease("30d"),
               create=_request(alias="alias/resumed"), on_step=_crash_after_create)  # fmt: skip
    (key,) = emulator.emulator.kms.all_keys()
    assert _aliases(kms, key.key_id) == []
    result = enroll(enroller, vault, material, lease=parse_lease("30d"),
                    create=_request(alias="alias/resumed"))  # fmt: skip
    assert result.key_id == key.key_id and result.key_state == "Enabled"
    assert _aliases(kms, key.key_id) == ["alias/resumed"]
    assert len(_creates(emulator)) == 1
    # Re-running once more is harmless: the alias already names this key.
    enroll(
        enroller, vault, material, lease=parse_lease("30d"), create=_request(alias="alias/resumed")
    )


def test_a_resumed_key_whose_alias_was_taken_meanwhile_is_refused(world, kms):
    _, vault, enroller, _ = world
    material = generate_material("EC_P256")

    with pytest.raises(Crash):
        enroll(enroller, vault, material, lease=parse_lease("30d"),
               create=_request(alias="alias/raced"), on_step=_crash_after_create)  # fmt: skip
    other = create_external_key(kms, "EC_P256")
    kms.create_alias(km.CreateAliasRequest(alias_name="alias/raced", key_id=other))
    with pytest.raises(InputError, match="never moves an alias"):
        enroll(enroller, vault, material, lease=parse_lease("30d"),
               create=_request(alias="alias/raced"))  # fmt: skip
    assert describe(kms, "alias/raced").key_id == other


def test_emulator_aliases_follow_the_documented_rules(kms):
    key_id = create_external_key(kms, "EC_P256")
    kms.create_alias(km.CreateAliasRequest(alias_name="alias/a_b-c/d", key_id=key_id))
    with pytest.raises(ClientException) as exc:
        kms.create_alias(km.CreateAliasRequest(alias_name="alias/a_b-c/d", key_id=key_id))
    assert (exc.value.code, exc.value.status_code) == ("Rejected.ResourceExist", 409)
    for bad in ("a_b", "alias/", "alias/acs:x", "alias/with space", "alias/" + "x" * 250):
        with pytest.raises(ClientException) as exc:
            kms.create_alias(km.CreateAliasRequest(alias_name=bad, key_id=key_id))
        assert exc.value.code == "InvalidParameter", bad
    listed = kms.list_aliases(km.ListAliasesRequest()).body
    assert [(a.alias_name, a.key_id) for a in listed.aliases.alias] == [("alias/a_b-c/d", key_id)]
    assert listed.aliases.alias[0].alias_arn.endswith(":alias/a_b-c/d")
    with pytest.raises(ClientException) as exc:
        kms.create_key(km.CreateKeyRequest(policy="{nope"))
    assert exc.value.code == "InvalidParameter"

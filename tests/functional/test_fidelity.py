"""Behave like the documented KMS, and survive every answer where the documentation is silent.

Each behaviour here has a row in docs/FIDELITY.md. Emulator tests go through the real SDK;
agent tests run our gateway, enrollment and re-establishment against each answer aliyun-local
can give.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from alibabacloud_kms20160120 import models as km
from alibabacloud_tea_openapi.exceptions import ClientException, ThrottlingException

from byok_keeper.core.enroll import enroll
from byok_keeper.core.reestablish import reestablish
from byok_keeper.core.verify import verify_key
from byok_keeper.crypto.material import generate_material
from byok_keeper.domain.errors import InputError
from byok_keeper.domain.lease import parse_lease
from byok_keeper.domain.tags import check_tag, check_tags
from byok_keeper.gateway.kms import (
    ENROLL,
    HOLD_ACTIONS,
    READ_ONLY,
    SWEEP,
    KmsApiError,
    RequestBudget,
)
from tests.functional.conftest import (
    build_world,
    create_external_key,
    create_request,
    describe,
    enroll_key,
    make_gateway,
)

THROTTLING_FORMS = (
    "Rejected.Throttling",
    "Rejected.Throttling/no-retry-after",
    "Throttling",
    "Throttling.User",
    "Throttling.Api",
)


def _settings(emulator, **values):
    emulator.emulator.kms.settings.update(values)


def _admin(emulator, method, route, body=None):
    request = urllib.request.Request(
        f"{emulator.url}/_local/{route}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _calls(emulator, action, key_id=None):
    return [
        c
        for c in emulator.calls()
        if c["action"] == action and (key_id is None or c["key_id"] == key_id)
    ]


# ---- key versions ------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["absent", "present"])
def test_primary_key_version_is_symmetric_only_unless_told_otherwise(emulator, kms, answer):
    _settings(emulator, primary_key_version=answer)
    asym = create_external_key(kms, "EC_P256")
    sym = kms.create_key(km.CreateKeyRequest()).body.key_metadata.key_id
    assert bool(describe(kms, asym).primary_key_version) is (answer == "present")
    assert describe(kms, sym).primary_key_version  # documented for symmetric keys


@pytest.mark.parametrize("answer", ["absent", "present"])
def test_the_agent_takes_key_versions_from_list_key_versions_once_per_key(
    emulator, kms, tmp_path, answer
):
    _settings(emulator, primary_key_version=answer)
    world = build_world(emulator, tmp_path)
    key_id, _ = enroll_key(world, "RSA_2048")
    vault = world[1]
    sweeper = make_gateway(emulator, SWEEP)  # a new run: nothing cached from enrollment
    emulator.emulator.kms.delete_key_material(key_id)
    emulator.emulator.calls.clear()
    outcome = reestablish(sweeper, vault, key_id)
    assert outcome.outcome == "restored", outcome.reason
    # GetPublicKey after the import and the canary both needed the version: one listing.
    assert len(_calls(emulator, "ListKeyVersions", key_id)) == 1
    assert len(_calls(emulator, "GetPublicKey", key_id)) == 1
    assert verify_key(sweeper.with_allowlist(READ_ONLY), vault, key_id)["result"] == "verified"


# ---- throttling --------------------------------------------------------------------------------


@pytest.mark.parametrize("form", THROTTLING_FORMS)
def test_every_form_of_throttling_reaches_the_sdk_as_documented(emulator, kms, form):
    _settings(emulator, throttling_answer=form)
    emulator.set_faults(read_qps=1)
    with pytest.raises((ThrottlingException, ClientException)) as exc:
        for _ in range(5):
            kms.list_keys(km.ListKeysRequest())
    hinted = form == "Rejected.Throttling"
    assert isinstance(exc.value, ThrottlingException) is hinted
    assert exc.value.code == form.split("/")[0]
    assert exc.value.status_code == (429 if form.startswith("Rejected") else 400)


@pytest.mark.parametrize("form", THROTTLING_FORMS)
def test_the_gateway_retries_every_form_of_throttling_even_for_create_key(emulator, kms, form):
    sleeps: list[float] = []
    gateway = make_gateway(emulator, ENROLL, sleep=sleeps.append)
    emulator.set_faults(fail_next={"CreateKey": [form, form], "ListKeys": [form]})
    key = gateway.create_key(
        key_spec="EC_P256",
        key_usage="SIGN/VERIFY",
        instance_id="kst-local-software",
        description="",
        tags={},
    )
    assert gateway.list_keys() == [key.key_id]  # exactly one key: throttled calls never ran
    assert gateway.stats["throttled"] == 3 and len(sleeps) == 3
    assert all(s > 0 for s in sleeps[:2]) or form == "Rejected.Throttling"


def test_throttling_that_never_ends_is_reported_as_throttling(emulator, kms):
    gateway = make_gateway(emulator, READ_ONLY)
    emulator.set_faults(fail_next={"DescribeKey": ["Throttling.User"] * 10})
    with pytest.raises(KmsApiError) as exc:
        gateway.describe_key("key-x")
    assert exc.value.throttled and exc.value.retryable and exc.value.status == 400


# ---- quotas ------------------------------------------------------------------------------------


def test_documented_quotas_have_a_class_each(emulator, kms):
    emulator.set_faults(quotas="documented")
    faults = emulator.emulator.faults.to_json()
    assert {k: faults[k] for k in ("read_qps", "write_qps", "create_qps", "crypto_qps")} == {
        "read_qps": 50.0,
        "write_qps": 30.0,
        "create_qps": 10.0,
        "crypto_qps": 200.0,
    }
    assert faults["tags_qps"] == 300.0
    with pytest.raises(ThrottlingException):  # CreateKey's own 10/s quota
        for _ in range(12):
            kms.create_key(km.CreateKeyRequest())


def test_the_budget_keeps_a_bucket_per_quota_at_half_the_documented_rate():
    now = [0.0]
    waits: dict[str, list[float]] = {}
    budget = RequestBudget(monotonic=lambda: now[0], sleep=lambda s: waits[kind].append(s))
    expected = {
        "CreateKey": 5.0,
        "AsymmetricSign": 100.0,
        "ListResourceTags": 150.0,
        "DescribeKey": 25.0,
        "ImportKeyMaterial": 15.0,
        # the vault's classes (issue 25)
        "Decrypt": 500.0,
        "GetSecretValue": 225.0,
        "ListSecrets": 20.0,
        "PutSecretValue": 5.0,
    }
    for kind, rate in expected.items():
        waits[kind] = []
        for _ in range(int(rate * 2.5)):  # half a second of burst, then 2 s at the rate
            budget.spend(kind)
        assert max(waits[kind]) == pytest.approx(2.0, abs=2 / rate + 0.01), kind


# ---- tags --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tags",
    [
        {"k": "x" * 129},
        {"k" * 129: "v"},
        {"k": "INC-1, compromised"},
        {"k": "tab\there"},
        {"acs:k": "v"},
        {"Aliyun-k": "v"},
    ],
)
def test_kms_refuses_tags_outside_the_seed_rules(kms, tags):
    key_id = create_external_key(kms, "EC_P256")
    with pytest.raises(ClientException) as exc:
        kms.tag_resource(km.TagResourceRequest(key_id=key_id, tags=json.dumps(
            [{"TagKey": k, "TagValue": v} for k, v in tags.items()])))  # fmt: skip
    assert exc.value.code == "InvalidParameter"
    (key, value), = tags.items()  # fmt: skip
    with pytest.raises(InputError, match="tag rule"):
        check_tag(key, value)


def test_every_allowed_character_passes_both_sides(kms):
    key_id = create_external_key(kms, "EC_P256")
    tags = {"byok-keeper:hold": "INC-1 a/b\\c_d-e.f+g=h:i@j", "k" * 128: "v" * 128}
    check_tags(tags)
    kms.tag_resource(km.TagResourceRequest(key_id=key_id, tags=json.dumps(
        [{"TagKey": k, "TagValue": v} for k, v in tags.items()])))  # fmt: skip


@pytest.mark.parametrize("limit", [20, 10])
def test_tags_per_key_are_capped(emulator, kms, limit):
    _settings(emulator, max_tags_per_key=limit)
    key_id = create_external_key(kms, "EC_P256")
    tags = [{"TagKey": f"t{i}", "TagValue": "v"} for i in range(limit)]
    kms.tag_resource(km.TagResourceRequest(key_id=key_id, tags=json.dumps(tags)))
    extra = [{"TagKey": "one-more", "TagValue": "v"}]
    with pytest.raises(ClientException):
        kms.tag_resource(km.TagResourceRequest(key_id=key_id, tags=json.dumps(extra)))
    with pytest.raises(InputError, match="at most 20 tags"):
        check_tags({f"t{i}": "v" for i in range(21)})


def test_tags_on_a_pending_deletion_key_are_refused(emulator, kms):
    key_id = create_external_key(kms, "EC_P256")
    emulator.emulator.kms.schedule_deletion(key_id, 7)
    tag = km.TagResourceRequest(key_id=key_id, tags='[{"TagKey": "a", "TagValue": "b"}]')
    untag = km.UntagResourceRequest(key_id=key_id, tag_keys='["a"]')
    for call, request in ((kms.tag_resource, tag), (kms.untag_resource, untag)):
        with pytest.raises(ClientException) as exc:
            call(request)
        assert (exc.value.code, exc.value.status_code) == ("Rejected.PendingDeletion", 409)


def test_the_agent_refuses_a_bad_tag_before_calling_kms(emulator, kms):
    gateway = make_gateway(emulator, HOLD_ACTIONS)
    with pytest.raises(InputError, match="tag rule"):
        gateway.tag_key("key-x", {"byok-keeper:hold": "INC-1, compromised"})
    assert emulator.calls() == []


# ---- key specs per instance --------------------------------------------------------------------


def test_rsa_4096_lives_on_hardware_instances_only(kms):
    with pytest.raises(ClientException) as exc:
        create_external_key(kms, "RSA_4096", instance="kst-local-software")
    assert exc.value.code == "InvalidParameter"
    assert create_external_key(kms, "RSA_4096", instance="kst-local-hardware")


PRODUCT_VERSIONS = ["numeric", "named", "opaque"]


@pytest.mark.parametrize("product_version", PRODUCT_VERSIONS)
def test_enroll_refuses_a_spec_the_instance_cannot_hold_and_creates_nothing(
    emulator, kms, tmp_path, product_version
):
    _settings(emulator, instance_product_version=product_version)
    _, vault, enroller, _ = build_world(emulator, tmp_path)
    request = create_request("RSA_4096")
    software = type(request)("RSA_4096", "SIGN/VERIFY", "kst-local-software")
    readable = product_version != "opaque"
    error = InputError if readable else KmsApiError
    with pytest.raises(error, match="software instance|KeySpec"):
        enroll(enroller, vault, generate_material("RSA_4096"), lease=parse_lease("30d"),
               create=software)  # fmt: skip
    creates = [c["status"] for c in _calls(emulator, "CreateKey", None)]
    # 3/5 or a name: refused before CreateKey. Opaque: CreateKey itself refuses (HTTP 400).
    assert creates == ([] if readable else [400])
    assert emulator.emulator.kms.all_keys() == [] and vault.inventory() == []


@pytest.mark.parametrize("spec", ["RSA_4096", "EC_SM2"])
def test_a_hardware_instance_that_refuses_imports_is_reported_before_sealing(
    emulator, kms, tmp_path, spec
):
    _, vault, enroller, _ = build_world(emulator, tmp_path)  # the default answer: refused
    with pytest.raises(InputError, match=f"refuses imported {spec} material") as refused:
        enroll(enroller, vault, generate_material(spec), lease=parse_lease("30d"),
               create=create_request(spec))  # fmt: skip
    # What the operator reads: no instance takes this spec, which specs remain, what is left.
    message = str(refused.value)
    assert "live only in hardware instances" in message and "RSA_3072" in message
    assert "stays in PendingImport" in message and "\n" not in message
    assert vault.inventory() == [] and _calls(emulator, "ImportKeyMaterial") == []


@pytest.mark.parametrize("spec", ["RSA_4096", "EC_SM2"])
def test_where_hardware_instances_take_imports_their_specs_enroll_and_restore(
    emulator, kms, tmp_path, spec
):
    _settings(emulator, hardware_accepts_asymmetric_import=True)  # the seed's later steps
    world = build_world(emulator, tmp_path)
    _, vault, enroller, sweeper = world
    material = generate_material(spec)
    result = enroll(enroller, vault, material, lease=parse_lease("30d"),
                    create=create_request(spec))  # fmt: skip
    assert (result.key_spec, result.key_state) == (spec, "Enabled")
    emulator.emulator.kms.delete_key_material(result.key_id)
    outcome = reestablish(sweeper, vault, result.key_id)
    assert outcome.outcome == "restored" and not outcome.failed, outcome.reason
    assert emulator.key_view(result.key_id)["material_fingerprint"] == material.fingerprint


# ---- disabled keys -----------------------------------------------------------------------------


@pytest.mark.parametrize("after", ["Disabled", "Enabled"])
def test_a_disabled_key_is_restored_whether_kms_keeps_it_disabled_or_not(
    emulator, kms, tmp_path, after
):
    _settings(emulator, disabled_key_after_import=after)
    world = build_world(emulator, tmp_path)
    _, vault, _, sweeper = world
    key_id, _ = enroll_key(world, "EC_P256")
    emulator.emulator.kms.disable_key(key_id)
    emulator.emulator.kms.delete_key_material(key_id)
    outcome = reestablish(sweeper, vault, key_id)
    assert outcome.outcome == "restored" and not outcome.failed, outcome.reason
    assert emulator.key_view(key_id)["state"] == after == outcome.key_state
    if after == "Disabled":
        assert "(key stays Disabled)" in outcome.reason and outcome.canary == ""
        assert "no public key and runs no canary" in outcome.reason
    else:
        assert outcome.canary == "sign ECDSA_SHA_256"
    # The agent never enables or disables a key.
    assert not _calls(emulator, "EnableKey") and not _calls(emulator, "DisableKey")


# ---- other material ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code", ["InvalidKeyMaterial", "InvalidParameter", "Rejected.UnsupportedOperation"]
)
def test_other_material_is_a_mismatch_whatever_code_kms_refuses_it_with(
    emulator, kms, tmp_path, code
):
    _settings(emulator, different_material_error=code)
    world = build_world(emulator, tmp_path)
    _, vault, enroller, _ = world
    key_id, _ = enroll_key(world, "EC_P256")
    emulator.emulator.kms.delete_key_material(key_id)
    (vault.store.directory / f"{key_id}.json").unlink()
    from byok_keeper.domain.errors import MaterialMismatch

    with pytest.raises(MaterialMismatch, match=code):
        enroll(enroller, vault, generate_material("EC_P256"), lease=parse_lease("30d"),
               key_id=key_id)  # fmt: skip


# ---- the admin API shows what is in force ------------------------------------------------------


def test_settings_profiles_and_overrides_through_the_admin_api(emulator, kms):
    status, shown = _admin(emulator, "GET", "settings")
    assert status == 200 and shown["profile"] in ("default", "strict")
    status, shown = _admin(emulator, "POST", "settings", {"profile": "strict"})
    assert (status, shown["profile"], shown["overrides"]) == (200, "strict", [])
    assert shown["hardware_accepts_asymmetric_import"] is False
    status, shown = _admin(emulator, "POST", "settings", {"disabled_key_after_import": "Enabled"})
    assert shown["profile"] == "strict" and shown["overrides"] == ["disabled_key_after_import"]
    status, refused = _admin(emulator, "POST", "settings", {"throttling_answer": "Nope"})
    assert status == 400 and "throttling_answer" in refused["Message"]
    status, refused = _admin(emulator, "POST", "settings", {"profile": "lenient"})
    assert status == 400
    emulator.reset()  # back to the profile the emulator was started with
    assert _admin(emulator, "GET", "settings")[1]["overrides"] == []


@pytest.mark.parametrize(
    ("product_version", "wire"),
    [("numeric", ("5", "3")), ("named", ("hardware", "software")), ("opaque", ("", ""))],
)
def test_get_kms_instance_names_the_instance_type(emulator, kms, product_version, wire):
    gateway = make_gateway(emulator, ENROLL)
    _settings(emulator, instance_product_version=product_version)
    answers = tuple(
        kms.get_kms_instance(km.GetKmsInstanceRequest(kms_instance_id=i)).body.kms_instance
        for i in ("kst-local-hardware", "kst-local-software")
    )
    assert tuple(a.product_version for a in answers) == wire
    levels = ("HSM", "SOFTWARE") if product_version != "opaque" else (None, None)
    assert gateway.instance_protection_level("kst-local-hardware") == levels[0]
    assert gateway.instance_protection_level("kst-local-software") == levels[1]
    with pytest.raises(KmsApiError) as exc:
        gateway.instance_protection_level("kst-missing")
    assert exc.value.code == "Forbidden.ResourceNotFound"
    assert "GetKmsInstance" not in SWEEP.actions  # enrollment only

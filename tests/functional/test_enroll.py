"""Enrollment through our gateway and the real SDK against aliyun-local."""

from __future__ import annotations

import pytest
from alibabacloud_kms20160120 import models as km

from byok_keeper.core.enroll import (
    FINGERPRINT_TAG,
    LEASE_TAG,
    MANAGED_TAG,
    MARKER_TAG,
    CreateRequest,
    account_from_arn,
    enroll,
    enrollment_marker,
)
from byok_keeper.crypto.material import generate_material, load_private_key
from byok_keeper.crypto.specs import HARDWARE_ONLY
from byok_keeper.domain.errors import InputError, MaterialMismatch
from byok_keeper.domain.lease import parse_lease
from byok_keeper.gateway.kms import ENROLL, KmsApiError
from byok_keeper.vault import (
    FileStore,
    KmsSealer,
    LocalKeySealer,
    SecretsStore,
    Vault,
    VaultConflict,
)
from byok_keeper.vault.sealers import new_seal_key_file
from tests.conftest import ALL_SPECS, hardware_refused
from tests.functional.conftest import (
    create_external_key,
    create_request,
    import_material,
    make_gateway,
)

# Agent tests: run against each aliyun-local profile (docs/FIDELITY.md).
pytestmark = pytest.mark.every_profile

STEPS = ("validate", "create", "seal", "import", "verify", "record", "tag")
INSTANCE = dict.fromkeys(HARDWARE_ONLY, "kst-local-hardware")


class Crash(BaseException):
    """Stands in for the process dying between two steps."""


@pytest.fixture
def gateway(emulator, kms):
    return make_gateway(emulator, ENROLL)


@pytest.fixture
def vault(tmp_path):
    new_seal_key_file(tmp_path / "seal.key")
    return Vault(FileStore(tmp_path / "vault"), LocalKeySealer.from_file(tmp_path / "seal.key"))


def _kms_tags(kms, key_id):
    tags = kms.list_resource_tags(km.ListResourceTagsRequest(key_id=key_id)).body.tags.tag or []
    return {t.tag_key: t.tag_value for t in tags}


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_enroll_generated_key_of_every_spec(gateway, vault, emulator, kms, spec, kms_profile):
    material = generate_material(spec)
    if hardware_refused(kms_profile, spec):
        with pytest.raises(InputError, match="refuses imported"):
            enroll(gateway, vault, material, lease=parse_lease("30d"), create=create_request(spec))
        assert vault.inventory() == []  # nothing sealed for a key KMS will not take
        return
    started = int(emulator.now())
    result = enroll(gateway, vault, material, lease=parse_lease("30d"), create=create_request(spec))
    finished = int(emulator.now()) + 1
    assert (result.created, result.key_state, result.key_spec) == (True, "Enabled", spec)
    view = emulator.key_view(result.key_id)
    assert view["material_fingerprint"] == material.fingerprint == result.fingerprint
    envelope = vault.get(result.key_id)
    assert envelope.header.first_imported_at is not None
    assert envelope.header.lease == "30d"
    assert _kms_tags(kms, result.key_id) == {
        FINGERPRINT_TAG: material.fingerprint,
        MARKER_TAG: enrollment_marker(material, create_request(spec)),
        MANAGED_TAG: "true",
        LEASE_TAG: "30d",
    }
    # The lease runs from the import, some time between the start and the end of enrollment.
    expiry = result.material_expire_time.timestamp() - 30 * 86400
    assert started <= expiry <= finished


def test_enroll_with_kms_sealer_and_secrets_store(emulator, kms, gateway):
    cmk = kms.create_key(km.CreateKeyRequest()).body.key_metadata.key_id
    vault = Vault(SecretsStore(gateway, "byok"), KmsSealer(gateway, cmk))
    material = generate_material("EC_P256")
    result = enroll(
        gateway, vault, material, lease=parse_lease("never"), create=create_request("EC_P256")
    )
    assert result.material_expire_time is None
    assert vault.inventory() == [result.key_id]
    assert vault.fetch(result.key_id)[1].fingerprint == material.fingerprint


def test_enroll_existing_pending_import_key(gateway, vault, kms, target_keys):
    key_id = create_external_key(kms, "RSA_3072", usage="ENCRYPT/DECRYPT")
    material = load_private_key(target_keys["RSA_3072"])
    result = enroll(gateway, vault, material, lease=parse_lease("12h"), key_id=key_id)
    assert (result.created, result.adopted, result.canary) == (
        False,
        False,
        "decrypt RSAES_OAEP_SHA_256",
    )


def test_adoption_with_matching_material(gateway, vault, kms, target_keys):
    key_id = create_external_key(kms, "EC_P256")
    material = load_private_key(target_keys["EC_P256"])
    import_material(kms, key_id, material)  # imported outside byok-keeper
    result = enroll(gateway, vault, material, lease=parse_lease("30d"), key_id=key_id)
    assert result.adopted is True
    assert vault.get(key_id).header.first_imported_at


def test_adoption_with_other_material_is_refused_and_nothing_is_written(
    gateway, vault, emulator, kms, target_keys
):
    key_id = create_external_key(kms, "EC_P256")
    import_material(kms, key_id, load_private_key(target_keys["EC_P256"]))
    other = generate_material("EC_P256")
    calls_before = len(emulator.calls())
    with pytest.raises(InputError, match="already holds other material"):
        enroll(gateway, vault, other, lease=parse_lease("30d"), key_id=key_id)
    assert vault.inventory() == []
    new_calls = [c["action"] for c in emulator.calls()[calls_before:]]
    assert "ImportKeyMaterial" not in new_calls and "TagResource" not in new_calls


def test_pending_import_key_bound_to_other_material_is_refused(gateway, vault, kms, target_keys):
    key_id = create_external_key(kms, "EC_P256")
    import_material(kms, key_id, load_private_key(target_keys["EC_P256"]))
    kms.delete_key_material(km.DeleteKeyMaterialRequest(key_id=key_id))
    with pytest.raises(MaterialMismatch):
        enroll(
            gateway, vault, generate_material("EC_P256"), lease=parse_lease("30d"), key_id=key_id
        )


@pytest.mark.parametrize(
    ("create", "material_spec", "message"),
    [
        (CreateRequest("RSA_2048", "SIGN/VERIFY", "kst-local-software"), "EC_P256", "does not fit"),
        (CreateRequest("EC_P256", "ENCRYPT/DECRYPT", "kst-local-software"), "EC_P256", "usage"),
        (CreateRequest("EC_P256", "SIGN/VERIFY", ""), "EC_P256", "--instance"),
    ],
)
def test_bad_enrollment_requests_change_nothing(
    gateway, vault, emulator, kms, create, material_spec, message
):
    with pytest.raises(InputError, match=message):
        enroll(
            gateway,
            vault,
            generate_material(material_spec),
            lease=parse_lease("30d"),
            create=create,
        )
    assert emulator.calls() == [] and vault.inventory() == []


def test_non_external_key_is_refused(gateway, vault, kms):
    key_id = kms.create_key(
        km.CreateKeyRequest(
            key_spec="EC_P256", key_usage="SIGN/VERIFY", dkmsinstance_id="kst-local-software"
        )
    ).body.key_metadata.key_id
    with pytest.raises(InputError, match="Origin Aliyun_KMS"):
        enroll(
            gateway, vault, generate_material("EC_P256"), lease=parse_lease("30d"), key_id=key_id
        )


def _consistent(emulator, kms, vault, fp):
    """Never material in KMS that the vault does not hold."""
    keys = kms.list_keys(km.ListKeysRequest(page_size=100)).body.keys.key or []
    for k in keys:
        view = emulator.key_view(k.key_id)
        if view["material_fingerprint"] is not None:
            envelope = vault.get(k.key_id)
            assert envelope is not None and envelope.fingerprint == view["material_fingerprint"]
    return [k.key_id for k in keys]


@pytest.mark.parametrize("crash_after", STEPS)
def test_crash_after_each_step_then_rerun_finishes(gateway, vault, emulator, kms, crash_after):
    material = generate_material("EC_P256")

    def crash(step, _detail):
        if step == crash_after:
            raise Crash(step)

    with pytest.raises(Crash):
        enroll(
            gateway,
            vault,
            material,
            lease=parse_lease("30d"),
            create=create_request("EC_P256"),
            on_step=crash,
        )
    _consistent(emulator, kms, vault, material.fingerprint)
    if crash_after in ("seal", "import"):
        # The envelope exists but does not record a first import: the agent will not touch it.
        assert vault.get(vault.inventory()[0]).header.first_imported_at is None
    result = enroll(
        gateway, vault, material, lease=parse_lease("30d"), create=create_request("EC_P256")
    )
    key_ids = _consistent(emulator, kms, vault, material.fingerprint)
    assert key_ids == [result.key_id]  # the re-run found the key; no second key was made
    assert result.created is (crash_after == "validate")
    assert vault.get(result.key_id).header.first_imported_at
    assert _kms_tags(kms, result.key_id)[MANAGED_TAG] == "true"
    assert emulator.key_view(result.key_id)["state"] == "Enabled"


def test_enrolling_twice_is_harmless(gateway, vault, emulator, kms):
    material = generate_material("EC_P256K")
    first = enroll(
        gateway, vault, material, lease=parse_lease("30d"), create=create_request("EC_P256K")
    )
    envelope = vault.get(first.key_id)
    second = enroll(
        gateway, vault, material, lease=parse_lease("30d"), create=create_request("EC_P256K")
    )
    assert second.key_id == first.key_id and second.resumed
    assert vault.get(first.key_id).header.first_imported_at == envelope.header.first_imported_at


def test_the_envelope_names_the_account_and_region_the_key_lives_in(gateway, vault, emulator):
    """A vault shared by ``[[targets]]`` sorts envelopes by the account and region their header
    names (``multi.TargetVault``): enrollment must record the key's own, from its ARN."""
    result = enroll(gateway, vault, generate_material("EC_P256"), lease=parse_lease("30d"),
                    create=create_request("EC_P256"))  # fmt: skip
    view = emulator.key_view(result.key_id)
    header = vault.get(result.key_id).header
    assert (header.account_id, header.region) == (view["account_id"], view["region"])
    assert header.account_id.isdigit()


@pytest.mark.parametrize(
    "arn, account",
    [
        ("acs:kms:cn-hangzhou:1234567890123456:key/key-abc", "1234567890123456"),
        ("acs:kms:cn-hangzhou:1234567890123456", ""),  # no resource: not a key's ARN
        ("", ""),
    ],
)
def test_the_account_is_the_fourth_field_of_a_whole_arn(arn, account):
    assert account_from_arn(arn) == account


def test_the_steps_and_the_result_say_what_was_done(gateway, vault, emulator):
    """What the CLI prints step by step and as JSON: a first enrollment seals anew and proves
    the key with a canary; enrolling the same material again resumes the envelope."""
    steps: list[tuple[str, dict]] = []
    material = generate_material("EC_P256")
    record = lambda n, d: steps.append((n, d))  # noqa: E731
    first = enroll(gateway, vault, material, lease=parse_lease("30d"),
                   create=create_request("EC_P256"), on_step=record)  # fmt: skip
    seen = dict(steps)
    assert [name for name, _ in steps] == list(STEPS)
    assert seen["seal"] == {"vault": vault.uri, "resumed": False}
    assert seen["verify"] == {"canary": first.canary, "key_state": "Enabled"}
    assert first.canary.startswith("sign ")
    doc = first.to_json()
    assert doc["key_id"] == first.key_id and doc["fingerprint"] == material.fingerprint
    assert (doc["created"], doc["adopted"], doc["resumed"]) == (True, False, False)
    assert doc["lease"] == "30d" and doc["key_state"] == "Enabled" and doc["canary"]
    assert doc["material_expire_time"] == emulator.key_view(first.key_id)["material_expire_time"]

    steps.clear()
    again = enroll(gateway, vault, material, lease=parse_lease("30d"), key_id=first.key_id,
                   on_step=record)  # fmt: skip
    assert dict(steps)["seal"]["resumed"] is True and again.resumed


@pytest.mark.parametrize("both", [True, False])
def test_enroll_takes_either_a_key_id_or_a_create_request(gateway, vault, emulator, both):
    create = create_request("EC_P256") if both else None
    key_id = "key-0123456789abcdef0123" if both else None
    with pytest.raises(InputError, match="either an existing key id or --create"):
        enroll(gateway, vault, generate_material("EC_P256"), lease=parse_lease("30d"),
               key_id=key_id, create=create)  # fmt: skip
    assert emulator.calls() == [] and vault.inventory() == []


def _tamper(path, how: str) -> None:
    import base64
    import json

    doc = json.loads(path.read_text())
    if how == "header":
        doc["header"]["lease"] = "never"  # a longer lease than sealed
    else:
        blob = bytearray(base64.b64decode(doc["material"]["ciphertext"]))
        blob[5] ^= 1
        doc["material"]["ciphertext"] = base64.b64encode(bytes(blob)).decode()
    path.write_text(json.dumps(doc))


_SPENDING = {"GetParametersForImport", "ImportKeyMaterial", "TagResource"}


@pytest.mark.parametrize("how", ["header", "ciphertext"])
def test_enrolling_over_an_envelope_that_does_not_open_is_refused(
    gateway, vault, emulator, tmp_path, how
):
    """An existing envelope's header is reused only once it authenticates: a tampered one
    (its lease lengthened, its ciphertext flipped) stops the enrollment before any token."""
    material = generate_material("EC_P256")
    first = enroll(gateway, vault, material, lease=parse_lease("30d"),
                   create=create_request("EC_P256"))  # fmt: skip
    path = tmp_path / "vault" / f"{first.key_id}.json"
    _tamper(path, how)
    before, calls = path.read_bytes(), len(emulator.calls())
    with pytest.raises(InputError, match="does not open"):
        enroll(gateway, vault, material, lease=parse_lease("30d"), key_id=first.key_id)
    assert path.read_bytes() == before
    assert not {c["action"] for c in emulator.calls()[calls:]} & _SPENDING


def test_enrolling_other_material_over_an_envelope_is_a_vault_conflict(gateway, vault, emulator):
    first = enroll(gateway, vault, generate_material("EC_P256"), lease=parse_lease("30d"),
                   create=create_request("EC_P256"))  # fmt: skip
    calls = len(emulator.calls())
    with pytest.raises(VaultConflict, match="different material"):
        enroll(gateway, vault, generate_material("EC_P256"), lease=parse_lease("30d"),
               key_id=first.key_id)  # fmt: skip
    assert not {c["action"] for c in emulator.calls()[calls:]} & _SPENDING


def test_enrolling_a_disabled_key_that_holds_material_is_refused(gateway, vault, emulator, kms):
    """A Disabled key shows no public key, so nothing proves it holds this material."""
    material = generate_material("EC_P256")
    first = enroll(gateway, vault, material, lease=parse_lease("30d"),
                   create=create_request("EC_P256"))  # fmt: skip
    kms.disable_key(km.DisableKeyRequest(key_id=first.key_id))
    calls = len(emulator.calls())
    with pytest.raises(InputError, match="is Disabled and already holds material"):
        enroll(gateway, vault, material, lease=parse_lease("30d"), key_id=first.key_id)
    assert not {c["action"] for c in emulator.calls()[calls:]} & _SPENDING


def test_enrolling_again_with_another_lease_seals_that_lease(gateway, vault, emulator):
    material = generate_material("EC_P256")
    first = enroll(gateway, vault, material, lease=parse_lease("30d"),
                   create=create_request("EC_P256"))  # fmt: skip
    sealed = vault.get(first.key_id).header
    again = enroll(gateway, vault, material, lease=parse_lease("10d"), key_id=first.key_id)
    header = vault.get(first.key_id).header
    assert header.lease == "10d" and again.lease == "10d"
    assert header.enrolled_at == sealed.enrolled_at  # the rest of the header is kept


def test_a_refused_import_token_other_than_unsupported_stays_a_kms_error(gateway, vault, emulator):
    """Only ``Rejected.UnsupportedOperation`` means "this instance takes no imported keys" (an
    input error, exit 2); any other refusal is KMS's, reported as it is, nothing sealed."""
    emulator.set_faults(fail_next={"GetParametersForImport": ["Forbidden.NoPermission"]})
    with pytest.raises(KmsApiError) as exc:
        enroll(gateway, vault, generate_material("EC_P256"), lease=parse_lease("30d"),
               create=create_request("EC_P256"))  # fmt: skip
    assert not isinstance(exc.value, InputError)
    assert exc.value.code == "Forbidden.NoPermission"
    assert vault.inventory() == []


def test_material_of_another_spec_than_the_key_is_refused_before_anything_is_sealed(
    gateway, vault, emulator, kms
):
    request = km.CreateKeyRequest(key_spec="EC_P256", key_usage="SIGN/VERIFY", origin="EXTERNAL",
                                  dkmsinstance_id="kst-local-software")  # fmt: skip
    created = kms.create_key(request).body.key_metadata
    calls = len(emulator.calls())
    with pytest.raises(InputError, match="is EC_P256; the material is RSA_2048"):
        enroll(gateway, vault, generate_material("RSA_2048"), lease=parse_lease("30d"),
               key_id=created.key_id)  # fmt: skip
    assert vault.inventory() == []
    assert not {c["action"] for c in emulator.calls()[calls:]} & _SPENDING


def test_enrolling_a_key_pending_deletion_is_refused(gateway, vault, emulator, kms):
    request = km.CreateKeyRequest(key_spec="EC_P256", key_usage="SIGN/VERIFY", origin="EXTERNAL",
                                  dkmsinstance_id="kst-local-software")  # fmt: skip
    key_id = kms.create_key(request).body.key_metadata.key_id
    kms.schedule_key_deletion(
        km.ScheduleKeyDeletionRequest(key_id=key_id, pending_window_in_days=7)
    )
    calls = len(emulator.calls())
    with pytest.raises(InputError, match="is PendingDeletion; cancel the deletion first"):
        enroll(gateway, vault, generate_material("EC_P256"), lease=parse_lease("30d"),
               key_id=key_id)  # fmt: skip
    assert vault.inventory() == []
    assert not {c["action"] for c in emulator.calls()[calls:]} & _SPENDING


def test_a_first_enrollment_by_key_id_is_neither_created_nor_resumed(gateway, vault, kms):
    request = km.CreateKeyRequest(key_spec="EC_P256", key_usage="SIGN/VERIFY", origin="EXTERNAL",
                                  dkmsinstance_id="kst-local-software")  # fmt: skip
    key_id = kms.create_key(request).body.key_metadata.key_id
    result = enroll(gateway, vault, generate_material("EC_P256"), lease=parse_lease("30d"),
                    key_id=key_id)  # fmt: skip
    assert (result.created, result.adopted, result.resumed) == (False, False, False)

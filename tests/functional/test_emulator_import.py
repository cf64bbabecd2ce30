"""aliyun-local import rules, through the real SDK: instances, parameters, tokens, binding,
expiry and the state matrix."""

from __future__ import annotations

import base64
import time

import pytest
from alibabacloud_kms20160120 import models as km
from alibabacloud_tea_openapi.exceptions import ClientException

from byok_keeper.crypto.material import load_private_key
from byok_keeper.crypto.specs import RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD as RSA_ALG
from byok_keeper.crypto.wrapping import wrap_key_material
from tests.conftest import ALL_SPECS
from tests.functional.conftest import (
    create_external_key,
    describe,
    hardware_takes_imports,
    import_material,
    key_version,
)


def _err(excinfo) -> tuple[str, int]:
    return excinfo.value.code, excinfo.value.status_code


def _gpfi(kms, key_id, alg=RSA_ALG, spec="RSA_2048"):
    return kms.get_parameters_for_import(
        km.GetParametersForImportRequest(
            key_id=key_id, wrapping_algorithm=alg, wrapping_key_spec=spec
        )
    ).body


def _import(kms, key_id, wrapped, token, expire=0):
    return kms.import_key_material(
        km.ImportKeyMaterialRequest(
            key_id=key_id,
            encrypted_key_material=wrapped,
            import_token=token,
            key_material_expire_unix=expire,
        )
    )


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_every_spec_imports_and_becomes_enabled(kms, emulator, target_keys, spec):
    hardware_takes_imports(emulator, spec)  # RSA_4096, EC_SM2: refused by default (below)
    key_id = create_external_key(kms, spec)
    assert describe(kms, key_id).key_state == "PendingImport"
    material = load_private_key(target_keys[spec], key_spec=spec)
    import_material(kms, key_id, material)
    meta = describe(kms, key_id)
    assert (meta.key_state, meta.origin, meta.material_expire_time) == ("Enabled", "EXTERNAL", "")
    view = emulator.key_view(key_id)
    assert view["material_fingerprint"] == material.fingerprint
    assert view["import_count"] == 1


def test_asymmetric_external_keys_need_an_instance(kms):
    with pytest.raises(ClientException) as exc:
        kms.create_key(
            km.CreateKeyRequest(key_spec="RSA_2048", key_usage="SIGN/VERIFY", origin="EXTERNAL")
        )
    assert _err(exc) == ("InvalidParameter", 400)
    assert "KMS instance" in exc.value.message


def test_sm2_only_in_the_hardware_instance(kms):
    with pytest.raises(ClientException) as exc:
        create_external_key(kms, "EC_SM2", instance="kst-local-software")
    assert _err(exc) == ("InvalidParameter", 400)
    key_id = create_external_key(kms, "EC_SM2", instance="kst-local-hardware")
    assert describe(kms, key_id).protection_level == "HSM"


def test_usage_must_fit_the_spec(kms):
    with pytest.raises(ClientException) as exc:
        create_external_key(kms, "EC_P256", usage="ENCRYPT/DECRYPT")
    assert exc.value.code == "InvalidParameter"


def test_parameters_are_fresh_per_call_and_valid_24h(kms, emulator):
    key_id = create_external_key(kms, "RSA_2048")
    a, b = _gpfi(kms, key_id), _gpfi(kms, key_id)
    assert a.public_key != b.public_key and a.import_token != b.import_token
    expires = time.mktime(time.strptime(a.token_expire_time, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(expires - (emulator.now() + 86400)) < 5


def test_token_is_reusable_within_its_lifetime(kms, target_keys):
    key_id = create_external_key(kms, "EC_P256")
    material = load_private_key(target_keys["EC_P256"])
    p = _gpfi(kms, key_id)
    for _ in range(2):
        _import(
            kms,
            key_id,
            wrap_key_material(material.import_bytes(), p.public_key, RSA_ALG),
            p.import_token,
        )
    assert describe(kms, key_id).key_state == "Enabled"


def test_token_is_bound_to_its_key(kms, target_keys):
    a, b = create_external_key(kms, "EC_P256"), create_external_key(kms, "EC_P256")
    material = load_private_key(target_keys["EC_P256"])
    p = _gpfi(kms, a)
    with pytest.raises(ClientException) as exc:
        _import(
            kms,
            b,
            wrap_key_material(material.import_bytes(), p.public_key, RSA_ALG),
            p.import_token,
        )
    assert _err(exc) == ("InvalidImportToken", 400)


def test_token_is_bound_to_its_wrapping_key(kms, target_keys):
    key_id = create_external_key(kms, "EC_P256")
    material = load_private_key(target_keys["EC_P256"])
    first, second = _gpfi(kms, key_id), _gpfi(kms, key_id)
    wrapped = wrap_key_material(material.import_bytes(), first.public_key, RSA_ALG)
    with pytest.raises(ClientException) as exc:
        _import(kms, key_id, wrapped, second.import_token)
    assert _err(exc) == ("InvalidKeyMaterial", 400)


def test_expired_token_is_refused(kms, emulator, target_keys):
    key_id = create_external_key(kms, "EC_P256")
    material = load_private_key(target_keys["EC_P256"])
    p = _gpfi(kms, key_id)
    emulator.advance_clock(86400 + 1)
    with pytest.raises(ClientException) as exc:
        _import(
            kms,
            key_id,
            wrap_key_material(material.import_bytes(), p.public_key, RSA_ALG),
            p.import_token,
        )
    assert _err(exc) == ("ExpiredImportToken", 400)


def test_parameters_only_for_external_keys_and_matching_algorithms(kms):
    kms_key = kms.create_key(
        km.CreateKeyRequest(
            key_spec="EC_P256", key_usage="SIGN/VERIFY", dkmsinstance_id="kst-local-software"
        )
    ).body.key_metadata.key_id
    with pytest.raises(ClientException) as exc:
        _gpfi(kms, kms_key)
    assert _err(exc) == ("Unsupported.Origin", 400)
    ext = create_external_key(kms, "RSA_2048")
    with pytest.raises(ClientException) as exc:
        _gpfi(kms, ext, alg="SM2PKE_SM4_ECB", spec="EC_SM2")
    assert exc.value.code == "InvalidParameter"


def test_first_import_binds_the_material_forever(kms, emulator, target_keys):
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec

    key_id = create_external_key(kms, "EC_P256")
    import_material(kms, key_id, load_private_key(target_keys["EC_P256"]))
    kms.delete_key_material(km.DeleteKeyMaterialRequest(key_id=key_id))
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()
    )
    with pytest.raises(ClientException) as exc:
        import_material(kms, key_id, load_private_key(other))
    assert _err(exc) == ("InvalidKeyMaterial", 400)
    assert describe(kms, key_id).key_state == "PendingImport"
    import_material(kms, key_id, load_private_key(target_keys["EC_P256"]))
    assert describe(kms, key_id).key_state == "Enabled"
    assert emulator.key_view(key_id)["import_count"] == 2


def test_material_of_another_spec_or_encoding_is_invalid(kms, target_keys):
    from cryptography.hazmat.primitives import serialization as ser

    key_id = create_external_key(kms, "RSA_3072")
    with pytest.raises(ClientException) as exc:
        p = _gpfi(kms, key_id)
        tak = load_private_key(target_keys["RSA_2048"]).import_bytes()
        _import(kms, key_id, wrap_key_material(tak, p.public_key, RSA_ALG), p.import_token)
    assert exc.value.code == "InvalidKeyMaterial"
    # PKCS#1 instead of PKCS#8: the right key in the wrong encoding.
    rsa_key = ser.load_pem_private_key(target_keys["RSA_3072"], password=None)
    pkcs1 = rsa_key.private_bytes(
        ser.Encoding.DER, ser.PrivateFormat.TraditionalOpenSSL, ser.NoEncryption()
    )
    p = _gpfi(kms, key_id)
    with pytest.raises(ClientException) as exc:
        _import(kms, key_id, wrap_key_material(pkcs1, p.public_key, RSA_ALG), p.import_token)
    assert exc.value.code == "InvalidKeyMaterial"
    with pytest.raises(ClientException) as exc:
        _import(kms, key_id, base64.b64encode(b"x" * 300).decode(), p.import_token)
    assert exc.value.code == "InvalidKeyMaterial"


def test_expiry_zero_never_past_refused_and_reimport_resets(kms, emulator, target_keys):
    key_id = create_external_key(kms, "EC_P256K")
    material = load_private_key(target_keys["EC_P256K"])
    now = int(emulator.now())
    with pytest.raises(ClientException) as exc:
        import_material(kms, key_id, material, expire_unix=now - 10)
    assert exc.value.code == "InvalidParameter"
    import_material(kms, key_id, material, expire_unix=now + 3600)
    assert describe(kms, key_id).material_expire_time == time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)
    )
    import_material(kms, key_id, material, expire_unix=now + 7200)
    assert describe(kms, key_id).material_expire_time == time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 7200)
    )
    import_material(kms, key_id, material, expire_unix=0)
    assert describe(kms, key_id).material_expire_time == ""


def test_expired_material_puts_the_key_in_pending_import(kms, emulator, target_keys):
    key_id = create_external_key(kms, "EC_P256")
    material = load_private_key(target_keys["EC_P256"])
    import_material(kms, key_id, material, expire_unix=int(emulator.now()) + 100)
    version = key_version(kms, key_id)
    emulator.advance_clock(101)
    meta = describe(kms, key_id)
    assert (meta.key_state, meta.material_expire_time) == ("PendingImport", "")
    with pytest.raises(ClientException) as exc:
        kms.asymmetric_sign(
            km.AsymmetricSignRequest(
                key_id=key_id,
                key_version_id=version,
                algorithm="ECDSA_SHA_256",
                digest=base64.b64encode(bytes(32)).decode(),
            )
        )
    assert _err(exc) == ("Rejected.PendingImport", 409)
    import_material(kms, key_id, material)
    assert describe(kms, key_id).key_state == "Enabled"


def test_disabled_key_refuses_crypto_and_stays_disabled_after_import(kms, target_keys):
    key_id = create_external_key(kms, "EC_P256")
    material = load_private_key(target_keys["EC_P256"])
    import_material(kms, key_id, material)
    kms.disable_key(km.DisableKeyRequest(key_id=key_id))
    version = key_version(kms, key_id)
    with pytest.raises(ClientException) as exc:
        kms.get_public_key(km.GetPublicKeyRequest(key_id=key_id, key_version_id=version))
    assert _err(exc) == ("Rejected.Disabled", 409)
    import_material(kms, key_id, material)
    assert describe(kms, key_id).key_state == "Disabled"
    kms.delete_key_material(km.DeleteKeyMaterialRequest(key_id=key_id))
    assert describe(kms, key_id).key_state == "PendingImport"
    import_material(kms, key_id, material)
    assert describe(kms, key_id).key_state == "Disabled"
    kms.enable_key(km.EnableKeyRequest(key_id=key_id))
    assert describe(kms, key_id).key_state == "Enabled"


def test_pending_deletion_refuses_import_with_409_and_keeps_its_state(kms, emulator, target_keys):
    key_id = create_external_key(kms, "EC_P256")
    material = load_private_key(target_keys["EC_P256"])
    import_material(kms, key_id, material)
    kms.schedule_key_deletion(
        km.ScheduleKeyDeletionRequest(key_id=key_id, pending_window_in_days=7)
    )
    meta = describe(kms, key_id)
    assert meta.key_state == "PendingDeletion" and meta.delete_date
    p = _gpfi(kms, key_id)  # allowed in every state
    with pytest.raises(ClientException) as exc:
        _import(
            kms,
            key_id,
            wrap_key_material(material.import_bytes(), p.public_key, RSA_ALG),
            p.import_token,
        )
    assert _err(exc) == ("Rejected.StateModifiedFailed", 409)
    kms.delete_key_material(km.DeleteKeyMaterialRequest(key_id=key_id))
    assert describe(kms, key_id).key_state == "PendingDeletion"
    kms.cancel_key_deletion(km.CancelKeyDeletionRequest(key_id=key_id))
    assert describe(kms, key_id).key_state == "PendingImport"
    import_material(kms, key_id, material)
    kms.schedule_key_deletion(
        km.ScheduleKeyDeletionRequest(key_id=key_id, pending_window_in_days=7)
    )
    emulator.advance_clock(7 * 86400 + 1)
    with pytest.raises(ClientException) as exc:
        describe(kms, key_id)
    assert _err(exc) == ("Forbidden.KeyNotFound", 404)


@pytest.mark.parametrize("spec", ["RSA_4096", "EC_SM2"])
def test_hardware_instances_take_no_imported_asymmetric_material_by_default(
    kms, emulator, target_keys, spec
):
    key_id = create_external_key(kms, spec)  # the key itself is created
    material = load_private_key(target_keys[spec], key_spec=spec)
    with pytest.raises(ClientException) as exc:
        import_material(kms, key_id, material)
    assert _err(exc) == ("Rejected.UnsupportedOperation", 400)
    assert "hardware" in exc.value.message
    assert describe(kms, key_id).key_state == "PendingImport"
    assert emulator.key_view(key_id)["import_count"] == 0
    # The software instance's specs are unaffected.
    software = create_external_key(kms, "RSA_3072")
    import_material(kms, software, load_private_key(target_keys["RSA_3072"], key_spec="RSA_3072"))
    assert describe(kms, software).key_state == "Enabled"


def test_sm2_import_on_the_hardware_instance_and_the_refusal_setting(kms, emulator, target_keys):
    hardware_takes_imports(emulator)  # the other answer: the seed's later steps
    key_id = create_external_key(kms, "EC_SM2", usage="ENCRYPT/DECRYPT")
    material = load_private_key(target_keys["EC_SM2"], key_spec="EC_SM2")
    params = import_material(kms, key_id, material)
    assert base64.b64decode(params.public_key)[:2] == b"\x30\x59"  # SM2 SubjectPublicKeyInfo
    assert emulator.key_view(key_id)["material_fingerprint"] == material.fingerprint
    emulator.emulator.kms.settings.update({"hardware_accepts_asymmetric_import": False})
    with pytest.raises(ClientException) as exc:
        import_material(kms, key_id, material)
    assert _err(exc) == ("Rejected.UnsupportedOperation", 400)


def test_rotation_calls_refuse_external_and_asymmetric_keys(kms):
    ext = create_external_key(kms, "RSA_2048")
    for call in (
        lambda k: kms.create_key_version(km.CreateKeyVersionRequest(key_id=k)),
        lambda k: kms.update_rotation_policy(
            km.UpdateRotationPolicyRequest(
                key_id=k, enable_automatic_rotation=True, rotation_interval="604800s"
            )
        ),
    ):
        with pytest.raises(ClientException) as exc:
            call(ext)
        assert _err(exc) == ("Rejected.UnsupportedOperation", 400)
    sym = kms.create_key(km.CreateKeyRequest()).body.key_metadata.key_id
    version = kms.create_key_version(km.CreateKeyVersionRequest(key_id=sym)).body
    assert describe(kms, sym).primary_key_version == version.key_version.key_version_id

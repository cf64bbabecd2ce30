import pytest

from byok_keeper.crypto import specs
from byok_keeper.domain.errors import InputError, WrappingError


def test_all_six_specs_are_known():
    assert set(specs.KEY_SPECS) == {
        "RSA_2048",
        "RSA_3072",
        "RSA_4096",
        "EC_P256",
        "EC_P256K",
        "EC_SM2",
    }


@pytest.mark.parametrize(
    ("name", "wrapping_key_spec", "algorithm"),
    [
        ("RSA_2048", "RSA_2048", "RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD"),
        ("RSA_3072", "RSA_2048", "RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD"),
        ("RSA_4096", "RSA_2048", "RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD"),
        ("EC_P256", "RSA_2048", "RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD"),
        ("EC_P256K", "RSA_2048", "RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD"),
        ("EC_SM2", "EC_SM2", "SM2PKE_SM4_ECB"),
    ],
)
def test_each_spec_names_its_wrapping_key_spec_and_algorithm(name, wrapping_key_spec, algorithm):
    spec = specs.key_spec(name)
    assert spec.wrapping_key_spec == wrapping_key_spec
    assert spec.wrapping_algorithm == algorithm


def test_software_level_excludes_sm2_and_hardware_allows_all():
    assert "EC_SM2" not in specs.SPECS_BY_PROTECTION_LEVEL[specs.SOFTWARE]
    assert set(specs.SPECS_BY_PROTECTION_LEVEL[specs.HSM]) == set(specs.KEY_SPECS)


def test_usages_follow_kms():
    assert specs.key_spec("EC_P256").usages == (specs.SIGN_VERIFY,)
    assert specs.key_spec("RSA_3072").allows_usage(specs.ENCRYPT_DECRYPT)
    assert specs.key_spec("EC_SM2").allows_usage(specs.ENCRYPT_DECRYPT)
    assert not specs.key_spec("EC_P256K").allows_usage(specs.ENCRYPT_DECRYPT)


def test_material_encoding_is_raw_scalar_only_for_sm2():
    for spec in specs.KEY_SPECS.values():
        expected = specs.RAW_SM2_D if spec.name == "EC_SM2" else specs.PKCS8_DER
        assert spec.material_encoding == expected


def test_unknown_spec_is_an_input_error_naming_the_valid_ones():
    with pytest.raises(InputError, match="unsupported key spec 'RSA_1024'.*RSA_2048"):
        specs.key_spec("RSA_1024")


def test_unknown_wrapping_algorithm_is_a_wrapping_error():
    with pytest.raises(WrappingError, match="unsupported wrapping algorithm"):
        specs.wrapping_algorithm("RSAES_PKCS1_V1_5")


@pytest.mark.parametrize(
    ("product_version", "level"),
    [
        ("3", "SOFTWARE"),  # terraform-provider-alicloud's values (docs/FIDELITY.md)
        ("5", "HSM"),
        (" 5 ", "HSM"),
        ("software", "SOFTWARE"),  # ROS's names
        ("hardware-small", "HSM"),
        ("4", None),  # anything else: CreateKey decides
        ("35", None),
        ("", None),
        (None, None),
        ("soft", None),
    ],
)
def test_an_instance_type_is_read_from_either_form_of_product_version(product_version, level):
    from byok_keeper.gateway.kms.types import instance_protection_level

    assert instance_protection_level(product_version) == level

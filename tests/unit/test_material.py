"""Loading target private keys in every accepted form, and refusing everything else."""

from __future__ import annotations

import base64
import hashlib
import pickle
import re

import pytest
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from byok_keeper.crypto import der, sm2
from byok_keeper.crypto.material import (
    MAX_KEY_FILE_BYTES,
    fingerprint,
    load_private_key,
    public_key_der_from,
)
from byok_keeper.domain.errors import InputError, KeyMaterialError
from tests.conftest import ALL_SPECS, openssl

PASS = b"correct horse battery staple"


def _openssl_public_der(pem: bytes, tmp_path) -> bytes:
    key = tmp_path / "k.pem"
    key.write_bytes(pem)
    return openssl("pkey", "-in", key, "-pubout", "-outform", "DER")


@pytest.mark.openssl
@pytest.mark.parametrize("spec", ALL_SPECS)
def test_fingerprint_matches_openssl_public_key(spec, openssl_keys, tmp_path):
    material = load_private_key(openssl_keys[spec], key_spec=spec)
    expected = _openssl_public_der(openssl_keys[spec], tmp_path)
    assert material.public_key_der == expected
    assert material.fingerprint == hashlib.sha256(expected).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", material.fingerprint)
    assert material.key_spec == spec


@pytest.mark.openssl
@pytest.mark.parametrize("spec", [s for s in ALL_SPECS if s != "EC_SM2"])
def test_import_encoding_is_openssl_pkcs8_der(spec, openssl_keys, tmp_path):
    # The seed procedure encodes with `openssl pkcs8 -topk8 -outform der -nocrypt`.
    key = tmp_path / "k.pem"
    key.write_bytes(openssl_keys[spec])
    expected = openssl("pkcs8", "-topk8", "-in", key, "-outform", "DER", "-nocrypt")
    assert bytes(load_private_key(openssl_keys[spec]).import_bytes()) == expected


@pytest.mark.openssl
def test_sm2_import_encoding_is_the_raw_scalar_openssl_reports(openssl_keys, tmp_path):
    key = tmp_path / "k.pem"
    key.write_bytes(openssl_keys["EC_SM2"])
    text = openssl("ec", "-in", key, "-text", "-noout").decode()
    priv_hex = re.search(r"priv:\s*\n((?:\s+[0-9a-f:]+\n)+)", text).group(1)
    expected = bytes.fromhex(re.sub(r"[\s:]", "", priv_hex)).rjust(32, b"\0")[-32:]
    assert bytes(load_private_key(openssl_keys["EC_SM2"]).import_bytes()) == expected


def _rsa(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@pytest.mark.parametrize(
    ("fmt", "enc"),
    [
        (ser.PrivateFormat.PKCS8, ser.Encoding.PEM),
        (ser.PrivateFormat.PKCS8, ser.Encoding.DER),
        (ser.PrivateFormat.TraditionalOpenSSL, ser.Encoding.PEM),  # PKCS#1 / SEC1
        (ser.PrivateFormat.TraditionalOpenSSL, ser.Encoding.DER),
    ],
)
@pytest.mark.parametrize("make", [_rsa, lambda: ec.generate_private_key(ec.SECP256K1())])
def test_loads_pkcs8_pkcs1_and_sec1_in_pem_and_der(fmt, enc, make):
    key = make()
    data = key.private_bytes(enc, fmt, ser.NoEncryption())
    material = load_private_key(data)
    expected_pub = key.public_key().public_bytes(
        ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo
    )
    assert material.public_key_der == expected_pub
    pkcs8 = key.private_bytes(ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    assert bytes(material.import_bytes()) == pkcs8


@pytest.mark.parametrize("enc", [ser.Encoding.PEM, ser.Encoding.DER])
def test_loads_passphrase_encrypted_pkcs8(enc):
    key = ec.generate_private_key(ec.SECP256R1())
    data = key.private_bytes(enc, ser.PrivateFormat.PKCS8, ser.BestAvailableEncryption(PASS))
    assert load_private_key(data, passphrase=PASS, key_spec="EC_P256").key_spec == "EC_P256"


@pytest.mark.openssl
def test_loads_legacy_openssl_encrypted_pem(tmp_path):
    key = tmp_path / "k.pem"
    key.write_bytes(openssl("genrsa", "2048"))
    legacy = openssl(
        "rsa", "-in", key, "-aes256", "-passout", "pass:" + PASS.decode(), "-traditional"
    )
    assert b"Proc-Type: 4,ENCRYPTED" in legacy
    assert load_private_key(legacy, passphrase=PASS).key_spec == "RSA_2048"
    with pytest.raises(KeyMaterialError, match="wrong passphrase"):
        load_private_key(legacy, passphrase=b"nope")


@pytest.mark.openssl
def test_loads_openssl_ecparam_output_with_parameters_block():
    pem = openssl("ecparam", "-name", "prime256v1", "-genkey")
    assert b"EC PARAMETERS" in pem
    assert load_private_key(pem).key_spec == "EC_P256"


@pytest.mark.openssl
def test_loads_sm2_in_every_openssl_form(openssl_keys, tmp_path):
    pkcs8_pem = openssl_keys["EC_SM2"]
    key = tmp_path / "sm2.pem"
    key.write_bytes(pkcs8_pem)
    forms = {
        "pkcs8-pem": pkcs8_pem,
        "pkcs8-der": openssl("pkey", "-in", key, "-outform", "DER"),
        "sec1-pem": openssl("ec", "-in", key),
        "sec1-der": openssl("ec", "-in", key, "-outform", "DER"),
    }
    assert b"SM2 PRIVATE KEY" in forms["sec1-pem"]
    reference = load_private_key(pkcs8_pem)
    for name, data in forms.items():
        material = load_private_key(data, key_spec="EC_SM2")
        assert material.fingerprint == reference.fingerprint, name
        assert bytes(material.import_bytes()) == bytes(reference.import_bytes()), name
    raw = load_private_key(bytes(reference.import_bytes()))
    assert raw.fingerprint == reference.fingerprint


@pytest.mark.openssl
@pytest.mark.parametrize("cipher", ["aes-256-cbc", "aes-128-cbc", "sm4-cbc"])
def test_loads_encrypted_pkcs8_sm2_key(openssl_keys, tmp_path, cipher):
    key = tmp_path / "sm2.pem"
    key.write_bytes(openssl_keys["EC_SM2"])
    encrypted = openssl(
        "pkcs8", "-topk8", "-in", key, "-v2", cipher, "-passout", "pass:" + PASS.decode()
    )
    assert b"ENCRYPTED PRIVATE KEY" in encrypted
    material = load_private_key(encrypted, passphrase=PASS)
    assert material.fingerprint == load_private_key(openssl_keys["EC_SM2"]).fingerprint
    with pytest.raises(KeyMaterialError, match="wrong passphrase"):
        load_private_key(encrypted, passphrase=b"not it")
    with pytest.raises(KeyMaterialError, match="encrypted; give its passphrase"):
        load_private_key(encrypted)


# ---- refusals ------------------------------------------------------------------------------


def test_refuses_rsa_1024_naming_the_sizes():
    data = _rsa(1024).private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    with pytest.raises(KeyMaterialError, match="1024-bit modulus; supported sizes are 2048"):
        load_private_key(data)


def test_refuses_p384_key_for_ec_p256():
    data = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()
    )
    with pytest.raises(KeyMaterialError, match="curve secp384r1 is not supported"):
        load_private_key(data, key_spec="EC_P256")


def test_refuses_key_of_another_spec():
    data = _rsa(3072).private_bytes(ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    with pytest.raises(KeyMaterialError, match="RSA_2048 does not fit an RSA-3072 key"):
        load_private_key(data, key_spec="RSA_2048")


def test_refuses_33_byte_sm2_scalar():
    with pytest.raises(KeyMaterialError):
        load_private_key(b"\x01" * 33, key_spec="EC_SM2")


@pytest.mark.parametrize("scalar", [0, sm2.N - 1, sm2.N, 2**256 - 1])
def test_refuses_sm2_scalar_out_of_range(scalar):
    with pytest.raises(KeyMaterialError, match="out of range"):
        load_private_key(scalar.to_bytes(32, "big"), key_spec="EC_SM2")


def test_refuses_raw_scalar_for_a_non_sm2_spec():
    with pytest.raises(KeyMaterialError, match="only accepted for EC_SM2"):
        load_private_key(b"\x01" * 32, key_spec="EC_P256")


def test_refuses_truncated_der():
    data = _rsa().private_bytes(ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    for cut in (1, 10, len(data) // 2, len(data) - 1):
        with pytest.raises(
            KeyMaterialError, match="not a private key|malformed|not a supported private key"
        ):
            load_private_key(data[:cut] if cut > 32 else data[:cut] + b"\0")


def test_refuses_wrong_and_missing_passphrase():
    data = _rsa().private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.BestAvailableEncryption(PASS)
    )
    with pytest.raises(KeyMaterialError, match="wrong passphrase"):
        load_private_key(data, passphrase=b"wrong")
    with pytest.raises(KeyMaterialError, match="give its passphrase"):
        load_private_key(data)


def test_refuses_passphrase_for_unencrypted_key():
    data = _rsa().private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    with pytest.raises(KeyMaterialError, match="not encrypted"):
        load_private_key(data, passphrase=PASS)


def test_refuses_ed25519():
    data = ed25519.Ed25519PrivateKey.generate().private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()
    )
    with pytest.raises(KeyMaterialError, match="not supported"):
        load_private_key(data)


def test_refuses_pem_without_a_private_key():
    pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    with pytest.raises(KeyMaterialError, match=r"no private key .*CERTIFICATE"):
        load_private_key(pem)


def test_refuses_sec1_sm2_key_whose_public_key_does_not_match():
    key, other = sm2.Sm2PrivateKey.generate(), sm2.Sm2PrivateKey.generate()
    sec1 = der.sequence(
        der.integer(1),
        der.octet_string(key.scalar_bytes()),
        der.explicit(0, der.oid(sm2.OID_SM2_CURVE)),
        der.explicit(1, der.bit_string(other.public_key().point_bytes())),
    )
    with pytest.raises(KeyMaterialError, match="does not match its private key"):
        load_private_key(sec1)


def test_refuses_oversized_input():
    with pytest.raises(KeyMaterialError, match="larger than"):
        load_private_key(b"\x30" * (MAX_KEY_FILE_BYTES + 1))


def test_unknown_key_spec_is_an_input_error():
    with pytest.raises(InputError, match="unsupported key spec"):
        load_private_key(b"\x01" * 32, key_spec="EC_P384")


def test_all_refusals_exit_with_code_2():
    assert KeyMaterialError.exit_code == 2


# ---- handling of the secret ----------------------------------------------------------------


def test_repr_and_str_show_no_material_and_wipe_zeroes_it():
    key = sm2.Sm2PrivateKey.generate()
    secret = bytes(key.scalar_bytes())
    material = load_private_key(secret)
    for text in (repr(material), str(material), repr(key), f"{material}"):
        assert secret.hex() not in text.lower()
        assert base64.b64encode(secret).decode() not in text
    assert material.fingerprint in repr(material)
    with material:
        assert bytes(material.import_bytes()) == secret
    assert material.wiped
    with pytest.raises(KeyMaterialError, match="wiped"):
        material.import_bytes()


def test_import_bytes_view_is_read_only():
    material = load_private_key(sm2.Sm2PrivateKey.generate().scalar_bytes())
    view = material.import_bytes()
    with pytest.raises(TypeError):
        view[0] = 0


def test_material_cannot_be_pickled():
    material = load_private_key(sm2.Sm2PrivateKey.generate().scalar_bytes())
    with pytest.raises(TypeError):
        pickle.dumps(material)


# ---- public keys ---------------------------------------------------------------------------


def test_public_key_der_from_pem_base64_and_der_agree():
    key = _rsa()
    der_bytes = key.public_key().public_bytes(
        ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo
    )
    pem = key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    b64 = base64.b64encode(der_bytes).decode()
    assert public_key_der_from(pem) == public_key_der_from(b64) == public_key_der_from(der_bytes)
    assert fingerprint(public_key_der_from(pem.decode())) == hashlib.sha256(der_bytes).hexdigest()


def test_public_key_der_from_refuses_garbage():
    with pytest.raises(KeyMaterialError):
        public_key_der_from("not base64 at all!")
    with pytest.raises(KeyMaterialError):
        public_key_der_from(b"\x30\x03\x02\x01\x01")


def test_raw_der_ending_in_a_whitespace_byte_is_not_stripped():
    """DER is binary: a public key whose last byte is 0x0a or 0x20 (about 1 in 40 SM2 keys)
    used to lose it to a strip() meant for PEM and Base64 text."""
    from byok_keeper.crypto import sm2
    from byok_keeper.crypto.material import public_key_der_from

    seen = 0
    for _ in range(2000):
        der = sm2.Sm2PrivateKey.generate().public_key().spki_der()
        if der[-1:] in (b"\n", b" ", b"\r", b"\t", b"\x0b", b"\x0c"):
            assert public_key_der_from(der) == der
            seen += 1
            if seen == 3:
                break
    assert seen == 3

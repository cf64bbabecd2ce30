"""OpenSSL as an independent oracle for both wrapping algorithms, in both directions.

(a) material wrapped by the seed procedure's OpenSSL pipeline unwraps with our code;
(b) our wrap_key_material output unwraps with OpenSSL;
(c) SM2: our C1C3C2 ciphertext, re-encoded as OpenSSL's DER, decrypts with `openssl pkeyutl`,
    and OpenSSL's ciphertext re-encoded raw decrypts with ours; SM4 via `openssl enc -sm4-ecb`.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization as ser

from byok_keeper.crypto import sm2, specs
from byok_keeper.crypto.material import load_private_key
from byok_keeper.crypto.wrapping import unwrap_key_material, wrap_key_material
from tests import oracle
from tests.conftest import ALL_SPECS, openssl

pytestmark = pytest.mark.openssl

RSA_ALG = specs.RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD
SM2_ALG = specs.SM2PKE_SM4_ECB
RSA_SPECS = [s for s in ALL_SPECS if s != "EC_SM2"]
OAEP_OPTS = oracle.OAEP_SHA256


@pytest.fixture(scope="module")
def rsa_wrapping(tmp_path_factory):
    """An RSA-2048 wrapping key pair made by OpenSSL, as files (the IWK of the seed)."""
    d = tmp_path_factory.mktemp("rsa-iwk")
    (d / "iwk.pem").write_bytes(openssl("genrsa", "2048"))
    openssl("rsa", "-in", d / "iwk.pem", "-pubout", "-out", d / "iwk_pub.pem")
    return d


@pytest.fixture(scope="module")
def sm2_wrapping(tmp_path_factory):
    d = tmp_path_factory.mktemp("sm2-iwk")
    (d / "iwk.pem").write_bytes(
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:SM2")
    )
    openssl("pkey", "-in", d / "iwk.pem", "-pubout", "-out", d / "iwk_pub.pem")
    return d


def _rsa_private(path):
    return ser.load_pem_private_key(path.read_bytes(), password=None)


def _sm2_private(path):
    material = load_private_key(path.read_bytes())
    return sm2.Sm2PrivateKey.from_bytes(material.import_bytes())


@pytest.mark.parametrize("spec", RSA_SPECS)
def test_a_seed_openssl_pipeline_unwraps_with_ours(spec, openssl_keys, rsa_wrapping, tmp_path):
    (tmp_path / "key.pem").write_bytes(openssl_keys[spec])
    # The seed procedure, step by step.
    openssl(
        "pkcs8",
        "-topk8",
        "-inform",
        "PEM",
        "-in",
        tmp_path / "key.pem",
        "-outform",
        "DER",
        "-nocrypt",
        "-out",
        tmp_path / "tak.der",
    )
    openssl("rand", "-out", tmp_path / "esk.bin", "32")
    openssl(
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        rsa_wrapping / "iwk_pub.pem",
        "-in",
        tmp_path / "esk.bin",
        *OAEP_OPTS,
        "-out",
        tmp_path / "esk.enc",
    )
    esk_hex = (tmp_path / "esk.bin").read_bytes().hex()
    openssl(
        "enc",
        "-aes-256-ecb",
        "-in",
        tmp_path / "tak.der",
        "-K",
        esk_hex,
        "-out",
        tmp_path / "tak.enc",
    )
    wrapped = base64.b64encode(
        (tmp_path / "esk.enc").read_bytes() + (tmp_path / "tak.enc").read_bytes()
    )

    out = unwrap_key_material(wrapped, _rsa_private(rsa_wrapping / "iwk.pem"), RSA_ALG)
    tak = (tmp_path / "tak.der").read_bytes()
    assert bytes(out) == tak
    assert bytes(load_private_key(openssl_keys[spec]).import_bytes()) == tak


@pytest.mark.parametrize("spec", RSA_SPECS)
def test_b_our_wrap_unwraps_with_openssl(spec, openssl_keys, rsa_wrapping, tmp_path):
    material = load_private_key(openssl_keys[spec], key_spec=spec)
    public_pem = (rsa_wrapping / "iwk_pub.pem").read_bytes()
    blob = base64.b64decode(wrap_key_material(material.import_bytes(), public_pem, RSA_ALG))
    (tmp_path / "esk.enc").write_bytes(blob[:256])
    (tmp_path / "tak.enc").write_bytes(blob[256:])

    esk = openssl(
        "pkeyutl",
        "-decrypt",
        "-inkey",
        rsa_wrapping / "iwk.pem",
        "-in",
        tmp_path / "esk.enc",
        *OAEP_OPTS,
    )
    assert len(esk) == 32
    tak = openssl("enc", "-d", "-aes-256-ecb", "-in", tmp_path / "tak.enc", "-K", esk.hex())
    assert tak == bytes(material.import_bytes())


def test_c_our_sm2_wrap_unwraps_with_openssl(openssl_keys, sm2_wrapping, tmp_path):
    material = load_private_key(openssl_keys["EC_SM2"], key_spec="EC_SM2")
    public_pem = (sm2_wrapping / "iwk_pub.pem").read_bytes()
    blob = base64.b64decode(wrap_key_material(material.import_bytes(), public_pem, SM2_ALG))
    raw_esk_ct, tak_ct = blob[:113], blob[113:]
    (tmp_path / "esk.der").write_bytes(sm2.ciphertext_to_der(raw_esk_ct))
    (tmp_path / "tak.enc").write_bytes(tak_ct)

    esk = openssl(
        "pkeyutl", "-decrypt", "-inkey", sm2_wrapping / "iwk.pem", "-in", tmp_path / "esk.der"
    )
    assert len(esk) == 16
    tak = openssl("enc", "-d", "-sm4-ecb", "-nopad", "-in", tmp_path / "tak.enc", "-K", esk.hex())
    assert tak == bytes(material.import_bytes())
    assert len(tak) == 32


def test_c_openssl_sm2_wrap_unwraps_with_ours(openssl_keys, sm2_wrapping, tmp_path):
    material = load_private_key(openssl_keys["EC_SM2"], key_spec="EC_SM2")
    (tmp_path / "d.bin").write_bytes(material.import_bytes())
    openssl("rand", "-out", tmp_path / "esk.bin", "16")
    esk_der = openssl(
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        sm2_wrapping / "iwk_pub.pem",
        "-in",
        tmp_path / "esk.bin",
    )
    tak_ct = openssl(
        "enc",
        "-sm4-ecb",
        "-nopad",
        "-in",
        tmp_path / "d.bin",
        "-K",
        (tmp_path / "esk.bin").read_bytes().hex(),
    )
    wrapped = base64.b64encode(sm2.ciphertext_from_der(esk_der) + tak_ct)

    out = unwrap_key_material(wrapped, _sm2_private(sm2_wrapping / "iwk.pem"), SM2_ALG)
    assert bytes(out) == bytes(material.import_bytes())


def test_sm2_der_conversion_round_trips_openssl_ciphertext(sm2_wrapping, tmp_path):
    (tmp_path / "m").write_bytes(b"sixteen byte esk")
    ct = openssl(
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        sm2_wrapping / "iwk_pub.pem",
        "-in",
        tmp_path / "m",
    )
    assert sm2.ciphertext_to_der(sm2.ciphertext_from_der(ct)) == ct


@pytest.mark.parametrize("user_id", [b"", sm2.DEFAULT_USER_ID])
def test_sm2_signatures_interoperate_with_openssl(user_id, sm2_wrapping, tmp_path):
    key = _sm2_private(sm2_wrapping / "iwk.pem")
    message = b"byok-keeper canary"
    (tmp_path / "msg").write_bytes(message)
    distid = ["-pkeyopt", f"distid:{user_id.decode()}"] if user_id else []
    # OpenSSL signs, we verify.
    sig = openssl(
        "pkeyutl",
        "-sign",
        "-rawin",
        "-digest",
        "sm3",
        "-inkey",
        sm2_wrapping / "iwk.pem",
        "-in",
        tmp_path / "msg",
        *distid,
    )
    digest = sm2.user_digest(key.public_key(), message, user_id)
    sm2.verify_digest(key.public_key(), digest, *sm2.signature_from_der(sig))
    # We sign, OpenSSL verifies.
    (tmp_path / "sig").write_bytes(sm2.signature_der(*key.sign_digest(digest)))
    out = openssl(
        "pkeyutl",
        "-verify",
        "-rawin",
        "-digest",
        "sm3",
        "-pubin",
        "-inkey",
        sm2_wrapping / "iwk_pub.pem",
        "-in",
        tmp_path / "msg",
        "-sigfile",
        tmp_path / "sig",
        *distid,
    )
    assert b"Verified Successfully" in out

"""wrap_key_material / unwrap_key_material: round trips, refusals, randomness."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from byok_keeper.crypto import sm2, specs
from byok_keeper.crypto.material import load_private_key
from byok_keeper.crypto.wrapping import (
    load_wrapping_public_key,
    new_wrapping_key,
    unwrap_key_material,
    wrap_key_material,
    wrapping_public_key_der,
)
from byok_keeper.domain.errors import ByokError, UnwrapError, WrappingError
from tests.conftest import ALL_SPECS

RSA_ALG = specs.RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD
SM2_ALG = specs.SM2PKE_SM4_ECB


@pytest.fixture(scope="module")
def wrapping_keys():
    return {alg: new_wrapping_key(alg) for alg in (RSA_ALG, SM2_ALG)}


def _b64_public(private_key) -> str:
    return base64.b64encode(wrapping_public_key_der(private_key)).decode()


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_round_trip_for_every_spec(spec, openssl_keys, wrapping_keys):
    material = load_private_key(openssl_keys[spec], key_spec=spec)
    alg = material.spec.wrapping_algorithm
    wrapped = wrap_key_material(material.import_bytes(), _b64_public(wrapping_keys[alg]), alg)
    assert bytes(unwrap_key_material(wrapped, wrapping_keys[alg], alg)) == bytes(
        material.import_bytes()
    )


@pytest.mark.parametrize("alg", [RSA_ALG, SM2_ALG])
def test_wrapping_public_key_accepted_as_base64_der_pem_and_der(alg, wrapping_keys):
    key = wrapping_keys[alg]
    der = wrapping_public_key_der(key)
    pem = b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(der) + b"-----END PUBLIC KEY-----\n"
    tak = bytes(range(32))
    for form in (base64.b64encode(der).decode(), der, pem, pem.decode()):
        assert bytes(unwrap_key_material(wrap_key_material(tak, form, alg), key, alg)) == tak


def test_rsa_layout_is_256_byte_esk_block_then_padded_tak(wrapping_keys):
    tak = bytes(100)
    blob = base64.b64decode(wrap_key_material(tak, _b64_public(wrapping_keys[RSA_ALG]), RSA_ALG))
    assert len(blob) == 256 + 112  # OAEP block for RSA-2048, then 100 bytes PKCS#7-padded


def test_sm2_layout_is_c1c3c2_then_unpadded_tak(wrapping_keys):
    tak = bytes(32)
    blob = base64.b64decode(wrap_key_material(tak, _b64_public(wrapping_keys[SM2_ALG]), SM2_ALG))
    assert blob[0] == 0x04
    assert len(blob) == 65 + 32 + 16 + 32
    x = int.from_bytes(blob[1:33], "big")
    y = int.from_bytes(blob[33:65], "big")
    assert sm2.on_curve(x, y)


def test_two_wraps_of_the_same_material_differ(wrapping_keys):
    for alg, tak in ((RSA_ALG, bytes(64)), (SM2_ALG, bytes(32))):
        pub = _b64_public(wrapping_keys[alg])
        assert wrap_key_material(tak, pub, alg) != wrap_key_material(tak, pub, alg)


def test_esk_comes_from_os_urandom(mocker, wrapping_keys):
    marker = bytes(range(1, 33))
    spy = mocker.patch("byok_keeper.crypto.wrapping.os.urandom", return_value=marker)
    key = wrapping_keys[RSA_ALG]
    blob = base64.b64decode(wrap_key_material(bytes(48), _b64_public(key), RSA_ALG))
    spy.assert_called_once_with(32)
    oaep = asym.OAEP(mgf=asym.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    assert key.decrypt(blob[:256], oaep) == marker


def test_sm2_esk_and_ephemeral_scalar_come_from_the_os_csprng(mocker, wrapping_keys):
    urandom = mocker.patch("byok_keeper.crypto.wrapping.os.urandom", return_value=bytes(range(16)))
    randbelow = mocker.spy(sm2.secrets, "randbelow")
    key = wrapping_keys[SM2_ALG]
    blob = base64.b64decode(wrap_key_material(bytes(32), _b64_public(key), SM2_ALG))
    urandom.assert_called_once_with(16)
    assert randbelow.call_count >= 1  # k drawn from `secrets`, i.e. the OS CSPRNG
    assert bytes(key.decrypt(blob[:113])) == bytes(range(16))


def test_sm2_ephemeral_point_is_k_times_g(mocker, wrapping_keys):
    mocker.patch.object(sm2.secrets, "randbelow", return_value=41)  # k = 42
    blob = base64.b64decode(
        wrap_key_material(bytes(32), _b64_public(wrapping_keys[SM2_ALG]), SM2_ALG)
    )
    assert blob[:65] == sm2.Sm2PrivateKey(42).public_key().point_bytes()


# ---- refusals ------------------------------------------------------------------------------


def test_refuses_non_rsa_2048_wrapping_keys():
    for key in (
        rsa.generate_private_key(public_exponent=65537, key_size=3072),
        ec.generate_private_key(ec.SECP256R1()),
    ):
        pub = key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
        with pytest.raises(WrappingError, match="needs an RSA-2048 wrapping public key"):
            wrap_key_material(bytes(32), pub, RSA_ALG)


def test_refuses_rsa_wrapping_key_for_sm2(wrapping_keys):
    with pytest.raises(WrappingError, match="needs an SM2 wrapping public key"):
        wrap_key_material(bytes(32), _b64_public(wrapping_keys[RSA_ALG]), SM2_ALG)


def test_refuses_unknown_algorithm(wrapping_keys):
    with pytest.raises(WrappingError, match="unsupported wrapping algorithm"):
        wrap_key_material(bytes(32), _b64_public(wrapping_keys[RSA_ALG]), "AES_256_ECB")


def test_refuses_sm2_material_not_in_whole_blocks(wrapping_keys):
    with pytest.raises(WrappingError, match="whole 16-byte blocks"):
        wrap_key_material(bytes(33), _b64_public(wrapping_keys[SM2_ALG]), SM2_ALG)


def test_refuses_empty_material_and_garbage_public_keys(wrapping_keys):
    with pytest.raises(WrappingError, match="empty"):
        wrap_key_material(b"", _b64_public(wrapping_keys[RSA_ALG]), RSA_ALG)
    for bad in ("", "!!!", "QUJD", b"\x30\x00"):
        with pytest.raises(WrappingError, match="wrapping public key"):
            wrap_key_material(bytes(32), bad, RSA_ALG)


@pytest.mark.parametrize("alg", [RSA_ALG, SM2_ALG])
def test_unwrap_refuses_tampering_with_one_opaque_error(alg, wrapping_keys):
    tak = bytes(range(32))
    blob = bytearray(base64.b64decode(wrap_key_material(tak, _b64_public(wrapping_keys[alg]), alg)))
    for pos in (0, 5, 70, 120, len(blob) - 1):
        flipped = bytearray(blob)
        flipped[pos] ^= 0x01
        try:
            out = unwrap_key_material(base64.b64encode(flipped), wrapping_keys[alg], alg)
        except UnwrapError as exc:
            assert str(exc) == f"wrapped key material does not open under {alg}"
        else:
            # Flipping inside an ECB block of the TAK changes only the plaintext (ECB has no
            # integrity); what must never happen is that the original comes back unchanged.
            assert bytes(out) != tak


def test_unwrap_refuses_wrong_key_type_and_bad_base64(wrapping_keys):
    wrapped = wrap_key_material(bytes(32), _b64_public(wrapping_keys[SM2_ALG]), SM2_ALG)
    with pytest.raises(WrappingError, match="SM2 wrapping private key"):
        unwrap_key_material(wrapped, wrapping_keys[RSA_ALG], SM2_ALG)
    with pytest.raises(WrappingError, match="not valid Base64"):
        unwrap_key_material("@@@", wrapping_keys[SM2_ALG], SM2_ALG)
    with pytest.raises(UnwrapError):
        unwrap_key_material(base64.b64encode(bytes(20)), wrapping_keys[RSA_ALG], RSA_ALG)


def test_error_messages_never_echo_the_material(wrapping_keys):
    secret = bytes(range(200, 233))
    try:
        wrap_key_material(secret, _b64_public(wrapping_keys[SM2_ALG]), SM2_ALG)
    except ByokError as exc:
        assert secret.hex() not in str(exc)
        assert base64.b64encode(secret).decode() not in str(exc)
    else:  # pragma: no cover
        pytest.fail("33-byte SM2 material should have been refused")


def test_load_wrapping_public_key_returns_typed_keys(wrapping_keys):
    assert isinstance(
        load_wrapping_public_key(_b64_public(wrapping_keys[SM2_ALG]), SM2_ALG), sm2.Sm2PublicKey
    )
    assert isinstance(
        load_wrapping_public_key(_b64_public(wrapping_keys[RSA_ALG]), RSA_ALG), rsa.RSAPublicKey
    )


# ---- properties ----------------------------------------------------------------------------

_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(tak=st.binary(min_size=1, max_size=2400))
def test_property_rsa_wrap_round_trips_any_material(tak, wrapping_keys):
    key = wrapping_keys[RSA_ALG]
    assert (
        bytes(unwrap_key_material(wrap_key_material(tak, _b64_public(key), RSA_ALG), key, RSA_ALG))
        == tak
    )


@_SETTINGS
@given(d=st.integers(min_value=1, max_value=sm2.N - 2))
def test_property_any_sm2_scalar_loads_and_round_trips(d, wrapping_keys):
    material = load_private_key(d.to_bytes(32, "big"), key_spec="EC_SM2")
    assert material.public_key_der == sm2.Sm2PrivateKey(d).public_key().spki_der()
    key = wrapping_keys[SM2_ALG]
    wrapped = wrap_key_material(material.import_bytes(), _b64_public(key), SM2_ALG)
    assert bytes(unwrap_key_material(wrapped, key, SM2_ALG)) == d.to_bytes(32, "big")


@settings(max_examples=15, deadline=None)
@given(curve=st.sampled_from([ec.SECP256R1(), ec.SECP256K1()]), data=st.data())
def test_property_random_ec_keys_wrap_and_unwrap_to_their_pkcs8(curve, data, wrapping_keys):
    key = ec.derive_private_key(data.draw(st.integers(min_value=1, max_value=2**255)), curve)
    pem = key.private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.TraditionalOpenSSL, ser.NoEncryption()
    )
    material = load_private_key(pem)
    wk = wrapping_keys[RSA_ALG]
    out = unwrap_key_material(
        wrap_key_material(material.import_bytes(), _b64_public(wk), RSA_ALG), wk, RSA_ALG
    )
    assert load_private_key(bytes(out)).fingerprint == material.fingerprint


def test_unwrap_refuses_an_unknown_algorithm_and_an_oversized_input(wrapping_keys):
    with pytest.raises(WrappingError, match="unsupported wrapping algorithm 'AES_GCM'"):
        unwrap_key_material("QUJD", wrapping_keys[RSA_ALG], "AES_GCM")
    with pytest.raises(WrappingError, match="too long"):
        unwrap_key_material("QUJD" * 4097, wrapping_keys[RSA_ALG], RSA_ALG)


def test_unwrap_refuses_a_wrapping_key_that_does_not_fit(wrapping_keys):
    rsa_3072 = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    blob = base64.b64encode(bytes(256 + 48)).decode()
    for key in (wrapping_keys[SM2_ALG], rsa_3072):
        with pytest.raises(WrappingError, match="needs an RSA-2048 wrapping private key"):
            unwrap_key_material(blob, key, RSA_ALG)


@pytest.mark.parametrize("cut", [5, 32, 16 + 32])
def test_sm2_material_cut_short_is_one_opaque_unwrap_error(wrapping_keys, cut):
    key = wrapping_keys[SM2_ALG]
    tak = bytes(sm2.Sm2PrivateKey.generate().scalar_bytes())
    raw = base64.b64decode(wrap_key_material(tak, _b64_public(key), SM2_ALG))
    with pytest.raises(UnwrapError):  # never a ValueError from the block cipher
        unwrap_key_material(base64.b64encode(raw[:-cut]).decode(), key, SM2_ALG)


def _hand_wrap_rsa(key, tak_padded: bytes, esk_len: int = 32) -> str:
    """RSA-layout EncryptedKeyMaterial built by hand, padding and ESK length as given."""
    import os

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    esk = os.urandom(esk_len)
    oaep = asym.OAEP(mgf=asym.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    enc = Cipher(algorithms.AES(esk), modes.ECB()).encryptor()  # noqa: S305 - KMS's layout
    body = enc.update(tak_padded) + enc.finalize()
    return base64.b64encode(key.public_key().encrypt(esk, oaep) + body).decode()


@pytest.mark.parametrize(
    ("padded", "esk_len"),
    [
        (b"k" * 31 + b"\x00", 32),  # pad byte 0
        (b"k" * 15 + b"\x11" * 17, 32),  # pad byte 17, longer than a block
        (b"k" * 28 + b"\x04\x04\x03\x04", 32),  # pad bytes that disagree
        (b"k" * 31 + b"\x01", 16),  # an AES-128 ESK
    ],
    ids=["pad-0", "pad-17", "pad-mixed", "aes-128"],
)
def test_rsa_layout_with_bad_padding_or_esk_is_one_opaque_unwrap_error(
    wrapping_keys, padded, esk_len
):
    wrapped = _hand_wrap_rsa(wrapping_keys[RSA_ALG], padded, esk_len)
    with pytest.raises(UnwrapError):
        unwrap_key_material(wrapped, wrapping_keys[RSA_ALG], RSA_ALG)


@pytest.mark.parametrize("length", [15, 16, 17])
def test_rsa_layout_padding_of_one_and_of_a_whole_block_round_trips(wrapping_keys, length):
    tak = bytes(range(length))
    pad = 16 - length % 16
    wrapped = _hand_wrap_rsa(wrapping_keys[RSA_ALG], tak + bytes([pad]) * pad)
    assert bytes(unwrap_key_material(wrapped, wrapping_keys[RSA_ALG], RSA_ALG)) == tak


@pytest.mark.parametrize(
    "cut", [lambda raw: raw[:-5], lambda raw: raw[:256], lambda raw: raw[:100]],
    ids=["tail-not-whole-blocks", "no-tak", "short-esk"],
)  # fmt: skip
def test_rsa_material_cut_short_is_one_opaque_unwrap_error(wrapping_keys, cut):
    key = wrapping_keys[RSA_ALG]
    tak = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.NoEncryption()
    )
    raw = base64.b64decode(wrap_key_material(tak, _b64_public(key), RSA_ALG))
    with pytest.raises(UnwrapError):
        unwrap_key_material(base64.b64encode(cut(raw)).decode(), key, RSA_ALG)

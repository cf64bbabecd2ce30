"""aliyun-local opens imported material with its own code and its own explicit parameters.

The agent's ``wrap_key_material`` and the emulator's ``unwrap`` are separate implementations of
Alibaba Cloud's procedure, so a wrong parameter in the agent fails every import (in these tests
and in every functional test) whether or not ``openssl`` is installed. Here the emulator side
is checked against material wrapped by hand with ``cryptography`` primitives, and against each
plausible mistake an implementation could make.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import aliyun_local.kms.unwrap as emulator_unwrap
from aliyun_local.kms.unwrap import RSA_OAEP_AES, SM2_SM4, UnwrapFailed, unwrap
from byok_keeper.crypto import sm2
from byok_keeper.crypto.material import load_private_key
from byok_keeper.crypto.wrapping import wrap_key_material, wrapping_public_key_der

RSA_WRAP = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SHA256_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _ecb(cipher, data: bytes) -> bytes:
    enc = Cipher(cipher, modes.ECB()).encryptor()  # noqa: S305 - KMS's TAK layer
    return enc.update(data) + enc.finalize()


def _pkcs8(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _wrap_rsa(tak: bytes, *, oaep=SHA256_OAEP, pad=True, esk_len=32) -> str:
    esk = os.urandom(esk_len)
    n = 16 - len(tak) % 16
    body = tak + bytes([n]) * n if pad else tak
    return base64.b64encode(
        RSA_WRAP.public_key().encrypt(esk, oaep) + _ecb(algorithms.AES(esk), body)
    ).decode()


def test_no_byok_keeper_import_in_the_emulators_unwrap():
    tree = ast.parse(Path(emulator_unwrap.__file__).read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {m for m in imported if m.startswith("byok_keeper")}


def test_rsa_material_wrapped_by_hand_opens_and_fingerprints():
    target = ec.generate_private_key(ec.SECP256R1())
    tak = _pkcs8(target)
    assert bytes(unwrap(_wrap_rsa(tak), RSA_WRAP, RSA_OAEP_AES)) == tak
    spki = target.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert emulator_unwrap.material_fingerprint(tak, "EC_P256") == hashlib.sha256(spki).hexdigest()


@pytest.mark.parametrize(
    "mistake",
    [
        dict(oaep=padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA256(), None)),  # noqa: S303
        dict(oaep=padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)),  # noqa: S303
        dict(oaep=padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), b"label")),
        dict(oaep=padding.PKCS1v15()),
        dict(pad=False),
        dict(esk_len=16),
    ],
    ids=["mgf1-sha1", "oaep-sha1", "label", "pkcs1v15", "no-pkcs7", "aes-128"],
)
def test_rsa_wrapping_with_a_wrong_parameter_is_refused(mistake):
    tak = _pkcs8(ec.generate_private_key(ec.SECP256R1()))
    if mistake.get("pad") is False:
        tak = tak[: len(tak) - len(tak) % 16]  # whole blocks, so only the padding is missing
    wrapped = _wrap_rsa(tak, **mistake)
    try:
        opened = unwrap(wrapped, RSA_WRAP, RSA_OAEP_AES)
    except UnwrapFailed:
        return
    # A missing PKCS#7 pad may, once in 256, end in a byte that looks like padding: then the
    # material is cut short and no longer a PKCS#8 key.
    assert bytes(opened) != tak
    with pytest.raises(UnwrapFailed):
        emulator_unwrap.material_fingerprint(opened, "EC_P256")


def _sm2_key():
    key = sm2.Sm2PrivateKey.generate()
    return key, key.public_key()


def test_the_agents_sm2_wrapping_opens_with_the_emulators_sm2():
    wrapping, _public = _sm2_key()
    target = sm2.Sm2PrivateKey.generate()
    tak = bytes(target.scalar_bytes())
    wrapped = wrap_key_material(tak, wrapping_public_key_der(wrapping), SM2_SM4)
    assert bytes(unwrap(wrapped, wrapping, SM2_SM4)) == tak
    expected = hashlib.sha256(target.public_key().spki_der()).hexdigest()
    assert emulator_unwrap.material_fingerprint(tak, "EC_SM2") == expected


@pytest.mark.parametrize("mistake", ["c1c2c3", "no-04", "bad-c3", "sm4-padded", "other-key"])
def test_sm2_wrapping_with_a_wrong_layout_is_refused(mistake):
    wrapping, public = _sm2_key()
    esk = os.urandom(16)
    tak = bytes(sm2.Sm2PrivateKey.generate().scalar_bytes())
    enc_esk = sm2.encrypt(public if mistake != "other-key" else _sm2_key()[1], esk)
    c1, c3, c2 = enc_esk[:65], enc_esk[65:97], enc_esk[97:]
    if mistake == "c1c2c3":
        enc_esk = c1 + c2 + c3
    elif mistake == "no-04":
        enc_esk = c1[1:] + c3 + c2 + b"\x00"
    elif mistake == "bad-c3":
        enc_esk = c1 + bytes([c3[0] ^ 1]) + c3[1:] + c2
    body = tak + bytes([16]) * 16 if mistake == "sm4-padded" else tak
    wrapped = base64.b64encode(enc_esk + _ecb(algorithms.SM4(esk), body)).decode()
    try:
        opened = unwrap(wrapped, wrapping, SM2_SM4)
    except UnwrapFailed:
        return
    with pytest.raises(UnwrapFailed):  # the padded TAK is 48 bytes, not a 32-byte scalar
        emulator_unwrap.material_fingerprint(opened, "EC_SM2")


@pytest.mark.parametrize(
    "spec, other",
    [("EC_P256", "EC_P256K"), ("RSA_2048", "RSA_3072"), ("EC_P256", "RSA_2048")],
)
def test_material_of_another_spec_is_refused(target_keys, spec, other):
    tak = bytes(load_private_key(target_keys[other]).import_bytes())
    with pytest.raises(UnwrapFailed, match="not an"):
        emulator_unwrap.material_fingerprint(tak, spec)


def test_pkcs1_and_sec1_encodings_are_refused():
    for key, fmt in (
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RSA_2048"),
        (ec.generate_private_key(ec.SECP256R1()), "EC_P256"),
    ):
        traditional = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        with pytest.raises(UnwrapFailed, match="PKCS#8"):
            emulator_unwrap.material_fingerprint(traditional, fmt)


@pytest.mark.parametrize(
    "tak",
    [bytes(32), (sm2.N - 1).to_bytes(32, "big"), sm2.N.to_bytes(32, "big"), b"\x01" * 31],
    ids=["zero", "n-1", "n", "31-bytes"],
)
def test_sm2_scalars_out_of_range_are_refused(tak):
    with pytest.raises(UnwrapFailed):
        emulator_unwrap.material_fingerprint(tak, "EC_SM2")


@pytest.mark.parametrize(
    "text, alg",
    [("%%%", RSA_OAEP_AES), ("QUJD" * 5000, RSA_OAEP_AES), ("", SM2_SM4), ("QUJD", "AES_GCM")],
    ids=["not-base64", "too-long", "empty", "unknown-algorithm"],
)
def test_garbage_is_refused(text, alg):
    with pytest.raises(UnwrapFailed):
        unwrap(text, RSA_WRAP if alg != SM2_SM4 else _sm2_key()[0], alg)

"""The emulator's own SM2 and key-spec table against the agent's and against OpenSSL.

aliyun-local signs, verifies, encrypts and decrypts SM2 with its own code
(``aliyun_local.kms.sm2``) and keeps its own spec table (``aliyun_local.kms.specs``), so a bug
in the agent's cannot pass on both sides of an SM2 canary. Here the two implementations meet
in both directions, and OpenSSL (an implementation neither wrote) checks the emulator's.
"""

from __future__ import annotations

import secrets

import pytest

from aliyun_local.kms import sm2 as emu
from aliyun_local.kms import specs as emu_specs
from byok_keeper.crypto import sm2 as agent
from byok_keeper.crypto import specs as agent_specs
from tests.conftest import openssl

# OpenSSL 3.0's command line hashes an empty SM2 ID unless told; KMS and both SM2s use this one.
DISTID = "distid:1234567812345678"


def _affine_mul(k: int, pt):
    """A reference: textbook affine double-and-add, as short as it can be."""
    p, result = emu.P, None

    def add(a, b):
        if a is None or b is None:
            return a or b
        if a[0] == b[0]:
            if (a[1] + b[1]) % p == 0:
                return None
            lam = (3 * a[0] * a[0] + emu.A) * pow(2 * a[1], -1, p) % p
        else:
            lam = (b[1] - a[1]) * pow(b[0] - a[0], -1, p) % p
        x = (lam * lam - a[0] - b[0]) % p
        return x, (lam * (a[0] - x) - a[1]) % p

    while k:
        if k & 1:
            result = add(result, pt)
        pt, k = add(pt, pt), k >> 1
    return result


def test_sm3_known_answers():
    # GB/T 32905 appendix A: "abc" and "abcd" * 16.
    assert emu.sm3(b"abc").hex() == (
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    )
    assert emu.sm3(b"abcd" * 16).hex() == (
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    )


def test_the_curve_arithmetic_matches_textbook_affine_double_and_add():
    assert emu.on_curve(emu.G) and emu.mul(emu.N, emu.G) is None
    for k in (1, 2, 15, 16, 17, emu.N - 1, *(secrets.randbelow(emu.N) for _ in range(3))):
        assert emu.mul(k, emu.G) == _affine_mul(k, emu.G)
    a, b, c = (secrets.randbelow(emu.N) for _ in range(3))
    assert emu.mul_add(a, emu.G, b, emu.mul(c, emu.G)) == _affine_mul((a + b * c) % emu.N, emu.G)
    assert emu.mul_add(1, emu.G, emu.N - 1, emu.G) is None


def _pair():
    ours = emu.Sm2PrivateKey.generate()
    theirs = agent.Sm2PrivateKey.from_bytes(ours.scalar_bytes())
    return ours, theirs


def test_both_derive_the_same_public_key_and_user_digest():
    ours, theirs = _pair()
    assert theirs.public_key().spki_der() == ours.public_key().spki_der()
    their_pub = agent.Sm2PublicKey.from_spki_der(ours.public_key().spki_der())
    assert agent.user_digest(their_pub, b"canary") == emu.user_digest(ours.public_key(), b"canary")


def test_each_verifies_the_others_signature():
    ours, theirs = _pair()
    pub, their_pub = ours.public_key(), theirs.public_key()
    for message in (b"canary", b"", b"x" * 1000):
        e = emu.user_digest(pub, message)
        der = emu.signature_der(*ours.sign_digest(e))
        agent.verify_digest(their_pub, e, *agent.signature_from_der(der))
        der = agent.signature_der(*theirs.sign_digest(e))
        emu.verify_digest(pub, e, *emu.signature_from_der(der))


@pytest.mark.parametrize("size", [1, 16, 31, 32, 33, 100])
def test_each_decrypts_the_others_ciphertext_in_both_forms(size):
    ours, theirs = _pair()
    message = secrets.token_bytes(size)
    raw = emu.encrypt(ours.public_key(), message)
    assert bytes(theirs.decrypt(raw)) == message
    assert agent.ciphertext_to_der(raw) == emu.ciphertext_to_der(raw)
    raw = agent.encrypt(theirs.public_key(), message)
    assert ours.decrypt(emu.ciphertext_from_der(agent.ciphertext_to_der(raw))) == message


def test_refusals_are_sm2_errors_that_quote_nothing():
    key = emu.Sm2PrivateKey.generate()
    pub = key.public_key()
    e = emu.user_digest(pub, b"canary")
    r, s = key.sign_digest(e)
    for bad in ((r + emu.N, s), (r, s + emu.N), (r, (s + 1) % emu.N), (0, s)):
        with pytest.raises(emu.Sm2Error, match="does not verify"):
            emu.verify_digest(pub, e, *bad)
    raw = bytearray(emu.encrypt(pub, b"sixteen byte esk"))
    for at in (2, 70, len(raw) - 1):  # C1, C3, C2
        tampered = bytearray(raw)
        tampered[at] ^= 1
        with pytest.raises(emu.Sm2Error):
            key.decrypt(bytes(tampered))
    for der in (b"", b"\x30\x00", emu.signature_der(r, s) + b"\x00", b"\x30\x03\x02\x01\x80"):
        with pytest.raises(emu.Sm2Error, match="not a DER SM2 signature"):
            emu.signature_from_der(der)
    with pytest.raises(emu.Sm2Error, match="not a DER SM2 ciphertext"):
        emu.ciphertext_from_der(emu.signature_der(r, s))
    for d in (0, emu.N - 1):
        with pytest.raises(emu.Sm2Error, match="out of range"):
            emu.Sm2PrivateKey(d)
    with pytest.raises(emu.Sm2Error, match="empty"):
        emu.encrypt(pub, b"")
    assert key.scalar_bytes().hex() not in repr(key)


def test_the_spec_tables_agree():
    assert list(emu_specs.KEY_SPECS) == list(agent_specs.KEY_SPECS)
    fields = ("rsa_bits", "curve", "usages", "protection_levels", "sign_algorithms")
    for name, ours in emu_specs.KEY_SPECS.items():
        theirs = agent_specs.KEY_SPECS[name]
        for f in (*fields, "encrypt_algorithms", "wrapping_algorithm", "wrapping_key_spec"):
            assert getattr(ours, f) == getattr(theirs, f), (name, f)


# ---- OpenSSL, which neither side wrote ---------------------------------------------------------


@pytest.fixture
def openssl_sm2(tmp_path):
    """An SM2 key pair OpenSSL made (PEM file) and its public key as the emulator reads it."""
    (tmp_path / "key.pem").write_bytes(
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:SM2")
    )
    spki = openssl("pkey", "-in", tmp_path / "key.pem", "-pubout", "-outform", "DER")
    return tmp_path / "key.pem", emu.Sm2PublicKey.from_spki_der(spki)


def _public_pem(key: emu.Sm2PrivateKey, where):
    (where / "pub.der").write_bytes(key.public_key().spki_der())
    openssl("pkey", "-pubin", "-inform", "DER", "-in", where / "pub.der", "-out", where / "pub.pem")
    return where / "pub.pem"


@pytest.mark.openssl
def test_openssl_verifies_the_emulators_signature(tmp_path):
    key = emu.Sm2PrivateKey.generate()
    message = b"an SM2 canary"
    (tmp_path / "msg").write_bytes(message)
    e = emu.user_digest(key.public_key(), message)
    (tmp_path / "sig").write_bytes(emu.signature_der(*key.sign_digest(e)))
    out = openssl("pkeyutl", "-verify", "-pubin", "-inkey", _public_pem(key, tmp_path), "-rawin",
                  "-digest", "sm3", "-pkeyopt", DISTID, "-in", tmp_path / "msg",
                  "-sigfile", tmp_path / "sig")  # fmt: skip
    assert b"Signature Verified Successfully" in out


@pytest.mark.openssl
def test_the_emulator_verifies_openssls_signature(openssl_sm2, tmp_path):
    pem, pub = openssl_sm2
    message = b"an SM2 canary"
    (tmp_path / "msg").write_bytes(message)
    der = openssl("pkeyutl", "-sign", "-inkey", pem, "-rawin", "-digest", "sm3",
                  "-pkeyopt", DISTID, "-in", tmp_path / "msg")  # fmt: skip
    emu.verify_digest(pub, emu.user_digest(pub, message), *emu.signature_from_der(der))


@pytest.mark.openssl
def test_the_emulator_decrypts_openssls_ciphertext(tmp_path):
    key = emu.Sm2PrivateKey.generate()
    esk = secrets.token_bytes(16)
    (tmp_path / "esk").write_bytes(esk)
    der = openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", _public_pem(key, tmp_path),
                  "-in", tmp_path / "esk")  # fmt: skip
    assert key.decrypt(emu.ciphertext_from_der(der)) == esk


@pytest.mark.openssl
def test_openssl_decrypts_the_emulators_ciphertext(openssl_sm2, tmp_path):
    pem, pub = openssl_sm2
    message = secrets.token_bytes(40)
    (tmp_path / "ct").write_bytes(emu.ciphertext_to_der(emu.encrypt(pub, message)))
    assert openssl("pkeyutl", "-decrypt", "-inkey", pem, "-in", tmp_path / "ct") == message

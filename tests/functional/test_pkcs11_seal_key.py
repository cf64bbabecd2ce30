"""The pkcs11 sealer's seal key and data keys at their edges (SoftHSM2, a token per test): every
attribute of a new key, its CKA_ID, strict parsing of a wrapped data key, a token gone for good
or answering a wrong length, and the binding's copy of an opened key zeroed."""

from __future__ import annotations

import pytest

from byok_keeper.vault import SealError
from byok_keeper.vault.pkcs11 import Pkcs11Error, build_pkcs11_sealer, new_token_key, token_for
from byok_keeper.vault.pkcs11_uri import parse_uri
from byok_keeper.vault.sealers import seal_context
from tests.functional import test_pkcs11_sealer as base

token, sealer = base.token, base.sealer  # the same fixtures: a token per test, its sealer


def test_a_wrapped_data_key_that_is_not_strict_base64_or_not_60_bytes_is_refused(sealer):
    """Strict parsing: a character outside Base64 is refused, not skipped (the wrapped key
    would otherwise open with any noise added to the envelope), and the length (IV, key, tag)
    is checked before the token is asked."""
    import base64

    context = seal_context("key-test000000000000001", "ab" * 32)
    data_key, wrapped = sealer.new_data_key(context)
    assert len(base64.b64decode(wrapped)) == 12 + 32 + 16
    for noisy in (wrapped[:8] + "!" + wrapped[8:], wrapped[:8] + "\n" + wrapped[8:]):
        with pytest.raises(SealError, match="not Base64"):
            sealer.open_data_key(noisy, context)
    blob = base64.b64decode(wrapped)
    for wrong in (blob[:-1], blob + b"\0"):
        with pytest.raises(SealError, match="wrong length"):
            sealer.open_data_key(base64.b64encode(wrong).decode(), context)
    assert sealer.open_data_key(wrapped, context) == data_key


@pytest.mark.parametrize("answer", ["unplugged", "short"])
def test_a_token_gone_for_good_or_answering_a_short_key_is_never_an_envelope_that_opens(
    sealer, monkeypatch, answer
):
    """The device at its edge: a token that stays unplugged after the one login again is the
    token's fault (Pkcs11Error, exit 2), not the envelope's (SealError); a token that answers a
    data key of the wrong length is refused, never used."""
    import PyKCS11 as pk

    context = seal_context("key-test000000000000001", "ab" * 32)
    _, wrapped = sealer.new_data_key(context)

    def decrypt(session, key, data, mechanism):
        if answer == "unplugged":
            raise pk.PyKCS11Error(pk.CKR_DEVICE_REMOVED)
        return pk.ckbytelist(bytes(31))

    monkeypatch.setattr(pk.Session, "decrypt", decrypt)
    expected = (Pkcs11Error, "CKR_DEVICE_REMOVED") if answer == "unplugged" else (
        SealError, "wrong length")  # fmt: skip
    with pytest.raises(expected[0], match=expected[1]):
        sealer.open_data_key(wrapped, context)


def test_the_bindings_copy_of_an_opened_data_key_is_zeroed(sealer, monkeypatch):
    """PyKCS11 answers decrypt in a list of its own: once the data key is copied out of it, it
    is zeroed (caught at the binding's edge, the real token answering)."""
    import PyKCS11 as pk

    context = seal_context("key-test000000000000001", "ab" * 32)
    data_key, wrapped = sealer.new_data_key(context)
    answers, real = [], pk.Session.decrypt

    def decrypt(session, *args, **kwargs):
        answers.append(real(session, *args, **kwargs))
        return answers[-1]

    monkeypatch.setattr(pk.Session, "decrypt", decrypt)
    assert sealer.open_data_key(wrapped, context) == data_key
    assert len(answers) == 1 and list(answers[0]) == [0] * 32


def test_a_seal_key_made_without_id_gets_8_random_bytes_named_in_its_reference(token):
    import re

    ref = new_token_key(token.uri())
    match = re.fullmatch(r"pkcs11:token=byok;object=byok-seal;id=((?:%[0-9a-f]{2})+)", ref)
    assert match and len(match.group(1)) == 3 * 8
    assert build_pkcs11_sealer(token.uri()).key_ref == ref


def test_the_seal_key_is_private_unmodifiable_and_only_encrypts_and_decrypts(token):
    """Every attribute new_token_key sets, read back from the token: a login is needed to use
    it, it cannot be changed, and encrypt/decrypt are its only functions."""
    import PyKCS11 as pk

    new_token_key(token.uri())
    with token_for(parse_uri(token.uri())).session() as session:
        (key,) = session.findObjects([(pk.CKA_LABEL, "byok-seal")])
        names = ["CKA_CLASS", "CKA_KEY_TYPE", "CKA_PRIVATE", "CKA_MODIFIABLE", "CKA_ENCRYPT",
                 "CKA_DECRYPT", "CKA_WRAP", "CKA_UNWRAP", "CKA_SIGN", "CKA_VERIFY", "CKA_DERIVE",
                 "CKA_LOCAL", "CKA_ALWAYS_SENSITIVE"]  # fmt: skip
        values = session.getAttributeValue(key, [getattr(pk, n) for n in names])
    assert dict(zip(names, values, strict=True)) == {
        "CKA_CLASS": pk.CKO_SECRET_KEY, "CKA_KEY_TYPE": pk.CKK_AES, "CKA_PRIVATE": True,
        "CKA_MODIFIABLE": False, "CKA_ENCRYPT": True, "CKA_DECRYPT": True, "CKA_WRAP": False,
        "CKA_UNWRAP": False, "CKA_SIGN": False, "CKA_VERIFY": False, "CKA_DERIVE": False,
        "CKA_LOCAL": True, "CKA_ALWAYS_SENSITIVE": True,
    }  # fmt: skip

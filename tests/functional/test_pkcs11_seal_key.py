"""The pkcs11 sealer's seal key and data keys at their edges (SoftHSM2, a token per test): every
attribute of a new key, its CKA_ID, strict parsing of a wrapped data key, a token gone for good
or answering a wrong length, and the binding's copy of an opened key zeroed; the URI's id picking
one key among keys sharing a label, a key replaced while the token was away, two tokens matching,
each login refusal's words, every PIN buffer zeroed, only slots holding a token looked at, a
context in any key order, and an envelope's refusal that never logs in again."""

from __future__ import annotations

import os
import subprocess

import pytest

from byok_keeper.vault import SealError, pkcs11
from byok_keeper.vault.pkcs11 import Pkcs11Error, build_pkcs11_sealer, new_token_key, token_for
from byok_keeper.vault.pkcs11_uri import parse_uri
from byok_keeper.vault.sealers import seal_context
from tests.functional import test_pkcs11_sealer as base
from tests.pkcs11 import SO_PIN, require_softhsm

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


def _second_key(token, key_id: bytes) -> None:
    """Another AES key labelled ``byok-seal``, made in the token like new_token_key's (so it
    passes every check), with its own CKA_ID."""
    import PyKCS11 as pk

    with token_for(parse_uri(token.uri())).session() as session:
        session.generateKey([(pk.CKA_CLASS, pk.CKO_SECRET_KEY), (pk.CKA_KEY_TYPE, pk.CKK_AES),
                             (pk.CKA_VALUE_LEN, 32), (pk.CKA_LABEL, "byok-seal"),
                             (pk.CKA_ID, key_id), (pk.CKA_TOKEN, True), (pk.CKA_PRIVATE, True),
                             (pk.CKA_SENSITIVE, True), (pk.CKA_EXTRACTABLE, False),
                             (pk.CKA_ENCRYPT, True), (pk.CKA_DECRYPT, True)],
                            pk.MechanismAESGENERATEKEY)  # fmt: skip


def test_the_uris_id_picks_its_key_among_keys_sharing_the_label(token):
    """Two seal keys share the label: a URI without id is refused, and a URI with id= binds
    the key with that CKA_ID, whose envelopes the other key cannot open."""
    new_token_key(token.uri(extra=";id=%01"))
    _second_key(token, b"\x02")
    with pytest.raises(Pkcs11Error, match="holds 2 AES keys labelled 'byok-seal': add id="):
        build_pkcs11_sealer(token.uri())
    one = build_pkcs11_sealer(token.uri(extra=";id=%01"))
    two = build_pkcs11_sealer(token.uri(extra=";id=%02"))
    ref = "pkcs11:token=byok;object=byok-seal;id="
    assert (one.key_ref, two.key_ref) == (ref + "%01", ref + "%02")
    context = seal_context("key-test000000000000001", "ab" * 32)
    data_key, wrapped = one.new_data_key(context)
    assert one.open_data_key(wrapped, context) == data_key
    with pytest.raises(SealError):
        two.open_data_key(wrapped, context)


def test_a_seal_key_replaced_while_the_token_was_away_is_refused_not_used(token):
    """The token lost this process's login; meanwhile the key labelled byok-seal was replaced
    by another (a new CKA_ID): logging in again finds it and refuses it, never seals with it."""
    import PyKCS11 as pk

    new_token_key(token.uri(extra=";id=%01"))
    sealer = build_pkcs11_sealer(token.uri())
    context = seal_context("key-test000000000000001", "ab" * 32)
    sealer.new_data_key(context)
    with token_for(parse_uri(token.uri())).session() as session:
        (old,) = session.findObjects([(pk.CKA_LABEL, "byok-seal")])
        session.destroyObject(old)
    _second_key(token, b"\x02")
    sealer._token.lib.closeAllSessions(sealer._token.slot)  # the login is gone with them
    with pytest.raises(Pkcs11Error, match="the key 'byok-seal' changed in the token"):
        sealer.new_data_key(context)


def test_two_tokens_matching_the_uri_are_refused_not_the_first_taken(token):
    """A second token with the same label in the module: the URI is ambiguous until serial=
    or slot-id= names one."""
    subprocess.run(
        [require_softhsm(), "--init-token", "--free", "--label", token.label,
         "--pin", token.pin, "--so-pin", SO_PIN],
        env={**os.environ, "SOFTHSM2_CONF": str(token.conf)}, check=True, capture_output=True,
        timeout=60,
    )  # fmt: skip
    with pytest.raises(Pkcs11Error, match="2 tokens match 'byok': add serial= or slot-id=") as no:
        new_token_key(token.uri())
    assert "\n" not in str(no.value)


def test_login_refusals_name_their_cause(token, tmp_path, monkeypatch):
    """Each refusal of the login in its own words: a wrong PIN (the real token), another PIN
    than this process's login (the real token), a locked PIN and any other code (faked: SoftHSM2
    never locks its user PIN)."""
    import PyKCS11 as pk

    new_token_key(token.uri())
    pkcs11.close_all()
    wrong = base._wrong_pin_file(tmp_path)
    other = token.uri(pin_source=False) + f"&pin-source=file:{wrong}"
    with pytest.raises(Pkcs11Error) as refused:
        build_pkcs11_sealer(other)
    assert str(refused.value) == (
        "the token 'byok' refused the PIN (CKR_PIN_INCORRECT); HSMs lock after a few"
    )
    build_pkcs11_sealer(token.uri())
    with pytest.raises(Pkcs11Error) as refused:
        build_pkcs11_sealer(other)
    assert str(refused.value) == "the token 'byok' is logged in by this process with another PIN"
    for code, message in [
        (pk.CKR_PIN_LOCKED,
         "the token 'byok' is locked (CKR_PIN_LOCKED): its security officer unlocks it"),
        (pk.CKR_PIN_EXPIRED, "logging in to the token 'byok' failed (CKR_PIN_EXPIRED)"),
    ]:  # fmt: skip
        pkcs11.close_all()

        def login(session, pin, user_type=None, code=code):
            raise pk.PyKCS11Error(code)

        with monkeypatch.context() as patched, pytest.raises(Pkcs11Error) as refused:
            patched.setattr(pk.Session, "login", login)
            build_pkcs11_sealer(token.uri())
        assert str(refused.value) == message


def test_every_pin_read_is_zeroed_after_login_and_after_the_check(token, monkeypatch):
    """The PIN buffers read (for the login, then for a later URI's check against it) are all
    zeros once used."""
    read, real = [], pkcs11.read_pin

    def read_pin(uri, env=None):
        read.append(real(uri, env))
        return read[-1]

    monkeypatch.setattr(pkcs11, "read_pin", read_pin)
    new_token_key(token.uri())
    assert len(read) == 1 and read[0] == bytearray(len(token.pin))
    build_pkcs11_sealer(token.uri())  # the cached login: the PIN is read again and checked
    assert len(read) == 2 and read[1] == bytearray(len(token.pin))


def test_only_slots_holding_a_token_are_looked_at(token, monkeypatch):
    """A reader slot with no token in it (faked: every SoftHSM2 slot holds one) is never
    asked for its token's facts."""
    import PyKCS11 as pk

    real = pk.PyKCS11Lib.getSlotList

    def get_slot_list(lib, tokenPresent=False):
        slots = real(lib, tokenPresent=tokenPresent)
        return slots if tokenPresent else [*slots, 0x7FFF_0000]  # the empty reader

    monkeypatch.setattr(pk.PyKCS11Lib, "getSlotList", get_slot_list)
    assert new_token_key(token.uri()).startswith("pkcs11:token=byok;object=byok-seal;id=")


def test_a_context_opens_in_any_key_order_and_a_refusal_keeps_the_login(sealer):
    """The context is bound in one canonical form, whatever order its keys come in; a refusal
    that is the envelope's (not a lost session or login) never logs in again."""
    data_key, wrapped = sealer.new_data_key({"a": "1", "b": "2"})
    assert sealer.open_data_key(wrapped, {"b": "2", "a": "1"}) == data_key
    before = sealer._token
    with pytest.raises(SealError):
        sealer.open_data_key(wrapped, {"a": "1", "b": "3"})
    assert sealer._token is before and token_for(sealer._uri) is before

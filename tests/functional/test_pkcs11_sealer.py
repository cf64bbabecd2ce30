"""The pkcs11 sealer on a real PKCS#11 module (SoftHSM2, a token per test): the key made inside
the token, envelopes sealed and opened by it, the sweep's concurrency, every refusal, reseal."""

from __future__ import annotations

import os
import threading

import pytest
from structlog.testing import capture_logs

from byok_keeper.core.sweep import sweep_keys
from byok_keeper.domain.audit import AuditLog
from byok_keeper.domain.errors import ConfigError
from byok_keeper.gateway.kms import ENROLL, SWEEP
from byok_keeper.vault import FileStore, LocalKeySealer, SealError, Vault
from byok_keeper.vault.envelope import parse
from byok_keeper.vault.pkcs11 import (
    Pkcs11Error,
    build_pkcs11_sealer,
    close_all,
    new_token_key,
    token_for,
)
from byok_keeper.vault.pkcs11_uri import parse_uri
from byok_keeper.vault.reseal import reseal
from byok_keeper.vault.sealers import new_seal_key_file, seal_context
from tests.functional.conftest import enroll_key, make_gateway
from tests.pkcs11 import MODULE, make_token


@pytest.fixture
def token(tmp_path, monkeypatch):
    """A fresh SoftHSM2 token; the module is unloaded after the test (a new SOFTHSM2_CONF is
    read only when the module is initialised again)."""
    soft = make_token(tmp_path / "hsm")
    monkeypatch.setenv("SOFTHSM2_CONF", str(soft.conf))
    monkeypatch.delenv("BYOK_PKCS11_PIN", raising=False)
    yield soft
    close_all()


@pytest.fixture
def sealer(token):
    new_token_key(token.uri())
    return build_pkcs11_sealer(token.uri())


@pytest.fixture
def world(emulator, kms, tmp_path, sealer):
    vault = Vault(FileStore(tmp_path / "vault"), sealer)
    enroller = make_gateway(emulator, ENROLL)
    return emulator, vault, enroller, enroller.with_allowlist(SWEEP)


def test_the_seal_key_is_made_in_the_token_sensitive_and_never_extractable(token):
    import PyKCS11 as pk

    key_ref = new_token_key(token.uri(extra=";id=%0a%0b"))
    assert key_ref == "pkcs11:token=byok;object=byok-seal;id=%0a%0b"
    tok = token_for(parse_uri(token.uri()))
    with tok.session() as session:
        (key,) = session.findObjects([(pk.CKA_LABEL, "byok-seal")])
        attrs = [pk.CKA_TOKEN, pk.CKA_SENSITIVE, pk.CKA_EXTRACTABLE, pk.CKA_NEVER_EXTRACTABLE,
                 pk.CKA_VALUE_LEN, pk.CKA_WRAP, pk.CKA_SIGN]  # fmt: skip
        assert session.getAttributeValue(key, attrs) == [True, True, False, True, 32, False, False]
        # The token itself will not show the value (PyKCS11 maps CKR_ATTRIBUTE_SENSITIVE to None).
        assert session.getAttributeValue(key, [pk.CKA_VALUE]) == [None]
    with pytest.raises(Pkcs11Error, match="already holds an object labelled 'byok-seal'"):
        new_token_key(token.uri())


def test_a_data_key_opens_only_under_its_own_context_and_ciphertext(sealer):
    context = seal_context("key-test000000000000001", "ab" * 32)
    data_key, wrapped = sealer.new_data_key(context)
    assert len(data_key) == 32 and sealer.open_data_key(wrapped, context) == data_key
    other = seal_context("key-test000000000000002", "ab" * 32)
    blob = bytearray(__import__("base64").b64decode(wrapped))
    blob[20] ^= 1
    flipped = __import__("base64").b64encode(bytes(blob)).decode()
    for bad_wrapped, bad_context in ((wrapped, other), (flipped, context)):
        with pytest.raises(SealError):
            sealer.open_data_key(bad_wrapped, bad_context)
    assert "PIN" not in repr(sealer) and "pin" not in repr(sealer).lower()


def test_enrolled_keys_are_restored_identically_by_a_concurrent_sweep(world, emulator):
    _, vault, _, sweeper = world
    keys = [enroll_key(world, spec)[0] for spec in ("RSA_2048", "EC_P256") * 6]
    envelope = vault.get(keys[0])
    assert envelope.seal.sealer == "pkcs11" and envelope.seal.key_ref == vault.sealer.key_ref
    before = {k: emulator.key_view(k)["material_fingerprint"] for k in keys}
    for k in keys:
        emulator.emulator.kms.delete_key_material(k)
    result = sweep_keys(sweeper, vault, concurrency=8)
    assert sorted(o.outcome for o in result.outcomes) == ["restored"] * len(keys)
    assert {k: emulator.key_view(k)["material_fingerprint"] for k in keys} == before


def test_sessions_are_never_shared_between_threads(sealer):
    context = seal_context("key-test000000000000001", "cd" * 32)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(25):
                data_key, wrapped = sealer.new_data_key(context)
                assert sealer.open_data_key(wrapped, context) == data_key
        except BaseException as exc:  # collected: a failure in a thread must fail the test
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures and not any(t.is_alive() for t in threads)
    assert len(sealer._token._idle) <= 16  # a pool, one session per concurrent worker at most


def test_a_wrong_pin_is_one_line_naming_no_pin(token, tmp_path):
    new_token_key(token.uri())
    close_all()
    wrong = tmp_path / "wrong-pin"
    fd = os.open(wrong, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not-the-pin-9876\n")
    os.close(fd)
    uri = token.uri(pin_source=False) + f"&pin-source=file:{wrong}"
    with pytest.raises(Pkcs11Error) as refused:
        build_pkcs11_sealer(uri)
    assert "CKR_PIN_INCORRECT" in str(refused.value) and "\n" not in str(refused.value)
    assert "not-the-pin" not in str(refused.value) and token.pin not in str(refused.value)


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("pkcs11:token=byok;object=k?module-path=M&pin-value=1234", "pin-value is refused"),
        ("pkcs11:token=byok;object=k?module-path=libsofthsm2.so", "must be absolute"),
        ("pkcs11:object=k?module-path=M", "token= attribute is required"),
        ("pkcs11:token=byok;object=k", "module-path="),
        ("pkcs11:token=byok;object=k;type=private?module-path=M", "type must be secret-key"),
        ("pkcs11:token=byok;object=k;pin=1?module-path=M", "unsupported path attribute"),
        ("pkcs11:token=byok;object=k%zz?module-path=M", "percent-encoding"),
        ("pkcs11:token=nobody;object=k?module-path=M", "no token labelled 'nobody'"),
        ("pkcs11:token=byok;object=absent?module-path=M", "holds 0 AES keys"),
    ],
)
def test_bad_uris_are_refused_in_one_line(token, uri, reason, monkeypatch):
    monkeypatch.setenv("BYOK_PKCS11_PIN", token.pin)
    with pytest.raises(ConfigError, match=reason) as refused:
        build_pkcs11_sealer(uri.replace("=M", f"={MODULE}"))
    assert "1234" not in str(refused.value) and token.pin not in str(refused.value)


@pytest.mark.parametrize(
    ("mode", "reason"), [(0o644, "readable by others"), (0o620, "writable by group")]
)
def test_a_pin_file_others_can_read_or_write_is_refused(token, mode, reason):
    os.chmod(token.pin_file, mode)
    with pytest.raises(ConfigError, match=reason) as refused:
        build_pkcs11_sealer(token.uri())
    assert token.pin not in str(refused.value)


@pytest.mark.parametrize(("folder_mode", "module_mode"), [(0o777, 0o644), (0o755, 0o666)])
def test_a_module_others_can_replace_is_refused(tmp_path, folder_mode, module_mode):
    folder = tmp_path / "modules"
    folder.mkdir()
    module = folder / "evil.so"
    module.write_bytes(b"\x7fELF")
    os.chmod(module, module_mode)  # permissive: the attack under test
    os.chmod(folder, folder_mode)
    with pytest.raises(ConfigError, match="writable by group or others"):
        parse_uri(f"pkcs11:token=t;object=o?module-path={module}")


def test_a_module_below_any_folder_others_can_write_is_refused(tmp_path):
    """The nearest folder is fine; one further up lets others rename it and plant their own."""
    outer = tmp_path / "outer"
    module = outer / "lib" / "softhsm" / "evil.so"
    module.parent.mkdir(parents=True)
    module.write_bytes(b"\x7fELF")
    os.chmod(outer, 0o777)  # noqa: S103 (permissive: the attack under test)
    with pytest.raises(ConfigError, match=f"folder {outer} is writable by group or others"):
        parse_uri(f"pkcs11:token=t;object=o?module-path={module}")


def test_a_module_in_a_folder_chain_only_root_can_write_is_accepted():
    assert parse_uri(f"pkcs11:token=t;object=o?module-path={MODULE}").module_path == MODULE


def _file_vault(tmp_path, emulator):
    new_seal_key_file(tmp_path / "seal.key")
    vault = Vault(FileStore(tmp_path / "vault"), LocalKeySealer.from_file(tmp_path / "seal.key"))
    enroller = make_gateway(emulator, ENROLL)
    world = (emulator, vault, enroller, enroller.with_allowlist(SWEEP))
    return world, [enroll_key(world, spec)[0] for spec in ("RSA_2048", "EC_P256", "EC_P256")]


def test_reseal_moves_every_envelope_into_the_token_and_resumes_after_a_crash(
    emulator, kms, tmp_path, sealer
):
    world, keys = _file_vault(tmp_path, emulator)
    vault = world[1]
    before = {k: vault.store.read(k) for k in keys}
    audit_path = tmp_path / "audit.jsonl"
    dry = reseal(vault, sealer, AuditLog(audit_path), dry_run=True)
    assert dry.resealed == sorted(keys) and {k: vault.store.read(k) for k in keys} == before
    done = reseal(vault, sealer, AuditLog(audit_path))
    assert done.resealed == sorted(keys) and not done.failed
    # A crash before the last write leaves that one envelope as it was: put it back.
    last = sorted(keys)[-1]
    (tmp_path / "vault" / f"{last}.json").write_bytes(before[last])
    again = reseal(vault, sealer, AuditLog(audit_path))
    assert again.resealed == [last] and again.already == sorted(keys)[:-1]
    token_vault = Vault(vault.store, sealer)
    for k in keys:
        envelope = parse(vault.store.read(k), expected_key_id=k)
        assert envelope.header == parse(before[k], expected_key_id=k).header  # same facts
        assert envelope.seal.sealer == "pkcs11"
        token_vault.open(envelope).wipe()
        with pytest.raises(ConfigError, match="sealed with the pkcs11 key"):
            vault.open(envelope)  # the file key no longer opens it
    lines = audit_path.read_text().splitlines()
    assert len(lines) == 3 * len(keys)  # one line per envelope and run, dry run included
    assert all('"envelope_resealed"' in line for line in lines)


def test_reseal_refuses_an_envelope_that_does_not_authenticate(emulator, kms, tmp_path, sealer):
    world, keys = _file_vault(tmp_path, emulator)
    vault = world[1]
    victim = sorted(keys)[0]
    path = tmp_path / "vault" / f"{victim}.json"
    original = path.read_bytes()
    path.write_bytes(original.replace(b'"lease": "30d"', b'"lease": "90d"'))
    with capture_logs() as logs:
        report = reseal(vault, sealer, AuditLog(None))
    assert list(report.failed) == [victim] and report.resealed == sorted(keys)[1:]
    assert parse(path.read_bytes()).seal.sealer == "local"  # left exactly as it was found
    assert [entry["outcome"] for entry in logs if entry["event"] == "envelope_resealed"] == [
        "failed",
        "resealed",
        "resealed",
    ]


def test_reseal_into_a_kms_key_through_the_runtime_builder(emulator, kms, tmp_path, monkeypatch):
    """``vault reseal --to-seal-kms-key-id``: the builder reaches KMS under the reseal
    allowlist only (vault reads and writes), and the vault then opens under the KMS key."""
    from alibabacloud_kms20160120.models import CreateKeyRequest

    from byok_keeper.core.deps import build_reseal
    from byok_keeper.core.settings import Settings
    from tests.functional.two_targets import base_credentials

    _, keys = _file_vault(tmp_path, emulator)
    cmk = kms.create_key(CreateKeyRequest()).body.key_metadata.key_id
    (tmp_path / "creds").mkdir()
    base_credentials(monkeypatch, tmp_path / "creds")  # the emulator's keys as the credentials
    settings = Settings(
        region=emulator.region,
        kms_endpoint=f"http://{emulator.endpoint}",
        vault=f"file://{tmp_path / 'vault'}",
        seal_key_file=str(tmp_path / "seal.key"),
    )
    with pytest.raises(ConfigError, match="exactly one target"):
        build_reseal(settings, to_seal_key_file=None, to_seal_kms_key_id=None, to_seal_pkcs11=None)
    vault, target, audit = build_reseal(
        settings, to_seal_key_file=None, to_seal_kms_key_id=cmk, to_seal_pkcs11=None
    )
    assert target.kind == "kms" and target._gateway.allowlist.name == "reseal"
    report = reseal(vault, target, audit)
    assert report.resealed == sorted(keys) and not report.failed
    kms_vault = Vault(vault.store, target)
    for k in keys:
        kms_vault.fetch(k)[1].wipe()


def test_a_token_that_lost_its_sessions_and_login_is_logged_in_again(sealer):
    """The token closes every session of this process (as when it is unplugged and back, or
    restarted): the next operation logs in again once and goes on, the same key."""
    context = seal_context("key-test000000000000001", "ef" * 32)
    data_key, wrapped = sealer.new_data_key(context)
    before = sealer._token
    before.lib.closeAllSessions(before.slot)  # every session gone, and with them the login
    assert sealer.open_data_key(wrapped, context) == data_key
    assert sealer._token is not before and token_for(sealer._uri) is sealer._token
    again, wrapped_again = sealer.new_data_key(context)
    assert sealer.open_data_key(wrapped_again, context) == again


def test_a_pin_file_owned_by_another_user_is_refused(token):
    if os.geteuid() != 0:
        pytest.skip("giving the PIN file to another user needs root (CI runs as root)")
    os.chown(token.pin_file, 65534, -1)  # nobody
    with pytest.raises(ConfigError, match="owned by uid 65534") as refused:
        build_pkcs11_sealer(token.uri())
    assert token.pin not in str(refused.value)


def _plant(token, how: str) -> None:
    """An AES key labelled ``byok-seal`` that is sensitive and not extractable today, but whose
    value is known outside the token (imported) or could have left it (once extractable)."""
    import PyKCS11 as pk

    common = [(pk.CKA_CLASS, pk.CKO_SECRET_KEY), (pk.CKA_KEY_TYPE, pk.CKK_AES),
              (pk.CKA_LABEL, "byok-seal"), (pk.CKA_ID, b"\x01"), (pk.CKA_TOKEN, True),
              (pk.CKA_PRIVATE, True), (pk.CKA_ENCRYPT, True), (pk.CKA_DECRYPT, True)]  # fmt: skip
    with token_for(parse_uri(token.uri())).session() as session:
        if how == "imported":  # C_CreateObject with a value the attacker chose
            session.createObject([*common, (pk.CKA_VALUE, bytes(32)), (pk.CKA_SENSITIVE, True),
                                  (pk.CKA_EXTRACTABLE, False)])  # fmt: skip
        else:  # generated extractable, then locked down after it could have been exported
            loose = [(pk.CKA_VALUE_LEN, 32), (pk.CKA_SENSITIVE, False), (pk.CKA_EXTRACTABLE, True)]
            key = session.generateKey([*common, *loose], pk.MechanismAESGENERATEKEY)
            session.setAttributeValue(key, [(pk.CKA_SENSITIVE, True), (pk.CKA_EXTRACTABLE, False)])
            assert session.getAttributeValue(key, [pk.CKA_SENSITIVE, pk.CKA_EXTRACTABLE]) == [
                True, False]  # fmt: skip


@pytest.mark.parametrize("how", ["imported", "once-extractable"])
def test_a_seal_key_known_outside_the_token_is_refused(token, how):
    _plant(token, how)
    with pytest.raises(Pkcs11Error, match="may be known outside it") as refused:
        build_pkcs11_sealer(token.uri())
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("kind", ["data", "generic-secret"])
def test_seal_key_new_refuses_when_any_object_holds_the_label(token, kind):
    import PyKCS11 as pk

    made = {
        "data": [(pk.CKA_CLASS, pk.CKO_DATA), (pk.CKA_VALUE, b"x")],
        "generic-secret": [(pk.CKA_CLASS, pk.CKO_SECRET_KEY),
                           (pk.CKA_KEY_TYPE, pk.CKK_GENERIC_SECRET), (pk.CKA_VALUE, bytes(32))],
    }[kind]  # fmt: skip
    with token_for(parse_uri(token.uri())).session() as session:
        session.createObject([*made, (pk.CKA_LABEL, "byok-seal"), (pk.CKA_TOKEN, True),
                              (pk.CKA_PRIVATE, True)])  # fmt: skip
        with pytest.raises(Pkcs11Error, match="already holds an object labelled 'byok-seal'"):
            new_token_key(token.uri())
        assert len(session.findObjects([(pk.CKA_LABEL, "byok-seal")])) == 1  # nothing made


def _wrong_pin_file(tmp_path):
    wrong = tmp_path / "wrong-pin"
    fd = os.open(wrong, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not-the-pin-9876\n")
    os.close(fd)
    return wrong


@pytest.mark.parametrize("second", ["wrong-pin-file", "no-pin", "same-uri-pin-changed"])
def test_a_second_uri_with_a_wrong_or_missing_pin_never_rides_the_first_login(
    token, tmp_path, second
):
    """The first sealer logged in; a second URI for the same token must bring the same PIN,
    whether it meets the cached login or the token's "already logged in"."""
    first = build_pkcs11_sealer(_seal_key(token))
    if second == "wrong-pin-file":
        uri = token.uri(pin_source=False) + f"&pin-source=file:{_wrong_pin_file(tmp_path)}"
    elif second == "no-pin":
        uri = token.uri(pin_source=False)
    else:  # the same URI, its PIN file now holding another PIN
        uri = token.uri()
        os.replace(_wrong_pin_file(tmp_path), token.pin_file)
    with pytest.raises(ConfigError) as refused:
        build_pkcs11_sealer(uri)
    assert "\n" not in str(refused.value) and "not-the-pin" not in str(refused.value)
    data_key = first.new_data_key(seal_context("key-x", "f" * 64))[0]  # the first goes on
    assert len(data_key) == 32


def _seal_key(token) -> str:
    new_token_key(token.uri())
    return token.uri()


def test_reseal_into_a_token_key_that_cannot_decrypt_overwrites_nothing(token, tmp_path):
    """A seal key made by hand with CKA_DECRYPT false seals but never opens: reseal opens each
    new envelope before writing it, so every envelope stays as it was, under the old key."""
    import PyKCS11 as pk

    from byok_keeper.crypto.material import generate_material
    from tests.functional.test_vault import _header

    with token_for(parse_uri(token.uri())).session() as session:
        session.generateKey([(pk.CKA_CLASS, pk.CKO_SECRET_KEY), (pk.CKA_KEY_TYPE, pk.CKK_AES),
                             (pk.CKA_VALUE_LEN, 32), (pk.CKA_LABEL, "byok-seal"),
                             (pk.CKA_TOKEN, True), (pk.CKA_PRIVATE, True),
                             (pk.CKA_SENSITIVE, True), (pk.CKA_EXTRACTABLE, False),
                             (pk.CKA_ENCRYPT, True), (pk.CKA_DECRYPT, False)],
                            pk.MechanismAESGENERATEKEY)  # fmt: skip
    new_seal_key_file(tmp_path / "seal.key")
    vault = Vault(FileStore(tmp_path / "vault"), LocalKeySealer.from_file(tmp_path / "seal.key"))
    material = generate_material("EC_P256")
    try:
        vault.put(_header(material), material)
    finally:
        material.wipe()
    key_id = vault.inventory()[0]
    before = vault.store.read(key_id)
    report = reseal(vault, build_pkcs11_sealer(token.uri()), AuditLog(None))
    assert list(report.failed) == [key_id] and vault.store.read(key_id) == before

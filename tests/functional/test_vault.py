"""The vault: envelopes, both sealers, both stores, and every refusal leaving nothing changed."""

from __future__ import annotations

import base64
import json
import os

import pytest

from byok_keeper.crypto.material import load_private_key
from byok_keeper.domain.errors import ConfigError, InputError, MaterialMismatch
from byok_keeper.gateway.kms import ENROLL, SWEEP, ActionNotAllowed
from byok_keeper.vault import (
    EnvelopeError,
    FileStore,
    Header,
    KmsSealer,
    LocalKeySealer,
    SealError,
    SecretsStore,
    Vault,
    VaultConflict,
    build_store,
)
from byok_keeper.vault.envelope import parse
from byok_keeper.vault.sealers import new_seal_key_file, seal_context
from tests.figures import record
from tests.functional.conftest import make_gateway


def _header(material, key_id="key-test000000000000001", lease="30d"):
    return Header(
        key_id=key_id,
        region="cn-hangzhou",
        account_id="1234567890123456",
        key_spec=material.key_spec,
        key_usage="SIGN/VERIFY",
        protection_level="SOFTWARE" if material.key_spec != "EC_SM2" else "HSM",
        public_key_der=base64.b64encode(material.public_key_der).decode(),
        fingerprint=material.fingerprint,
        material_encoding=material.spec.material_encoding,
        lease=lease,
        enrolled_at="2026-11-28T00:00:00Z",
        first_imported_at=None,
    )


@pytest.fixture
def seal_key(tmp_path):
    path = tmp_path / "seal.key"
    new_seal_key_file(path)
    return path


@pytest.fixture
def file_vault(tmp_path, seal_key):
    return Vault(FileStore(tmp_path / "vault"), LocalKeySealer.from_file(seal_key))


@pytest.fixture
def kms_vault(emulator, kms):
    gateway = make_gateway(emulator, ENROLL)
    cmk = gateway._client.create_key(
        __import__(
            "alibabacloud_kms20160120.models", fromlist=["CreateKeyRequest"]
        ).CreateKeyRequest()
    ).body.key_metadata.key_id
    return Vault(SecretsStore(gateway, "byok-keeper/envelopes"), KmsSealer(gateway, cmk))


@pytest.mark.parametrize("which", ["file_vault", "kms_vault"])
@pytest.mark.parametrize("spec", ["RSA_4096", "EC_SM2"])
def test_round_trip_and_inventory_in_both_stores_and_sealers(request, which, spec, target_keys):
    vault = request.getfixturevalue(which)
    material = load_private_key(target_keys[spec], key_spec=spec)
    stored = vault.put(_header(material), material)
    assert stored.header.fingerprint == material.fingerprint
    assert vault.inventory() == ["key-test000000000000001"]
    envelope, opened = vault.fetch("key-test000000000000001")
    assert bytes(opened.import_bytes()) == bytes(material.import_bytes())
    assert envelope.seal.sealer == vault.sealer.kind
    # Re-writing the same material (e.g. recording the first import) is allowed.
    vault.put(_header(material).with_first_import("2026-11-28T00:00:05Z"), material)
    assert vault.get("key-test000000000000001").header.first_imported_at == "2026-11-28T00:00:05Z"


def test_file_store_writes_0600_atomically(file_vault, target_keys):
    material = load_private_key(target_keys["EC_P256"])
    file_vault.put(_header(material), material)
    files = list(file_vault.store.directory.iterdir())
    assert [f.name for f in files] == ["key-test000000000000001.json"]  # no temp files left
    assert oct(files[0].stat().st_mode & 0o777) == "0o600"


def _snapshot(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_every_single_byte_flip_is_refused(file_vault, target_keys):
    material = load_private_key(target_keys["EC_P256"])
    file_vault.put(_header(material), material)
    path = file_vault.store.directory / "key-test000000000000001.json"
    original = path.read_bytes()
    missed = []
    for pos in range(len(original)):
        flipped = bytearray(original)
        flipped[pos] ^= 0x01
        try:
            envelope = parse(bytes(flipped), expected_key_id="key-test000000000000001")
            file_vault.open(envelope)
        except InputError:  # EnvelopeError, SealError and ConfigError are all input errors
            continue
        missed.append(pos)
    untouched = path.read_bytes() == original
    record("input", group="envelope-byte-flip", case="every byte of one envelope",
           count=len(original), refused_count=len(original) - len(missed),
           refused=not missed, untouched=untouched)  # fmt: skip
    assert not missed, f"flips at bytes {missed[:10]} were not detected"
    assert untouched


def test_swapped_envelopes_are_refused(file_vault, target_keys):
    a = load_private_key(target_keys["EC_P256"])
    b = load_private_key(target_keys["EC_P256K"])
    file_vault.put(_header(a, "key-aaaaaaaaaaaaaaaaaaaa"), a)
    file_vault.put(_header(b, "key-bbbbbbbbbbbbbbbbbbbb"), b)
    d = file_vault.store.directory
    pa, pb = d / "key-aaaaaaaaaaaaaaaaaaaa.json", d / "key-bbbbbbbbbbbbbbbbbbbb.json"
    da, db = pa.read_bytes(), pb.read_bytes()
    pa.write_bytes(db)
    pb.write_bytes(da)
    for key_id in ("key-aaaaaaaaaaaaaaaaaaaa", "key-bbbbbbbbbbbbbbbbbbbb"):
        with pytest.raises(EnvelopeError, match="belongs to key"):
            file_vault.fetch(key_id)


def test_wrong_seal_key_is_refused(file_vault, target_keys, tmp_path):
    material = load_private_key(target_keys["EC_P256"])
    file_vault.put(_header(material), material)
    other = tmp_path / "other.key"
    new_seal_key_file(other)
    vault = Vault(file_vault.store, LocalKeySealer.from_file(other))
    with pytest.raises(ConfigError, match="sealed with the local key"):
        vault.fetch("key-test000000000000001")


def test_group_or_world_readable_key_file_is_refused(seal_key):
    os.chmod(seal_key, 0o644)
    with pytest.raises(ConfigError, match=r"accessible by group or others \(mode 0644\)"):
        LocalKeySealer.from_file(seal_key)
    os.chmod(seal_key, 0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        LocalKeySealer.from_file(seal_key)


def test_seal_key_file_is_never_overwritten_and_must_be_32_bytes(seal_key, tmp_path):
    before = seal_key.read_bytes()
    with pytest.raises(ConfigError, match="never overwritten"):
        new_seal_key_file(seal_key)
    assert seal_key.read_bytes() == before
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 16)
    os.chmod(short, 0o600)
    with pytest.raises(ConfigError, match="exactly 32 bytes"):
        LocalKeySealer.from_file(short)


def test_encryption_context_mismatch_is_refused(kms_vault, target_keys):
    a = load_private_key(target_keys["EC_P256"])
    b = load_private_key(target_keys["EC_P256K"])
    ea = kms_vault.put(_header(a, "key-aaaaaaaaaaaaaaaaaaaa"), a)
    eb = kms_vault.put(_header(b, "key-bbbbbbbbbbbbbbbbbbbb"), b)
    # B's envelope carrying A's data key: KMS refuses, because the context names A.
    from dataclasses import replace

    forged = replace(eb, seal=replace(eb.seal, wrapped_data_key=ea.seal.wrapped_data_key))
    with pytest.raises(SealError, match="EncryptionContext"):
        kms_vault.open(forged)


@pytest.mark.parametrize("which", ["file_vault", "kms_vault"])
def test_a_data_key_opens_only_under_the_context_it_was_sealed_with(request, which):
    sealer = request.getfixturevalue(which).sealer
    context = seal_context("key-aaaaaaaaaaaaaaaaaaaa", "ab" * 32)
    data_key, wrapped = sealer.new_data_key(context)
    assert sealer.open_data_key(wrapped, dict(context)) == data_key
    for other in (
        seal_context("key-bbbbbbbbbbbbbbbbbbbb", "ab" * 32),
        seal_context("key-aaaaaaaaaaaaaaaaaaaa", "cd" * 32),
    ):
        with pytest.raises(SealError):
            sealer.open_data_key(wrapped, other)


@pytest.mark.parametrize("which", ["file_vault", "kms_vault"])
def test_other_material_for_an_enrolled_key_is_refused_and_nothing_changes(
    request, which, target_keys
):
    vault = request.getfixturevalue(which)
    a = load_private_key(target_keys["EC_P256"])
    vault.put(_header(a), a)
    before = vault.store.read("key-test000000000000001")
    b = load_private_key(target_keys["EC_P256K"])
    with pytest.raises(VaultConflict, match="different material"):
        vault.put(_header(b), b)
    assert vault.store.read("key-test000000000000001") == before


def test_header_that_does_not_describe_the_material_is_refused(file_vault, target_keys):
    a = load_private_key(target_keys["EC_P256"])
    b = load_private_key(target_keys["EC_P256K"])
    with pytest.raises(MaterialMismatch):
        file_vault.put(_header(a), b)
    assert file_vault.inventory() == []


@pytest.mark.parametrize("key_id", ["../etc/passwd", "a/b", "", "x" * 200, "key id"])
def test_invalid_key_ids_are_refused(file_vault, key_id):
    with pytest.raises(InputError, match="invalid key id"):
        file_vault.get(key_id)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "no vault configured"),
        ("s3://bucket", "expected file://DIR"),
        ("kms-secrets://bad prefix", "invalid kms-secrets prefix"),
    ],
)
def test_vault_uris_are_checked(uri, message, emulator):
    with pytest.raises(ConfigError, match=message):
        build_store(uri, make_gateway(emulator, ENROLL))


def test_envelope_json_is_documented_and_holds_no_plaintext(file_vault, target_keys):
    material = load_private_key(target_keys["RSA_2048"])
    file_vault.put(_header(material), material)
    raw = (file_vault.store.directory / "key-test000000000000001.json").read_bytes()
    doc = json.loads(raw)
    assert doc["format"] == "byok-keeper-envelope/1"
    assert set(doc) == {"format", "header", "seal", "material"}
    secret = bytes(material.import_bytes())
    for form in (
        secret.hex(),
        base64.b64encode(secret).decode(),
        base64.b64encode(secret[:48]).decode(),
    ):
        assert form.encode() not in raw


def test_sweep_allowlist_cannot_write_the_vault(emulator, kms, target_keys):
    gateway = make_gateway(emulator, SWEEP)
    with pytest.raises(ActionNotAllowed):
        gateway.create_secret("x", "y", "1")
    with pytest.raises(ActionNotAllowed):
        gateway.generate_data_key("k", {})
    assert [c["action"] for c in emulator.calls()] == []


def test_the_local_sealer_refuses_malformed_wrapped_keys_and_keys_of_the_wrong_size(
    seal_key, tmp_path
):
    sealer = LocalKeySealer.from_file(seal_key)
    context = seal_context("key-aaaaaaaaaaaaaaaaaaaa", "ab" * 32)
    data_key, wrapped = sealer.new_data_key(context)
    # The context's order does not matter (it is canonicalised); its content does.
    assert sealer.open_data_key(wrapped, dict(reversed(list(context.items())))) == data_key
    with pytest.raises(SealError, match="not Base64"):
        sealer.open_data_key(wrapped[:8] + "!" + wrapped[8:], context)
    short = base64.b64encode(base64.b64decode(wrapped)[:-1]).decode()
    with pytest.raises(SealError, match="wrong length"):
        sealer.open_data_key(short, context)
    with pytest.raises(ConfigError, match="exactly 32 bytes"):
        LocalKeySealer(b"k" * 16)
    short_file = tmp_path / "short.key"
    short_file.write_bytes(b"k" * 16)
    os.chmod(short_file, 0o600)
    with pytest.raises(ConfigError, match=r"\(it holds 16\); make one with"):
        LocalKeySealer.from_file(short_file)
    directory = tmp_path / "a-directory"
    directory.mkdir(mode=0o700)
    with pytest.raises(ConfigError, match="not a regular file"):
        LocalKeySealer.from_file(directory)


def test_a_new_seal_key_file_reports_its_key_ref_and_reprs_show_only_refs(tmp_path):
    path = tmp_path / "fresh.key"
    key_ref = new_seal_key_file(path)
    sealer = LocalKeySealer.from_file(path)
    assert key_ref == sealer.key_ref and key_ref.startswith("local:")
    assert repr(sealer) == f"LocalKeySealer(key_ref={key_ref})"
    assert path.read_bytes().hex() not in repr(sealer)
    assert repr(KmsSealer(None, "key-cmk")) == "KmsSealer(key_ref=key-cmk)"

"""``vault retire`` / ``vault restore`` (retire.py): the envelope moves aside unchanged and back,
each step of the crash table re-runs to the same end, and every refusal changes nothing."""

from __future__ import annotations

import json
import re

import pytest

from byok_keeper.crypto.material import generate_material
from byok_keeper.domain.audit import AuditLog
from byok_keeper.domain.errors import ConfigError, InputError
from byok_keeper.operations.retire import restore_key, retire_key
from byok_keeper.vault import EnvelopeError, FileStore, LocalKeySealer, Vault, VaultConflict
from byok_keeper.vault.reseal import reseal
from byok_keeper.vault.sealers import new_seal_key_file
from tests.functional.test_vault import _header

KEY = "key-test000000000000001"


@pytest.fixture
def world(tmp_path):
    new_seal_key_file(tmp_path / "seal.key")
    store = FileStore(tmp_path / "vault")
    vault = Vault(store, LocalKeySealer.from_file(tmp_path / "seal.key"))
    material = generate_material("EC_P256")
    try:
        vault.put(_header(material, KEY), material)
    finally:
        material.wipe()
    return vault, AuditLog(tmp_path / "audit.jsonl"), tmp_path


def _audit(tmp_path) -> list[dict]:
    return [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]


def test_retire_moves_the_sealed_envelope_aside_unchanged_and_restore_brings_it_back(world):
    vault, audit, tmp = world
    sealed = vault.store.read(KEY)
    done = retire_key(vault.store, audit, KEY, reason="CHG-42: decommissioned", actor="ops")
    assert vault.inventory() == [] and vault.retired() == [KEY]
    assert (tmp / "vault" / "retired" / f"{KEY}.json").read_bytes() == sealed
    assert done["already"] is False and done["reason"] == "CHG-42: decommissioned"
    restore_key(vault.store, audit, KEY, actor="ops")
    assert vault.inventory() == [KEY] and vault.retired() == []
    vault.fetch(KEY)[1].wipe()  # still opens under the seal key: nothing was re-sealed
    events = _audit(tmp)
    assert [e["event"] for e in events] == ["retire", "restore"]
    assert {e["fingerprint"] for e in events} == {vault.get(KEY).fingerprint}


def test_a_crash_after_the_move_is_finished_by_a_re_run_with_its_audit_line(world):
    vault, audit, tmp = world
    vault.store.move(KEY, retire=True)  # the move happened; the process died before auditing
    assert not (tmp / "audit.jsonl").exists()
    done = retire_key(vault.store, audit, KEY, reason="CHG-42", actor="ops")
    assert done["already"] is True and vault.retired() == [KEY]
    (event,) = _audit(tmp)
    assert event["event"] == "retire" and event["already"] is True and event["reason"] == "CHG-42"


@pytest.mark.parametrize("reason", ["", "   ", "two\nlines", "x" * 257])
def test_a_bad_reason_is_refused_before_anything_moves(world, reason):
    vault, audit, tmp = world
    with pytest.raises(InputError, match="--reason"):
        retire_key(vault.store, audit, KEY, reason=reason, actor="ops")
    assert vault.inventory() == [KEY] and not (tmp / "audit.jsonl").exists()


def test_unknown_keys_and_other_material_in_the_way_are_refused(world):
    vault, audit, _tmp = world
    # Refused before any move, naming where it looked by the vault's URI (not a folder).
    uri = re.escape(vault.store.uri)
    with pytest.raises(EnvelopeError, match=rf"^no envelope for \S+ in the vault \({uri}\)$"):
        retire_key(vault.store, audit, "key-test000000000000002", reason="x", actor="ops")
    with pytest.raises(EnvelopeError, match=rf"among the retired envelopes \({uri}\)$"):
        restore_key(vault.store, audit, "key-test000000000000002", actor="ops")
    assert restore_key(vault.store, audit, KEY, actor="ops")["already"] is True  # in the vault
    retire_key(vault.store, audit, KEY, reason="x", actor="ops")
    other = generate_material("EC_P256")  # re-enrolled under the same id with other material
    try:
        vault.put(_header(other, KEY), other)
    finally:
        other.wipe()
    with pytest.raises(VaultConflict):
        restore_key(vault.store, audit, KEY, actor="ops")
    with pytest.raises(VaultConflict):
        retire_key(vault.store, audit, KEY, reason="x", actor="ops")
    assert vault.inventory() == [KEY] and vault.retired() == [KEY]  # nothing moved either way


@pytest.mark.parametrize("retire", [True, False])
def test_an_envelope_written_after_the_check_is_never_replaced_by_the_move(
    world, monkeypatch, retire
):
    """A concurrent enrollment lands other material at the destination between the move's check
    and the move itself (injected at the creation of ``retired/``, the last step before it)."""
    vault, audit, tmp = world
    if not retire:
        retire_key(vault.store, audit, KEY, reason="x", actor="ops")
    dst = tmp / "vault" / ("retired" if retire else "") / f"{KEY}.json"
    other = generate_material("EC_P256")
    try:
        rival = _header(other, KEY)
        sealed = Vault(FileStore(dst.parent), vault.sealer)
        mkdir = type(tmp).mkdir

        def racing_mkdir(path, *args, **kwargs):
            monkeypatch.setattr(type(tmp), "mkdir", mkdir)  # once
            mkdir(path, *args, **kwargs)
            sealed.put(rival, other)

        monkeypatch.setattr(type(tmp), "mkdir", racing_mkdir)
        with pytest.raises(VaultConflict):
            if retire:
                retire_key(vault.store, audit, KEY, reason="x", actor="ops")
            else:
                restore_key(vault.store, audit, KEY, actor="ops")
    finally:
        other.wipe()
    assert sealed.get(KEY).fingerprint == rival.fingerprint  # the rival envelope is intact
    assert (vault.inventory(), vault.retired()) == ([KEY], [KEY])  # the source did not move


def test_reseal_reseals_retired_envelopes_so_a_restore_after_the_old_key_is_gone_opens(world):
    """Reseal, then delete the old seal key file: a key retired before the reseal is restored
    as an envelope the new seal key opens, and its reseal was audited once."""
    vault, audit, tmp = world
    active = "key-test000000000000002"
    material = generate_material("EC_P256")
    try:
        vault.put(_header(material, active), material)
    finally:
        material.wipe()
    retire_key(vault.store, audit, KEY, reason="CHG-42", actor="ops")
    new_seal_key_file(tmp / "new-seal.key")
    report = reseal(vault, LocalKeySealer.from_file(tmp / "new-seal.key"), audit, actor="ops")
    assert report.resealed == [active, KEY] and report.retired == [KEY] and not report.failed
    assert report.as_dict() == {  # what `vault reseal --json` prints
        "source": report.source,
        "target": report.target,
        "dry_run": False,
        "resealed": [active, KEY],
        "already": [],
        "failed": {},
        "retired": [KEY],
    }
    (tmp / "seal.key").unlink()
    restore_key(vault.store, audit, KEY, actor="ops")
    resealed = Vault(vault.store, LocalKeySealer.from_file(tmp / "new-seal.key"))
    for key_id in (KEY, active):
        resealed.fetch(key_id)[1].wipe()  # opens, fingerprint checked
    lines = [e for e in _audit(tmp) if e["event"] == "envelope_resealed"]
    assert [(e["key_id"], e["outcome"], e.get("retired")) for e in lines] == [
        (active, "resealed", None),
        (KEY, "resealed", True),
    ]


def test_a_key_retired_while_reseal_runs_fails_in_the_inventory_and_is_resealed_aside(
    world, monkeypatch
):
    """A concurrent ``vault retire`` moves an envelope after reseal listed the inventory: that
    key is reported failed there ("disappeared", so the run exits 1), the others go on, and the
    retired pass reseals it where it went."""
    vault, audit, tmp = world
    listed = type(vault.store).list_key_ids

    def list_then_retire(store):
        ids = listed(store)
        retire_key(store, audit, KEY, reason="CHG-7", actor="other")
        return ids

    monkeypatch.setattr(type(vault.store), "list_key_ids", list_then_retire)
    new_seal_key_file(tmp / "new-seal.key")
    report = reseal(vault, LocalKeySealer.from_file(tmp / "new-seal.key"), audit, actor="ops")
    assert list(report.failed) == [KEY] and "disappeared" in report.failed[KEY]
    assert report.retired == [KEY] and report.resealed == [KEY]


def test_a_resumed_reseal_counts_already_only_an_envelope_the_new_key_opens(world):
    """An envelope that names the target's seal key is opened under it before it counts as
    ``already``: one whose authenticated header was changed since (a lease lengthened) fails."""
    vault, audit, tmp = world
    new_seal_key_file(tmp / "new-seal.key")
    to = LocalKeySealer.from_file(tmp / "new-seal.key")
    assert reseal(vault, to, audit).resealed == [KEY]
    path = tmp / "vault" / f"{KEY}.json"
    path.write_bytes(path.read_bytes().replace(b'"lease": "30d"', b'"lease": "90d"'))
    report = reseal(vault, to, audit)
    assert list(report.failed) == [KEY] and report.already == []


class _Recording(Vault):
    """A real vault that keeps every material it opens, to look at it after."""

    def __init__(self, vault: Vault) -> None:
        super().__init__(vault.store, vault.sealer)
        self.opened: list = []

    def open(self, envelope):
        self.opened.append(super().open(envelope))
        return self.opened[-1]


def test_reseal_wipes_the_material_it_opens_in_a_dry_run_and_a_real_one(world):
    vault, audit, tmp = world
    recording = _Recording(vault)
    new_seal_key_file(tmp / "new-seal.key")
    to = LocalKeySealer.from_file(tmp / "new-seal.key")
    assert reseal(recording, to, audit, dry_run=True).resealed == [KEY]
    dry = _audit(tmp)[-1]
    assert (dry["event"], dry["outcome"], dry["dry_run"]) == ("envelope_resealed", "resealed", True)
    assert reseal(recording, to, audit).resealed == [KEY]
    assert len(recording.opened) == 2 and all(m.wiped for m in recording.opened)


def test_reseal_reads_each_write_back_and_fails_one_that_did_not_take(world, monkeypatch):
    """The store reported the write, but the envelope read back still carries the old seal (a
    concurrent writer put it back, or a store answered a stale version): that key fails."""
    vault, audit, tmp = world
    path = tmp / "vault" / f"{KEY}.json"
    before = path.read_bytes()
    write = type(vault.store).write

    def lost_write(store, *args, **kwargs):
        write(store, *args, **kwargs)
        path.write_bytes(before)

    monkeypatch.setattr(type(vault.store), "write", lost_write)
    new_seal_key_file(tmp / "new-seal.key")
    report = reseal(vault, LocalKeySealer.from_file(tmp / "new-seal.key"), audit)
    assert list(report.failed) == [KEY] and "reading back" in report.failed[KEY]


def test_reseal_to_the_key_the_vault_already_uses_is_refused_before_anything(world):
    vault, audit, tmp = world
    before = (tmp / "vault" / f"{KEY}.json").read_bytes()
    same = LocalKeySealer.from_file(tmp / "seal.key")
    with pytest.raises(ConfigError, match="already configured with the local key"):
        reseal(vault, same, audit)
    assert (tmp / "vault" / f"{KEY}.json").read_bytes() == before
    assert not (tmp / "audit.jsonl").exists()

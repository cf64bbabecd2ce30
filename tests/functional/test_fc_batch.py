"""Issue 30: the fc-async sweep restores a few due keys itself and sends the rest to reimport
in batches; the reimport function takes a batch event (checked as strictly as one key's) and
still takes the single-key event on-call sends. Call counts, never time."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from byok_keeper.core.dispatch import BATCH_KEYS, KEYS_PER_REIMPORT, MIN_BATCH, split_due
from byok_keeper.core.enroll import CreateRequest, enroll
from byok_keeper.crypto.material import generate_material
from byok_keeper.domain.lease import parse_lease
from byok_keeper.gateway.kms import ENROLL
from byok_keeper.runtimes import fc, fc_batch
from byok_keeper.vault import FileStore, LocalKeySealer, Vault
from byok_keeper.vault.sealers import new_seal_key_file
from tests.functional.conftest import fc_context, make_gateway

EVENTS = Path(__file__).resolve().parents[1] / "events"


@pytest.fixture
def deployed(emulator, tmp_path, monkeypatch):
    """Three enrolled keys with their material deleted, settings as the deployment sets them."""
    new_seal_key_file(tmp_path / "seal.key")
    monkeypatch.setenv("BYOK_KMS_ENDPOINT", f"http://{emulator.endpoint}")
    monkeypatch.setenv("BYOK_VAULT", f"file://{tmp_path / 'vault'}")
    monkeypatch.setenv("BYOK_SEAL_KEY_FILE", str(tmp_path / "seal.key"))
    monkeypatch.setenv("BYOK_AUDIT_FILE", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("BYOK_DISPATCH", "fc-async")
    vault = Vault(FileStore(tmp_path / "vault"), LocalKeySealer.from_file(tmp_path / "seal.key"))
    gateway = make_gateway(emulator, ENROLL)
    keys = []
    for _ in range(3):
        keys.append(
            enroll(gateway, vault, generate_material("EC_P256"), lease=parse_lease("30d"),
                   create=CreateRequest("EC_P256", "SIGN/VERIFY", "kst-local-software")).key_id
        )  # fmt: skip
        emulator.emulator.kms.delete_key_material(keys[-1])
    fc.RUNTIME = fc.Runtime()  # a cold instance
    emulator.emulator.calls.clear()  # enrollment's imports are not the ones counted
    return fc_context(emulator), keys, tmp_path / "audit.jsonl"


def _imports(emulator) -> list[str]:
    return [c for c in emulator.calls() if c["action"] == "ImportKeyMaterial"]


def _audit(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_batch_event_restores_each_key_with_intent_and_outcome_lines(deployed, emulator):
    context, keys, audit = deployed
    event = {"key_ids": keys, "reason": "sweep: 3 due", "requested_by": "sweep:req-9"}
    result = fc_batch.handler(json.dumps(event).encode(), context)
    assert result["ok"] and result["keys"] == 3
    assert [r["outcome"] for r in result["results"]] == ["restored"] * 3
    assert all(emulator.key_view(k)["state"] == "Enabled" for k in keys)
    assert len(_imports(emulator)) == 3
    for key_id in keys:  # the intent before the import, the outcome after; claims, not actors
        lines = [x for x in _audit(audit) if x.get("key_id") == key_id]
        assert [x["event"] for x in lines] == ["importing", "key"]
        assert {(x["actor"], x["claimed_by"], x["trigger"]) for x in lines} == {
            ("fc", "sweep:req-9", "fc-reimport")
        }


def test_the_single_key_event_still_works_through_the_entrypoint(deployed, emulator):
    context, keys, _audit_path = deployed
    doc = json.loads((EVENTS / "reimport.json").read_text())
    result = fc_batch.handler(json.dumps({**doc, "key_id": keys[0]}).encode(), context)
    assert result["ok"] and result["outcome"] == "restored" and result["key_id"] == keys[0]
    assert len(_imports(emulator)) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ks: {"key_ids": ks[0]}, "non-empty list of key ids"),
        (lambda ks: {"key_ids": []}, "non-empty list of key ids"),
        (lambda ks: {"key_ids": [*ks, 7]}, "non-empty list of key ids"),
        (lambda ks: {"key_ids": [*ks, "key-../../etc"]}, "key"),
        (lambda ks: {"key_ids": [*ks, ks[0]]}, "more than once"),
        (lambda ks: {"key_ids": [f"key-{i:020d}" for i in range(KEYS_PER_REIMPORT + 1)]},
         f"at most {KEYS_PER_REIMPORT} keys"),
        (lambda ks: {"key_ids": ks, "key_id": ks[0]}, "not both"),
        (lambda ks: {"key_ids": ks, "actor": "root"}, "unknown reimport fields"),
        (lambda ks: {"key_ids": ks, "dry_run": "yes"}, "dry_run must be true or false"),
        (lambda ks: {"key_ids": ks, "override_hold": True}, "cannot override a hold"),
        (lambda ks: {"key_ids": ks, "target": "../x"}, "target must be a target name"),
    ],
    ids=["not-a-list", "empty", "not-a-string", "bad-id", "twice", "too-many", "both",
         "unknown-field", "dry-run", "override-hold", "bad-target"],
)  # fmt: skip
def test_a_malformed_batch_is_refused_whole_and_nothing_is_imported(
    deployed, emulator, change, message
):
    context, keys, audit = deployed
    result = fc_batch.handler(json.dumps(change(keys)).encode(), context)
    assert result["ok"] is False and result["error"] in (
        "BadEvent", "HoldOverrideRefused", "UnknownTarget"
    )  # fmt: skip
    assert re.search(message, result["message"])
    assert _imports(emulator) == []
    assert not [x for x in _audit(audit) if x["event"] == "importing"]


@pytest.mark.parametrize(("inline_keys", "sent", "restored"), [("0", 3, 0), ("2", 2, 1),
                                                               ("20", 0, 3)])  # fmt: skip
def test_the_sweep_restores_its_part_and_sends_the_rest_in_batches(
    deployed, emulator, mocker, monkeypatch, inline_keys, sent, restored
):
    context, keys, audit = deployed
    monkeypatch.setenv("BYOK_INLINE_KEYS", inline_keys)
    events: list[dict] = []

    def fake_invoke(client, target, role, event, *, asynchronous):
        assert role == "reimport" and asynchronous
        events.append(event)
        return {"request_id": f"r{len(events)}"}

    mocker.patch("byok_keeper.core.dispatch.invoke", fake_invoke)
    answer = fc.handle_sweep((EVENTS / "timer.json").read_bytes(), context)
    assert answer["ok"] and answer["dispatch"] == "fc-async"
    assert answer["invocations"] == len(events) == (1 if sent else 0)
    assert sorted(k for e in events for k in e["key_ids"]) == sorted(answer["dispatched"])
    assert len(answer["dispatched"]) == sent and len(answer["restored"]) == restored
    assert set(answer["dispatched"]) | set(answer["restored"]) == set(keys)
    assert len(_imports(emulator)) == restored  # only the keys kept here, each once
    lines = _audit(audit)
    for key_id in answer["restored"]:  # restored here: intent, then the canonical line
        assert [x["event"] for x in lines if x.get("key_id") == key_id] == ["importing", "key"]
    for key_id in answer["dispatched"]:  # sent: the dispatch line; reimport audits the rest
        assert [x["event"] for x in lines if x.get("key_id") == key_id] == ["dispatch"]


@pytest.mark.parametrize("n", [0, 1, 20, 21, 50, 99, 500, 501, 5000, 50000])
def test_split_due_covers_every_key_once_in_bounded_batches(n):
    keep, sizes = split_due(n)
    assert keep + sum(sizes) == n and all(0 < s <= BATCH_KEYS for s in sizes)
    assert keep <= max(20, KEYS_PER_REIMPORT)  # the sweep's own part stays small
    if n <= 20:
        assert (keep, sizes) == (n, [])
    else:  # the fan-out's goal: at most 0.1 reimport invocations per key sent
        assert len(sizes) / n <= 0.1 and all(s >= MIN_BATCH for s in sizes)
    none_kept, sizes = split_due(n, 0)  # BYOK_INLINE_KEYS=0: every key is sent
    assert none_kept == 0 and sum(sizes) == n and all(0 < s <= BATCH_KEYS for s in sizes)

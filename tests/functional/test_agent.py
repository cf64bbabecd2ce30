"""The agent against aliyun-local: sweep, re-establish, holds, faults, mismatches, leaks."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from byok_keeper.core.reestablish import reestablish
from byok_keeper.core.sweep import sweep_keys
from byok_keeper.crypto.material import generate_material
from byok_keeper.gateway.kms import FORBIDDEN, SWEEP
from byok_keeper.planning.plan import HOLD_TAG, Policy
from tests.functional.conftest import build_world, enroll_key

# Agent tests: run against each aliyun-local profile (docs/FIDELITY.md).
pytestmark = pytest.mark.every_profile


@pytest.fixture
def world(emulator, kms, tmp_path):
    return build_world(emulator, tmp_path)


_enroll = enroll_key


def _imports(emulator, key_id):
    return [
        c
        for c in emulator.calls()
        if c["action"] == "ImportKeyMaterial" and c["key_id"] == key_id and c["status"] == 200
    ]


def test_sweep_restores_deleted_and_expired_and_renews(world):
    emulator, vault, _, sweeper = world
    deleted, _ = _enroll(world, "RSA_2048")
    expired, _ = _enroll(world, "EC_SM2", lease="1h")
    renew, _ = _enroll(world, "EC_P256K", lease="14d")
    healthy, _ = _enroll(world, "EC_P256", lease="90d")
    emulator.emulator.kms.delete_key_material(deleted)
    emulator.advance_clock(8 * 86400)
    emulator.emulator.calls.clear()
    result = sweep_keys(sweeper, vault)
    by_key = {o.key_id: o for o in result.outcomes}
    assert (
        by_key[deleted].outcome,
        by_key[expired].outcome,
        by_key[renew].outcome,
        by_key[healthy].outcome,
    ) == ("restored", "restored", "renewed", "ok")
    for k in (deleted, expired, renew, healthy):
        assert emulator.key_view(k)["state"] == "Enabled"
    assert by_key[renew].new_expiry.timestamp() == pytest.approx(emulator.now() + 14 * 86400, abs=5)
    # Only allowed actions reached KMS, and nothing but ImportKeyMaterial changed it.
    actions = {c["action"] for c in emulator.calls()}
    assert actions <= SWEEP.actions and not actions & FORBIDDEN
    assert not actions & {"TagResource", "UntagResource", "CreateKey", "DeleteKeyMaterial"}
    # The healthy key cost exactly one DescribeKey.
    assert [c["action"] for c in emulator.calls() if c["key_id"] == healthy] == ["DescribeKey"]
    # A re-established key costs at most 8 key-management calls (the canary aside): the hold
    # tag is read before unsealing and again right before the import (issue 25).
    for k in (deleted, renew):
        calls = [
            c["action"]
            for c in emulator.calls()
            if c["key_id"] == k
            and c["action"] not in ("AsymmetricSign", "AsymmetricDecrypt", "AsymmetricEncrypt")
        ]
        assert len(calls) <= 8 and calls.count("ListResourceTags") == 2, calls
    second = sweep_keys(sweeper, vault)
    assert {o.outcome for o in second.outcomes} == {"ok"}


def test_a_hold_set_between_plan_and_import_wins(world):
    emulator, vault, _, sweeper = world
    key_id, _ = _enroll(world)
    emulator.emulator.kms.delete_key_material(key_id)

    def hold_now(step, _detail):
        if step == "unseal":  # after the plan and the fresh DescribeKey, before the import
            emulator.emulator.kms.tag_key(key_id, {HOLD_TAG: "INC-42"})

    outcome = reestablish(sweeper, vault, key_id, on_step=hold_now)
    assert (outcome.outcome, outcome.decision) == ("held", "HOLD")
    assert "INC-42" in outcome.reason
    assert len(_imports(emulator, key_id)) == 1  # only enrollment's
    assert emulator.key_view(key_id)["state"] == "PendingImport"
    forced = reestablish(sweeper, vault, key_id, override_hold=True)
    assert forced.outcome == "restored"


def test_vault_holding_other_material_is_refused_and_nothing_is_imported(world):
    emulator, vault, _, sweeper = world
    pending, _ = _enroll(world)
    enabled, _ = _enroll(world, lease="14d")
    impostor = generate_material("EC_P256")
    for key_id in (pending, enabled):
        envelope = vault.get(key_id)
        (vault.store.directory / f"{key_id}.json").unlink()
        header = replace(
            envelope.header,
            fingerprint=impostor.fingerprint,
            public_key_der=base64.b64encode(impostor.public_key_der).decode(),
        )
        vault.put(header, impostor)
    emulator.emulator.kms.delete_key_material(pending)
    emulator.advance_clock(8 * 86400)
    before = {k: len(_imports(emulator, k)) for k in (pending, enabled)}
    result = sweep_keys(sweeper, vault)
    outcomes = {o.key_id: o for o in result.outcomes}
    for key_id in (pending, enabled):
        assert outcomes[key_id].outcome == "failed"
        assert outcomes[key_id].alert and outcomes[key_id].error_code == "MaterialMismatch"
        assert len(_imports(emulator, key_id)) == before[key_id]
    # For the usable key the mismatch was caught before any import token was spent.
    assert not [
        c
        for c in emulator.calls()
        if c["key_id"] == enabled and c["action"] == "GetParametersForImport"
    ][1:]


def test_incomplete_enrollment_is_an_alert_not_an_import(world):
    emulator, vault, _enroller, sweeper = world
    key_id, material = _enroll(world)
    envelope = vault.get(key_id)
    (vault.store.directory / f"{key_id}.json").unlink()
    vault.put(replace(envelope.header, first_imported_at=None), material)
    emulator.emulator.kms.delete_key_material(key_id)
    result = sweep_keys(sweeper, vault)
    (outcome,) = result.outcomes
    assert (outcome.decision, outcome.outcome) == ("ALERT", "alert")
    assert emulator.key_view(key_id)["state"] == "PendingImport"


def test_scan_account_alerts_on_external_keys_without_envelope(world, kms):
    from tests.functional.conftest import create_external_key

    _emulator, vault, _, sweeper = world
    _enroll(world)
    orphan = create_external_key(kms, "RSA_2048")
    result = sweep_keys(sweeper, vault, scan_account=True, dry_run=True)
    outcome = next(o for o in result.outcomes if o.key_id == orphan)
    assert outcome.decision == "ALERT" and "nobody can restore it" in outcome.reason


def test_dry_run_imports_nothing(world):
    emulator, vault, _, sweeper = world
    key_id, _ = _enroll(world)
    emulator.emulator.kms.delete_key_material(key_id)
    result = sweep_keys(sweeper, vault, dry_run=True)
    assert [o.outcome for o in result.outcomes] == ["dry-run"]
    assert emulator.key_view(key_id)["state"] == "PendingImport"


def test_kms_clock_is_used_and_skew_is_logged(world):
    emulator, vault, _, sweeper = world
    _key_id, _ = _enroll(world, lease="14d")
    emulator.advance_clock(8 * 86400)  # the local clock is now 8 days behind KMS
    logged = []
    result = sweep_keys(sweeper, vault, log=lambda event, **kw: logged.append((event, kw)))
    assert [o.outcome for o in result.outcomes] == ["renewed"]
    assert logged and logged[0][0] == "clock_skew"
    assert abs(logged[0][1]["skew_seconds"] - 8 * 86400) < 5
    assert abs(result.now.timestamp() - emulator.now()) < 5


def test_one_canonical_line_per_key_and_no_material_in_logs(world, tmp_path):
    from byok_keeper.domain.audit import AuditLog

    emulator, vault, _, sweeper = world
    keys = [_enroll(world, spec) for spec in ("RSA_2048", "EC_SM2")]
    for key_id, _ in keys:
        emulator.emulator.kms.delete_key_material(key_id)
    audit_path = tmp_path / "audit.jsonl"
    with capture_logs() as logs:
        sweep_keys(sweeper, vault, audit=AuditLog(audit_path), trigger="test", actor="pytest")
    lines = [e for e in logs if e["event"] == "key"]
    assert sorted(e["key_id"] for e in lines) == sorted(k for k, _ in keys)
    for e in lines:
        assert {
            "key_id",
            "decision",
            "outcome",
            "duration_ms",
            "request_ids",
            "new_expiry",
            "fingerprint",
            "trigger",
            "actor",
        } <= set(e)
    text = repr(logs) + audit_path.read_text()
    written = [json.loads(x)["event"] for x in audit_path.read_text().splitlines()]
    assert sorted(written) == ["importing", "importing", "key", "key"]  # intent, then outcome
    for _key_id, material in keys:
        raw = bytes(material.import_bytes())
        for form in (
            raw.hex(),
            base64.b64encode(raw).decode(),
            base64.b64encode(raw[:24]).decode(),
        ):
            assert form not in text


def test_renewal_window_policy_changes_the_plan(world):
    emulator, vault, _, sweeper = world
    _enroll(world, lease="30d")
    emulator.advance_clock(16 * 86400)  # 14 days left
    assert [o.outcome for o in sweep_keys(sweeper, vault).outcomes] == ["ok"]
    result = sweep_keys(sweeper, vault, policy=Policy(renew_before=timedelta(days=14)))
    assert [o.outcome for o in result.outcomes] == ["renewed"]


def test_a_concurrent_identical_import_with_a_later_expiry_is_not_a_failure(world):
    """Two runs re-establishing one key: the other run's import lands between ours and our
    check. Its expiry is later; the key is better off, and that is success, not an error."""
    from byok_keeper.core.enroll import import_once

    emulator, vault, enroller, sweeper = world
    key_id, material = _enroll(world)
    emulator.emulator.kms.delete_key_material(key_id)
    later = int(emulator.now()) + 30 * 86400 + 120

    def other_run_imports(step, _detail):
        if step == "import":
            import_once(enroller, enroller.describe_key(key_id), material, later)

    outcome = reestablish(sweeper, vault, key_id, on_step=other_run_imports)
    assert outcome.outcome == "restored", outcome.reason
    assert int(outcome.new_expiry.timestamp()) == later
    assert emulator.key_view(key_id)["material_fingerprint"] == material.fingerprint

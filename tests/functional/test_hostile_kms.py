"""Re-establishment, verify and sweep against a KMS that lies or a vault that misbehaves.

aliyun-local's ``lies`` fault answers another public key, another expiry or a bad canary for
one named key, so every check the agent makes on KMS's answers must be seen to refuse. Each
test here fails if the check it names is skipped (docs/RELIABILITY.md, "Mutants applied by
hand").
"""

from __future__ import annotations

import base64
import time
from dataclasses import replace

import pytest

from aliyun_local.clock import iso
from byok_keeper.core.reestablish import reestablish
from byok_keeper.core.sweep import sweep_keys
from byok_keeper.core.verify import verify_key
from byok_keeper.domain.lease import parse_lease
from byok_keeper.planning.plan import HOLD_TAG, LEASE_TAG
from byok_keeper.vault import Vault
from tests.functional.conftest import build_world, enroll_key, hardware_takes_imports


@pytest.fixture
def world(emulator, kms, tmp_path):
    return build_world(emulator, tmp_path)


def _calls(emulator, key_id, action):
    return [
        c
        for c in emulator.calls()
        if c["action"] == action and c["key_id"] == key_id and c["status"] == 200
    ]


def _lapsed(world, spec="EC_P256", usage="SIGN/VERIFY", lease="30d"):
    """An enrolled key whose material was deleted (PendingImport: no pre-import identity check,
    so the post-import checks are the only ones)."""
    emulator = world[0]
    hardware_takes_imports(emulator, spec)  # the canaries of SM2 keys too
    key_id, _ = enroll_key(world, spec, lease=lease, usage=usage)
    emulator.emulator.kms.delete_key_material(key_id)
    return key_id


# ---- the admin API --------------------------------------------------------------------------


def test_lies_are_set_through_the_admin_api_and_checked(emulator, kms):
    emulator.set_faults(lies={"key-a": {"public_key": "other", "expiry": ""}})
    assert emulator.emulator.faults.to_json()["lies"] == {
        "key-a": {"public_key": "other", "expiry": ""}
    }
    for bad in (
        {"key-a": {"public_key": "mine"}},
        {"key-a": {"rotate": "yes"}},
        {"key-a": {"expiry": "tomorrow"}},
        {"key-a": {"expiry_shift": "5 minutes"}},
        {"key-a": {"expiry_shift": "--5"}},
        {"key-a": {}},
        ["key-a"],
    ):
        with pytest.raises(Exception, match="lies"):
            emulator.set_faults(lies=bad)
    emulator.set_faults()
    assert emulator.emulator.faults.to_json()["lies"] == {}


# ---- post-import checks: the key comes back, but KMS's answers disagree ----------------------


def test_a_lying_public_key_after_import_fails_the_key_with_an_alert(world):
    emulator, vault, _, sweeper = world
    key_id = _lapsed(world)
    emulator.set_faults(lies={key_id: {"public_key": "other"}})
    outcome = reestablish(sweeper, vault, key_id)
    assert (outcome.outcome, outcome.error_code, outcome.alert) == (
        "failed",
        "MaterialMismatch",
        True,
    )
    assert "after import" in outcome.reason
    assert len(_calls(emulator, key_id, "ImportKeyMaterial")) == 2  # enrollment's and ours


def test_a_lying_public_key_before_import_spends_no_token(world):
    emulator, vault, _, sweeper = world
    key_id, _ = enroll_key(world, lease="3d")  # Enabled, inside the renewal window
    emulator.set_faults(lies={key_id: {"public_key": "other"}})
    outcome = reestablish(sweeper, vault, key_id, decision="RENEW")
    assert (outcome.outcome, outcome.error_code) == ("failed", "MaterialMismatch")
    assert len(_calls(emulator, key_id, "GetParametersForImport")) == 1  # enrollment's only


@pytest.mark.parametrize("lease", ["30d", "never"])
def test_an_expiry_kms_did_not_apply_fails_the_key(world, lease):
    emulator, vault, _, sweeper = world
    key_id = _lapsed(world, lease=lease)
    emulator.set_faults(lies={key_id: {"expiry": iso(emulator.now() + 86400)}})
    outcome = reestablish(sweeper, vault, key_id)
    assert outcome.outcome == "failed" and outcome.error_code == "ExecutionError"
    assert "reports expiry" in outcome.reason


@pytest.mark.parametrize(
    "shift, restored",
    [(-301, False), (-300, True), (-299, True), (+240, True)],
    ids=["301s-early", "300s-early", "299s-early", "4min-late"],
)
def test_an_expiry_a_few_minutes_off_is_held_to_the_300_second_slack(world, shift, restored):
    """KMS (or a proxy) answers an expiry a few minutes off the one imported: up to 300 s
    earlier is another run's concurrent import (``CONCURRENT_EXPIRY_SLACK``), one second more
    is an expiry KMS did not apply. A later one is always fine. The shift is applied to the
    expiry KMS really holds, so the boundary is exact whatever the clock does meanwhile."""
    emulator, vault, _, sweeper = world
    key_id = _lapsed(world, lease="30d")
    emulator.set_faults(lies={key_id: {"expiry_shift": str(shift)}})
    outcome = reestablish(sweeper, vault, key_id)
    held = emulator.key_view(key_id)["material_expire_time"]
    if restored:
        assert outcome.outcome == "restored", outcome.reason
        assert int(outcome.new_expiry.timestamp()) == int(_unix(held)) + shift
    else:
        assert (outcome.outcome, outcome.error_code) == ("failed", "ExecutionError")
        assert f"reports expiry {iso(_unix(held) + shift)}, imported with {held}" in outcome.reason


def _unix(text: str) -> float:
    from aliyun_local.clock import parse_iso

    return parse_iso(text)


def test_a_state_kms_did_not_reach_after_import_fails_the_key(world):
    emulator, vault, _, sweeper = world
    key_id = _lapsed(world)
    emulator.set_faults(lies={key_id: {"state": "PendingImport"}})
    outcome = reestablish(sweeper, vault, key_id)
    assert (outcome.outcome, outcome.error_code) == ("failed", "ExecutionError")
    assert "is PendingImport after import" in outcome.reason


def test_material_that_never_expires_in_kms_is_accepted(world):
    # The other side of the expiry check: "never" is at least as long as any lease.
    emulator, vault, _, sweeper = world
    key_id = _lapsed(world, lease="30d")
    emulator.set_faults(lies={key_id: {"expiry": ""}})
    outcome = reestablish(sweeper, vault, key_id)
    assert outcome.outcome == "restored" and outcome.new_expiry is None


@pytest.mark.parametrize(
    "spec, usage, lie",
    [
        ("EC_P256", "SIGN/VERIFY", "signature"),
        ("EC_P256K", "SIGN/VERIFY", "signature"),
        ("RSA_2048", "SIGN/VERIFY", "signature"),
        ("EC_SM2", "SIGN/VERIFY", "signature"),
        ("RSA_2048", "ENCRYPT/DECRYPT", "plaintext"),
        ("EC_SM2", "ENCRYPT/DECRYPT", "plaintext"),
    ],
)
def test_a_canary_kms_gets_wrong_fails_the_key(world, spec, usage, lie):
    emulator, vault, _, sweeper = world
    key_id = _lapsed(world, spec, usage)
    emulator.set_faults(lies={key_id: {lie: "bad"}})
    outcome = reestablish(sweeper, vault, key_id)
    assert (outcome.outcome, outcome.error_code) == ("failed", "CanaryFailed")
    assert "canary failed" in outcome.reason
    # The same key with an honest KMS is restored: the lie, not the key, failed it.
    emulator.set_faults()
    assert reestablish(sweeper, vault, key_id).outcome == "restored"


# ---- pre-import refusals --------------------------------------------------------------------


def test_reimport_without_a_recorded_first_import_is_refused_before_any_token(world):
    emulator, vault, _, sweeper = world
    key_id, material = enroll_key(world)
    envelope = vault.get(key_id)
    (vault.store.directory / f"{key_id}.json").unlink()
    vault.put(replace(envelope.header, first_imported_at=None), material)
    emulator.emulator.kms.delete_key_material(key_id)
    outcome = reestablish(sweeper, vault, key_id)  # what `reimport` runs: no planner in front
    assert (outcome.outcome, outcome.error_code, outcome.bad_input) == (
        "failed",
        "InputError",
        True,
    )
    assert "no first import recorded" in outcome.reason
    assert len(_calls(emulator, key_id, "GetParametersForImport")) == 1  # enrollment's only
    assert emulator.key_view(key_id)["state"] == "PendingImport"


def test_a_key_pending_deletion_is_skipped_and_never_imported(world):
    emulator, vault, _, sweeper = world
    key_id = _lapsed(world)
    emulator.emulator.kms.schedule_deletion(key_id, 7)
    outcome = reestablish(sweeper, vault, key_id)
    assert (outcome.outcome, outcome.decision, outcome.key_state) == (
        "skipped",
        "SKIP",
        "PendingDeletion",
    )
    assert [c["action"] for c in emulator.calls() if c["key_id"] == key_id][-1] == "DescribeKey"
    assert len(_calls(emulator, key_id, "GetParametersForImport")) == 1


# ---- the new expiry: lease tag and --lease --------------------------------------------------


@pytest.mark.parametrize(
    "tag, override, days",
    [(None, None, 30), ("2d", None, 2), (None, "3d", 3), ("2d", "5d", 5)],
    ids=["envelope", "tag-shortens", "override", "override-wins"],
)
def test_new_expiry_follows_the_lease_tag_and_the_override(world, tag, override, days):
    emulator, vault, _, sweeper = world
    key_id = _lapsed(world, lease="30d")
    if tag:
        emulator.emulator.kms.tag_key(key_id, {LEASE_TAG: tag})
    lease = parse_lease(override) if override else None
    outcome = reestablish(sweeper, vault, key_id, lease_override=lease)
    assert outcome.outcome == "restored"
    expected = emulator.now() + days * 86400
    assert outcome.new_expiry.timestamp() == pytest.approx(expected, abs=30)
    assert emulator.key_view(key_id)["material_expire_time"] == iso(outcome.new_expiry.timestamp())


# ---- the material is wiped on every path ------------------------------------------------------


class RecordingVault(Vault):
    """A real vault that keeps a reference to every material it opens, to look at it after."""

    def __init__(self, vault: Vault) -> None:
        super().__init__(vault.store, vault.sealer)
        self.opened = []

    def open(self, envelope):
        material = super().open(envelope)
        self.opened.append(material)
        return material


@pytest.mark.parametrize("path", ["restored", "mismatch", "held", "dry-run", "verify"])
def test_material_is_wiped_after_every_use(world, path):
    emulator, vault, _, sweeper = world
    recording = RecordingVault(vault)
    key_id, _ = enroll_key(world, lease="3d")
    if path == "mismatch":
        emulator.set_faults(lies={key_id: {"public_key": "other"}})
    if path == "held":
        emulator.emulator.kms.tag_key(key_id, {HOLD_TAG: "INC-1"})
    if path == "verify":
        assert verify_key(sweeper, recording, key_id)["result"] == "verified"
    else:
        outcome = reestablish(
            sweeper, recording, key_id, decision="RENEW", dry_run=path == "dry-run"
        )
        expected = {"mismatch": "failed", "restored": "renewed"}.get(path, path)
        assert outcome.outcome == expected
    if path == "held":  # the hold is read before unsealing: a held key is never opened
        assert recording.opened == []
        return
    assert recording.opened, "the vault was never opened"
    assert all(m.wiped for m in recording.opened)


# ---- verify: every result, not only the happy one ---------------------------------------------


@pytest.mark.parametrize(
    "setup, result",
    [
        ("honest", "verified"),
        ("public_key", "mismatch"),
        ("signature", "error"),
        ("deleted", "not-usable"),
        ("no-envelope", "error"),
    ],
)
def test_verify_reports_what_kms_answered(world, setup, result):
    emulator, vault, _, sweeper = world
    key_id, _ = enroll_key(world)
    if setup in ("public_key", "signature"):
        emulator.set_faults(lies={key_id: {setup: "other" if setup == "public_key" else "bad"}})
    if setup == "deleted":
        emulator.emulator.kms.delete_key_material(key_id)
    if setup == "no-envelope":
        (vault.store.directory / f"{key_id}.json").unlink()
    report = verify_key(sweeper, vault, key_id)
    assert report["result"] == result, report
    assert not _calls(emulator, key_id, "ImportKeyMaterial")[1:]  # verify never imports


# ---- discovery: one bad envelope fails one key ------------------------------------------------


def test_an_unreadable_envelope_fails_that_key_and_the_sweep_goes_on(world):
    emulator, vault, _, sweeper = world
    broken, _ = enroll_key(world)
    fine, _ = enroll_key(world)
    for key_id in (broken, fine):
        emulator.emulator.kms.delete_key_material(key_id)
    (vault.store.directory / f"{broken}.json").write_text("{not json")
    result = sweep_keys(sweeper, vault)
    outcomes = {o.key_id: o for o in result.outcomes}
    assert outcomes[broken].outcome == "failed"
    assert outcomes[fine].outcome == "restored"
    assert emulator.key_view(fine)["state"] == "Enabled"


# ---- the outcome says what happened ------------------------------------------------------------


def test_the_outcome_of_a_restore_and_of_a_failure_describe_the_run(world):
    emulator, vault, _, sweeper = world
    key_id = _lapsed(world, lease="30d")
    fingerprint = vault.get(key_id).fingerprint
    steps: dict[str, str] = {}
    started = time.monotonic()
    outcome = reestablish(sweeper, vault, key_id, on_step=steps.__setitem__)
    wall_ms = (time.monotonic() - started) * 1000
    assert list(steps) == ["describe", "unseal", "hold", "import", "verify"]
    assert steps["hold"] == "no hold; lease 30d"
    assert (outcome.outcome, outcome.failed, outcome.key_state) == ("restored", False, "Enabled")
    assert outcome.fingerprint == fingerprint and outcome.canary.startswith("sign ")
    assert 0 < outcome.duration_ms <= wall_ms + 1
    # One request id per KMS call that changed or described the key (describe, token, import,
    # describe after), each its own.
    assert len(outcome.request_ids) >= 4 and len(set(outcome.request_ids)) == len(
        outcome.request_ids
    )
    assert outcome.to_json()["new_expiry"] == iso(outcome.new_expiry.timestamp())
    emulator.set_faults(lies={key_id: {"signature": "bad"}})
    failed = reestablish(sweeper, vault, key_id)
    assert (failed.outcome, failed.failed) == ("failed", True)
    assert failed.to_json()["outcome"] == "failed"


def test_a_key_whose_material_kms_generated_is_refused_naming_its_origin(world, kms):
    from alibabacloud_kms20160120 import models as km

    emulator, vault, _, sweeper = world
    key_id = kms.create_key(
        km.CreateKeyRequest(
            key_spec="EC_P256", key_usage="SIGN/VERIFY", dkmsinstance_id="kst-local-software"
        )
    ).body.key_metadata.key_id
    outcome = reestablish(sweeper, vault, key_id)
    assert (outcome.outcome, outcome.error_code) == ("failed", "InputError")
    assert "Origin Aliyun_KMS" in outcome.reason
    assert [c["action"] for c in emulator.calls() if c["key_id"] == key_id][-1] == "DescribeKey"


def test_a_key_with_no_envelope_fails_without_raising(world):
    _emulator, vault, _, sweeper = world
    key_id = _lapsed(world)
    (vault.store.directory / f"{key_id}.json").unlink()
    outcome = reestablish(sweeper, vault, key_id)
    assert (outcome.outcome, outcome.error_code) == ("failed", "InputError")
    assert "holds no envelope" in outcome.reason


def test_an_envelope_for_another_spec_is_refused_before_any_token(world):
    from byok_keeper.crypto.material import generate_material

    emulator, vault, _, sweeper = world
    key_id = _lapsed(world, "EC_P256")
    envelope = vault.get(key_id)
    other = generate_material("EC_P256K")
    (vault.store.directory / f"{key_id}.json").unlink()
    vault.put(
        replace(
            envelope.header,
            key_spec="EC_P256K",
            fingerprint=other.fingerprint,
            public_key_der=base64.b64encode(other.public_key_der).decode(),
        ),
        other,
    )
    outcome = reestablish(sweeper, vault, key_id)
    assert (outcome.outcome, outcome.error_code, outcome.alert) == (
        "failed",
        "MaterialMismatch",
        True,
    )
    assert len(_calls(emulator, key_id, "GetParametersForImport")) == 1  # enrollment's only


def test_renewing_a_usable_key_checks_its_identity_first(world):
    _emulator, vault, _, sweeper = world
    key_id, _ = enroll_key(world, lease="3d")
    steps: dict[str, str] = {}
    outcome = reestablish(sweeper, vault, key_id, decision="RENEW", on_step=steps.__setitem__)
    assert outcome.outcome == "renewed"
    assert list(steps) == ["describe", "unseal", "identity", "hold", "import", "verify"]


def test_an_envelope_with_an_unusable_lease_fails_without_raising(world):
    emulator, vault, _, sweeper = world
    key_id = _lapsed(world)
    emulator.emulator.kms.untag_key(key_id, [LEASE_TAG])  # no tag to fall back on
    envelope = vault.get(key_id)
    material = vault.open(envelope)
    (vault.store.directory / f"{key_id}.json").unlink()
    vault.put(replace(envelope.header, lease="a fortnight"), material)
    material.wipe()
    outcome = reestablish(sweeper, vault, key_id)
    assert (outcome.outcome, outcome.error_code) == ("failed", "InputError")
    assert "no valid lease" in outcome.reason


@pytest.mark.parametrize(
    ("fault", "code"),
    [("Forbidden.NoPermission", "Forbidden.NoPermission"), ("DropConnection", "Unavailable")],
)
def test_a_kms_error_fails_the_key_with_its_code_and_request_id(world, fault, code):
    emulator, vault, _, sweeper = world
    key_id = _lapsed(world)
    emulator.set_faults(fail_next={"GetParametersForImport": [fault] * 5})
    outcome = reestablish(sweeper, vault, key_id)
    assert (outcome.outcome, outcome.error_code) == ("failed", code)
    assert "GetParametersForImport" in outcome.reason
    # The refusing answer's request id is kept for the support ticket; a lost answer has none.
    answered = 1 if fault != "DropConnection" else 0
    assert len(outcome.request_ids) == 1 + answered


def test_a_skipped_key_reports_its_duration(world):
    emulator, vault, _, sweeper = world
    key_id = _lapsed(world)
    emulator.emulator.kms.schedule_deletion(key_id, 7)
    emulator.set_faults(latency_ms=5)  # so the one DescribeKey surely takes a millisecond
    started = time.monotonic()
    outcome = reestablish(sweeper, vault, key_id)
    assert outcome.outcome == "skipped"
    assert 0 < outcome.duration_ms <= (time.monotonic() - started) * 1000 + 1


@pytest.mark.parametrize(
    ("spec", "usage", "proof"),
    [
        ("EC_P256", "SIGN/VERIFY", "sign ECDSA_SHA_256"),
        ("RSA_2048", "SIGN/VERIFY", "sign RSA_PKCS1_SHA_256"),
        ("EC_SM2", "SIGN/VERIFY", "sign SM2DSA"),
        ("RSA_2048", "ENCRYPT/DECRYPT", "decrypt RSAES_OAEP_SHA_256"),
        ("EC_SM2", "ENCRYPT/DECRYPT", "decrypt SM2PKE"),
    ],
)
def test_the_canary_says_what_it_proved(world, spec, usage, proof):
    _emulator, vault, _, sweeper = world
    key_id = _lapsed(world, spec, usage)
    outcome = reestablish(sweeper, vault, key_id)
    assert (outcome.outcome, outcome.canary) == ("restored", proof)
    assert outcome.reason.endswith(f"verified ({proof})")

"""The fault matrix: every KMS action of the sweep, reimport and enroll paths, each fault.

Faults come from aliyun-local over real HTTP: 429 ``Rejected.Throttling``, 503
``ServiceUnavailableTemporary``, 500 ``InternalFailure``, a connection dropped before the action
runs, and a read timeout *after* the action ran (the answer is lost, the work is done). For each,
the key is restored or cleanly failed with a reason, the next run completes it, and the material
KMS holds is always the enrolled material (KMS binds the first import, so a wrong import would
show as a different fingerprint or an ``InvalidKeyMaterial`` refusal).
"""

from __future__ import annotations

import pytest
from alibabacloud_kms20160120 import models as km

from byok_keeper.core.enroll import enroll
from byok_keeper.core.reestablish import reestablish
from byok_keeper.core.sweep import sweep_keys
from byok_keeper.crypto.material import generate_material
from byok_keeper.domain.lease import parse_lease
from byok_keeper.gateway.kms import ClockSkewError, RetryPolicy
from tests.figures import observe, record
from tests.functional.conftest import build_world, create_request, enroll_key, skew_local_clock

FAULTS = (
    "Rejected.Throttling",
    "ServiceUnavailableTemporary",
    "InternalFailure",
    "DropConnection",
    "ReadTimeout",
)
# The re-establishment steps, in order. GetPublicKey runs only for a usable (renewing) key.
REESTABLISH_ACTIONS = (
    "DescribeKey",
    "ListResourceTags",
    "GetParametersForImport",
    "ImportKeyMaterial",
    "GetPublicKey",
    "AsymmetricSign",
)
ENROLL_ACTIONS = (
    "ListKeys",
    "CreateKey",
    "DescribeKey",
    "GetParametersForImport",
    "ImportKeyMaterial",
    "GetPublicKey",
    "AsymmetricSign",
    "TagResource",
)
# A read timeout costs the client READ_TIMEOUT_MS; the server holds the line longer.
READ_TIMEOUT_MS = 1_200
HANG_MS = 3_000
ATTEMPTS = RetryPolicy().max_attempts


@pytest.fixture
def world(emulator, kms, tmp_path):
    return build_world(emulator, tmp_path, read_timeout_ms=READ_TIMEOUT_MS)


def _due_key(world, action):
    """An enrolled key that the next run must re-establish (renewal when GetPublicKey is hit)."""
    emulator = world[0]
    if action == "GetPublicKey":
        key_id, material = enroll_key(world, lease="14d")
        emulator.advance_clock(8 * 86400)
    else:
        key_id, material = enroll_key(world)
        emulator.emulator.kms.delete_key_material(key_id)
    return key_id, material


def _run(path, world, key_id):
    _emulator, vault, _, sweeper = world
    if path == "sweep":
        result = sweep_keys(sweeper, vault)
        return next(o for o in result.outcomes if o.key_id == key_id)
    return reestablish(sweeper, vault, key_id)  # what `byok-keeper reimport` runs


def _fault(emulator, key_id, material, code, *, first_run, final_run, **fields):
    """Record what was observed (before the test asserts anything about it): whether the fault
    fired, what each run reported, and the key as KMS shows it."""
    fired = any(c["code"] == code for c in emulator.calls())
    record("fault", code=code, fired=fired, first_run=first_run, final_run=final_run,
           key=observe(emulator.key_view, key_id, material.fingerprint), **fields)  # fmt: skip
    return fired


def _assert_identical(emulator, key_id, material):
    view = emulator.key_view(key_id)
    assert view["material_fingerprint"] == material.fingerprint
    return view


@pytest.mark.parametrize("code", FAULTS)
@pytest.mark.parametrize("action", REESTABLISH_ACTIONS)
@pytest.mark.parametrize("path", ["sweep", "reimport"])
def test_one_fault_at_each_reestablishment_step(world, path, action, code):
    emulator = world[0]
    key_id, material = _due_key(world, action)
    emulator.set_faults(fail_next={action: [code]}, hang_ms=HANG_MS)
    outcome = _run(path, world, key_id)
    fired = _fault(emulator, key_id, material, code, path=path, action=action, persistent=False,
                   first_run=outcome.outcome, final_run=outcome.outcome)  # fmt: skip
    assert fired, "the fault did not fire"
    # A single fault is absorbed: retried (idempotent steps) and the key is back.
    assert outcome.outcome in ("restored", "renewed"), outcome.reason
    view = _assert_identical(emulator, key_id, material)
    assert view["state"] == "Enabled"


@pytest.mark.parametrize("code", [c for c in FAULTS if c != "ReadTimeout"])
@pytest.mark.parametrize("action", REESTABLISH_ACTIONS)
def test_a_persistent_fault_fails_the_key_cleanly_and_the_next_run_completes(world, action, code):
    emulator = world[0]
    key_id, material = _due_key(world, action)
    emulator.set_faults(fail_next={action: [code] * ATTEMPTS}, hang_ms=HANG_MS)
    first = _run("sweep", world, key_id)
    fired = any(c["code"] == code for c in emulator.calls())
    emulator.set_faults()
    second = _run("sweep", world, key_id)
    _fault(emulator, key_id, material, code, path="sweep", action=action, persistent=True,
           first_run=first.outcome, final_run=second.outcome)  # fmt: skip
    assert fired, "the fault did not fire"
    assert first.outcome == "failed"
    assert action in first.reason and "\n" not in first.reason
    assert "Traceback" not in first.reason
    # A failed canary after a good import leaves the key Enabled and renewed: next run is OK.
    assert second.outcome in ("restored", "renewed", "ok"), second.reason
    view = _assert_identical(emulator, key_id, material)
    assert view["state"] == "Enabled"


def test_a_persistent_read_timeout_on_import_fails_cleanly_and_the_work_is_not_lost(world):
    emulator = world[0]
    key_id, material = _due_key(world, "ImportKeyMaterial")
    emulator.set_faults(
        fail_next={"ImportKeyMaterial": ["ReadTimeout"] * ATTEMPTS}, hang_ms=HANG_MS
    )
    first = _run("sweep", world, key_id)
    # Every attempt reached KMS and imported the same material under the same token.
    after_first = observe(emulator.key_view, key_id, material.fingerprint)
    second = _run("sweep", world, key_id)
    _fault(emulator, key_id, material, "ReadTimeout", path="sweep", action="ImportKeyMaterial",
           persistent=True, first_run=first.outcome, final_run=second.outcome)  # fmt: skip
    assert first.outcome == "failed" and "timeout" in first.reason
    assert after_first["state"] == "Enabled"
    assert after_first["kms_fingerprint"] == material.fingerprint
    assert second.outcome in ("ok", "renewed", "restored")


@pytest.mark.parametrize("code", FAULTS)
@pytest.mark.parametrize("action", ENROLL_ACTIONS)
def test_one_fault_at_each_enrollment_step(world, kms, action, code):
    emulator, vault, enroller, _ = world
    emulator.set_faults(fail_next={action: [code]}, hang_ms=HANG_MS)
    material = generate_material("EC_P256")
    lease = parse_lease("30d")
    first = "enrolled"
    try:
        result = enroll(enroller, vault, material, lease=lease, create=create_request())
    except Exception as exc:  # only CreateKey may fail: it is never sent twice
        assert action == "CreateKey" and code != "Rejected.Throttling", exc
        assert "CreateKey" in str(exc) and "\n" not in str(exc)
        first = "failed"
        assert [c["action"] for c in emulator.calls()].count("CreateKey") == 1
        emulator.set_faults()
        result = enroll(enroller, vault, material, lease=lease, create=create_request())
    fired = _fault(emulator, result.key_id, material, code, path="enroll", action=action,
                   persistent=False, first_run=first, final_run="enrolled")  # fmt: skip
    assert fired, "the fault did not fire"
    # Exactly one key, enrolled with this material, first import recorded.
    assert kms.list_keys(km.ListKeysRequest()).body.total_count == 1
    view = _assert_identical(emulator, result.key_id, material)
    assert view["state"] == "Enabled"
    assert vault.get(result.key_id).header.first_imported_at


# ---- time ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["sweep", "reimport", "enroll"])
def test_an_expired_import_token_is_replaced_once(world, path):
    emulator, vault, enroller, _ = world
    start = 0
    if path == "enroll":
        emulator.set_faults(fail_next={"ImportKeyMaterial": ["ExpiredImportToken"]})
        material = generate_material("EC_P256")
        result = enroll(
            enroller, vault, material, lease=parse_lease("30d"), create=create_request()
        )
        key_id = result.key_id
    else:
        key_id, material = _due_key(world, "ImportKeyMaterial")
        start = len(emulator.calls())  # enrollment's calls are not this run's
        emulator.set_faults(fail_next={"ImportKeyMaterial": ["ExpiredImportToken"]})
        outcome = _run(path, world, key_id).outcome
    reported = "enrolled" if path == "enroll" else outcome
    _fault(emulator, key_id, material, "ExpiredImportToken", path=path, action="ImportKeyMaterial",
           persistent=False, first_run=reported, final_run=reported)  # fmt: skip
    assert reported in ("restored", "enrolled")
    run = [c for c in emulator.calls()[start:] if c["key_id"] == key_id]
    # Exactly one fresh token after the expired one, and the import retried once with it.
    assert [c["action"] for c in run if c["action"] == "GetParametersForImport"] == [
        "GetParametersForImport"
    ] * 2
    assert [c["code"] for c in run if c["action"] == "ImportKeyMaterial"] == [
        "ExpiredImportToken",
        None,
    ]
    assert _assert_identical(emulator, key_id, material)["state"] == "Enabled"


@pytest.mark.parametrize("hours", [3, -5])
def test_a_local_clock_hours_off_stops_the_run_with_one_reason(world, mocker, hours):
    emulator, vault, _, sweeper = world
    key_id, material = _due_key(world, "ImportKeyMaterial")
    emulator.emulator.calls.clear()
    skew_local_clock(mocker, hours * 3600)
    with pytest.raises(ClockSkewError) as caught:
        sweep_keys(sweeper, vault)
    message = str(caught.value)
    assert "InvalidTimeStamp.Expired" in message and "time synchronisation" in message
    assert "\n" not in message and caught.value.exit_code == 2
    # Refused at the first call, not retried, nothing imported, the key as it was.
    assert [c["code"] for c in emulator.calls()] == ["InvalidTimeStamp.Expired"]
    assert emulator.key_view(key_id)["state"] == "PendingImport"
    calls_refused = len(emulator.calls())
    mocker.stopall()  # the host's clock is fixed
    fixed = _run("sweep", world, key_id).outcome
    seen = observe(emulator.key_view, key_id, material.fingerprint)
    record("drill", name=f"local clock {hours:+d} h vs KMS",
           result=f"run stopped after {calls_refused} KMS call(s) with exit code "
           f"{caught.value.exit_code}; with the clock fixed: {fixed}, key {seen['state']}, "
           f"{'enrolled' if seen['kms_fingerprint'] == material.fingerprint else 'OTHER'} "
           "material")  # fmt: skip
    assert fixed == "restored"
    _assert_identical(emulator, key_id, material)


def test_a_local_clock_minutes_off_plans_against_kms_time(world, mocker):
    emulator = world[0]
    key_id, material = enroll_key(world, lease="14d")
    emulator.advance_clock(8 * 86400)  # KMS time: the key is inside its renewal window
    skew_local_clock(mocker, 10 * 60)  # inside the gateway's 15-minute tolerance
    outcome = _run("sweep", world, key_id)
    assert outcome.outcome == "renewed"
    assert outcome.new_expiry.timestamp() == pytest.approx(emulator.now() + 14 * 86400, abs=5)
    _assert_identical(emulator, key_id, material)


def test_the_cli_reports_a_skewed_clock_in_one_line_and_exits_2(
    world, mocker, tmp_path, monkeypatch, capsys
):
    from byok_keeper.runtimes.cli import main

    emulator = world[0]
    key_id, _ = _due_key(world, "ImportKeyMaterial")
    skew_local_clock(mocker, 4 * 3600)
    for name, value in {
        "BYOK_KMS_ENDPOINT": f"http://{emulator.endpoint}",
        "BYOK_VAULT": f"file://{tmp_path / 'vault'}",
        "BYOK_SEAL_KEY_FILE": str(tmp_path / "seal.key"),
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emulator.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emulator.access_key_secret,
        "ALIBABA_CLOUD_REGION_ID": emulator.region,
    }.items():
        monkeypatch.setenv(name, value)
    # The credentials library reads its environment variables once, at import.
    from alibabacloud_credentials.utils import auth_util

    monkeypatch.setattr(auth_util, "environment_access_key_id", emulator.access_key_id)
    monkeypatch.setattr(auth_util, "environment_access_key_secret", emulator.access_key_secret)
    for command in (["sweep"], ["plan"], ["reimport", key_id, "--reason", "INC-7"]):
        capsys.readouterr()
        code = main(command)
        out, err = capsys.readouterr()
        assert code == 2, (command, out, err)
        lines = [line for line in (out + err).splitlines() if line.strip()]
        assert len(lines) == 1 and "InvalidTimeStamp.Expired" in lines[0], (command, out, err)
    assert emulator.key_view(key_id)["state"] == "PendingImport"


# ---- the production vault: envelopes as KMS secrets, sealed with a KMS key ------------------

SECRETS_SWEEP_ACTIONS = ("ListSecrets", "GetSecretValue", "Decrypt")
SECRETS_ENROLL_ACTIONS = (
    "GetSecretValue",
    "GenerateDataKey",
    "CreateSecret",
    "Decrypt",
    "PutSecretValue",
)


@pytest.fixture
def secrets_world(emulator, kms, tmp_path):
    """(emulator, vault-for(gateway), enroller, sweeper) with a kms-secrets:// store and a KMS
    sealer, as deploy/functions.yml deploys it."""
    from byok_keeper.vault import KmsSealer, SecretsStore, Vault

    server, _, enroller, sweeper = build_world(emulator, tmp_path, read_timeout_ms=READ_TIMEOUT_MS)
    cmk = kms.create_key(km.CreateKeyRequest()).body.key_metadata.key_id

    def vault_for(gateway):
        return Vault(SecretsStore(gateway, "byok-keeper/envelopes"), KmsSealer(gateway, cmk))

    return server, vault_for, enroller, sweeper


@pytest.mark.parametrize("code", FAULTS)
@pytest.mark.parametrize("action", SECRETS_SWEEP_ACTIONS)
def test_one_fault_at_each_vault_step_of_a_sweep(secrets_world, action, code):
    emulator, vault_for, enroller, sweeper = secrets_world
    key_id, material = enroll_key((emulator, vault_for(enroller), enroller, sweeper))
    emulator.emulator.kms.delete_key_material(key_id)
    emulator.set_faults(fail_next={action: [code]}, hang_ms=HANG_MS)
    result = sweep_keys(sweeper, vault_for(sweeper))
    (outcome,) = result.outcomes
    fired = _fault(emulator, key_id, material, code, path="sweep (kms-secrets vault)",
                   action=action, persistent=False, first_run=outcome.outcome,
                   final_run=outcome.outcome)  # fmt: skip
    assert fired, "the fault did not fire"
    assert outcome.outcome == "restored", outcome.reason
    assert _assert_identical(emulator, key_id, material)["state"] == "Enabled"


@pytest.mark.parametrize("code", FAULTS)
@pytest.mark.parametrize("action", SECRETS_ENROLL_ACTIONS)
def test_one_fault_at_each_vault_step_of_an_enrollment(secrets_world, kms, action, code):
    emulator, vault_for, enroller, _ = secrets_world
    vault = vault_for(enroller)
    emulator.set_faults(fail_next={action: [code]}, hang_ms=HANG_MS)
    material = generate_material("EC_P256")
    lease = parse_lease("30d")
    first = "enrolled"
    try:
        result = enroll(enroller, vault, material, lease=lease, create=create_request())
    except Exception as exc:
        assert "\n" not in str(exc) and action in str(exc), exc
        first = "failed"
        emulator.set_faults()
        result = enroll(enroller, vault, material, lease=lease, create=create_request())
    fired = _fault(emulator, result.key_id, material, code, path="enroll (kms-secrets vault)",
                   action=action, persistent=False, first_run=first,
                   final_run="enrolled")  # fmt: skip
    assert fired, "the fault did not fire"
    keys = kms.list_keys(km.ListKeysRequest()).body.total_count
    assert keys == 2  # the sealing key and exactly one enrolled key
    assert _assert_identical(emulator, result.key_id, material)["state"] == "Enabled"
    assert vault.get(result.key_id).header.first_imported_at


def test_kms_access_lost_mid_apply_stops_the_run_with_one_reason(world):
    """A ``NoKmsAccess`` while re-establishing (here KMS refusing the request time on the first
    key's GetParametersForImport) is not about that key: it fails, and no further key is
    attempted -- each is reported skipped, "not attempted", with the same reason and code."""
    emulator, vault, _, sweeper = world
    keys = [_due_key(world, "GetParametersForImport")[0] for _ in range(3)]
    emulator.emulator.calls.clear()
    emulator.set_faults(fail_next={"GetParametersForImport": ["InvalidTimeStamp.Expired"]})
    logged = []
    result = sweep_keys(sweeper, vault, concurrency=1, log=lambda e, **kw: logged.append((e, kw)))
    by_outcome = sorted((o.outcome, o.error_code) for o in result.outcomes)
    assert by_outcome == [("failed", "ClockSkewError")] + [("skipped", "ClockSkewError")] * 2
    skipped = [o for o in result.outcomes if o.outcome == "skipped"]
    assert all(o.reason.startswith("not attempted: KMS refused the request time") for o in skipped)
    assert result.summary() == {"failed": 1, "skipped": 2} and len(result.failed) == 1
    # One key reached the apply calls; the others none (3 DescribeKeys of discovery, 1 more).
    assert [c["action"] for c in emulator.calls()].count("GetParametersForImport") == 1
    assert [c["action"] for c in emulator.calls()].count("DescribeKey") == 4
    assert [e for e, _ in logged if e == "kms_access_lost"] == ["kms_access_lost"]
    assert {emulator.key_view(k)["state"] for k in keys} == {"PendingImport"}
    again = sweep_keys(sweeper, vault)  # the next run restores them all
    assert again.summary() == {"restored": 3}


def test_a_renewal_not_attempted_after_kms_access_was_lost_counts_toward_the_first_lapse(world):
    """Two keys due for renewal (Enabled); KMS refuses the request time on the first one's
    GetPublicKey: the other is not attempted, and the metrics count it as a key nothing will
    renew (``byok_keeper_seconds_until_first_lapse``), as they count the failed one."""
    from byok_keeper.operations.metrics import fleet_figures

    emulator, vault, _, sweeper = world
    for _ in range(2):
        enroll_key(world, lease="14d")
    emulator.advance_clock(8 * 86400)  # both inside their renewal window
    emulator.set_faults(fail_next={"GetPublicKey": ["InvalidTimeStamp.Expired"]})
    result = sweep_keys(sweeper, vault, concurrency=1)
    assert result.summary() == {"failed": 1, "skipped": 1}
    (left,) = [o for o in result.outcomes if o.not_attempted]
    assert left.error_code == "ClockSkewError" and left.decision == "RENEW"
    decision = [d for d in result.decisions if d.key_id == left.key_id]
    figures = fleet_figures(decision, [left], now=result.now)
    assert figures.first_lapse_key_id == left.key_id
    assert figures.first_lapse == decision[0].material_expire_time

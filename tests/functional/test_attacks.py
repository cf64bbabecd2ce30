"""Issue 13: each attack an adversarial review ran against aliyun-local, as a test that fails
without its defence (docs/SECURITY.md lists them). Real SDK, real HTTP, no mocks of our code."""

from __future__ import annotations

import json

import pytest

from byok_keeper.core.enroll import CreateRequest, enroll
from byok_keeper.crypto.material import generate_material
from byok_keeper.domain.lease import parse_lease
from byok_keeper.gateway.kms import ENROLL
from byok_keeper.runtimes import fc
from byok_keeper.vault import FileStore, LocalKeySealer, Vault
from byok_keeper.vault.sealers import new_seal_key_file
from tests.functional.conftest import fc_context, make_gateway

HOLD_TAG = "byok-keeper:hold"


@pytest.fixture
def deployed(emulator, kms, tmp_path, monkeypatch):
    """An enrolled key, the FC functions' settings (with an audit file) and an FC context."""
    new_seal_key_file(tmp_path / "seal.key")
    monkeypatch.setenv("BYOK_KMS_ENDPOINT", f"http://{emulator.endpoint}")
    monkeypatch.setenv("BYOK_VAULT", f"file://{tmp_path / 'vault'}")
    monkeypatch.setenv("BYOK_SEAL_KEY_FILE", str(tmp_path / "seal.key"))
    monkeypatch.setenv("BYOK_AUDIT_FILE", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("BYOK_DISPATCH", "inline")
    vault = Vault(FileStore(tmp_path / "vault"), LocalKeySealer.from_file(tmp_path / "seal.key"))
    material = generate_material("EC_P256")
    key = enroll(make_gateway(emulator, ENROLL), vault, material, lease=parse_lease("30d"),
                 create=CreateRequest("EC_P256", "SIGN/VERIFY", "kst-local-software"))  # fmt: skip
    fc.RUNTIME = fc.Runtime()  # a cold instance
    return fc_context(emulator), key.key_id, tmp_path / "audit.jsonl"


def _audit(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---- 1. hold bypass through FC ---------------------------------------------------------------


def test_fc_event_cannot_override_a_hold_and_the_attempt_is_audited(deployed, emulator):
    context, key_id, audit = deployed
    emulator.emulator.kms.delete_key_material(key_id)
    emulator.emulator.kms.tag_key(key_id, {HOLD_TAG: "kill switch INC-9"})
    event = {"key_id": key_id, "override_hold": True, "requested_by": "alice", "reason": "x"}
    result = fc.handle_reimport(json.dumps(event).encode(), context)
    assert result["ok"] is False and result["error"] == "HoldOverrideRefused"
    assert "byok-keeper release" in result["message"]
    assert emulator.key_view(key_id)["state"] == "PendingImport"
    imports = [c for c in emulator.calls() if c["action"] == "ImportKeyMaterial"]
    assert len(imports) == 1  # the enrollment's, nothing since
    line = _audit(audit)[-1]
    assert line["error_code"] == "HoldOverrideRefused" and line["alert"] is True
    assert line["actor"] == "fc" and line["claimed_by"] == "alice" and line["key_id"] == key_id


def test_fc_event_requested_by_is_recorded_as_claimed_never_as_actor(deployed, emulator):
    context, key_id, audit = deployed
    emulator.emulator.kms.delete_key_material(key_id)
    event = {"key_id": key_id, "requested_by": "alice", "reason": "INC-1"}
    result = fc.handle_reimport(json.dumps(event).encode(), context)
    assert result["ok"] is True
    line = _audit(audit)[-1]
    assert line["actor"] == "fc" and line["claimed_by"] == "alice"
    assert "alice" not in {str(v) for k, v in line.items() if k != "claimed_by"}


# ---- 3. the lease tag lengthens the sealed lease ---------------------------------------------


def test_a_never_lease_tag_cannot_lengthen_a_one_hour_sealed_lease(emulator, kms, tmp_path):
    from byok_keeper.core.reestablish import reestablish
    from tests.functional.conftest import build_world, enroll_key

    world = build_world(emulator, tmp_path)
    _, vault, _, sweeper = world
    key_id, _ = enroll_key(world, lease="1h")
    emulator.emulator.kms.tag_key(key_id, {"byok-keeper:lease": "never"})
    emulator.emulator.kms.delete_key_material(key_id)
    steps: list[str] = []
    outcome = reestablish(sweeper, vault, key_id, on_step=lambda n, d: steps.append(f"{n}: {d}"))
    assert outcome.outcome == "restored" and outcome.new_expiry is not None
    left = (outcome.new_expiry - sweeper.now()).total_seconds()
    assert 3000 < left <= 3600
    assert any("ignored lease tag 'never'" in s for s in steps)


# ---- 13. hold re-check on the retry after an expired import token ----------------------------


def test_a_hold_set_while_the_import_token_expired_wins_over_the_retry(
    emulator, kms, tmp_path, mocker
):
    from aliyun_local.errors import ApiError
    from byok_keeper.core.reestablish import reestablish
    from tests.functional.conftest import build_world, enroll_key

    world = build_world(emulator, tmp_path)
    _, vault, _, sweeper = world
    key_id, _ = enroll_key(world)
    model = emulator.emulator.kms
    model.delete_key_material(key_id)

    def token_expired_meanwhile(*_args, **_kwargs):
        # Security puts the key on hold while the first token is spent, and the token lapses.
        model.tag_key(key_id, {HOLD_TAG: "kill switch INC-7"})
        raise ApiError("ExpiredImportToken", "The import token has expired.", 400)

    mocker.patch.object(model, "import_key_material", side_effect=token_expired_meanwhile)
    outcome = reestablish(sweeper, vault, key_id)
    assert outcome.outcome == "held", outcome
    tokens = [c for c in emulator.calls() if c["action"] == "GetParametersForImport"]
    assert len(tokens) == 2  # the enrollment's and the first attempt's: no fresh token spent
    assert model.import_key_material.call_count == 1
    assert emulator.key_view(key_id)["state"] == "PendingImport"


# ---- 2. enrollment adopts a planted key -------------------------------------------------------


class _Crash(Exception):
    pass


def _attacker_plants(emulator, tags, instance="kst-local-software", spec="EC_P256"):
    """Someone with CreateKey+TagResource makes an EXTERNAL key carrying the given tags."""
    attacker = make_gateway(emulator, ENROLL)
    return attacker.create_key(key_spec=spec, key_usage="SIGN/VERIFY", instance_id=instance,
                               description="", tags=tags).key_id  # fmt: skip


def _material_went_to(emulator, key_id) -> bool:
    return (
        any(
            c["key_id"] == key_id and c["action"] in ("GetParametersForImport", "ImportKeyMaterial")
            for c in emulator.calls()
        )
        or emulator.key_view(key_id)["material_fingerprint"] is not None
    )


def _enroll(world, material, **kw):
    from tests.functional.conftest import create_request

    _, vault, enroller, _ = world
    return enroll(enroller, vault, material, lease=parse_lease("30d"),
                  create=create_request("EC_P256"), **kw)  # fmt: skip


@pytest.mark.parametrize("marker", [None, "0" * 64])
def test_enroll_create_never_resumes_a_key_planted_with_the_public_fingerprint(
    emulator, kms, tmp_path, marker
):
    from byok_keeper.core.enroll import FINGERPRINT_TAG, MARKER_TAG, SuspiciousKey
    from tests.functional.conftest import build_world

    world = build_world(emulator, tmp_path)
    material = generate_material("EC_P256")
    tags = {FINGERPRINT_TAG: material.fingerprint}  # anyone with the public key computes this
    if marker:
        tags[MARKER_TAG] = marker
    planted = _attacker_plants(emulator, tags)
    with pytest.raises(SuspiciousKey, match=f"ALERT: {planted}"):
        _enroll(world, material)
    assert not _material_went_to(emulator, planted)
    assert world[1].inventory() == []


@pytest.mark.parametrize(
    ("instance", "spec"),
    [("kst-local-hardware", "EC_P256"), ("kst-local-software", "EC_P256K"),
     ("kst-local-software", "EC_P256")],
    ids=["other-instance", "other-spec", "same-request"],
)  # fmt: skip
def test_a_copied_enrollment_marker_does_not_make_a_planted_key_ours(
    emulator, kms, tmp_path, instance, spec
):
    from byok_keeper.core.enroll import SuspiciousKey
    from tests.functional.conftest import build_world

    world = build_world(emulator, tmp_path)
    material = generate_material("EC_P256")

    def crash(step, _detail):
        if step == "create":
            raise _Crash

    with pytest.raises(_Crash):
        _enroll(world, material, on_step=crash)
    (ours,) = world[2].list_keys()
    copied = world[2].list_tags(ours)  # tags are readable: the attacker copies them
    planted = _attacker_plants(emulator, copied, instance=instance, spec=spec)
    with pytest.raises(SuspiciousKey, match=planted):
        _enroll(world, material)
    assert not _material_went_to(emulator, planted) and not _material_went_to(emulator, ours)
    emulator.emulator.kms.schedule_deletion(planted, 7)  # security removes the planted key
    result = _enroll(world, material)
    assert result.key_id == ours and not result.created


def test_a_key_whose_protection_level_differs_from_the_request_never_receives_material(
    emulator, kms, tmp_path
):
    from byok_keeper.domain.errors import InputError
    from tests.functional.conftest import build_world

    world = build_world(emulator, tmp_path)
    material = generate_material("EC_P256")
    request = CreateRequest("EC_P256", "SIGN/VERIFY", "kst-local-software", protection_level="HSM")
    with pytest.raises(InputError, match="protection level SOFTWARE, requested HSM"):
        enroll(world[2], world[1], material, lease=parse_lease("30d"), create=request)
    (made,) = world[2].list_keys()
    assert not _material_went_to(emulator, made) and world[1].inventory() == []

"""A sweep that knows its cadence (issue 15): renewals that would fall between two sweeps are
done now, with the identical material, and a lease shorter than the cadence is reported."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from byok_keeper.core.sweep import sweep_keys
from byok_keeper.domain.audit import AuditLog
from byok_keeper.planning.plan import Policy
from tests.functional.conftest import build_world, enroll_key

SIX_HOURS = Policy(sweep_interval=timedelta(hours=6))


@pytest.fixture
def world(emulator, kms, tmp_path):
    return build_world(emulator, tmp_path)


def test_a_renewal_due_before_the_next_sweep_is_done_now_with_the_same_material(world):
    emulator, vault, _, sweeper = world
    key_id, material = enroll_key(world, lease="30d")
    emulator.advance_clock((30 - 7) * 86400 - 3 * 3600)  # the window opens in 3 hours
    assert [o.outcome for o in sweep_keys(sweeper, vault).outcomes] == ["ok"]
    result = sweep_keys(sweeper, vault, policy=SIX_HOURS)
    (outcome,) = result.outcomes
    assert outcome.outcome == "renewed" and "before the next sweep" in result.decisions[0].reason
    assert emulator.key_view(key_id)["material_fingerprint"] == material.fingerprint


def test_a_lease_shorter_than_the_cadence_is_renewed_and_reported(world, tmp_path):
    _emulator, vault, _, sweeper = world
    key_id, _material = enroll_key(world, lease="1h")
    audit = tmp_path / "audit.jsonl"
    result = sweep_keys(sweeper, vault, policy=SIX_HOURS, audit=AuditLog(str(audit)))
    assert [o.outcome for o in result.outcomes] == ["renewed"]
    assert "lapses between sweeps" in result.decisions[0].reason  # what `plan` shows
    lines = [json.loads(x) for x in audit.read_text().splitlines()]
    (warning,) = [x for x in lines if x["event"] == "cadence_warning"]
    assert warning["key_id"] == key_id and warning["lease"] == "1h"

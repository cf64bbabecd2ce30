"""The daemon's renewal jobs with targets (issue 16): two accounts in two regions of aliyun-local,
the second through STS AssumeRole. Each key gets its own one-shot job naming its target; with
KMS's clock moved into the renewal window, each job renews its key in its own target (seen
through that account's and region's KMS SDK), and its next moment is read against its own
target's KMS clock.

aliyun-local has one clock for every region, so the two targets' KMS clocks cannot differ on the
wire; they differ in what each gateway last saw: after the emulator's clock moves, the target a
job has just swept knows the new offset, the other target's gateway still holds the old one."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from aliyun_local.server import LocalServer
from byok_keeper.runtimes import daemon
from tests.functional.conftest import describe, make_client
from tests.functional.two_targets import (
    R1,
    R2,
    A,
    B,
    base_credentials,
    enroll_in,
    load_world,
)

DAY = 86400
IDS = "renew:hz:{hz} renew:fra:{fra} renew:fra:{fra90}"


@pytest.fixture(scope="module")
def cloud():
    with LocalServer(accounts=[A, B], regions=[R1, R2]) as server:
        yield server


@pytest.fixture
def world(cloud, tmp_path, monkeypatch):
    """Targets ``hz`` (account A in R1, long-term keys) and ``fra`` (account B in R2, its role);
    one key with a 30-day lease enrolled in each, and in ``fra`` one more with 90 days."""
    cloud.reset()
    base_credentials(monkeypatch, tmp_path)
    _path, settings, targets = load_world(cloud, tmp_path)
    keys = {}
    for target, name, lease in zip(
        (*targets, targets[1]), ("hz", "fra", "fra90"), ("30d", "30d", "90d"), strict=True
    ):
        (keys[name],) = enroll_in(settings, target, lease=lease)
    return settings, targets, keys


@pytest.fixture
def running(world, tmp_path, monkeypatch):
    """The daemon's state as ``run_daemon`` builds it, its scheduler started paused (the test
    runs each job itself, at KMS's moved time); ``(state, keys)``."""
    settings, targets, keys = world
    state = daemon._targets_state(settings, tuple(targets), tmp_path / "health.json")
    state.scheduler = BackgroundScheduler(timezone="UTC")
    state.scheduler.start(paused=True)
    monkeypatch.setattr(daemon, "_STATE", state)
    yield state, keys
    state.scheduler.shutdown(wait=False)


def _sdk_expiry(cloud: LocalServer, account: str, region: str, key_id: str) -> str:
    """The key's MaterialExpireTime through the KMS SDK of ``account`` in ``region``."""
    key_id_, secret = cloud.access_key(account)
    client = make_client(
        cloud,
        access_key_id=key_id_,
        access_key_secret=secret,
        endpoint=cloud.kms_endpoints[region],
        region_id=region,
    )
    return describe(client, key_id).material_expire_time


def _where(cloud: LocalServer) -> set[tuple[str | None, str]]:
    """(account, region) of every KMS call since the log was cleared (a call refused before its
    account is known, such as an expired session's, counts by its region alone)."""
    regions = {c["region"] for c in cloud.calls() if c["region"]}
    accounts = {c["account_id"] for c in cloud.calls() if c["region"] and c["account_id"]}
    return {(a, r) for a in accounts for r in regions}


def _jobs(state) -> dict:
    return {job.id: job for job in state.scheduler.get_jobs()}


def _when(deps, key_id: str):
    """The local moment a key's renewal job should run: its KMS expiry minus the window, read
    against ``deps``' own gateway's KMS clock."""
    expiry = deps.gateway.describe_key(key_id).material_expire_time
    return expiry - timedelta(days=7) - timedelta(seconds=deps.gateway.clock_offset or 0)


def test_each_renewal_job_renews_its_key_in_its_own_target(cloud, running, tmp_path):
    state, keys = running
    hz, fra = state.targets
    assert daemon.scheduled_sweep("test")["outcome"] == "ok"
    jobs = _jobs(state)
    # One job per key, named by its target (key ids are unique per account and region only).
    assert set(jobs) == set(IDS.format(**keys).split())
    for name in ("hz", "fra", "fra90"):
        target = name.removesuffix("90")
        job = jobs[f"renew:{target}:{keys[name]}"]
        assert job.kwargs == {"trigger": "renewal", "target": target}
        deps = state.cache.peek(hz if target == "hz" else fra)
        assert abs((job.trigger.run_date - _when(deps, keys[name])).total_seconds()) < 5
    before = {
        "hz": _sdk_expiry(cloud, A, R1, keys["hz"]),
        "fra": _sdk_expiry(cloud, B, R2, keys["fra"]),
    }

    # KMS's clock reaches fra's renewal window (and ends fra's role session): fra's job runs.
    cloud.advance_clock(24 * DAY)
    cloud.emulator.calls.clear()
    hz_at = jobs[f"renew:hz:{keys['hz']}"].trigger.run_date
    job = jobs[f"renew:fra:{keys['fra']}"]
    payload = job.func(*job.args, **job.kwargs)
    assert payload["outcome"] == "ok" and payload["swept"] == ["fra"]
    assert payload["summary"] == {"renewed": 1, "ok": 1}
    assert _where(cloud) == {(B, R2)}
    assert _sdk_expiry(cloud, B, R2, keys["fra"]) > before["fra"]  # renewed in fra
    assert _sdk_expiry(cloud, A, R1, keys["hz"]) == before["hz"]  # hz untouched
    health = json.loads((tmp_path / "health.json").read_text())
    assert [(t["target"], t["ok"]) for t in health["targets"]] == [("hz", True), ("fra", True)]

    # fra's gateway has seen KMS 24 days ahead; hz's, not called since, has not. The jobs fra's
    # sweep placed are read against fra's clock (the first target's would be 24 days late).
    hz_deps, fra_deps = state.cache.peek(hz), state.cache.peek(fra)
    assert fra_deps.gateway.clock_offset == pytest.approx(24 * DAY, abs=60)
    assert abs(hz_deps.gateway.clock_offset or 0) < 60
    jobs = _jobs(state)
    long_at = jobs[f"renew:fra:{keys['fra90']}"].trigger.run_date
    assert abs((long_at - _when(fra_deps, keys["fra90"])).total_seconds()) < 5
    assert long_at - datetime.now(timezone.utc) < timedelta(days=90 - 7 - 24 + 1)
    assert jobs[f"renew:hz:{keys['hz']}"].trigger.run_date == hz_at  # not swept: not moved

    # hz's job: its key renewed in hz (account A, R1) with hz's own Deps; fra untouched.
    fra_expiry = _sdk_expiry(cloud, B, R2, keys["fra"])
    cloud.emulator.calls.clear()
    job = jobs[f"renew:hz:{keys['hz']}"]
    payload = job.func(*job.args, **job.kwargs)
    assert payload["outcome"] == "ok" and payload["swept"] == ["hz"]
    assert payload["summary"] == {"renewed": 1}
    assert _where(cloud) == {(A, R1)}
    assert not [c for c in cloud.calls() if c["action"] == "AssumeRole"]
    assert _sdk_expiry(cloud, A, R1, keys["hz"]) > before["hz"]
    assert _sdk_expiry(cloud, B, R2, keys["fra"]) == fra_expiry
    assert set(_jobs(state)) == set(IDS.format(**keys).split())


def test_a_renewal_job_naming_an_unknown_target_sweeps_every_target(cloud, running):
    state, keys = running
    payload = daemon.scheduled_sweep("renewal", target="gone")
    assert payload["outcome"] == "ok" and "swept" not in payload
    assert [t["target"] for t in payload["targets"]] == ["hz", "fra"]
    assert set(_jobs(state)) == set(IDS.format(**keys).split())


def test_a_metrics_file_it_cannot_write_never_stops_the_daemons_renewals(running, tmp_path):
    """The long-running daemon with --metrics-file: a sweep whose file cannot be written still
    schedules every key's renewal (the failure is logged; ``--once`` would exit 1)."""
    state, keys = running
    daemon._make_metrics(state)  # as run_daemon does with --metrics-file
    state.metrics_file = tmp_path / "missing" / "byok-keeper.prom"
    assert daemon.scheduled_sweep("test")["outcome"] == "ok"
    assert set(_jobs(state)) == set(IDS.format(**keys).split())
    assert state.metrics_written is False
    state.metrics_file.parent.mkdir()
    daemon.scheduled_sweep("test")  # the directory is back: the next sweep writes the file
    assert state.metrics_written is True and state.metrics_file.read_text().startswith("# HELP")

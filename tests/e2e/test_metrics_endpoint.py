"""The daemon's Prometheus endpoint, scraped over HTTP as Prometheus would."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from byok_keeper.metrics import METRIC_NAMES
from tests.e2e.conftest import daemon_metrics, enroll_cli, run_cli

pytestmark = pytest.mark.slow


def _samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_daemon_serves_metrics_of_its_sweeps(cli_env, served, tmp_path):
    key = enroll_cli(cli_env)
    served.emulator.kms.delete_key_material(key["key_id"])
    got = _samples(daemon_metrics(cli_env, tmp_path / "state", ready="byok_keeper_keys{"))

    assert set(METRIC_NAMES) <= set(got), sorted(got)
    assert ({"decision": "REIMPORT"}, 1.0) in got["byok_keeper_keys"]
    assert got["byok_keeper_reestablish_total"] == [({"outcome": "restored"}, 1.0)]
    ((labels, when),) = got["byok_keeper_last_sweep_timestamp_seconds"]
    assert labels == {"result": "ok"} and abs(when - time.time()) < 120
    ((labels, expiry),) = got["byok_keeper_material_expiry_timestamp_seconds"]
    assert labels == {"key_id": key["key_id"], "region": "cn-hangzhou", "account_id": "",
                      "key_spec": "EC_P256"}  # fmt: skip
    assert expiry == pytest.approx(time.time() + 30 * 86400, abs=300)
    assert got["byok_keeper_seconds_until_first_lapse"] == [({}, float("inf"))]
    imports = [v for labels, v in got["byok_keeper_kms_requests_total"]
               if labels == {"action": "ImportKeyMaterial", "code": "OK"}]  # fmt: skip
    assert imports == [1.0]


def test_a_bad_metrics_address_is_a_usage_error(cli_env, tmp_path):
    out = run_cli("daemon", "--metrics-addr", "localhost", "--state-dir", str(tmp_path / "s"),
                  env=cli_env)  # fmt: skip
    assert out.returncode == 2 and "invalid --metrics-addr" in out.stderr


def test_a_stop_while_the_daemon_starts_exits_cleanly(cli_env, tmp_path):
    """SIGTERM as soon as metrics are served (the job store may still be opening, the first
    sweep not begun): the daemon stops with exit 0, never killed by the signal."""
    text = daemon_metrics(cli_env, tmp_path / "state", ready="# HELP")
    assert "# HELP byok_keeper_keys " in text

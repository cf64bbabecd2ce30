"""``--metrics-file``: the exposition byok-keeper writes itself reads back, through
prometheus-client's own text parser, as the families the daemon serves; counters start at 0."""

from __future__ import annotations

import math
import stat
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from byok_keeper import __version__
from byok_keeper.operations.metrics import METRIC_NAMES, FleetMetrics, Sample, fleet_figures
from byok_keeper.operations.metrics_file import exposition, write
from byok_keeper.planning.plan import Decision


def _parsed(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_the_exposition_parses_as_every_family_with_awkward_labels_and_infinity():
    odd = 'a"b\\c\nd'
    samples = [
        Sample("byok_keeper_keys", (("decision", odd),), 3.0),
        Sample("byok_keeper_seconds_until_first_lapse", (), math.inf),
    ]
    families = {f.name: f for f in text_string_to_metric_families(exposition(samples))}
    # Counters are named without _total by the parser; every family is there, even empty.
    assert set(families) == {n.removesuffix("_total") for n in METRIC_NAMES}
    (keys,) = families["byok_keeper_keys"].samples
    assert keys.labels == {"decision": odd} and keys.value == 3.0
    (lapse,) = families["byok_keeper_seconds_until_first_lapse"].samples
    assert lapse.value == math.inf
    assert families["byok_keeper_reestablish"].type == "counter"


def test_a_fresh_run_has_build_info_and_every_known_counter_at_zero():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)

    # What FleetMetrics reads of a gateway: its allowlist and its request counts.
    allowlist = SimpleNamespace(actions=frozenset({"DescribeKey", "ImportKeyMaterial"}))
    gateway = SimpleNamespace(allowlist=allowlist, requests={("DescribeKey", "OK"): 2})
    metrics = FleetMetrics(gateway, region="cn-hangzhou")
    decision = Decision("key-1", "OK", "fine", "Enabled", "EC_P256", None)
    metrics.observe(fleet_figures([decision], [], now=now))
    samples = _parsed(exposition(metrics.samples()))
    (info,) = samples["byok_keeper_build_info"]
    assert info.labels == {"version": __version__} and info.value == 1
    reestablish = {s.labels["outcome"]: s.value for s in samples["byok_keeper_reestablish"]}
    assert reestablish["failed"] == 0 and set(reestablish) >= {"restored", "renewed", "failed"}
    requests = {(s.labels["action"], s.labels["code"]): s.value
                for s in samples["byok_keeper_kms_requests"]}  # fmt: skip
    assert requests == {("DescribeKey", "OK"): 2, ("ImportKeyMaterial", "OK"): 0}


def test_the_file_is_replaced_whole_world_readable_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "byok-keeper.prom"
    path.write_text("old\n")
    write(path, [Sample("byok_keeper_keys", (("decision", "OK"),), 1.0)])
    assert 'byok_keeper_keys{decision="OK"} 1.0' in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["byok-keeper.prom"]


@pytest.mark.parametrize("where", ["missing/x.prom", "."])
def test_a_path_that_cannot_be_written_lets_the_run_finish_then_fails_it(tmp_path, where):
    from byok_keeper.operations.metrics_file import recording

    ran = []
    with recording(str(tmp_path / where), FleetMetrics(None, region="r")) as recorder:
        ran.append(True)  # the sweep runs: nothing is refused up front
    assert ran and recorder.written is False
    # 1 beats "a key needs a person" (4) and "pending" (3), never a usage error (2)
    assert [recorder.exit_code(c) for c in (0, 1, 3, 4, 2)] == [1, 1, 1, 1, 2]
    assert sorted(p.name for p in tmp_path.rglob("*.tmp")) == []


def test_a_run_that_stops_before_planning_still_writes_its_error(tmp_path):
    from byok_keeper.operations.metrics_file import recording

    path = tmp_path / "run.prom"
    with pytest.raises(RuntimeError), recording(str(path), FleetMetrics(None, region="r")):
        raise RuntimeError("KMS unreachable")
    (error,) = _parsed(path.read_text())["byok_keeper_last_sweep_timestamp_seconds"]
    assert error.labels == {"result": "error"} and error.value > 0

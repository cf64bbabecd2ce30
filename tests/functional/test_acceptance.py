"""The acceptance run (tests/acceptance) against aliyun-local under each profile, so that the
run an adopter points at a real account stays working: it passes, it names each answer that
differs from aliyun-local's default profile with its docs/FIDELITY.md row, and every key it
made is scheduled for deletion whatever happened. Small on purpose: one spec the software
instance takes and one it refuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alibabacloud_kms20160120 import models as km

from byok_keeper.crypto.specs import KEY_SPECS
from byok_keeper.gateway.kms import ENROLL
from tests.acceptance import probes
from tests.acceptance.probes import ACCEPTANCE_TAG
from tests.acceptance.run import Config, Refused, run_acceptance
from tests.functional.conftest import make_client, make_gateway

pytestmark = pytest.mark.every_profile
ROOT = Path(__file__).resolve().parents[2]

# What the strict profile answers differently from the default one, among the rows the run
# can observe (docs/FIDELITY.md, "Undocumented or disputed: the settings").
STRICT_DIFFERENCES = {"instance_product_version", "different_material_error", "throttling_answer"}


def _config(emulator, tmp_path, **overrides) -> Config:
    values = dict(
        region=emulator.region,
        instance_id="kst-local-software",
        endpoint=f"http://{emulator.endpoint}",
        specs=("EC_P256", "RSA_4096"),  # RSA_4096: refused by a software instance
        report=tmp_path / "acceptance-report.json",
        expiry_wait_seconds=60,
        throttle_burst=120,
    )
    values.update(overrides)
    return Config(**values)


def _run(emulator, config, wait=None):
    gateway = make_gateway(emulator, ENROLL, sleep=time.sleep)  # waits out throttling
    return run_acceptance(
        config, client=make_client(emulator), gateway=gateway, wait=wait or emulator.advance_clock
    )


def _states(emulator, report) -> set[str]:
    return {emulator.key_view(k["key_id"])["state"] for k in report.keys}


def test_the_run_passes_and_names_each_difference_with_its_fidelity_row(
    emulator, kms, kms_profile, tmp_path
):
    emulator.set_faults(quotas="documented")  # a real account's quotas: the burst meets them
    config = _config(emulator, tmp_path)
    report = _run(emulator, config)
    assert report.ok, report.lines()
    differences = {f.row for f in report.findings if f.differs}
    assert differences == (set() if kms_profile == "default" else STRICT_DIFFERENCES)
    rows = {f.row for f in report.findings}
    assert {"primary_key_version", "disabled_key_after_import", "throttling_answer"} <= rows
    assert {"Specs per protection level", "Key states and which calls each allows"} <= rows
    checks = {c["name"] for c in report.checks}
    assert {"hold wins EC_P256", "restore after expiry EC_P256", "throttling handled"} <= checks
    # One key (the spec the instance took), scheduled for deletion at the shortest window.
    assert [k["spec"] for k in report.keys] == ["EC_P256"]
    assert _states(emulator, report) == {"PendingDeletion"}
    written = json.loads(config.report.read_text())
    assert written["ok"] and {d["row"] for d in written["differences"]} == differences
    summary = report.lines()
    assert all(f"docs/FIDELITY.md {row!r}" in "\n".join(summary) for row in differences)


CRASHED = "acc-1765000000-a1b2c3"  # an earlier run's id, as run_acceptance makes them


def _tagged_key(kms, run_id=CRASHED, origin="EXTERNAL", instance="kst-local-software",
                description=None) -> str:  # fmt: skip
    spec = "EC_P256" if origin == "EXTERNAL" else "Aliyun_AES_256"
    return kms.create_key(
        km.CreateKeyRequest(
            key_spec=spec,
            key_usage="SIGN/VERIFY" if origin == "EXTERNAL" else "ENCRYPT/DECRYPT",
            origin=origin,
            dkmsinstance_id=instance,
            description=probes.description(run_id) if description is None else description,
            tags=json.dumps([{"TagKey": ACCEPTANCE_TAG, "TagValue": run_id}]),
        )
    ).body.key_metadata.key_id


def test_the_run_deletes_its_keys_whatever_happens_and_those_an_earlier_run_left(
    emulator, kms, tmp_path
):
    left = _tagged_key(kms)
    # Keys someone tagged (kms:TagResource is all it takes): each misses one proof of being an
    # acceptance run's key, and must survive the clean-up, listed in the report.
    impostors = {
        "Origin": _tagged_key(kms, origin="Aliyun_KMS", instance=""),
        "instance": _tagged_key(kms, instance="kst-local-hardware"),
        "run id": _tagged_key(kms, run_id="production", description=probes.description("x")),
        "description": _tagged_key(kms, description="payments signing key (production)"),
    }

    def interrupted(_seconds):
        raise KeyboardInterrupt  # the operator's Ctrl-C while material expires

    config = _config(emulator, tmp_path, specs=("EC_P256",), throttle_burst=0)
    with pytest.raises(KeyboardInterrupt):
        _run(emulator, config, wait=interrupted)
    written = json.loads(config.report.read_text())  # written all the same
    assert not written["ok"]
    assert written["checks"][-1]["detail"] == "interrupted (KeyboardInterrupt)"
    assert [k["spec"] for k in written["keys"] if not k["leftover"]] == ["EC_P256"]
    assert [k["key_id"] for k in written["keys"] if k["leftover"]] == [left]
    assert all(k["deletion_scheduled"] for k in written["keys"])
    assert {emulator.key_view(k["key_id"])["state"] for k in written["keys"]} == {"PendingDeletion"}
    refused = {k["key_id"]: k["not_deleted_because"] for k in written["leftover_refused"]}
    assert set(refused) == set(impostors.values())
    for proof, key_id in impostors.items():
        assert emulator.key_view(key_id)["state"] != "PendingDeletion", proof
        assert proof.split()[-1] in refused[key_id], (proof, refused[key_id])


READY = {"BYOK_ACCEPTANCE": "1", "BYOK_REGION": "cn-hangzhou", "BYOK_ACCEPTANCE_INSTANCE": "kst-1"}


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({}, "BYOK_ACCEPTANCE=1"),
        ({**READY, "BYOK_ACCEPTANCE": "yes"}, "BYOK_ACCEPTANCE=1"),
        ({**READY, "BYOK_ACCEPTANCE_INSTANCE": ""}, "BYOK_ACCEPTANCE_INSTANCE"),
        ({**READY, "BYOK_ACCEPTANCE_SPECS": "RSA_1024"}, "RSA_1024"),
        ({**READY, "BYOK_ACCEPTANCE_THROTTLE_BURST": "9999"}, "THROTTLE_BURST"),
    ],
)
def test_it_refuses_to_start_without_the_opt_in_or_what_it_needs(env, says):
    with pytest.raises(Refused, match=says):
        Config.from_env(env)
    assert Config.from_env(READY).specs == tuple(KEY_SPECS)  # every spec unless told


def test_without_the_opt_in_make_acceptance_exits_2_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BYOK_")}
    out = subprocess.run(
        [sys.executable, "-m", "tests.acceptance"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "BYOK_ACCEPTANCE=1" in out.stderr

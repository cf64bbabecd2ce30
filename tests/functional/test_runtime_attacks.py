"""Issue 25, the runtime side: what an attacker with partial access could still do through the
FC handlers, each against aliyun-local through the real SDK (docs/SECURITY.md, "Attacks from the
second adversarial review").

The handlers run in-process with a fake FC context, as in test_fc_events_handler.py; the kill
at the edge of an import runs the deployed ``functions/reimport/index.py`` in its own process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from byok_keeper import fc
from tests.functional import test_fc_events_handler as handler_tests
from tests.functional.test_fc_events_handler import audit_lines

# The events function's environment (deploy/functions.yml's settings, one enrolled key, a cold
# instance with an empty duplicate window), shared with the events handler's own tests.
deployed = handler_tests.deployed

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
LONG_CLAIM = "a-" * 32 * 1024  # 64 KiB of name characters: the old redaction's worst case
LONG_REASON = "restore after INC-1 " * 1600  # 32 KiB of prose

_INVOKE_FROM_STDIN = """
import sys, types
sys.path.insert(0, sys.argv[1])
from index import handler
context = types.SimpleNamespace(request_id="req-killed", region=sys.argv[2],
                                account_id="1234567890123456")
handler(sys.stdin.buffer.read(), context)
"""


def _role_env(emulator) -> dict[str, str]:
    role = emulator.emulator.fc_role
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")}
    env.update(
        ALIBABA_CLOUD_ACCESS_KEY_ID=role["access_key_id"],
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=role["access_key_secret"],
        ALIBABA_CLOUD_SECURITY_TOKEN=role["security_token"],
        ALIBABA_CLOUD_ECS_METADATA_DISABLED="true",
        ALIBABA_CLOUD_REGION_ID=emulator.region,
        BYOK_KMS_TIMEOUT="120",  # the kill, not the client's timeout, ends the invocation
    )
    return env


# ---- 1. claims cut short; the import's intent audited before the import -----------------------


def test_a_reimport_killed_right_after_kms_took_the_material_leaves_its_intent(deployed, emulator):
    """ImportKeyMaterial is applied, its answer held back; the function is killed there (FC's
    timeout). The audit already holds the ``importing`` line, its claims cut to 128 characters."""
    _context, key_id = deployed
    emulator.emulator.kms.delete_key_material(key_id)
    emulator.set_faults(fail_next={"ImportKeyMaterial": ["ReadTimeout"]}, hang_ms=20_000)
    event = {"key_id": key_id, "requested_by": LONG_CLAIM, "reason": LONG_REASON}
    proc = subprocess.Popen(
        [sys.executable, "-c", _INVOKE_FROM_STDIN, str(FUNCTIONS / "reimport"), emulator.region],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=_role_env(emulator),
    )  # fmt: skip
    try:
        proc.stdin.write(json.dumps(event).encode())
        proc.stdin.close()
        for _ in range(600):  # at most 60 s for KMS to take the material
            if emulator.key_view(key_id)["state"] == "Enabled" or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert emulator.key_view(key_id)["state"] == "Enabled", "the import never reached KMS"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        emulator.set_faults()
    lines = audit_lines()
    (intent,) = [x for x in lines if x["event"] == "importing"]
    assert (intent["key_id"], intent["trigger"], intent["actor"]) == (key_id, "fc-reimport", "fc")
    assert intent["claimed_by"] == LONG_CLAIM[:128]
    assert intent["requested_reason"] == LONG_REASON[:128]
    assert not [x for x in lines if x["event"] == "key"]  # killed before the outcome


def test_long_claims_are_cut_before_any_line_and_the_outcome_follows_the_intent(deployed, emulator):
    context, key_id = deployed
    emulator.emulator.kms.delete_key_material(key_id)
    event = {"key_id": key_id, "requested_by": "\n\x1b[31m" + LONG_CLAIM, "reason": LONG_REASON}
    result = fc.handle_reimport(json.dumps(event).encode(), context)
    assert result["ok"] and result["outcome"] == "restored"
    lines = [x for x in audit_lines() if x["event"] in ("importing", "key")]
    assert [x["event"] for x in lines] == ["importing", "key"]
    for line in lines:
        assert line["claimed_by"] == "[31m" + LONG_CLAIM[:122]  # one printable line
        assert line["requested_reason"] == LONG_REASON[:128]

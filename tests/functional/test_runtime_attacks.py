"""Issue 25, the runtime side: what an attacker with partial access could still do through the
FC handlers, each against aliyun-local through the real SDK (docs/SECURITY.md, "Attacks from the
second adversarial review").

The handlers run in-process with a fake FC context, as in test_fc_events_handler.py; the kill
at the edge of an import runs the deployed ``functions/reimport/index.py`` in its own process.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from alibabacloud_kms20160120 import models as km

from byok_keeper.runtimes import fc, fc_events
from tests.functional import test_fc_events_handler as handler_tests
from tests.functional.test_fc_events_handler import audit_lines, calls, event

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


# ---- 2. the duplicate window: the event id alone, and only events acted on ----------------------


def _emitted(emulator, name: str, key_id: str) -> dict:
    """The CloudEvent aliyun-local's ActionTrail emitted for that call (the genuine one)."""
    found = [e for e in emulator.events() if (e["event_name"], e["key_id"]) == (name, key_id)]
    return copy.deepcopy(found[-1]["event"])


@pytest.mark.parametrize(
    "forgery", ["ignored, the request id", "ignored, the event id", "refused, both ids"]
)
def test_a_forged_event_sent_first_cannot_make_the_genuine_deletion_a_duplicate(
    deployed, emulator, kms, forgery
):
    """Whoever deletes material learns the KMS request id from the answer and sends a forged
    event carrying it before EventBridge delivers the genuine one: the deletion is still
    restored."""
    context, key_id = deployed
    answer = kms.delete_key_material(km.DeleteKeyMaterialRequest(key_id=key_id))
    genuine = _emitted(emulator, "DeleteKeyMaterial", key_id)
    assert genuine["data"]["requestId"] == answer.body.request_id
    forged = copy.deepcopy(genuine)
    if forgery.startswith("ignored"):
        forged["data"]["eventName"] = "GetPublicKey"  # nothing to do: ignored
    if forgery == "ignored, the request id":
        forged["id"] = forged["data"]["eventId"] = "evt-forged-0001"
    if forgery.startswith("refused"):
        forged["aliyunregionid"] = forged["data"]["acsRegion"] = "cn-elsewhere"
    first = fc_events.handler(json.dumps(forged).encode(), context)["results"][0]
    assert first.get("outcome") == "ignored" or first.get("error") == "PermanentEventError"
    result = fc_events.handler(json.dumps(genuine).encode(), context)
    assert result["results"][0]["outcome"] == "restored"
    assert emulator.key_view(key_id)["state"] == "Enabled"
    again = fc_events.handler(json.dumps(genuine).encode(), context)  # a true replay
    assert again["results"][0]["outcome"] == "duplicate"


# ---- 3. ScheduleKeyDeletion/DisableKey alert only for a managed key really stopped -------------


def test_a_forged_batch_of_deletion_and_disable_events_pages_nobody(deployed, emulator):
    context, key_id = deployed
    names = ["ScheduleKeyDeletion", "DisableKey"]
    batch = [json.loads(event(emulator, names[i % 2], f"key-forged{i:04d}x")) for i in range(40)]
    batch += [json.loads(event(emulator, name, key_id)) for name in names]  # ours, healthy
    result = fc_events.handler(json.dumps(batch).encode(), context)
    assert [r["outcome"] for r in result["results"]] == ["looked"] * 42
    assert not [x for x in audit_lines() if x.get("alert")]
    assert calls(emulator, key_id) == ["DescribeKey"] * 2  # one look each, nothing else
    described = [c for c in emulator.calls() if c["action"] == "DescribeKey"]
    assert len(described) == 42 and {c["action"] for c in emulator.calls()} == {"DescribeKey"}


def test_an_operator_stopping_a_managed_key_alerts_and_an_unmanaged_one_does_not(
    deployed, emulator, kms
):
    context, key_id = deployed
    stranger = kms.create_key(km.CreateKeyRequest()).body.key_metadata.key_id  # not enrolled
    for target in (key_id, stranger):
        kms.schedule_key_deletion(
            km.ScheduleKeyDeletionRequest(key_id=target, pending_window_in_days=7)
        )
    ours = fc_events.handler(event(emulator, "ScheduleKeyDeletion", key_id), context)
    theirs = fc_events.handler(event(emulator, "ScheduleKeyDeletion", stranger), context)
    assert ours["results"][0]["outcome"] == "alert"
    assert ours["results"][0]["key_state"] == "PendingDeletion"
    assert theirs["results"][0]["outcome"] == "looked"
    (alert,) = [x for x in audit_lines() if x.get("alert")]
    assert (alert["key_id"], alert["key_state"]) == (key_id, "PendingDeletion")
    assert alert["claimed_by"]  # who did it is only claimed


# ---- 4. a held key is never unsealed ------------------------------------------------------------


@pytest.fixture
def kms_vault(deployed, emulator, kms, tmp_path, monkeypatch):
    """The deployed vault: envelopes in KMS secrets, sealed with a KMS key (deploy/functions.yml),
    so unsealing shows on the wire as Decrypt and GetSecretValue. One key enrolled in it."""
    from byok_keeper.core.enroll import CreateRequest, enroll
    from byok_keeper.crypto.material import generate_material
    from byok_keeper.domain.lease import parse_lease
    from byok_keeper.gateway.kms import ENROLL
    from byok_keeper.vault import KmsSealer, SecretsStore, Vault
    from tests.functional.conftest import make_gateway

    context, _ = deployed
    cmk = kms.create_key(km.CreateKeyRequest()).body.key_metadata.key_id
    monkeypatch.delenv("BYOK_SEAL_KEY_FILE")
    monkeypatch.setenv("BYOK_SEAL_KMS_KEY_ID", cmk)
    monkeypatch.setenv("BYOK_VAULT", "kms-secrets://byok-keeper/envelopes")
    gateway = make_gateway(emulator, ENROLL)
    vault = Vault(SecretsStore(gateway, "byok-keeper/envelopes"), KmsSealer(gateway, cmk))
    key = enroll(gateway, vault, generate_material("EC_P256"), lease=parse_lease("30d"),
                 create=CreateRequest("EC_P256", "SIGN/VERIFY", "kst-local-software"))  # fmt: skip
    fc.RUNTIME = fc.Runtime()
    return context, key.key_id


@pytest.mark.parametrize("function", ["events", "reimport"])
def test_a_held_key_whose_material_was_deleted_is_never_unsealed(kms_vault, emulator, function):
    context, key_id = kms_vault
    emulator.emulator.kms.delete_key_material(key_id)
    emulator.emulator.kms.tag_key(key_id, {"byok-keeper:hold": "INC-25 kill switch"})
    emulator.emulator.calls.clear()
    if function == "events":
        answer = fc_events.handler(event(emulator, "DeleteKeyMaterial", key_id), context)
        outcome = answer["results"][0]["outcome"]
    else:
        outcome = fc.handle_reimport(json.dumps({"key_id": key_id}).encode(), context)["outcome"]
    assert outcome == "held"
    actions = [c["action"] for c in emulator.calls()]
    assert "Decrypt" not in actions and "GetParametersForImport" not in actions
    # the events function reads the envelope's header once to plan; never again to unseal
    assert actions.count("GetSecretValue") == (1 if function == "events" else 0)
    assert emulator.key_view(key_id)["state"] == "PendingImport"


# ---- 5. the metrics endpoint cannot stop the sweeps ---------------------------------------------


def test_idle_connections_to_metrics_hold_no_threads_and_sweeps_and_scrapes_go_on(
    deployed, emulator
):
    """64 connections that never send a request: at most MAX_CONNECTIONS of them get a thread,
    the rest a clean 503; a sweep runs meanwhile; once the read timeout drops the idle ones, a
    scrape is answered."""
    from byok_keeper.core.sweep import sweep_keys
    from byok_keeper.gateway.kms import SWEEP
    from byok_keeper.operations.metrics import FleetMetrics, serve
    from byok_keeper.operations.metrics_http import MAX_CONNECTIONS
    from byok_keeper.vault import FileStore, LocalKeySealer, Vault
    from tests.functional.conftest import make_gateway

    _context, key_id = deployed
    gateway = make_gateway(emulator, SWEEP)
    vault = Vault(FileStore(os.environ["BYOK_VAULT"].removeprefix("file://")),
                  LocalKeySealer.from_file(os.environ["BYOK_SEAL_KEY_FILE"]))  # fmt: skip
    server, bound = serve(FleetMetrics(gateway, region=emulator.region, account_id=""),
                          "127.0.0.1:0", read_timeout=4.0)  # fmt: skip
    address = ("127.0.0.1", int(bound.rsplit(":", 1)[1]))
    idle: list[socket.socket] = []
    try:
        before = threading.active_count()
        idle = [socket.create_connection(address, timeout=30) for _ in range(64)]  # in ms
        for late in idle[MAX_CONNECTIONS:]:  # refused at once, cleanly
            assert late.recv(64).startswith(b"HTTP/1.1 503 Service Unavailable")
        assert threading.active_count() - before <= MAX_CONNECTIONS
        emulator.emulator.kms.delete_key_material(key_id)
        result = sweep_keys(gateway, vault)  # its pool starts threads as it always does
        assert [o.outcome for o in result.outcomes] == ["restored"]
        for held in idle[:MAX_CONNECTIONS]:  # dropped by the read timeout, unanswered
            assert held.recv(64) == b""
        with urllib.request.urlopen(f"http://{bound}/metrics", timeout=10) as answer:
            assert answer.status == 200 and b"byok_keeper_" in answer.read()
    finally:
        for conn in idle:
            conn.close()
        server.shutdown()
        server.server_close()


# ---- 9. a reimport naming a target that is not configured: refused once, audited ---------------


def test_a_reimport_event_naming_an_unknown_target_is_refused_once_and_audited(
    deployed, emulator, tmp_path, monkeypatch
):
    context, key_id = deployed
    config = tmp_path / "byok-keeper.toml"
    config.write_text(
        '[[targets]]\nname = "prod-hz"\nregion = "cn-hangzhou"\naccount_id = "1234567890123456"\n'
    )
    monkeypatch.setenv("BYOK_CONFIG", str(config))
    event = {"key_id": key_id, "target": "prod-elsewhere", "requested_by": "mallory"}
    result = fc.handle_reimport(json.dumps(event).encode(), context)  # returns: FC won't retry
    assert (result["ok"], result["error"]) == (False, "UnknownTarget")
    assert "prod-elsewhere" in result["message"]
    (line,) = [x for x in audit_lines() if x["event"] == "key"]
    assert (line["outcome"], line["alert"], line["error_code"]) == ("failed", True, "UnknownTarget")
    assert (line["key_id"], line["claimed_by"]) == (key_id, "mallory")
    assert emulator.calls() == []  # nothing asked of KMS


# ---- 10. caller text quoted by a refusal is cut before it reaches a line -----------------------

_HUGE = 120 * 1024  # just under the 128 KiB an event may hold


@pytest.mark.parametrize(
    ("handler", "doc"),
    [
        (fc.handle_reimport, {"key_id": "k" * _HUGE}),
        (fc.handle_reimport, {"key_id": "key-x", "f" * _HUGE: 1}),
        (fc.handle_reimport, {"key_id": "key-x", **{f"f{i:05}": 1 for i in range(_HUGE // 16)}}),
        (fc.handle_sweep, {"payload": {"o" * _HUGE: True}}),
        (fc.handle_sweep, {"payload": {f"o{i:05}": True for i in range(_HUGE // 16)}}),
    ],
    ids=["long-key-id", "long-field-name", "many-field-names", "long-option", "many-options"],
)
def test_a_refused_event_quoting_128_kib_of_caller_text_gives_bounded_lines(
    deployed, capsys, handler, doc
):
    """A BadEvent's message becomes the refusal line's ``reason`` (a field never cut by the
    redaction), so whatever it quotes of the caller must already be short."""
    context, _key_id = deployed
    capsys.readouterr()
    result = handler(json.dumps(doc).encode(), context)
    assert (result["ok"], result["error"]) == (False, "BadEvent")
    assert len(result["message"]) < 512
    out = capsys.readouterr()
    lines = (out.out + out.err).splitlines()
    if handler is fc.handle_reimport:  # a refused reimport is audited (an alert line)
        assert any('"error_code": "BadEvent"' in x for x in lines)
    assert all(len(x) < 2048 for x in lines)

"""The leak harness: every entrypoint at debug level, every output searched for every secret.

It runs, in one process so that nothing escapes the capture, with ``BYOK_LOG_LEVEL=DEBUG``,
``BYOK_DEBUG=1`` (tracebacks on) and the root logger at DEBUG (aliyun-local's loggers
included; the HTTP libraries stay at WARNING by design, their debug lines quote URLs),
``enroll`` of all six specs (one from an encrypted PEM), then one of two paths (parametrised):

- ``cli-and-fc``: ``plan``, ``sweep`` (with faults injected, a tampered envelope and a read
  timeout so error paths log too), ``reimport``, ``verify``, ``status``, ``hold``/``release``,
  and the reimport and sweep FC handlers;
- ``events``: the events function's handler (``byok_keeper.runtimes.fc_events``) fed the CloudEvents
  aliyun-local emitted for real KMS SDK calls (``GET /_local/events``): deletions restored (a
  batch with a replay among them), a held key left alone and restored once released, the
  ScheduleKeyDeletion and DisableKey alerts, hostile events (forged key ids, a foreign account
  and key ARN, not JSON) and a look KMS fails, whose ``RetryableFailure`` text and traceback
  are searched too.

It captures stdout and stderr at the file-descriptor level (structlog, stdlib logging and
aliyun-local's logs all land there), every stdlib log record as loggers hand it on (the FC
handlers replace the root logger's handlers, caplog's among them), what the handlers return,
the audit file, and searches them for:

- every target private key: the key file, its PKCS#8/SEC1/raw import bytes, and each private
  number (RSA d, p, q, dp, dq, qinv; the EC/SM2 scalar), plus the PEM passphrase;
- the seal key file;
- every ephemeral secret byok-keeper drew while running: ESKs, envelope data keys and canary
  messages (``os.urandom`` called from byok_keeper), SM2 ephemeral scalars
  (``secrets.randbelow``), recorded at the RNG edge;
- aliyun-local's wrapping private keys and import tokens;
- the access key secret the CLI signs with, and the function role's access key secret and
  security token that the FC context carries.

Each secret is searched in hex (both cases), Base64 and URL-safe Base64 at all three byte
alignments (which covers PEM bodies), decimal for private numbers, and raw bytes, as 32-char
(16-byte raw) windows at a stride of half a window: any leaked run of ~24 bytes or more is found.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import os
import secrets
import sys
import traceback
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import ALL_SPECS, HARDWARE_IMPORTS
from tests.e2e.conftest import enroll_args
from tests.figures import record
from tests.functional.conftest import fc_context, make_client

PASSPHRASE = b"leak-harness passphrase 7f3a9c2e"
WINDOW = 32  # encoded characters (16 raw bytes)

# RSA_4096 and EC_SM2 keys here: their hardware instance takes imported material (not the
# emulator's default answer; tests/functional/test_fidelity.py covers both).
EMULATOR_SETTINGS = HARDWARE_IMPORTS


def _windows(text: str, size: int = WINDOW) -> set[str]:
    if len(text) <= size:
        return {text} if len(text) >= size // 2 else set()
    return {text[i : i + size] for i in range(0, len(text) - size + 1, size // 2)}


def needles_for(secret: bytes) -> set[str]:
    """Every searched form of ``secret`` (text forms; raw bytes are latin-1 decoded)."""
    found: set[str] = set()
    found |= _windows(secret.hex())
    found |= _windows(secret.hex().upper())
    for shift in range(3):
        padded = b"\0" * shift + secret
        for encoded in (base64.b64encode(padded), base64.urlsafe_b64encode(padded)):
            # drop the characters that mix in the padding at either end
            found |= _windows(encoded.decode()[shift + 2 : -4])
    found |= _windows(secret.decode("latin-1"), size=16)
    if len(secret) <= 512:  # private numbers (and anything else) printed as integers
        found |= _windows(str(int.from_bytes(secret, "big")))
    return {n for n in found if len(set(n)) > 4}  # never a run like "AAAA..." or "0000..."


def _numbers(pem: bytes) -> list[bytes]:
    if not pem.startswith(b"-----"):
        return [pem]  # a raw SM2 scalar
    key = serialization.load_pem_private_key(pem, password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        ints = [n.d, n.p, n.q, n.dmp1, n.dmq1, n.iqmp]
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        ints = [key.private_numbers().private_value]
    return [i.to_bytes((i.bit_length() + 7) // 8, "big") for i in ints]


def scan(needles: set[str], streams: dict[str, str]) -> list[tuple[str, str]]:
    return [(name, n[:12] + "...") for name, text in streams.items() for n in needles if n in text]


@pytest.fixture
def recorder(mocker):
    """Record, at the RNG edge, every secret byok-keeper draws (never the SDK's nonces)."""
    drawn: list[bytes] = []
    real_urandom = os.urandom
    real_randbelow = secrets.randbelow

    def urandom(n: int) -> bytes:
        value = real_urandom(n)
        frame = sys._getframe(1)
        while frame is not None and frame.f_globals.get("__name__", "").startswith("unittest"):
            frame = frame.f_back  # step out of the mock machinery to the real caller
        caller = frame.f_globals.get("__name__", "") if frame is not None else ""
        if caller.startswith(("byok_keeper", "aliyun_local")) and n >= 16:
            drawn.append(value)
        return value

    def randbelow(n: int) -> int:
        value = real_randbelow(n)
        drawn.append(value.to_bytes(32, "big"))
        return value

    mocker.patch("os.urandom", side_effect=urandom)
    mocker.patch("secrets.randbelow", side_effect=randbelow)
    return drawn


class Harness:
    """What the leak test knows (every secret) and what it captured (every output)."""

    def __init__(self, served, capfd, monkeypatch, env: dict[str, str]) -> None:
        self.served, self.capfd, self.monkeypatch, self.env = served, capfd, monkeypatch, env
        role = served.emulator.fc_role  # the credentials FC hands the function (the context)
        self.secrets: list[bytes] = [
            PASSPHRASE,
            served.access_key_secret.encode(),
            role["access_key_secret"].encode(),
            role["security_token"].encode(),
        ]
        self.tokens: set[str] = set()
        self.outputs: list[str] = []
        self.records: list[str] = []  # every stdlib log record, whatever handlers do
        self.keys: dict[str, str] = {}

    def collect_emulator_secrets(self) -> None:
        for token in list(self.served.emulator.kms.tokens.values()):
            self.tokens.add(token.token)
            self.secrets.append(base64.b64decode(token.to_state()["wrapping_key"]))

    def take(self, *returned: str) -> None:
        """What reached the file descriptors since the last take, and what a call returned."""
        out, err = self.capfd.readouterr()
        self.outputs.extend([out, err, *returned])
        self.collect_emulator_secrets()

    def run(self, *argv: str) -> int:
        from byok_keeper.runtimes.cli import main

        code = main(list(argv))
        self.take()
        return code

    def last_stdout(self) -> str:
        return self.outputs[-2]


def _record_text(record: logging.LogRecord) -> str:
    try:
        message = record.getMessage()
    except Exception:  # a record whose args do not fit its format: search its parts instead
        message = ""
    parts = [message, repr(record.msg), repr(record.args)]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


@pytest.fixture
def harness(served, tmp_path, monkeypatch, capfd, caplog, recorder):
    """Debug everywhere: the environment, the root logger, and every log record taken."""
    from alibabacloud_credentials.utils import auth_util

    served.reset()
    env = {
        "BYOK_KMS_ENDPOINT": f"http://{served.endpoint}",
        "BYOK_VAULT": f"file://{tmp_path / 'vault'}",
        "BYOK_SEAL_KEY_FILE": str(tmp_path / "seal.key"),
        "BYOK_AUDIT_FILE": str(tmp_path / "audit.jsonl"),
        "BYOK_LOG_LEVEL": "DEBUG",
        "BYOK_DEBUG": "1",
        "BYOK_DISPATCH": "inline",
        "ALIBABA_CLOUD_REGION_ID": served.region,
        "LEAK_PASSPHRASE": PASSPHRASE.decode(),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(auth_util, "environment_access_key_id", served.access_key_id)
    monkeypatch.setattr(auth_util, "environment_access_key_secret", served.access_key_secret)
    caplog.set_level(logging.DEBUG)  # the root logger at DEBUG, aliyun-local's loggers too
    h = Harness(served, capfd, monkeypatch, env)
    # The FC handlers replace the root logger's handlers (caplog's among them): every record is
    # taken where loggers hand it to their handlers instead.
    real_handle = logging.Logger.handle

    def handle(logger: logging.Logger, record: logging.LogRecord) -> None:
        h.records.append(_record_text(record))
        real_handle(logger, record)

    monkeypatch.setattr(logging.Logger, "handle", handle)
    return h


def enroll_all(h: Harness, tmp_path: Path, target_keys: dict[str, bytes]) -> None:
    """The seal key made and all six specs enrolled through the CLI from files whose private
    keys the harness knows (EC_P256 from an encrypted PEM). In the test's call phase, not a
    fixture's: the CLI's log handler takes the stream pytest captures in that phase."""
    assert h.run("seal-key", "new", h.env["BYOK_SEAL_KEY_FILE"]) == 0
    h.secrets.append(Path(h.env["BYOK_SEAL_KEY_FILE"]).read_bytes())
    from byok_keeper.crypto.material import load_private_key

    for spec in ALL_SPECS:
        pem = target_keys[spec]
        h.secrets += [pem, *_numbers(pem), bytes(load_private_key(pem).import_bytes())]
        path = tmp_path / f"{spec}.key"
        extra: list[str] = []
        if spec == "EC_P256":  # one from an encrypted PEM, passphrase from the environment
            key = serialization.load_pem_private_key(pem, password=None)
            path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.BestAvailableEncryption(PASSPHRASE),
                )
            )
            extra = ["--passphrase-env", "LEAK_PASSPHRASE"]
        else:
            path.write_bytes(pem)
        code = h.run(*enroll_args(spec), "--material", str(path), "--lease", "14d",
                     "--output", "json", *extra)  # fmt: skip
        assert code == 0, h.outputs[-2:]
        h.keys[spec] = json.loads(h.last_stdout())["key_id"]


def drive_cli_and_fc(h: Harness, tmp_path: Path) -> None:
    """plan, sweep (faults), reimport, verify, status, hold/release, a tampered envelope with
    tracebacks on, and the reimport and sweep FC handlers."""
    from byok_keeper.runtimes import fc

    keys, run, kms = h.keys, h.run, h.served.emulator.kms
    kms.delete_key_material(keys["RSA_2048"])
    kms.delete_key_material(keys["EC_SM2"])
    h.served.advance_clock(8 * 86400)  # the rest are inside their renewal window
    run("plan")
    run("plan", "--output", "json")
    faults = {"ImportKeyMaterial": ["ReadTimeout", "InternalFailure"],
              "GetParametersForImport": ["DropConnection"]}  # fmt: skip
    h.served.set_faults(fail_next=faults, hang_ms=100)
    assert run("sweep") == 0, h.outputs[-2:]
    h.served.set_faults()
    kms.delete_key_material(keys["RSA_3072"])
    assert run("reimport", keys["RSA_3072"], "--reason", "INC-leak") == 0
    assert run("verify") == 0
    run("status", keys["EC_P256K"])
    assert run("hold", keys["RSA_4096"], "--reason", "INC-leak hold") == 0
    assert run("release", keys["RSA_4096"]) == 0  # (it was given --reason, refused unseen)
    # error paths print tracebacks under BYOK_DEBUG: a tampered envelope, a mismatch
    envelope = tmp_path / "vault" / f"{keys['EC_P256']}.json"
    original = envelope.read_bytes()
    envelope.write_bytes(original[:200] + bytes([original[200] ^ 1]) + original[201:])
    kms.delete_key_material(keys["EC_P256"])
    assert run("reimport", keys["EC_P256"], "--reason", "INC-leak tamper") == 2
    assert run("sweep", "--output", "json") == 1
    envelope.write_bytes(original)

    # -- the FC handlers, in-process, with the function role's credentials
    context = fc_context(h.served, "req-leak")
    fc.RUNTIME = fc.Runtime()
    kms.delete_key_material(keys["EC_P256"])
    event = json.dumps({"key_id": keys["EC_P256"], "reason": "leak", "requested_by": "t"})
    result = fc.handle_reimport(event.encode(), context)
    assert result["ok"], result
    timer = json.dumps({"triggerTime": "2026-11-28T06:45:00Z", "triggerName": "schedule",
                        "payload": ""})  # fmt: skip
    fc.handle_sweep(timer.encode(), context)
    h.take(json.dumps(result))


def drive_events(h: Harness, tmp_path: Path) -> None:
    """The events function (functions/events/index.py over ``fc_events.handler``) fed the
    CloudEvents aliyun-local emitted (``GET /_local/events``) for real KMS SDK calls: deletions
    restored (one alone, two in a batch with a replay), a held key left alone and
    restored once released, ScheduleKeyDeletion and DisableKey alerts, hostile events (forged
    key ids, a foreign account, a foreign key ARN, not JSON), and a look that KMS fails
    retryably (the exception and its traceback searched too)."""
    from alibabacloud_kms20160120 import models as km

    from byok_keeper.planning.events import DuplicateFilter
    from byok_keeper.runtimes import fc, fc_events

    keys, served = h.keys, h.served
    h.take()
    start = len(h.outputs)
    context = fc_context(served, "req-leak-events")
    h.monkeypatch.setenv("BYOK_ACCOUNT_ID", context.account_id)
    h.monkeypatch.setattr(fc_events, "DUPLICATES", DuplicateFilter())
    fc.RUNTIME = fc.Runtime()
    sdk = make_client(served)
    serial = iter(range(1, 100))

    def emitted(name: str, key_id: str) -> dict:
        with urllib.request.urlopen(f"{served.url}/_local/events", timeout=10) as answer:
            entries = json.load(answer)
        return [e for e in entries if (e["event_name"], e["key_id"]) == (name, key_id)][-1]["event"]

    def forged(base: dict, **changes) -> dict:
        doc = copy.deepcopy(base)
        n = next(serial)
        doc["id"] = doc["data"]["eventId"] = f"forged-{n}"
        doc["data"]["requestId"] = f"FORGED-{n}"
        for path, value in changes.items():
            *parents, leaf = path.split("__")
            node = doc
            for name in parents:
                node = node[name]
            node[leaf] = value
        return doc

    index = _events_entrypoint()

    def handle(payload) -> list[str]:
        """The outcomes, or ["retry"] when the handler raised for FC to retry."""
        if not isinstance(payload, bytes):
            payload = json.dumps(payload).encode()  # as FC passes it
        try:
            answer = index.handler(payload, context)  # the text FC returns
        except fc.RetryableFailure as exc:
            h.take(str(exc), repr(exc), traceback.format_exc())
            return ["retry"]
        h.take(answer)
        return [r.get("outcome", r.get("error", "")) for r in json.loads(answer)["results"]]

    rsa = keys["RSA_2048"]
    sdk.delete_key_material(km.DeleteKeyMaterialRequest(key_id=rsa))
    deleted = emitted("DeleteKeyMaterial", rsa)
    assert handle(deleted) == ["restored"]
    for spec in ("EC_SM2", "RSA_3072"):
        sdk.delete_key_material(km.DeleteKeyMaterialRequest(key_id=keys[spec]))
    batch = [emitted("DeleteKeyMaterial", keys[s]) for s in ("EC_SM2", "RSA_3072")]
    assert handle([*batch, deleted]) == ["restored", "restored", "duplicate"]

    held = keys["RSA_4096"]
    assert h.run("hold", held, "--reason", "INC-leak hold") == 0
    assert handle(emitted("TagResource", held)) == ["looked"]
    sdk.delete_key_material(km.DeleteKeyMaterialRequest(key_id=held))
    assert handle(emitted("DeleteKeyMaterial", held)) == ["held"]
    assert h.run("release", held) == 0, h.outputs[-2:]
    assert handle(emitted("UntagResource", held)) == ["restored"]

    # hostile: a key id KMS does not know, one no key id can be, another account, its key ARN
    healthy = keys["EC_P256"]
    assert handle(forged(deleted, data__requestParameters={"KeyId": healthy})) == ["looked"]
    unknown = {"KeyId": "key-hzz6f0rged0000000000000"}
    assert handle(forged(deleted, data__requestParameters=unknown)) == ["looked"]  # not found
    foreign_arn = {"KeyId": f"acs:kms:{served.region}:9999999999999999:key/{rsa}"}
    hostile = [
        forged(deleted, data__requestParameters={"KeyId": "../" + rsa}),
        forged(deleted, aliyunaccountid="9999999999999999"),
        forged(deleted, data__recipientAccountId="9999999999999999"),
        forged(deleted, data__requestParameters=foreign_arn),
    ]
    refused = "PermanentEventError"
    assert handle(hostile) == [refused] * 4
    assert handle(b"{not json") == [refused]
    # KMS fails the look: the handler raises so that FC retries
    served.set_faults(fail_next={"DescribeKey": ["InternalFailure"] * 12})
    assert handle(forged(deleted, data__requestParameters={"KeyId": healthy})) == ["retry"]
    served.set_faults()

    # an operator destroys or disables a managed key: one look each, an alert line, no write
    sdk.disable_key(km.DisableKeyRequest(key_id=keys["EC_P256K"]))
    doomed = km.ScheduleKeyDeletionRequest(key_id=keys["EC_P256"], pending_window_in_days=7)
    sdk.schedule_key_deletion(doomed)
    before = len(served.calls())
    alerts = [emitted("DisableKey", keys["EC_P256K"]), emitted("ScheduleKeyDeletion", healthy)]
    assert handle(alerts) == ["alert", "alert"]
    looks = [c["action"] for c in served.calls()[before:]]
    assert looks.count("DescribeKey") == 2 and set(looks) <= {"DescribeKey", "GetSecretValue"}
    # what the handler wrote is really there to search: debug lines, refusals, a traceback
    written = "".join(h.outputs[start:])
    assert len(written) > 25_000 and written.count('"trigger": "fc-events"') >= 15
    for seen in ('"outcome": "alert"', '"outcome": "restored"', refused, "Traceback"):
        assert seen in written, seen


def _events_entrypoint():
    """functions/events/index.py, the events function's FC entry point."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "functions" / "events" / "index.py"
    spec = importlib.util.spec_from_file_location("byok_events_index", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DRIVERS = {
    # driver, at least this many bytes captured, at least this many ephemeral secrets drawn
    "cli-and-fc": (drive_cli_and_fc, 50_000, 12),
    "events": (drive_events, 30_000, 12),
}


@pytest.mark.parametrize("path", list(DRIVERS))
def test_no_secret_reaches_any_output_at_debug_level(
    path, harness, tmp_path, caplog, recorder, target_keys
):
    drive, min_bytes, min_ephemeral = DRIVERS[path]
    h = harness
    enroll_all(h, tmp_path, target_keys)
    drive(h, tmp_path)
    h.take()
    assert "Logging error" not in "".join(h.outputs)  # every record reached its stream

    streams = {f"output-{i}": text for i, text in enumerate(h.outputs) if text}
    streams["audit"] = Path(h.env["BYOK_AUDIT_FILE"]).read_text()
    streams["stdlib-logging"] = caplog.text
    streams["log-records"] = "\n".join(h.records)
    total = sum(len(t) for t in streams.values())
    assert total > min_bytes, "the harness captured too little to mean anything"
    assert '"level": "debug"' in "".join(h.outputs)  # debug logging really was on
    needles: set[str] = set()
    for secret in [*h.secrets, *recorder]:
        needles |= needles_for(bytes(secret))
    for token in h.tokens:
        needles |= _windows(token)
    # The harness can see: one window of a private key planted in a line is caught.
    largest = bytes(max(h.secrets, key=len))
    planted = {"hex": "x " + largest.hex()[101:181] + " y",
               "b64": "x " + base64.b64encode(largest[7:67]).decode() + " y"}  # fmt: skip
    assert len(scan(needles, planted)) >= 2
    token = h.served.emulator.fc_role["security_token"]
    assert scan(needles, {"token": f"x {token[5:40]} y", "secret": h.served.access_key_secret})

    hits = scan(needles, streams)
    record("leak_scan", path=path, streams=len(streams), bytes=total, needles=len(needles),
           secrets=len(h.secrets) + len(recorder) + len(h.tokens), ephemeral=len(recorder),
           hits=len(hits))  # fmt: skip
    assert not hits, hits[:10]
    assert len(recorder) >= min_ephemeral, "the RNG recorder saw too few ephemeral secrets"

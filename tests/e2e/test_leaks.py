"""The leak harness: every entrypoint at debug level, every output searched for every secret.

It runs, in one process so that nothing escapes the capture, with ``BYOK_LOG_LEVEL=DEBUG``,
``BYOK_DEBUG=1`` (tracebacks on) and the root logger at DEBUG (aliyun-local's loggers
included; the HTTP libraries stay at WARNING by design, their debug lines quote URLs):
``enroll`` of all six specs (one from an encrypted PEM), ``plan``, ``sweep`` (with faults
injected, a tampered envelope and a read timeout so error paths log too), ``reimport``,
``verify``, ``status``, ``hold``/``release``, and both FC handlers.

It captures stdout and stderr at the file-descriptor level (structlog, stdlib logging and
aliyun-local's logs all land there), the audit file, and searches them for:

- every target private key: the key file, its PKCS#8/SEC1/raw import bytes, and each private
  number (RSA d, p, q, dp, dq, qinv; the EC/SM2 scalar), plus the PEM passphrase;
- the seal key file;
- every ephemeral secret byok-keeper drew while running: ESKs, envelope data keys and canary
  messages (``os.urandom`` called from byok_keeper), SM2 ephemeral scalars
  (``secrets.randbelow``), recorded at the RNG edge;
- aliyun-local's wrapping private keys and import tokens.

Each secret is searched in hex (both cases), Base64 and URL-safe Base64 at all three byte
alignments (which covers PEM bodies), decimal for private numbers, and raw bytes, as 32-char
(16-byte raw) windows at a stride of half a window: any leaked run of ~24 bytes or more is found.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import ALL_SPECS
from tests.e2e.conftest import enroll_args
from tests.figures import record
from tests.functional.conftest import fc_context

PASSPHRASE = b"leak-harness passphrase 7f3a9c2e"
WINDOW = 32  # encoded characters (16 raw bytes)


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


def test_no_secret_reaches_any_output_at_debug_level(
    served, tmp_path, monkeypatch, capfd, caplog, recorder, target_keys
):
    import logging

    from alibabacloud_credentials.utils import auth_util

    from byok_keeper import fc
    from byok_keeper.cli import main

    served.reset()
    audit = tmp_path / "audit.jsonl"
    env = {
        "BYOK_KMS_ENDPOINT": f"http://{served.endpoint}",
        "BYOK_VAULT": f"file://{tmp_path / 'vault'}",
        "BYOK_SEAL_KEY_FILE": str(tmp_path / "seal.key"),
        "BYOK_AUDIT_FILE": str(audit),
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
    caplog.set_level(logging.DEBUG)  # every stdlib record too, whatever handlers do

    secrets_found: list[bytes] = [PASSPHRASE]
    tokens: set[str] = set()
    outputs: list[str] = []
    codes: list[tuple[str, int]] = []

    def collect_emulator_secrets() -> None:
        for token in list(served.emulator.kms.tokens.values()):
            tokens.add(token.token)
            secrets_found.append(base64.b64decode(token.to_state()["wrapping_key"]))

    def run(*argv: str) -> int:
        code = main(list(argv))
        out, err = capfd.readouterr()
        outputs.extend([out, err])
        codes.append((" ".join(argv[:2]), code))
        collect_emulator_secrets()
        return code

    # -- enroll every spec from files whose private keys the harness knows
    assert run("seal-key", "new", env["BYOK_SEAL_KEY_FILE"]) == 0
    secrets_found.append(Path(env["BYOK_SEAL_KEY_FILE"]).read_bytes())
    keys: dict[str, str] = {}
    for spec in ALL_SPECS:
        pem = target_keys[spec]
        secrets_found += [pem, *_numbers(pem)]
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
        from byok_keeper.material import load_private_key

        secrets_found.append(bytes(load_private_key(pem).import_bytes()))
        code = run(*enroll_args(spec), "--material", str(path), "--lease", "14d",
                   "--output", "json", *extra)  # fmt: skip
        assert code == 0, outputs[-2:]
        keys[spec] = json.loads(outputs[-2])["key_id"]

    # -- break some keys, plan, sweep (with faults), reimport, verify, status, hold
    kms = served.emulator.kms
    kms.delete_key_material(keys["RSA_2048"])
    kms.delete_key_material(keys["EC_SM2"])
    served.advance_clock(8 * 86400)  # the rest are inside their renewal window
    run("plan")
    run("plan", "--output", "json")
    faults = {"ImportKeyMaterial": ["ReadTimeout", "InternalFailure"],
              "GetParametersForImport": ["DropConnection"]}  # fmt: skip
    served.set_faults(fail_next=faults, hang_ms=100)
    assert run("sweep") == 0, outputs[-2:]
    served.set_faults()
    kms.delete_key_material(keys["RSA_3072"])
    assert run("reimport", keys["RSA_3072"], "--reason", "INC-leak") == 0
    assert run("verify") == 0
    run("status", keys["EC_P256K"])
    run("hold", keys["RSA_4096"], "--reason", "INC-leak hold")
    run("release", keys["RSA_4096"], "--reason", "INC-leak done")
    # error paths print tracebacks under BYOK_DEBUG: a tampered envelope, a mismatch
    envelope = tmp_path / "vault" / f"{keys['EC_P256']}.json"
    original = envelope.read_bytes()
    envelope.write_bytes(original[:200] + bytes([original[200] ^ 1]) + original[201:])
    kms.delete_key_material(keys["EC_P256"])
    assert run("reimport", keys["EC_P256"], "--reason", "INC-leak tamper") == 2
    assert run("sweep", "--output", "json") == 1
    envelope.write_bytes(original)

    # -- the FC handlers, in-process, with the function role's credentials
    context = fc_context(served, "req-leak")
    fc.RUNTIME = fc.Runtime()
    kms.delete_key_material(keys["EC_P256"])
    event = json.dumps({"key_id": keys["EC_P256"], "reason": "leak", "requested_by": "t"})
    result = fc.handle_reimport(event.encode(), context)
    assert result["ok"], result
    timer = json.dumps({"triggerTime": "2026-11-28T06:45:00Z", "triggerName": "schedule",
                        "payload": ""})  # fmt: skip
    fc.handle_sweep(timer.encode(), context)
    out, err = capfd.readouterr()
    outputs.extend([out, err, json.dumps(result)])
    collect_emulator_secrets()

    streams = {f"output-{i}": text for i, text in enumerate(outputs) if text}
    streams["audit"] = audit.read_text()
    streams["stdlib-logging"] = caplog.text
    total = sum(len(t) for t in streams.values())
    assert total > 50_000, "the harness captured too little to mean anything"
    assert '"level": "debug"' in "".join(outputs)  # debug logging really was on
    needles: set[str] = set()
    for secret in [*secrets_found, *recorder]:
        needles |= needles_for(bytes(secret))
    for token in tokens:
        needles |= _windows(token)
    # The harness can see: one window of a private key planted in a line is caught.
    largest = bytes(max(secrets_found, key=len))
    planted = {"hex": "x " + largest.hex()[101:181] + " y",
               "b64": "x " + base64.b64encode(largest[7:67]).decode() + " y"}  # fmt: skip
    assert len(scan(needles, planted)) >= 2

    hits = scan(needles, streams)
    record("leak_scan", streams=len(streams), bytes=total, needles=len(needles),
           secrets=len(secrets_found) + len(recorder) + len(tokens), ephemeral=len(recorder),
           hits=len(hits))  # fmt: skip
    assert not hits, hits[:10]
    assert len(recorder) >= 12, "the RNG recorder saw too few ephemeral secrets"

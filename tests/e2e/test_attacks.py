"""Issue 13 through the console script, as an operator (or an attacker with a say in the
environment) runs it: each attack is refused with one line and exit 2 (docs/SECURITY.md)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import run_cli

# ---- 4. plain HTTP ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env_changes"),
    [
        (("--kms-endpoint", "http://kms.cn-hangzhou.aliyuncs.com", "plan"), {}),
        (("plan",), {"BYOK_KMS_ENDPOINT": "http://127.0.0.1.evil.example:8080"}),
        (("plan",), {"BYOK_KMS_ENDPOINT": "http://127.0.0.1@evil.example"}),
        (("plan",), {"BYOK_KMS_ENDPOINT": "http://10.0.0.5"}),
        (("invoke", "sweep"), {"BYOK_FC_ENDPOINT": "http://1234.cn-hangzhou.fc.aliyuncs.com"}),
        (("plan",), {"ALIBABA_CLOUD_CREDENTIALS_URI": "http://169.254.1.1/credentials"}),
    ],
    ids=["kms-flag", "kms-lookalike", "kms-userinfo", "kms-private-ip", "fc", "credentials-uri"],
)
def test_plain_http_to_anything_but_loopback_is_refused_before_any_request(
    served, cli_env, args, env_changes
):
    served.emulator.calls.clear()
    out = run_cli(*args, env={**cli_env, **env_changes})
    assert out.returncode == 2, out.stderr
    assert "plain http" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not out.stdout
    assert not served.calls()


def test_plain_http_to_localhost_is_allowed(served, cli_env):
    endpoint = f"http://localhost:{served.endpoint.rsplit(':', 1)[1]}"
    out = run_cli("plan", env={**cli_env, "BYOK_KMS_ENDPOINT": endpoint})
    assert out.returncode == 0, out.stderr


# ---- 5. tampered envelope on re-enroll --------------------------------------------------------


def _pem_file(path) -> str:
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8,
                                       ser.NoEncryption()))  # fmt: skip
    path.chmod(0o600)
    return str(path)


def _tamper(envelope, how: str) -> None:
    import base64
    import json

    doc = json.loads(envelope.read_text())
    if how == "header":
        doc["header"]["lease"] = "never"
    else:
        blob = bytearray(base64.b64decode(doc["material"]["ciphertext"]))
        blob[5] ^= 1
        doc["material"]["ciphertext"] = base64.b64encode(bytes(blob)).decode()
    envelope.write_text(json.dumps(doc))


@pytest.mark.parametrize("how", ["header", "ciphertext"])
def test_re_enroll_over_an_envelope_that_does_not_open_is_refused(served, cli_env, tmp_path, how):
    import json

    from tests.conftest import snapshot
    from tests.e2e.conftest import enroll_args

    material = _pem_file(tmp_path / "k.pem")
    first = run_cli(*enroll_args("EC_P256"), "--material", material, "--output", "json",
                    env=cli_env)  # fmt: skip
    assert first.returncode == 0, first.stderr
    key_id = json.loads(first.stdout)["key_id"]
    _tamper(tmp_path / "vault" / f"{key_id}.json", how)
    before = snapshot(tmp_path / "vault")
    served.emulator.calls.clear()
    out = run_cli("enroll", "--key-id", key_id, "--material", material, env=cli_env)
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if not line.startswith("[enroll]")]
    assert len(errors) == 1 and "Traceback" not in out.stderr
    assert key_id in errors[0] and "does not open" in errors[0]
    assert snapshot(tmp_path / "vault") == before
    touched = {c["action"] for c in served.calls()}
    assert not touched & {"GetParametersForImport", "ImportKeyMaterial", "TagResource"}, touched


# ---- 2. enrollment adopts a planted key -------------------------------------------------------


def test_enroll_create_reports_a_planted_key_as_an_alert_in_one_line(served, cli_env, tmp_path):
    from byok_keeper.core.enroll import FINGERPRINT_TAG
    from byok_keeper.crypto.material import load_private_key
    from byok_keeper.gateway.kms import ENROLL
    from tests.e2e.conftest import enroll_args
    from tests.functional.conftest import make_gateway

    material = _pem_file(tmp_path / "k.pem")
    fingerprint = load_private_key(bytearray((tmp_path / "k.pem").read_bytes())).fingerprint
    planted = make_gateway(served, ENROLL).create_key(
        key_spec="EC_P256", key_usage="SIGN/VERIFY", instance_id="kst-local-software",
        description="", tags={FINGERPRINT_TAG: fingerprint},
    ).key_id  # fmt: skip
    out = run_cli(*enroll_args("EC_P256"), "--material", material, env=cli_env)
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if not line.startswith("[enroll]")]
    assert len(errors) == 1 and f"ALERT: {planted}" in errors[0], out.stderr
    assert served.key_view(planted)["material_fingerprint"] is None


# ---- 7. unbounded reads -----------------------------------------------------------------------


def _run_limited(*args: str, env: dict[str, str], timeout: int = 60):
    """The CLI with its address space capped at 2 GiB: without the read cap, an unbounded read
    dies of MemoryError inside the cap instead of exhausting the shared machine."""
    import resource
    import subprocess

    from tests.e2e.conftest import BIN

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run([str(BIN / "byok-keeper"), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, preexec_fn=cap)  # fmt: skip


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "sparse-8GiB"])
def test_reimport_refuses_an_envelope_that_is_not_a_small_regular_file(
    served, cli_env, tmp_path, kind
):
    import os

    from tests.e2e.conftest import enroll_cli

    key_id = enroll_cli(cli_env)["key_id"]
    envelope = tmp_path / "vault" / f"{key_id}.json"
    envelope.unlink()
    if kind == "dev-zero":
        envelope.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(envelope)
    else:
        with open(envelope, "wb") as fh:
            fh.truncate(8 << 30)
    out = _run_limited("reimport", key_id, "--reason", "attack", env=cli_env)
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("byok-keeper: error")]
    assert len(errors) == 1 and "Traceback" not in out.stderr and "MemoryError" not in out.stderr
    assert ("larger than" if kind.startswith("sparse") else "not a regular file") in errors[0]


def test_the_seal_key_file_must_be_a_small_regular_file_owned_by_the_user(tmp_path):
    import os

    from byok_keeper.domain.errors import ConfigError
    from byok_keeper.vault import LocalKeySealer
    from byok_keeper.vault.sealers import new_seal_key_file

    good = tmp_path / "seal.key"
    ref = new_seal_key_file(good)
    link = tmp_path / "mounted.key"  # Kubernetes secret mounts are symlinks: allowed
    link.symlink_to(good)
    assert LocalKeySealer.from_file(link).key_ref == ref
    good.chmod(0o400)
    assert LocalKeySealer.from_file(good).key_ref == ref
    good.chmod(0o600)
    zero = tmp_path / "zero.key"
    zero.symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match="not a regular file"):
        LocalKeySealer.from_file(zero)
    for mode, message in ((0o640, "group or others"), (0o700, "executable")):
        good.chmod(mode)
        with pytest.raises(ConfigError, match=message):
            LocalKeySealer.from_file(good)
    good.chmod(0o600)
    if os.geteuid() != 0:
        pytest.skip("making a file owned by someone else needs root")
    os.chown(good, 65534, 65534)
    with pytest.raises(ConfigError, match="owned by uid 65534"):
        LocalKeySealer.from_file(link)


# ---- 6. debug switches leak tokens ------------------------------------------------------------


def test_the_sdk_debug_switch_prints_no_request_lines(served, cli_env):
    from tests.e2e.conftest import enroll_cli

    key_id = enroll_cli(cli_env)["key_id"]
    served.emulator.kms.delete_key_material(key_id)
    env = {**cli_env, "DEBUG": "sdk", "BYOK_LOG_LEVEL": "DEBUG"}
    out = run_cli("reimport", key_id, "--reason", "debug", env=env)
    assert out.returncode == 0, out.stderr
    tokens = [t.token for t in served.emulator.kms.tokens.values()]
    assert tokens, "the import spent a token"
    for leaked in ("EncryptedKeyMaterial", "ImportToken=", "x-acs-signature", *tokens):
        assert leaked not in out.stderr and leaked not in out.stdout, leaked


def test_the_redaction_processor_url_decodes_before_scrubbing():
    import base64
    import os
    from urllib.parse import quote

    from byok_keeper.domain.logs import redact

    wrapped = base64.b64encode(os.urandom(300)).decode()
    line = (f"POST /?Action=ImportKeyMaterial&EncryptedKeyMaterial={quote(wrapped, safe='')}"
            "&ImportToken=tok-3f9a1c&KeyId=key-1")  # fmt: skip
    pem = quote("-----BEGIN PRIVATE KEY-----\nMIGH...\n-----END PRIVATE KEY-----", safe="")
    event = redact(None, "debug", {"event": "request", "line": line, "url": f"body={pem}"})
    text = repr(event)
    for piece in (wrapped[:40], quote(wrapped, safe="")[:40], "tok-3f9a1c", "MIGH"):
        assert piece not in text, piece
    assert "KeyId=key-1" in event["line"]


def test_sdk_loggers_have_no_handlers_of_their_own_after_configure():
    import logging

    from byok_keeper.domain.logs import SDK_LOGGERS, configure

    configure(json=True, level="DEBUG")
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        assert not logger.handlers and logger.level >= logging.WARNING, name
        assert not logger.filter(logging.LogRecord(name, logging.DEBUG, "", 0, "x", (), None))


# ---- 9. core dumps ----------------------------------------------------------------------------

_PROBE = """
import ctypes, importlib.util, json, os, resource, sys
def fc(name):  # the FC function's own entry module, as FC loads it: functions/<name>/index.py
    spec = importlib.util.spec_from_file_location("index", f"functions/{{name}}/index.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler
{call}
print(json.dumps({{"core": resource.getrlimit(resource.RLIMIT_CORE),
                  "dumpable": ctypes.CDLL(None).prctl(3, 0, 0, 0, 0),
                  "sdk_debug": os.environ.get("DEBUG")}}))
"""
# Every entrypoint that holds material, entered as it is in production, each with an input it
# refuses at once (so no hardening can come from anything it goes on to do). The daemon is
# entered through ``run_daemon`` itself, not the CLI (which hardens on its own): its schedule
# is refused, after the hardening and before anything is built.
_ENTRYPOINTS = {
    "cli": "from byok_keeper.runtimes.cli import main; main(['vault', 'list'])",
    "fc-sweep": "fc('sweep')(b'not json', None)",
    "fc-reimport": "fc('reimport')(b'[]', None)",
    "fc-events": "fc('events')(b'not json', None)",
    "daemon": (
        "from pathlib import Path\n"
        "from byok_keeper.runtimes.daemon import run_daemon\n"
        "from byok_keeper.domain.errors import ByokError\n"
        "from byok_keeper.core.settings import load_settings\n"
        "try:\n"
        "    run_daemon(load_settings(), schedule='not a schedule', state_dir=Path('unused'),\n"
        "               once=True, health_file=None)\n"
        "except ByokError:\n"
        "    pass"
    ),
    "cli-daemon": "from byok_keeper.runtimes.cli import main; "
    "main(['daemon', '--once', '--state-dir', '{state}'])",
}


@pytest.mark.parametrize("entrypoint", sorted(_ENTRYPOINTS))
def test_every_entrypoint_hardens_the_process_as_it_starts(cli_env, tmp_path, entrypoint):
    """No core dumps, not dumpable, and the SDK's debug switch (``DEBUG=sdk``, which prints
    request lines carrying import tokens and wrapped material) gone from the environment:
    the same three in every entrypoint, checked in the process after it ran."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    code = _PROBE.format(call=_ENTRYPOINTS[entrypoint].format(state=tmp_path / "state"))
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                         env={**cli_env, "DEBUG": "sdk"}, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert state == {"core": [0, 0], "dumpable": 0, "sdk_debug": None}


# ---- 10. pickled job store --------------------------------------------------------------------


@pytest.mark.parametrize("attack", ["dir-0777", "dir-other-owner", "store-0666"])
def test_the_daemon_refuses_a_state_dir_others_can_write(cli_env, tmp_path, attack):
    import os

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    if attack == "dir-0777":
        state.chmod(0o777)
    elif attack == "dir-other-owner":
        if os.geteuid() != 0:
            pytest.skip("making a directory owned by someone else needs root")
        os.chown(state, 65534, 65534)
    else:
        (state / "jobs.sqlite").write_bytes(b"")
        (state / "jobs.sqlite").chmod(0o666)
    before = sorted(p.name for p in state.iterdir())
    out = run_cli("daemon", "--state-dir", str(state), env=cli_env, timeout=60)
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("byok-keeper: error")]
    assert len(errors) == 1 and "--state-dir" in errors[0] and "Traceback" not in out.stderr
    assert sorted(p.name for p in state.iterdir()) == before

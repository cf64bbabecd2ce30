"""The hostile-input corpus: one table, every entry refused as the user would meet it.

Each case runs the ``byok-keeper`` console script (or an FC handler) against aliyun-local and
expects: exit code 2 (for handlers, ``{"ok": false, ...}``), exactly one human line naming the
problem (structured JSON log/audit lines on stderr are for machines and are allowed), no
traceback, nothing written -- the case's files byte-for-byte as they were, no new files, and
no KMS call that changes anything.

Groups: ``args`` (CLI arguments, options, settings, URIs, regions, key ids), ``material``
(key files: unsupported sizes and curves, wrong spec, truncated, hostile), ``envelope``
(the vault file of an enrolled key truncated, oversized, non-UTF-8, nested, byte-flipped,
swapped, emptied), ``fc-event`` (malformed events to both handlers). Every single-byte flip of
an envelope is tried separately in tests/functional/test_vault.py; here a spread of flips goes
through the on-call ``reimport`` path.
"""

from __future__ import annotations

import json
import shutil
import types
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.conftest import snapshot
from tests.e2e.conftest import cli_env_for, enroll_args, enroll_cli, run_cli
from tests.figures import record

MUTATING = {
    "CreateKey",
    "GetParametersForImport",
    "ImportKeyMaterial",
    "TagResource",
    "UntagResource",
    "CreateSecret",
    "PutSecretValue",
    "EnableKey",
    "DisableKey",
}


def _pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _key_files() -> dict[str, bytes]:
    p256 = ec.generate_private_key(ec.SECP256R1())
    rsa2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    good = _pem(p256)
    body = good.splitlines()
    return {
        "rsa1024.pem": _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),  # noqa: S505 - refused on purpose
        "rsa2560.pem": _pem(rsa.generate_private_key(public_exponent=65537, key_size=2560)),
        "p384.pem": _pem(ec.generate_private_key(ec.SECP384R1())),
        "p521.pem": _pem(ec.generate_private_key(ec.SECP521R1())),
        "p224.pem": _pem(ec.generate_private_key(ec.SECP224R1())),
        "ed25519.pem": _pem(ed25519.Ed25519PrivateKey.generate()),
        "p256.pem": good,
        "rsa2048.pem": _pem(rsa2048),
        "truncated.pem": b"\n".join(body[: len(body) // 2]) + b"\n",
        "no-footer.pem": b"\n".join(body[:-1]) + b"\n",
        "public.pem": p256.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "encrypted.pem": p256.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"correct horse"),
        ),
        "empty.pem": b"",
        "garbage.bin": bytes(range(256)) * 4,
        "non-utf8.pem": b"-----BEGIN PRIVATE KEY-----\n\xff\xfe\x80\n-----END PRIVATE KEY-----\n",
        "huge.pem": b"A" * (2 * 1024 * 1024),
        "two-keys.pem": good + _pem(rsa2048),
    }


@dataclass(frozen=True)
class Case:
    id: str
    group: str
    argv: tuple[str, ...]
    expect: str  # a fragment of the one line
    env: dict[str, str] = field(default_factory=dict)
    tamper: Callable[[bytes, dict[str, bytes]], bytes] | None = None  # envelope of key A
    chmod: tuple[str, int] | None = None  # (file, mode) in the case directory


def _enroll_args(spec: str, material: str, *extra: str) -> tuple[str, ...]:
    return (*enroll_args(spec), "--material", f"{{dir}}/{material}", *extra)


GEN = (*enroll_args("EC_P256"), "--generate")


def _flip(position: float) -> Callable[[bytes, dict[str, bytes]], bytes]:
    def tamper(data: bytes, _others: dict[str, bytes]) -> bytes:
        i = min(len(data) - 1, int(len(data) * position))
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]

    return tamper


def _nested(depth: int) -> Callable[[bytes, dict[str, bytes]], bytes]:
    return lambda _d, _o: b"[" * depth + b"]" * depth


def _set_field(path: tuple[str, ...], value) -> Callable[[bytes, dict[str, bytes]], bytes]:
    def tamper(data: bytes, _others: dict[str, bytes]) -> bytes:
        doc = json.loads(data)
        node = doc
        for name in path[:-1]:
            node = node[name]
        node[path[-1]] = value
        return json.dumps(doc).encode()

    return tamper


REIMPORT_A = ("reimport", "{key_a}", "--reason", "INC-corpus")

CASES = [
    # ---- CLI arguments, options and settings -------------------------------------------------
    Case("no-command-args", "args", ("enroll",), "either --create"),
    Case("unknown-command", "args", ("rotate", "key-x"), "No such command 'rotate'"),
    Case("unsupported-spec", "args", (*GEN[:3], "RSA_1024", *GEN[4:]), "unsupported key spec"),
    Case(
        "bad-usage",
        "args",
        ("enroll", "--create", "--usage", "BOGUS"),
        "Invalid value for '--usage'",
    ),
    Case("bad-lease", "args", (*GEN, "--lease", "5x"), "invalid lease"),
    Case("negative-lease", "args", (*GEN, "--lease", "-3d"), "invalid lease"),
    Case("lease-too-short", "args", (*GEN, "--lease", "30s"), "lease"),
    Case(
        "bad-output", "args", ("--output", "yaml", "enroll"), "'yaml' is not one of 'table', 'json'"
    ),
    Case("reimport-no-reason", "args", ("reimport", "key-x"), "Missing option '--reason'"),
    Case("key-id-traversal", "args", ("reimport", "../etc", "--reason", "x"), "invalid key id"),
    Case("key-id-shell", "args", ("reimport", "key;rm -rf /", "--reason", "x"), "invalid key id"),
    Case("key-id-empty", "args", ("status", ""), "invalid key id"),
    Case("key-id-too-long", "args", ("status", "k" * 300), "invalid key id"),
    Case("key-id-non-ascii", "args", ("status", "key-\u00e9\u00e9"), "invalid key id"),
    Case("hold-empty-reason", "args", ("hold", "key-x", "--reason", ""), "--reason must be"),
    Case(
        "concurrency-zero",
        "args",
        ("sweep", "--concurrency", "0"),
        "Invalid value for '--concurrency'",
    ),
    Case(
        "material-missing",
        "args",
        ("enroll", "--key-id", "key-x", "--material", "/nonexistent"),
        "cannot read --material",
    ),
    Case("region-space", "args", ("--region", "cn hangzhou", "plan"), "region must be"),
    Case("region-url", "args", ("--region", "http://evil", "plan"), "region must be"),
    Case(
        "region-env",
        "args",
        ("plan",),
        "region must be",
        env={"ALIBABA_CLOUD_REGION_ID": "CN-HANGZHOU"},
    ),
    Case("endpoint-scheme", "args", ("--kms-endpoint", "ftp://x", "plan"), "scheme"),
    Case("endpoint-path", "args", ("--kms-endpoint", "http://a/b", "plan"), "invalid KMS endpoint"),
    Case("vault-scheme", "args", ("--vault", "s3://bucket/x", "plan"), "invalid vault URI"),
    Case("vault-empty-file", "args", ("--vault", "file://", "plan"), "needs a directory"),
    Case("vault-none", "args", ("plan",), "no vault configured", env={"BYOK_VAULT": ""}),
    Case(
        "two-sealers",
        "args",
        ("plan",),
        "exactly one sealer",
        env={"BYOK_SEAL_KMS_KEY_ID": "key-seal"},
    ),
    Case(
        "seal-key-missing", "args", ("--seal-key-file", "/nonexistent/seal.key", "plan"), "seal key"
    ),
    Case(
        "seal-key-world-readable",
        "args",
        ("plan",),
        "accessible by group or others",
        chmod=("seal.key", 0o644),
    ),
    Case(
        "seal-key-group-readable",
        "args",
        ("plan",),
        "accessible by group or others",
        chmod=("seal.key", 0o640),
    ),
    Case(
        "read-qps-text",
        "args",
        ("plan",),
        "read_qps must be a number",
        env={"BYOK_READ_QPS": "fast"},
    ),
    Case(
        "kms-timeout-zero", "args", ("plan",), "kms_timeout must be", env={"BYOK_KMS_TIMEOUT": "0"}
    ),
    Case(
        "config-missing",
        "args",
        ("--config", "/nonexistent.toml", "plan"),
        "cannot read config file",
    ),
    Case(
        "renew-before-never",
        "args",
        ("plan",),
        "renew_before must be",
        env={"BYOK_RENEW_BEFORE": "never"},
    ),
    Case(
        "dispatch-bad",
        "args",
        ("plan",),
        "dispatch must be",
        env={"BYOK_DISPATCH": "carrier-pigeon"},
    ),
    # ---- key material files --------------------------------------------------------------------
    Case("rsa-1024", "material", _enroll_args("RSA_2048", "rsa1024.pem"), "1024"),
    Case("rsa-2560", "material", _enroll_args("RSA_2048", "rsa2560.pem"), "2560"),
    Case("p384", "material", _enroll_args("EC_P256", "p384.pem"), "secp384r1"),
    Case("p521", "material", _enroll_args("EC_P256", "p521.pem"), "secp521r1"),
    Case("p224", "material", _enroll_args("EC_P256", "p224.pem"), "secp224r1"),
    Case("ed25519", "material", _enroll_args("EC_P256", "ed25519.pem"), "Ed25519"),
    Case("spec-mismatch-ec-as-rsa", "material", _enroll_args("RSA_2048", "p256.pem"), "RSA_2048"),
    Case("spec-mismatch-rsa-as-ec", "material", _enroll_args("EC_P256", "rsa2048.pem"), "EC_P256"),
    Case("spec-mismatch-p256-as-k1", "material", _enroll_args("EC_P256K", "p256.pem"), "EC_P256K"),
    Case("truncated-pem", "material", _enroll_args("EC_P256", "truncated.pem"), "key"),
    Case("pem-no-footer", "material", _enroll_args("EC_P256", "no-footer.pem"), "key"),
    Case("public-key-only", "material", _enroll_args("EC_P256", "public.pem"), "private key"),
    Case(
        "encrypted-no-passphrase",
        "material",
        _enroll_args("EC_P256", "encrypted.pem"),
        "passphrase",
    ),
    Case(
        "encrypted-wrong-passphrase",
        "material",
        _enroll_args("EC_P256", "encrypted.pem", "--passphrase-env", "PASS"),
        "passphrase",
        env={"PASS": "wrong"},
    ),
    Case(
        "passphrase-env-unset",
        "material",
        _enroll_args("EC_P256", "encrypted.pem", "--passphrase-env", "NOPE_UNSET"),
        "NOPE_UNSET",
    ),
    Case("empty-file", "material", _enroll_args("EC_P256", "empty.pem"), "empty"),
    Case("garbage", "material", _enroll_args("EC_P256", "garbage.bin"), "key"),
    Case("non-utf8-pem", "material", _enroll_args("EC_P256", "non-utf8.pem"), "not valid Base64"),
    Case("oversized-file", "material", _enroll_args("EC_P256", "huge.pem"), "larger than"),
    Case("two-keys-in-one-file", "material", _enroll_args("EC_P256", "two-keys.pem"), "key"),
    # ---- envelopes (key A's vault file, through the on-call reimport) --------------------------
    Case("env-empty", "envelope", REIMPORT_A, "envelope", tamper=lambda d, o: b""),
    Case(
        "env-truncated-half",
        "envelope",
        REIMPORT_A,
        "envelope",
        tamper=lambda d, o: d[: len(d) // 2],
    ),
    Case("env-truncated-last-byte", "envelope", REIMPORT_A, "envelope", tamper=lambda d, o: d[:-2]),
    Case(
        "env-oversized",
        "envelope",
        REIMPORT_A,
        "larger than",
        tamper=lambda d, o: d + b" " * (1024 * 1024),
    ),
    Case(
        "env-non-utf8",
        "envelope",
        REIMPORT_A,
        "envelope",
        tamper=lambda d, o: d.replace(b'"', b"\xff", 1),
    ),
    Case("env-nested-200k", "envelope", REIMPORT_A, "envelope", tamper=_nested(200_000)),
    Case("env-nested-10", "envelope", REIMPORT_A, "envelope", tamper=_nested(10)),
    Case("env-null", "envelope", REIMPORT_A, "envelope", tamper=lambda d, o: b"null"),
    Case(
        "env-wrong-format",
        "envelope",
        REIMPORT_A,
        "envelope",
        tamper=_set_field(("format",), "byok-keeper-envelope/9"),
    ),
    Case("env-swapped", "envelope", REIMPORT_A, "{key_a}", tamper=lambda d, o: o["B"]),
    Case(
        "env-other-key-id",
        "envelope",
        REIMPORT_A,
        "{key_a}",
        tamper=_set_field(("header", "key_id"), "key-someoneelse000000"),
    ),
    Case(
        "env-wrong-spec",
        "envelope",
        REIMPORT_A,
        "envelope",
        tamper=_set_field(("header", "key_spec"), "RSA_2048"),
    ),
    Case(
        "env-unknown-spec",
        "envelope",
        REIMPORT_A,
        "envelope",
        tamper=_set_field(("header", "key_spec"), "RSA_1024"),
    ),
    *[
        Case(
            f"env-flip-{round(p * 100):02d}pct", "envelope", REIMPORT_A, "envelope", tamper=_flip(p)
        )
        for p in (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
    ],
]


@pytest.fixture(scope="module")
def corpus(served, tmp_path_factory):
    """Two enrolled keys (A: EC_P256, B: RSA_2048), material deleted, and the key files."""
    served.reset()
    base = tmp_path_factory.mktemp("corpus")
    env = cli_env_for(served.endpoint, base)
    key_a = enroll_cli(env, "EC_P256")["key_id"]
    key_b = enroll_cli(env, "RSA_2048")["key_id"]
    for key_id in (key_a, key_b):
        served.emulator.kms.delete_key_material(key_id)
    vault = base / "vault"
    envelopes = {"A": (vault / f"{key_a}.json").read_bytes(),
                 "B": (vault / f"{key_b}.json").read_bytes()}  # fmt: skip
    return types.SimpleNamespace(
        base=base, env=env, key_a=key_a, key_b=key_b, envelopes=envelopes, files=_key_files()
    )


def _human_lines(text: str) -> list[str]:
    """Lines for people: everything but structured (JSON) log lines and the on-call
    ``reimport``'s step-by-step progress (``[reimport] describe: ...``)."""
    return [
        line
        for line in text.splitlines()
        if line.strip() and not line.startswith("{") and not line.startswith("[reimport] ")
    ]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_refused_in_one_line_and_nothing_is_written(
    case, corpus, served, tmp_path
):
    # Each case gets its own copy of the vault and seal key, so it can only damage itself.
    shutil.copytree(corpus.base / "vault", tmp_path / "vault")
    shutil.copy2(corpus.base / "seal.key", tmp_path / "seal.key")
    for name, data in corpus.files.items():
        (tmp_path / name).write_bytes(data)
    if case.tamper is not None:
        target = tmp_path / "vault" / f"{corpus.key_a}.json"
        target.write_bytes(case.tamper(corpus.envelopes["A"], corpus.envelopes))
    if case.chmod is not None:
        (tmp_path / case.chmod[0]).chmod(case.chmod[1])
    env = {
        **corpus.env,
        "BYOK_VAULT": f"file://{tmp_path / 'vault'}",
        "BYOK_SEAL_KEY_FILE": str(tmp_path / "seal.key"),
        **case.env,
    }
    names = {"dir": str(tmp_path), "key_a": corpus.key_a, "key_b": corpus.key_b}
    argv = [arg.format(**names) for arg in case.argv]
    before = snapshot(tmp_path)
    served.emulator.calls.clear()

    out = run_cli(*argv, env=env)

    expect = case.expect.format(**names)
    lines = _human_lines(out.stdout + out.stderr)
    changed = [c for c in served.calls() if c["action"] in MUTATING]
    untouched = snapshot(tmp_path) == before and not changed
    refused = out.returncode == 2 and len(lines) == 1 and "Traceback" not in out.stderr
    record("input", group=case.group, case=case.id, refused=refused, untouched=untouched,
           exit_code=out.returncode)  # fmt: skip
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert len(lines) == 1, lines
    assert expect in lines[0], (expect, lines[0])
    assert lines[0].startswith("byok-keeper: error:") or "Error:" in lines[0], lines[0]
    assert "Traceback" not in out.stderr
    assert snapshot(tmp_path) == before, "something was written"
    assert not changed, changed


FC_EVENTS = [
    ("reimport", b"not json", "not JSON"),
    ("reimport", b"[1, 2]", "JSON object"),
    ("reimport", b"{}", "needs key_id"),
    ("reimport", b'{"key_id": "../../etc/passwd"}', "invalid key id"),
    ("reimport", b'{"key_id": "key-x", "dry_run": "yes"}', "true or false"),
    ("reimport", b'{"key_id": "key-x", "override_hold": true}', "byok-keeper release"),
    ("reimport", b'{"key_id": "key-x", "rm_rf": true}', "unknown reimport fields"),
    ("reimport", b'{"key_id": ["key-x"]}', "key_id"),
    ("reimport", b"\xff\xfe\x00\x01", "not JSON"),
    ("reimport", b'{"key_id": "key-x", "pad": "' + b"x" * 200_000 + b'"}', "larger than"),
    ("reimport", b"[" * 60_000 + b"]" * 60_000, "nested too deeply"),
    ("sweep", json.dumps({"payload": "[" * 50_000 + "]" * 50_000}).encode(), "nested too deeply"),
    ("sweep", b"not json", "not JSON"),
    ("sweep", b"[1]", "JSON object"),
    ("sweep", json.dumps({"payload": '{"dry_run": "yes"}'}).encode(), "true or false"),
    ("sweep", json.dumps({"payload": '{"rm_rf": true}'}).encode(), "unknown sweep options"),
    ("sweep", json.dumps({"payload": "{not json"}).encode(), "payload"),
    ("sweep", b"x" * 200_000, "larger than"),
    ("sweep", b"\xc3\x28", "not JSON"),
]


@pytest.mark.parametrize(
    ("handler", "event", "message"),
    FC_EVENTS,
    ids=[f"{h}-{i}" for i, (h, _e, _m) in enumerate(FC_EVENTS)],
)
def test_malformed_fc_events_get_a_failure_result_and_touch_nothing(
    handler, event, message, served, monkeypatch, tmp_path
):
    from byok_keeper.runtimes import fc

    monkeypatch.setenv("BYOK_VAULT", f"file://{tmp_path / 'vault'}")
    served.emulator.calls.clear()
    context = types.SimpleNamespace(request_id="r-corpus", credentials=None)
    handle = fc.handle_reimport if handler == "reimport" else fc.handle_sweep
    result = handle(event, context)
    refused = result.get("ok") is False and result.get("error") in (
        "BadEvent",
        "HoldOverrideRefused",
    )
    untouched = not served.calls() and not (tmp_path / "vault").exists()
    record("input", group="fc-event", case=f"{handler}:{message}", refused=refused,
           untouched=untouched, exit_code=None)  # fmt: skip
    assert refused, result
    assert message in result["message"] and "\n" not in result["message"]
    assert untouched

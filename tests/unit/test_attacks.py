"""Issue 13, pure parts: each attack as a test that fails without its defence (see
docs/SECURITY.md)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from byok_keeper.planning.plan import (
    LEASE_TAG,
    EnvelopeFacts,
    KeyFacts,
    Policy,
    decide,
    effective_lease,
)
from tests.unit.test_plan import key as make_key

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
FP = "ab" * 32


def _sealed(lease: str) -> EnvelopeFacts:
    return EnvelopeFacts(FP, "EC_P256", lease, True)


# ---- 3. the lease tag lengthens the sealed lease ---------------------------------------------


@pytest.mark.parametrize(
    ("sealed", "tag", "effective"),
    [("1h", "never", "1h"), ("1h", "30d", "1h"), ("30d", "90d", "30d"), ("1d", "2d", "1d")],
)
def test_a_lease_tag_longer_than_the_sealed_lease_is_ignored_and_reported(sealed, tag, effective):
    lease, notes = effective_lease(_sealed(sealed), {LEASE_TAG: tag})
    assert str(lease) == effective
    assert any("ignored lease tag" in n and "longer than the sealed lease" in n for n in notes)


@pytest.mark.parametrize(("sealed", "tag"), [("30d", "1d"), ("never", "30d"), ("2w", "1h")])
def test_a_lease_tag_may_shorten_the_sealed_lease(sealed, tag):
    lease, notes = effective_lease(_sealed(sealed), {LEASE_TAG: tag})
    assert str(lease) == tag and "lease from tag" in notes


def test_a_lease_tag_with_no_sealed_lease_to_compare_is_ignored():
    lease, notes = effective_lease(None, {LEASE_TAG: "never"})
    assert lease is None and any("no sealed lease" in n for n in notes)


def test_the_planner_renews_on_the_sealed_lease_despite_a_never_tag():
    key = make_key(spec="EC_P256", expires=NOW + timedelta(minutes=20))
    facts = KeyFacts("key-1", key, True, _sealed("1h"), {LEASE_TAG: "never"})
    decision = decide(facts, NOW, Policy())
    assert decision.decision == "RENEW" and str(decision.lease) == "1h"


# ---- 4. plain HTTP ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("LOCALHOST.", True), ("127.0.0.1.evil.example", False),
     ("localhost.evil.example", False), ("10.0.0.1", False), ("0.0.0.0", False),  # noqa: S104
     ("::ffff:8.8.8.8", False), ("", False), (None, False), ("kms.aliyuncs.com", False)],
)  # fmt: skip
def test_only_loopback_hosts_count_as_loopback(host, loopback):
    from byok_keeper.gateway.transport import is_loopback

    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    "endpoint", ["http://kms.example.com", "http://127.0.0.1@evil.example:80", "HTTP://10.1.1.1"]
)
def test_settings_and_the_client_factory_refuse_plain_http_off_the_machine(endpoint):
    from byok_keeper.core.settings import load_settings
    from byok_keeper.domain.errors import ConfigError
    from byok_keeper.gateway.kms import split_endpoint

    with pytest.raises(ConfigError, match="plain http"):
        load_settings({"kms_endpoint": endpoint}, env={})
    with pytest.raises(ConfigError, match="plain http"):
        load_settings({"fc_endpoint": endpoint}, env={})
    with pytest.raises(ConfigError, match="plain http"):
        split_endpoint(endpoint)
    assert split_endpoint("https://kms.example.com") == ("https", "kms.example.com")
    assert split_endpoint("http://[::1]:8080") == ("http", "[::1]:8080")


# ---- 8. validators accept a trailing newline -------------------------------------------------


@pytest.mark.parametrize("key_id", ["key-abc\n", "key-abc\r\n", "\nkey-abc", "key-abc\x00"])
def test_key_ids_must_match_in_full(key_id):
    from byok_keeper.domain.errors import InputError
    from byok_keeper.vault.envelope import check_key_id

    with pytest.raises(InputError, match="invalid key id"):
        check_key_id(key_id)
    assert check_key_id("key-abc") == "key-abc"


@pytest.mark.parametrize("region", ["cn-hangzhou\n", "cn-hangzhou\n-evil"])
def test_regions_must_match_in_full(region):
    from byok_keeper.core.settings import load_settings
    from byok_keeper.domain.errors import ConfigError

    with pytest.raises(ConfigError, match="region must be"):
        load_settings({"region": region}, env={})


def _sealed_envelope_doc() -> dict:
    import base64
    import json

    from byok_keeper.crypto.material import generate_material
    from byok_keeper.vault import FileStore, LocalKeySealer, Vault
    from byok_keeper.vault.envelope import Header

    vault = Vault(FileStore("/nonexistent"), LocalKeySealer(bytes(32)))
    with generate_material("EC_P256") as material:
        header = Header(
            key_id="key-abc", region="cn-hangzhou", account_id="1", key_spec="EC_P256",
            key_usage="SIGN/VERIFY", protection_level="SOFTWARE",
            public_key_der=base64.b64encode(material.public_key_der).decode(),
            fingerprint=material.fingerprint, material_encoding="PKCS8_DER", lease="30d",
            enrolled_at="2026-11-28T12:00:00Z", first_imported_at="2026-11-28T12:00:01Z",
        )  # fmt: skip
        return json.loads(vault.seal(header, material).to_bytes())


@pytest.mark.parametrize(
    ("field", "suffix", "message"),
    [("fingerprint", "\n", "fingerprint"), ("enrolled_at", "\n", "timestamps"),
     ("first_imported_at", "\n", "timestamps"), ("key_id", "\n", "invalid key id")],
)  # fmt: skip
def test_envelope_fingerprints_timestamps_and_key_ids_must_match_in_full(field, suffix, message):
    import json

    from byok_keeper.domain.errors import InputError
    from byok_keeper.vault.envelope import parse

    doc = _sealed_envelope_doc()
    parse(json.dumps(doc).encode())  # the untouched envelope parses
    doc["header"][field] += suffix
    with pytest.raises(InputError, match=message):
        parse(json.dumps(doc).encode())


def test_envelope_timestamps_take_ascii_digits_only():
    import json

    from byok_keeper.domain.errors import InputError
    from byok_keeper.vault.envelope import parse

    doc = _sealed_envelope_doc()
    doc["header"]["enrolled_at"] = "\u0662\u0660\u0662\u0666-11-28T12:00:00Z"  # Arabic-Indic
    with pytest.raises(InputError, match="timestamps"):
        parse(json.dumps(doc).encode())


def _with(doc: dict, part: str, field: str, value) -> dict:
    doc[part][field] = value
    return doc


# Each way an envelope can be malformed that reaches the checks after the JSON is read: one
# changed field, refused with its own reason (a tampered or foreign file, never unsealed).
_MALFORMED = {
    "wrong type": (lambda d: _with(d, "header", "lease", 30), "header.lease has the wrong type"),
    "usage": (lambda d: _with(d, "header", "key_usage", "WRAP"), "invalid key usage"),
    "protection": (lambda d: _with(d, "header", "protection_level", "HSMX"), "protection level"),
    "encoding": (lambda d: _with(d, "header", "material_encoding", "RAW"), "does not fit its key"),
    "public key": (lambda d: _with(d, "header", "public_key_der", "not base64!"), "public key is"),
    "sealer": (lambda d: _with(d, "seal", "sealer", "tpm"), "sealer 'tpm' is unknown"),
    "nonce length": (lambda d: _with(d, "material", "nonce", "AAAAAAAAAAAA"), "12 bytes"),
    "nonce alphabet": (
        lambda d: _with(d, "material", "nonce", "AAAAAAAA!AAAAAAAA"),
        "nonce is not",
    ),
    "ciphertext": (lambda d: _with(d, "material", "ciphertext", "@@@@"), "ciphertext is not"),
}


@pytest.mark.parametrize("how", sorted(_MALFORMED))
def test_a_malformed_envelope_is_refused_with_its_reason(how):
    import json

    from byok_keeper.vault.envelope import EnvelopeError, parse

    doc = _sealed_envelope_doc()
    assert parse(json.dumps(doc).encode()).key_id == "key-abc"  # the untouched one parses
    change, message = _MALFORMED[how]
    with pytest.raises(EnvelopeError, match=message):
        parse(json.dumps(change(doc)).encode())


def test_an_envelope_over_one_mib_is_refused_before_it_is_read():
    import json

    from byok_keeper.vault.envelope import MAX_ENVELOPE_BYTES, EnvelopeError, parse

    doc = _sealed_envelope_doc()
    data = json.dumps(doc).encode()
    padded = data[:-1] + b" " * (MAX_ENVELOPE_BYTES - len(data)) + b"}"
    assert len(padded) == MAX_ENVELOPE_BYTES and parse(padded).key_id == "key-abc"
    with pytest.raises(EnvelopeError, match="larger than"):
        parse(padded + b" ")


# ---- 12. SM2 timing ---------------------------------------------------------------------------


def test_sm2_scalar_multiplication_time_does_not_track_the_scalars_bit_length():
    """Mean CPU time for 128-bit and 256-bit scalars within 10 %.

    Robust on a noisy shared machine: the two kinds are interleaved (drift hits both alike),
    timed with this thread's CPU clock (time the scheduler gives other processes is not
    counted), and compared by their 20 %-trimmed means (a preempted outlier cannot move them).
    """
    import secrets
    import statistics
    import time

    from byok_keeper.crypto import sm2

    def cpu_ns(k: int) -> int:
        start = time.thread_time_ns()
        sm2._mul(k, (sm2.GX, sm2.GY))
        return time.thread_time_ns() - start

    def trimmed_mean(samples: list[int]) -> float:
        cut = len(samples) // 5
        return statistics.fmean(sorted(samples)[cut : len(samples) - cut])

    short, full = [], []
    for _ in range(3):  # warm up
        cpu_ns(secrets.randbits(128) | 1 << 127)
    for _ in range(40):
        short.append(cpu_ns(secrets.randbits(128) | 1 << 127))
        full.append(cpu_ns(secrets.randbelow(sm2.N - (1 << 255)) + (1 << 255)))
    mean_short, mean_full = trimmed_mean(short), trimmed_mean(full)
    ratio = mean_short / mean_full
    print(f"SM2 ladder: 128-bit {mean_short / 1e6:.2f} ms, 256-bit {mean_full / 1e6:.2f} ms")
    assert 0.9 <= ratio <= 1.1, (mean_short, mean_full)


# ---- 11. supply chain -------------------------------------------------------------------------


def _package_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "deploy" / "package.py"
    spec = importlib.util.spec_from_file_location("byok_package", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_constraints_pin_and_hash_every_dependency():
    from importlib import metadata
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    pins = _package_module().parse_pins(root / "constraints.txt")  # refuses unhashed pins
    assert "setuptools" in pins and "cryptography" in pins
    installed = {
        _package_module()._norm(d.metadata["Name"]): d.version for d in metadata.distributions()
    }
    for name, pin in pins.items():
        if name in installed and name not in ("pip", "setuptools"):
            assert installed[name] == pin["version"], name
    makefile = (root / "Makefile").read_text()
    assert "--require-hashes -r constraints.txt" in makefile
    assert "--no-deps --no-build-isolation -e ." in makefile


def test_package_refuses_a_wheel_whose_version_is_not_its_pin(tmp_path):
    from pathlib import Path

    package = _package_module()
    pins = {"structlog": {"version": "26.1.0"}, "click": {"version": "8.5.1"}}
    good = [Path("structlog-26.1.0-py3-none-any.whl"), Path("click-8.5.1-py3-none-any.whl")]
    package.check_versions(good, pins, ["click", "structlog"])
    stale = [Path("structlog-25.1.0-py3-none-any.whl"), good[1]]
    with pytest.raises(SystemExit, match="structlog-25.1.0.*pins 26.1.0"):
        package.check_versions(stale, pins, ["click", "structlog"])
    with pytest.raises(SystemExit, match="do not match"):
        package.check_versions(good[:1], pins, ["click", "structlog"])
    unhashed = tmp_path / "constraints.txt"
    unhashed.write_text("structlog==26.1.0\n")
    with pytest.raises(SystemExit, match="no hash"):
        package.parse_pins(unhashed)


# ---- 14. RAM: the canary's crypto permissions -------------------------------------------------


def test_the_role_gets_only_the_crypto_actions_the_canary_uses_on_managed_keys():
    import json
    from pathlib import Path

    from byok_keeper.gateway.kms import SWEEP

    root = Path(__file__).resolve().parents[2]
    # The one policy document: deploy.py, s.yaml, Terraform and template.yml (rendered from it).
    policies = {
        "ram-policy.json": json.loads((root / "deploy" / "ram-policy.json").read_text())[
            "Statement"
        ],
    }
    for where, statements in policies.items():
        crypto = [
            (s["Sid"], a) for s in statements for a in s["Action"] if a.startswith("kms:Asym")
        ]
        assert {a for _, a in crypto} == {
            "kms:AsymmetricSign", "kms:AsymmetricDecrypt", "kms:AsymmetricEncrypt"
        }, where  # fmt: skip
        (canary,) = [s for s in statements if s["Sid"] == "CanaryOnManagedKeys"]
        assert {sid for sid, _ in crypto} == {"CanaryOnManagedKeys"}, where
        assert canary["Condition"] == {"StringEquals": {"kms:tag/byok-keeper:managed": "true"}}
    assert "AsymmetricVerify" not in SWEEP.actions

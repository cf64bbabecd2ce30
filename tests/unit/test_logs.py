"""The log configuration as the entrypoints use it: the redaction processor in the real chain.

``structlog.testing.capture_logs`` replaces the processors, so tests built on it never run
redaction; these render lines through ``logs.configure`` into a stream and read them back.
"""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from byok_keeper.domain import logs

PEM = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END"
BLOB = "QUJD" * 30  # 120 Base64 characters: the shape of wrapped material
HEX = "ab" * 64  # 128 hex digits: the shape of a raw key in hex
FINGERPRINT = "cd" * 32  # a SHA-256 fingerprint: public, logged on purpose


@pytest.fixture
def lines():
    """Configure logging into a buffer; yield a function returning the JSON lines so far."""
    saved = structlog.get_config()
    root = logging.getLogger()
    saved_level = root.level
    stream = io.StringIO()
    logs.configure(json=True, level="DEBUG", stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    for handler in [h for h in root.handlers if getattr(h, "_byok_keeper", False)]:
        root.removeHandler(handler)
    root.setLevel(saved_level)
    structlog.configure(**saved)


def test_secret_named_fields_and_secret_shaped_values_are_redacted(lines):
    logs.get_logger().info(
        "key",
        key_id="key-1",
        fingerprint=FINGERPRINT,
        material="plain words",
        import_token="t",
        detail=PEM,
        note=f"wrapped {BLOB} sent",
        raw=b"\x00\x01",
        nested={"data_key": "k", "ok": "fine", "blob": HEX},
        listed=["short", BLOB],
    )
    (line,) = lines()
    assert line["key_id"] == "key-1" and line["fingerprint"] == FINGERPRINT
    assert line["material"] == line["import_token"] == line["detail"] == logs.REDACTED
    assert line["note"] == f"wrapped {logs.REDACTED} sent"
    assert line["raw"] == logs.REDACTED
    assert line["nested"] == {"data_key": logs.REDACTED, "ok": "fine", "blob": logs.REDACTED}
    assert line["listed"] == ["short", logs.REDACTED]
    text = json.dumps(line)
    for secret in ("plain words", "MIGHAgEA", BLOB, HEX):
        assert secret not in text


def test_the_event_text_and_stdlib_loggers_are_redacted_too(lines):
    logs.get_logger().warning(f"saw {BLOB}")
    logging.getLogger("alibabacloud_tea_openapi").warning("url ?EncryptedKeyMaterial=%s", BLOB)
    first, second = lines()
    assert first["event"] == f"saw {logs.REDACTED}"
    assert BLOB not in second["event"] and logs.REDACTED in second["event"]


def test_short_public_values_pass_through_unchanged(lines):
    logs.get_logger().info("kms_call", action="ImportKeyMaterial", attempt=2, result="ok")
    (line,) = lines()
    assert (line["action"], line["attempt"], line["result"]) == ("ImportKeyMaterial", 2, "ok")

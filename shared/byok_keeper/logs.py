"""structlog, configured once: ISO UTC timestamps, JSON off a TTY, console on a TTY, stdlib
loggers (the SDK, APScheduler) routed through the same processors, and a redaction processor
that keeps secrets out of every line.

Secrets never reach a logger on purpose; redaction is the second line of defence: fields whose
names suggest secrets are masked, and any string that looks like a PEM private key or a long
Base64/hex blob in a field not known to be safe is replaced.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
from typing import Any, TextIO
from urllib.parse import unquote

import structlog

REDACTED = "[REDACTED]"
_SECRET_NAMES = re.compile(
    r"(material|plaintext|secret|token|passphrase|password|private|esk|data_key|authorization)",
    re.IGNORECASE,
)
# Values these fields carry are known to be public (hashes, ids) even when long.
_SAFE_FIELDS = frozenset(
    {
        "fingerprint",
        "kms_fingerprint",
        "request_ids",
        "request_id",
        "key_id",
        "event",
        "timestamp",
        "level",
        "logger",
        "reason",
        "error",
    }
)
_PEM_PRIVATE = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_BLOB = re.compile(r"[A-Za-z0-9+/=]{80,}|[0-9a-fA-F]{96,}")
# name=value pairs (query strings, headers, repr text) whose name says secret, e.g. an
# ImportToken or EncryptedKeyMaterial in a request line: the value goes, whatever its length.
_SECRET_PAIR = re.compile(
    r"([A-Za-z0-9_.-]*(?:material|plaintext|secret|token|passphrase|password|private|signature"
    r"|authorization|credential)[A-Za-z0-9_.-]*[\"']?\s*[=:]\s*[\"']?)([^&\s,;\"']+)",
    re.IGNORECASE,
)
# The SDK's own loggers: each has a StreamHandler of its own at DEBUG, which would print
# outside our processors (and so outside redaction).
SDK_LOGGERS = ("alibabacloud-tea", "darabonba-core", "credentials")
_SDK_MODULES = ("Tea.core", "darabonba.core", "alibabacloud_credentials.client")


def _scrub_text(value: str) -> str:
    text = _BLOB.sub(REDACTED, value)
    # URL-decode (twice covers double encoding), then look again: %2B, %2F and %3D split a
    # Base64 run into pieces too short to look like a blob, and a PEM header may come encoded.
    for _ in range(2):
        if "%" not in text:
            break
        text = unquote(text)
    if _PEM_PRIVATE.search(value) or _PEM_PRIVATE.search(text):
        return REDACTED
    text = _SECRET_PAIR.sub(lambda m: m.group(1) + REDACTED, text)
    return _BLOB.sub(REDACTED, text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return REDACTED
    if isinstance(value, dict):
        return {
            k: (REDACTED if _SECRET_NAMES.search(str(k)) else _scrub(v)) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    return value


def redact(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: mask secret-named fields and secret-looking values."""
    for name in list(event):
        if name in _SAFE_FIELDS:
            continue
        if _SECRET_NAMES.search(name):
            event[name] = REDACTED
        else:
            event[name] = _scrub(event[name])
    if isinstance(event.get("event"), str):
        event["event"] = _scrub(event["event"])
    return event


_configured = False


def configure(
    *,
    json: bool | None = None,
    level: str = "INFO",
    stream: TextIO | None = None,
    replace_root: bool = False,
) -> None:
    """Configure structlog and the stdlib root logger. Idempotent; later calls reconfigure.

    ``replace_root`` removes every handler already on the root logger, not only ours: FC's
    Python runtime installs one of its own, and adding ours beside it writes each line twice
    (once as our JSON, once in the runtime's format)."""
    global _configured
    stream = stream or sys.stderr
    if json is None:
        json = not stream.isatty()
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    renderer = (
        structlog.processors.JSONRenderer(sort_keys=True)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        if replace_root or getattr(old, "_byok_keeper", False):
            root.removeHandler(old)
    handler._byok_keeper = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The SDK's HTTP stack logs URLs (which carry wrapped material) at DEBUG: keep it quiet.
    # alibabacloud-credentials runs an APScheduler of its own that chats at INFO.
    for noisy in ("urllib3", "requests", "aiohttp", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quiet_sdk_loggers()
    _configured = True


class _WarningsOnly(logging.Filter):
    """On an SDK logger: drops its DEBUG/INFO records even if the SDK resets its level."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def quiet_sdk_loggers() -> None:
    """Import the SDK modules that attach their own handlers (so none is attached after this),
    remove those handlers, and keep the loggers at WARNING, propagating through our processors
    (and so through redaction)."""
    for module in _SDK_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:  # pragma: no cover - an optional part of the SDK is missing
            pass
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = True
        if not any(isinstance(f, _WarningsOnly) for f in logger.filters):
            logger.addFilter(_WarningsOnly())


def get_logger(name: str = "byok_keeper") -> Any:
    return structlog.get_logger(name)


# Used as a library (tests, benchmarks) without ``configure``: structlog's default would print
# every level to stdout, the per-call debug lines included. Default to INFO instead.
if not structlog.is_configured():
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))

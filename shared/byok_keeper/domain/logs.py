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
# A PIN (BYOK_PKCS11_PIN, pin-value, so_pin) is "pin" as a whole word of a name, so that
# "spinning" or "pinned" are left alone.
_PIN_WORD = r"(?<![a-z0-9])pin(?![a-z0-9])"
_SECRET_NAMES = re.compile(
    r"(material|plaintext|secret|token|passphrase|password|private|esk|data_key|authorization"
    rf"|{_PIN_WORD})",
    re.IGNORECASE,
)
_PIN = re.compile(_PIN_WORD, re.IGNORECASE)
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
# Every pattern below runs in time linear in its input, whatever the input (issue 25): a claim
# in an event may be as long as the event (128 KiB), and a pattern that backtracks over it
# would stall the function. A PEM label's run ends at the next "-", so labels after different
# headers never overlap; a blob is matched only from the start of a run of its characters (the
# lookbehind) and taken whole with nothing after it to backtrack into (so no possessive
# quantifier, which Python 3.10 lacks), so each character is looked at a bounded number of
# times. A run of 96 hex digits is also a run of 80 Base64 characters, so one class covers both.
_PEM_PRIVATE = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_BLOB = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/=]{80,}")
# name=value pairs (query strings, headers, repr text) whose name says secret, e.g. an
# ImportToken or EncryptedKeyMaterial in a request line: the value goes, whatever its length.
# Found in three linear steps (``_mask_secret_pairs``): each maximal run of name characters,
# whether it names a secret, then the separator and the value right after it. One pattern doing
# all three (a name with a secret word somewhere inside) backtracks quadratically over a long
# run of name characters such as ``a-a-a-...``.
_PAIR_WORDS = ("material", "plaintext", "secret", "token", "passphrase", "password", "private",
               "signature", "authorization", "credential")  # fmt: skip
# Runs shorter than the shortest secret word cannot name a secret: skipped by the pattern (in
# C), not by a Python loop over thousands of one-letter runs; "pin" alone is shorter, so a run
# shorter than that is looked at only when it is "pin" with at most one separator either side.
_NAME_RUN = re.compile(
    rf"[A-Za-z0-9_.-]{{{min(map(len, _PAIR_WORDS))},}}"
    r"|(?<![A-Za-z0-9_.-])[_.-]?pin[_.-]?(?![A-Za-z0-9_.-])",
    re.IGNORECASE,
)
# Whitespace can never be "=" or ":", so giving back whitespace never finds a separator: one
# ``match`` reads the run after one name once more at most, and that run ends at the next name.
_PAIR_SEPARATOR = re.compile(r"[\"']?\s*[=:]\s*[\"']?")
_PAIR_VALUE = re.compile(r"[^&\s,;\"']+")
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
    text = _mask_secret_pairs(text)
    return _BLOB.sub(REDACTED, text)


def _names_a_secret(name: str) -> bool:
    lowered = name.lower()  # name characters are ASCII: lower() is the whole of case folding
    return any(word in lowered for word in _PAIR_WORDS) or bool(_PIN.search(name))


def _mask_secret_pairs(text: str) -> str:
    """Mask the value of every ``name=value`` (or ``name: value``) whose name holds a secret
    word. Linear: each run of name characters is read once, and a masked value is skipped."""
    out: list[str] = []
    done = 0
    for name in _NAME_RUN.finditer(text):
        if name.start() < done or not _names_a_secret(name.group()):
            continue
        separator = _PAIR_SEPARATOR.match(text, name.end())
        value = separator and _PAIR_VALUE.match(text, separator.end())
        if not value:
            continue
        out += (text[done : separator.end()], REDACTED)
        done = value.end()
    out.append(text[done:])
    return "".join(out)


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

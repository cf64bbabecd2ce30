"""Audit events: one per key per run, to the log and optionally to a JSONL file.

Before each import an ``importing`` line (``AuditLog.importing``) records the intent, so a run
killed between KMS taking the material and its ``key`` line still leaves a trace.

The canonical line carries ``key_id``, ``decision``, ``outcome``, ``duration_ms``, KMS
``request_ids``, ``new_expiry``, ``fingerprint``, ``trigger`` and ``actor``. The JSONL file is
append-only (``O_APPEND``), one JSON object per line, flushed per event, mode 0600.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .logs import get_logger, redact
from .model import format_kms_time


class AuditLog:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._log = get_logger("byok_keeper.audit")

    def event(self, event: str, **fields: Any) -> None:
        level = "warning" if fields.get("outcome") in ("failed", "alert") else "info"
        getattr(self._log, level)(event, **fields)
        if self.path is None:
            return
        record = {
            "event": event,
            "time": format_kms_time(datetime.now(timezone.utc)),
            **fields,
        }
        line = json.dumps(redact(None, "", record), sort_keys=True, default=str) + "\n"
        with self._lock:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            except OSError as exc:
                raise ConfigError(f"cannot open audit file {self.path}: {exc.strerror}") from None
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)

    def importing(self, key_id: str, decision: str, **fields: Any) -> None:
        """The intent line, written right before ImportKeyMaterial: ``importing`` names the
        key, the decision and who asked. Its ``key`` line follows with the outcome; an
        ``importing`` line with no ``key`` line after it means the run died during the import
        (a kill, FC's timeout): look at the key (``byok-keeper verify``)."""
        self.event("importing", key_id=key_id, decision=decision, outcome="importing", **fields)

"""The emulator clock: real time plus an offset that tests move through the admin API.

Every expiry (import tokens, key material, pending deletion) is judged against this clock,
and every response's ``Date`` header shows it.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from email.utils import formatdate

ISO = "%Y-%m-%dT%H:%M:%SZ"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime(ISO)


def parse_iso(text: str) -> float:
    """Parse ``YYYY-MM-DDTHH:MM:SSZ``; raise ``ValueError`` otherwise."""
    return datetime.strptime(text, ISO).replace(tzinfo=timezone.utc).timestamp()


class Clock:
    def __init__(self, offset: float = 0.0) -> None:
        self._offset = offset
        self._lock = threading.Lock()

    @property
    def offset(self) -> float:
        return self._offset

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    def set(self, ts: float) -> None:
        with self._lock:
            self._offset = ts - time.time()

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0

    def http_date(self) -> str:
        return formatdate(self.now(), usegmt=True)

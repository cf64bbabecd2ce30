"""Rendering for people: tables, times and one-line progress. No logic, no KMS."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from datetime import datetime

from ..domain.model import format_kms_time

PROGRESS_MIN_KEYS = 25  # smaller fleets finish before a bar would help


def table(rows: list[list[str]], headers: list[str]) -> str:
    """Left-aligned columns with a header row."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*map(str, r)).rstrip() for r in [headers, *rows])


def fmt_time(when: datetime | None) -> str:
    """KMS's time format, or ``never`` for no time."""
    return format_kms_time(when) if when else "never"


def expiry(state: str, when: datetime | None) -> str:
    """A PendingImport key has no material, so no expiry: show '-' rather than 'never'."""
    return fmt_time(when) if state in ("Enabled", "Disabled") else "-"


def progress_bar(label: str) -> Callable[[int, int], None]:
    """``(done, total)`` -> a one-line bar on stderr (callers use it on a terminal only),
    for fleets of ``PROGRESS_MIN_KEYS`` keys or more."""
    lock = threading.Lock()

    def update(done: int, total: int) -> None:
        if total < PROGRESS_MIN_KEYS:
            return
        width = 30
        filled = width * done // total
        with lock:
            sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
            if done == total:
                sys.stderr.write("\n")
            sys.stderr.flush()

    return update

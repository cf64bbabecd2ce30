"""Lease policies: how long imported material lives in KMS before it must be renewed.

``30d``, ``12h``, ``2w``, ``90m`` or ``never``. A short lease renewed by the agent is a
customer-controlled kill switch: take the agent's vault access away and KMS's copy lapses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from .errors import InputError

_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LEASE = re.compile(r"^([1-9][0-9]{0,5})([mhdw])\Z")
MIN_LEASE_SECONDS = 3600
MAX_LEASE_SECONDS = 10 * 366 * 86400


@dataclass(frozen=True)
class Lease:
    seconds: int | None  # None = never expires

    @property
    def never(self) -> bool:
        return self.seconds is None

    def __str__(self) -> str:
        if self.seconds is None:
            return "never"
        for unit in ("w", "d", "h", "m"):
            if self.seconds % _UNITS[unit] == 0:
                return f"{self.seconds // _UNITS[unit]}{unit}"
        raise AssertionError("lease seconds are always whole minutes")

    def expiry_from(self, now: datetime) -> datetime | None:
        return None if self.seconds is None else now + timedelta(seconds=self.seconds)

    def expire_unix(self, now: datetime) -> int:
        """``KeyMaterialExpireUnix`` for an import at ``now``: 0 means never."""
        expiry = self.expiry_from(now)
        return 0 if expiry is None else int(expiry.timestamp())


def parse_lease(text: str) -> Lease:
    """Parse ``30d`` / ``12h`` / ``2w`` / ``90m`` / ``never``; raise ``InputError`` otherwise."""
    value = text.strip().lower()
    if value == "never":
        return Lease(None)
    m = _LEASE.fullmatch(value)
    if not m:
        raise InputError(f"invalid lease {text!r}; expected e.g. 30d, 12h, 2w or never")
    seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if not MIN_LEASE_SECONDS <= seconds <= MAX_LEASE_SECONDS:
        raise InputError(f"lease {text!r} must be between 1h and 10 years (or never)")
    return Lease(seconds)

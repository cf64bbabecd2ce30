"""The domain floor: what a key, a decision and an outcome are. No SDK, no I/O, no clock.

Everything above this module (the planner, re-establishment, enrollment, the gateway, the vault,
the entrypoints) may import it; it imports nothing of byok_keeper but ``errors``. Importing it
never loads an Alibaba SDK module (``tests/unit/test_architecture.py``).

* ``KeyInfo``: what DescribeKey says about a key, as our frozen dataclass (never an SDK model);
* ``KeyState``, ``DecisionKind``, ``OutcomeKind``: string-valued enums. Each member *is* its
  string (``KeyState.ENABLED == "Enabled"``, same hash, same ``str``/``format``/JSON), so logs,
  tables and JSON output are byte-identical to the plain strings they replace;
* KMS's time format (``YYYY-MM-DDTHH:MM:SSZ``): ``parse_kms_time`` / ``format_kms_time``;
* id and field validators: ``check_key_id`` (``KEY_ID_RE``), ``FINGERPRINT_RE``,
  ``KMS_TIME_RE`` -- the vault's file format and the entrypoints check the same rules;
* ``EnvelopeFacts.from_header``: the one way an envelope header becomes what the planner needs.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Protocol

from .errors import InputError, shown

# ---- KMS time ------------------------------------------------------------------------------

KMS_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def parse_kms_time(text: str | None) -> datetime | None:
    """``YYYY-MM-DDTHH:MM:SSZ`` -> aware UTC datetime; empty -> None."""
    if not text:
        return None
    return datetime.strptime(text, KMS_TIME_FORMAT).replace(tzinfo=timezone.utc)


def format_kms_time(when: datetime | None) -> str:
    return when.astimezone(timezone.utc).strftime(KMS_TIME_FORMAT) if when else ""


# ---- ids and fields ------------------------------------------------------------------------

# Full matches (\Z, not $, which also matches before a trailing newline), ASCII digits only.
KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}\Z")
FINGERPRINT_RE = re.compile(r"^[0-9a-f]{64}\Z")  # SHA-256 of the DER public key, hex
KMS_TIME_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z\Z")


def check_key_id(key_id: str) -> str:
    """A KMS key id as byok-keeper accepts it (it names vault files and secrets). Raises
    ``InputError`` (exit 2)."""
    if not isinstance(key_id, str) or not KEY_ID_RE.fullmatch(key_id):
        raise InputError(f"invalid key id {shown(key_id)}: letters, digits, '-' and '_' only")
    return key_id


# ---- states, decisions, outcomes -------------------------------------------------------------


class _StrEnum(str, Enum):
    """``enum.StrEnum`` (3.11+) for 3.10: ``str()``, f-strings and ``format`` give the value,
    as does ``json.dumps`` (a ``str`` subclass); members compare equal to their value."""

    __str__ = str.__str__
    __format__ = str.__format__


class KeyState(_StrEnum):
    """DescribeKey's ``KeyState`` values byok-keeper acts on (KMS may name others)."""

    ENABLED = "Enabled"
    DISABLED = "Disabled"
    PENDING_IMPORT = "PendingImport"
    PENDING_DELETION = "PendingDeletion"


class DecisionKind(_StrEnum):
    """What the planner decides for one key (``plan.py`` has the table)."""

    REIMPORT = "REIMPORT"
    RENEW = "RENEW"
    OK = "OK"
    HOLD = "HOLD"
    SKIP = "SKIP"
    ALERT = "ALERT"


class OutcomeKind(_StrEnum):
    """What re-establishing one key came to."""

    RESTORED = "restored"
    RENEWED = "renewed"
    HELD = "held"
    SKIPPED = "skipped"
    FAILED = "failed"
    DRY_RUN = "dry-run"


# ---- keys ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    arn: str
    key_spec: str
    key_usage: str
    key_state: str
    origin: str
    protection_level: str
    instance_id: str
    # No PrimaryKeyVersion: DescribeKey documents it for symmetric keys only; asymmetric calls
    # take their KeyVersionId from ListKeyVersions (KmsGateway.key_version_id).
    material_expire_time: datetime | None
    delete_date: datetime | None
    creation_date: datetime | None
    description: str
    request_id: str = ""

    def __post_init__(self) -> None:
        # What most keys share (spec, usage, state...) is interned: a fleet of 50,000 keys holds
        # one copy of each value, not one per key. Slots: no per-key __dict__ either.
        for name in _SHARED_FIELDS:
            object.__setattr__(self, name, sys.intern(getattr(self, name)))


_SHARED_FIELDS = ("key_spec", "key_usage", "key_state", "origin", "protection_level",
                  "instance_id", "description")  # fmt: skip


# ---- envelopes -----------------------------------------------------------------------------


class _HeaderLike(Protocol):
    """The fields of ``vault.envelope.Header`` the planner reads (the vault is not imported
    here: it reaches KMS)."""

    fingerprint: str
    key_spec: str
    lease: str
    first_imported_at: str | None


@dataclass(frozen=True, slots=True)
class EnvelopeFacts:
    """What the planner needs from an envelope header (no material)."""

    fingerprint: str
    key_spec: str
    lease: str
    first_imported: bool

    @classmethod
    def from_header(cls, header: _HeaderLike) -> EnvelopeFacts:
        return cls(
            header.fingerprint,
            header.key_spec,
            header.lease,
            header.first_imported_at is not None,
        )

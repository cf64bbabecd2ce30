"""Exit codes of the batch commands (``plan``, ``sweep``, ``verify``, ``daemon --once``) and
their precedence, so a CronJob or a systemd timer that "succeeds" means no key needs anyone.

``2`` usage, configuration or input > ``1`` a failure > ``4`` a key needs a person (ALERT: an
enrolled key gone from KMS, an EXTERNAL key with no envelope, an envelope that disagrees with
its key or whose material does not match) > ``3`` work pending (plan) > ``0``.
"""

from __future__ import annotations

from collections.abc import Iterable

OK = 0
FAILED = 1
USAGE = 2
PENDING = 3
NEEDS_PERSON = 4

# Most urgent first: the code a run exits with is the first of these any of its parts earned.
PRECEDENCE = (USAGE, FAILED, NEEDS_PERSON, PENDING, OK)


def worst(codes: Iterable[int]) -> int:
    """The code that wins among ``codes`` (``OK`` for none). Raises ``ValueError`` for a code
    outside the contract (a bug, never an operator's mistake)."""
    return min(codes, key=PRECEDENCE.index, default=OK)


def of_run(*, failed: bool = False, alert: bool = False, pending: bool = False) -> int:
    """A run's code from what it found: a failure, a key that needs a person, pending work."""
    return worst(
        code
        for code, found in ((FAILED, failed), (NEEDS_PERSON, alert), (PENDING, pending))
        if found
    )

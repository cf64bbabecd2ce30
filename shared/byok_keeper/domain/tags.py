"""KMS's tag rules, checked before byok-keeper writes any tag (hold reasons, lease, fingerprint).

The rules are those of Alibaba Cloud's "import key material into an asymmetric key" page (the
seed, docs/FIDELITY.md): a key and a value are at most 128 characters of letters, digits,
spaces and ``/ \\ _ - . + = : @``; a key never starts with ``aliyun`` or ``acs:``; a KMS key
carries at most 20 tags. KMS refuses anything else, so a bad value is refused here first, with
the rule, before any call (exit 2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .errors import InputError, shown

# byok-keeper's own tags (the ``byok-keeper:`` prefix is reserved for them).
HOLD_TAG = "byok-keeper:hold"  # set by an operator: the agent never imports into the key
LEASE_TAG = "byok-keeper:lease"  # may only shorten the sealed lease (plan.effective_lease)
FINGERPRINT_TAG = "byok-keeper:fingerprint"  # SHA-256 of the public key, set at creation
MARKER_TAG = "byok-keeper:enrollment"  # creation.enrollment_marker
MANAGED_TAG = "byok-keeper:managed"

MAX_TAG_CHARS = 128
MAX_TAGS_PER_KEY = 20
RESERVED_PREFIXES = ("aliyun", "acs:")
# ASCII letters only: the seed does not say whether other scripts' letters are accepted, and
# a stricter rule than KMS's can only refuse early, never fail late.
_ALLOWED = re.compile(r"[A-Za-z0-9 /\\_.+=:@-]*")
RULE = (
    "at most 128 characters of letters, digits, spaces and / \\ _ - . + = : @ "
    "(keys must not start with aliyun or acs:)"
)


def check_tag(key: str, value: str) -> None:
    """Raise ``InputError`` naming the rule when KMS would refuse the tag ``key=value``."""
    for what, text in (("key", key), ("value", value)):
        if len(text) > MAX_TAG_CHARS or not _ALLOWED.fullmatch(text):
            raise InputError(f"tag {what} {shown(text)} breaks KMS's tag rule: {RULE}")
    if not key.strip():
        raise InputError("a tag key must not be empty")
    if key.lower().startswith(RESERVED_PREFIXES):
        raise InputError(f"tag key {shown(key)} breaks KMS's tag rule: {RULE}")


def check_tags(tags: Mapping[str, str]) -> None:
    """Check every tag of one request and that it stays within the per-key limit."""
    if len(tags) > MAX_TAGS_PER_KEY:
        raise InputError(f"a KMS key carries at most {MAX_TAGS_PER_KEY} tags, not {len(tags)}")
    for key, value in tags.items():
        check_tag(key, value)

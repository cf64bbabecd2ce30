"""The key id rule, in a module that imports nothing heavy.

A KMS key id as byok-keeper accepts it anywhere (CLI arguments, FC events, envelope headers):
an ASCII letter or digit, then up to 127 letters, digits, ``-`` or ``_``, matched in full
(``\\Z``, not ``$``, which also matches before a trailing newline). The vault's envelope module
re-exports both names; the events parser uses them without loading the vault or any SDK.
"""

from __future__ import annotations

import re

from .errors import InputError

KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}\Z")


def check_key_id(key_id: str) -> str:
    if not isinstance(key_id, str) or not KEY_ID_RE.fullmatch(key_id):
        raise InputError(f"invalid key id {key_id!r}: letters, digits, '-' and '_' only")
    return key_id

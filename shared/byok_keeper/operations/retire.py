"""Retiring a key on purpose (``byok-keeper vault retire KEY --reason TEXT``) and bringing it
back (``byok-keeper vault restore KEY``).

A key deleted on purpose would otherwise be an ALERT forever (an enrolled key gone from KMS).
Retiring moves its envelope aside in the vault -- unchanged, still sealed, never unsealed here,
so no seal key is needed -- and from then on the inventory does not list it: plan, sweep,
report, verify and the metrics leave it out, and ``--scan-account`` does not report it as an
EXTERNAL key nobody holds material for. ``vault restore`` puts the same envelope back. Both
write one audit line (``retire``/``restore``: key id, fingerprint, reason, actor, vault).

    check -> move aside (one atomic rename, both directories fsynced) -> audit

What a crash after each step leaves, and what re-running the same command does:

* after ``check`` (the envelope read and its key id matched; the reason checked): nothing has
  changed. A re-run does the same.
* after ``move``: the key is retired (the inventory no longer lists it), but no audit line says
  so yet. A re-run finds it already retired, changes nothing, and writes the audit line
  (``already: true``), so the record exists after any crash once the command is re-run.
* after ``audit``: done. A re-run is the case above: no change, one more audit line.

A rename never leaves the envelope in both places or in neither: there is no window in which
the key is half retired. Restoring is the same table in the other direction. Either way a
destination that already holds different material for the key id is refused (exit 2): never
overwritten.
"""

from __future__ import annotations

from typing import Any

from ..domain.audit import AuditLog
from ..domain.errors import InputError
from ..vault.envelope import EnvelopeError, check_key_id, parse
from ..vault.stores import Store

MAX_REASON = 256


def _check_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON or not reason.isprintable():
        raise InputError(
            f"--reason must be one printable line of 1 to {MAX_REASON} characters (why the key "
            "is retired: it goes into the audit log)"
        )
    return reason


def retire_key(store: Store, audit: AuditLog, key_id: str, *, reason: str, actor: str) -> dict:
    """Move ``key_id``'s envelope aside (see the module). Returns what the audit line says.
    Raises ``InputError`` for a bad reason, ``EnvelopeError`` when the vault has no envelope
    for the key, ``VaultConflict`` when another envelope is in the way."""
    reason = _check_reason(reason)
    return _move(store, audit, check_key_id(key_id), retire=True, reason=reason, actor=actor)


def restore_key(store: Store, audit: AuditLog, key_id: str, *, actor: str) -> dict:
    """Put a retired envelope back into the inventory (see the module)."""
    return _move(store, audit, check_key_id(key_id), retire=False, reason="", actor=actor)


def _move(
    store: Store, audit: AuditLog, key_id: str, *, retire: bool, reason: str, actor: str
) -> dict[str, Any]:
    here, aside = store.read(key_id), store.read_retired(key_id)
    src, dst = (here, aside) if retire else (aside, here)
    already = src is None and dst is not None
    if src is None and dst is None:
        where = "in the vault" if retire else "among the retired envelopes"
        raise EnvelopeError(f"no envelope for {key_id} {where} ({store.uri})")
    if not already:
        store.move(key_id, retire=retire)
    fingerprint = parse(dst if already else src, expected_key_id=key_id).fingerprint
    event = "retire" if retire else "restore"
    record = {"key_id": key_id, "fingerprint": fingerprint, "actor": actor, "vault": store.uri,
              "already": already, **({"reason": reason} if retire else {})}  # fmt: skip
    audit.event(event, **record)
    return {"event": event, **record}

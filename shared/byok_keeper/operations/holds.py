"""Holds: an operator says a key must not be restored (deleting material is sometimes a
deliberate kill switch), and later releases it. The hold is the ``byok-keeper:hold`` tag, its
value the reason; ``reestablish`` reads it right before every import."""

from __future__ import annotations

from ..core.deps import Deps
from ..domain.errors import InputError
from ..domain.model import check_key_id
from ..domain.tags import check_tag
from ..gateway.kms import KeyInfo
from ..planning.plan import HOLD_TAG


def check_hold(key_id: str, reason: str) -> None:
    """Refuse a bad key id or reason before anything is built (``InputError``, exit 2)."""
    check_key_id(key_id)
    if not reason.strip():
        raise InputError("--reason must be non-empty: it is the hold tag's value")
    check_tag(HOLD_TAG, reason)  # the reason is the tag's value


def refuse_pending_deletion(key: KeyInfo, verb: str) -> None:
    """KMS refuses tags on a PendingDeletion key (Rejected.PendingDeletion); say why first."""
    if key.key_state == "PendingDeletion":
        raise InputError(
            f"{key.key_id} is PendingDeletion: KMS refuses to tag it and byok-keeper never "
            f"restores it; cancel the deletion first to {verb} it"
        )


def hold(deps: Deps, key_id: str, reason: str, *, actor: str) -> None:
    """Tag ``key_id`` on hold with ``reason`` and audit it (``check_hold`` first)."""
    refuse_pending_deletion(deps.gateway.describe_key(key_id), "hold")
    deps.gateway.tag_key(key_id, {HOLD_TAG: reason})
    deps.audit.event("hold", key_id=key_id, reason=reason, actor=actor)


def release(deps: Deps, key_id: str, *, actor: str) -> None:
    """Remove ``key_id``'s hold and audit it: the next sweep restores the key if it is due."""
    refuse_pending_deletion(deps.gateway.describe_key(key_id), "release")
    deps.gateway.untag_key(key_id, [HOLD_TAG])
    deps.audit.event("release", key_id=key_id, actor=actor)

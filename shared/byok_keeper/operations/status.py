"""Facts for on-call, changing nothing: one key's full status (``byok-keeper status``). The
fleet's plan (``byok-keeper plan``) is ``sweep.plan_fleet``, beside the sweep it previews."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ..core.deps import Deps
from ..domain.errors import ExecutionError
from ..domain.model import format_kms_time
from ..gateway.kms import KmsApiError
from ..planning.plan import EnvelopeFacts, KeyFacts, decide


def _time(v: Any) -> str:
    return format_kms_time(v) if v else "never"


class KeyUnknown(ExecutionError):
    """Neither KMS (in the region asked) nor the vault knows the key: a typo, or another
    region or vault. Exit 1."""

    def __init__(self, key_id: str, region: str, vault: str) -> None:
        super().__init__(
            f"{key_id} is neither in KMS (region {region or '?'}) nor in the vault {vault}: "
            "check the key id, --region and --vault"
        )


def key_status(deps: Deps, key_id: str) -> dict[str, Any]:
    """Everything known about one key: KMS's view (times formatted), aliases, tags, the
    envelope header (no public key, nothing secret) and what a sweep would decide.

    Raises ``KeyUnknown`` when neither KMS nor the vault has the key."""
    gateway = deps.gateway
    envelope = deps.require_vault().get(key_id)
    try:
        key = gateway.describe_key(key_id)
        tags = gateway.list_tags(key_id)
        aliases = gateway.aliases_of(key_id)
    except KmsApiError as exc:
        if exc.code != "Forbidden.KeyNotFound":
            raise
        key, tags, aliases = None, {}, []
    if key is None and envelope is None:
        raise KeyUnknown(key_id, deps.region, deps.require_vault().uri)
    env = envelope.header if envelope else None
    facts = KeyFacts(
        key_id,
        key,
        envelope is not None,
        EnvelopeFacts.from_header(env) if env else None,
        tags,
    )
    decision = decide(facts, gateway.now(), deps.policy)
    kms_view = (
        {k: (_time(v) if hasattr(v, "tzinfo") else v) for k, v in asdict(key).items()}
        if key
        else None
    )
    envelope_view = {k: v for k, v in asdict(env).items() if k != "public_key_der"} if env else None
    return {
        "key_id": key_id,
        "kms": kms_view,
        "aliases": aliases,
        "tags": tags,
        "envelope": envelope_view,
        "decision": decision.decision,
        "reason": decision.reason,
    }

"""What the vault holds, read without unsealing anything (``byok-keeper vault list``)."""

from __future__ import annotations

from typing import Any

from ..core.factory import build_gateway
from ..core.settings import Settings
from ..gateway.kms import READ_ONLY
from ..vault import build_store
from ..vault.envelope import parse
from ..vault.registry import needs_kms


def vault_store(settings: Settings):
    """The configured vault's store, to read or move envelopes without unsealing anything (no
    seal key needed); a KMS gateway only for a vault that lives in KMS (``kms-secrets:``)."""
    in_kms = needs_kms(settings.vault)
    return build_store(settings.vault or "", build_gateway(settings, READ_ONLY) if in_kms else None)


def list_vault(
    settings: Settings, *, with_aliases: bool = False
) -> tuple[str, list[dict[str, Any]]]:
    """The vault's URI and one row per enrolled key (key id, spec, fingerprint, lease, first
    import; with ``with_aliases`` also its aliases, None for a key KMS no longer has).

    Reads only the vault, unless ``with_aliases`` (one ListAliasesByKeyId per key) or the vault
    itself lives in KMS (``kms-secrets:``)."""
    gateway = (
        build_gateway(settings, READ_ONLY) if with_aliases or needs_kms(settings.vault) else None
    )
    store = build_store(settings.vault or "", gateway)
    if with_aliases:  # only then: listing alone never loads the sweep
        from ..core.sweep import aliases_or_none
    rows = []
    for key_id in store.list_key_ids():
        data = store.read(key_id)
        if data is None:
            continue
        h = parse(data, expected_key_id=key_id).header
        rows.append(
            {
                "key_id": h.key_id,
                "key_spec": h.key_spec,
                "fingerprint": h.fingerprint,
                "lease": h.lease,
                "first_imported_at": h.first_imported_at,
                **({"aliases": aliases_or_none(gateway, h.key_id)} if with_aliases else {}),
            }
        )
    return store.uri, rows

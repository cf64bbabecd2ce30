"""``vault reseal``: every envelope moved from the configured sealer to another one.

This is how the vault's key-encryption key changes (a file key into a token, one token key to
the next, KMS to a token): the imported keys never change, only what seals their copy.

For each envelope, in key-id order:

1. read and parse it; if it is already sealed by the target, open it under the target (so a
   resumed run proves the earlier one finished it) and count it ``already``;
2. open it under the configured (source) sealer: authenticated, fingerprint checked;
3. seal the same header and material under the target, serialise, parse and open that back
   under the target, and compare the fingerprint;
4. unless ``dry_run``: write it over the old one (the store writes atomically: temp file, fsync,
   rename; Secrets Manager: a new version) and read it back to confirm the target's seal;
5. one audit line (``envelope_resealed``) per envelope, whatever happened.

Retired envelopes (``vault retire``: ``retired/KEY.json``) are resealed the same way, after the
inventory, their audit lines marked ``retired: true``: once the old seal key is deleted, a
``vault restore`` must still bring back an envelope the configured sealer opens.

Crash table (what a crash leaves, what a re-run does):

| crash during | left behind                              | re-run                              |
|--------------|------------------------------------------|-------------------------------------|
| steps 1-3    | the old envelope, untouched              | reseals it                          |
| step 4 write | the old or the new envelope, never a mix | reseals it, or finds it ``already`` |
| after 4      | the new envelope                         | ``already`` (opened under target)   |

Until the run completes the vault is mixed: the envelopes done open only under the target and
the others only under the source. So run it with the agent stopped (or accept that the keys
done fail to open for a sweep still on the old sealer), then switch the configuration to the
target. An envelope that fails to open is reported ``failed`` and the others go on; the run
fails (exit 1) if any did, and a re-run picks up where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..domain.audit import AuditLog
from ..domain.errors import ByokError, ConfigError
from . import Vault
from .envelope import EnvelopeError, parse
from .sealers import Sealer


@dataclass
class ResealReport:
    source: str
    target: str
    dry_run: bool
    resealed: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    retired: list[str] = field(default_factory=list)  # retired ids among the three above

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "target": self.target,
            "dry_run": self.dry_run,
            "resealed": self.resealed,
            "already": self.already,
            "failed": self.failed,
            "retired": self.retired,
        }


def _reseal_one(source: Vault, target: Vault, key_id: str, dry_run: bool) -> str:
    envelope = source.get(key_id)
    if envelope is None:
        raise EnvelopeError(f"the envelope for {key_id} disappeared during the run")
    if (envelope.seal.sealer, envelope.seal.key_ref) == (target.sealer.kind, target.sealer.key_ref):
        target.open(envelope).wipe()
        return "already"
    material = source.open(envelope)
    try:
        sealed = target.seal(envelope.header, material)
    finally:
        material.wipe()
    data = sealed.to_bytes()
    back = parse(data, expected_key_id=key_id)
    target.open(back).wipe()  # raises unless it opens and the fingerprint matches
    if dry_run:
        return "resealed"
    source.store.write(key_id, data, envelope.fingerprint)
    stored = target.get(key_id)
    if stored is None or stored.seal != sealed.seal or stored.header != envelope.header:
        raise EnvelopeError(f"reading back the resealed envelope for {key_id} failed")
    return "resealed"


def reseal(
    vault: Vault, to: Sealer, audit: AuditLog, *, dry_run: bool = False, actor: str = ""
) -> ResealReport:
    """Reseal every envelope of ``vault`` (opened with its own sealer) under ``to``, the
    retired ones included."""
    if (vault.sealer.kind, vault.sealer.key_ref) == (to.kind, to.key_ref):
        raise ConfigError(f"the vault is already configured with the {to.kind} key {to.key_ref}")
    report = ResealReport(
        source=f"{vault.sealer.kind} {vault.sealer.key_ref}",
        target=f"{to.kind} {to.key_ref}",
        dry_run=dry_run,
    )
    _reseal_all(vault, Vault(vault.store, to), vault.inventory(), report, audit, actor)
    aside = vault.store.retired_store()
    if aside is not None and vault.retired():
        report.retired = vault.retired()
        source, target = Vault(aside, vault.sealer), Vault(aside, to)
        _reseal_all(source, target, report.retired, report, audit, actor, retired=True)
    return report


def _reseal_all(
    source: Vault,
    target: Vault,
    key_ids: list[str],
    report: ResealReport,
    audit: AuditLog,
    actor: str,
    retired: bool = False,
) -> None:
    """Reseal each envelope, recording it in ``report``, with one audit line each."""
    marks = {"retired": True} if retired else {}
    for key_id in key_ids:
        common = {"source": report.source, "target": report.target, "dry_run": report.dry_run}
        try:
            outcome = _reseal_one(source, target, key_id, report.dry_run)
        except ByokError as exc:
            report.failed[key_id] = str(exc)
            audit.event("envelope_resealed", key_id=key_id, outcome="failed", reason=str(exc),
                        actor=actor, **common, **marks)  # fmt: skip
            continue
        (report.already if outcome == "already" else report.resealed).append(key_id)
        audit.event("envelope_resealed", key_id=key_id, outcome=outcome, actor=actor,
                    **common, **marks)  # fmt: skip

"""Re-establish one key: bring back the identical material, or refuse and say why.

Steps (each named in the outcome and, on the CLI, printed as it happens):

1. ``describe`` -- fresh DescribeKey: the key must exist, be EXTERNAL and not PendingDeletion.
2. ``unseal`` -- fetch the envelope, which must record a completed first import (invariant 2),
   and open it; the material's fingerprint must equal the sealed one.
3. ``identity`` -- when the key is usable (Enabled), GetPublicKey must show the same fingerprint.
4. ``hold`` -- ListResourceTags right before import: a hold set since the plan wins
   (invariant 4); the lease tag, if any, sets the new expiry.
5. ``import`` -- GetParametersForImport, wrap, ImportKeyMaterial (a fresh token and one retry
   if the token expired, after the hold is re-checked once more; ``InvalidKeyMaterial`` stops
   everything: vault and KMS disagree).
6. ``verify`` -- ``verify.check_import``: DescribeKey (state Enabled or Disabled, expiry),
   and for an Enabled key GetPublicKey when step 3 did not run, and a canary through KMS. A
   Disabled key may stay Disabled after the import (the agent never enables a key): it is
   reported ``restored (key stays Disabled)`` with only state and expiry proven.

The material is wiped on every path. Nothing but ImportKeyMaterial changes KMS.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from .enroll import import_once
from .errors import ByokError, InputError, MaterialMismatch
from .kms import KeyInfo, KmsApiError, KmsGateway, KmsUnavailable, NoKmsAccess, format_kms_time
from .lease import Lease
from .plan import HOLD_TAG, EnvelopeFacts, effective_lease
from .vault import Vault
from .verify import NO_CANARY_WHEN_DISABLED, check_import, kms_fingerprint

StepCallback = Callable[[str, str], None]

RESTORED, RENEWED, HELD, SKIPPED, FAILED, DRY_RUN = (
    "restored",
    "renewed",
    "held",
    "skipped",
    "failed",
    "dry-run",
)


@dataclass(frozen=True)
class Outcome:
    key_id: str
    decision: str
    outcome: str
    reason: str
    duration_ms: int
    fingerprint: str = ""
    new_expiry: datetime | None = None
    key_state: str = ""
    request_ids: tuple[str, ...] = field(default=())
    error_code: str = ""
    alert: bool = False
    canary: str = ""
    bad_input: bool = False  # refused for what it was given (tampered envelope...): exit 2

    @property
    def failed(self) -> bool:
        return self.outcome == FAILED

    def to_json(self) -> dict:
        return {
            "key_id": self.key_id,
            "decision": self.decision,
            "outcome": self.outcome,
            "reason": self.reason,
            "duration_ms": self.duration_ms,
            "fingerprint": self.fingerprint,
            "new_expiry": format_kms_time(self.new_expiry) if self.new_expiry else "",
            "key_state": self.key_state,
            "request_ids": list(self.request_ids),
            "error_code": self.error_code,
            "alert": self.alert,
        }


class _Stop(Exception):
    """Ends a re-establishment early with a non-failure outcome (held, skipped)."""

    def __init__(self, outcome: str, reason: str) -> None:
        self.outcome = outcome
        self.reason = reason


def reestablish(
    gateway: KmsGateway,
    vault: Vault,
    key_id: str,
    *,
    decision: str = "REIMPORT",
    override_hold: bool = False,
    dry_run: bool = False,
    lease_override: Lease | None = None,
    on_step: StepCallback | None = None,
) -> Outcome:
    """Re-import the identical material for ``key_id``. Never raises for a per-key failure:
    the outcome says what happened (per-key isolation); only bugs propagate."""
    step = on_step or (lambda name, detail: None)
    started = time.monotonic()
    request_ids: list[str] = []
    fingerprint = ""
    key: KeyInfo | None = None

    def done(outcome: str, reason: str, **kw) -> Outcome:
        return Outcome(
            key_id=key_id,
            decision=decision,
            outcome=outcome,
            reason=reason,
            duration_ms=int((time.monotonic() - started) * 1000),
            fingerprint=fingerprint,
            key_state=kw.pop("key_state", key.key_state if key else ""),
            request_ids=tuple(r for r in request_ids if r),
            **kw,
        )

    material = None
    try:
        key = gateway.describe_key(key_id)
        request_ids.append(key.request_id)
        if key.origin != "EXTERNAL":
            raise InputError(f"{key_id} has Origin {key.origin}; nothing to import")
        if key.key_state == "PendingDeletion":
            raise _Stop(SKIPPED, "key is pending deletion")
        step(
            "describe",
            f"{key.key_state}, expiry {format_kms_time(key.material_expire_time) or 'never'}",
        )

        envelope = vault.get(key_id)
        if envelope is None:
            raise InputError(f"the vault {vault.uri} holds no envelope for {key_id}")
        fingerprint = envelope.fingerprint
        if envelope.header.first_imported_at is None:
            raise InputError(
                f"enrollment of {key_id} is incomplete (no first import recorded); re-run enroll"
            )
        # Authenticate the envelope before acting on anything its header says.
        material = vault.open(envelope)
        if envelope.header.key_spec != key.key_spec:
            raise MaterialMismatch(key_id, f"KMS ({key.key_spec})", fingerprint, "another spec")
        step("unseal", f"fingerprint {fingerprint[:16]}... matches the envelope")

        checked_identity = False
        if key.key_state == "Enabled":
            actual = kms_fingerprint(gateway, key)
            if actual != fingerprint:
                raise MaterialMismatch(key_id, "KMS", fingerprint, actual)
            checked_identity = True
            step("identity", "KMS public key matches the envelope")

        tags = gateway.list_tags(key_id)
        if HOLD_TAG in tags and not override_hold:
            raise _Stop(HELD, f"on hold: {tags[HOLD_TAG] or 'no reason given'}")
        lease, notes = effective_lease(
            EnvelopeFacts(fingerprint, envelope.header.key_spec, envelope.header.lease, True), tags
        )
        lease = lease_override or lease
        if lease is None:
            raise InputError(
                f"no valid lease for {key_id} (envelope says {envelope.header.lease!r})"
            )
        shown = f"no hold; lease {lease}" if HOLD_TAG not in tags else "hold overridden"
        step("hold", "; ".join((shown, *notes)))

        now = gateway.now()
        expire_unix = lease.expire_unix(now)
        new_expiry = lease.expiry_from(now)
        if dry_run:
            return done(
                DRY_RUN,
                f"would import with expiry {format_kms_time(new_expiry) or 'never'}",
                new_expiry=new_expiry,
            )

        def recheck_hold() -> None:
            if HOLD_TAG in gateway.list_tags(key_id) and not override_hold:
                raise _Stop(HELD, "on hold (set while the import token was being replaced)")

        request_ids += import_once(gateway, key, material, expire_unix, before_retry=recheck_hold)
        step("import", f"imported; expiry {format_kms_time(new_expiry) or 'never'}")

        check = check_import(
            gateway,
            key_id,
            expire_unix=expire_unix,
            fingerprint_sealed=fingerprint,
            public_key_der=material.public_key_der,
            identity_checked=checked_identity,
        )
        request_ids.append(check.key.request_id)
        key = check.key
        step("verify", check.proof if check.canary else NO_CANARY_WHEN_DISABLED)
        outcome = RENEWED if decision == "RENEW" else RESTORED
        if check.stays_disabled:
            reason = (
                f"{outcome} (key stays Disabled): identical material imported; only state and "
                "expiry verified (KMS shows no public key and runs no canary for a Disabled key)"
            )
        else:
            reason = f"identical material imported; verified ({check.proof})"
        return done(
            outcome,
            reason,
            new_expiry=key.material_expire_time,
            canary=check.canary,
        )
    except _Stop as stop:
        shown = {HELD: "HOLD", SKIPPED: "SKIP"}[stop.outcome]
        return Outcome(
            key_id,
            shown,
            stop.outcome,
            stop.reason,
            int((time.monotonic() - started) * 1000),
            fingerprint,
            key_state=key.key_state if key else "",
            request_ids=tuple(r for r in request_ids if r),
        )
    except MaterialMismatch as exc:
        return done(FAILED, str(exc), error_code="MaterialMismatch", alert=True)
    except KmsApiError as exc:
        request_ids.append(exc.request_id)
        # KMS refusing the import of material that matched the envelope (a code other than
        # InvalidKeyMaterial, which is a mismatch above) is worth a human's look.
        refused = exc.action == "ImportKeyMaterial" and not exc.retryable
        return done(FAILED, str(exc), error_code=exc.code, alert=refused)
    except KmsUnavailable as exc:
        return done(FAILED, str(exc), error_code="Unavailable")
    except NoKmsAccess:
        raise  # not about this key: the caller stops (one line) or records it per key
    except ByokError as exc:
        bad = isinstance(exc, InputError)
        return done(FAILED, str(exc), error_code=type(exc).__name__, alert=bad, bad_input=bad)
    finally:
        if material is not None:
            material.wipe()

"""Re-establish one key: bring back the identical material, or refuse and say why.

Steps (each named in the outcome and, on the CLI, printed as it happens):

1. ``describe`` -- fresh DescribeKey: the key must exist, be EXTERNAL and not PendingDeletion.
2. ``unseal`` -- unless the operator overrides a hold, the hold tag is read first (a held key's
   envelope is not even fetched); then fetch the envelope, which must record a completed first
   import (invariant 2), and open it; the material's fingerprint must equal the sealed one.
3. ``identity`` -- when the key is usable (Enabled), GetPublicKey must show the same fingerprint.
4. ``hold`` -- ListResourceTags right before import: a hold set since the plan wins
   (invariant 4); the lease tag, if any, sets the new expiry.
5. ``import`` -- ``importing.import_and_verify``: GetParametersForImport, wrap,
   ImportKeyMaterial (a fresh token and one retry if the token expired, after the hold is
   re-checked once more; ``InvalidKeyMaterial`` stops everything: vault and KMS disagree).
6. ``verify`` -- the same call goes on with ``verify.check_import``, the rule enrollment uses:
   DescribeKey (state Enabled or Disabled, expiry), and for an Enabled key GetPublicKey when
   step 3 did not run, and a canary through KMS. A Disabled key may stay Disabled after the
   import (the agent never enables a key): it is reported
   ``restored (key stays Disabled)`` with only state and expiry proven.

The material is wiped on every path. Nothing but ImportKeyMaterial changes KMS.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from ..crypto.material import PrivateKeyMaterial
from ..domain.errors import ByokError, InputError, MaterialMismatch
from ..domain.lease import Lease
from ..domain.model import (
    DecisionKind,
    EnvelopeFacts,
    KeyInfo,
    KeyState,
    OutcomeKind,
    format_kms_time,
)
from ..domain.tags import HOLD_TAG
from ..gateway.kms.errors import KmsApiError, KmsUnavailable, NoKmsAccess
from ..planning.plan import effective_lease
from ..vault import Envelope, Vault
from .importing import import_and_verify
from .verify import NO_CANARY_WHEN_DISABLED, kms_fingerprint

if TYPE_CHECKING:
    from ..gateway.kms.gateway import KmsGateway

StepCallback = Callable[[str, str], None]

RESTORED, RENEWED, HELD, SKIPPED, FAILED, DRY_RUN = (
    OutcomeKind.RESTORED,
    OutcomeKind.RENEWED,
    OutcomeKind.HELD,
    OutcomeKind.SKIPPED,
    OutcomeKind.FAILED,
    OutcomeKind.DRY_RUN,
)

NOT_ATTEMPTED = "not attempted: "  # a skipped due key's reason, before why


@dataclass(frozen=True, slots=True)
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

    @property
    def not_attempted(self) -> bool:
        """A due key left alone because KMS access was lost (``sweep.InlineApplier``)."""
        return self.outcome == SKIPPED and self.reason.startswith(NOT_ATTEMPTED)

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


@dataclass
class _Run:
    """One re-establishment in progress: what a failure outcome reports of what was learnt."""

    key_id: str
    decision: str
    started: float
    request_ids: list[str] = field(default_factory=list)
    fingerprint: str = ""
    key: KeyInfo | None = None

    def done(self, outcome: str, reason: str, **kw) -> Outcome:
        return Outcome(
            key_id=self.key_id,
            decision=self.decision,
            outcome=outcome,
            reason=reason,
            duration_ms=int((time.monotonic() - self.started) * 1000),
            fingerprint=self.fingerprint,
            key_state=kw.pop("key_state", self.key.key_state if self.key else ""),
            request_ids=tuple(r for r in self.request_ids if r),
            **kw,
        )

    def stopped(self, stop: _Stop) -> Outcome:
        shown = {HELD: DecisionKind.HOLD, SKIPPED: DecisionKind.SKIP}[stop.outcome]
        return Outcome(
            self.key_id,
            shown,
            stop.outcome,
            stop.reason,
            int((time.monotonic() - self.started) * 1000),
            self.fingerprint,
            key_state=self.key.key_state if self.key else "",
            request_ids=tuple(r for r in self.request_ids if r),
        )

    def failed(self, exc: ByokError) -> Outcome:
        if isinstance(exc, MaterialMismatch):
            return self.done(FAILED, str(exc), error_code="MaterialMismatch", alert=True)
        if isinstance(exc, KmsApiError):
            self.request_ids.append(exc.request_id)
            # KMS refusing the import of material that matched the envelope (a code other than
            # InvalidKeyMaterial, which is a mismatch above) is worth a human's look.
            refused = exc.action == "ImportKeyMaterial" and not exc.retryable
            return self.done(FAILED, str(exc), error_code=exc.code, alert=refused)
        if isinstance(exc, KmsUnavailable):
            return self.done(FAILED, str(exc), error_code="Unavailable")
        bad = isinstance(exc, InputError)
        return self.done(FAILED, str(exc), error_code=type(exc).__name__, alert=bad, bad_input=bad)


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
    before_import: Callable[[], None] | None = None,
) -> Outcome:
    """Re-import the identical material for ``key_id``. Never raises for a per-key failure:
    the outcome says what happened (per-key isolation); only bugs propagate.

    ``before_import`` runs once, after every check and right before the first
    GetParametersForImport/ImportKeyMaterial (never in a dry run): callers write their
    "importing" audit line there, so a run killed right after KMS took the material still
    leaves a trace of it (issue 25)."""
    step = on_step or (lambda name, detail: None)
    run = _Run(key_id, decision, time.monotonic())
    material = None
    try:
        key = run.key = _describe(gateway, run, step)
        if not override_hold:  # a held key is never unsealed (issue 25)
            _stop_if_held(gateway, key_id)
        envelope, material = _unseal(vault, run, key, step)
        checked_identity = _check_identity(gateway, run, key, step)
        lease = _hold_and_lease(gateway, run, envelope, override_hold, lease_override, step)
        now = gateway.now()
        expire_unix = lease.expire_unix(now)
        new_expiry = lease.expiry_from(now)
        if dry_run:
            return run.done(
                DRY_RUN,
                f"would import with expiry {format_kms_time(new_expiry) or 'never'}",
                new_expiry=new_expiry,
            )
        expiry = (expire_unix, new_expiry)
        if before_import is not None:
            before_import()
        return _import(gateway, run, material, expiry, override_hold, checked_identity, step)
    except _Stop as stop:
        return run.stopped(stop)
    except NoKmsAccess:
        raise  # not about this key: the caller stops (one line) or records it per key
    except ByokError as exc:
        return run.failed(exc)
    finally:
        if material is not None:
            material.wipe()


def _describe(gateway: KmsGateway, run: _Run, step: StepCallback) -> KeyInfo:
    """Step 1: a fresh DescribeKey; the key must be EXTERNAL and not PendingDeletion."""
    key = gateway.describe_key(run.key_id)
    run.request_ids.append(key.request_id)
    run.key = key
    if key.origin != "EXTERNAL":
        raise InputError(f"{run.key_id} has Origin {key.origin}; nothing to import")
    if key.key_state == KeyState.PENDING_DELETION:
        raise _Stop(SKIPPED, "key is pending deletion")
    step(
        "describe",
        f"{key.key_state}, expiry {format_kms_time(key.material_expire_time) or 'never'}",
    )
    return key


def _stop_if_held(gateway: KmsGateway, key_id: str) -> None:
    """Before unsealing: a held key's material is not even opened (no Decrypt of its data
    key, no GetSecretValue of its envelope). The hold is read again right before the import."""
    tags = gateway.list_tags(key_id)
    if HOLD_TAG in tags:
        raise _Stop(HELD, f"on hold: {tags[HOLD_TAG] or 'no reason given'}")


def _unseal(
    vault: Vault, run: _Run, key: KeyInfo, step: StepCallback
) -> tuple[Envelope, PrivateKeyMaterial]:
    """Step 2: the envelope must record a completed first import (invariant 2), and open."""
    key_id = run.key_id
    envelope = vault.get(key_id)
    if envelope is None:
        raise InputError(f"the vault {vault.uri} holds no envelope for {key_id}")
    run.fingerprint = envelope.fingerprint
    if envelope.header.first_imported_at is None:
        raise InputError(
            f"enrollment of {key_id} is incomplete (no first import recorded); re-run enroll"
        )
    # Authenticate the envelope before acting on anything its header says.
    material = vault.open(envelope)
    try:
        if envelope.header.key_spec != key.key_spec:
            raise MaterialMismatch(key_id, f"KMS ({key.key_spec})", run.fingerprint, "another spec")
    except MaterialMismatch:
        material.wipe()
        raise
    step("unseal", f"fingerprint {run.fingerprint[:16]}... matches the envelope")
    return envelope, material


def _check_identity(gateway: KmsGateway, run: _Run, key: KeyInfo, step: StepCallback) -> bool:
    """Step 3: for an Enabled key, KMS's public key must be the envelope's. True if checked."""
    if key.key_state != KeyState.ENABLED:
        return False
    actual = kms_fingerprint(gateway, key)
    if actual != run.fingerprint:
        raise MaterialMismatch(run.key_id, "KMS", run.fingerprint, actual)
    step("identity", "KMS public key matches the envelope")
    return True


def _hold_and_lease(
    gateway: KmsGateway,
    run: _Run,
    envelope: Envelope,
    override_hold: bool,
    lease_override: Lease | None,
    step: StepCallback,
) -> Lease:
    """Step 4: a hold set since the plan wins (invariant 4); the lease tag may shorten the
    sealed lease."""
    key_id = run.key_id
    tags = gateway.list_tags(key_id)
    if HOLD_TAG in tags and not override_hold:
        raise _Stop(HELD, f"on hold: {tags[HOLD_TAG] or 'no reason given'}")
    lease, notes = effective_lease(EnvelopeFacts.from_header(envelope.header), tags)
    lease = lease_override or lease
    if lease is None:
        raise InputError(f"no valid lease for {key_id} (envelope says {envelope.header.lease!r})")
    shown = f"no hold; lease {lease}" if HOLD_TAG not in tags else "hold overridden"
    step("hold", "; ".join((shown, *notes)))
    return lease


def _import(
    gateway: KmsGateway,
    run: _Run,
    material: PrivateKeyMaterial,
    expiry: tuple[int, datetime | None],
    override_hold: bool,
    checked_identity: bool,
    step: StepCallback,
) -> Outcome:
    """Steps 5 and 6: import, then verify with the one rule (``importing``). ``expiry``: the
    new expiry as ImportKeyMaterial takes it (Unix seconds, 0 = never) and as a time."""
    assert run.key is not None
    key_id = run.key_id
    expire_unix, new_expiry = expiry

    def recheck_hold() -> None:
        if HOLD_TAG in gateway.list_tags(key_id) and not override_hold:
            raise _Stop(HELD, "on hold (set while the import token was being replaced)")

    def imported(ids: list[str]) -> None:
        run.request_ids.extend(ids)
        step("import", f"imported; expiry {format_kms_time(new_expiry) or 'never'}")

    check = import_and_verify(
        gateway,
        run.key,
        material,
        expire_unix,
        fingerprint_sealed=run.fingerprint,
        before_retry=recheck_hold,
        identity_checked=checked_identity,
        on_imported=imported,
    ).check
    run.request_ids.append(check.key.request_id)
    run.key = check.key
    step("verify", check.proof if check.canary else NO_CANARY_WHEN_DISABLED)
    outcome = RENEWED if run.decision == "RENEW" else RESTORED
    if check.stays_disabled:
        reason = (
            f"{outcome} (key stays Disabled): identical material imported; only state and "
            "expiry verified (KMS shows no public key and runs no canary for a Disabled key)"
        )
    else:
        reason = f"identical material imported; verified ({check.proof})"
    return run.done(outcome, reason, new_expiry=check.key.material_expire_time, canary=check.canary)

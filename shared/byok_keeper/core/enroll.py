"""Enrollment: the one moment a key's material enters KMS for the first time.

In KMS the first import is permanent, so the order is fixed (invariant 3, sealed before
imported) and every step can be re-run:

    validate -> create (or look up) -> alias -> seal+write -> read back and open -> import
    -> verify -> record first import -> tag

What a crash after each step leaves, and what re-running the same command does:

* after ``create``: an EXTERNAL key in PendingImport, tagged ``byok-keeper:fingerprint`` and
  ``byok-keeper:enrollment`` (the marker, below), and no envelope. Nothing is in KMS.
  ``enroll --create`` with the same material and request finds that key by its tags and carries
  on; no second key is made. It resumes only a key whose marker verifies and whose spec, usage,
  instance (and protection level, when requested) equal the request; any other key carrying the
  fingerprint tag (anyone can compute a fingerprint from the public key) is refused as
  ``SuspiciousKey`` and never receives material: delete it, or find out who made it.
  The key carries the operator's ``--tag`` values, description and key policy from
  CreateKey itself.
* after ``create``, before ``alias``: the key has no alias yet. A re-run finds the key and adds
  the alias; an alias that meanwhile names another key is refused (exit 2), never moved.
* after ``seal`` (envelope written and checked): the vault holds the material, KMS does not. The
  planner reports the key as ALERT (enrollment incomplete); a re-run imports.
* after ``import``: KMS holds the material and so does the vault, but the envelope does not yet
  record the first import, so the agent will not re-import it (invariant 2) and the planner
  reports ALERT. A re-run sees the key Enabled with the same public key, imports again (harmless:
  identical material) and records.
* after ``record``: only the ``byok-keeper:managed`` and lease tags are missing; a re-run adds
  them. The agent does not need them (the vault is the inventory).

Never: material in KMS that the vault does not hold; material in a key this enrollment did
not create (or the operator did not name with ``--key-id``).

``--create`` (the request, its checks, the marker, finding or creating the key) lives in
``creation.py``; import-then-verify, shared with re-establishment, in ``importing.py``. Their
names stay importable from here.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from ..crypto.material import PrivateKeyMaterial
from ..crypto.specs import HARDWARE_ONLY, SPECS_BY_PROTECTION_LEVEL
from ..domain.errors import InputError, MaterialMismatch
from ..domain.lease import Lease
from ..domain.model import KeyInfo, KeyState, format_kms_time
from ..domain.tags import FINGERPRINT_TAG, LEASE_TAG, MANAGED_TAG, MARKER_TAG  # noqa: F401
from ..gateway.kms.errors import KmsApiError
from ..gateway.kms.types import ImportParameters
from ..vault import Envelope, Header, Vault, VaultConflict
from .creation import (  # noqa: F401  (re-exported: enroll's names before the split)
    MAX_POLICY_BYTES,
    OWN_TAGS,
    CreateRequest,
    SuspiciousKey,
    check_console_fields,
    check_create_request,
    create_or_find,
    enrollment_marker,
)
from .importing import MATERIAL_REFUSED, import_and_verify, import_once  # noqa: F401
from .verify import NO_CANARY_WHEN_DISABLED, verify_identity

if TYPE_CHECKING:
    from ..gateway.kms.gateway import KmsGateway

StepCallback = Callable[[str, dict], None]


@dataclass(frozen=True)
class EnrollResult:
    key_id: str
    fingerprint: str
    key_spec: str
    key_usage: str
    key_state: str
    material_expire_time: datetime | None
    lease: str
    vault: str
    created: bool
    adopted: bool
    resumed: bool
    canary: str
    request_ids: tuple[str, ...] = field(default=())

    def to_json(self) -> dict:
        return {
            "key_id": self.key_id,
            "fingerprint": self.fingerprint,
            "key_spec": self.key_spec,
            "key_usage": self.key_usage,
            "key_state": self.key_state,
            "material_expire_time": format_kms_time(self.material_expire_time),
            "lease": self.lease,
            "vault": self.vault,
            "created": self.created,
            "adopted": self.adopted,
            "resumed": self.resumed,
            "canary": self.canary,
            "request_ids": list(self.request_ids),
        }


def account_from_arn(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 4 else ""


def enroll(
    gateway: KmsGateway,
    vault: Vault,
    material: PrivateKeyMaterial,
    *,
    lease: Lease,
    key_id: str | None = None,
    create: CreateRequest | None = None,
    on_step: StepCallback | None = None,
) -> EnrollResult:
    """Enroll ``material`` for an existing EXTERNAL key (``key_id``) or a new one (``create``).

    Raises ``InputError`` (exit 2) for anything the operator must change, ``MaterialMismatch``
    when KMS or the vault holds other material, ``KmsApiError``/``KmsUnavailable`` otherwise.
    """
    step = on_step or (lambda name, detail: None)
    if (key_id is None) == (create is None):
        raise InputError("give either an existing key id or --create, not both")
    fp = material.fingerprint

    # -- validate, then create (or find) the key --
    if create is not None:
        check_create_request(gateway, material, create)
    step("validate", {"key_spec": material.key_spec, "fingerprint": fp})
    created = False
    if create is not None:
        key, created = create_or_find(gateway, material, create, step)
    else:
        assert key_id is not None
        key = gateway.describe_key(key_id)
    _check_key(key, material)
    existing = _existing_envelope(vault, key.key_id, fp)
    adopted = _check_holds_this_material(gateway, key, material) and existing is None
    params = _import_parameters(gateway, key, material)

    # -- seal, write, read back (invariant 3) --
    stored = vault.put(_header(gateway, key, material, existing, lease), material)
    step("seal", {"vault": vault.uri, "resumed": existing is not None})

    # -- first import (or a harmless identical re-import), verified by the one rule --
    expire_unix = lease.expire_unix(gateway.now())
    imported = import_and_verify(
        gateway,
        key,
        material,
        expire_unix,
        fingerprint_sealed=fp,
        params=params,
        on_imported=lambda ids: step("import", {"expire_unix": expire_unix}),
    )
    check = imported.check
    key = check.key
    step("verify", {"canary": check.canary or NO_CANARY_WHEN_DISABLED, "key_state": key.key_state})

    # -- record the first import in the envelope, then tag --
    if stored.header.first_imported_at is None:
        vault.put(stored.header.with_first_import(format_kms_time(gateway.now())), material)
    step("record", {})
    gateway.tag_key(key.key_id, {MANAGED_TAG: "true", LEASE_TAG: str(lease)})
    step("tag", {})

    return EnrollResult(
        key_id=key.key_id,
        fingerprint=fp,
        key_spec=key.key_spec,
        key_usage=key.key_usage,
        key_state=key.key_state,
        material_expire_time=key.material_expire_time,
        lease=str(lease),
        vault=vault.uri,
        created=created,
        adopted=adopted,
        # found again by ``--create``, or an envelope already there: an earlier run's work
        resumed=not created and (create is not None or existing is not None),
        canary=check.canary,
        request_ids=tuple(r for r in imported.request_ids if r),
    )


def _existing_envelope(vault: Vault, key_id: str, fp: str) -> Envelope | None:
    """The envelope an earlier run wrote for this key, opened (authenticated) before anything
    in its header is reused. Raises ``VaultConflict`` when it holds other material."""
    existing = vault.get(key_id)
    if existing is not None:
        _authenticate(vault, existing)
    if existing is not None and existing.fingerprint != fp:
        raise VaultConflict(
            f"the vault already holds different material for {key_id}; refusing to enroll "
            "other material over it"
        )
    return existing


def _check_holds_this_material(
    gateway: KmsGateway, key: KeyInfo, material: PrivateKeyMaterial
) -> bool:
    """For a key that already holds material: prove it is this material (public key and
    canary). True when the key holds material (Enabled), False when it awaits its first import.
    Raises ``InputError`` for a Disabled key or other material."""
    if key.key_state not in (KeyState.ENABLED, KeyState.DISABLED):
        return False
    if key.key_state == KeyState.DISABLED:
        raise InputError(
            f"{key.key_id} is Disabled and already holds material: its public key cannot "
            "be read to prove the material matches; enable the key, then enroll"
        )
    fp = material.fingerprint
    try:
        verify_identity(gateway, key, fp, material.public_key_der)
    except MaterialMismatch as exc:
        raise InputError(
            f"{key.key_id} already holds other material (KMS public key fingerprint "
            f"{exc.actual[:16]}..., given material {fp[:16]}...); refusing to adopt it"
        ) from None
    return True


def _header(
    gateway: KmsGateway,
    key: KeyInfo,
    material: PrivateKeyMaterial,
    existing: Envelope | None,
    lease: Lease,
) -> Header:
    """The header to seal: the existing one (with this lease), or a new one."""
    if existing is not None:
        header = existing.header
        return header if header.lease == str(lease) else replace(header, lease=str(lease))
    return Header(
        key_id=key.key_id,
        region=gateway.region,
        account_id=account_from_arn(key.arn),
        key_spec=material.key_spec,
        key_usage=key.key_usage,
        protection_level=key.protection_level,
        public_key_der=base64.b64encode(material.public_key_der).decode(),
        fingerprint=material.fingerprint,
        material_encoding=material.spec.material_encoding,
        lease=str(lease),
        enrolled_at=format_kms_time(gateway.now()),
        first_imported_at=None,
    )


def _authenticate(vault: Vault, envelope: Envelope) -> None:
    """Open an existing envelope before anything in its header is reused: a header that does
    not authenticate (tampered, or sealed under another key) is never carried into a new seal.
    Raises ``InputError`` (exit 2) naming the envelope; nothing is imported."""
    try:
        vault.open(envelope).wipe()
    except (InputError, MaterialMismatch) as exc:
        raise InputError(
            f"the existing envelope for {envelope.key_id} in {vault.uri} does not open ({exc}); "
            "refusing to enroll over it: inspect and remove it by hand"
        ) from None


def _import_parameters(
    gateway: KmsGateway, key: KeyInfo, material: PrivateKeyMaterial
) -> ImportParameters | None:
    """For a key awaiting its first import, ask for import parameters before sealing: some
    hardware instances refuse imported asymmetric material (docs/FIDELITY.md), and that is the
    operator's to change, not a reason to leave an envelope behind. The token serves the
    import (24 hours)."""
    if key.key_state != KeyState.PENDING_IMPORT:
        return None
    try:
        return gateway.get_parameters_for_import(
            key.key_id, material.spec.wrapping_algorithm, material.spec.wrapping_key_spec
        )
    except KmsApiError as exc:
        if exc.code != "Rejected.UnsupportedOperation":
            raise
        if key.key_spec in HARDWARE_ONLY:  # RSA_4096, EC_SM2: no instance may take them
            what = (
                f"{key.key_spec} keys live only in hardware instances, and this one takes no "
                "imported asymmetric material: choose a spec a software instance holds "
                f"({', '.join(SPECS_BY_PROTECTION_LEVEL['SOFTWARE'])})"
            )
        else:
            what = "enroll into a software instance, which takes imported asymmetric keys"
        raise InputError(
            f"KMS refuses imported {key.key_spec} material for {key.key_id} in instance "
            f"{key.instance_id or '-'} ({exc.server_message or exc.code}); {what}; nothing "
            "was sealed and the key stays in PendingImport"
        ) from None


def _check_key(key: KeyInfo, material: PrivateKeyMaterial) -> None:
    if key.origin != "EXTERNAL":
        raise InputError(
            f"{key.key_id} has Origin {key.origin}; only EXTERNAL keys take imported material"
        )
    if key.key_spec != material.key_spec:
        raise InputError(f"{key.key_id} is {key.key_spec}; the material is {material.key_spec}")
    if key.key_state == KeyState.PENDING_DELETION:
        raise InputError(f"{key.key_id} is PendingDeletion; cancel the deletion first")

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

The marker is HMAC-SHA256 over the fingerprint, spec, usage and instance, keyed by a SHA-256 of
the private material itself: only a holder of the private key can compute it (a seal-key HMAC
would not work with a KMS sealer, which has no local key). Tags are readable, so the marker can
be copied to another key; that copy either differs in spec, usage or instance, or makes a second
candidate, and both are refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from .errors import InputError, MaterialMismatch
from .kms import ImportParameters, KeyInfo, KmsApiError, KmsGateway, format_kms_time
from .lease import Lease
from .material import PrivateKeyMaterial, wipe
from .plan import LEASE_TAG
from .specs import HSM, SPECS_BY_PROTECTION_LEVEL, KeySpec
from .specs import key_spec as lookup_spec
from .tags import MAX_TAGS_PER_KEY, check_tags
from .vault import Envelope, Header, Vault, VaultConflict
from .verify import NO_CANARY_WHEN_DISABLED, check_import, verify_identity
from .wrapping import wrap_key_material

FINGERPRINT_TAG = "byok-keeper:fingerprint"
MARKER_TAG = "byok-keeper:enrollment"
MANAGED_TAG = "byok-keeper:managed"

StepCallback = Callable[[str, dict], None]
# How KMS refuses material other than the key's first: InvalidKeyMaterial is the likely code,
# but it is not documented (docs/FIDELITY.md), so the generic refusals count as well. The
# agent has already checked the material against the sealed fingerprint when it gets here.
MATERIAL_REFUSED = frozenset(
    {"InvalidKeyMaterial", "InvalidParameter", "Rejected.UnsupportedOperation"}
)


@dataclass(frozen=True)
class CreateRequest:
    """What ``enroll --create`` asks KMS for, with the console's optional fields."""

    key_spec: str
    key_usage: str
    instance_id: str
    description: str = ""
    alias: str | None = None  # alias/NAME, created once the key exists
    tags: dict[str, str] = field(default_factory=dict)  # the operator's own tags
    policy: str | None = None  # the key policy (JSON text), as CreateKey's Policy
    protection_level: str = ""  # expected (the instance decides it); "" = whatever it gives


class SuspiciousKey(InputError):
    """A key carries this material's fingerprint tag but this enrollment did not create it (or
    it does not fit the request): it may have been planted to receive the material."""


def enrollment_marker(material: PrivateKeyMaterial, create: CreateRequest) -> str:
    """The ``byok-keeper:enrollment`` tag value: nobody without the private key can compute it."""
    # Hash the material in place (no bytes copy of it); the digest is the HMAC key.
    digest = hashlib.sha256(b"byok-keeper enrollment marker/1\0")
    digest.update(material.import_bytes())
    key = bytearray(digest.digest())
    try:
        message = "\0".join(
            (material.fingerprint, create.key_spec, create.key_usage, create.instance_id)
        ).encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()
    finally:
        wipe(key)


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


def import_once(
    gateway: KmsGateway,
    key: KeyInfo,
    material: PrivateKeyMaterial,
    expire_unix: int,
    params: ImportParameters | None = None,
    *,
    before_retry: Callable[[], None] | None = None,
) -> list[str]:
    """GetParametersForImport -> wrap -> ImportKeyMaterial; a fresh token once if it expired.

    ``params``: import parameters already fetched for this key (used on the first attempt).
    ``before_retry`` runs before that second attempt and may raise to stop it: re-establishing
    passes the hold re-check, so a hold set while the first token was spent still wins.
    Returns the request ids. A refusal of the material (``MATERIAL_REFUSED``) becomes
    ``MaterialMismatch``: KMS holds other material for this key, and no retry can change that.
    """
    spec = material.spec
    request_ids: list[str] = []
    for attempt in (1, 2):
        if params is None or attempt > 1:
            params = gateway.get_parameters_for_import(
                key.key_id, spec.wrapping_algorithm, spec.wrapping_key_spec
            )
        request_ids.append(params.request_id)
        wrapped = wrap_key_material(
            material.import_bytes(), params.public_key, spec.wrapping_algorithm
        )
        try:
            request_ids.append(
                gateway.import_key_material(key.key_id, wrapped, params.import_token, expire_unix)
            )
            return request_ids
        except KmsApiError as exc:
            if exc.code in MATERIAL_REFUSED:
                raise MaterialMismatch(
                    key.key_id,
                    f"KMS (it refused the material with {exc.code}: the key is bound to other "
                    "material)",
                    material.fingerprint,
                    "unknown",
                ) from None
            if exc.code in ("ExpiredImportToken", "InvalidImportToken") and attempt == 1:
                if before_retry is not None:
                    before_retry()
                continue
            raise
    raise AssertionError("unreachable")  # pragma: no cover


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
    created = resumed = adopted = False

    # -- validate --
    if create is not None:
        spec = lookup_spec(create.key_spec)
        if spec.name != material.key_spec:
            raise InputError(
                f"--key-spec {spec.name} does not fit the material ({material.key_spec})"
            )
        if create.key_usage not in spec.usages:
            raise InputError(
                f"{spec.name} keys support usage {' or '.join(spec.usages)}, not {create.key_usage}"
            )
        if not create.instance_id:
            raise InputError("--instance (a KMS instance id, kst-...) is required with --create")
        if create.protection_level and not spec.allows_protection_level(create.protection_level):
            raise InputError(f"{spec.name} keys cannot be {create.protection_level}")
        check_console_fields(create)
        _check_instance(gateway, spec, create.instance_id)
    step("validate", {"key_spec": material.key_spec, "fingerprint": fp})

    # -- create, or find the key --
    if create is not None:
        marker = enrollment_marker(material, create)
        key = _find_created(gateway, fp, marker, create)
        if key is None:
            _alias_target(gateway, create.alias, None)  # refuse a taken alias before creating
            key = gateway.create_key(
                key_spec=create.key_spec,
                key_usage=create.key_usage,
                instance_id=create.instance_id,
                description=create.description or "managed by byok-keeper",
                tags={**create.tags, FINGERPRINT_TAG: fp, MARKER_TAG: marker},
                policy=create.policy,
            )
            created = True
            if _mismatches(key, {MARKER_TAG: marker}, marker, create):
                raise InputError(
                    f"created {key.key_id}, but it does not fit the request "
                    f"({'; '.join(_mismatches(key, {MARKER_TAG: marker}, marker, create))}); "
                    "nothing was sealed or imported: schedule its deletion"
                )
        else:
            resumed = True
        step("create", {"key_id": key.key_id, "created": created})
        if create.alias and _alias_target(gateway, create.alias, key.key_id) is None:
            gateway.create_alias(create.alias, key.key_id)
            step("alias", {"alias": create.alias})
    else:
        assert key_id is not None
        key = gateway.describe_key(key_id)
    _check_key(key, material)

    existing = vault.get(key.key_id)
    if existing is not None:
        _authenticate(vault, existing)
    if existing is not None and existing.fingerprint != fp:
        raise VaultConflict(
            f"the vault already holds different material for {key.key_id}; refusing to enroll "
            "other material over it"
        )
    if key.key_state in ("Enabled", "Disabled"):
        if key.key_state == "Disabled":
            raise InputError(
                f"{key.key_id} is Disabled and already holds material: its public key cannot "
                "be read to prove the material matches; enable the key, then enroll"
            )
        try:
            verify_identity(gateway, key, fp, material.public_key_der)
        except MaterialMismatch as exc:
            raise InputError(
                f"{key.key_id} already holds other material (KMS public key fingerprint "
                f"{exc.actual[:16]}..., given material {fp[:16]}...); refusing to adopt it"
            ) from None
        adopted = existing is None
        resumed = resumed or existing is not None

    params = _import_parameters(gateway, key, material)

    # -- seal, write, read back (invariant 3) --
    now = gateway.now()
    if existing is not None:
        resumed = True
        header = existing.header
        if header.lease != str(lease):
            header = replace(header, lease=str(lease))
    else:
        header = Header(
            key_id=key.key_id,
            region=gateway.region,
            account_id=account_from_arn(key.arn),
            key_spec=material.key_spec,
            key_usage=key.key_usage,
            protection_level=key.protection_level,
            public_key_der=base64.b64encode(material.public_key_der).decode(),
            fingerprint=fp,
            material_encoding=material.spec.material_encoding,
            lease=str(lease),
            enrolled_at=format_kms_time(now),
            first_imported_at=None,
        )
    stored = vault.put(header, material)
    step("seal", {"vault": vault.uri, "resumed": existing is not None})

    # -- first import (or a harmless identical re-import) --
    expire_unix = lease.expire_unix(gateway.now())
    request_ids = import_once(gateway, key, material, expire_unix, params)
    step("import", {"expire_unix": expire_unix})

    # -- verify (the same rule as re-establishment) --
    check = check_import(
        gateway,
        key.key_id,
        expire_unix=expire_unix,
        fingerprint_sealed=fp,
        public_key_der=material.public_key_der,
    )
    key = check.key
    step("verify", {"canary": check.canary or NO_CANARY_WHEN_DISABLED, "key_state": key.key_state})

    # -- record the first import in the envelope --
    if stored.header.first_imported_at is None:
        vault.put(stored.header.with_first_import(format_kms_time(gateway.now())), material)
    step("record", {})

    # -- tag --
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
        resumed=resumed and not created,
        canary=check.canary,
        request_ids=tuple(r for r in request_ids if r),
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


def _find_created(
    gateway: KmsGateway, fp: str, marker: str, create: CreateRequest
) -> KeyInfo | None:
    """The key an earlier ``enroll --create`` of this material and request made, if any.

    Raises ``SuspiciousKey`` (an alert) when any live key carrying the fingerprint tag was not
    made by this enrollment, or more than one was: none of them receives material.
    """
    candidates = gateway.list_keys(
        filters=[
            {"Key": "TagKey", "Values": [FINGERPRINT_TAG]},
            {"Key": "TagValue", "Values": [fp]},
        ],
        max_keys=100,
    )
    ours: list[KeyInfo] = []
    suspicious: list[str] = []
    for candidate in candidates:
        tags = gateway.list_tags(candidate)
        if tags.get(FINGERPRINT_TAG) != fp:
            continue
        key = gateway.describe_key(candidate)
        if key.key_state == "PendingDeletion":
            continue
        problems = _mismatches(key, tags, marker, create)
        if problems:
            suspicious.append(f"{key.key_id} ({', '.join(problems)})")
        else:
            ours.append(key)
    if len(ours) > 1:
        suspicious += [f"{k.key_id} (a second key with this enrollment's marker)" for k in ours]
    if suspicious:
        raise SuspiciousKey(
            f"ALERT: {'; '.join(suspicious)} carry this material's fingerprint tag but were not "
            "created by this enrollment (the tag is computable from the public key: someone may "
            "have planted them to receive the material); nothing was sealed or imported: find "
            "out who made them and schedule their deletion, then re-run"
        )
    return ours[0] if ours else None


def _mismatches(
    key: KeyInfo, tags: dict[str, str], marker: str, create: CreateRequest
) -> list[str]:
    """Why ``key`` is not the key this enrollment created (empty: it is)."""
    problems = []
    if not hmac.compare_digest(tags.get(MARKER_TAG, ""), marker):
        problems.append("no valid enrollment marker")
    if key.origin != "EXTERNAL":
        problems.append(f"Origin {key.origin}")
    wanted = {
        "spec": (key.key_spec, create.key_spec),
        "usage": (key.key_usage, create.key_usage),
        "instance": (key.instance_id, create.instance_id),
    }
    if create.protection_level:
        wanted["protection level"] = (key.protection_level, create.protection_level)
    for name, (actual, expected) in wanted.items():
        if actual != expected:
            problems.append(f"{name} {actual or '-'}, requested {expected}")
    if not lookup_spec(create.key_spec).allows_protection_level(key.protection_level):
        problems.append(f"protection level {key.protection_level or '-'}")
    return problems


# byok-keeper's own tags on a key it enrolls: the console's 20-tag limit counts them too.
OWN_TAGS = (FINGERPRINT_TAG, MARKER_TAG, MANAGED_TAG, LEASE_TAG)
MAX_POLICY_BYTES = 32_768  # CreateKey's Policy, per the SDK model
_ALIAS = re.compile(r"alias/[A-Za-z0-9_/-]+")


def check_console_fields(create: CreateRequest) -> None:
    """The seed's rules for what the console takes at key creation, checked before anything
    is created: the alias (``alias/`` then letters, digits, ``_ - /``; at most 255 characters;
    not ``alias/acs...``), the tags (KMS's tag rule; at most 20 with byok-keeper's own; none
    in byok-keeper's namespace) and the key policy (a JSON object with a Statement list, at
    most 32,768 bytes). Raises ``InputError``."""
    alias = create.alias
    if alias is not None and (
        not _ALIAS.fullmatch(alias) or len(alias) > 255 or alias.startswith("alias/acs")
    ):
        raise InputError(
            f"--alias {alias!r} is not an alias KMS accepts: alias/ followed by letters, "
            "digits, _ - / (at most 255 characters; alias/acs... is reserved)"
        )
    own = [k for k in create.tags if k.startswith("byok-keeper:")]
    if own:
        raise InputError(f"--tag {own[0]}: the byok-keeper: prefix is byok-keeper's own")
    if len(create.tags) + len(OWN_TAGS) > MAX_TAGS_PER_KEY:
        raise InputError(
            f"at most {MAX_TAGS_PER_KEY - len(OWN_TAGS)} --tag values: a KMS key carries at "
            f"most {MAX_TAGS_PER_KEY} tags and byok-keeper adds {len(OWN_TAGS)} of its own"
        )
    check_tags(create.tags)
    if create.policy is not None:
        if len(create.policy.encode()) > MAX_POLICY_BYTES:
            raise InputError(f"the key policy is over KMS's {MAX_POLICY_BYTES} bytes")
        try:
            doc = json.loads(create.policy)
        except ValueError:
            raise InputError("the key policy is not JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("Statement"), list):
            raise InputError('the key policy must be a JSON object with a "Statement" list')


def _alias_target(gateway: KmsGateway, alias: str | None, key_id: str | None) -> str | None:
    """Which key ``alias`` names now (DescribeKey takes an alias); None when it is free.

    An alias naming another key than ``key_id`` is refused, never moved (``InputError``)."""
    if not alias:
        return None
    try:
        target = gateway.describe_key(alias).key_id
    except KmsApiError as exc:
        if exc.code == "Forbidden.KeyNotFound":
            return None
        raise
    if target != key_id:
        raise InputError(
            f"the alias {alias} already names {target}; byok-keeper never moves an alias: "
            "choose another, or remove it yourself first"
        )
    return target


def _import_parameters(
    gateway: KmsGateway, key: KeyInfo, material: PrivateKeyMaterial
) -> ImportParameters | None:
    """For a key awaiting its first import, ask for import parameters before sealing: some
    hardware instances refuse imported asymmetric material (docs/FIDELITY.md), and that is the
    operator's to change, not a reason to leave an envelope behind. The token serves the
    import (24 hours)."""
    if key.key_state != "PendingImport":
        return None
    try:
        return gateway.get_parameters_for_import(
            key.key_id, material.spec.wrapping_algorithm, material.spec.wrapping_key_spec
        )
    except KmsApiError as exc:
        if exc.code != "Rejected.UnsupportedOperation":
            raise
        raise InputError(
            f"KMS refuses imported {key.key_spec} material for {key.key_id} in instance "
            f"{key.instance_id or '-'} ({exc.server_message or exc.code}); enroll into an "
            "instance that takes imported asymmetric keys"
        ) from None


def _check_instance(gateway: KmsGateway, spec: KeySpec, instance_id: str) -> None:
    """Refuse, before anything is created, a spec the instance's type cannot hold (the seed:
    software instances take RSA_2048/3072, EC_P256/P256K; hardware adds RSA_4096, EC_SM2).

    When KMS does not say what the instance is (an unknown ProductVersion, no permission for
    GetKmsInstance), CreateKey decides."""
    try:
        level = gateway.instance_protection_level(instance_id)
    except KmsApiError as exc:
        if exc.code == "Forbidden.ResourceNotFound":
            raise InputError(f"KMS instance {instance_id} does not exist in this region") from None
        if exc.retryable:
            raise
        level = None
    if level is not None and level not in spec.protection_levels:
        kind = "hardware" if level == HSM else "software"
        raise InputError(
            f"{spec.name} keys cannot be created in {instance_id} (a {kind} instance); "
            f"{kind} instances take {', '.join(SPECS_BY_PROTECTION_LEVEL[level])}"
        )


def _check_key(key: KeyInfo, material: PrivateKeyMaterial) -> None:
    if key.origin != "EXTERNAL":
        raise InputError(
            f"{key.key_id} has Origin {key.origin}; only EXTERNAL keys take imported material"
        )
    if key.key_spec != material.key_spec:
        raise InputError(f"{key.key_id} is {key.key_spec}; the material is {material.key_spec}")
    if key.key_state == "PendingDeletion":
        raise InputError(f"{key.key_id} is PendingDeletion; cancel the deletion first")

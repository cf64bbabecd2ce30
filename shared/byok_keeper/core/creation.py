"""``enroll --create``: the request, its checks, and finding or creating the key.

Everything here runs before anything is sealed or imported:

* ``check_create_request``: the spec fits the material, the usage the spec, the instance can
  hold the spec (GetKmsInstance), and the console's own rules (alias, tags, key policy);
* ``create_or_find``: the key an earlier run of the same enrollment created (found by the
  fingerprint tag and proven by the marker), or a new one, then the alias.

The marker is HMAC-SHA256 over the fingerprint, spec, usage and instance, keyed by a SHA-256 of
the private material itself: only a holder of the private key can compute it (a seal-key HMAC
would not work with a KMS sealer, which has no local key). Tags are readable, so the marker can
be copied to another key; that copy either differs in spec, usage or instance, or makes a second
candidate, and both are refused (``SuspiciousKey``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..crypto.material import PrivateKeyMaterial, wipe
from ..crypto.specs import HSM, SPECS_BY_PROTECTION_LEVEL, KeySpec
from ..crypto.specs import key_spec as lookup_spec
from ..domain.errors import InputError
from ..domain.model import KeyInfo, KeyState
from ..domain.tags import (
    FINGERPRINT_TAG,
    LEASE_TAG,
    MANAGED_TAG,
    MARKER_TAG,
    MAX_TAGS_PER_KEY,
    check_tags,
)
from ..gateway.kms.errors import KmsApiError

if TYPE_CHECKING:
    from ..gateway.kms.gateway import KmsGateway

StepCallback = Callable[[str, dict], None]


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


def check_create_request(
    gateway: KmsGateway, material: PrivateKeyMaterial, create: CreateRequest
) -> None:
    """Refuse (``InputError``, exit 2), before anything is created, a request that cannot work."""
    spec = lookup_spec(create.key_spec)
    if spec.name != material.key_spec:
        raise InputError(f"--key-spec {spec.name} does not fit the material ({material.key_spec})")
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


def create_or_find(
    gateway: KmsGateway, material: PrivateKeyMaterial, create: CreateRequest, step: StepCallback
) -> tuple[KeyInfo, bool]:
    """The key this enrollment created earlier, or a new one; then its alias.

    Returns ``(key, created)``. Raises ``SuspiciousKey`` or ``InputError``."""
    fp = material.fingerprint
    marker = enrollment_marker(material, create)
    key = _find_created(gateway, fp, marker, create)
    created = key is None
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
        if _mismatches(key, {MARKER_TAG: marker}, marker, create):
            raise InputError(
                f"created {key.key_id}, but it does not fit the request "
                f"({'; '.join(_mismatches(key, {MARKER_TAG: marker}, marker, create))}); "
                "nothing was sealed or imported: schedule its deletion"
            )
    step("create", {"key_id": key.key_id, "created": created})
    if create.alias and _alias_target(gateway, create.alias, key.key_id) is None:
        gateway.create_alias(create.alias, key.key_id)
        step("alias", {"alias": create.alias})
    return key, created


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
        if key.key_state == KeyState.PENDING_DELETION:
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

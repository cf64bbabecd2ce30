"""What the KMS gateway takes and returns, and who may call what: no SDK import.

* the allowlists (invariant 1: never rotate, never delete) and ``FORBIDDEN``;
* KMS's quota classes and documented rates (the request budget spends against them);
* the gateway's results (``KeyInfo`` lives on the domain floor, ``byok_keeper.domain.model``; the
  others here). Anything holding a token or plaintext keeps it out of ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ...domain.model import KeyInfo, format_kms_time, parse_kms_time

__all__ = [
    "DOCUMENTED_QPS",
    "ENROLL",
    "FORBIDDEN",
    "HOLD_ACTIONS",
    "NOT_IDEMPOTENT",
    "QUOTA_CLASSES",
    "QUOTA_CLASS_OF",
    "READ_ONLY",
    "SWEEP",
    "Allowlist",
    "DataKey",
    "ImportParameters",
    "KeyInfo",
    "SecretValue",
    "format_kms_time",
    "parse_kms_time",
]

# ---- allowlists (invariant 1) -------------------------------------------------------------

_READ_KEYS = frozenset({"DescribeKey", "ListKeys", "ListResourceTags"})
# The canary signs (verified locally) or decrypts (RSA secrets are encrypted locally; SM2 ones
# through AsymmetricEncrypt): it never needs AsymmetricVerify.
_CANARY = frozenset(
    {"GetPublicKey", "ListKeyVersions", "AsymmetricSign"}
    | {"AsymmetricEncrypt", "AsymmetricDecrypt"}
)
_IMPORT = frozenset({"GetParametersForImport", "ImportKeyMaterial"})
_VAULT_READ = frozenset({"Decrypt", "GetSecretValue", "ListSecrets"})
_VAULT_WRITE = frozenset({"GenerateDataKey", "CreateSecret", "PutSecretValue"})


@dataclass(frozen=True)
class Allowlist:
    """The KMS actions one caller may use. Nothing else reaches the SDK."""

    name: str
    actions: frozenset[str]


# What a sweep or a one-key re-import may do: read, import, verify, read the vault.
SWEEP = Allowlist("sweep", _READ_KEYS | _CANARY | _IMPORT | _VAULT_READ)
# plan, status, verify: reads and canaries only.
READ_ONLY = Allowlist("read-only", _READ_KEYS | _CANARY | _VAULT_READ | {"ListAliasesByKeyId"})
# enrollment additionally creates keys, tags them and writes envelopes.
ENROLL = Allowlist(
    "enroll",
    _READ_KEYS
    | _CANARY
    | _IMPORT
    | _VAULT_READ
    | _VAULT_WRITE
    | {"CreateKey", "TagResource", "GetKmsInstance", "CreateAlias", "ListAliasesByKeyId"},
)
# vault reseal: open envelopes and write them sealed anew; nothing about the keys themselves.
RESEAL = Allowlist("reseal", _VAULT_READ | _VAULT_WRITE)
# hold / release: the hold tag and nothing else.
HOLD_ACTIONS = Allowlist("hold", _READ_KEYS | {"TagResource", "UntagResource"})
# Never in any allowlist, whatever a caller asks: rotation and destruction.
FORBIDDEN = frozenset(
    {
        "CreateKeyVersion",
        "UpdateRotationPolicy",
        "DeleteKeyMaterial",
        "ScheduleKeyDeletion",
        "CancelKeyDeletion",
        "DisableKey",
        "EnableKey",
        "DeleteKey",
    }
)
assert not any(a.actions & FORBIDDEN for a in (SWEEP, READ_ONLY, ENROLL, HOLD_ACTIONS))

# Quota classes, as KMS counts them (KMS's performance page; docs/FIDELITY.md#quota-classes):
# each has its own per-account, per-region quota, shared with the customer's production traffic.
QUOTA_CLASSES: dict[str, frozenset[str]] = {
    "read": frozenset(
        {"DescribeKey", "ListKeys", "GetParametersForImport", "GetPublicKey", "ListKeyVersions"}
        | {"GetKmsInstance", "ListAliasesByKeyId"}
    ),
    "tags": frozenset({"ListResourceTags"}),
    "write": frozenset({"TagResource", "UntagResource", "CreateAlias", "ImportKeyMaterial"}),
    "create": frozenset({"CreateKey"}),
    "crypto": frozenset(
        {"AsymmetricSign", "AsymmetricVerify", "AsymmetricEncrypt", "AsymmetricDecrypt"}
    ),
    # The vault's calls (issue 25): symmetric crypto on the seal key, and Secrets Manager, each
    # class with its own shared-gateway quota (docs/FIDELITY.md#quota-classes).
    "symmetric": frozenset({"Decrypt", "GenerateDataKey", "Encrypt"}),
    "secret_read": frozenset({"GetSecretValue"}),
    "secret_list": frozenset({"ListSecrets"}),
    # PutSecretValue's class is not listed by the page; counted with CreateSecret, the smallest.
    "secret_write": frozenset({"CreateSecret", "PutSecretValue"}),
}
DOCUMENTED_QPS = {
    "read": 50.0,
    "tags": 300.0,
    "write": 30.0,
    "create": 10.0,
    "crypto": 200.0,
    "symmetric": 1000.0,
    "secret_read": 450.0,
    "secret_list": 40.0,
    "secret_write": 10.0,
}
QUOTA_CLASS_OF = {action: kind for kind, actions in QUOTA_CLASSES.items() for action in actions}
# Every action any caller may send spends a budget: none goes unmetered.
assert all(
    a in QUOTA_CLASS_OF for al in (SWEEP, READ_ONLY, ENROLL, HOLD_ACTIONS) for a in al.actions
)
# Retrying these after an unknown outcome could do the work twice.
NOT_IDEMPOTENT = frozenset({"CreateKey"})

# GetKmsInstance's ProductVersion, in both forms seen in Alibaba's sources (docs/FIDELITY.md):
# terraform-provider-alicloud validates and reads back "3" or "5"; ROS names the editions.
_PRODUCT_VERSIONS = {"3": "SOFTWARE", "5": "HSM"}
_PRODUCT_NAMES = {"software": "SOFTWARE", "hardware": "HSM"}  # also software-small, ...


def instance_protection_level(product_version: object) -> str | None:
    """SOFTWARE or HSM for a KMS instance's ``ProductVersion`` (``3``/``5``, or the ROS
    names ``software``, ``hardware``, ``software-small``, ``hardware-small``); None for
    anything else, so that CreateKey decides rather than a guess of ours."""
    version = str(product_version or "").strip().lower()
    if version in _PRODUCT_VERSIONS:
        return _PRODUCT_VERSIONS[version]
    return next((v for k, v in _PRODUCT_NAMES.items() if version.startswith(k)), None)


# ---- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportParameters:
    key_id: str
    public_key: str  # Base64 DER SubjectPublicKeyInfo
    token_expire_time: datetime | None
    request_id: str
    import_token: str = field(repr=False)


@dataclass(frozen=True)
class DataKey:
    key_id: str
    ciphertext_blob: str
    request_id: str
    plaintext: bytearray = field(repr=False)  # the caller wipes it


@dataclass(frozen=True)
class SecretValue:
    name: str
    version_id: str
    data: str = field(repr=False)

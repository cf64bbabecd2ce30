"""KMS: the gateway (the only SDK caller) and its SDK-free types, errors and budget.

    types.py    allowlists, quota classes, results (ImportParameters, DataKey, SecretValue);
                KeyInfo and the time format come from byok_keeper.domain.model   -- no SDK
    errors.py   KmsApiError, KmsUnavailable, NoKmsAccess..., is_throttling -- no SDK
    budget.py   RequestBudget, RetryPolicy                                 -- no SDK
    client.py   split_endpoint; build_client, static_credential (SDK imported inside them)
    gateway.py  KmsGateway: allowlist, budget, retries, clock -- imports the SDK
    calls.py    KmsGateway's data-plane calls (a mixin)        -- imports the SDK

Every name ``byok_keeper.gateway.kms`` exported as a single module is still importable from here.
The
SDK-free names are imported eagerly; ``KmsGateway`` is imported lazily, on first access, by the
module ``__getattr__`` below. So ``import byok_keeper.gateway.kms.types`` (or
``byok_keeper.domain.model``,
or ``byok_keeper.planning.plan``) loads no ``alibabacloud*``/``Tea*``/``darabonba*`` module, while
``from byok_keeper.gateway.kms import KmsGateway`` keeps working for every caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .budget import RequestBudget, RetryPolicy
from .client import build_client, split_endpoint, static_credential
from .errors import (
    ActionNotAllowed,
    AssumedRoleExpired,
    ClockSkewError,
    CredentialsMissing,
    KmsApiError,
    KmsUnavailable,
    NoKmsAccess,
    RoleUnavailable,
    is_throttling,
)
from .types import (
    DOCUMENTED_QPS,
    ENROLL,
    FORBIDDEN,
    HOLD_ACTIONS,
    NOT_IDEMPOTENT,
    QUOTA_CLASSES,
    READ_ONLY,
    RESEAL,
    SWEEP,
    Allowlist,
    DataKey,
    ImportParameters,
    KeyInfo,
    SecretValue,
    format_kms_time,
    parse_kms_time,
)

if TYPE_CHECKING:
    from .gateway import KmsGateway

__all__ = [
    "DOCUMENTED_QPS",
    "ENROLL",
    "FORBIDDEN",
    "HOLD_ACTIONS",
    "NOT_IDEMPOTENT",
    "QUOTA_CLASSES",
    "READ_ONLY",
    "RESEAL",
    "SWEEP",
    "ActionNotAllowed",
    "Allowlist",
    "AssumedRoleExpired",
    "ClockSkewError",
    "CredentialsMissing",
    "DataKey",
    "ImportParameters",
    "KeyInfo",
    "KmsApiError",
    "KmsGateway",
    "KmsUnavailable",
    "NoKmsAccess",
    "RequestBudget",
    "RetryPolicy",
    "RoleUnavailable",
    "SecretValue",
    "build_client",
    "format_kms_time",
    "is_throttling",
    "parse_kms_time",
    "split_endpoint",
    "static_credential",
]


def __getattr__(name: str) -> Any:
    """``KmsGateway`` on first use: the only name here whose module imports the SDK."""
    if name == "KmsGateway":
        from .gateway import KmsGateway

        globals()[name] = KmsGateway
        return KmsGateway
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""KMS's side of a request: which actions exist (``actions/``) and in which quota class, the
version check, running an action against a backend, and KMS's error documents. The signature,
fault hooks and the answer are ``endpoints/kms.py``'s; parsing is ``rpc.py``'s.
"""

from __future__ import annotations

from typing import Any

from ..errors import ApiError
from ..rpc import Request
from . import API_VERSION, actions
from .actions import imports, keys, labels, secrets, usage  # noqa: F401 - registers them all
from .models import KmsBackend

# Quota classes (KMS's performance page: docs/FIDELITY.md#quota-classes): each class has its own
# per-second quota; Encrypt/Decrypt and secrets calls have larger ones, not emulated.
QUOTA_CLASSES: dict[str, frozenset[str]] = {
    "read": frozenset(
        {
            "DescribeKey",
            "ListKeys",
            "GetParametersForImport",
            "ListKeyVersions",
            "GetPublicKey",
            "GetKmsInstance",
            "ListAliases",
            "ListAliasesByKeyId",
            "GetKeyPolicy",
            "DescribeSecret",
            "ListSecrets",
        }
    ),
    "tags": frozenset({"ListResourceTags"}),
    "write": frozenset(
        {
            "TagResource",
            "UntagResource",
            "CreateAlias",
            "ImportKeyMaterial",
            "DeleteKeyMaterial",
            "EnableKey",
            "DisableKey",
            "ScheduleKeyDeletion",
            "CancelKeyDeletion",
            "CreateKeyVersion",
            "UpdateRotationPolicy",
        }
    ),
    "create": frozenset({"CreateKey"}),
    "crypto": frozenset(
        {"AsymmetricSign", "AsymmetricVerify", "AsymmetricEncrypt", "AsymmetricDecrypt"}
    ),
}
_CLASS_OF = {action: kind for kind, actions in QUOTA_CLASSES.items() for action in actions}


def quota_class(action: str) -> str | None:
    return _CLASS_OF.get(action)


def check(request: Request) -> actions.Handler:
    """The handler of the request's action; unknown actions and other versions are refused."""
    handler = actions.ACTIONS.get(request.action)
    if handler is None:
        raise ApiError(
            "InvalidAction.NotFound",
            f"Specified api {request.action} is not found (aliyun-local does not emulate it).",
            404,
        )
    if request.version != API_VERSION:
        raise ApiError("InvalidVersion", f"Specified version {request.version} is invalid.", 400)
    return handler


def dispatch(backend: KmsBackend, request: Request) -> dict[str, Any]:
    """Run the request's action against ``backend``: the response body without RequestId."""
    return check(request)(backend, actions.Params(request.params))


def error_body(request_id: str, region: str, err: ApiError) -> dict[str, Any]:
    """KMS's error document (``Recommend`` is a diagnosis link in KMS; empty here)."""
    return {
        "RequestId": request_id,
        "HostId": f"kms.{region}.aliyuncs.com",
        "Code": err.code,
        "Message": err.message,
        "Recommend": "",
    }


def internal_error_body(request_id: str, region: str) -> dict[str, Any]:
    """The answer to a bug in the emulator, as KMS answers its own internal failures."""
    return {
        "RequestId": request_id,
        "HostId": f"kms.{region}.aliyuncs.com",
        "Code": "InternalFailure",
        "Message": "The request processing has failed due to some unknown error.",
    }

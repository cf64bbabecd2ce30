"""KMS wire errors (codes and statuses as Alibaba Cloud KMS answers them)."""

from __future__ import annotations

from ..errors import ApiError, invalid_parameter, missing_parameter

__all__ = [
    "ApiError",
    "invalid_ciphertext",
    "invalid_key_material",
    "invalid_parameter",
    "key_not_found",
    "missing_parameter",
    "resource_exists",
    "resource_not_found",
    "state_rejected",
    "unsupported_operation",
    "unsupported_origin",
]


def key_not_found(key_id: str) -> ApiError:
    return ApiError("Forbidden.KeyNotFound", f"The specified Key {key_id} is not found.", 404)


def state_rejected(state: str) -> ApiError:
    """A call the key's state does not allow: ``Rejected.<State>``, HTTP 409."""
    return ApiError(f"Rejected.{state}", f"The request is rejected: the key is {state}.", 409)


def import_rejected(state: str) -> ApiError:
    return ApiError(
        "Rejected.StateModifiedFailed",
        f"The key state {state} does not allow importing key material.",
        409,
    )


def unsupported_origin(what: str) -> ApiError:
    return ApiError("Unsupported.Origin", f"{what} is only supported for EXTERNAL keys.", 400)


def unsupported_operation(why: str) -> ApiError:
    return ApiError("Rejected.UnsupportedOperation", why, 400)


def invalid_key_material(why: str) -> ApiError:
    return ApiError("InvalidKeyMaterial", f"The key material is invalid: {why}", 400)


def invalid_ciphertext() -> ApiError:
    return ApiError("InvalidCiphertext", "The ciphertext or encryption context is invalid.", 400)


def resource_not_found(what: str) -> ApiError:
    return ApiError("Forbidden.ResourceNotFound", f"{what} is not found.", 404)


def resource_exists(what: str) -> ApiError:
    return ApiError("Rejected.ResourceExist", f"{what} already exists.", 409)

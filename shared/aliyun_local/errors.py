"""Wire errors: what the emulator answers when a request fails.

Alibaba Cloud APIs answer errors with HTTP status and a JSON body
``{"RequestId", "HostId", "Code", "Message"}``. The SDK turns 4xx into ``ClientException``,
5xx into ``ServerException``, and any error carrying ``x-acs-retry-after`` into
``ThrottlingException``. Raising ``ApiError`` anywhere in a handler produces exactly that.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error answered on the wire."""

    def __init__(
        self, code: str, message: str, status: int = 400, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.headers = headers or {}


def missing_parameter(name: str) -> ApiError:
    return ApiError("MissingParameter", f"The parameter {name} is required.", 400)


def invalid_parameter(name: str, why: str) -> ApiError:
    return ApiError("InvalidParameter", f"The parameter {name} is invalid: {why}", 400)


def throttled(retry_after_ms: int) -> ApiError:
    return ApiError(
        "Rejected.Throttling",
        "Request was denied due to request throttling.",
        429,
        {"x-acs-retry-after": str(max(1, retry_after_ms))},
    )


# Status of every code the emulator can be told to answer through fault injection
# (`fail_next`), so an injected error looks exactly like a real one on the wire.
KNOWN_CODES: dict[str, int] = {
    "Forbidden.KeyNotFound": 404,
    "Forbidden.NoPermission": 403,
    "Forbidden.ResourceNotFound": 404,
    "InvalidAccessKeyId.NotFound": 404,
    "IncompleteSignature": 400,
    "MissingParameter": 400,
    "InvalidParameter": 400,
    "InvalidKeyMaterial": 400,
    "InvalidImportToken": 400,
    "ExpiredImportToken": 400,
    "InvalidCiphertext": 400,
    "Unsupported.Origin": 400,
    "Rejected.UnsupportedOperation": 400,
    "Rejected.StateModifiedFailed": 409,
    "Rejected.Disabled": 409,
    "Rejected.PendingDeletion": 409,
    "Rejected.PendingImport": 409,
    "Rejected.ResourceExist": 409,
    "Rejected.Throttling": 429,
    "InternalFailure": 500,
    "ServiceUnavailableTemporary": 503,
}


def injected(code: str) -> ApiError:
    """The error fault injection answers for ``code`` (unknown codes answer 400)."""
    if code == "Rejected.Throttling":
        return throttled(1000)
    return ApiError(code, f"Injected fault: {code}", KNOWN_CODES.get(code, 400))

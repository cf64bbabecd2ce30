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


NO_RETRY_AFTER = "/no-retry-after"


def throttled(retry_after_ms: int, answer: str = "Rejected.Throttling") -> ApiError:
    """A refusal for rate, in one of the forms real gateways use (docs/FIDELITY.md):

    * ``Rejected.Throttling``: HTTP 429 with ``x-acs-retry-after`` (the SDK raises
      ``ThrottlingException``);
    * ``Rejected.Throttling/no-retry-after``: HTTP 429 without the header;
    * ``Throttling``, ``Throttling.User``, ``Throttling.Api``: HTTP 400 without the header
      (the SDK raises a plain ``ClientException``).
    """
    message = "Request was denied due to request throttling."
    if answer == "Rejected.Throttling":
        return ApiError(answer, message, 429, {"x-acs-retry-after": str(max(1, retry_after_ms))})
    if answer == "Rejected.Throttling" + NO_RETRY_AFTER:
        return ApiError("Rejected.Throttling", message, 429)
    if answer.startswith("Throttling"):
        return ApiError(answer, message, 400)
    raise ValueError(f"unknown throttling answer {answer!r}")


# Status of every code the emulator can be told to answer through fault injection
# (`fail_next`), so an injected error looks exactly like a real one on the wire.
KNOWN_CODES: dict[str, int] = {
    "Forbidden.KeyNotFound": 404,
    "Forbidden.NoPermission": 403,
    "Forbidden.ResourceNotFound": 404,
    "InvalidAccessKeyId.NotFound": 404,
    "InvalidSecurityToken.Expired": 403,
    "InvalidSecurityToken.Malformed": 400,
    "InvalidSecurityToken.MismatchWithAccessKey": 400,
    "MissingSecurityToken": 400,
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
    "Rejected.Throttling/no-retry-after": 429,
    "Throttling": 400,
    "Throttling.User": 400,
    "Throttling.Api": 400,
    "InternalFailure": 500,
    "ServiceUnavailableTemporary": 503,
    "InternalError": 500,  # STS's 5xx codes (docs/FIDELITY.md, "STS errors")
    "ServiceUnavailable": 503,
    "EntityNotExist.Role": 403,  # as the emulated STS answers it
    "NoPermission": 403,
}


def injected(code: str) -> ApiError:
    """The error fault injection answers for ``code`` (unknown codes answer 400)."""
    if (
        code == "Rejected.Throttling"
        or code.startswith("Throttling")
        or code.endswith(NO_RETRY_AFTER)
    ):
        return throttled(1000, code)
    return ApiError(code, f"Injected fault: {code}", KNOWN_CODES.get(code, 400))

"""The KMS errors, and how an SDK exception becomes one: no SDK import.

SDK exceptions are read by attribute (``code``, ``status_code``, ``request_id``, ``data``),
never by type, so this module needs no SDK import; ``gateway.py`` catches the SDK's types.
Transport errors are reported by type only: the SDK's own messages can carry the request URL,
and the URL carries ``EncryptedKeyMaterial`` and the import token.
"""

from __future__ import annotations

import time
from typing import Any

from ...domain.errors import ByokError, ConfigError, ExecutionError
from ...domain.model import KMS_TIME_FORMAT
from .types import Allowlist


class KmsApiError(ExecutionError):
    """KMS answered with an error."""

    def __init__(self, action: str, code: str, status: int, request_id: str, message: str) -> None:
        self.action = action
        self.code = code
        self.status = status
        self.request_id = request_id
        # Server messages never echo parameters for ACS3 requests; cap them all the same.
        self.server_message = (message or "")[:200]
        super().__init__(
            f"KMS {action} failed: {code} (HTTP {status}, request id {request_id or '-'})"
            + (f": {self.server_message}" if self.server_message else "")
        )

    @property
    def throttled(self) -> bool:
        return is_throttling(self.code, self.status)

    @property
    def retryable(self) -> bool:
        return self.throttled or self.status >= 500


def is_throttling(code: str, status: int = 0) -> bool:
    """Whether KMS refused a call for its rate: it was not executed, so it may always be retried.

    Alibaba Cloud gateways answer HTTP 429 ``Rejected.Throttling`` and also HTTP 400
    ``Throttling``, ``Throttling.User``, ``Throttling.Api`` (any code starting ``Throttling``),
    often without ``x-acs-retry-after`` (docs/FIDELITY.md).
    """
    return status == 429 or code == "Rejected.Throttling" or code.startswith("Throttling")


class KmsUnavailable(ExecutionError):
    """KMS could not be reached or did not answer (connection refused, reset, timeout)."""

    def __init__(self, action: str, cause: str, debug_detail: str = "") -> None:
        self.action = action
        self.cause = cause
        self.debug_detail = debug_detail  # shown with --debug only (``debug_cause``)
        super().__init__(f"KMS {action} failed: no answer from KMS ({cause})")

    @classmethod
    def of(cls, action: str, exc: BaseException) -> KmsUnavailable:
        return cls(action, describe_transport(exc), debug_cause(exc))


class NoKmsAccess(ConfigError):
    """This host cannot use KMS at all (no credentials, a clock KMS refuses).

    Every call would fail the same way, so a sweep stops with the one reason instead of
    failing key after key.
    """


# The gateway's answers to credentials it cannot use at all: an access key that does not exist
# (KMS's common error table: ``InvalidAccessKeyId.NotFound`` 404), is disabled, or whose secret
# does not match the signature (docs/FIDELITY.md). Every call would fail alike: one line.
BAD_CREDENTIALS = frozenset({"InvalidAccessKeyId.NotFound", "InvalidAccessKeyId.Inactive",
                             "SignatureDoesNotMatch", "IncompleteSignature"})  # fmt: skip
CREDENTIAL_SETTINGS = (
    "ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET (and _SECURITY_TOKEN), --profile "
    "(ALIBABA_CLOUD_PROFILE, ~/.aliyun/config.json), or the instance/OIDC role"
)


class CredentialsRefused(NoKmsAccess):
    """KMS refused the credentials themselves (``BAD_CREDENTIALS``): say so once, naming the
    settings they come from, instead of one identical error per key."""

    def __init__(self, action: str, code: str) -> None:
        self.action = action
        self.code = code
        super().__init__(
            f"KMS refused the credentials byok-keeper signs with ({code} on {action}): the "
            f"access key does not exist, is disabled, or its secret is wrong; check "
            f"{CREDENTIAL_SETTINGS}"
        )


# alibabacloud-credentials' provider modules: the service each asks, and where it is set.
_PROVIDERS = {
    "ram_role_arn": ("STS (AssumeRole)", "the profile's ram_role_arn and sts_region, or "
                     "ALIBABA_CLOUD_ROLE_ARN"),
    "oidc": ("STS (AssumeRoleWithOIDC)", "ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN "
             "and ALIBABA_CLOUD_OIDC_TOKEN_FILE (RRSA)"),
    "ecs_ram_role": ("the ECS instance metadata service", "the instance's RAM role "
                     "(ALIBABA_CLOUD_ECS_METADATA)"),
    "cloud_sso": ("CloudSSO", "the profile's CloudSSO settings"),
    "oauth": ("the OAuth token service", "the profile's OAuth settings"),
    "uri": ("the credentials URI", "ALIBABA_CLOUD_CREDENTIALS_URI"),
    "external": ("the external credential process", "the profile's process_command"),
}  # fmt: skip


class CredentialsUnavailable(NoKmsAccess):
    """Credentials could not be obtained: the service that hands them out (STS for a RAM role,
    the instance metadata service...) did not answer or refused, before KMS was ever asked."""

    def __init__(self, service: str, setting: str, cause: str, debug_detail: str = "") -> None:
        self.service = service
        self.cause = cause
        self.debug_detail = debug_detail
        super().__init__(
            f"cannot get Alibaba Cloud credentials: {service} failed ({cause}), before any KMS "
            f"call; check {setting}"
        )


def no_access(action: str, error: KmsApiError, *, assumed: bool) -> NoKmsAccess | None:
    """The ``NoKmsAccess`` a KMS refusal means, or None: a clock KMS refuses, or credentials it
    refuses (``assumed``: an assumed role's, whose expiry the gateway handles itself)."""
    if error.code == "InvalidTimeStamp.Expired":
        return ClockSkewError(action)
    if error.code in BAD_CREDENTIALS and not assumed:
        return CredentialsRefused(action, error.code)
    return None


def credential_error(exc: BaseException) -> NoKmsAccess | None:
    """The error for an SDK call that failed inside the credential provider (no credentials
    anywhere, or the provider's own service failed): named by the provider, or None when the
    failure is KMS's own (no alibabacloud-credentials frame in the chain)."""
    if own_error(exc) is not None:
        return None  # our own provider's (sts.AssumeRoleFailed): the gateway names the role
    provider = _provider_of(exc)
    if provider is None or (
        provider in ("default", "cli_profile", "profile", "env", "static_ak", "providers")
        and is_credential_error(exc)
    ):
        return _missing(exc) if is_credential_error(exc) else None
    service, setting = _PROVIDERS.get(
        provider, ("the credential provider", f"the credential settings ({CREDENTIAL_SETTINGS})")
    )
    return CredentialsUnavailable(service, setting, describe_transport(exc), debug_cause(exc))


def _missing(exc: BaseException) -> CredentialsMissing:
    missing = CredentialsMissing()
    missing.debug_detail = debug_cause(exc)
    return missing


def _chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not c for c in chain) and len(chain) < 8:
        chain.append(current)
        current = (
            getattr(current, "inner_exception", None) or current.__cause__ or current.__context__
        )
    return chain


def _provider_of(exc: BaseException) -> str | None:
    """Where the credential provider raised: for the outermost exception of the chain that
    passed through alibabacloud-credentials, its innermost module there (``ram_role_arn``,
    ``ecs_ram_role``, ``default`` for the chain that found nothing...), or None."""
    for link in _chain(exc):
        found = None
        tb = link.__traceback__
        while tb is not None:
            module = str(tb.tb_frame.f_globals.get("__name__", ""))
            if module.startswith("alibabacloud_credentials"):
                found = module.rsplit(".", 1)[-1]
            tb = tb.tb_next
        if found is not None:
            return found
    return None


def debug_cause(exc: BaseException) -> str:
    """For ``--debug``: the chain's types, innermost last, and the innermost socket error's own
    text (``[Errno -2] Name or service not known``). Other messages are left out: an SDK's can
    quote the request URL, which for ImportKeyMaterial carries the material and the token."""
    chain = _chain(exc)
    names = " <- ".join(type(e).__name__ for e in chain)
    socket_error = next((e for e in reversed(chain) if isinstance(e, OSError)), None)
    text = f": {socket_error.strerror or socket_error.args[-1]}" if socket_error else ""
    return f"{names}{text}"


class CredentialsMissing(NoKmsAccess):
    def __init__(self) -> None:
        super().__init__(
            "no usable Alibaba Cloud credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID and "
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET (and ALIBABA_CLOUD_SECURITY_TOKEN for STS), or "
            "configure a profile or instance role"
        )


class ClockSkewError(NoKmsAccess):
    """KMS refused the request time: this host's clock is more than 15 minutes off.

    Every signed request carries the local time and Alibaba Cloud's gateway refuses those more
    than 15 minutes from its own (``InvalidTimeStamp.Expired``). Nothing can succeed until the
    host's clock is fixed.
    """

    def __init__(self, action: str) -> None:
        self.action = action
        local = time.strftime(KMS_TIME_FORMAT, time.gmtime())
        super().__init__(
            f"KMS refused the request time on {action} (InvalidTimeStamp.Expired): this host's "
            f"clock reads {local}, more than 15 minutes from Alibaba Cloud's; fix time "
            "synchronisation (NTP/chrony) and run again"
        )


CREDENTIALS_EXPIRED = "InvalidSecurityToken.Expired"


class AssumedRoleExpired(NoKmsAccess):
    """KMS refused a target's assumed-role credentials as expired (``InvalidSecurityToken.Expired``)
    and again right after the role was assumed anew: every call of the target would fail the
    same way, so the target's run stops with this one reason (no loop of AssumeRoles)."""

    code = CREDENTIALS_EXPIRED

    def __init__(self, action: str, role_arn: str) -> None:
        self.action = action
        self.role_arn = role_arn
        super().__init__(
            f"KMS {action} refused the credentials of role {role_arn} as expired "
            f"({CREDENTIALS_EXPIRED}), also just after assuming the role anew: STS's and "
            "KMS's clocks disagree or the role's sessions end at once; check the role's maximum "
            "session duration and this host's time synchronisation"
        )


class RoleUnavailable(NoKmsAccess):
    """A target's role could not be assumed anew while a KMS call needed fresh credentials: STS
    refused (``EntityNotExist.Role``, ``NoPermission``...) or stayed throttled, failing or
    unreachable after its own retries (``byok_keeper.gateway.sts``). Every call of the target would
    need
    the same role, so its run stops with this one reason (no AssumeRole per remaining key).
    ``code`` is STS's, ``transient`` whether a later run may succeed without a change; the
    message keeps STS's reason and the role ARN, never a credential."""

    def __init__(self, action: str, role_arn: str, code: str, *, transient: bool = False) -> None:
        self.action = action
        self.role_arn = role_arn
        self.code = code
        self.transient = transient
        super().__init__(
            f"cannot assume {role_arn}: {code} (STS, renewing the credentials for KMS {action})"
        )


class ActionNotAllowed(ExecutionError):
    """A caller asked for an action outside its allowlist: a bug, refused before the SDK."""

    def __init__(self, action: str, allowlist: Allowlist) -> None:
        self.action = action
        super().__init__(f"KMS action {action} is not allowed for {allowlist.name}")


def api_error(action: str, exc: Any) -> KmsApiError:
    return KmsApiError(
        action,
        str(getattr(exc, "code", "") or "Unknown"),
        int(getattr(exc, "status_code", 0) or 0),
        str(getattr(exc, "request_id", "") or ""),
        str((getattr(exc, "data", None) or {}).get("Message", "")),
    )


def code_of(error: Exception) -> str:
    return getattr(error, "code", None) or getattr(error, "cause", None) or type(error).__name__


def describe_transport(exc: BaseException) -> str:
    """Name the failure without the SDK's message (which may quote the request URL).

    The SDK wraps transport errors (``RetryError(str(e))``, ``inner_exception``): walk the chain
    to the root cause and name its type, e.g. ``timeout (ReadTimeout)``, ``ConnectionError``.
    """
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(chain) < 8:
        seen.add(id(current))
        chain.append(current)
        current = (
            getattr(current, "inner_exception", None) or current.__cause__ or current.__context__
        )
    names = [type(e).__name__ for e in chain]
    timeout = next((n for n in names if "Timeout" in n), None)
    if timeout:
        return f"timeout ({timeout})"
    return names[-1]


def is_credential_error(exc: BaseException) -> bool:
    inner = getattr(exc, "inner_exception", None) or exc
    return any(type(e).__name__ == "CredentialException" for e in (exc, inner))


def own_error(exc: BaseException) -> ByokError | None:
    """Our own error raised inside the SDK call (by our credential provider, e.g. a role that
    could not be assumed), which the SDK wraps (``UnretryableException.inner_exception``)."""
    inner = getattr(exc, "inner_exception", None) or exc
    return inner if isinstance(inner, ByokError) else None

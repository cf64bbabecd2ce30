"""A target's credentials through STS ``AssumeRole`` (issue 16), refreshed before they expire.

alibabacloud-credentials' own RAM-role provider always speaks https to STS, so it cannot reach
aliyun-local, and our transport rule (plain http only to loopback) is ours to keep: this
provider calls ``AssumeRole`` with the ``alibabacloud-sts20150401`` SDK over an endpoint checked
like every other (``kms.client.split_endpoint``), signed with the base credentials (the chain,
a profile, FC's context).

Request: ``RoleArn``, ``RoleSessionName`` (``byok-keeper-<target>``, so ActionTrail names the
target), ``DurationSeconds`` (900 to the role's maximum; 3600 here). Response:
``Credentials.{AccessKeyId, AccessKeySecret, SecurityToken, Expiration}``, Expiration an ISO
8601 UTC time.

The lifetime is measured on *our* monotonic clock from the moment we asked (``DurationSeconds``,
or less if ``Expiration`` says so against our wall clock): a KMS or STS clock that differs from
ours cannot make us keep credentials past their end. They are renewed ``REFRESH_MARGIN`` seconds
before that end, by whichever caller first sees it (under a lock). The secret and token never
appear in a repr, a log line or an error.

KMS may still refuse them as expired before that (``InvalidSecurityToken.Expired``: the
session ended earlier than its ``Expiration`` said, or a clock jumped). ``invalidate`` then
drops the cached credentials -- only if they are still the ones the refused call was signed
with, so when many threads see the refusal at once one of them drops them and the next
``get_credentials`` assumes the role once; the KMS gateway does this and retries the call once
(``kms.gateway``).

STS failing: throttled (``Throttling*``), a 5xx (``ServiceUnavailable``, ``InternalError``) or
no answer at all is transient and retried inside ``_assume`` -- ``ASSUME_ATTEMPTS`` attempts,
``ASSUME_BACKOFF`` seconds between them (``sleep`` is injectable); any other refusal
(``EntityNotExist.Role``, ``NoPermission``, ``InvalidParameter*``, ``Forbidden*``, bad base
credentials) is permanent and fails at once (docs/FIDELITY.md, "STS errors"). A refresh that
still fails transiently while the cached credentials have not yet reached their real end (only
the refresh margin has passed) keeps serving them, with one ``assumed_role_refresh_failed``
warning, and tries STS again ``RETRY_REFRESH_AFTER`` seconds later (not at every call).
Threads that waited behind a failed refresh share its failure. The
KMS gateway turns a failure raised inside a KMS call into ``kms.RoleUnavailable`` (a
``NoKmsAccess``): the target's run stops with that one reason.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any

from ..domain.errors import ExecutionError
from ..domain.logs import get_logger

DURATION_SECONDS = 3600
REFRESH_MARGIN = 600  # renew this long before the end (a sweep in flight keeps working)
ASSUME_ATTEMPTS = 3  # transient STS failures: at most this many AssumeRole calls per refresh
ASSUME_BACKOFF = (0.5, 1.0)  # seconds slept before the 2nd and 3rd attempt
RETRY_REFRESH_AFTER = 60.0  # serving still-valid credentials after a failed refresh: retry then
VALID_MARGIN = 30.0  # never serve cached credentials closer than this to their real end
# STS's transient codes besides ``Throttling*`` and any HTTP 5xx (docs/FIDELITY.md).
TRANSIENT_CODES = frozenset(
    {"ServiceUnavailable", "ServiceUnavailableTemporary", "InternalError", "InternalFailure"}
)
_log = get_logger("byok_keeper.sts")


class AssumeRoleFailed(ExecutionError):
    """STS refused or could not be reached: the target is unavailable (its own row/status).

    ``code`` is STS's error code (or the transport error's type), ``transient`` whether retrying
    later may help; the message names the role and the code, never a credential."""

    def __init__(self, role_arn: str, code: str, *, transient: bool = False) -> None:
        self.role_arn = role_arn
        self.code = code
        self.transient = transient
        super().__init__(f"cannot assume {role_arn}: {code}")


def sts_failure(exc: BaseException) -> tuple[str, bool]:
    """(code, transient) of an exception the STS SDK raised: an answer's code, transient when
    throttled or 5xx; no answer at all (refused, reset, timeout) is transient by its type; a
    credential the SDK could not load is permanent."""
    from .kms.errors import describe_transport, is_credential_error, is_throttling

    if is_credential_error(exc):
        return "CredentialException", False
    code = getattr(exc, "code", None)
    status = int(getattr(exc, "status_code", 0) or 0)
    if code and status:  # STS answered
        code = str(code)
        return code, is_throttling(code, status) or code in TRANSIENT_CODES or status >= 500
    return describe_transport(exc), True


def sts_endpoint_for(region: str, endpoint: str | None) -> tuple[str, str]:
    """(scheme, host) of STS for ``region``: the override (loopback-only http) or the
    region's public endpoint ``sts.<region>.aliyuncs.com``."""
    from .kms.client import split_endpoint

    return split_endpoint(endpoint) if endpoint else ("https", f"sts.{region}.aliyuncs.com")


class AssumedRoleProvider:
    """An ``alibabacloud_credentials`` provider (``get_credentials``) for one role."""

    def __init__(
        self,
        *,
        role_arn: str,
        session_name: str,
        region: str,
        endpoint: str | None = None,
        base_credential: Any = None,
        duration_seconds: int = DURATION_SECONDS,
        clock=time.monotonic,
        sleep=time.sleep,
    ) -> None:
        self.role_arn = role_arn
        self.session_name = session_name
        self.region = region
        self._scheme, self._host = sts_endpoint_for(region, endpoint)
        self._base = base_credential
        self._duration = duration_seconds
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._cached: Any = None
        self._refresh_at = 0.0
        self._valid_until = 0.0  # our clock: the cached credentials' real end
        self._served = threading.local()  # .generation: the credentials this thread last got
        # How many AssumeRole calls succeeded (tests, metrics); also the generation of the
        # cached credentials, which ``invalidate`` compares.
        self.assumed = 0
        self.invalidated = 0  # how many times cached credentials were dropped
        self._refreshes = 0  # refreshes finished (succeeded or failed)
        self._failure: AssumeRoleFailed | None = None  # the last refresh's, if it failed

    def __repr__(self) -> str:
        return f"AssumedRoleProvider(role_arn={self.role_arn!r}, session={self.session_name!r})"

    def get_provider_name(self) -> str:
        return "byok_keeper_assume_role"

    def get_credentials(self) -> Any:
        """The cached credentials, renewed when due. Threads already waiting behind a refresh
        that fails get its failure without asking STS again (a caller arriving after it asks
        anew): the keys in flight of a sweep do not each repeat the refresh's retries."""
        seen = self._refreshes  # an int read: refreshes finished before this call waited
        with self._lock:
            failed = self._failure
            if failed is not None and self._refreshes != seen:
                raise AssumeRoleFailed(failed.role_arn, failed.code, transient=failed.transient)
            if self._cached is None or self._clock() >= self._refresh_at:
                try:
                    self._cached = self._refresh()
                    self._failure = None
                except AssumeRoleFailed as exc:
                    self._failure = exc
                    raise
                finally:
                    self._refreshes += 1
            self._served.generation = self.assumed
            return self._cached

    def _refresh(self) -> Any:
        """New credentials; or, STS failing transiently while the cached ones are still valid,
        the cached ones (one warning, STS asked again ``RETRY_REFRESH_AFTER`` seconds later)."""
        try:
            return self._assume()
        except AssumeRoleFailed as exc:
            now = self._clock()
            if not exc.transient or self._cached is None or now >= self._valid_until:
                raise
            self._refresh_at = min(now + RETRY_REFRESH_AFTER, self._valid_until)
            _log.warning("assumed_role_refresh_failed", role_arn=self.role_arn, code=exc.code,
                         kept_for_s=round(self._valid_until - now))  # fmt: skip
            return self._cached

    def invalidate(self, generation: int | None = None) -> bool:
        """Drop the cached credentials if they are still ``generation`` (by default the ones
        this thread was last given: those its refused call was signed with). True if dropped;
        False if they were already dropped or renewed (by another thread), or never served."""
        if generation is None:
            generation = getattr(self._served, "generation", None)
        with self._lock:
            if generation is None or self._cached is None or generation != self.assumed:
                return False
            self._cached = None
            self.invalidated += 1
            return True

    async def get_credentials_async(self) -> Any:  # the SDK's async path; we never use it
        return self.get_credentials()

    def _client(self) -> Any:
        from alibabacloud_credentials.client import Client as CredentialClient
        from alibabacloud_sts20150401.client import Client
        from alibabacloud_tea_openapi.models import Config

        return Client(
            Config(
                credential=self._base if self._base is not None else CredentialClient(),
                endpoint=self._host,
                protocol=self._scheme,
                region_id=self.region,
                connect_timeout=5_000,
                read_timeout=10_000,
            )
        )

    def _call_sts(self, request: Any) -> Any:
        """AssumeRole's body: transient failures retried (``ASSUME_ATTEMPTS``, backing off),
        permanent ones raised at once. Tea errors carry the request: only the code is kept."""
        for attempt in range(1, ASSUME_ATTEMPTS + 1):
            try:
                return self._client().assume_role(request).body
            except Exception as exc:
                code, transient = sts_failure(exc)
            last = not transient or attempt >= ASSUME_ATTEMPTS
            _log.debug("assume_role_failed", role_arn=self.role_arn, code=code,
                       attempt=attempt, retry=not last)  # fmt: skip
            if last:
                raise AssumeRoleFailed(self.role_arn, code, transient=transient) from None
            self._sleep(ASSUME_BACKOFF[min(attempt, len(ASSUME_BACKOFF)) - 1])
        raise AssertionError("unreachable")  # pragma: no cover

    def _assume(self) -> Any:
        from alibabacloud_credentials.provider.refreshable import Credentials
        from alibabacloud_sts20150401 import models

        asked = self._clock()
        request = models.AssumeRoleRequest(
            role_arn=self.role_arn,
            role_session_name=self.session_name,
            duration_seconds=self._duration,
        )
        body = self._call_sts(request)
        creds = body.credentials if body is not None else None
        if creds is None or not creds.access_key_id or not creds.security_token:
            raise AssumeRoleFailed(self.role_arn, "no credentials returned")
        lifetime = float(self._duration)
        left = _seconds_left(creds.expiration)
        if left is not None and left > 0:  # a negative one is clock skew: ignore it
            lifetime = min(lifetime, left)
        self._refresh_at = asked + max(lifetime - REFRESH_MARGIN, lifetime / 2)
        self._valid_until = asked + lifetime - VALID_MARGIN
        self.assumed += 1
        return Credentials(
            access_key_id=creds.access_key_id,
            access_key_secret=creds.access_key_secret,
            security_token=creds.security_token,
            provider_name=self.get_provider_name(),
        )


def _seconds_left(expiration: str | None) -> float | None:
    """Seconds from our wall clock to ``Expiration`` (``2026-01-01T00:00:00Z``), or None."""
    if not expiration:
        return None
    try:
        end = datetime.strptime(expiration, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return (end - datetime.now(timezone.utc)).total_seconds()


def assumed_role_credential(provider: AssumedRoleProvider) -> Any:
    """An ``alibabacloud_credentials`` client over ``provider`` (what SDK ``Config`` takes)."""
    from alibabacloud_credentials.client import Client as CredentialClient

    return CredentialClient(provider=provider)

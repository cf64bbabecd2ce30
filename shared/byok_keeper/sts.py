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
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any

from .errors import ExecutionError

DURATION_SECONDS = 3600
REFRESH_MARGIN = 600  # renew this long before the end (a sweep in flight keeps working)


class AssumeRoleFailed(ExecutionError):
    """STS refused or could not be reached: the target is unavailable (its own row/status)."""


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
    ) -> None:
        self.role_arn = role_arn
        self.session_name = session_name
        self.region = region
        self._scheme, self._host = sts_endpoint_for(region, endpoint)
        self._base = base_credential
        self._duration = duration_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: Any = None
        self._refresh_at = 0.0
        self._served = threading.local()  # .generation: the credentials this thread last got
        # How many AssumeRole calls succeeded (tests, metrics); also the generation of the
        # cached credentials, which ``invalidate`` compares.
        self.assumed = 0
        self.invalidated = 0  # how many times cached credentials were dropped

    def __repr__(self) -> str:
        return f"AssumedRoleProvider(role_arn={self.role_arn!r}, session={self.session_name!r})"

    def get_provider_name(self) -> str:
        return "byok_keeper_assume_role"

    def get_credentials(self) -> Any:
        with self._lock:
            if self._cached is None or self._clock() >= self._refresh_at:
                self._cached = self._assume()
            self._served.generation = self.assumed
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

    def _assume(self) -> Any:
        from alibabacloud_credentials.provider.refreshable import Credentials
        from alibabacloud_sts20150401 import models

        asked = self._clock()
        request = models.AssumeRoleRequest(
            role_arn=self.role_arn,
            role_session_name=self.session_name,
            duration_seconds=self._duration,
        )
        try:
            body = self._client().assume_role(request).body
        except Exception as exc:  # Tea errors carry the request; keep only the code
            code = getattr(exc, "code", None) or type(exc).__name__
            raise AssumeRoleFailed(f"cannot assume {self.role_arn}: {code}") from None
        creds = body.credentials if body is not None else None
        if creds is None or not creds.access_key_id or not creds.security_token:
            raise AssumeRoleFailed(f"cannot assume {self.role_arn}: no credentials returned")
        lifetime = float(self._duration)
        left = _seconds_left(creds.expiration)
        if left is not None and left > 0:  # a negative one is clock skew: ignore it
            lifetime = min(lifetime, left)
        self._refresh_at = asked + max(lifetime - REFRESH_MARGIN, lifetime / 2)
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


def role_provider_of(credential: Any) -> AssumedRoleProvider | None:
    """The ``AssumedRoleProvider`` behind an ``assumed_role_credential`` (None for any other
    credential). alibabacloud-credentials 1.0 keeps a provider at ``cloud_credential.provider``."""
    provider = getattr(getattr(credential, "cloud_credential", None), "provider", None)
    return provider if isinstance(provider, AssumedRoleProvider) else None

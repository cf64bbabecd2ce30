"""The KMS gateway: the one class that calls the Alibaba KMS SDK.

* Every call goes through ``KmsGateway._call``, which refuses actions outside the gateway's
  allowlist (invariant 1: never rotate, never delete), spends the request budget, retries what
  may be retried, reads KMS's clock from the ``Date`` header and translates SDK exceptions into
  ``KmsApiError`` / ``KmsUnavailable``.
* Signed with an assumed role (``renewal``, ``byok_keeper.gateway.sts``), a call KMS refuses as
  ``InvalidSecurityToken.Expired`` drops those credentials and is sent once more with the role
  assumed anew (the refused call was not executed, so any action may be); refused again, it is
  ``AssumedRoleExpired``. Other credentials get no such retry. A role that cannot be assumed
  anew inside a call (STS refused, or stayed unavailable through ``sts``'s own retries) is
  ``RoleUnavailable``, a ``NoKmsAccess``: the target stops with STS's reason, and the call is
  not retried here (``sts`` already retried what was transient).
* Results are our frozen dataclasses (``types.py``, ``byok_keeper.domain.model``), never SDK models.
* The SDK is imported at module level here and in ``calls.py`` (the data-plane half of the
  gateway, a mixin) only; ``client.py`` imports it inside its builders.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from alibabacloud_kms20160120 import models as km
from alibabacloud_kms20160120.client import Client
from alibabacloud_tea_openapi.exceptions import (
    ClientException,
    ServerException,
    ThrottlingException,
)
from darabonba.runtime import RuntimeOptions

from ...domain.errors import ExecutionError
from ...domain.logs import get_logger
from ...domain.model import KeyInfo, parse_kms_time
from ...domain.tags import check_tags
from .budget import RequestBudget, RetryPolicy
from .calls import DataPlaneCalls
from .errors import (
    CREDENTIALS_EXPIRED,
    ActionNotAllowed,
    AssumedRoleExpired,
    KmsUnavailable,
    RoleUnavailable,
    api_error,
    code_of,
    credential_error,
    no_access,
    own_error,
)
from .types import FORBIDDEN, NOT_IDEMPOTENT, Allowlist, ImportParameters, instance_protection_level

_log = get_logger("byok_keeper.kms")  # debug: one line per KMS attempt, names and codes only
_MAX_CACHED_VERSIONS = 100_000


class Renewal(Protocol):
    """Credentials that can be dropped and fetched anew (``sts.AssumedRoleProvider``)."""

    role_arn: str

    def invalidate(self) -> bool: ...

    def get_credentials(self) -> Any: ...


class KmsGateway(DataPlaneCalls):
    """Typed, allowlisted, budgeted access to one region's KMS."""

    def __init__(
        self,
        client: Client,
        allowlist: Allowlist,
        *,
        region: str,
        budget: RequestBudget | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: Any = None,
        renewal: Renewal | None = None,
    ) -> None:
        self._client = client
        self._renewal = renewal  # the assumed role signing ``client``, if any
        self.allowlist = allowlist
        self.region = region
        self.budget = budget or RequestBudget(sleep=sleep)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or secrets.SystemRandom()  # jitter only; the OS RNG costs nothing here
        self._clock_offset: float | None = None
        # key id -> KeyVersionId. Versions of an imported asymmetric key never change (it cannot
        # be rotated), so one ListKeyVersions per key serves every later call.
        self._versions: dict[str, str] = {}
        self.stats: dict[str, int] = {"calls": 0, "retries": 0, "throttled": 0}
        # (action, result code) -> attempts: byok_keeper_kms_requests_total
        # (byok_keeper.operations.metrics)
        self.requests: dict[tuple[str, str], int] = {}
        self._stats_lock = threading.Lock()

    def with_allowlist(self, allowlist: Allowlist) -> KmsGateway:
        """The same client, budget and clock under another allowlist."""
        other = KmsGateway(
            self._client,
            allowlist,
            region=self.region,
            budget=self.budget,
            retry=self.retry,
            sleep=self._sleep,
            rng=self._rng,
            renewal=self._renewal,
        )
        other._clock_offset = self._clock_offset
        other._versions = self._versions
        return other

    @property
    def renewal(self) -> Renewal | None:
        """The assumed role signing this gateway's calls (None for other credentials)."""
        return self._renewal

    # -- the clock --

    @property
    def clock_offset(self) -> float | None:
        """KMS time minus local time, from the last response's ``Date`` header (None = unknown)."""
        return self._clock_offset

    def now(self) -> datetime:
        """KMS's idea of now (local time until a response has been seen)."""
        return datetime.fromtimestamp(time.time() + (self._clock_offset or 0.0), tz=timezone.utc)

    def _observe_date(self, headers: dict[str, str] | None) -> None:
        date = (headers or {}).get("date") or (headers or {}).get("Date")
        if not date:
            return
        try:
            server = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return
        self._clock_offset = server - time.time()

    # -- the one path to the SDK --

    def _call(self, action: str, method: Callable[..., Any], request: Any) -> Any:
        if action not in self.allowlist.actions or action in FORBIDDEN:
            raise ActionNotAllowed(action, self.allowlist)
        attempt = 0
        renewed = False  # the credentials were refused as expired once and assumed anew
        while True:
            attempt += 1
            error: Exception | None = None
            self.budget.spend(action)
            with self._stats_lock:
                self.stats["calls"] += 1
            try:
                response = method(request, RuntimeOptions())
            except ThrottlingException as exc:
                with self._stats_lock:
                    self.stats["throttled"] += 1
                error = api_error(action, exc)
                # Honour x-acs-retry-after (milliseconds), capped; else back off as usual.
                hinted = min(self.retry.max_delay, max(0.0, (exc.retry_after or 0) / 1000.0))
                delay = hinted or self._backoff(attempt)
            except (ClientException, ServerException) as exc:
                error = api_error(action, exc)
                fatal = no_access(action, error, assumed=self._renewal is not None)
                if fatal is not None:  # a clock or credentials KMS refuses: no call can succeed
                    raise fatal from None
                renewing = error.code == CREDENTIALS_EXPIRED and self._renewal is not None
                if renewing:
                    if renewed:
                        raise AssumedRoleExpired(action, self._renewal.role_arn) from None
                    self._renew(action)  # not executed: once more, at once, role assumed anew
                    renewed = True
                elif error.throttled:
                    # Throttled calls were not executed: retry any action, CreateKey included.
                    with self._stats_lock:
                        self.stats["throttled"] += 1
                elif not error.retryable:
                    raise error from None
                elif action in NOT_IDEMPOTENT:
                    raise error from None  # a 5xx may have done the work: never do it twice
                delay = 0.0 if renewing else self._backoff(attempt)
            except Exception as exc:  # transport: refused, reset, timeout, non-JSON body
                refused = credential_error(exc)  # the credential provider's failure, not KMS's
                if refused is not None:
                    raise refused from None
                ours = own_error(exc)  # our credential provider's (sts.AssumeRoleFailed)
                if ours is not None:
                    raise self._role_error(action, ours) from None  # STS's reason, not KMS's
                error = KmsUnavailable.of(action, exc)
                if action in NOT_IDEMPOTENT:
                    raise error from None
                delay = self._backoff(attempt)
            else:
                self._observe_date(getattr(response, "headers", None))
                _log.debug("kms_call", action=action, attempt=attempt, result="ok")
                self._count(action, "OK")
                return response
            finally:
                if error is not None:
                    self._count(action, code_of(error))
            last = attempt >= self.retry.max_attempts + renewed  # the renewal's own try
            _log.debug("kms_call", action=action, attempt=attempt, result=code_of(error),
                       retry=not last)  # fmt: skip
            if last:
                raise error from None
            with self._stats_lock:
                self.stats["retries"] += 1
            self._sleep(delay)

    def _renew(self, action: str) -> None:
        """Drop the refused assumed-role credentials (unless another thread already has) so the
        next attempt assumes the role anew; one warning line, no credential text."""
        assert self._renewal is not None
        dropped = self._renewal.invalidate()
        _log.warning("assumed_role_expired", action=action, role_arn=self._renewal.role_arn,
                     code=CREDENTIALS_EXPIRED, dropped=dropped, retry=True)  # fmt: skip

    def _role_error(self, action: str, error: Exception) -> Exception:
        """The error to raise for ``error`` raised by our credential provider inside a call:
        the assumed role not assumable is ``RoleUnavailable`` (the target stops); anything
        else of ours as it is. The next call assumes anew."""
        role_arn = getattr(error, "role_arn", None)
        if self._renewal is None or not role_arn:
            return error
        code = str(getattr(error, "code", "") or type(error).__name__)
        transient = bool(getattr(error, "transient", False))
        _log.warning("assumed_role_unavailable", action=action, role_arn=role_arn, code=code,
                     transient=transient)  # fmt: skip
        return RoleUnavailable(action, role_arn, code, transient=transient)

    def _count(self, action: str, code: str) -> None:
        with self._stats_lock:
            self.requests[action, code] = self.requests.get((action, code), 0) + 1

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter, capped."""
        ceiling = min(self.retry.max_delay, self.retry.base_delay * 2 ** (attempt - 1))
        return self._rng.uniform(0, ceiling)

    # -- keys --

    def describe_key(self, key_id: str) -> KeyInfo:
        r = self._call(
            "DescribeKey",
            self._client.describe_key_with_options,
            km.DescribeKeyRequest(key_id=key_id),
        )
        return _key_info(r.body.key_metadata, r.body.request_id)

    def create_key(
        self,
        *,
        key_spec: str,
        key_usage: str,
        instance_id: str,
        description: str,
        tags: dict[str, str],
        policy: str | None = None,
    ) -> KeyInfo:
        request = km.CreateKeyRequest(
            key_spec=key_spec,
            key_usage=key_usage,
            origin="EXTERNAL",
            dkmsinstance_id=instance_id,
            description=description,
            tags=json.dumps([{"TagKey": k, "TagValue": v} for k, v in tags.items()]),
            policy=policy or None,
        )
        check_tags(tags)
        r = self._call("CreateKey", self._client.create_key_with_options, request)
        return _key_info(r.body.key_metadata, r.body.request_id)

    def instance_protection_level(self, instance_id: str) -> str | None:
        """SOFTWARE or HSM for a KMS instance, from GetKmsInstance's ``ProductVersion``
        (``types.instance_protection_level``: ``3``/``5`` or the ROS names); None when KMS
        does not say in a form we know (docs/FIDELITY.md).

        Raises ``KmsApiError`` (``Forbidden.ResourceNotFound`` for an unknown instance).
        """
        r = self._call(
            "GetKmsInstance",
            self._client.get_kms_instance_with_options,
            km.GetKmsInstanceRequest(kms_instance_id=instance_id),
        )
        return instance_protection_level(getattr(r.body.kms_instance, "product_version", ""))

    def list_keys(
        self, *, filters: list[dict[str, Any]] | None = None, max_keys: int = 100_000
    ) -> list[str]:
        """All key ids (paged, 100 per page, hard-capped at ``max_keys``)."""
        out: list[str] = []
        page = 1
        while len(out) < max_keys:
            request = km.ListKeysRequest(page_number=page, page_size=100)
            if filters:
                request.filters = json.dumps(filters)
            r = self._call("ListKeys", self._client.list_keys_with_options, request)
            keys = r.body.keys.key if r.body.keys and r.body.keys.key else []
            out.extend(k.key_id for k in keys)
            if not keys or len(out) >= (r.body.total_count or 0):
                break
            page += 1
        return out[:max_keys]

    def create_alias(self, alias: str, key_id: str) -> None:
        self._call(
            "CreateAlias",
            self._client.create_alias_with_options,
            km.CreateAliasRequest(alias_name=alias, key_id=key_id),
        )

    def aliases_of(self, key_id: str) -> list[str]:
        """The key's alias names (ListAliasesByKeyId, one page of 100: KMS allows far fewer)."""
        r = self._call(
            "ListAliasesByKeyId",
            self._client.list_aliases_by_key_id_with_options,
            km.ListAliasesByKeyIdRequest(key_id=key_id, page_number=1, page_size=100),
        )
        listed = r.body.aliases.alias if r.body.aliases and r.body.aliases.alias else []
        return sorted(a.alias_name for a in listed if a.alias_name)

    def list_tags(self, key_id: str) -> dict[str, str]:
        r = self._call(
            "ListResourceTags",
            self._client.list_resource_tags_with_options,
            km.ListResourceTagsRequest(key_id=key_id),
        )
        tags = r.body.tags.tag if r.body.tags and r.body.tags.tag else []
        return {t.tag_key: t.tag_value or "" for t in tags}

    def tag_key(self, key_id: str, tags: dict[str, str]) -> None:
        check_tags(tags)  # refused here, with KMS's rule, before the call
        payload = json.dumps([{"TagKey": k, "TagValue": v} for k, v in tags.items()])
        self._call(
            "TagResource",
            self._client.tag_resource_with_options,
            km.TagResourceRequest(key_id=key_id, tags=payload),
        )

    def untag_key(self, key_id: str, tag_keys: list[str]) -> None:
        self._call(
            "UntagResource",
            self._client.untag_resource_with_options,
            km.UntagResourceRequest(key_id=key_id, tag_keys=json.dumps(tag_keys)),
        )

    # -- import --

    def get_parameters_for_import(
        self, key_id: str, algorithm: str, wrapping_key_spec: str
    ) -> ImportParameters:
        r = self._call(
            "GetParametersForImport",
            self._client.get_parameters_for_import_with_options,
            km.GetParametersForImportRequest(
                key_id=key_id, wrapping_algorithm=algorithm, wrapping_key_spec=wrapping_key_spec
            ),
        )
        b = r.body
        return ImportParameters(
            key_id=b.key_id,
            public_key=b.public_key,
            token_expire_time=parse_kms_time(b.token_expire_time),
            request_id=b.request_id or "",
            import_token=b.import_token,
        )

    def import_key_material(
        self, key_id: str, encrypted_key_material: str, import_token: str, expire_unix: int
    ) -> str:
        """Returns the request id."""
        r = self._call(
            "ImportKeyMaterial",
            self._client.import_key_material_with_options,
            km.ImportKeyMaterialRequest(
                key_id=key_id,
                encrypted_key_material=encrypted_key_material,
                import_token=import_token,
                key_material_expire_unix=expire_unix,
            ),
        )
        return r.body.request_id or ""

    # -- public key and canaries --

    def key_version_id(self, key_id: str) -> str:
        """The ``KeyVersionId`` that GetPublicKey and the asymmetric calls need.

        DescribeKey's ``PrimaryKeyVersion`` is documented for symmetric keys only, so it comes
        from ListKeyVersions, once per key: an imported asymmetric key has one version and
        cannot be rotated. Raises ``ExecutionError`` when KMS lists no version.
        """
        cached = self._versions.get(key_id)
        if cached:
            return cached
        r = self._call(
            "ListKeyVersions",
            self._client.list_key_versions_with_options,
            km.ListKeyVersionsRequest(key_id=key_id, page_number=1, page_size=100),
        )
        listed = r.body.key_versions.key_version if r.body.key_versions else None
        versions = [v for v in listed or [] if v.key_version_id]
        if not versions:
            raise ExecutionError(f"KMS lists no key version for {key_id}")
        # Should KMS ever list more than one, the newest is the one in use.
        newest = max(versions, key=lambda v: (v.creation_date or "", v.key_version_id))
        if len(self._versions) >= _MAX_CACHED_VERSIONS:
            self._versions.clear()
        self._versions[key_id] = newest.key_version_id
        return newest.key_version_id

    def get_public_key(self, key_id: str, version_id: str) -> str:
        """The key's public key, PEM."""
        r = self._call(
            "GetPublicKey",
            self._client.get_public_key_with_options,
            km.GetPublicKeyRequest(key_id=key_id, key_version_id=version_id),
        )
        return r.body.public_key


def _key_info(m: Any, request_id: str | None) -> KeyInfo:
    return KeyInfo(
        key_id=m.key_id,
        arn=m.arn or "",
        key_spec=m.key_spec or "",
        key_usage=m.key_usage or "",
        key_state=m.key_state or "",
        origin=m.origin or "",
        protection_level=m.protection_level or "",
        instance_id=m.dkmsinstance_id or "",
        material_expire_time=parse_kms_time(m.material_expire_time),
        delete_date=parse_kms_time(m.delete_date),
        creation_date=parse_kms_time(m.creation_date),
        description=m.description or "",
        request_id=request_id or "",
    )

"""The KMS gateway: the only module that imports ``alibabacloud_kms20160120``.

* Every call goes through ``KmsGateway._call``, which refuses actions outside the gateway's
  allowlist (invariant 1: never rotate, never delete), spends the request budget, retries what
  may be retried, reads KMS's clock from the ``Date`` header and translates SDK exceptions into
  ``KmsApiError`` / ``KmsUnavailable``.
* Results are our frozen dataclasses, never SDK models. Anything holding a token or plaintext
  keeps it out of ``repr``.
* Transport errors are reported by type only: the SDK's own messages can carry the request URL,
  and the URL carries ``EncryptedKeyMaterial`` and the import token.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from alibabacloud_kms20160120 import models as km
from alibabacloud_kms20160120.client import Client
from alibabacloud_tea_openapi.exceptions import (
    ClientException,
    ServerException,
    ThrottlingException,
)
from alibabacloud_tea_openapi.models import Config
from darabonba.runtime import RuntimeOptions

from .errors import ConfigError, ExecutionError
from .logs import get_logger
from .tags import check_tags

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
# hold / release: the hold tag and nothing else.
HOLD = Allowlist("hold", _READ_KEYS | {"TagResource", "UntagResource"})
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
assert not any(a.actions & FORBIDDEN for a in (SWEEP, READ_ONLY, ENROLL, HOLD))

# Quota classes, as KMS counts them (ALIBABA-FACTS.md "Quotas"; docs/FIDELITY.md): each has its
# own per-account, per-region quota, shared with the customer's production traffic.
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
}
DOCUMENTED_QPS = {"read": 50.0, "tags": 300.0, "write": 30.0, "create": 10.0, "crypto": 200.0}
_QUOTA_CLASS_OF = {action: kind for kind, actions in QUOTA_CLASSES.items() for action in actions}
# Retrying these after an unknown outcome could do the work twice.
NOT_IDEMPOTENT = frozenset({"CreateKey"})
_log = get_logger("byok_keeper.kms")  # debug: one line per KMS attempt, names and codes only
_TEXT = "text"  # SecretDataType of an envelope
_MAX_CACHED_VERSIONS = 100_000


# ---- errors ----------------------------------------------------------------------------------


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

    def __init__(self, action: str, cause: str) -> None:
        self.action = action
        self.cause = cause
        super().__init__(f"KMS {action} failed: no answer from KMS ({cause})")


class NoKmsAccess(ConfigError):
    """This host cannot use KMS at all (no credentials, a clock KMS refuses).

    Every call would fail the same way, so a sweep stops with the one reason instead of
    failing key after key.
    """


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
        local = time.strftime(_ISO, time.gmtime())
        super().__init__(
            f"KMS refused the request time on {action} (InvalidTimeStamp.Expired): this host's "
            f"clock reads {local}, more than 15 minutes from Alibaba Cloud's; fix time "
            "synchronisation (NTP/chrony) and run again"
        )


class ActionNotAllowed(ExecutionError):
    """A caller asked for an action outside its allowlist: a bug, refused before the SDK."""

    def __init__(self, action: str, allowlist: Allowlist) -> None:
        self.action = action
        super().__init__(f"KMS action {action} is not allowed for {allowlist.name}")


# ---- results -------------------------------------------------------------------------------

_ISO = "%Y-%m-%dT%H:%M:%SZ"


def parse_kms_time(text: str | None) -> datetime | None:
    """``YYYY-MM-DDTHH:MM:SSZ`` -> aware UTC datetime; empty -> None."""
    if not text:
        return None
    return datetime.strptime(text, _ISO).replace(tzinfo=timezone.utc)


def format_kms_time(when: datetime | None) -> str:
    return when.astimezone(timezone.utc).strftime(_ISO) if when else ""


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    arn: str
    key_spec: str
    key_usage: str
    key_state: str
    origin: str
    protection_level: str
    instance_id: str
    # No PrimaryKeyVersion: DescribeKey documents it for symmetric keys only; asymmetric calls
    # take their KeyVersionId from ListKeyVersions (KmsGateway.key_version_id).
    material_expire_time: datetime | None
    delete_date: datetime | None
    creation_date: datetime | None
    description: str
    request_id: str = ""


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


# ---- request budget --------------------------------------------------------------------------


class RequestBudget:
    """Token buckets, one per KMS quota class, shared by every thread of a run.

    Blocks (through the injected ``sleep``) until a token is free, so a fleet of any size stays
    under the configured rates. Defaults are half the documented quotas (50 read, 300
    ListResourceTags, 30 write, 10 CreateKey, 200 asymmetric crypto QPS), which production
    traffic shares. The burst is half a second's worth: the server's window allows a whole
    second, and the difference absorbs network jitter that bunches requests up on arrival, so a
    budget equal to the quota still never trips throttling.
    """

    BURST_SECONDS = 0.5

    def __init__(
        self,
        read_qps: float = DOCUMENTED_QPS["read"] / 2,
        write_qps: float = DOCUMENTED_QPS["write"] / 2,
        *,
        create_qps: float = DOCUMENTED_QPS["create"] / 2,
        crypto_qps: float = DOCUMENTED_QPS["crypto"] / 2,
        tags_qps: float = DOCUMENTED_QPS["tags"] / 2,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rates = {
            "read": float(read_qps),
            "write": float(write_qps),
            "create": float(create_qps),
            "crypto": float(crypto_qps),
            "tags": float(tags_qps),
        }
        self._monotonic = monotonic
        self._sleep = sleep
        self._next: dict[str, float] = dict.fromkeys(self._rates, float("-inf"))
        self._lock = threading.Lock()

    @classmethod
    def flat(cls, qps: float, **kwargs: Any) -> RequestBudget:
        """The same rate for every class (tests and drills against aliyun-local)."""
        rates = dict.fromkeys(("create_qps", "crypto_qps", "tags_qps"), qps)
        return cls(qps, qps, **rates, **kwargs)

    def rate(self, kind: str) -> float:
        return self._rates[kind]

    def spend(self, action: str) -> None:
        kind = _QUOTA_CLASS_OF.get(action)
        if kind is None:
            return
        interval = 1.0 / self._rates[kind]
        with self._lock:
            now = self._monotonic()
            # A reservation schedule: at most BURST_SECONDS of credit, then the steady rate.
            slot = max(self._next[kind], now - self.BURST_SECONDS + interval)
            self._next[kind] = slot + interval
        wait = slot - now
        if wait > 0:
            self._sleep(wait)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0


# ---- the gateway -------------------------------------------------------------------------------


class KmsGateway:
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
    ) -> None:
        self._client = client
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
        # (action, result code) -> attempts: byok_keeper_kms_requests_total (byok_keeper.metrics)
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
        )
        other._clock_offset = self._clock_offset
        other._versions = self._versions
        return other

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
                error = _api_error(action, exc)
                # Honour x-acs-retry-after (milliseconds), capped; else back off as usual.
                hinted = min(self.retry.max_delay, max(0.0, (exc.retry_after or 0) / 1000.0))
                delay = hinted or self._backoff(attempt)
            except (ClientException, ServerException) as exc:
                error = _api_error(action, exc)
                if error.code == "InvalidTimeStamp.Expired":
                    raise ClockSkewError(action) from None
                if error.throttled:
                    # Throttled calls were not executed: retry any action, CreateKey included.
                    with self._stats_lock:
                        self.stats["throttled"] += 1
                elif not error.retryable:
                    raise error from None
                elif action in NOT_IDEMPOTENT:
                    raise error from None  # a 5xx may have done the work: never do it twice
                delay = self._backoff(attempt)
            except Exception as exc:  # transport: refused, reset, timeout, non-JSON body
                if _is_credential_error(exc):
                    raise CredentialsMissing() from None
                error = KmsUnavailable(action, _describe_transport(exc))
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
                    self._count(action, _code_of(error))
            last = attempt >= self.retry.max_attempts
            _log.debug("kms_call", action=action, attempt=attempt, result=_code_of(error),
                       retry=not last)  # fmt: skip
            if last:
                raise error from None
            with self._stats_lock:
                self.stats["retries"] += 1
            self._sleep(delay)

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
        """SOFTWARE or HSM for a KMS instance, from GetKmsInstance's ``ProductVersion``; None
        when KMS does not say in a form we know (docs/FIDELITY.md: its values are documented
        for ROS only -- software, hardware, software-small, hardware-small).

        Raises ``KmsApiError`` (``Forbidden.ResourceNotFound`` for an unknown instance).
        """
        r = self._call(
            "GetKmsInstance",
            self._client.get_kms_instance_with_options,
            km.GetKmsInstanceRequest(kms_instance_id=instance_id),
        )
        instance = r.body.kms_instance
        version = str(getattr(instance, "product_version", "") or "").lower()
        if version.startswith("hardware"):
            return "HSM"
        if version.startswith("software"):
            return "SOFTWARE"
        return None

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

    def sign(self, key_id: str, version_id: str, algorithm: str, digest: bytes) -> bytes:
        r = self._call(
            "AsymmetricSign",
            self._client.asymmetric_sign_with_options,
            km.AsymmetricSignRequest(
                key_id=key_id,
                key_version_id=version_id,
                algorithm=algorithm,
                digest=base64.b64encode(digest).decode(),
            ),
        )
        return base64.b64decode(r.body.value)

    def asymmetric_encrypt(
        self, key_id: str, version_id: str, algorithm: str, plaintext: bytes
    ) -> bytes:
        r = self._call(
            "AsymmetricEncrypt",
            self._client.asymmetric_encrypt_with_options,
            km.AsymmetricEncryptRequest(
                key_id=key_id,
                key_version_id=version_id,
                algorithm=algorithm,
                plaintext=base64.b64encode(plaintext).decode(),
            ),
        )
        return base64.b64decode(r.body.ciphertext_blob)

    def asymmetric_decrypt(
        self, key_id: str, version_id: str, algorithm: str, ciphertext: bytes
    ) -> bytes:
        r = self._call(
            "AsymmetricDecrypt",
            self._client.asymmetric_decrypt_with_options,
            km.AsymmetricDecryptRequest(
                key_id=key_id,
                key_version_id=version_id,
                algorithm=algorithm,
                ciphertext_blob=base64.b64encode(ciphertext).decode(),
            ),
        )
        return base64.b64decode(r.body.plaintext)

    # -- envelope encryption (the KMS sealer) --

    def generate_data_key(self, key_id: str, context: dict[str, str]) -> DataKey:
        r = self._call(
            "GenerateDataKey",
            self._client.generate_data_key_with_options,
            km.GenerateDataKeyRequest(
                key_id=key_id, key_spec="AES_256", encryption_context=dict(context)
            ),
        )
        return DataKey(
            key_id=r.body.key_id,
            ciphertext_blob=r.body.ciphertext_blob,
            request_id=r.body.request_id or "",
            plaintext=bytearray(base64.b64decode(r.body.plaintext)),
        )

    def decrypt_data_key(self, ciphertext_blob: str, context: dict[str, str]) -> bytearray:
        r = self._call(
            "Decrypt",
            self._client.decrypt_with_options,
            km.DecryptRequest(ciphertext_blob=ciphertext_blob, encryption_context=dict(context)),
        )
        return bytearray(base64.b64decode(r.body.plaintext))

    # -- Secrets Manager (the kms-secrets vault store) --

    def get_secret_value(self, name: str) -> SecretValue | None:
        """The ACSCurrent value, or None when the secret does not exist."""
        try:
            r = self._call(
                "GetSecretValue",
                self._client.get_secret_value_with_options,
                km.GetSecretValueRequest(secret_name=name),
            )
        except KmsApiError as exc:
            if exc.code == "Forbidden.ResourceNotFound":
                return None
            raise
        return SecretValue(
            name=r.body.secret_name, version_id=r.body.version_id, data=r.body.secret_data
        )

    def create_secret(self, name: str, data: str, version_id: str) -> None:
        self._call(
            "CreateSecret",
            self._client.create_secret_with_options,
            km.CreateSecretRequest(
                secret_name=name, secret_data=data, version_id=version_id, secret_data_type=_TEXT
            ),
        )

    def put_secret_value(self, name: str, data: str, version_id: str) -> None:
        self._call(
            "PutSecretValue",
            self._client.put_secret_value_with_options,
            km.PutSecretValueRequest(
                secret_name=name, secret_data=data, version_id=version_id, secret_data_type=_TEXT
            ),
        )

    def list_secret_names(self, contains: str, max_names: int = 100_000) -> list[str]:
        out: list[str] = []
        page = 1
        while len(out) < max_names:
            request = km.ListSecretsRequest(
                page_number=page,
                page_size=100,
                filters=json.dumps([{"Key": "SecretName", "Values": [contains]}]),
            )
            r = self._call("ListSecrets", self._client.list_secrets_with_options, request)
            items = (
                r.body.secret_list.secret
                if r.body.secret_list and r.body.secret_list.secret
                else []
            )
            out.extend(s.secret_name for s in items)
            if not items or len(out) >= (r.body.total_count or 0):
                break
            page += 1
        return out[:max_names]


def _api_error(action: str, exc: Any) -> KmsApiError:
    return KmsApiError(
        action,
        str(getattr(exc, "code", "") or "Unknown"),
        int(getattr(exc, "status_code", 0) or 0),
        str(getattr(exc, "request_id", "") or ""),
        str((getattr(exc, "data", None) or {}).get("Message", "")),
    )


def _code_of(error: Exception) -> str:
    return getattr(error, "code", None) or getattr(error, "cause", None) or type(error).__name__


def _describe_transport(exc: BaseException) -> str:
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


def _is_credential_error(exc: BaseException) -> bool:
    inner = getattr(exc, "inner_exception", None) or exc
    return any(type(e).__name__ == "CredentialException" for e in (exc, inner))


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


# ---- building a client -----------------------------------------------------------------------


def split_endpoint(endpoint: str) -> tuple[str, str]:
    """``http://127.0.0.1:8080`` -> ("http", "127.0.0.1:8080"); no scheme means https."""
    endpoint = endpoint.strip()
    if "://" in endpoint:
        scheme, _, host = endpoint.partition("://")
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ConfigError(f"KMS endpoint scheme must be http or https, not {scheme!r}")
    else:
        scheme, host = "https", endpoint
    host = host.rstrip("/")
    if not host or "/" in host or " " in host:
        raise ConfigError(f"invalid KMS endpoint {endpoint!r}; expected [http[s]://]HOST[:PORT]")
    from .transport import check_plain_http  # plain http only to loopback (issue 13)

    check_plain_http(scheme, host, f"endpoint {endpoint!r}")
    return scheme, host


def build_client(
    *,
    region: str,
    endpoint: str | None = None,
    credential: Any = None,
    connect_timeout_ms: int = 5_000,
    read_timeout_ms: int = 30_000,
) -> Client:
    """An SDK client from settings.

    Credentials come from ``credential`` (an ``alibabacloud_credentials`` client, e.g. the FC
    context's STS credentials) or else the standard chain: ``ALIBABA_CLOUD_ACCESS_KEY_ID`` /
    ``ALIBABA_CLOUD_ACCESS_KEY_SECRET`` / ``ALIBABA_CLOUD_SECURITY_TOKEN``, profiles, instance
    roles.
    """
    from alibabacloud_credentials.client import Client as CredentialClient

    if credential is None:
        credential = CredentialClient()
    scheme, host = split_endpoint(endpoint) if endpoint else ("https", f"kms.{region}.aliyuncs.com")
    return Client(
        Config(
            credential=credential,
            endpoint=host,
            protocol=scheme,
            region_id=region,
            connect_timeout=connect_timeout_ms,
            read_timeout=read_timeout_ms,
        )
    )


def static_credential(
    access_key_id: str, access_key_secret: str, security_token: str | None = None
) -> Any:
    """An ``alibabacloud_credentials`` client for explicit (e.g. FC context) credentials."""
    from alibabacloud_credentials.client import Client as CredentialClient
    from alibabacloud_credentials.models import Config as CredentialConfig

    if security_token:
        config = CredentialConfig(
            type="sts",
            access_key_id=access_key_id,
            access_key_secret=access_key_secret,
            security_token=security_token,
        )
    else:
        config = CredentialConfig(
            type="access_key", access_key_id=access_key_id, access_key_secret=access_key_secret
        )
    return CredentialClient(config)

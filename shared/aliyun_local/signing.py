"""Request authentication, as Alibaba Cloud's gateway does it.

Two schemes:

* **ACS3-HMAC-SHA256** (the current SDKs, ``alibabacloud-tea-openapi``): the canonical request is
  method, path, canonical query (sorted keys, values percent-encoded per RFC 3986 with only
  ``~`` safe), the canonical headers named in ``SignedHeaders``, that list, and the hex SHA-256
  of the body; the signature is hex HMAC-SHA256 over ``ACS3-HMAC-SHA256\\n`` + hex SHA-256 of the
  canonical request. ``x-acs-content-sha256`` must equal the body hash. STS credentials add a
  signed ``x-acs-security-token``.
* **RPC v1, HMAC-SHA1** (``aliyun-python-sdk-core``): ``Signature`` = Base64 HMAC-SHA1 with key
  ``secret + "&"`` over ``METHOD&%2F&`` + the percent-encoded sorted parameters; STS adds a
  ``SecurityToken`` parameter.

The gateway also refuses a request whose signed time (``x-acs-date``, or RPC ``Timestamp``)
is more than 15 minutes from its own: 400 ``InvalidTimeStamp.Expired``. aliyun-local compares
with the host's real clock, not the emulated clock (tests move that one by days to expire
material; clients on the same host always send real time).

Failures raise ``ApiError`` with the codes the real gateway uses. Nothing here logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol
from urllib.parse import quote

from .errors import ApiError

_ACS3 = re.compile(
    r"^ACS3-HMAC-SHA256\s+Credential=([^,]+),\s*SignedHeaders=([^,]*),\s*Signature=([0-9a-f]+)\Z"
)


class KeyStore(Protocol):
    """What the verifiers ask of the emulator's keys (``Credentials``, ``accounts.Keyring``)."""

    def secret_for(self, access_key_id: str) -> str: ...

    def check_token(self, access_key_id: str, token: str | None) -> None: ...


@dataclass(frozen=True)
class Credentials:
    """What the emulator accepts: access key id -> secret, and STS tokens per access key id."""

    secrets: Mapping[str, str]
    security_tokens: Mapping[str, str]

    def secret_for(self, access_key_id: str) -> str:
        secret = self.secrets.get(access_key_id)
        if secret is None:
            raise ApiError("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
        return secret

    def check_token(self, access_key_id: str, token: str | None) -> None:
        check_security_token(self.security_tokens.get(access_key_id), token)


# What an STS security token looks like: ``CAIS`` and Base64 (STS's tokens, as the SDK docs and
# the OSS error pages show them; the emulator's own are ``CAIS`` and URL-safe Base64).
_TOKEN_FORMAT = re.compile(r"\ACAIS[A-Za-z0-9+/=_-]{16,}\Z")


def check_security_token(expected: str | None, token: str | None) -> None:
    """Judge the security token a request carries against its access key's (None: the key is
    long-term and has none), as the POP gateway does (docs/FIDELITY.md, "Accounts, regions and
    STS"): the right token passes; none for a key that has one is ``MissingSecurityToken``; a
    token that is not token-shaped is ``InvalidSecurityToken.Malformed``; a token-shaped one
    that is not the key's (another key's, or any token on a long-term key) is
    ``InvalidSecurityToken.MismatchWithAccessKey``. All HTTP 400. Expiry is the key store's."""
    if token is None:
        if expected is not None:
            raise ApiError(
                "MissingSecurityToken", "SecurityToken is mandatory for this action.", 400
            )
        return
    if expected is not None and hmac.compare_digest(expected.encode(), token.encode()):
        return
    if not _TOKEN_FORMAT.match(token):
        raise ApiError(
            "InvalidSecurityToken.Malformed", "Specified SecurityToken is malformed.", 400
        )
    raise ApiError(
        "InvalidSecurityToken.MismatchWithAccessKey",
        "Specified SecurityToken mismatch with the AccessKey.",
        400,
    )


def _bad_signature(detail: str) -> ApiError:
    return ApiError(
        "IncompleteSignature",
        f"The request signature does not conform to Aliyun standards: {detail}",
        400,
    )


REQUEST_TIME_TOLERANCE_SECONDS = 15 * 60


def check_request_time(value: str | None, now: float) -> None:
    """Refuse a signed request time (``YYYY-MM-DDTHH:MM:SSZ``) more than 15 minutes off."""
    if value is None:
        return  # unsigned or not carrying a time: the signature check decides
    try:
        sent = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise ApiError(
            "InvalidTimeStamp.Format",
            "Specified time stamp or date value is not well formatted.",
            400,
        ) from None
    if abs(sent.timestamp() - now) > REQUEST_TIME_TOLERANCE_SECONDS:
        raise ApiError(
            "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.", 400
        )


def _rfc3986(value: str) -> str:
    return quote(value, safe="~", encoding="utf-8")


def verify_acs3(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    credentials: KeyStore,
) -> str:
    """Verify an ACS3-HMAC-SHA256 request; return the access key id. ``headers`` lower-case."""
    m = _ACS3.match(headers.get("authorization", "").strip())
    if not m:
        raise _bad_signature("malformed Authorization header")
    access_key_id, signed, signature = m.groups()
    secret = credentials.secret_for(access_key_id)

    body_hash = hashlib.sha256(body).hexdigest()
    if headers.get("x-acs-content-sha256", "") != body_hash:
        raise _bad_signature("x-acs-content-sha256 does not match the body")
    names = signed.split(";") if signed else []
    if names != sorted(names) or any(n != n.lower() for n in names):
        raise _bad_signature("SignedHeaders must be lower-case and sorted")
    for required in ("host", "x-acs-action", "x-acs-content-sha256"):
        if required in headers and required not in names:
            raise _bad_signature(f"header {required} must be signed")
    token = headers.get("x-acs-security-token")
    if token is not None:
        if "x-acs-security-token" not in names:
            raise _bad_signature("header x-acs-security-token must be signed")
        if headers.get("x-acs-accesskey-id") not in (None, access_key_id):
            raise _bad_signature("x-acs-accesskey-id does not match the credential")
    credentials.check_token(access_key_id, token)

    canonical_query = "&".join(f"{k}={_rfc3986(v)}" for k, v in sorted(query))
    canonical_headers = "".join(f"{n}:{headers.get(n, '').strip()}\n" for n in names)
    canonical_request = (
        f"{method}\n{path or '/'}\n{canonical_query}\n{canonical_headers}\n{signed}\n{body_hash}"
    )
    string_to_sign = (
        "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    )
    expected = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise ApiError(
            "SignatureDoesNotMatch",
            "Specified signature does not match our calculation.",
            400,
        )
    return access_key_id


def verify_rpc_v1(method: str, params: Mapping[str, str], credentials: KeyStore) -> str:
    """Verify an RPC v1 (HMAC-SHA1) request over all its parameters; return the access key id."""
    signature = params.get("Signature")
    access_key_id = params.get("AccessKeyId")
    if not signature or not access_key_id:
        raise _bad_signature("missing Signature or AccessKeyId")
    if params.get("SignatureMethod", "HMAC-SHA1") != "HMAC-SHA1":
        raise _bad_signature("only HMAC-SHA1 is supported for RPC v1")
    secret = credentials.secret_for(access_key_id)
    credentials.check_token(access_key_id, params.get("SecurityToken"))
    pairs = sorted((k, v) for k, v in params.items() if k != "Signature")
    canonical = "&".join(f"{_rfc3986(k)}={_rfc3986(v)}" for k, v in pairs)
    string_to_sign = f"{method}&%2F&{_rfc3986(canonical)}"
    expected = base64.b64encode(
        hmac.new(f"{secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()
    ).decode()
    if not hmac.compare_digest(expected, signature):
        # The RPC gateway echoes its string to sign (the caller's own parameters) so clients
        # can show where they differ; aliyun-python-sdk-core parses this exact shape.
        raise ApiError(
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation. "
            f"server string to sign is:{string_to_sign}",
            400,
        )
    return access_key_id

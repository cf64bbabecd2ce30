"""RPC-style requests, as KMS and STS take them: the parameters in the query string and/or a
form body, signed with ACS3-HMAC-SHA256 (``Authorization`` header) or RPC v1 (``Signature``
parameter). ``parse`` reads one, ``require_action`` names its action, ``verify_signature``
authenticates it (``signing.py``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import ApiError
from .signing import KeyStore, check_request_time, verify_acs3, verify_rpc_v1


@dataclass(frozen=True)
class Request:
    """One RPC-style request as the wire carries it (query string and/or form body)."""

    method: str
    path: str  # percent-encoded, as sent
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    params: dict[str, str]  # query and form body merged

    @property
    def action(self) -> str:
        return self.headers.get("x-acs-action") or self.params.get("Action") or ""

    @property
    def version(self) -> str | None:
        return self.headers.get("x-acs-version") or self.params.get("Version")

    @property
    def key_id(self) -> str | None:
        return self.params.get("KeyId")


def parse(method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Request:
    parts = urlsplit(raw_path)
    query = parse_qsl(parts.query, keep_blank_values=True)
    params = dict(query)
    if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return Request(method, parts.path, query, headers, body, params)


def require_action(request: Request) -> str:
    """The action named, before anything else is checked (even the signature)."""
    if not request.action:
        raise ApiError("MissingParameter", "The parameter Action is required.", 400)
    return request.action


def verify_signature(request: Request, credentials: KeyStore) -> str:
    """ACS3 (``Authorization`` header) or RPC v1 (``Signature`` parameter); unsigned fails.
    Returns the caller's access key id."""
    headers, params = request.headers, request.params
    if "authorization" in headers:
        access_key_id = verify_acs3(
            request.method,
            unquote(request.path),
            request.query,
            headers,
            request.body,
            credentials,
        )
        check_request_time(headers.get("x-acs-date"), time.time())
        return access_key_id
    if "Signature" in params:
        access_key_id = verify_rpc_v1(request.method, params, credentials)
        check_request_time(params.get("Timestamp"), time.time())
        return access_key_id
    raise ApiError(
        "IncompleteSignature",
        "The request signature does not conform to Aliyun standards: unsigned.",
        400,
    )

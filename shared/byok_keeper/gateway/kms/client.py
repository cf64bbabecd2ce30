"""Building an SDK client from settings. The SDK is imported inside the builders only, so this
module (and ``split_endpoint``, which ``dispatch`` uses) loads no SDK at import."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...domain.errors import ConfigError
from ..transport import check_plain_http, shown_url  # http only to loopback (issue 13)

if TYPE_CHECKING:
    from alibabacloud_kms20160120.client import Client


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
        raise ConfigError(
            f"invalid KMS endpoint {shown_url(endpoint)!r}; expected [http[s]://]HOST[:PORT]"
        )
    check_plain_http(scheme, host, f"endpoint {shown_url(endpoint)!r}")
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
    from alibabacloud_kms20160120.client import Client
    from alibabacloud_tea_openapi.models import Config

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

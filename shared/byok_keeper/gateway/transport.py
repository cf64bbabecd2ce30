"""Transport rules for every endpoint setting: plain ``http`` only to this machine.

Over plain HTTP a man in the middle can swap the wrapping public key GetParametersForImport
returns and read the private material from ImportKeyMaterial, or read credentials on their way
from an STS-style credentials URI. ``http`` is therefore accepted only for loopback hosts
(127.0.0.0/8, ::1, ``localhost``), where aliyun-local runs; everything else must be ``https``.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from ..domain.errors import ConfigError

# Endpoint-like environment variables the Alibaba Cloud credential chain reads on its own.
CREDENTIAL_ENDPOINT_ENV = ("ALIBABA_CLOUD_CREDENTIALS_URI",)


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``; False for any other
    name (``127.0.0.1.example.com`` included), which DNS could point anywhere."""
    if not host:
        return False
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_plain_http(scheme: str, host: str, setting: str) -> None:
    """Refuse ``http`` to a host that is not loopback. ``host`` may carry ``:PORT`` (and
    ``user@``, which counts as the host after it). Raises ``ConfigError`` (exit 2)."""
    if scheme.lower() != "http":
        return
    hostname = urlsplit(f"http://{host}").hostname
    if not is_loopback(hostname):
        raise ConfigError(
            f"{setting} uses plain http to {shown_host(host)!r}, which is not this machine; use "
            "https (http is allowed only for 127.0.0.0/8, ::1 and localhost)"
        )


def shown_host(netloc: str) -> str:
    """``host[:port]`` of a URL's network location, without its ``user:password@``: a refusal
    must not print credentials someone put in a URL (issue 25)."""
    return netloc.rpartition("@")[2]


def shown_url(url: str) -> str:
    """``url`` with any ``user:password@`` taken out of its network location, for messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    netloc, slash, path = rest.partition("/")
    return f"{scheme}{sep}{shown_host(netloc)}{slash}{path}"


def check_endpoint(endpoint: str, setting: str) -> None:
    """The same rule for an endpoint setting as written (``[scheme://]HOST[:PORT]``); no scheme
    means https. Shape errors are left to ``kms.split_endpoint``, which parses endpoints."""
    text = endpoint.strip()
    if "://" not in text:
        return
    scheme, _, host = text.partition("://")
    host = host.rstrip("/")
    if host and "/" not in host and " " not in host:
        check_plain_http(scheme, host, setting)


def check_url(url: str, setting: str) -> None:
    """The same rule for a full URL (a credentials URI, which has a path)."""
    parts = urlsplit(url.strip())
    if parts.scheme:
        check_plain_http(parts.scheme, parts.netloc, setting)

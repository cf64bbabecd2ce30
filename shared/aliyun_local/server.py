"""The HTTP side of aliyun-local: threaded servers speaking the wire protocols of KMS, STS
and FC to the real SDKs, plus the unsigned admin API under ``/_local/``. This module routes;
each service's request handling is in ``endpoints/`` and the emulated cloud in ``emulator.py``.

Use ``LocalServer`` in tests (a context manager that serves on a free loopback port in-process)
or ``aliyun-local serve`` from a shell. Many accounts and regions (``accounts.py``): one KMS port
per region, the account chosen by the credentials; STS (``sts.py``) on a port of its own; the
admin API and FC on every port. The server never logs request lines, query strings or
bodies: wrapped key material travels in the URL.
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .accounts import OTHER_ACCESS_KEY_SECRET, other_access_key_id
from .emulator import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    DEFAULT_ACCOUNT_ID,
    DEFAULT_REGION,
    Emulator,
)
from .endpoints import DROP, admin
from .endpoints import fc as fc_endpoint
from .endpoints import kms as kms_endpoint
from .endpoints import sts as sts_endpoint
from .eventbridge import DEFAULT_DELIVERY_DELAY
from .faults import Faults
from .signing import Credentials

MAX_BODY_BYTES = 1024 * 1024
MAX_FC_BODY_BYTES = 140 * 1024 * 1024  # CreateFunction carries the code zip, Base64
FC_PREFIXES = ("/2021-04-06/", "/2023-03-30/")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 60  # idle keep-alive connections
    # Headers and body go out as two writes; with Nagle's algorithm the second waits for the
    # client's delayed ACK (~40 ms), which would add latency KMS does not have.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        # Never log request lines: EncryptedKeyMaterial and tokens travel in the query string.
        pass

    def _read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        limit = MAX_FC_BODY_BYTES if self.path.startswith(FC_PREFIXES) else MAX_BODY_BYTES
        if length < 0 or length > limit:
            self._send(413, {}, {"Code": "RequestEntityTooLarge", "Message": "body too large"})
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, headers: dict[str, str], payload: Any) -> None:
        body = json.dumps(payload).encode()
        emulator = self.server.emulator
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Date", emulator.clock.http_date())
        if isinstance(payload, dict) and "RequestId" in payload:
            self.send_header("x-acs-request-id", payload["RequestId"])
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_raw(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        lowered = {k.lower() for k in headers}
        if "content-type" not in lowered:
            self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Date", self.server.emulator.clock.http_date())
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def date_time_string(self, timestamp: float | None = None) -> str:
        return self.server.emulator.clock.http_date()

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path, emulator = self.path, self.server.emulator
        if path.startswith("/_local/") or path == "/_local":
            status, payload = admin.handle(emulator, self.command, urlsplit(path).path, body)
            self._send(status, {}, payload)
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        if path.startswith(FC_PREFIXES):
            status, extra, out = fc_endpoint.handle(emulator, self.command, path, headers, body)
            self._send_raw(status, extra, out)
            return
        if self.server.region is None:  # the STS endpoint
            result = sts_endpoint.handle(emulator, self.command, path, headers, body)
        else:
            result = kms_endpoint.handle(
                emulator,
                self.command,
                path,
                headers,
                body,
                region=self.server.region,
                client_ip=self.client_address[0],
            )
        if result is DROP:
            self.close_connection = True
            return
        status, extra, payload = result  # type: ignore[misc]
        self._send(status, extra, payload)

    do_GET = do_POST = do_PUT = do_DELETE = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(
        self, address: tuple[str, int], emulator: Emulator, region: str | None = None
    ) -> None:
        self.emulator = emulator
        self.region = region  # the KMS region this port serves; None: the STS port
        super().__init__(address, _Handler)


def _address(server: _Server) -> str:
    host, port = server.server_address[:2]
    return f"{host}:{port}"


def _bind(host: str, port: int, emulator: Emulator) -> dict[str | None, _Server]:
    """A listening server per region (the first on ``port``) and one for STS (key None)."""
    servers: dict[str | None, _Server] = {}
    try:
        for i, region in enumerate([*emulator.tenancy.regions, None]):
            servers[region] = _Server((host, port if i == 0 else 0), emulator, region)
    except BaseException:
        for server in servers.values():
            server.server_close()
        raise
    return servers


class LocalServer:
    """aliyun-local in-process, for tests and the demo.

    >>> with LocalServer() as server:
    ...     config = Config(access_key_id="local", access_key_secret="local-secret",
    ...                     endpoint=server.endpoint, protocol="http", region_id="cn-hangzhou")

    ``reset()`` between tests; ``advance_clock``, ``set_faults``, ``calls`` and ``key_view``
    mirror the admin API.

    Many accounts and regions: ``LocalServer(accounts=[A, B], regions=[R1, R2])`` serves one
    KMS endpoint per region (``kms_endpoints[R]``; ``endpoint`` is the first region's) and STS
    at ``sts_endpoint``; ``access_key(account)`` is each account's (id, secret).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        state_path: str | Path | None = None,
        seed_path: str | Path | None = None,
        access_key_id: str = DEFAULT_ACCESS_KEY_ID,
        access_key_secret: str = DEFAULT_ACCESS_KEY_SECRET,
        security_tokens: dict[str, str] | None = None,
        extra_credentials: dict[str, str] | None = None,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT_ID,
        accounts: list[str] | None = None,
        regions: list[str] | None = None,
        profile: str = "default",
        settings: dict[str, Any] | None = None,
        fc_runtimes: dict[str, str] | None = None,
        event_delivery_delay: float = DEFAULT_DELIVERY_DELAY,
    ) -> None:
        """``profile`` and ``settings`` choose the answers to undocumented behaviours
        (docs/FIDELITY.md); ``reset()`` returns to them. ``fc_runtimes`` maps an FC runtime
        (``python3.12``) to the interpreter that runs it (default: ``pythonX.Y`` on PATH).
        ``event_delivery_delay`` is the seconds from a KMS write to its EventBridge delivery
        (``reset()`` returns to it). ``accounts``/``regions`` (the first of each the default;
        ``ValueError`` when malformed or repeated) replace ``account_id``/``region``; ``port``
        is the first region's."""
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        creds = {access_key_id: access_key_secret, **(extra_credentials or {})}
        self.emulator = Emulator(
            region=region,
            account_id=account_id,
            accounts=accounts,
            regions=regions,
            credentials=Credentials(creds, dict(security_tokens or {})),
            state_path=state_path,
            seed_path=seed_path,
            settings={"profile": profile, **(settings or {})},
            fc_runtimes=fc_runtimes,
            event_delivery_delay=event_delivery_delay,
        )
        self.region = self.emulator.region
        self._servers = _bind(host, port, self.emulator)
        self._server = self._servers[self.region]
        self._threads: list[threading.Thread] = []

    @property
    def endpoint(self) -> str:
        """The first region's KMS endpoint (and FC's, and the admin API's)."""
        return _address(self._server)

    @property
    def kms_endpoints(self) -> dict[str, str]:
        """Region -> its KMS endpoint ``HOST:PORT``."""
        return {r: _address(s) for r, s in self._servers.items() if r is not None}

    @property
    def sts_endpoint(self) -> str:
        return _address(self._servers[None])

    @property
    def accounts(self) -> list[str]:
        return list(self.emulator.tenancy.accounts)

    def access_key(self, account_id: str) -> tuple[str, str]:
        """(access key id, secret) of ``account_id``'s long-term key."""
        if account_id == self.emulator.account_id:
            return self.access_key_id, self.access_key_secret
        if account_id not in self.emulator.tenancy.accounts:
            raise KeyError(account_id)
        return other_access_key_id(account_id), OTHER_ACCESS_KEY_SECRET

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def start(self) -> LocalServer:
        for server in self._servers.values():
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"aliyun-local-{secrets.token_hex(2)}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            if self._threads:
                server.shutdown()
            server.server_close()
        self.emulator.events.shutdown()
        self.emulator.fc.shutdown()
        self.emulator.kms.key_pool.close()
        self.emulator.flush()
        for thread in self._threads:
            thread.join(timeout=10)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Admin conveniences (the same operations as the HTTP admin API).
    def reset(self) -> None:
        self.emulator.reset()

    def advance_clock(self, seconds: float) -> None:
        self.emulator.clock.advance(seconds)

    def now(self) -> float:
        return self.emulator.clock.now()

    def set_faults(self, **faults: Any) -> None:
        self.emulator.faults = Faults.from_json(faults)

    def calls(self) -> list[dict[str, Any]]:
        return self.emulator.calls.list()

    def key_view(self, key_id: str) -> dict[str, Any]:
        return self.emulator.key_view(key_id)

    def events(self) -> list[dict[str, Any]]:
        """``GET /_local/events``: the ActionTrail events emitted, with their deliveries."""
        return self.emulator.events.view()

    def attach_role_policies(self, role: str, policies: list[dict[str, Any]]) -> None:
        """``POST /_local/ram/roles``: the policy documents ``role`` carries, which FC checks
        before delivering to an async destination (``aliyun_local.ram``)."""
        self.emulator.fc.ram.attach(role, policies)

    def set_event_delay(self, seconds: float) -> None:
        self.emulator.events.set_delay(seconds)

    def wait_events(self, timeout: float = 30.0) -> bool:
        """Wait until every scheduled delivery is invoked and FC's async queue is drained."""
        return self.emulator.events.wait_idle(timeout)

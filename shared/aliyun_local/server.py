"""The HTTP side of aliyun-local: a threaded server speaking the KMS wire protocol to the real
SDKs, plus the unsigned admin API under ``/_local/``.

Use ``LocalServer`` in tests (a context manager that serves on a free loopback port in-process)
or ``aliyun-local serve`` from a shell. Many accounts and regions (``accounts.py``): one KMS port
per region, the account chosen by the credentials; STS (``sts.py``) on a port of its own; the
admin API on every port. The server never logs request lines, query strings or
bodies: wrapped key material travels in the URL.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from . import actiontrail
from . import sts as sts_api
from .accounts import OTHER_ACCESS_KEY_SECRET, Tenancy, keyring, other_access_key_id
from .clock import Clock, iso, parse_iso
from .errors import ApiError
from .eventbridge import DEFAULT_DELIVERY_DELAY, EventBus
from .faults import CallLog, Faults
from .fc import API_VERSION as FC_VERSION
from .fc import API_VERSION_V3 as FC3_VERSION
from .fc import responses as fc_responses
from .fc.models import FcBackend
from .kms import responses as kms_responses
from .kms.models import KmsBackend
from .kms.responses import quota_class
from .signing import Credentials, check_request_time, verify_acs3, verify_rpc_v1

log = logging.getLogger("aliyun_local")

DEFAULT_ACCESS_KEY_ID = "local"
DEFAULT_ACCESS_KEY_SECRET = "local-secret"  # noqa: S105 - the emulator's documented default
DEFAULT_REGION = "cn-hangzhou"
DEFAULT_ACCOUNT_ID = "1234567890123456"
MAX_BODY_BYTES = 1024 * 1024
MAX_FC_BODY_BYTES = 140 * 1024 * 1024  # CreateFunction carries the code zip, Base64
FC_ROLE_ACCESS_KEY_ID = "STS.local-fc-role"
STATE_FORMAT = "aliyun-local-state/1"
FC_PREFIXES = ("/2021-04-06/", "/2023-03-30/")
_DROP = object()


class Emulator:
    """The emulated cloud: clock, KMS backend, faults, call log and optional persistence."""

    def __init__(
        self,
        *,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT_ID,
        accounts: list[str] | None = None,
        regions: list[str] | None = None,
        credentials: Credentials | None = None,
        state_path: str | Path | None = None,
        seed_path: str | Path | None = None,
        settings: dict[str, Any] | None = None,
        fc_runtimes: dict[str, str] | None = None,
        event_delivery_delay: float = DEFAULT_DELIVERY_DELAY,
    ) -> None:
        """``accounts``/``regions``: every account served in every region, the first of each
        the default (without them, ``account_id`` in ``region``). ``credentials`` are the first
        account's; each other account has ``local-<account id>``/``local-secret``."""
        accounts, regions = list(accounts or [account_id]), list(regions or [region])
        region, account_id = regions[0], accounts[0]
        self.region = region
        self.account_id = account_id
        base = credentials or Credentials({DEFAULT_ACCESS_KEY_ID: DEFAULT_ACCESS_KEY_SECRET}, {})
        # The STS credentials of the FC service role, handed to every function invocation.
        self.fc_role = {
            "access_key_id": FC_ROLE_ACCESS_KEY_ID,
            "access_key_secret": secrets.token_urlsafe(24),
            "security_token": "CAIS" + secrets.token_urlsafe(48),  # shaped as STS's
        }
        self.credentials = keyring(
            accounts,
            {**base.secrets, FC_ROLE_ACCESS_KEY_ID: self.fc_role["access_key_secret"]},
            {**base.security_tokens, FC_ROLE_ACCESS_KEY_ID: self.fc_role["security_token"]},
            now=lambda: self.clock.now(),
        )
        self.fc = FcBackend(
            region=region, account_id=account_id, credentials=self.fc_role, runtimes=fc_runtimes
        )
        self.events = EventBus(
            self.fc,
            delivery_delay=event_delivery_delay,
            reading=lambda: self.kms.settings.eventbridge_async_invocation_type,
        )
        self.clock = Clock()
        self.faults = Faults()
        self.calls = CallLog(scoped=len(accounts) > 1 or len(regions) > 1)
        self.state_path = Path(state_path) if state_path else None
        self._dirty = False
        self._save_lock = threading.Lock()
        self.tenancy = Tenancy(
            accounts,
            regions,
            lambda r, a: KmsBackend(r, a, self.clock, self._mark_dirty, settings=settings),
        )
        self.kms = self.tenancy.primary  # the first account in the first region
        self.sts = sts_api.Sts(accounts, self.credentials, now=lambda: self.clock.now())
        if seed_path is not None:
            self._load(Path(seed_path))
        elif self.state_path and self.state_path.exists():
            self._load(self.state_path)

    # ---- persistence -----------------------------------------------------------------------

    def _mark_dirty(self) -> None:
        self._dirty = True

    def _load(self, path: Path) -> None:
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"aliyun-local: cannot read state file {path}: {exc}") from None
        if state.get("format") != STATE_FORMAT:
            raise SystemExit(f"aliyun-local: {path} is not an {STATE_FORMAT} file")
        self.clock = Clock(float(state.get("clock_offset", 0.0)))
        for backend in self.tenancy:
            backend.clock = self.clock
        self.tenancy.load_state(state.get("kms", {}), state.get("kms_scopes", {}))

    def flush(self, force: bool = False) -> None:
        """Write the state file atomically (temp file, fsync, rename) when anything changed."""
        if self.state_path is None or not (self._dirty or force):
            return
        with self._save_lock:
            self._dirty = False
            primary, others = self.tenancy.to_state()
            state = {"format": STATE_FORMAT, "clock_offset": self.clock.offset, "kms": primary}
            if others:  # every other (account, region), by "<account>/<region>"
                state["kms_scopes"] = others
            directory = self.state_path.parent
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".aliyun-local-", dir=directory)
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump(state, fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.chmod(tmp, 0o600)
                os.replace(tmp, self.state_path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def reset(self) -> None:
        self.events.reset()
        self.fc.reset()
        self.tenancy.reset()
        self.credentials.drop_temporary()
        self.clock.reset()
        self.faults = Faults()
        self.calls.clear()
        self.flush(force=True)

    # ---- KMS requests ----------------------------------------------------------------------

    def _lose_answer(self, action: str, key_id: str | None, **where: str | None) -> object:
        """The ``ReadTimeout`` fault: hold the connection ``hang_ms``, then drop it unanswered."""
        self.calls.record(action, key_id, 0, "ReadTimeout", **where)
        time.sleep(self.faults.hang_ms / 1000)
        return _DROP

    def handle_kms(
        self,
        method: str,
        raw_path: str,
        headers: dict[str, str],
        body: bytes,
        region: str | None = None,
        *,
        client_ip: str = "127.0.0.1",
    ) -> tuple[int, dict[str, str], dict[str, Any]] | object:
        """Route one KMS request reaching ``region``'s endpoint: signature, the backend of the
        signer's account there, fault hooks around ``kms.responses.dispatch``, the ActionTrail
        record of a write, the answer (or a dropped connection)."""
        request_id = str(uuid.uuid4()).upper()
        request = kms_responses.parse(method, raw_path, headers, body)
        action, key_id = request.action, request.key_id
        region = region or self.region
        where: dict[str, str | None] = {"account_id": None, "region": region}
        transport_fault = None
        caller = None  # the access key id, once the signature holds
        try:
            kms_responses.require_action(request)
            access_key_id = self._verify_kms_signature(request)
            kms = self.tenancy.kms(self.credentials.account_of(access_key_id), region)
            where["account_id"] = kms.account_id
            kms_responses.check(request)
            transport_fault = self.faults.before(
                action,
                quota_class(action),
                kms.settings.throttling_answer,
                scope=(kms.account_id, region),
            )
            if transport_fault == "DropConnection":
                self.calls.record(action, key_id, 0, transport_fault, **where)
                return _DROP
            caller = access_key_id  # from here on the call reaches KMS: ActionTrail records it
            answer = kms_responses.dispatch(kms, request)
            self._trail(kms, request, request_id, caller, client_ip, None)
            result = self.faults.after(action, key_id, answer)
            self.flush()
            if transport_fault == "ReadTimeout":  # the work is done; the answer never comes
                return self._lose_answer(action, key_id, **where)
        except ApiError as err:
            self.flush()
            if caller is not None:
                self._trail(kms, request, request_id, caller, client_ip, err)
            if transport_fault == "ReadTimeout":  # an error answer is lost all the same
                return self._lose_answer(action, key_id, **where)
            self.calls.record(action, key_id, err.status, err.code, **where)
            return err.status, err.headers, kms_responses.error_body(request_id, region, err)
        except Exception as exc:  # a bug in the emulator: answer as KMS would, log the type only
            log.error("internal error in %s: %s", action, type(exc).__name__)
            self.calls.record(action, key_id, 500, "InternalFailure", **where)
            return 500, {}, kms_responses.internal_error_body(request_id, region)
        self.calls.record(action, key_id, 200, None, **where)
        result["RequestId"] = request_id
        return 200, {}, result

    def handle_sts(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], dict[str, Any]] | object:
        """One STS request (the STS port): signature, version, fault hooks (no quota), answer."""
        request_id = str(uuid.uuid4()).upper()
        request = kms_responses.parse(method, raw_path, headers, body)
        action = request.action
        where: dict[str, str | None] = {"account_id": None, "region": None}
        try:
            kms_responses.require_action(request)
            access_key_id = self._verify_kms_signature(request)
            where["account_id"] = self.credentials.account_of(access_key_id)
            if request.version != sts_api.API_VERSION:
                raise ApiError(
                    "InvalidVersion", f"Specified version {request.version} is invalid.", 400
                )
            if self.faults.before(action, None) is not None:  # either transport fault: no answer
                self.calls.record(action, None, 0, "DropConnection", **where)
                return _DROP
            result = self.sts.dispatch(access_key_id, action, request.params)
        except ApiError as err:
            self.calls.record(action, None, err.status, err.code, **where)
            return err.status, err.headers, sts_api.error_body(request_id, err)
        self.calls.record(action, None, 200, None, **where)
        result["RequestId"] = request_id
        return 200, {}, result

    def key_view(self, key_id: str) -> dict[str, Any]:
        """``/_local/keys/{id}``: the key wherever it lives, with its account and region."""
        backend = self.tenancy.find(key_id)
        view = backend.emulator_view(key_id)
        view.update(account_id=backend.account_id, region=backend.region)
        return view

    def _trail(
        self,
        kms: KmsBackend,
        request: kms_responses.Request,
        request_id: str,
        access_key_id: str,
        client_ip: str,
        error: ApiError | None,
    ) -> None:
        """ActionTrail: a write call (done or refused by KMS) goes to the event bus. The bus and
        FC are the first account's in the first region: other scopes' events stay there."""
        if request.action not in actiontrail.WRITE_ACTIONS or kms is not self.kms:
            return
        record = actiontrail.kms_record(
            action=request.action,
            params=request.params,
            request_id=request_id,
            region=self.region,
            account_id=self.account_id,
            access_key_id=access_key_id,
            source_ip=client_ip,
            user_agent=request.headers.get("user-agent", ""),
            event_time=self.clock.now(),
            error=error,
        )
        source = self.kms.settings.actiontrail_event_source
        try:
            self.events.publish(
                actiontrail.cloud_event(record, source=source, account_id=self.account_id)
            )
        except Exception as exc:  # the call itself stands: never turn it into an error
            log.error(
                "could not publish the ActionTrail event of %s: %s",
                request.action,
                type(exc).__name__,
            )

    def _verify_kms_signature(self, request: kms_responses.Request) -> str:
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
                self.credentials,
            )
            check_request_time(headers.get("x-acs-date"), time.time())
            return access_key_id
        if "Signature" in params:
            access_key_id = verify_rpc_v1(request.method, params, self.credentials)
            check_request_time(params.get("Timestamp"), time.time())
            return access_key_id
        raise ApiError(
            "IncompleteSignature",
            "The request signature does not conform to Aliyun standards: unsigned.",
            400,
        )

    # ---- FC requests -----------------------------------------------------------------------

    def handle_fc(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        request_id = str(uuid.uuid4())
        parts = urlsplit(raw_path)
        query = parse_qsl(parts.query, keep_blank_values=True)
        action = headers.get("x-acs-action", "")
        try:
            verify_acs3(method, parts.path, query, headers, body, self.credentials)
            version = headers.get("x-acs-version")
            if version not in (None, FC_VERSION, FC3_VERSION):
                raise ApiError("InvalidVersion", f"Specified version {version} is invalid.", 400)
            status, extra, out, action = fc_responses.handle(
                self.fc, method, parts.path, headers, body, dict(query)
            )
        except ApiError as err:
            self.calls.record(action or "FC", None, err.status, err.code)
            payload = {
                "RequestId": request_id,
                "Code": err.code,
                "Message": err.message,
                "ErrorCode": err.code,
                "ErrorMessage": err.message,
            }
            return (
                err.status,
                {"x-fc-request-id": request_id, **err.headers},
                json.dumps(payload).encode(),
            )
        self.calls.record(action, None, status, None)
        return status, {"x-fc-request-id": request_id, **extra}, out

    # ---- admin API -------------------------------------------------------------------------

    def handle_admin(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        try:
            data = json.loads(body) if body.strip() else {}
        except (ValueError, RecursionError):
            return 400, {"Code": "InvalidJSON", "Message": "the body is not JSON"}
        if not isinstance(data, dict):
            return 400, {"Code": "InvalidJSON", "Message": "the body must be a JSON object"}
        route = path[len("/_local/") :].rstrip("/")
        try:
            if route == "reset" and method == "POST":
                self.reset()
                return 200, {"reset": True}
            if route == "health" and method == "GET":
                return 200, {"ok": True, "now": iso(self.clock.now())}
            if route == "clock":
                if method == "POST":
                    self._set_clock(data)
                    self.flush(force=True)
                return 200, {"now": iso(self.clock.now()), "offset_seconds": self.clock.offset}
            if route == "faults":
                if method == "POST":
                    self.faults = Faults.from_json(data)
                return 200, self.faults.to_json()
            if route == "settings":
                if method == "POST":
                    self.kms.settings.update(data)
                    self.kms.changed()
                    self.flush()
                return 200, self.kms.settings.to_json()
            if route == "calls":
                if method == "DELETE":
                    self.calls.clear()
                return 200, self.calls.list()
            if route.startswith("keys/") and method == "GET":
                return 200, self.key_view(route[len("keys/") :])
            if route == "events" and method == "GET":
                return 200, self.events.view()
            if route == "events/config":
                if method == "POST":
                    if set(data) != {"delivery_delay_seconds"}:
                        raise ApiError(
                            "InvalidParameter", 'send {"delivery_delay_seconds": N}', 400
                        )
                    self.events.set_delay(data["delivery_delay_seconds"])
                return 200, self.events.config()
            if route == "events/wait" and method == "POST":
                return 200, {"idle": self.events.wait_idle(float(data.get("timeout", 30)))}
            if route == "ram/roles":
                if method == "POST":
                    self.fc.ram.attach(data.get("role"), data.get("policies"))
                return 200, self.fc.ram.view()
            if route == "fc/deliveries" and method == "GET":
                return 200, [d.view() for d in self.fc.deliveries]
            if route == "fc/invocations" and method == "GET":
                return 200, list(self.fc.invocations)
            if route == "fc/logs" and method == "GET":
                return 200, list(self.fc.logs)
            if route == "fc/wait" and method == "POST":
                return 200, {"idle": self.fc.wait_idle(float(data.get("timeout", 60)))}
            if route.startswith("fc/fire/") and method == "POST":
                parts = route.split("/")
                if len(parts) != 4:
                    return 400, {"Code": "InvalidPath", "Message": "fc/fire/{service}/{trigger}"}
                return 202, {"request_id": self.fc.fire(parts[2], parts[3])}
        except ApiError as err:
            return err.status, {"Code": err.code, "Message": err.message}
        return 404, {"Code": "NotFound", "Message": f"no admin route {method} {path}"}

    def _set_clock(self, data: dict[str, Any]) -> None:
        if set(data) == {"advance_seconds"} and isinstance(data["advance_seconds"], int | float):
            self.clock.advance(float(data["advance_seconds"]))
        elif set(data) == {"now"} and isinstance(data["now"], str):
            try:
                self.clock.set(parse_iso(data["now"]))
            except ValueError:
                raise ApiError("InvalidParameter", "now must be YYYY-MM-DDTHH:MM:SSZ") from None
        else:
            raise ApiError(
                "InvalidParameter", 'send {"advance_seconds": N} or {"now": "YYYY-MM-DDTHH:MM:SSZ"}'
            )


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
        path = self.path
        if path.startswith("/_local/") or path == "/_local":
            status, payload = self.server.emulator.handle_admin(
                self.command, urlsplit(path).path, body
            )
            self._send(status, {}, payload)
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        if path.startswith(FC_PREFIXES):
            status, extra, out = self.server.emulator.handle_fc(self.command, path, headers, body)
            self._send_raw(status, extra, out)
            return
        if self.server.region is None:  # the STS endpoint
            result = self.server.emulator.handle_sts(self.command, path, headers, body)
        else:
            result = self.server.emulator.handle_kms(
                self.command,
                path,
                headers,
                body,
                region=self.server.region,
                client_ip=self.client_address[0],
            )
        if result is _DROP:
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

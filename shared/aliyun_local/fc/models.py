"""FC state and behaviour: services, functions (zip code), timer and eventbridge triggers
(the latter are the event bus's rules: ``aliyun_local/eventbridge.py``), async configs,
concurrency configs, instances (worker subprocesses, reused while warm), async invocations with
retries, and the OnFailure/OnSuccess deliveries they produce.

FC 2.0 (2021-04-06) functions live in services; FC 3.0 (2023-03-30) has no services, so its
functions live under the service name ``V3`` (the empty string) with role, log config and VPC on
the function itself. Both share the machinery below.

A function runs under the interpreter of its runtime: ``pythonX.Y`` on PATH, or what
``runtimes`` (``aliyun-local serve --fc-runtime python3.12=/path/to/python``) maps it to. A
runtime with no interpreter fails each invocation with ``RuntimeNotAvailable``.

Not persisted across restarts (``--state`` covers KMS only). Timers fire on real UTC time, not
the emulator clock that tests move by days.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
import zipfile
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import eventbridge
from ..errors import ApiError
from ..ram import RolePolicies
from . import cron

WORKER = str(Path(__file__).with_name("worker.py"))
MAX_INSTANCES_PER_FUNCTION = 4
# Async invocations at once: more than every default reserved concurrency together (sweep 2,
# reimport 5, events 2), so the caps, not the emulator, bound a fan-out (bench/fc_async.py).
MAX_ASYNC_WORKERS = 16
MAX_LOG_LINES = 5000
MAX_CODE_BYTES = 100 * 1024 * 1024
V3 = ""  # the "service" of FC 3.0 functions
_PYTHON_RUNTIME = re.compile(r"^python(\d)(?:\.(\d{1,2}))?$")


class RuntimeNotAvailable(Exception):
    """No interpreter for a function's runtime on this machine."""


def interpreter_for(runtime: str, runtimes: dict[str, str]) -> str:
    """The Python that runs ``runtime``: the mapping first, else ``pythonX.Y`` on PATH."""
    if runtime in runtimes:
        return runtimes[runtime]
    m = _PYTHON_RUNTIME.match(runtime)
    found = shutil.which(runtime) if m else None
    if found:
        return found
    version = f"{m.group(1)}.{m.group(2)}" if m and m.group(2) else "X.Y"
    raise RuntimeNotAvailable(
        f"runtime {runtime} has no interpreter here: install {runtime}, or map it with "
        f"`aliyun-local serve --fc-runtime {runtime}=/path/to/python`, and package the code "
        f"for that Python with `deploy/package.py --python-version {version}`"
    )


MAX_ENVIRONMENT_BYTES = 4096


def checked_environment(variables: Any) -> dict[str, str]:
    """A function's environment as FC takes it: names starting ``FC_`` are FC's own, and all
    variables together are at most 4 KB (counted as the compact JSON map, the stricter
    reading); otherwise 400 ``InvalidArgument`` (docs/FIDELITY.md, Function Compute)."""
    if not isinstance(variables, dict):
        raise bad("environmentVariables must be an object")
    env = {str(k): str(v) for k, v in variables.items()}
    reserved = sorted(k for k in env if k.upper().startswith("FC_"))
    if reserved:
        raise bad(f"environment variable {reserved[0]} is reserved: names starting FC_ are FC's")
    size = len(json.dumps(env, separators=(",", ":")).encode())
    if size > MAX_ENVIRONMENT_BYTES:
        raise bad(f"environment variables take {size} bytes, more than {MAX_ENVIRONMENT_BYTES}")
    return env


def destination_actions(destination: str) -> tuple[str, ...]:
    """The RAM actions FC's role needs to deliver to ``destination``: an MNS topic takes
    ``mns:PublishMessage`` or ``mns:SendMessage`` (FC, "Destinations for asynchronous
    invocations"), a queue ``mns:SendMessage``, a function ``fc:InvokeFunction``; others are not
    checked."""
    if destination.startswith("acs:mns:") and "/topics/" in destination:
        return ("mns:PublishMessage", "mns:SendMessage")
    if destination.startswith("acs:mns:") and "/queues/" in destination:
        return ("mns:SendMessage",)
    if destination.startswith("acs:fc:"):
        return ("fc:InvokeFunction",)
    return ()


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def not_found(what: str) -> ApiError:
    return ApiError(f"{what}NotFound", f"{what} not found", 404)


def exists(what: str) -> ApiError:
    return ApiError(f"{what}AlreadyExists", f"{what} already exists", 409)


def bad(message: str) -> ApiError:
    return ApiError("InvalidArgument", message, 400)


@dataclass
class Function:
    service: str
    name: str
    handler: str
    runtime: str
    timeout: int
    memory: int
    env: dict[str, str]
    code_dir: Path
    checksum: str
    code_size: int
    created: str
    modified: str
    description: str = ""
    role: str = ""
    log_config: dict[str, Any] | None = None
    vpc_config: dict[str, Any] | None = None
    internet_access: bool = True

    def view(self, region: str = "", account_id: str = "") -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.service == V3:
            extra = {
                "functionArn": f"acs:fc:{region}:{account_id}:functions/{self.name}",
                "role": self.role,
                "logConfig": dict(self.log_config or {}),
                "vpcConfig": dict(self.vpc_config or {}),
                "internetAccess": self.internet_access,
                "state": "Active",
                "lastUpdateStatus": "Successful",
            }
        return {
            **extra,
            "functionName": self.name,
            "functionId": hashlib.sha256(f"{self.service}/{self.name}".encode()).hexdigest()[:32],
            "handler": self.handler,
            "runtime": self.runtime,
            "timeout": self.timeout,
            "memorySize": self.memory,
            "environmentVariables": dict(self.env),
            "codeChecksum": self.checksum,
            "codeSize": self.code_size,
            "description": self.description,
            "createdTime": self.created,
            "lastModifiedTime": self.modified,
        }


@dataclass
class Instance:
    proc: subprocess.Popen
    checksum: str


@dataclass
class Delivery:
    kind: str  # "OnFailure" or "OnSuccess"
    destination: str
    service: str
    function: str
    request_id: str
    event: str
    attempts: int
    error: str = ""

    def view(self) -> dict[str, Any]:
        return dict(self.__dict__)


class FcBackend:
    def __init__(
        self,
        *,
        region: str,
        account_id: str,
        credentials: dict[str, str],
        kms_endpoint_hint: str = "",
        runtimes: dict[str, str] | None = None,
    ) -> None:
        self.region = region
        self.runtimes = dict(runtimes or {})  # runtime name -> interpreter path
        self.account_id = account_id
        self.role_credentials = credentials  # the STS credentials every function's context gets
        self.lock = threading.RLock()
        self.services: dict[str, dict[str, Any]] = {}
        self.functions: dict[tuple[str, str], Function] = {}
        self.triggers: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.async_configs: dict[tuple[str, str], dict[str, Any]] = {}
        self.concurrency: dict[tuple[str, str], int] = {}  # reserved concurrency caps
        self.peak_concurrency: dict[tuple[str, str], int] = {}
        self._running: dict[tuple[str, str], int] = {}
        self.deliveries: list[Delivery] = []
        # The policies attached to functions' roles (``/_local/ram/roles``): checked before an
        # async invocation's result is published to its destination.
        self.ram = RolePolicies()
        self.invocations: list[dict[str, Any]] = []
        # request id -> {"ok", "attempts"} once an async invocation is done (retries included)
        self.async_results: dict[str, dict[str, Any]] = {}
        self.logs: deque[str] = deque(maxlen=MAX_LOG_LINES)
        self._idle: dict[tuple[str, str], list[Instance]] = {}
        self._slots: dict[tuple[str, str], threading.Semaphore] = {}
        self._code_root = Path(tempfile.mkdtemp(prefix="aliyun-local-fc-"))
        self._queue: queue.Queue[tuple[str, str, bytes, str, int] | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._async_loop, name=f"fc-async-{i}", daemon=True)
            for i in range(MAX_ASYNC_WORKERS)
        ]
        self._threads.append(
            threading.Thread(target=self._timer_loop, name="fc-timers", daemon=True)
        )
        self._last_fired: dict[tuple[str, str, str], float] = {}
        self.retry_delay_seconds = 0.2
        # The instances' working directory; None: the code directory. FC documents where the
        # code is (FC_FUNC_CODE_PATH, /code), not the working directory, so a test sets another
        # one to show a function does not depend on it (docs/FIDELITY.md).
        self.working_dir: str | None = None
        for t in self._threads:
            t.start()

    # ---- lifecycle -------------------------------------------------------------------------

    def shutdown(self) -> None:
        self._stop.set()
        for _ in range(MAX_ASYNC_WORKERS):
            self._queue.put(None)
        self._kill_all()
        shutil.rmtree(self._code_root, ignore_errors=True)

    def reset(self) -> None:
        with self.lock:
            self._kill_all()
            self.services.clear()
            self.functions.clear()
            self.triggers.clear()
            self.async_configs.clear()
            self.concurrency.clear()
            self.peak_concurrency.clear()
            self._slots.clear()
            self.deliveries.clear()
            self.ram.reset()
            self.invocations.clear()
            self.async_results.clear()
            self.logs.clear()

    def _kill_all(self, key: tuple[str, str] | None = None) -> None:
        with self.lock:
            keys = [key] if key else list(self._idle)
            for k in keys:
                for inst in self._idle.pop(k, []):
                    inst.proc.kill()
                    inst.proc.wait(timeout=10)

    # ---- services --------------------------------------------------------------------------

    def create_service(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("serviceName")
        if not isinstance(name, str) or not name:
            raise bad("serviceName is required")
        with self.lock:
            if name in self.services:
                raise exists("Service")
            now = _now_iso()
            self.services[name] = {
                "serviceName": name,
                "serviceId": uuid.uuid4().hex,
                "description": body.get("description") or "",
                "role": body.get("role") or "",
                "logConfig": body.get("logConfig") or {},
                "internetAccess": bool(body.get("internetAccess", True)),
                "createdTime": now,
                "lastModifiedTime": now,
            }
            return dict(self.services[name])

    def update_service(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            svc = self.get_service(name)
            for k in ("description", "role", "logConfig", "internetAccess"):
                if k in body and body[k] is not None:
                    svc[k] = body[k]
            svc["lastModifiedTime"] = _now_iso()
            return dict(svc)

    def get_service(self, name: str) -> dict[str, Any]:
        if name == V3:
            return {}
        with self.lock:
            svc = self.services.get(name)
            if svc is None:
                raise not_found("Service")
            return svc

    # ---- functions -------------------------------------------------------------------------

    def _unpack(self, code: Any) -> tuple[Path, str, int]:
        if not isinstance(code, dict) or not isinstance(code.get("zipFile"), str):
            raise bad("code.zipFile (Base64 zip) is required; OSS code is not emulated")
        try:
            blob = base64.b64decode(code["zipFile"], validate=True)
        except ValueError:
            raise bad("code.zipFile is not Base64") from None
        if len(blob) > MAX_CODE_BYTES:
            raise bad("code package too large")
        checksum = str(int.from_bytes(hashlib.sha256(blob).digest()[:8], "big"))
        target = self._code_root / hashlib.sha256(blob).hexdigest()
        if not target.exists():
            tmp = Path(tempfile.mkdtemp(dir=self._code_root))
            try:
                with zipfile.ZipFile(io.BytesIO(blob)) as zf:
                    for member in zf.namelist():
                        if member.startswith("/") or ".." in Path(member).parts:
                            raise bad("code package has unsafe paths")
                    zf.extractall(tmp)
            except zipfile.BadZipFile:
                shutil.rmtree(tmp, ignore_errors=True)
                raise bad("code.zipFile is not a zip archive") from None
            os.replace(tmp, target)
        return target, checksum, len(blob)

    def create_function(self, service: str, body: dict[str, Any]) -> dict[str, Any]:
        """FC 2.0 (in ``service``) or FC 3.0 (``service`` ``V3``: role, logs, VPC on it)."""
        self.get_service(service)
        name = body.get("functionName")
        if not isinstance(name, str) or not name:
            raise bad("functionName is required")
        handler = body.get("handler") or ""
        if "." not in handler.strip(".") or handler.startswith("."):
            raise bad("handler must be module.function (the module may be dotted)")
        code_dir, checksum, size = self._unpack(body.get("code"))
        with self.lock:
            if (service, name) in self.functions:
                raise exists("Function")
            now = _now_iso()
            fn = Function(
                service,
                name,
                handler,
                body.get("runtime") or "python3.10",
                int(body.get("timeout") or 3),
                int(body.get("memorySize") or 128),
                checked_environment(body.get("environmentVariables") or {}),
                code_dir,
                checksum,
                size,
                now,
                now,
                body.get("description") or "",
            )
            if service == V3:
                self._set_v3_fields(fn, body)
            self.functions[(service, name)] = fn
            return fn.view(self.region, self.account_id)

    @staticmethod
    def _set_v3_fields(fn: Function, body: dict[str, Any]) -> None:
        if body.get("role") is not None:
            fn.role = str(body["role"])
        for attr, key in (("log_config", "logConfig"), ("vpc_config", "vpcConfig")):
            value = body.get(key)
            if value is not None:
                if not isinstance(value, dict):
                    raise bad(f"{key} must be an object")
                setattr(fn, attr, value)
        if body.get("internetAccess") is not None:
            fn.internet_access = bool(body["internetAccess"])

    def list_functions(self, service: str, prefix: str = "") -> list[dict[str, Any]]:
        with self.lock:
            return [
                fn.view(self.region, self.account_id)
                for (svc, name), fn in sorted(self.functions.items())
                if svc == service and name.startswith(prefix)
            ]

    def delete_function(self, service: str, name: str) -> None:
        self.get_function(service, name)
        with self.lock:
            if any(k[:2] == (service, name) for k in self.triggers):
                raise ApiError("FunctionNotEmpty", "delete the function's triggers first", 409)
            del self.functions[(service, name)]
            self.async_configs.pop((service, name), None)
            self.concurrency.pop((service, name), None)
            self._slots.pop((service, name), None)
            self._kill_all((service, name))

    def update_function(self, service: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        fn = self.get_function(service, name)
        code = body.get("code")
        unpacked = self._unpack(code) if code else None
        with self.lock:
            if unpacked:
                fn.code_dir, fn.checksum, fn.code_size = unpacked
            for attr, key in (
                ("handler", "handler"),
                ("runtime", "runtime"),
                ("description", "description"),
            ):
                if body.get(key):
                    setattr(fn, attr, body[key])
            if body.get("timeout"):
                fn.timeout = int(body["timeout"])
            if body.get("memorySize"):
                fn.memory = int(body["memorySize"])
            if body.get("environmentVariables") is not None:
                fn.env = checked_environment(body["environmentVariables"])
            if service == V3:
                self._set_v3_fields(fn, body)
            fn.modified = _now_iso()
            self._kill_all((service, name))  # new code or settings: cold start next time
            return fn.view(self.region, self.account_id)

    def get_function(self, service: str, name: str) -> Function:
        self.get_service(service)
        with self.lock:
            fn = self.functions.get((service, name))
            if fn is None:
                raise not_found("Function")
            return fn

    # ---- triggers and async config ---------------------------------------------------------

    def put_trigger(
        self, service: str, function: str, body: dict[str, Any], *, name: str | None, create: bool
    ) -> dict[str, Any]:
        self.get_function(service, function)
        name = name or body.get("triggerName")
        if not name:
            raise bad("triggerName is required")
        key = (service, function, name)
        with self.lock:
            if create and key in self.triggers:
                raise exists("Trigger")
            if not create and key not in self.triggers:
                raise not_found("Trigger")
            current = self.triggers.get(key, {"triggerName": name, "createdTime": _now_iso()})
            trigger_type = body.get("triggerType") or current.get("triggerType")
            if trigger_type not in ("timer", "eventbridge"):
                raise bad("only timer and eventbridge triggers are emulated")
            config_text = body.get("triggerConfig", current.get("triggerConfig"))
            if trigger_type == "eventbridge":
                try:
                    config = eventbridge.trigger_config(config_text)
                except eventbridge.PatternError as exc:
                    raise bad(f"invalid eventbridge triggerConfig: {exc}") from None
            else:
                try:
                    config = (
                        json.loads(config_text) if isinstance(config_text, str) else config_text
                    )
                    cron.parse(config["cronExpression"])
                except (ValueError, TypeError, KeyError, cron.CronError) as exc:
                    raise bad(f"invalid timer triggerConfig: {exc}") from None
            current.update(
                triggerType=trigger_type,
                triggerConfig=json.dumps(config),
                qualifier=body.get("qualifier") or "LATEST",
                lastModifiedTime=_now_iso(),
            )
            self.triggers[key] = current
            return dict(current)

    def get_trigger(self, service: str, function: str, name: str) -> dict[str, Any]:
        with self.lock:
            trigger = self.triggers.get((service, function, name))
            if trigger is None:
                raise not_found("Trigger")
            return dict(trigger)

    def list_triggers(self, service: str, function: str) -> list[dict[str, Any]]:
        self.get_function(service, function)
        with self.lock:
            found = sorted(self.triggers.items())
            return [dict(t) for k, t in found if k[:2] == (service, function)]

    def delete_trigger(self, service: str, function: str, name: str) -> None:
        with self.lock:
            if self.triggers.pop((service, function, name), None) is None:
                raise not_found("Trigger")

    def put_async_config(self, service: str, function: str, body: dict[str, Any]) -> dict[str, Any]:
        self.get_function(service, function)
        retries = body.get("maxAsyncRetryAttempts", 3)
        if not isinstance(retries, int) or not 0 <= retries <= 8:
            raise bad("maxAsyncRetryAttempts must be 0-8")
        config = {
            "service": service,
            "function": function,
            "qualifier": "LATEST",
            "maxAsyncRetryAttempts": retries,
            "maxAsyncEventAgeInSeconds": body.get("maxAsyncEventAgeInSeconds", 86400),
            "destinationConfig": body.get("destinationConfig") or {},
            "lastModifiedTime": _now_iso(),
        }
        if service == V3:
            config = {
                "functionArn": f"acs:fc:{self.region}:{self.account_id}:functions/{function}",
                **{k: v for k, v in config.items() if k not in ("service", "function")},
            }
        with self.lock:
            self.async_configs[(service, function)] = config
        return dict(config)

    def put_concurrency(self, service: str, function: str, body: dict[str, Any]) -> dict[str, Any]:
        """Reserved concurrency: at most that many instances run the function at once."""
        self.get_function(service, function)
        cap = body.get("reservedConcurrency")
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
            raise bad("reservedConcurrency must be an integer >= 0")
        with self.lock:
            self.concurrency[(service, function)] = cap
            self._slots.pop((service, function), None)  # new size for the next invocations
        return self.get_concurrency(service, function)

    def get_concurrency(self, service: str, function: str) -> dict[str, Any]:
        with self.lock:
            cap = self.concurrency.get((service, function))
        if cap is None:
            raise ApiError("ConcurrencyConfigNotFound", "no concurrency config", 404)
        return {
            "functionArn": f"acs:fc:{self.region}:{self.account_id}:functions/{function}",
            "reservedConcurrency": cap,
        }

    def delete_concurrency(self, service: str, function: str) -> None:
        with self.lock:
            if self.concurrency.pop((service, function), None) is None:
                raise ApiError("ConcurrencyConfigNotFound", "no concurrency config", 404)
            self._slots.pop((service, function), None)

    # ---- invocation ------------------------------------------------------------------------

    def _context(self, fn: Function, request_id: str) -> dict[str, Any]:
        svc = self.services.get(fn.service, {})
        log = (fn.log_config if fn.service == V3 else svc.get("logConfig")) or {}
        return {
            "request_id": request_id,
            "region": self.region,
            "account_id": self.account_id,
            "credentials": dict(self.role_credentials),
            "function": {
                "name": fn.name,
                "handler": fn.handler,
                "memory": fn.memory,
                "timeout": fn.timeout,
            },
            "service": {
                "name": fn.service,
                "log_project": log.get("project", ""),
                "log_store": log.get("logstore", ""),
                "qualifier": "LATEST",
            },
        }

    def _spawn(self, fn: Function) -> Instance:
        python = interpreter_for(fn.runtime, self.runtimes)
        module, function = fn.handler.rsplit(".", 1)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            **fn.env,
            "FC_FUNCTION_NAME": fn.name,
            "FC_SERVICE_NAME": fn.service,
            "FC_REGION": self.region,
            "FC_ACCOUNT_ID": self.account_id,
            "ALIBABA_CLOUD_ACCESS_KEY_ID": self.role_credentials["access_key_id"],
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": self.role_credentials["access_key_secret"],
            "ALIBABA_CLOUD_SECURITY_TOKEN": self.role_credentials["security_token"],
        }
        proc = subprocess.Popen(
            [
                python,
                "-I",
                "-S",
                WORKER,
                str(fn.code_dir),
                module,
                function,
                self.working_dir or str(fn.code_dir),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            bufsize=1,
        )
        label = f"{fn.service}/{fn.name}" if fn.service else fn.name
        threading.Thread(target=self._drain, args=(proc, label), daemon=True).start()
        return Instance(proc, fn.checksum)

    def _drain(self, proc: subprocess.Popen, name: str) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.logs.append(f"{name}: {line.rstrip()}")

    def invoke(
        self, service: str, function: str, event: bytes, request_id: str | None = None
    ) -> tuple[bool, bytes, str]:
        """Run one invocation; returns (ok, body, error_type)."""
        fn = self.get_function(service, function)
        request_id = request_id or str(uuid.uuid4())
        key = (service, function)
        with self.lock:
            cap = self.concurrency.get(key)
            if cap == 0:
                raise ApiError("ResourceThrottled", "reserved concurrency is 0", 429)
            size = MAX_INSTANCES_PER_FUNCTION if cap is None else cap
            slot = self._slots.setdefault(key, threading.Semaphore(size))
        with slot:
            started = time.monotonic()  # billed from here: a cold start's spawn is included
            with self.lock:
                self._running[key] = self._running.get(key, 0) + 1
                self.peak_concurrency[key] = max(
                    self.peak_concurrency.get(key, 0), self._running[key]
                )
                idle = [i for i in self._idle.get(key, []) if i.proc.poll() is None]
                inst = idle.pop() if idle else None
                self._idle[key] = idle
            try:
                if inst is None or inst.checksum != fn.checksum:
                    if inst is not None:
                        inst.proc.kill()
                    inst = self._spawn(fn)
                ok, body, error = self._run(inst, fn, event, request_id)
            except RuntimeNotAvailable as exc:
                inst, ok, error = None, False, "RuntimeNotAvailable"
                body = json.dumps({"errorMessage": str(exc), "errorType": error}).encode()
                self.logs.append(f"{service or '-'}/{function}: {exc}")
            finally:
                with self.lock:
                    self._running[key] -= 1
            with self.lock:
                if inst and inst.proc.poll() is None and inst.checksum == fn.checksum:
                    self._idle.setdefault(key, []).append(inst)
            self.invocations.append(
                {
                    "service": service,
                    "function": function,
                    "request_id": request_id,
                    "ok": ok,
                    "error": error,
                    "duration_ms": round((time.monotonic() - started) * 1000, 3),
                    "memory_mb": fn.memory,  # duration x memory = the GB-seconds FC bills
                }
            )
            return ok, body, error

    def _run(
        self, inst: Instance, fn: Function, event: bytes, request_id: str
    ) -> tuple[bool, bytes, str]:
        assert inst.proc.stdin is not None and inst.proc.stdout is not None
        request = {
            "event": base64.b64encode(event).decode(),
            "context": self._context(fn, request_id),
        }
        answer: list[str] = []
        reader = threading.Thread(
            target=lambda: answer.append(inst.proc.stdout.readline()), daemon=True
        )
        try:
            inst.proc.stdin.write(json.dumps(request) + "\n")
            inst.proc.stdin.flush()
        except OSError:
            inst.proc.kill()
            return (
                False,
                b'{"errorMessage": "instance died", "errorType": "InstanceDied"}',
                "InstanceDied",
            )
        reader.start()
        reader.join(timeout=fn.timeout)
        if reader.is_alive() or not answer or not answer[0]:
            inst.proc.kill()
            kind = "FunctionTimeout" if reader.is_alive() else "InstanceDied"
            return False, json.dumps({"errorMessage": kind, "errorType": kind}).encode(), kind
        doc = json.loads(answer[0])
        if doc["ok"]:
            return True, base64.b64decode(doc["body"]), ""
        body = json.dumps(
            {
                "errorMessage": doc.get("error_message", ""),
                "errorType": doc.get("error_type", ""),
                "stackTrace": doc.get("stack", ""),
            }
        ).encode()
        return False, body, doc.get("error_type", "Error")

    def invoke_async(self, service: str, function: str, event: bytes) -> str:
        self.get_function(service, function)
        request_id = str(uuid.uuid4())
        with self.lock:
            config = self.async_configs.get((service, function), {})
        retries = int(config.get("maxAsyncRetryAttempts", 3))
        self._queue.put((service, function, event, request_id, retries))
        return request_id

    def _async_loop(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                return
            service, function, event, request_id, retries = item
            attempts, ok, body = 0, False, b""
            for attempt in range(retries + 1):
                attempts = attempt + 1
                try:
                    ok, body, _error_type = self.invoke(service, function, event, request_id)
                except ApiError as exc:  # the function was deleted meanwhile
                    ok, body = False, exc.message.encode()
                    break
                if ok or self._stop.is_set():
                    break
                time.sleep(self.retry_delay_seconds * attempts)
            with self.lock:
                config = self.async_configs.get((service, function), {})
            self.async_results[request_id] = {"ok": ok, "attempts": attempts}
            destinations = config.get("destinationConfig") or {}
            kind = "onSuccess" if ok else "onFailure"
            target = (destinations.get(kind) or {}).get("destination")
            if target and self._may_deliver(service, function, target):
                self.deliveries.append(
                    Delivery(
                        "OnSuccess" if ok else "OnFailure",
                        target,
                        service,
                        function,
                        request_id,
                        event.decode("utf-8", "replace"),
                        attempts,
                        "" if ok else body.decode("utf-8", "replace")[:2000],
                    )
                )
            self._queue.task_done()

    def _may_deliver(self, service: str, function: str, destination: str) -> bool:
        """FC publishes to a destination with the function's role: without the permission there
        is no delivery, only a line in the function's log (docs/FIDELITY.md)."""
        need = destination_actions(destination)
        with self.lock:
            fn = self.functions.get((service, function))
            role = fn.role if fn and service == V3 else self.services.get(service, {}).get("role")
        if not need or not role or self.ram.allows(role, need, destination) is not False:
            return True
        label = f"{service}/{function}" if service else function
        self.logs.append(
            f"{label}: destination {destination} refused: role {role} is not allowed "
            f"{' or '.join(need)} on it; the result was not delivered"
        )
        return False

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until the async queue has drained (tests and drills)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.05)
        return False

    # ---- timers ----------------------------------------------------------------------------

    def timer_event(self, trigger_name: str, config: dict[str, Any]) -> bytes:
        return json.dumps(
            {
                "triggerTime": _now_iso(),
                "triggerName": trigger_name,
                "payload": config.get("payload", ""),
            }
        ).encode()

    def fire(self, service: str, trigger_name: str) -> str:
        """Fire a timer trigger now (async, as FC does); returns the request id.

        ``service`` names the FC 2.0 service, or for FC 3.0 the function itself."""
        with self.lock:
            everything = list(self.triggers.items())
        timers = [(k, t) for k, t in everything if t.get("triggerType") == "timer"]
        matches = [(k, t) for k, t in timers if k[0] == service and k[2] == trigger_name] or [
            (k, t) for k, t in timers if k[0] == V3 and k[1:] == (service, trigger_name)
        ]
        if not matches:
            raise not_found("Trigger")
        (svc, function, name), trigger = matches[0]
        config = json.loads(trigger["triggerConfig"])
        return self.invoke_async(svc, function, self.timer_event(name, config))

    def _timer_loop(self) -> None:
        last_second = int(time.time())
        while not self._stop.wait(0.2):
            now = int(time.time())
            if now == last_second:
                continue
            for second in range(last_second + 1, now + 1):
                self._tick(second)
            last_second = now

    def _tick(self, second: int) -> None:
        when = datetime.fromtimestamp(second, tz=timezone.utc)
        with self.lock:
            triggers = list(self.triggers.items())
        for key, trigger in triggers:
            if trigger.get("triggerType") != "timer":
                continue
            config = json.loads(trigger["triggerConfig"])
            if not config.get("enable", True):
                continue
            schedule = cron.parse(config["cronExpression"])
            due = schedule.matches(when)
            if schedule.every_seconds:
                last = self._last_fired.setdefault(key, second)
                due = second - last >= schedule.every_seconds
            if due:
                self._last_fired[key] = second
                try:
                    self.invoke_async(key[0], key[1], self.timer_event(key[2], config))
                except ApiError:
                    pass

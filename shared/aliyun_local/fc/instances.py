"""FC instances and invocations: the interpreter of a runtime, worker subprocesses (kept warm
and reused while the code is the same), reserved concurrency, one synchronous invocation."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ApiError
from . import V3
from .errors import bad
from .functions import Function

WORKER = str(Path(__file__).with_name("worker.py"))
MAX_INSTANCES_PER_FUNCTION = 4
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


@dataclass
class Instance:
    proc: subprocess.Popen
    checksum: str


class Invoker:
    """Instances, reserved concurrency and invocation for ``FcBackend`` (``models.py``)."""

    lock: threading.RLock
    region: str
    account_id: str
    runtimes: dict[str, str]
    role_credentials: dict[str, str]
    services: dict[str, dict[str, Any]]
    concurrency: dict[tuple[str, str], int]
    peak_concurrency: dict[tuple[str, str], int]
    invocations: list[dict[str, Any]]
    logs: deque[str]
    working_dir: str | None
    _running: dict[tuple[str, str], int]
    _idle: dict[tuple[str, str], list[Instance]]
    _slots: dict[tuple[str, str], threading.Semaphore]

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

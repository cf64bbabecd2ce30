"""FC services and functions: creating, updating, listing and deleting them, with their code
(a Base64 zip, unpacked once per content) and environment. FC 3.0 functions (service ``V3``)
carry role, log config and VPC themselves."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import tempfile
import threading
import uuid
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import ApiError
from . import V3
from .errors import bad, exists, not_found

MAX_CODE_BYTES = 100 * 1024 * 1024
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


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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


class FunctionStore:
    """The services and functions of ``FcBackend`` (``models.py``)."""

    lock: threading.RLock
    region: str
    account_id: str
    services: dict[str, dict[str, Any]]
    functions: dict[tuple[str, str], Function]
    triggers: dict[tuple[str, str, str], dict[str, Any]]
    async_configs: dict[tuple[str, str], dict[str, Any]]
    concurrency: dict[tuple[str, str], int]
    _slots: dict[tuple[str, str], threading.Semaphore]
    _code_root: Path

    def create_service(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("serviceName")
        if not isinstance(name, str) or not name:
            raise bad("serviceName is required")
        with self.lock:
            if name in self.services:
                raise exists("Service")
            now = now_iso()
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
            svc["lastModifiedTime"] = now_iso()
            return dict(svc)

    def get_service(self, name: str) -> dict[str, Any]:
        if name == V3:
            return {}
        with self.lock:
            svc = self.services.get(name)
            if svc is None:
                raise not_found("Service")
            return svc

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
            now = now_iso()
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
            fn.modified = now_iso()
            self._kill_all((service, name))  # new code or settings: cold start next time
            return fn.view(self.region, self.account_id)

    def get_function(self, service: str, name: str) -> Function:
        self.get_service(service)
        with self.lock:
            fn = self.functions.get((service, name))
            if fn is None:
                raise not_found("Function")
            return fn

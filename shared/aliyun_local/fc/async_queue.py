"""FC's asynchronous invocations: the async config (retries, destinations), the queue and its
workers, retries, and the OnFailure/OnSuccess deliveries, each checked against the function
role's RAM policies first."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..errors import ApiError
from ..ram import RolePolicies
from . import V3
from .errors import bad
from .functions import now_iso as _now_iso

# Async invocations at once: more than every default reserved concurrency together (sweep 2,
# reimport 5, events 2), so the caps, not the emulator, bound a fan-out (bench/fc_async.py).
MAX_ASYNC_WORKERS = 16


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


class AsyncQueue:
    """Async configs, the async queue and destinations of ``FcBackend`` (``models.py``)."""

    lock: threading.RLock
    region: str
    account_id: str
    services: dict[str, dict[str, Any]]
    functions: dict[tuple[str, str], Any]
    async_configs: dict[tuple[str, str], dict[str, Any]]
    async_results: dict[str, dict[str, Any]]
    deliveries: list[Delivery]
    ram: RolePolicies
    logs: deque[str]
    retry_delay_seconds: float
    _queue: queue.Queue[tuple[str, str, bytes, str, int] | None]
    _stop: threading.Event

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

"""FC state and behaviour: services, functions (zip code), timer and eventbridge triggers
(the latter are the event bus's rules: ``aliyun_local/eventbridge.py``), async configs,
concurrency configs, instances (worker subprocesses, reused while warm), async invocations with
retries, and the OnFailure/OnSuccess deliveries they produce.

FC 2.0 (2021-04-06) functions live in services; FC 3.0 (2023-03-30) has no services, so its
functions live under the service name ``V3`` (the empty string) with role, log config and VPC on
the function itself. Both share the machinery of the modules ``FcBackend`` is made of.

A function runs under the interpreter of its runtime: ``pythonX.Y`` on PATH, or what
``runtimes`` (``aliyun-local serve --fc-runtime python3.12=/path/to/python``) maps it to. A
runtime with no interpreter fails each invocation with ``RuntimeNotAvailable``.

Not persisted across restarts (``--state`` covers KMS only). Timers fire on real UTC time, not
the emulator clock that tests move by days.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
from collections import deque
from pathlib import Path
from typing import Any

from ..ram import RolePolicies
from .async_queue import MAX_ASYNC_WORKERS, AsyncQueue, Delivery
from .functions import Function, FunctionStore
from .instances import Instance, Invoker
from .triggers import Triggers

MAX_LOG_LINES = 5000


class FcBackend(FunctionStore, Triggers, AsyncQueue, Invoker):
    """FC of one account and region: services and functions (``functions.py``), triggers and
    timers (``triggers.py``), async invocations and destinations (``async_queue.py``),
    instances, concurrency and invocation (``instances.py``)."""

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

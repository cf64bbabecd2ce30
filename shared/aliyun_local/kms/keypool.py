"""A pool of fresh RSA-2048 wrapping keys, generated in a helper process.

Every GetParametersForImport answers with a fresh wrapping key pair, as KMS does. Generating
RSA-2048 costs ~100 ms of CPU and holds Python's GIL, which would stall every other request the
emulator is serving, a cost the real service does not impose on its callers. So keys are made
ahead of time in one helper process and each is handed out exactly once; when the pool is
empty the key is generated inline. ``prefill`` (``serve --wrapping-key-pool N``) makes N keys
before the emulator answers, on every core: benchmarks keep the emulator's key generation, a
server-side cost in the real service, out of what they time.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor, wait

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

POOL_SIZE = 16


def _follow_parent(parent_pid: int) -> None:
    """Helper initializer: hold none of the emulator's output pipes, and exit when it dies.

    Without this a SIGKILLed emulator leaves the helper running, and whoever reads the
    emulator's stdout/stderr (a supervisor, a test) waits for an EOF that never comes.
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()


def _generate() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class RsaKeyPool:
    def __init__(self, size: int = POOL_SIZE) -> None:
        self._size = size
        self._workers = 1
        self._lock = threading.Lock()
        self._pending: deque[Future] = deque()
        self._executor: ProcessPoolExecutor | None = None
        self._closed = False

    def _fill(self) -> None:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_follow_parent,
                initargs=(os.getpid(),),
            )
        while len(self._pending) < self._size:
            self._pending.append(self._executor.submit(_generate))

    def take(self) -> rsa.RSAPrivateKey:
        """A never-used RSA-2048 private key."""
        with self._lock:
            future = None
            if not self._closed:
                if self._pending and self._pending[0].done():
                    future = self._pending.popleft()
                self._fill()
        der = future.result() if future is not None else _generate()
        # The key comes from our own helper process, just made with cryptography's generator:
        # re-checking it on load (OpenSSL's RSA key check tests p and q for primality) cost
        # ~55 ms of CPU under the GIL per GetParametersForImport, 80 % of a busy emulator's
        # CPU (py-spy, bench/targets.py). Keys from anyone else are never loaded this way.
        key = serialization.load_der_private_key(
            der, password=None, unsafe_skip_rsa_key_validation=True
        )
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    def prefill(self, count: int, timeout: float = 900.0) -> int:
        """Keep ``count`` keys ready and wait (at most ``timeout`` seconds) until they are made;
        returns how many are ready. Uses every core while the emulator is not yet serving."""
        with self._lock:
            if self._executor is None:
                self._workers = max(1, os.cpu_count() or 1)
            self._fill()  # creates the helper processes, tops up to the usual size
            assert self._executor is not None
            while len(self._pending) < count:  # extra keys, not a larger pool: nothing is
                self._pending.append(self._executor.submit(_generate))  # remade during a run
            pending = list(self._pending)
        done, _ = wait(pending, timeout=timeout)
        return len(done)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for future in self._pending:
                future.cancel()
            self._pending.clear()
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None

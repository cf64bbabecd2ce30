"""The request budget (token buckets per KMS quota class) and the retry policy: no SDK import."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .types import DOCUMENTED_QPS, QUOTA_CLASS_OF

VAULT_CLASSES = ("symmetric", "secret_read", "secret_list", "secret_write")


class RequestBudget:
    """Token buckets, one per KMS quota class, shared by every thread of a run.

    Blocks (through the injected ``sleep``) until a token is free, so a fleet of any size stays
    under the configured rates. Defaults are half the documented quotas (50 read, 300
    ListResourceTags, 30 write, 10 CreateKey, 200 asymmetric crypto QPS), which production
    traffic shares. The vault's calls have their own classes, also at half their quotas
    (``vault_qps``: symmetric Decrypt/GenerateDataKey 1,000, GetSecretValue 450, ListSecrets 40,
    CreateSecret/PutSecretValue 10); ``vault_qps`` overrides any of them by class name. The
    burst is half a second's worth: the server's window allows a whole second, and the
    difference absorbs network jitter that bunches requests up on arrival, so a budget equal to
    the quota still never trips throttling.
    """

    BURST_SECONDS = 0.5

    def __init__(
        self,
        read_qps: float = DOCUMENTED_QPS["read"] / 2,
        write_qps: float = DOCUMENTED_QPS["write"] / 2,
        *,
        create_qps: float = DOCUMENTED_QPS["create"] / 2,
        crypto_qps: float = DOCUMENTED_QPS["crypto"] / 2,
        tags_qps: float = DOCUMENTED_QPS["tags"] / 2,
        vault_qps: dict[str, float] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        vault = {kind: DOCUMENTED_QPS[kind] / 2 for kind in VAULT_CLASSES}
        unknown = set(vault_qps or {}) - set(vault)
        if unknown:
            raise ValueError(f"not vault quota classes: {sorted(unknown)}")
        vault.update(vault_qps or {})
        self._rates = {
            "read": float(read_qps),
            "write": float(write_qps),
            "create": float(create_qps),
            "crypto": float(crypto_qps),
            "tags": float(tags_qps),
            **{kind: float(qps) for kind, qps in vault.items()},
        }
        self._monotonic = monotonic
        self._sleep = sleep
        self._next: dict[str, float] = dict.fromkeys(self._rates, float("-inf"))
        self._lock = threading.Lock()

    @classmethod
    def flat(cls, qps: float, **kwargs: Any) -> RequestBudget:
        """The same rate for every class (tests and drills against aliyun-local)."""
        rates = dict.fromkeys(("create_qps", "crypto_qps", "tags_qps"), qps)
        return cls(qps, qps, **rates, vault_qps=dict.fromkeys(VAULT_CLASSES, qps), **kwargs)

    def rate(self, kind: str) -> float:
        return self._rates[kind]

    def spend(self, action: str) -> None:
        kind = QUOTA_CLASS_OF.get(action)
        if kind is None:
            return
        interval = 1.0 / self._rates[kind]
        with self._lock:
            now = self._monotonic()
            # A reservation schedule: at most BURST_SECONDS of credit, then the steady rate.
            slot = max(self._next[kind], now - self.BURST_SECONDS + interval)
            self._next[kind] = slot + interval
        wait = slot - now
        if wait > 0:
            self._sleep(wait)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0

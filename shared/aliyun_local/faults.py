"""Injected latency, quotas, failures and lies, and the call log. Runtime settings, never
persisted.

Lies make the emulator answer as a faulty or hostile KMS (or a proxy in front of one) would,
for one named key, so that every check the agent makes on KMS's answers can be seen to fail:
``public_key`` ("other": GetPublicKey answers a public key that is not the key's),
``expiry`` (DescribeKey answers this ``MaterialExpireTime``, ISO or "" for never),
``state`` (DescribeKey answers this ``KeyState``),
``signature`` ("bad": AsymmetricSign answers a signature with its last byte flipped, which
stays well-formed DER for ECDSA/SM2 but no longer verifies) and ``plaintext`` ("bad":
AsymmetricDecrypt answers other bytes). The real state is untouched; only answers change.

Quotas are token buckets on the real monotonic clock (not the emulator clock, which tests
move by hours): a bucket of ``qps`` tokens refilled at ``qps`` per second, so one second of
burst and then the steady rate, as the documented per-second quotas behave. Each account and
region (the ``scope`` the server passes) has its own buckets, as KMS's quotas are per account
per region.
"""

from __future__ import annotations

import base64
import logging
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .clock import iso, parse_iso
from .errors import ApiError, injected, invalid_parameter, throttled

# The performance page's per-second quotas, per account and region (docs/FIDELITY.md#quota-classes).
DOCUMENTED_QUOTAS = {
    "read_qps": 50.0,
    "write_qps": 30.0,
    "create_qps": 10.0,
    "crypto_qps": 200.0,
    "tags_qps": 300.0,
}
QUOTA_FIELDS = tuple(DOCUMENTED_QUOTAS)
MAX_CALLS_KEPT = 200_000
log = logging.getLogger("aliyun_local.calls")
TRANSPORT_FAULTS = ("DropConnection", "ReadTimeout")
LIES = {
    "public_key": ("other",),
    "signature": ("bad",),
    "plaintext": ("bad",),
    "expiry": None,  # any ISO time, or "" for never
    # Seconds added to the true expiry ("-301": five minutes and a second early); a key whose
    # material never expires still says never. For checks at their boundary, whatever the clock.
    "expiry_shift": None,
    "state": ("Enabled", "Disabled", "PendingImport", "PendingDeletion"),
}


class TokenBucket:
    def __init__(self, qps: float) -> None:
        if qps <= 0:
            raise ValueError("qps must be positive")
        self.qps = qps
        self._tokens = qps
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take a token; return 0 on success, else the seconds until one is available."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.qps, self._tokens + (now - self._last) * self.qps)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.qps


@dataclass
class Faults:
    latency_ms: float = 0.0
    read_qps: float | None = None
    write_qps: float | None = None
    create_qps: float | None = None
    crypto_qps: float | None = None
    tags_qps: float | None = None
    error_rate: float = 0.0
    hang_ms: float = 2_000.0
    fail_next: dict[str, list[str]] = field(default_factory=dict)
    lies: dict[str, dict[str, str]] = field(default_factory=dict)
    _other_public_pem: str | None = field(default=None, repr=False)
    _buckets: dict[tuple[Any, str], TokenBucket] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Faults:
        """Build from the admin API's JSON; ``{}`` means no faults. Raises ``ApiError``."""
        allowed = {
            *QUOTA_FIELDS,
            "latency_ms",
            "error_rate",
            "hang_ms",
            "fail_next",
            "quotas",
            "lies",
        }
        unknown = set(body) - allowed
        if unknown:
            raise invalid_parameter("faults", f"unknown fields {sorted(unknown)}")
        faults = cls()
        if body.get("quotas") == "documented":
            for name, qps in DOCUMENTED_QUOTAS.items():
                setattr(faults, name, qps)
        elif "quotas" in body:
            raise invalid_parameter(
                "quotas",
                "only 'documented' (50 read, 30 write, 10 CreateKey, 200 crypto, "
                "300 ListResourceTags QPS)",
            )
        try:
            faults.latency_ms = float(body.get("latency_ms", 0) or 0)
            for name in QUOTA_FIELDS:
                if body.get(name) is not None:
                    setattr(faults, name, float(body[name]))
            faults.error_rate = float(body.get("error_rate", 0) or 0)
            faults.hang_ms = float(body.get("hang_ms", faults.hang_ms))
        except (TypeError, ValueError):
            raise invalid_parameter("faults", "numbers expected") from None
        if faults.latency_ms < 0 or not 0 <= faults.error_rate <= 1:
            raise invalid_parameter("faults", "latency_ms >= 0 and 0 <= error_rate <= 1")
        if not 0 <= faults.hang_ms <= 600_000:
            raise invalid_parameter("hang_ms", "between 0 and 600000")
        for name in QUOTA_FIELDS:
            value = getattr(faults, name)
            if value is not None and value <= 0:
                raise invalid_parameter(name, "must be positive")
        fail_next = body.get("fail_next") or {}
        if not isinstance(fail_next, dict):
            raise invalid_parameter("fail_next", "an object of Action -> Code (or list of codes)")
        for action, codes in fail_next.items():
            codes = [codes] if isinstance(codes, str) else codes
            if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
                raise invalid_parameter("fail_next", f"codes for {action} must be strings")
            faults.fail_next[str(action)] = list(codes)
        faults.lies = _parse_lies(body.get("lies") or {})
        return faults

    def _bucket(self, quota_class: str | None, scope: Any) -> TokenBucket | None:
        """The bucket of ``quota_class`` in ``scope`` (made full on first use), if quota'd."""
        qps = getattr(self, f"{quota_class}_qps", None) if quota_class else None
        if not qps:
            return None
        with self._lock:
            bucket = self._buckets.get((scope, quota_class))
            if bucket is None:
                bucket = self._buckets[(scope, quota_class)] = TokenBucket(qps)
            return bucket

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            pending = {a: list(c) for a, c in self.fail_next.items() if c}
        return {
            "latency_ms": self.latency_ms,
            **{name: getattr(self, name) for name in QUOTA_FIELDS},
            "error_rate": self.error_rate,
            "hang_ms": self.hang_ms,
            "fail_next": pending,
            "lies": {k: dict(v) for k, v in self.lies.items()},
        }

    def before(
        self,
        action: str,
        quota_class: str | None,
        throttling: str = "Rejected.Throttling",
        scope: Any = None,
    ) -> str | None:
        """Apply faults before ``action`` runs. Raises the injected ``ApiError``; returns a
        transport fault for the server to act out:

        - ``"DropConnection"``: close the connection unanswered; the action does not run.
        - ``"ReadTimeout"``: run the action, then hold the connection ``hang_ms`` and close it
          unanswered -- the client times out not knowing the work was done, the hardest case.
        """
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        bucket = self._bucket(quota_class, scope)
        if bucket is not None:
            wait = bucket.take()
            if wait:
                raise throttled(int(wait * 1000) + 1, throttling)
        with self._lock:  # "Action@<account id>" first: that account's calls only
            account = scope[0] if isinstance(scope, tuple) and scope else None
            codes = self.fail_next.get(f"{action}@{account}") if account else None
            codes = codes or self.fail_next.get(action)
            code = codes.pop(0) if codes else None
        if code in TRANSPORT_FAULTS:
            return code
        if code is not None:
            raise injected(code)
        if self.error_rate and random.random() < self.error_rate:  # noqa: S311 - fault dice
            raise ApiError(
                "ServiceUnavailableTemporary",
                "The request has failed due to a temporary failure of the server.",
                503,
            )
        return None

    def after(self, action: str, key_id: str | None, result: dict[str, Any]) -> dict[str, Any]:
        """Apply the lies told about ``key_id`` to the answer of ``action`` (a copy)."""
        lies = self.lies.get(key_id or "")
        if not lies:
            return result
        result = dict(result)
        if action == "DescribeKey" and lies.keys() & {"expiry", "expiry_shift", "state"}:
            metadata = dict(result["KeyMetadata"])
            if "expiry" in lies:
                metadata["MaterialExpireTime"] = lies["expiry"]
            if "expiry_shift" in lies and metadata.get("MaterialExpireTime"):
                true = parse_iso(metadata["MaterialExpireTime"])
                metadata["MaterialExpireTime"] = iso(true + int(lies["expiry_shift"]))
            if "state" in lies:
                metadata["KeyState"] = lies["state"]
            result["KeyMetadata"] = metadata
        elif action == "GetPublicKey" and "public_key" in lies:
            result["PublicKey"] = self._other_public_key()
        elif action == "AsymmetricSign" and "signature" in lies:
            result["Value"] = _flip_last_byte(result["Value"])
        elif action == "AsymmetricDecrypt" and "plaintext" in lies:
            result["Plaintext"] = _flip_last_byte(result["Plaintext"])
        return result

    def _other_public_key(self) -> str:
        # Another key's public key: a P-256 key made once per fault setting. Its fingerprint
        # differs from any key the agent enrolled, whatever that key's spec.
        if self._other_public_pem is None:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import ec

            self._other_public_pem = (
                ec.generate_private_key(ec.SECP256R1())
                .public_key()
                .public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                .decode()
            )
        return self._other_public_pem


def _flip_last_byte(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


_FREE_FORM = {"expiry": "an ISO time or empty", "expiry_shift": "whole seconds"}


def _is_int(text: str) -> bool:
    return re.fullmatch(r"[+-]?[0-9]{1,9}", text) is not None


def _parse_lies(lies: Any) -> dict[str, dict[str, str]]:
    """``{KeyId: {lie: value}}`` from the admin API. Raises ``ApiError``."""
    if not isinstance(lies, dict):
        raise invalid_parameter("lies", "an object of KeyId -> {lie: value}")
    parsed: dict[str, dict[str, str]] = {}
    for key_id, told in lies.items():
        if not isinstance(told, dict) or not told:
            raise invalid_parameter("lies", f"lies about {key_id} must be a non-empty object")
        for name, value in told.items():
            if name not in LIES:
                raise invalid_parameter("lies", f"unknown lie {name!r}; known: {sorted(LIES)}")
            allowed = LIES[name]
            if not isinstance(value, str) or (allowed is not None and value not in allowed):
                raise invalid_parameter("lies", f"{name} takes {allowed or _FREE_FORM[name]}")
            if name == "expiry" and value:
                try:
                    parse_iso(value)
                except ValueError:
                    raise invalid_parameter("lies", "expiry must be YYYY-MM-DDTHH:MM:SSZ") from None
            if name == "expiry_shift" and not _is_int(value):
                raise invalid_parameter("lies", "expiry_shift must be whole seconds, e.g. -301")
        parsed[str(key_id)] = dict(told)
    return parsed


class CallLog:
    """What was called, in order: action, key id, status, code and, when the emulator serves
    more than one account or region (``scoped``), the account and region it was served in
    (None where the request never got that far). Never parameters."""

    def __init__(self, scoped: bool = False) -> None:
        self.scoped = scoped
        self._calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(
        self,
        action: str,
        key_id: str | None,
        status: int,
        code: str | None,
        account_id: str | None = None,
        region: str | None = None,
    ) -> None:
        log.debug("%s key=%s -> %s %s", action, key_id or "-", status or "no answer", code or "")
        entry = {"action": action, "key_id": key_id, "status": status, "code": code}
        if self.scoped:
            entry.update(account_id=account_id, region=region)
        with self._lock:
            if len(self._calls) >= MAX_CALLS_KEPT:
                del self._calls[: MAX_CALLS_KEPT // 10]
            self._calls.append(entry)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._calls)

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

"""An EventBridge subset: the default event bus, rules made by FC ``eventbridge`` triggers, event
patterns, and delivery to FC as async invocations after a configurable delay.

Real FC creates an EventBridge rule behind every ``eventbridge`` trigger (the trigger's
``triggerEnable`` is the rule's switch); here the trigger *is* the rule. Each published event is
matched against every enabled trigger when it arrives; a match is delivered after
``delivery_delay_seconds`` (default 0.2 s; real delivery takes seconds) through FC's async
invocation queue, so its retries and destinations apply, when the trigger asks for an
asynchronous invocation; a synchronous one is a single invocation, waited for, with neither FC's
retries nor its destinations (EventBridge's own retry is not emulated). Which value of
``asyncInvocationType`` asks for which is disputed for FC 3.0 (the
``eventbridge_async_invocation_type`` setting; FC 2.0 triggers read ``true`` as asynchronous).
``/_local/events`` shows every event with its deliveries. Event patterns: exact values,
``prefix``, ``suffix``, ``contains``, ``anything-but`` (a value, a list or a prefix),
``exists``, nested objects; ``numeric`` and ``cidr`` are refused at trigger creation as not
emulated (docs/FIDELITY.md, "Events"). A field with more than 5 expressions is refused, as
EventBridge's limits page says it is.
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Protocol

from .errors import ApiError
from .fc import V3 as FC3_SERVICE

MAX_EVENTS_KEPT = 10_000
MAX_SYNC_DELIVERIES = 4  # synchronous invocations in flight at once; more wait their turn
DEFAULT_DELIVERY_DELAY = 0.2
_OPERATORS = ("prefix", "suffix", "contains", "anything-but", "exists")
_NOT_EMULATED = ("numeric", "cidr")
_SCHEMAS = ("CloudEvents", "RawData")
# EventBridge's limits page: "Expressions per field in stringExpression mode: 5".
MAX_EXPRESSIONS_PER_FIELD = 5


class PatternError(ValueError):
    """An event pattern aliyun-local cannot evaluate (malformed, or an operator not emulated)."""


# ---- event patterns --------------------------------------------------------------------------


def check_pattern(pattern: Any, path: str = "") -> None:
    """Refuse what ``matches`` cannot evaluate faithfully."""
    if not isinstance(pattern, dict):
        raise PatternError(f"{path or 'the pattern'} must be a JSON object")
    for name, rule in pattern.items():
        where = f"{path}.{name}" if path else name
        if isinstance(rule, dict):
            check_pattern(rule, where)
            continue
        if not isinstance(rule, list) or not rule:
            raise PatternError(f"{where}: a non-empty list of values or operators is expected")
        if len(rule) > MAX_EXPRESSIONS_PER_FIELD:
            raise PatternError(
                f"{where}: {len(rule)} expressions, EventBridge takes at most "
                f"{MAX_EXPRESSIONS_PER_FIELD} per field"
            )
        for item in rule:
            if not isinstance(item, dict):
                continue  # an exact value: string, number, true/false or null
            if len(item) != 1:
                raise PatternError(f"{where}: one operator per object")
            ((op, arg),) = item.items()
            if op in _NOT_EMULATED:
                raise PatternError(f"{where}: the {op} operator is not emulated by aliyun-local")
            if op not in _OPERATORS:
                raise PatternError(f"{where}: unknown operator {op}")
            if op == "exists" and not isinstance(arg, bool):
                raise PatternError(f"{where}: exists takes true or false")
            if op in ("prefix", "suffix", "contains") and not isinstance(arg, str):
                raise PatternError(f"{where}: {op} takes a string")
            if op == "anything-but" and isinstance(arg, dict) and set(arg) != {"prefix"}:
                raise PatternError(f"{where}: anything-but takes a value, a list or a prefix")


def _one(cond: Any, value: Any, present: bool) -> bool:
    if not isinstance(cond, dict):
        if isinstance(cond, bool) or isinstance(value, bool):  # true is not 1
            return present and value is cond
        return present and value == cond
    ((op, arg),) = cond.items()
    if op == "exists":
        return present is arg
    if not present:
        return False
    if op == "anything-but":
        if isinstance(arg, dict):
            return not (isinstance(value, str) and value.startswith(arg["prefix"]))
        excluded = arg if isinstance(arg, list) else [arg]
        return value not in excluded
    if not isinstance(value, str):
        return False
    if op == "prefix":
        return value.startswith(arg)
    if op == "suffix":
        return value.endswith(arg)
    return arg in value  # contains


def matches(pattern: dict[str, Any], event: Any) -> bool:
    """Whether ``event`` matches: every key of the pattern (AND), any condition in a key's list
    (OR); a list in the event matches when any of its elements does."""
    for name, rule in pattern.items():
        present = isinstance(event, dict) and name in event
        value = event.get(name) if present else None
        if isinstance(rule, dict):
            if not (present and matches(rule, value)):
                return False
            continue
        values = value if isinstance(value, list) and value else [value]
        if not any(_one(cond, v, present) for cond in rule for v in values):
            return False
    return True


def trigger_config(raw: Any) -> dict[str, Any]:
    """Validate an ``eventbridge`` trigger's ``triggerConfig`` (a JSON string or object) and
    return it with its defaults: triggerEnable true, asyncInvocationType false, the Default
    event source, CloudEvents delivery."""
    try:
        config = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise PatternError("triggerConfig is not JSON") from None
    if not isinstance(config, dict):
        raise PatternError("triggerConfig must be a JSON object")
    config = dict(config)
    pattern = config.get("eventRuleFilterPattern", "{}")
    try:
        parsed = json.loads(pattern) if isinstance(pattern, str) else pattern
    except ValueError:
        raise PatternError("eventRuleFilterPattern is not JSON") from None
    check_pattern(parsed)
    source = config.get("eventSourceConfig") or {"eventSourceType": "Default"}
    if not isinstance(source, dict) or source.get("eventSourceType", "Default") != "Default":
        raise PatternError(
            "aliyun-local emulates the Default event source only (Alibaba Cloud service events)"
        )
    sink = config.get("eventSinkConfig") or {}
    if not isinstance(sink, dict) or not isinstance(sink.get("deliveryOption") or {}, dict):
        raise PatternError("eventSinkConfig.deliveryOption must be a JSON object")
    schema = event_schema(config)
    if schema not in _SCHEMAS:
        raise PatternError(f"eventSchema must be one of {', '.join(_SCHEMAS)}")
    for flag in ("triggerEnable", "asyncInvocationType"):
        if flag in config and not isinstance(config[flag], bool):
            raise PatternError(f"{flag} must be true or false")
    config.setdefault("triggerEnable", True)
    config.setdefault("asyncInvocationType", False)
    config["eventRuleFilterPattern"] = json.dumps(parsed) if isinstance(pattern, dict) else pattern
    config["eventSourceConfig"] = {"eventSourceType": "Default", **source}
    return config


READINGS = ("true-is-sync", "true-is-async")


def asynchronous(config: dict[str, Any], service: str, reading: str) -> bool:
    """Whether a trigger's deliveries go through FC's async queue. ``reading`` is how FC 3.0
    reads ``asyncInvocationType`` (disputed: its current struct page and SDK say ``true`` is
    synchronous, FC 2.0's page says asynchronous); an FC 2.0 trigger (one with a service)
    reads it as FC 2.0 documents."""
    flag = bool(config.get("asyncInvocationType", False))
    if service != FC3_SERVICE or reading == "true-is-async":
        return flag
    return not flag


def event_schema(config: dict[str, Any]) -> str:
    """What the function receives: the CloudEvents envelope (default) or its data only."""
    option = (config.get("eventSinkConfig") or {}).get("deliveryOption") or {}
    return option.get("eventSchema", "CloudEvents")


# ---- the bus ---------------------------------------------------------------------------------


def _wall() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Functions(Protocol):
    """What the bus needs of FC (``fc.models.FcBackend``): its triggers (the rules), under its
    lock, and invocation, asynchronous through FC's queue or synchronous."""

    lock: threading.RLock
    triggers: dict[tuple[str, str, str], dict[str, Any]]
    async_results: dict[str, dict[str, Any]]

    def invoke(
        self, service: str, function: str, event: bytes, request_id: str | None = None
    ) -> tuple[bool, bytes, str]: ...

    def invoke_async(self, service: str, function: str, event: bytes) -> str: ...

    def wait_idle(self, timeout: float = 60.0) -> bool: ...


class EventBus:
    """The default event bus of one account and region, with FC ``eventbridge`` triggers as
    its rules. Every public method is thread-safe."""

    def __init__(
        self,
        fc: Functions,
        delivery_delay: float = DEFAULT_DELIVERY_DELAY,
        reading: Callable[[], str] = lambda: READINGS[0],
    ) -> None:
        self.fc = fc
        self._reading = reading  # the eventbridge_async_invocation_type setting in force
        self._startup_delay = delivery_delay
        self.delivery_delay = delivery_delay
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS_KEPT)
        self._lock = threading.Lock()
        self._due: list[tuple[float, int, dict[str, Any], dict[str, Any]]] = []
        self._seq = itertools.count()
        self._generation = 0  # bumped by reset: a delivery popped before it is dropped
        self._wake = threading.Condition(self._lock)
        self._stop = False
        self._sync = ThreadPoolExecutor(MAX_SYNC_DELIVERIES, thread_name_prefix="eventbridge-sync")
        self._thread = threading.Thread(target=self._loop, name="eventbridge", daemon=True)
        self._thread.start()

    def set_delay(self, seconds: Any) -> None:
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not (0 <= seconds <= 600)
        ):
            raise ApiError("InvalidParameter", "delivery_delay_seconds: a number 0-600", 400)
        with self._lock:
            self.delivery_delay = float(seconds)

    def config(self) -> dict[str, Any]:
        return {"delivery_delay_seconds": self.delivery_delay, "max_events_kept": MAX_EVENTS_KEPT}

    def reset(self) -> None:
        with self._lock:
            self.events.clear()
            self._due.clear()
            self._generation += 1
            self.delivery_delay = self._startup_delay

    def shutdown(self) -> None:
        with self._lock:
            self._stop = True
            self._wake.notify_all()
        self._thread.join(timeout=5)
        self._sync.shutdown(wait=False, cancel_futures=True)

    def publish(self, event: dict[str, Any]) -> None:
        """Record ``event`` and schedule its delivery to every enabled trigger it matches."""
        rules = self._rules()
        reading = self._reading()
        now = time.monotonic()
        with self._lock:
            entry: dict[str, Any] = {
                "event": event,
                "emitted_at": _wall(),
                "deliveries": [],
                "_generation": self._generation,
            }
            self.events.append(entry)
            for (service, function, name), config in rules:
                if not matches(json.loads(config["eventRuleFilterPattern"]), event):
                    continue
                delivery = {
                    "service": service,
                    "function": function,
                    "trigger": name,
                    "matched_at": entry["emitted_at"],
                    "delivered_at": None,
                    "request_id": None,
                    "state": "scheduled",
                    "invocation": "async" if asynchronous(config, service, reading) else "sync",
                    "_schema": event_schema(config),
                }
                entry["deliveries"].append(delivery)
                due = now + self.delivery_delay
                heapq.heappush(self._due, (due, next(self._seq), entry, delivery))
            self._wake.notify_all()

    def _rules(self) -> list[tuple[tuple[str, str, str], dict[str, Any]]]:
        with self.fc.lock:
            triggers = list(self.fc.triggers.items())
        rules = []
        for key, trigger in triggers:
            if trigger.get("triggerType") != "eventbridge":
                continue
            config = json.loads(trigger["triggerConfig"])
            if config.get("triggerEnable", True):
                rules.append((key, config))
        return rules

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._stop and (not self._due or self._due[0][0] > time.monotonic()):
                    timeout = self._due[0][0] - time.monotonic() if self._due else None
                    self._wake.wait(timeout)
                if self._stop:
                    return
                _due, _seq, entry, delivery = heapq.heappop(self._due)
            self._deliver(entry, delivery)

    def _deliver(self, entry: dict[str, Any], delivery: dict[str, Any]) -> None:
        key = (delivery["service"], delivery["function"], delivery["trigger"])
        with self._lock:
            stale = entry["_generation"] != self._generation
        if stale:  # emitted before a reset: the log it belonged to is gone
            return
        with self.fc.lock:
            still_there = key in self.fc.triggers
        if not still_there:
            with self._lock:
                delivery["state"] = "dropped: the trigger was deleted"
            return
        event = entry["event"]
        payload = json.dumps(event["data"] if delivery["_schema"] == "RawData" else event).encode()
        if delivery["invocation"] == "sync":
            with self._lock:
                delivery.update(delivered_at=_wall(), state="invoking")
            self._sync.submit(self._invoke_sync, delivery, payload)
            return
        try:
            request_id = self.fc.invoke_async(delivery["service"], delivery["function"], payload)
        except ApiError as exc:
            with self._lock:
                delivery["state"] = f"dropped: {exc.code}"
            return
        with self._lock:
            delivery.update(request_id=request_id, delivered_at=_wall(), state="invoked")

    def _invoke_sync(self, delivery: dict[str, Any], payload: bytes) -> None:
        """One synchronous invocation: no FC retries, no destinations, whatever it answers."""
        request_id = str(uuid.uuid4())
        try:
            ok, _body, _error = self.fc.invoke(
                delivery["service"], delivery["function"], payload, request_id
            )
            state = "succeeded" if ok else "failed"
        except ApiError as exc:
            state = f"dropped: {exc.code}"
        with self._lock:
            delivery.update(request_id=request_id, state=state, attempts=1)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until nothing is scheduled and FC's async queue has drained."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                pending = bool(self._due) or any(
                    d["state"] in ("scheduled", "invoking")
                    for e in self.events
                    for d in e["deliveries"]
                )
            if not pending:
                return self.fc.wait_idle(max(0.0, deadline - time.monotonic()))
            time.sleep(0.02)
        return False

    def view(self) -> list[dict[str, Any]]:
        """Every event kept, oldest first, each with its deliveries and their outcome."""
        with self._lock:
            entries = [
                (e["event"], e["emitted_at"], [dict(d) for d in e["deliveries"]])
                for e in self.events
            ]
        out = []
        for event, emitted_at, deliveries in entries:
            for d in deliveries:
                d.pop("_schema", None)
                result = self.fc.async_results.get(d["request_id"] or "")
                if result is not None and d["invocation"] == "async":
                    d["state"] = "succeeded" if result["ok"] else "failed"
                    d["attempts"] = result["attempts"]
            data = event.get("data") or {}
            out.append(
                {
                    "id": event.get("id"),
                    "source": event.get("source"),
                    "type": event.get("type"),
                    "event_name": data.get("eventName"),
                    "key_id": (data.get("requestParameters") or {}).get("KeyId"),
                    "emitted_at": emitted_at,
                    "deliveries": deliveries,
                    "event": event,
                }
            )
        return out

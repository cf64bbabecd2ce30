"""FC triggers: ``timer`` (a cron schedule, fired on real UTC time, ``cron.py``) and
``eventbridge`` (a rule of the event bus, ``aliyun_local/eventbridge.py``)."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone
from typing import Any

from .. import eventbridge
from ..errors import ApiError
from . import V3, cron
from .errors import bad, exists, not_found
from .functions import now_iso as _now_iso


class Triggers:
    """The triggers of ``FcBackend`` (``models.py``) and the timer loop that fires them."""

    lock: threading.RLock
    triggers: dict[tuple[str, str, str], dict[str, Any]]
    _last_fired: dict[tuple[str, str, str], float]
    _stop: threading.Event

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

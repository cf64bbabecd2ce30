"""The unsigned admin API under ``/_local/`` (every port): reset, health, the clock, faults,
settings, the call log, key views, the EventBridge log and its delay, RAM role policies, and
FC's deliveries, invocations, logs and timers (docs/EMULATOR.md lists the routes)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..clock import iso, parse_iso
from ..errors import ApiError
from ..faults import Faults

if TYPE_CHECKING:
    from ..emulator import Emulator

Answer = tuple[int, Any]


def handle(emulator: Emulator, method: str, path: str, body: bytes) -> Answer:
    try:
        data = json.loads(body) if body.strip() else {}
    except (ValueError, RecursionError):
        return 400, {"Code": "InvalidJSON", "Message": "the body is not JSON"}
    if not isinstance(data, dict):
        return 400, {"Code": "InvalidJSON", "Message": "the body must be a JSON object"}
    route = path[len("/_local/") :].rstrip("/")
    try:
        for routes in (_emulator_routes, _event_routes, _fc_routes):
            answer = routes(emulator, route, method, data)
            if answer is not None:
                return answer
    except ApiError as err:
        return err.status, {"Code": err.code, "Message": err.message}
    return 404, {"Code": "NotFound", "Message": f"no admin route {method} {path}"}


def _emulator_routes(
    emulator: Emulator, route: str, method: str, data: dict[str, Any]
) -> Answer | None:
    """The emulator as a whole and KMS: reset, health, clock, faults, settings, calls, keys."""
    if route == "reset" and method == "POST":
        emulator.reset()
        return 200, {"reset": True}
    if route == "health" and method == "GET":
        return 200, {"ok": True, "now": iso(emulator.clock.now())}
    if route == "clock":
        if method == "POST":
            _set_clock(emulator, data)
            emulator.flush(force=True)
        return 200, {"now": iso(emulator.clock.now()), "offset_seconds": emulator.clock.offset}
    if route == "faults":
        if method == "POST":
            emulator.faults = Faults.from_json(data)
        return 200, emulator.faults.to_json()
    if route == "settings":
        if method == "POST":
            emulator.kms.settings.update(data)
            emulator.kms.changed()
            emulator.flush()
        return 200, emulator.kms.settings.to_json()
    if route == "calls":
        if method == "DELETE":
            emulator.calls.clear()
        return 200, emulator.calls.list()
    if route.startswith("keys/") and method == "GET":
        return 200, emulator.key_view(route[len("keys/") :])
    return None


def _event_routes(
    emulator: Emulator, route: str, method: str, data: dict[str, Any]
) -> Answer | None:
    """EventBridge: the events emitted with their deliveries, the delay, waiting for idle."""
    if route == "events" and method == "GET":
        return 200, emulator.events.view()
    if route == "events/config":
        if method == "POST":
            if set(data) != {"delivery_delay_seconds"}:
                raise ApiError("InvalidParameter", 'send {"delivery_delay_seconds": N}', 400)
            emulator.events.set_delay(data["delivery_delay_seconds"])
        return 200, emulator.events.config()
    if route == "events/wait" and method == "POST":
        return 200, {"idle": emulator.events.wait_idle(float(data.get("timeout", 30)))}
    return None


def _fc_routes(emulator: Emulator, route: str, method: str, data: dict[str, Any]) -> Answer | None:
    """FC and the RAM policies its destinations are checked against."""
    fc = emulator.fc
    if route == "ram/roles":
        if method == "POST":
            fc.ram.attach(data.get("role"), data.get("policies"))
        return 200, fc.ram.view()
    if route == "fc/deliveries" and method == "GET":
        return 200, [d.view() for d in fc.deliveries]
    if route == "fc/invocations" and method == "GET":
        return 200, list(fc.invocations)
    if route == "fc/logs" and method == "GET":
        return 200, list(fc.logs)
    if route == "fc/wait" and method == "POST":
        return 200, {"idle": fc.wait_idle(float(data.get("timeout", 60)))}
    if route.startswith("fc/fire/") and method == "POST":
        parts = route.split("/")
        if len(parts) != 4:
            return 400, {"Code": "InvalidPath", "Message": "fc/fire/{service}/{trigger}"}
        return 202, {"request_id": fc.fire(parts[2], parts[3])}
    return None


def _set_clock(emulator: Emulator, data: dict[str, Any]) -> None:
    if set(data) == {"advance_seconds"} and isinstance(data["advance_seconds"], int | float):
        emulator.clock.advance(float(data["advance_seconds"]))
    elif set(data) == {"now"} and isinstance(data["now"], str):
        try:
            emulator.clock.set(parse_iso(data["now"]))
        except ValueError:
            raise ApiError("InvalidParameter", "now must be YYYY-MM-DDTHH:MM:SSZ") from None
    else:
        raise ApiError(
            "InvalidParameter", 'send {"advance_seconds": N} or {"now": "YYYY-MM-DDTHH:MM:SSZ"}'
        )

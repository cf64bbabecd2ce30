"""ActionTrail KMS events, as EventBridge hands them to the events function: parse, check, classify.

Pure: no SDK, no KMS, no material. The module only says *which key to look at and why*; it
never decides that a key is broken (the event is a hint, never a fact: whoever acts on it runs
DescribeKey first, and the hold is re-checked right before any import).

What arrives (docs/FIDELITY.md, "Events (ActionTrail via EventBridge)"): a CloudEvents 1.0
envelope (``id``, ``source``, ``type``, ``aliyunaccountid``, ``aliyunregionid``, ...) whose
``data`` is the ActionTrail record (``eventId``, ``eventName``, ``serviceName`` ``Kms``,
``acsRegion``, ``requestId``, ``requestParameters``, ``userIdentity``, ``errorCode`` when the
call failed). FC passes it as the JSON bytes of one event, or of a list when a batch window
is configured; both are accepted.

Which ``source``/``type`` EventBridge puts on a KMS call is disputed (FIDELITY): the
ActionTrail events page says ``acs.actiontrail``/``actiontrail:ActionTrail:ApiCall``, the KMS
events page ``kms:ActionTrail:ApiCall`` (source ``acs.kms`` by naming). Both are accepted,
in any combination, exactly as the deployed rule matches them (``SOURCES``, ``TYPES``).

Classes of event:

* ``DeleteKeyMaterial`` -> RESTORE (re-establish that key, hold re-checked before import);
* ``ScheduleKeyDeletion``, ``DisableKey`` -> ALERT (an operator's act: never fought; the
  handler alerts only once one DescribeKey shows a key it manages really stopped);
* ``TagResource``/``UntagResource`` of the hold tag, ``CancelKeyDeletion`` -> REPLAN (that
  key only);
* ``ImportKeyMaterial``, other tags, anything else, and failed calls -> IGNORE.

Anything malformed or foreign (another account, region, source or service; an unreadable key
id) raises ``PermanentEventError``: the handler audits it and returns, so FC does not retry.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..domain.errors import shown
from ..domain.model import KEY_ID_RE

# The deployed rule (deploy/functions.yml) lists exactly these; the parser accepts what it does.
SOURCES = ("acs.actiontrail", "acs.kms")
TYPES = ("actiontrail:ActionTrail:ApiCall", "kms:ActionTrail:ApiCall")
SERVICE = "Kms"
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_BATCH = 100
MAX_ID_CHARS = 128
MAX_CLAIM_CHARS = 128

RESTORE, ALERT, REPLAN, IGNORE = "RESTORE", "ALERT", "REPLAN", "IGNORE"
ACTIONS = (RESTORE, ALERT, REPLAN, IGNORE)
_BY_NAME = {
    "DeleteKeyMaterial": RESTORE,
    "ScheduleKeyDeletion": ALERT,
    "DisableKey": ALERT,
    "CancelKeyDeletion": REPLAN,
    "TagResource": REPLAN,  # only when the hold tag is among the tags (see _classify_tags)
    "UntagResource": REPLAN,
}
# The EventBridge rule matches exactly these names (deploy/functions.yml): never ImportKeyMaterial.
EVENT_NAMES = tuple(_BY_NAME)
_ARN_PREFIX = "acs:kms:"


class PermanentEventError(ValueError):
    """The event is malformed or foreign: refuse it, audit it, do not let FC retry it."""

    code = "PermanentEventError"


@dataclass(frozen=True)
class Deployment:
    """The account and region this deployment serves: events about anything else are refused."""

    account_id: str
    region: str


@dataclass(frozen=True)
class KmsEvent:
    """One checked ActionTrail KMS call: which key, what happened, what to do about it.

    ``claimed_by`` is what the record says about the caller, cut short: for the audit line only,
    never trusted (an event can be forged by anyone who may invoke the function)."""

    event_id: str
    request_id: str
    event_name: str
    key_id: str
    action: str
    reason: str
    event_time: str = ""
    claimed_by: str = ""

    @property
    def dedupe_key(self) -> str:
        """The ActionTrail event id, the only thing duplicates are recognised by; "" for an
        event without one (never dropped). Not the KMS request id: whoever made the KMS call
        learnt it from KMS's answer and could send a forged event carrying it first, so that
        the genuine one would be dropped (issue 25)."""
        return f"event:{self.event_id}" if self.event_id else ""

    def to_json(self) -> dict[str, str]:
        return {
            "event_id": self.event_id,
            "kms_request_id": self.request_id,
            "event_name": self.event_name,
            "key_id": self.key_id,
            "action": self.action,
            "reason": self.reason,
            "event_time": self.event_time,
            "claimed_by": self.claimed_by,
        }


def parse_payload(payload: bytes | str | dict | list) -> list[dict[str, Any]]:
    """The FC event as a list of JSON objects (one event, or a batch of at most MAX_BATCH)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    if isinstance(payload, (bytes, bytearray)):
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise PermanentEventError(f"event is larger than {MAX_PAYLOAD_BYTES} bytes")
        try:
            payload = json.loads(payload)
        except RecursionError:
            raise PermanentEventError("event JSON is nested too deeply") from None
        except (ValueError, UnicodeDecodeError):
            raise PermanentEventError("event is not JSON") from None
    docs = payload if isinstance(payload, list) else [payload]
    if not docs:
        raise PermanentEventError("event is an empty list")
    if len(docs) > MAX_BATCH:
        raise PermanentEventError(f"a batch holds at most {MAX_BATCH} events, not {len(docs)}")
    for doc in docs:
        if not isinstance(doc, dict):
            raise PermanentEventError("each event must be a JSON object")
    return docs


def classify(doc: dict[str, Any], deployment: Deployment) -> KmsEvent:
    """Check one CloudEvent against this deployment and say what it asks for."""
    _expect_one(doc.get("source"), SOURCES, "source")
    _expect_one(doc.get("type"), TYPES, "type")
    _expect(doc.get("aliyunaccountid"), deployment.account_id, "account")
    if doc.get("aliyunregionid") is not None:
        _expect(doc.get("aliyunregionid"), deployment.region, "region")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise PermanentEventError("event data must be an ActionTrail record (a JSON object)")
    _expect(data.get("serviceName"), SERVICE, "serviceName")
    _expect(data.get("acsRegion"), deployment.region, "acsRegion")
    if data.get("recipientAccountId") is not None:
        _expect(str(data.get("recipientAccountId")), deployment.account_id, "recipientAccountId")
    name = _text(data.get("eventName"), "eventName")
    event_id = _ident(data.get("eventId") or doc.get("id"), "eventId")
    request_id = _ident(data.get("requestId") or "", "requestId")
    if not (event_id or request_id):
        raise PermanentEventError("event carries neither an event id nor a request id")
    params = data.get("requestParameters")
    if not isinstance(params, dict):
        raise PermanentEventError("requestParameters must be a JSON object")
    action, reason = _action(name, data, params)
    if action == IGNORE:  # nothing will be done: a key id is recorded only when it is sound
        try:
            key_id = key_id_from(params.get("KeyId"), deployment)
        except PermanentEventError:
            key_id = ""
    else:
        key_id = key_id_from(params.get("KeyId"), deployment)
    return KmsEvent(
        event_id=event_id,
        request_id=request_id,
        event_name=name,
        key_id=key_id,
        action=action,
        reason=reason,
        event_time=claimed(data.get("eventTime")),
        claimed_by=_caller(data.get("userIdentity")),
    )


def key_id_from(value: Any, deployment: Deployment) -> str:
    """A bare key id, or the id inside ``acs:kms:REGION:ACCOUNT:key/ID`` of this deployment.

    Aliases are refused: resolving one takes a KMS call, and the sweep finds the key anyway."""
    if not isinstance(value, str) or not value:
        raise PermanentEventError("requestParameters.KeyId is missing")
    if value.startswith(_ARN_PREFIX):
        parts = value[len(_ARN_PREFIX) :].split(":")
        if len(parts) != 3 or not parts[2].startswith("key/"):
            raise PermanentEventError("KeyId is not a KMS key ARN")
        _expect(parts[0], deployment.region, "key ARN region")
        _expect(parts[1], deployment.account_id, "key ARN account")
        value = parts[2][len("key/") :]
    elif value.startswith("alias/"):
        raise PermanentEventError("KeyId names an alias; the sweep will find the key")
    if not KEY_ID_RE.fullmatch(value):
        raise PermanentEventError(f"invalid key id {shown(value)}")
    return value


def _action(name: str, data: dict[str, Any], params: dict[str, Any]) -> tuple[str, str]:
    error = data.get("errorCode")
    if error not in (None, ""):
        return IGNORE, f"{name} failed ({claimed(error)}): nothing changed"
    action = _BY_NAME.get(name, IGNORE)
    if name in ("TagResource", "UntagResource"):
        if params.get("KeyId") in (None, "") and (
            params.get("SecretName") or params.get("CertificateId")
        ):
            return IGNORE, f"{name} of a secret or certificate, not a key"
        return _classify_tags(name, params)
    if action == RESTORE:
        return RESTORE, "key material deleted: re-establish (the hold is re-checked first)"
    if action == ALERT:
        return ALERT, f"{name}: an operator's act, never fought"
    if action == REPLAN:
        return REPLAN, "deletion cancelled: re-plan this key"
    return IGNORE, f"{name} needs nothing from byok-keeper"


def _classify_tags(name: str, params: dict[str, Any]) -> tuple[str, str]:
    """REPLAN when the hold tag is set or removed, or when the tag keys cannot be read (one
    extra look is cheaper than a released hold the agent does not notice); else IGNORE."""
    from .plan import HOLD_TAG  # pure after issue 18 (the planner loads no SDK)

    raw = params.get("Tags") if name == "TagResource" else params.get("TagKeys")
    keys = _tag_keys(raw, "TagKey" if name == "TagResource" else None)
    if keys is None:
        return REPLAN, f"{name}: tag keys unreadable, re-plan this key to be safe"
    if HOLD_TAG in keys:
        verb = "set" if name == "TagResource" else "released"
        return REPLAN, f"hold {verb}: re-plan this key"
    return IGNORE, f"{name} of other tags"


def _tag_keys(raw: Any, field: str | None) -> set[str] | None:
    """Tag keys from KMS's ``Tags`` (``[{"TagKey", "TagValue"}]``) or ``TagKeys`` (``["k"]``),
    given as JSON text (as KMS takes them) or already decoded. None when unreadable."""
    if isinstance(raw, str):
        if len(raw) > 16 * 1024:
            return None
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):
            return None
    if not isinstance(raw, list) or len(raw) > 64:
        return None
    keys: set[str] = set()
    for item in raw:
        value = item.get(field) if field and isinstance(item, dict) else item
        if not isinstance(value, str):
            return None
        keys.add(value)
    return keys


def _expect(value: Any, expected: str, what: str) -> None:
    if not expected:
        raise PermanentEventError(f"this deployment's {what} is not configured")
    if value != expected:
        raise PermanentEventError(f"foreign event: {what} {shown(value)}, expected {expected!r}")


def _expect_one(value: Any, expected: tuple[str, ...], what: str) -> None:
    if value not in expected:
        raise PermanentEventError(f"foreign event: {what} {shown(value)}, expected one of "
                                  f"{', '.join(expected)}")  # fmt: skip


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
        raise PermanentEventError(f"{what} must be a short non-empty string")
    if not value.isascii() or not value.isprintable():
        raise PermanentEventError(f"{what} {shown(value)} is not printable ASCII")
    return value


def _ident(value: Any, what: str) -> str:
    return "" if value in (None, "") else _text(value, what)


def claimed(value: Any) -> str:
    """A claimed, untrusted string for the audit line: printable, one line, cut short."""
    text = value if isinstance(value, str) else ""
    return "".join(c for c in text[:MAX_CLAIM_CHARS] if c.isprintable())


def _caller(identity: Any) -> str:
    if not isinstance(identity, dict):
        return ""
    for field in ("arn", "userName", "principalId", "accessKeyId"):
        if identity.get(field):
            return claimed(identity[field])
    return ""


def shown_names(names: set[str], most: int = 3) -> str:
    """Unknown field names for a refusal: a few, each cut short, then how many more."""
    listed = ", ".join(shown(name) for name in sorted(names)[:most])
    return listed + (f" and {len(names) - most} more" if len(names) > most else "")


class DuplicateFilter:
    """Drops an event id seen within ``window`` seconds; remembers at most ``capacity`` ids.

    One per warm instance: replays inside the window (FC's at-least-once delivery, or a replay
    of a captured event) are dropped. Beyond the window or the capacity, or on another
    instance, a duplicate costs one extra look at the key: never a second import of anything
    the first one already restored, because the key is then Enabled again. The caller enters
    only events it acts on: an ignored or refused event never enters the filter, so a forged
    one cannot make the genuine event look like a duplicate."""

    def __init__(
        self,
        window: float = 600.0,
        capacity: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window <= 0 or capacity <= 0:
            raise ValueError("window and capacity must be positive")
        self.window = window
        self.capacity = capacity
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, event_key: str) -> bool:
        """True when ``event_key`` (``KmsEvent.dedupe_key``) came within the window: a
        duplicate. Otherwise records it (unless it is empty) and returns False."""
        now = self._clock()
        with self._lock:
            while self._seen and next(iter(self._seen.values())) <= now - self.window:
                self._seen.popitem(last=False)
            if not event_key:
                return False
            if event_key in self._seen:
                return True
            self._seen[event_key] = now
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
            return False

    def forget(self, event_key: str) -> None:
        """Un-record an event whose handling failed retryably, so FC's retry is not dropped."""
        with self._lock:
            self._seen.pop(event_key, None)

    def __len__(self) -> int:
        return len(self._seen)

"""Function Compute entrypoints' core: parse events, build dependencies once per warm instance,
call the same core as the CLI, map the result.

``functions/sweep/index.py`` and ``functions/reimport/index.py`` only call ``handle_sweep`` and
``handle_reimport``; this module imports nothing heavy at import time, so a cold start pays for
the SDK only when a handler first runs.

Failure semantics of ``reimport`` (what FC's async retries and the OnFailure destination see):

* **raises** ``RetryableFailure`` -- KMS throttled (``Rejected.Throttling`` or any
  ``Throttling*`` code), answered 5xx, or could not be reached; an
  expired import token that also failed on the fresh retry; KMS unusable as a whole
  (``NoKmsAccess``: a refused clock, a target's role STS will not renew, ``RoleUnavailable``,
  or its credentials refused as expired twice). FC retries the invocation
  (``MaxAsyncRetryAttempts``) and, when retries are exhausted, delivers it to OnFailure.
* **returns** ``{"ok": false, ...}`` -- permanent: a malformed event, an event asking to
  override a hold or naming a target not configured, the key is on hold, pending deletion,
  not enrolled or its enrollment is incomplete, material mismatch between vault and KMS, a
  tampered envelope. Retrying cannot help; the result is logged as an alert.

Events are not authenticated beyond ``fc:InvokeFunction``, which on-call engineers and the
sweep's own role hold. So an event never overrides a hold (``override_hold`` in an event is
refused: an operator releases the hold with ``byok-keeper release`` under their own identity),
and its ``requested_by`` is recorded as ``claimed_by``, never as the audit's ``actor``.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core.deps import Deps

SWEEP_FUNCTION = "sweep"
REIMPORT_FUNCTION = "reimport"
MAX_EVENT_BYTES = 128 * 1024
_RETRYABLE_CODES = frozenset(
    {
        "Unavailable",
        "Rejected.Throttling",
        "InternalFailure",
        "ServiceUnavailableTemporary",
        "ExpiredImportToken",
        # The target's role could not be assumed anew (kms.RoleUnavailable, a NoKmsAccess):
        # FC retries, as when building the target's Deps fails on its role.
        "RoleUnavailable",
    }
)


def retryable(code: str) -> bool:
    """Throttling in any of its forms (HTTP 429 or 400 ``Throttling*``), 5xx, no answer."""
    from ..gateway.kms import is_throttling

    return code in _RETRYABLE_CODES or is_throttling(code)


class RetryableFailure(Exception):
    """Raised from a handler so FC retries the invocation (and, finally, calls OnFailure)."""


class BadEvent(ValueError):
    """The event is not what the function accepts."""


class HoldOverrideRefused(BadEvent):
    """An event asked to override a hold: only an operator's own identity may lift a hold."""

    code = "HoldOverrideRefused"


class UnknownTargetRefused(BadEvent):
    """A reimport event names a target the settings do not configure: no retry can help."""

    code = "UnknownTarget"


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    access_key_secret: str
    security_token: str | None

    def __repr__(self) -> str:
        return f"Credentials(access_key_id={self.access_key_id}, secret=[SENSITIVE])"


def credentials_from(context: Any) -> Credentials | None:
    """FC python3.10 passes the service role's STS credentials on ``context.credentials``;
    python3.12 runtimes put them in ``ALIBABA_CLOUD_*`` variables (the default chain)."""
    creds = getattr(context, "credentials", None)
    if creds is not None and getattr(creds, "access_key_id", None):
        return Credentials(
            creds.access_key_id, creds.access_key_secret, getattr(creds, "security_token", None)
        )
    return None


class Runtime:
    """One ``runtime.Deps`` per warm instance: built on first use and reused while warm.

    Rebuilt when the context's STS credentials change (FC rotates them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: Credentials | str | None = "unset"
        self._deps: Deps | None = None
        self._targets_key: Credentials | str | None = "unset"
        self._targets: Any = None

    def targets_cache(self, context: Any) -> Any:
        """With ``[[targets]]``: one ``fleet_sweep.TargetDepsCache`` per warm instance over the
        context's credentials (each target assumes its role with them); rebuilt on rotation."""
        from ..core.fleet_sweep import TargetDepsCache
        from ..core.settings import load_settings
        from ..gateway.kms import static_credential

        creds = credentials_from(context)
        with self._lock:
            if self._targets_key != creds or self._targets is None:
                region = os.environ.get("ALIBABA_CLOUD_REGION_ID") or getattr(
                    context, "region", None
                )
                credential = (
                    static_credential(
                        creds.access_key_id, creds.access_key_secret, creds.security_token
                    )
                    if creds
                    else None
                )
                self._targets = TargetDepsCache(
                    load_settings({"region": region}), credential=credential
                )
                self._targets_key = creds
            return self._targets

    def deps(self, context: Any) -> Deps:
        creds = credentials_from(context)
        with self._lock:
            if self._key != creds or self._deps is None:
                self._deps = self._build(creds, context)
                self._key = creds
            return self._deps

    @staticmethod
    def _build(creds: Credentials | None, context: Any) -> Deps:
        from ..core.deps import build_deps
        from ..core.settings import load_settings
        from ..gateway.kms import SWEEP, static_credential

        configure_logging()
        # The environment's region, else the function's own (FC's context).
        region = os.environ.get("ALIBABA_CLOUD_REGION_ID") or getattr(context, "region", None)
        settings = load_settings({"region": region})
        credential = (
            static_credential(creds.access_key_id, creds.access_key_secret, creds.security_token)
            if creds
            else None
        )
        return build_deps(
            settings,
            SWEEP,
            credential=credential,
            region=getattr(context, "region", None),
            account_id=getattr(context, "account_id", None)
            or os.environ.get("BYOK_ACCOUNT_ID", ""),
        )


RUNTIME = Runtime()


def configure_logging() -> None:
    """Our JSON lines, replacing the FC runtime's root handler (adding ours beside it doubles
    every line). Every handler calls it before its first line: a refusal or an alert written
    before the dependencies exist must be JSON too (SLS alert rules read its fields)."""
    from ..domain.logs import configure

    configure(json=True, level=os.environ.get("BYOK_LOG_LEVEL", "INFO"), replace_root=True)


def _parse_json(event: bytes | str | dict, what: str) -> dict:
    if isinstance(event, dict):
        return event
    if isinstance(event, str):
        event = event.encode()
    if len(event) > MAX_EVENT_BYTES:
        raise BadEvent(f"{what} event is larger than {MAX_EVENT_BYTES} bytes")
    if not event.strip():
        return {}
    try:
        doc = json.loads(event)
    except RecursionError:
        raise BadEvent(f"{what} event JSON is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise BadEvent(f"{what} event is not JSON") from None
    if not isinstance(doc, dict):
        raise BadEvent(f"{what} event must be a JSON object")
    return doc


def parse_timer_event(event: bytes | str | dict) -> dict[str, Any]:
    """``{"triggerTime", "triggerName", "payload"}``; the payload may be a JSON object of
    options (``dry_run``, ``scan_account``) or empty. Anything else is a ``BadEvent``."""
    from ..planning.events import shown_names

    doc = _parse_json(event, "timer")
    payload = doc.get("payload") or ""
    options: dict[str, Any] = {}
    if isinstance(payload, dict):
        options = payload
    elif isinstance(payload, str) and payload.strip():
        try:
            options = json.loads(payload)
        except (ValueError, RecursionError):
            raise BadEvent("timer payload is not JSON (or nested too deeply)") from None
        if not isinstance(options, dict):
            raise BadEvent("timer payload must be a JSON object")
    unknown = set(options) - {"dry_run", "scan_account", "target"}
    if unknown:
        raise BadEvent(f"unknown sweep options {shown_names(unknown)}")
    for name in ("dry_run", "scan_account"):
        if name in options and not isinstance(options[name], bool):
            raise BadEvent(f"sweep option {name} must be true or false")
    return {
        "trigger_time": str(doc.get("triggerTime", "")),
        "trigger_name": str(doc.get("triggerName", "")),
        "dry_run": bool(options.get("dry_run", False)),
        "scan_account": bool(options.get("scan_account", False)),
        **_target_field(options, "sweep option"),
    }


def _target_field(doc: dict, what: str) -> dict[str, str]:
    """``{"target": NAME}`` when the event names a target (issue 16), else nothing."""
    from ..core.targets import NAME_RE

    if "target" not in doc:
        return {}
    if not isinstance(doc["target"], str) or not NAME_RE.fullmatch(doc["target"]):
        raise BadEvent(f"{what} target must be a target name")
    return {"target": doc["target"]}


def parse_reimport_event(event: bytes | str | dict) -> dict[str, Any]:
    """The reimport event's fields; ``reason`` and ``requested_by`` are cut to one printable
    line of at most ``events.MAX_CLAIM_CHARS`` (128) characters. Raises ``BadEvent``."""
    from ..domain.errors import ByokError
    from ..domain.model import check_key_id
    from ..planning.events import claimed, shown_names

    doc = _parse_json(event, "reimport")
    if "override_hold" in doc:
        raise HoldOverrideRefused(
            "reimport events cannot override a hold; release it with `byok-keeper release KEY` "
            "(your own identity, audited), then reimport"
        )
    allowed = {"key_id", "reason", "requested_by", "dry_run", "target"}
    unknown = set(doc) - allowed
    if unknown:
        raise BadEvent(f"unknown reimport fields {shown_names(unknown)}")
    key_id = doc.get("key_id")
    if not isinstance(key_id, str):
        raise BadEvent("reimport event needs key_id")
    try:
        check_key_id(key_id)
    except ByokError as exc:  # its message quotes the id cut short (errors.shown)
        raise BadEvent(str(exc)) from None
    if "dry_run" in doc and not isinstance(doc["dry_run"], bool):
        raise BadEvent("dry_run must be true or false")
    for name in ("reason", "requested_by"):
        if name in doc and not isinstance(doc[name], str):
            raise BadEvent(f"{name} must be a string")
    return {
        "key_id": key_id,
        # Claims, never trusted: one printable line of at most MAX_CLAIM_CHARS before any log.
        "reason": claimed(doc.get("reason", "")),
        "requested_by": claimed(doc.get("requested_by", "")),
        "dry_run": bool(doc.get("dry_run", False)),
        **_target_field(doc, "reimport"),
    }


def audit_file() -> str | None:
    """The audit file from settings, or None when the settings themselves are unusable."""
    from ..core.settings import load_settings
    from ..domain.errors import ByokError

    try:
        return load_settings().audit_file
    except ByokError:
        return None


def _claims(event: bytes | str | dict) -> dict[str, str]:
    """What a refused event says about itself, cut short, for the audit line: never trusted."""
    try:
        doc = _parse_json(event, "reimport")
    except BadEvent:
        return {}
    from ..domain.model import KEY_ID_RE
    from ..planning.events import claimed

    out = {}
    if isinstance(doc.get("key_id"), str) and KEY_ID_RE.fullmatch(doc["key_id"]):
        out["key_id"] = doc["key_id"]
    if isinstance(doc.get("requested_by"), str):
        out["claimed_by"] = claimed(doc["requested_by"])
    return out


def code_root() -> Path:
    """The deployed code package's root: the directory holding ``byok_keeper/``, where
    ``deploy/package.py`` also puts the handlers' directories and ``byok-keeper.toml``."""
    return Path(__file__).resolve().parents[2]


def anchor_config(env: MutableMapping[str, str] | None = None) -> None:
    """Make a relative ``BYOK_CONFIG`` absolute against the code package (``code_root``).

    deploy.py ships ``--config`` in the package and sets ``BYOK_CONFIG=byok-keeper.toml``. FC
    documents where the code is (``FC_FUNC_CODE_PATH``, "the code deployment directory", i.e.
    ``/code``) but not the handler's working directory (docs/FIDELITY.md), so the FC handlers
    never read the settings file relative to it. The CLI and daemon are not FC: for them a
    relative ``BYOK_CONFIG`` stays relative to the current directory (they never call this)."""
    env = os.environ if env is None else env
    path = env.get("BYOK_CONFIG")
    if path and not os.path.isabs(path):
        env["BYOK_CONFIG"] = str(code_root() / path)


def _request_id(context: Any) -> str:
    return str(getattr(context, "request_id", "") or "")


def _with_request_id(handler):
    """Bind the FC request id to every log line (ours and the SDK's) while ``handler`` runs;
    a relative ``BYOK_CONFIG`` is read from the code package (``anchor_config``)."""

    @functools.wraps(handler)
    def wrapper(event: bytes | str | dict, context: Any) -> dict[str, Any]:
        from structlog.contextvars import bound_contextvars

        anchor_config()
        with bound_contextvars(fc_request_id=_request_id(context)):
            return handler(event, context)

    return wrapper


@_with_request_id
def handle_sweep(event: bytes | str | dict, context: Any) -> dict[str, Any]:
    from ..domain.errors import ByokError
    from .hardening import harden_process

    harden_process()

    try:
        options = parse_timer_event(event)
    except BadEvent as exc:
        return {"ok": False, "error": "BadEvent", "message": str(exc)}
    from .fc_targets import configured_targets, sweep_targets

    try:
        targets = configured_targets()  # issue 16: every target, or the one the event names
    except ByokError as exc:  # the settings file: FC shows a failure (and alerts)
        raise RetryableFailure(str(exc)) from None
    if targets or "target" in options:  # a target with none configured: a BadEvent answer
        return sweep_targets(RUNTIME, targets, options, context, _request_id(context))
    deps = RUNTIME.deps(context)
    try:
        from ..core.dispatch import dispatch_sweep
        from ..operations.metrics import run_line

        # One structured ``metrics`` line per run, for SLS (deploy/alerts/).
        with run_line(deps.gateway, region=deps.region, account_id=deps.account_id) as m:
            return dispatch_sweep(
                deps, options, context_request_id=_request_id(context), on_result=m.observe
            )
    except ByokError as exc:
        # Configuration or vault-wide problems: raising makes FC (and its logs) show a failure.
        raise RetryableFailure(str(exc)) from None


@_with_request_id
def handle_reimport(event: bytes | str | dict, context: Any) -> dict[str, Any]:
    from ..core.restore import reimport_one, succeeded
    from ..gateway.kms import NoKmsAccess
    from .hardening import harden_process

    harden_process()  # no core dumps, not dumpable, no SDK debug output
    try:
        request = parse_reimport_event(event)
    except BadEvent as exc:
        return _refuse_reimport(exc, event, context)
    from ..core.targets import UnknownTarget
    from ..domain.errors import ByokError
    from .fc_targets import reimport_deps

    try:
        deps = reimport_deps(RUNTIME, request.get("target"), context)
    except UnknownTarget as exc:  # permanent: refused once and audited, never retried
        return _refuse_reimport(UnknownTargetRefused(str(exc)), event, context)
    except ByokError as exc:  # the target's role or settings: FC retries and alerts
        raise RetryableFailure(f"{request['key_id']}: {exc}") from None
    try:
        outcome = reimport_one(
            deps,
            request["key_id"],
            reason=request["reason"],
            trigger="fc-reimport",
            actor="fc",  # the function's role did the work; who asked is only claimed
            audit_fields={
                "claimed_by": request["requested_by"],
                "fc_request_id": _request_id(context),
            },
            dry_run=request["dry_run"],
        )
    except NoKmsAccess as exc:  # the function cannot use KMS at all: let FC retry and alert
        raise RetryableFailure(f"{request['key_id']}: {exc}") from None
    result = {"ok": succeeded(outcome), **outcome.to_json()}
    if request.get("target"):
        result["target"] = request["target"]
    if outcome.failed and retryable(outcome.error_code):
        raise RetryableFailure(f"{request['key_id']}: {outcome.reason}")
    return result


def _refuse_reimport(exc: BadEvent, event: bytes | str | dict, context: Any) -> dict[str, Any]:
    """Refuse a reimport event for good: an alert line (in the audit file too for a hold
    override or an unknown target), ``ok: false``, nothing raised, so FC does not retry."""
    from ..domain.audit import AuditLog

    configure_logging()  # a cold instance's first line may be this refusal
    code = getattr(exc, "code", "BadEvent")
    to_file = isinstance(exc, HoldOverrideRefused | UnknownTargetRefused)
    audit = AuditLog(audit_file()) if to_file else AuditLog()
    audit.event("key", outcome="failed", alert=True, error_code=code, reason=str(exc),
                trigger="fc-reimport", actor="fc", fc_request_id=_request_id(context),
                **_claims(event))  # fmt: skip
    return {"ok": False, "error": code, "message": str(exc)}

"""The emulated cloud behind every port: the clock, KMS per account and region (``accounts.py``),
STS, FC with its EventBridge bus, the faults and the call log, and the optional state file.

``server.py`` routes each HTTP request to the handler of its service (``endpoints/``), which
reads and changes this object; the state file (``--state``) holds KMS and the clock only.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import threading
from pathlib import Path
from typing import Any

from . import sts as sts_api
from .accounts import Tenancy, keyring
from .clock import Clock
from .eventbridge import DEFAULT_DELIVERY_DELAY, EventBus
from .faults import CallLog, Faults
from .fc.models import FcBackend
from .kms.models import KmsBackend
from .signing import Credentials

DEFAULT_ACCESS_KEY_ID = "local"
DEFAULT_ACCESS_KEY_SECRET = "local-secret"  # noqa: S105 - the emulator's documented default
DEFAULT_REGION = "cn-hangzhou"
DEFAULT_ACCOUNT_ID = "1234567890123456"
FC_ROLE_ACCESS_KEY_ID = "STS.local-fc-role"
STATE_FORMAT = "aliyun-local-state/1"


class Emulator:
    """The emulated cloud: clock, KMS backend, faults, call log and optional persistence."""

    def __init__(
        self,
        *,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT_ID,
        accounts: list[str] | None = None,
        regions: list[str] | None = None,
        credentials: Credentials | None = None,
        state_path: str | Path | None = None,
        seed_path: str | Path | None = None,
        settings: dict[str, Any] | None = None,
        fc_runtimes: dict[str, str] | None = None,
        event_delivery_delay: float = DEFAULT_DELIVERY_DELAY,
    ) -> None:
        """``accounts``/``regions``: every account served in every region, the first of each
        the default (without them, ``account_id`` in ``region``). ``credentials`` are the first
        account's; each other account has ``local-<account id>``/``local-secret``."""
        accounts, regions = list(accounts or [account_id]), list(regions or [region])
        region, account_id = regions[0], accounts[0]
        self.region = region
        self.account_id = account_id
        base = credentials or Credentials({DEFAULT_ACCESS_KEY_ID: DEFAULT_ACCESS_KEY_SECRET}, {})
        # The STS credentials of the FC service role, handed to every function invocation.
        self.fc_role = {
            "access_key_id": FC_ROLE_ACCESS_KEY_ID,
            "access_key_secret": secrets.token_urlsafe(24),
            "security_token": "CAIS" + secrets.token_urlsafe(48),  # shaped as STS's
        }
        self.credentials = keyring(
            accounts,
            {**base.secrets, FC_ROLE_ACCESS_KEY_ID: self.fc_role["access_key_secret"]},
            {**base.security_tokens, FC_ROLE_ACCESS_KEY_ID: self.fc_role["security_token"]},
            now=lambda: self.clock.now(),
        )
        self.fc = FcBackend(
            region=region, account_id=account_id, credentials=self.fc_role, runtimes=fc_runtimes
        )
        self.events = EventBus(
            self.fc,
            delivery_delay=event_delivery_delay,
            reading=lambda: self.kms.settings.eventbridge_async_invocation_type,
        )
        self.clock = Clock()
        self.faults = Faults()
        self.calls = CallLog(scoped=len(accounts) > 1 or len(regions) > 1)
        self.state_path = Path(state_path) if state_path else None
        self._dirty = False
        self._save_lock = threading.Lock()
        self.tenancy = Tenancy(
            accounts,
            regions,
            lambda r, a: KmsBackend(r, a, self.clock, self._mark_dirty, settings=settings),
        )
        self.kms = self.tenancy.primary  # the first account in the first region
        self.sts = sts_api.Sts(accounts, self.credentials, now=lambda: self.clock.now())
        if seed_path is not None:
            self._load(Path(seed_path))
        elif self.state_path and self.state_path.exists():
            self._load(self.state_path)

    # ---- persistence -----------------------------------------------------------------------

    def _mark_dirty(self) -> None:
        self._dirty = True

    def _load(self, path: Path) -> None:
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"aliyun-local: cannot read state file {path}: {exc}") from None
        if state.get("format") != STATE_FORMAT:
            raise SystemExit(f"aliyun-local: {path} is not an {STATE_FORMAT} file")
        self.clock = Clock(float(state.get("clock_offset", 0.0)))
        for backend in self.tenancy:
            backend.clock = self.clock
        self.tenancy.load_state(state.get("kms", {}), state.get("kms_scopes", {}))

    def flush(self, force: bool = False) -> None:
        """Write the state file atomically (temp file, fsync, rename) when anything changed."""
        if self.state_path is None or not (self._dirty or force):
            return
        with self._save_lock:
            self._dirty = False
            primary, others = self.tenancy.to_state()
            state = {"format": STATE_FORMAT, "clock_offset": self.clock.offset, "kms": primary}
            if others:  # every other (account, region), by "<account>/<region>"
                state["kms_scopes"] = others
            directory = self.state_path.parent
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".aliyun-local-", dir=directory)
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump(state, fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.chmod(tmp, 0o600)
                os.replace(tmp, self.state_path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def reset(self) -> None:
        self.events.reset()
        self.fc.reset()
        self.tenancy.reset()
        self.credentials.drop_temporary()
        self.clock.reset()
        self.faults = Faults()
        self.calls.clear()
        self.flush(force=True)

    def key_view(self, key_id: str) -> dict[str, Any]:
        """``/_local/keys/{id}``: the key wherever it lives, with its account and region."""
        backend = self.tenancy.find(key_id)
        view = backend.emulator_view(key_id)
        view.update(account_id=backend.account_id, region=backend.region)
        return view

"""Many accounts in many regions, as one emulated cloud (issue 16).

``Tenancy`` holds one KMS backend per (account, region): its own keys, aliases, secrets,
instances (``kst-local-software``/``kst-local-hardware``) and, through ``Faults``, its own quota
buckets, as KMS's quotas are per account per region. The first account and the first region are
the defaults: a server started without ``--account``/``--region`` has exactly one backend, the
one it always had.

``Keyring`` is who may sign: each access key belongs to one account. The first account's key is
``local`` (or whatever the server was given), every other account's is ``local-<account id>``
with the same secret; STS AssumeRole adds temporary keys (``STS.``-prefixed) that carry a
security token and expire on the emulator clock. A request is served by the backend of its
key's account in the region of the endpoint it reached, so one account's keys are invisible to
another's credentials (``Forbidden.KeyNotFound``), as in the real service.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ApiError
from .kms.errors import key_not_found
from .kms.models import KmsBackend
from .signing import check_security_token

ACCOUNT_ID = re.compile(r"\A[0-9]{16}\Z")
REGION_ID = re.compile(r"\A[a-z]+(-[a-z0-9]+)+\Z")
OTHER_ACCESS_KEY_SECRET = "local-secret"  # noqa: S105 - the emulator's documented default


def other_access_key_id(account_id: str) -> str:
    """The access key id of an account other than the first: ``local-<account id>``."""
    return f"local-{account_id}"


def check_scopes(accounts: list[str], regions: list[str]) -> None:
    """Refuse malformed or repeated account ids and regions (``ValueError``, one line)."""
    if not accounts or not regions:
        raise ValueError("at least one account and one region are needed")
    for account in accounts:
        if not ACCOUNT_ID.match(account):
            raise ValueError(f"account id {account!r}: 16 digits expected")
    for region in regions:
        if not REGION_ID.match(region):
            raise ValueError(f"region {region!r}: expected a region id such as cn-hangzhou")
    if len(set(accounts)) != len(accounts):
        raise ValueError("an account is given twice")
    if len(set(regions)) != len(regions):
        raise ValueError("a region is given twice")


@dataclass
class Principal:
    """One access key: its account, secret and, for STS credentials, token and expiry."""

    account_id: str
    secret: str
    token: str | None = None
    expires: float | None = None  # emulator clock; None = never (long-term keys)
    temporary: bool = False  # made by AssumeRole (dropped by reset)
    arn: str = ""  # the assumed role session's ARN (STS credentials)
    principal_id: str = ""  # <role id>:<session name> (STS credentials)


class Keyring:
    """Access key id -> ``Principal``. Implements what ``signing`` asks of a key store."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._keys: dict[str, Principal] = {}
        self._lock = threading.Lock()

    def add(self, access_key_id: str, principal: Principal) -> None:
        with self._lock:
            self._keys[access_key_id] = principal

    def principal(self, access_key_id: str) -> Principal:
        with self._lock:
            principal = self._keys.get(access_key_id)
        if principal is None:
            raise ApiError("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
        return principal

    def secret_for(self, access_key_id: str) -> str:
        return self.principal(access_key_id).secret

    def check_token(self, access_key_id: str, token: str | None) -> None:
        principal = self.principal(access_key_id)
        check_security_token(principal.token, token)
        if principal.expires is not None and self._now() >= principal.expires:
            raise ApiError(
                "InvalidSecurityToken.Expired", "Specified SecurityToken is expired.", 403
            )

    def account_of(self, access_key_id: str) -> str:
        return self.principal(access_key_id).account_id

    def drop_temporary(self) -> None:
        with self._lock:
            self._keys = {k: p for k, p in self._keys.items() if not p.temporary}


def keyring(
    accounts: list[str],
    secrets: Mapping[str, str],
    tokens: Mapping[str, str],
    now: Callable[[], float],
) -> Keyring:
    """The first account's keys (``secrets``, with ``tokens`` for STS-style ones) and
    ``local-<account id>``/``local-secret`` for each other account."""
    ring = Keyring(now)
    for access_key_id, secret in secrets.items():
        ring.add(access_key_id, Principal(accounts[0], secret, tokens.get(access_key_id)))
    for account in accounts[1:]:
        ring.add(other_access_key_id(account), Principal(account, OTHER_ACCESS_KEY_SECRET))
    return ring


class Tenancy:
    """One ``KmsBackend`` per (account, region); the first of each is the default."""

    def __init__(
        self,
        accounts: list[str],
        regions: list[str],
        make: Callable[[str, str], KmsBackend],
    ) -> None:
        check_scopes(accounts, regions)
        self.accounts = list(accounts)
        self.regions = list(regions)
        self._backends = {(a, r): make(r, a) for a in self.accounts for r in self.regions}
        self.primary = self._backends[(self.accounts[0], self.regions[0])]
        self._foreign: dict[str, Any] = {}  # state of scopes this server does not serve
        self._share()

    def _share(self) -> None:
        """Settings (``/_local/settings``) and the wrapping-key pool are the emulator's, not a
        backend's: every backend uses the primary's."""
        for backend in self._backends.values():
            backend.settings = self.primary.settings
            if backend.key_pool is not self.primary.key_pool:
                backend.key_pool.close()
                backend.key_pool = self.primary.key_pool

    def __iter__(self) -> Iterator[KmsBackend]:
        return iter(self._backends.values())

    def kms(self, account_id: str, region: str) -> KmsBackend:
        return self._backends[(account_id, region)]

    def find(self, key_id: str) -> KmsBackend:
        """The backend holding ``key_id`` (a key id or an alias), wherever it lives."""
        for backend in self._backends.values():
            try:
                backend.get_key(key_id)
            except ApiError:
                continue
            return backend
        raise key_not_found(key_id)

    def reset(self) -> None:
        for backend in self._backends.values():
            backend.reset()
        self._share()

    # ---- persistence: the primary as "kms" (the format of one account), the others apart --

    def to_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the primary's state, {"<account>/<region>": state} of every other scope)."""
        others = dict(self._foreign)
        for (account, region), backend in self._backends.items():
            if backend is not self.primary:
                others[f"{account}/{region}"] = backend.to_state()
        return self.primary.to_state(), others

    def load_state(self, primary: dict[str, Any], others: dict[str, Any]) -> None:
        self.primary.load_state(primary)
        self._foreign = {}
        for scope, state in others.items():
            account, _, region = scope.partition("/")
            backend = self._backends.get((account, region))
            if backend is None or backend is self.primary:
                self._foreign[scope] = state  # kept and written back, never dropped
            else:
                backend.load_state(state)
        self._share()

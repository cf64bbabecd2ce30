"""STS (API 2015-04-01, RPC style): ``AssumeRole`` and ``GetCallerIdentity``, enough for the
real ``alibabacloud-sts20150401`` SDK to take a role in another emulated account (issue 16).

Every emulated account has one role, ``acs:ram::<account>:role/byok-keeper``, that every
emulated account may assume (its trust policy is not emulated, nor are RAM policies: ``Policy``
is checked for grammar and otherwise ignored). The credentials AssumeRole returns are valid in
the role's account only, carry a security token and expire on the emulator clock.

Request shape, answers and codes: docs/FIDELITY.md ("Accounts, regions and STS").
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
from collections.abc import Callable, Mapping
from typing import Any

from .accounts import Keyring, Principal
from .clock import iso
from .errors import ApiError

API_VERSION = "2015-04-01"
ROLE_NAME = "byok-keeper"
MIN_DURATION_SECONDS = 900
MAX_DURATION_SECONDS = 3600  # the role's MaxSessionDuration, at its default
DEFAULT_DURATION_SECONDS = 3600
MAX_POLICY_CHARS = 2048
_ROLE_ARN = re.compile(r"\Aacs:ram::([0-9]+):role/([A-Za-z0-9.@_-]{1,64})\Z")
_SESSION_NAME = re.compile(r"\A[A-Za-z0-9.@_-]{2,64}\Z")
_ALNUM = string.ascii_letters + string.digits


def role_arn(account_id: str) -> str:
    """The ARN of the role every emulated account has."""
    return f"acs:ram::{account_id}:role/{ROLE_NAME}"


def _role_id(account_id: str) -> str:
    """A stable numeric id for the account's role (RAM role ids are 17+ digits)."""
    digest = hashlib.sha256(role_arn(account_id).encode()).hexdigest()
    return str(int(digest[:16], 16)).rjust(20, "3")[:19]


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def error_body(request_id: str, err: ApiError) -> dict[str, Any]:
    return {
        "RequestId": request_id,
        "HostId": "sts.aliyuncs.com",
        "Code": err.code,
        "Message": err.message,
        "Recommend": "",
    }


class Sts:
    """The STS of the emulated cloud: roles of ``accounts``, credentials into ``keyring``."""

    def __init__(self, accounts: list[str], keyring: Keyring, now: Callable[[], float]) -> None:
        self.accounts = list(accounts)
        self.keyring = keyring
        self._now = now

    def dispatch(self, access_key_id: str, action: str, params: Mapping[str, str]) -> dict:
        """The answer (without RequestId) to ``action`` signed by ``access_key_id``."""
        if action == "AssumeRole":
            return self.assume_role(params)
        if action == "GetCallerIdentity":
            return self.caller_identity(access_key_id)
        raise ApiError(
            "InvalidAction.NotFound",
            f"Specified api {action} is not found (aliyun-local emulates AssumeRole and "
            "GetCallerIdentity of STS).",
            404,
        )

    def assume_role(self, params: Mapping[str, str]) -> dict[str, Any]:
        arn = params.get("RoleArn") or ""
        session = params.get("RoleSessionName") or ""
        if not arn:
            raise ApiError("MissingRoleArn", "RoleArn is mandatory for this action.", 400)
        if not session:
            raise ApiError(
                "MissingRoleSessionName", "RoleSessionName is mandatory for this action.", 400
            )
        m = _ROLE_ARN.match(arn)
        if not m:
            raise ApiError("InvalidParameter.RoleArn", "The parameter RoleArn is wrongly formed.")
        account, name = m.groups()
        if account not in self.accounts or name.lower() != ROLE_NAME:
            raise ApiError("EntityNotExist.Role", f"The specified Role not exists: {arn}", 403)
        if not _SESSION_NAME.match(session):
            raise ApiError(
                "InvalidParameter.RoleSessionName",
                "The parameter RoleSessionName is wrongly formed.",
            )
        duration = _duration(params.get("DurationSeconds"))
        _check_policy(params.get("Policy"))

        access_key_id = "STS." + _random(24)
        secret, token = _random(44), "CAIS" + secrets.token_urlsafe(120)
        expires = self._now() + duration
        self.keyring.add(
            access_key_id,
            Principal(
                account_id=account,
                secret=secret,
                token=token,
                expires=expires,
                temporary=True,
                arn=f"{role_arn(account)}/{session}",
                principal_id=f"{_role_id(account)}:{session}",
            ),
        )
        return {
            "AssumedRoleUser": {
                "Arn": f"{role_arn(account)}/{session}",
                "AssumedRoleId": f"{_role_id(account)}:{session}",
            },
            "Credentials": {
                "AccessKeyId": access_key_id,
                "AccessKeySecret": secret,
                "SecurityToken": token,
                "Expiration": iso(expires),
            },
        }

    def caller_identity(self, access_key_id: str) -> dict[str, Any]:
        principal = self.keyring.principal(access_key_id)
        if principal.temporary:
            role_id = principal.principal_id.split(":", 1)[0]
            return {
                "AccountId": principal.account_id,
                "Arn": principal.arn,
                "IdentityType": "AssumedRoleUser",
                "PrincipalId": principal.principal_id,
                "RoleId": role_id,
                "UserId": "",
            }
        user_id = str(int(hashlib.sha256(access_key_id.encode()).hexdigest()[:14], 16))
        return {
            "AccountId": principal.account_id,
            "Arn": principal.arn or f"acs:ram::{principal.account_id}:user/{access_key_id}",
            "IdentityType": "RAMUser",
            "PrincipalId": user_id,
            "RoleId": "",
            "UserId": user_id,
        }


def _duration(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_DURATION_SECONDS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not MIN_DURATION_SECONDS <= value <= MAX_DURATION_SECONDS:
        raise ApiError(
            "InvalidParameter.DurationSeconds",
            "The Min/Max value of DurationSeconds is 15min/1hr.",
        )
    return value


def _check_policy(policy: str | None) -> None:
    if policy is None:
        return
    try:
        ok = 1 <= len(policy) <= MAX_POLICY_CHARS and isinstance(json.loads(policy), dict)
    except (ValueError, RecursionError):
        ok = False
    if not ok:
        raise ApiError(
            "InvalidParameter.PolicyGrammar", "The parameter Policy has not passed grammar check."
        )

"""Targets (issue 16): many accounts and regions from one deployment.

A target is one account in one region, declared as a ``[[targets]]`` table of the TOML settings
file (``--config``/``BYOK_CONFIG``):

    [[targets]]
    name = "prod-hz"                  # letters, digits, _ and -; at most 32
    region = "cn-hangzhou"            # required
    account_id = "1234567890123456"   # required, 16 digits
    role_arn = "acs:ram::1234567890123456:role/byok-keeper"  # optional: assumed through STS
    kms_endpoint = "..."              # optional; default kms.<region>.aliyuncs.com
    sts_endpoint = "..."              # optional; default sts.<region>.aliyuncs.com
    vault = "kms-secrets://byok/"     # optional; default the global vault
    read_qps = 25                     # optional quota shares (read/write/create/crypto/tags)

Without targets nothing changes: one account, one region, from the global settings. With
targets, each is a ``Settings`` of its own (``target_settings``): the global settings with the
target's region, account, endpoint, vault and quota shares -- so each has its own budget, which
is right, since KMS quotas are per account per region.

Every target is checked when the settings load, before anything runs: a bad one (no name, a
duplicate name, two targets of the same account and region, no region, an account id that is
not 16 digits, a malformed role ARN or one of another account, plain http to a non-loopback
host, an unknown key) is a ``ConfigError``: one line, exit 2.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..domain.errors import ConfigError
from ..gateway.kms.client import split_endpoint
from .settings import Settings, _coerce, config_section

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}\Z")
ACCOUNT_RE = re.compile(r"^[0-9]{16}\Z")
# RAM: acs:ram::<account>:role/<name>; names are 1-64 letters, digits, '.', '-' and '_'.
ROLE_ARN_RE = re.compile(r"^acs:ram::(?P<account>[0-9]{16}):role/[A-Za-z0-9.@_-]{1,64}\Z")
QUOTA_KEYS = ("read_qps", "write_qps", "create_qps", "crypto_qps", "tags_qps")
KEYS = ("name", "region", "account_id", "role_arn", "kms_endpoint", "sts_endpoint", "vault")


@dataclass(frozen=True)
class Target:
    name: str
    region: str
    account_id: str
    role_arn: str | None = None
    kms_endpoint: str | None = None
    sts_endpoint: str | None = None
    vault: str | None = None
    quotas: tuple[tuple[str, float], ...] = ()  # (setting, share) overrides

    @property
    def session_name(self) -> str:
        """The STS role session name: who assumed the role, in ActionTrail."""
        return f"byok-keeper-{self.name}"

    def describe(self) -> str:
        return f"{self.name} ({self.account_id} {self.region})"


def parse_target(raw: Any, index: int) -> Target:
    """One ``[[targets]]`` table, checked. ``ConfigError`` names the target and the problem."""
    where = f"targets[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table")
    name = raw.get("name")
    if isinstance(name, str) and NAME_RE.fullmatch(name):
        where = f"target {name!r}"
    elif name is None or name == "":
        raise ConfigError(f"{where} has no name")
    else:
        raise ConfigError(
            f"{where}: name must be letters, digits, _ and - (at most 32), not {name!r}"
        )
    unknown = sorted(k for k in raw if k not in KEYS and k not in QUOTA_KEYS)
    if unknown:
        raise ConfigError(f"{where} has unknown settings: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key in KEYS[1:]:
        value = raw.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string")
        values[key] = value
    if "region" not in values:
        raise ConfigError(f"{where} has no region")
    if not ACCOUNT_RE.fullmatch(values.get("account_id", "")):
        raise ConfigError(f"{where}: account_id must be 16 digits")
    try:
        for key in ("region", "kms_endpoint", "sts_endpoint"):
            if key in values:
                _coerce(key, values[key])
                if key.endswith("_endpoint"):
                    _check_shape(key, values[key])
        quotas = tuple((k, _coerce(k, raw[k])) for k in QUOTA_KEYS if raw.get(k) is not None)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    role = values.get("role_arn")
    if role is not None:
        match = ROLE_ARN_RE.fullmatch(role)
        if match is None:
            raise ConfigError(
                f"{where}: role_arn must be acs:ram::<16-digit account>:role/<name>, not {role!r}"
            )
        if match["account"] != values["account_id"]:
            raise ConfigError(f"{where}: role_arn is a role of another account than account_id")
    return Target(name=name, quotas=quotas, **values)


def _check_shape(key: str, endpoint: str) -> None:
    """An endpoint's shape and scheme, before anything runs (``split_endpoint`` parses it)."""
    try:
        split_endpoint(endpoint)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def parse_targets(raw: Any) -> tuple[Target, ...]:
    """The ``targets`` array of the settings file, every target checked; names unique, and
    no two targets of the same account and region."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("targets must be an array of tables ([[targets]])")
    targets = tuple(parse_target(item, i) for i, item in enumerate(raw))
    seen: set[str] = set()
    places: dict[tuple[str, str], str] = {}
    for target in targets:
        if target.name in seen:
            raise ConfigError(f"target {target.name!r} is declared twice")
        seen.add(target.name)
        # One account and region is one quota and one set of keys: two targets there would
        # each get a full budget and sweep every key twice (issue 25).
        place = (target.account_id, target.region)
        if place in places:
            raise ConfigError(
                f"targets {places[place]!r} and {target.name!r} are the same account "
                f"{target.account_id} and region {target.region}; declare it once"
            )
        places[place] = target.name
    return targets


def load_targets(
    config_path: str | None = None, env: Mapping[str, str] | None = None
) -> tuple[Target, ...]:
    """The targets of the settings file (``config_path``, else ``BYOK_CONFIG``); none without
    one. Under a ``[byok-keeper]`` table they are ``[[byok-keeper.targets]]``."""
    env = os.environ if env is None else env
    path = config_path or env.get("BYOK_CONFIG")
    return parse_targets(config_section(path).get("targets")) if path else ()


class UnknownTarget(ConfigError):
    """A name that is not one of the configured targets: asking again cannot help."""


def select(targets: Sequence[Target], names: Iterable[str]) -> tuple[Target, ...]:
    """The targets named (all without names). An unknown name, or names with no targets
    configured, is a ``ConfigError`` (``UnknownTarget`` for a name not configured)."""
    names = list(dict.fromkeys(names))
    if not names:
        return tuple(targets)
    if not targets:
        raise ConfigError("--target needs [[targets]] in the --config file; none are configured")
    known = {t.name: t for t in targets}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UnknownTarget(
            f"unknown target {unknown[0]!r}; configured: {', '.join(t.name for t in targets)}"
        )
    return tuple(known[n] for n in names)


def target_settings(settings: Settings, target: Target) -> Settings:
    """The global settings, narrowed to ``target``: its region, account, endpoint (none means
    the region's public endpoint, never the global override), vault and quota shares."""
    return dataclasses.replace(
        settings,
        region=target.region,
        account_id=target.account_id,
        kms_endpoint=target.kms_endpoint,
        vault=target.vault or settings.vault,
        **dict(target.quotas),
    )

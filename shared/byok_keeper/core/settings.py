"""Settings: explicit flags win over the environment, which wins over a TOML file.

Every row below is a global flag of ``byok-keeper`` (before the command), an environment
variable and a TOML key (tests/unit/test_settings_table.py walks the table).

| setting           | flag                | environment              | TOML key          |
|-------------------|---------------------|--------------------------|-------------------|
| region            | --region            | ALIBABA_CLOUD_REGION_ID  | region            |
| aliyun CLI profile| --profile           | ALIBABA_CLOUD_PROFILE    | profile           |
| KMS endpoint      | --kms-endpoint      | BYOK_KMS_ENDPOINT        | kms_endpoint      |
| vault URI         | --vault             | BYOK_VAULT               | vault             |
| seal key file     | --seal-key-file     | BYOK_SEAL_KEY_FILE       | seal_key_file     |
| seal KMS key id   | --seal-kms-key-id   | BYOK_SEAL_KMS_KEY_ID     | seal_kms_key_id   |
| seal PKCS#11 key  | --seal-pkcs11       | BYOK_SEAL_PKCS11         | seal_pkcs11       |
| output            | --output            | BYOK_OUTPUT              | output            |
| read budget (QPS) | --read-qps          | BYOK_READ_QPS            | read_qps          |
| write budget      | --write-qps         | BYOK_WRITE_QPS           | write_qps         |
| CreateKey budget  | --create-qps        | BYOK_CREATE_QPS          | create_qps        |
| crypto budget     | --crypto-qps        | BYOK_CRYPTO_QPS          | crypto_qps        |
| tag-read budget   | --tags-qps          | BYOK_TAGS_QPS            | tags_qps          |
| renew window      | --renew-before      | BYOK_RENEW_BEFORE        | renew_before      |
| audit file        | --audit-file        | BYOK_AUDIT_FILE          | audit_file        |
| concurrency       | --concurrency       | BYOK_CONCURRENCY         | concurrency       |
| FC dispatch       | --dispatch          | BYOK_DISPATCH            | dispatch          |
| FC dispatch batch | --dispatch-batch    | BYOK_DISPATCH_BATCH      | dispatch_batch    |
| FC inline keys    | --inline-keys       | BYOK_INLINE_KEYS         | inline_keys       |
| FC endpoint       | --fc-endpoint       | BYOK_FC_ENDPOINT         | fc_endpoint       |
| FC API version    | --fc-api            | BYOK_FC_API              | fc_api            |
| FC function prefix| --fc-prefix         | BYOK_FC_PREFIX           | fc_prefix         |
| FC 2.0 service    | --fc-service        | BYOK_FC_SERVICE          | fc_service        |
| budget instances  | --budget-instances  | BYOK_BUDGET_INSTANCES    | budget_instances  |
| budget percent    | --budget-percent    | BYOK_BUDGET_PERCENT      | budget_percent    |
| account id        | --account-id        | BYOK_ACCOUNT_ID          | account_id        |
| KMS read timeout  | --kms-timeout       | BYOK_KMS_TIMEOUT         | kms_timeout       |
| sweep interval    | --sweep-interval    | BYOK_SWEEP_INTERVAL      | sweep_interval    |

Every endpoint (KMS, FC, and the credential chain's ``ALIBABA_CLOUD_CREDENTIALS_URI``) must be
https unless it is loopback (127.0.0.0/8, ::1, localhost): see ``transport``.

``fc_api`` is ``3.0`` (functions ``<fc_prefix>-sweep`` and ``<fc_prefix>-reimport``, the
default) or ``2.0`` (functions ``sweep`` and ``reimport`` in the service ``fc_service``).
``budget_instances`` is how many processes share the request budgets above: each gateway this
process builds gets the budgets divided by it. The deployment sets it on the ``reimport``
function to that function's reserved concurrency, so a full fan-out of capped instances stays
inside the configured share of the account's quota. ``budget_percent`` (1-100, default 100) is
the part of the share those processes split: the deployment gives sweep, reimport and events
each a part, so every instance of every function at once stays inside the share
(deploy/README.md, "Budgets").

``sweep_interval`` is the longest gap between two full sweeps (``15m``, ``6h``, or the FC timer
schedule itself: ``@every 6h``, ``0 0 0/6 * * *``; see ``cadence``). The planner renews a key
whose renewal would come due before the next sweep now, and warns when a lease is shorter than
the interval. Empty (the default) plans as if sweeps were continuous; the FC deployment sets it
to the sweep's own schedule.

The TOML file is ``--config PATH`` or ``BYOK_CONFIG``; keys at the top level or under
``[byok-keeper]``; ``[[targets]]`` tables there declare many accounts and regions (see
``targets``). Credentials never live here: they come from the Alibaba Cloud credential
chain (``ALIBABA_CLOUD_ACCESS_KEY_ID`` ...), FC's context, profiles or instance roles.

There is no default region: a run that needs KMS and finds no region in a flag, the
environment, the TOML file or the ``--profile`` (the aliyun CLI's ``~/.aliyun/config.json``
``region_id``) stops with exit 2 naming where to set one.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..domain.errors import ConfigError, InputError
from ..domain.files import check_owner, read_capped
from ..domain.lease import parse_lease
from ..gateway.transport import CREDENTIAL_ENDPOINT_ENV, check_endpoint, check_url

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENV = {
    "region": "ALIBABA_CLOUD_REGION_ID",
    "profile": "ALIBABA_CLOUD_PROFILE",
    "kms_endpoint": "BYOK_KMS_ENDPOINT",
    "vault": "BYOK_VAULT",
    "seal_key_file": "BYOK_SEAL_KEY_FILE",
    "seal_kms_key_id": "BYOK_SEAL_KMS_KEY_ID",
    "seal_pkcs11": "BYOK_SEAL_PKCS11",
    "output": "BYOK_OUTPUT",
    "read_qps": "BYOK_READ_QPS",
    "write_qps": "BYOK_WRITE_QPS",
    "create_qps": "BYOK_CREATE_QPS",
    "crypto_qps": "BYOK_CRYPTO_QPS",
    "tags_qps": "BYOK_TAGS_QPS",
    "renew_before": "BYOK_RENEW_BEFORE",
    "audit_file": "BYOK_AUDIT_FILE",
    "concurrency": "BYOK_CONCURRENCY",
    "dispatch": "BYOK_DISPATCH",
    "dispatch_batch": "BYOK_DISPATCH_BATCH",
    "inline_keys": "BYOK_INLINE_KEYS",
    "fc_endpoint": "BYOK_FC_ENDPOINT",
    "fc_service": "BYOK_FC_SERVICE",
    "fc_api": "BYOK_FC_API",
    "fc_prefix": "BYOK_FC_PREFIX",
    "budget_instances": "BYOK_BUDGET_INSTANCES",
    "budget_percent": "BYOK_BUDGET_PERCENT",
    "account_id": "BYOK_ACCOUNT_ID",
    "kms_timeout": "BYOK_KMS_TIMEOUT",
    "sweep_interval": "BYOK_SWEEP_INTERVAL",
}
DISPATCH_MODES = ("inline", "fc-async")
FC_APIS = ("3.0", "2.0")
FC_PREFIX_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,50}\Z")  # leaves room for "-reimport"
REGION_RE = re.compile(r"^[a-z]{2,4}(-[a-z0-9]+){1,4}\Z")  # cn-hangzhou, cn-shanghai-finance-1
OUTPUTS = ("table", "json")
MAX_CONFIG_BYTES = 1024 * 1024
NOT_SETTINGS = ("byok-keeper", "targets")  # tables of the file, not settings (targets.py)


@dataclass(frozen=True)
class Settings:
    region: str | None = None
    profile: str | None = None  # an aliyun CLI profile: credentials (and region) from it
    kms_endpoint: str | None = None
    vault: str | None = None
    seal_key_file: str | None = None
    seal_kms_key_id: str | None = None
    seal_pkcs11: str | None = None  # an RFC 7512 pkcs11: URI (vault/pkcs11_uri.py)
    output: str = "table"
    # Request budgets: half of each documented quota (kms.DOCUMENTED_QPS), which production
    # traffic shares.
    read_qps: float = 25.0
    write_qps: float = 15.0
    create_qps: float = 5.0
    crypto_qps: float = 100.0
    tags_qps: float = 150.0
    renew_before: str = "7d"
    audit_file: str | None = None
    concurrency: int = 8
    dispatch: str = "inline"
    dispatch_batch: int = 50
    inline_keys: int = 20  # fc-async: up to this many due keys, the sweep restores them all
    fc_endpoint: str | None = None
    fc_service: str = "byok-keeper"
    fc_api: str = "3.0"
    fc_prefix: str = "byok-keeper"
    budget_instances: int = 1
    budget_percent: int = 100  # the part of the share this function's instances split
    account_id: str | None = None
    kms_timeout: float = 30.0  # seconds to wait for one KMS answer before retrying
    sweep_interval: str = ""  # the longest gap between sweeps; "" = continuous (cadence.py)

    def require_region(self) -> str:
        """The region, or ``ConfigError`` naming every place one can be set."""
        if not self.region:
            raise ConfigError(
                "no region: set --region, ALIBABA_CLOUD_REGION_ID, region in the --config "
                "file, or use a --profile (or an aliyun CLI current profile) whose region_id "
                "is set"
            )
        return self.region

    def instance_budgets(self) -> dict[str, float]:
        """This process's request budgets: ``budget_percent`` of the configured share, over
        ``budget_instances``."""
        share = {
            "read_qps": self.read_qps,
            "write_qps": self.write_qps,
            "create_qps": self.create_qps,
            "crypto_qps": self.crypto_qps,
            "tags_qps": self.tags_qps,
        }
        part = self.budget_percent / 100 / self.budget_instances
        return {k: v * part for k, v in share.items()}

    @property
    def sweep_interval_seconds(self) -> int:
        from ..planning.cadence import interval_seconds

        return interval_seconds(self.sweep_interval) if self.sweep_interval else 0

    @property
    def renew_before_seconds(self) -> int:
        lease = parse_lease(self.renew_before)
        assert lease.seconds is not None
        return lease.seconds


def _coerce(name: str, value: Any) -> Any:
    if value is None or value == "":
        return None
    if name in ("read_qps", "write_qps", "create_qps", "crypto_qps", "tags_qps", "kms_timeout"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, not {value!r}") from None
        limit = 300 if name == "kms_timeout" else 1000
        if not 0 < number <= limit:
            raise ConfigError(f"{name} must be between 0 and {limit}")
        return number
    if name in ("concurrency", "dispatch_batch", "budget_instances", "budget_percent",
                "inline_keys"):  # fmt: skip
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be an integer, not {value!r}") from None
        limit = {"concurrency": 64, "budget_percent": 100}.get(name, 1000)
        low = 0 if name == "inline_keys" else 1
        if not low <= number <= limit:
            raise ConfigError(f"{name} must be between {low} and {limit}")
        return number
    value = str(value)
    if name == "region" and not REGION_RE.fullmatch(value):
        raise ConfigError(f"region must be a region id like cn-hangzhou, not {value!r}")
    if name == "dispatch" and value not in DISPATCH_MODES:
        raise ConfigError(f"dispatch must be one of {', '.join(DISPATCH_MODES)}, not {value!r}")
    if name == "fc_api" and value not in FC_APIS:
        raise ConfigError(f"fc_api must be one of {', '.join(FC_APIS)}, not {value!r}")
    if name == "fc_prefix" and not FC_PREFIX_RE.match(value):
        raise ConfigError(
            f"fc_prefix must be a function name prefix like byok-keeper, not {value!r}"
        )
    if name == "output" and value not in OUTPUTS:
        raise ConfigError(f"output must be one of {', '.join(OUTPUTS)}, not {value!r}")
    if name.endswith("_endpoint"):
        check_endpoint(value, name)
    if name.startswith("seal_"):
        from ..vault.registry import check_setting

        check_setting(name, value)  # pkcs11: refuses pin-value, a relative or writable module
    if name == "renew_before":
        try:
            if parse_lease(value).never:
                raise InputError("never")
        except InputError:
            raise ConfigError(f"renew_before must be a duration like 7d, not {value!r}") from None
    if name == "sweep_interval":
        from ..planning.cadence import interval_seconds

        try:
            interval_seconds(value)
        except InputError as exc:
            raise ConfigError(str(exc)) from None
    return value


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    config_path: str | Path | None = None,
) -> Settings:
    """Merge defaults < TOML file < environment < flags. Raises ``ConfigError``."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = config_path or env.get("BYOK_CONFIG")
    if path:
        section = config_section(path)
        known = {f.name for f in fields(Settings)}
        unknown = sorted(k for k in section if k not in known and k not in NOT_SETTINGS)
        if unknown:
            raise ConfigError(f"config file {path} has unknown settings: {', '.join(unknown)}")
        values.update({k: v for k, v in section.items() if k in known})
    for name, var in ENV.items():
        if env.get(var):
            values[name] = env[var]
    for name, value in (flags or {}).items():
        if value is not None:
            values[name] = value
    for var in CREDENTIAL_ENDPOINT_ENV:
        if env.get(var):
            check_url(env[var], var)
    coerced = {k: _coerce(k, v) for k, v in values.items()}
    if not coerced.get("region"):  # the named profile's region, else the aliyun CLI's current
        name = coerced.get("profile")
        coerced["region"] = profile_region(name, env) if name else current_profile_region(env)
    return Settings(**{k: v for k, v in coerced.items() if v is not None})


def config_section(path: str | Path) -> dict[str, Any]:
    """The settings in the TOML file ``path``: its top level or its ``[byok-keeper]`` table.
    The file must be owned by the running user (or root) and not writable by group or others
    (``files.check_owner``)."""
    try:
        data, st = read_capped(path, MAX_CONFIG_BYTES, "config file")
        check_owner(st, path, "config file")
        doc = tomllib.loads(data.decode())
    except FileNotFoundError:
        raise ConfigError(f"cannot read config file {path}: no such file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return doc.get("byok-keeper", doc)


def profile_file(env: Mapping[str, str] | None = None) -> Path:
    """The aliyun CLI's profile file, where alibabacloud-credentials looks for it too."""
    env = os.environ if env is None else env
    return Path(env.get("HOME") or Path.home()) / ".aliyun" / "config.json"


def current_profile_region(env: Mapping[str, str] | None = None) -> str | None:
    """``region_id`` of the aliyun CLI's ``current`` profile: the one alibabacloud-credentials'
    default chain signs with when no --profile is named (and ALIBABA_CLOUD_PROFILE is unset).
    None when there is no profile file, no current profile or no region: never an error, as
    most hosts have no aliyun CLI at all."""
    import json

    try:
        doc = json.loads(profile_file(env).read_text())
    except (OSError, ValueError):
        return None
    current = doc.get("current") if isinstance(doc, dict) else None
    profiles = doc.get("profiles") if isinstance(doc, dict) else None
    for profile in profiles if isinstance(profiles, list) and current else []:
        if isinstance(profile, dict) and profile.get("name") == current:
            region = profile.get("region_id")
            if not isinstance(region, str) or not region:
                return None
            try:
                return _coerce("region", region)
            except ConfigError:  # not a region: as if none were set (then "no region", exit 2)
                return None
    return None


def profile_region(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """``region_id`` of the aliyun CLI profile ``name``; ``ConfigError`` if there is no such
    profile (a typo should not silently fall back to other credentials)."""
    import json

    path = profile_file(env)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"--profile {name}: cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"--profile {name}: {path} is not JSON") from None
    profiles = doc.get("profiles") if isinstance(doc, dict) else None
    for profile in profiles if isinstance(profiles, list) else []:
        if isinstance(profile, dict) and profile.get("name") == name:
            region = profile.get("region_id") or None
            return _coerce("region", region) if region else None
    raise ConfigError(f"--profile {name}: no such profile in {path}")

"""KMS state and rules, per region: keys, import tokens, secrets.

The rules follow ALIBABA-FACTS.md. Where Alibaba Cloud's documentation is silent, the choice
made here is marked "best guess" and, where it matters to byok-keeper, is a setting.

A key's state is derived, never stored, so it cannot drift from the facts it comes from:
``PendingDeletion`` if deletion is scheduled, else ``PendingImport`` if it has no material
(never imported, deleted or expired), else ``Disabled`` if disabled, else ``Enabled``.
Expiry and the end of a deletion window are judged against the emulator clock on every access.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from byok_keeper import sm2
from byok_keeper.material import load_private_key
from byok_keeper.specs import HSM, KEY_SPECS, SOFTWARE
from byok_keeper.wrapping import (
    WrappingPrivateKey,
    new_wrapping_key,
    wrapping_public_key_der,
)

from ..clock import Clock, iso
from . import unwrap
from .errors import (
    ApiError,
    import_rejected,
    invalid_ciphertext,
    invalid_key_material,
    invalid_parameter,
    key_not_found,
    resource_exists,
    resource_not_found,
    state_rejected,
    unsupported_operation,
    unsupported_origin,
)
from .keypool import RsaKeyPool

ENABLED, DISABLED, PENDING_DELETION, PENDING_IMPORT = (
    "Enabled",
    "Disabled",
    "PendingDeletion",
    "PendingImport",
)
SYMMETRIC_SPECS = ("Aliyun_AES_256",)
ORIGINS = ("Aliyun_KMS", "EXTERNAL")
DEFAULT_INSTANCES = {"kst-local-software": SOFTWARE, "kst-local-hardware": HSM}
TOKEN_TTL_SECONDS = 24 * 3600
MAX_TOKENS_PER_KEY = 50
_CIPHERTEXT_MAGIC = b"ALK1"
RSA_WRAPPING = "RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD"


@dataclass(frozen=True)
class Setting:
    """One behaviour the documentation leaves open (or where sources disagree): every answer
    aliyun-local can give, the default one and the one the ``strict`` profile picks."""

    name: str
    values: tuple[Any, ...]
    default: Any
    strict: Any
    why: str


# Each row is in docs/FIDELITY.md with its source; tests run the agent under each value.
SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(
            "primary_key_version",
            ("absent", "present"),
            "absent",
            "absent",
            "DescribeKey documents PrimaryKeyVersion for symmetric keys only",
        ),
        Setting(
            "disabled_key_after_import",
            ("Disabled", "Enabled"),
            "Disabled",
            "Disabled",
            "undocumented whether a Disabled key stays Disabled after a re-import",
        ),
        Setting(
            "hardware_accepts_asymmetric_import",
            (True, False),
            True,
            False,
            "the seed imports into hardware instances; a newer page says they do not",
        ),
        Setting(
            "different_material_error",
            ("InvalidKeyMaterial", "InvalidParameter", "Rejected.UnsupportedOperation"),
            "InvalidKeyMaterial",
            "InvalidParameter",
            "undocumented: the code for importing other material than the first",
        ),
        Setting(
            "throttling_answer",
            (
                "Rejected.Throttling",
                "Rejected.Throttling/no-retry-after",
                "Throttling",
                "Throttling.User",
                "Throttling.Api",
            ),
            "Rejected.Throttling",
            "Throttling.User",
            "gateways answer 429 Rejected.Throttling and 400 Throttling* without retry-after",
        ),
        Setting(
            "max_tags_per_key",
            (20, 10),
            20,
            10,
            "docs say 10 or 20 tags per key (the seed: 20)",
        ),
        Setting(
            "instance_product_version",
            ("named", "opaque"),
            "named",
            "opaque",
            "GetKmsInstance's ProductVersion values are documented only for ROS "
            "(software, hardware, ...)",
        ),
    )
}
PROFILES = ("default", "strict")


class Settings:
    """The answers in force for the undocumented behaviours (``/_local/settings``).

    ``profile("strict")`` picks the most hostile answer of each; ``update`` overrides single
    settings by name. Attribute access reads the value in force: ``settings.max_tags_per_key``.
    """

    def __init__(self, profile: str = "default") -> None:
        self._profile = "default"
        self._values: dict[str, Any] = {}
        self.apply_profile(profile)

    def apply_profile(self, profile: str) -> None:
        if profile not in PROFILES:
            raise invalid_parameter("profile", f"expected one of {', '.join(PROFILES)}")
        self._profile = profile
        self._values = {
            n: (s.strict if profile == "strict" else s.default) for n, s in SETTINGS.items()
        }

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("_values", {})
        if name in values:
            return values[name]
        raise AttributeError(name)

    def update(self, body: dict[str, Any]) -> None:
        """Apply ``{"profile": ...}`` first, then each ``name: value``; all or nothing."""
        body = dict(body)
        body.pop("overrides", None)  # as to_json shows them; the values themselves follow
        staged = Settings(body.pop("profile", self._profile))
        if "profile" not in body and staged._profile == self._profile:
            staged._values = dict(self._values)
        for name, value in body.items():
            setting = SETTINGS.get(name)
            if setting is None or not any(
                value == v and type(value) is type(v) for v in setting.values
            ):
                choices = ", ".join(json.dumps(v) for v in setting.values) if setting else ""
                why = f"one of {choices}" if setting else "unknown setting"
                raise invalid_parameter("settings", f"{name}: {why}")
            staged._values[name] = value
        self._profile, self._values = staged._profile, staged._values

    def to_json(self) -> dict[str, Any]:
        base = Settings(self._profile)._values
        overrides = sorted(n for n, v in self._values.items() if base[n] != v)
        return {"profile": self._profile, "overrides": overrides, **self._values}


@dataclass
class Key:
    key_id: str
    arn: str
    key_spec: str
    key_usage: str
    origin: str
    protection_level: str
    instance_id: str
    description: str
    created: float
    creator: str
    primary_version: str
    # Symmetric keys: version id -> 32-byte key. Asymmetric keys: a single version.
    versions: dict[str, bytes] = field(default_factory=dict)
    version_created: dict[str, float] = field(default_factory=dict)
    material: bytes | None = None  # asymmetric: PKCS#8 DER or raw SM2 D
    bound_fingerprint: str | None = None  # set by the first import, forever
    material_expire: int = 0  # Unix seconds, 0 = never
    import_count: int = 0
    disabled: bool = False
    delete_at: float | None = None
    tags: dict[str, str] = field(default_factory=dict)
    automatic_rotation: bool = False
    rotation_interval: str = ""
    policy: str = ""  # the key policy (JSON) given at CreateKey; "" = the default policy
    _loaded: Any = field(default=None, repr=False)  # cached private key object

    @property
    def asymmetric(self) -> bool:
        return self.key_spec in KEY_SPECS

    @property
    def state(self) -> str:
        if self.delete_at is not None:
            return PENDING_DELETION
        if self.asymmetric and self.material is None:
            return PENDING_IMPORT
        return DISABLED if self.disabled else ENABLED

    def metadata(self, settings: Settings) -> dict[str, str]:
        meta = {
            "Arn": self.arn,
            "AutomaticRotation": "Enabled" if self.automatic_rotation else "Disabled",
            "CreationDate": iso(self.created),
            "Creator": self.creator,
            "DKMSInstanceId": self.instance_id,
            "DeleteDate": iso(self.delete_at) if self.delete_at is not None else "",
            "DeletionProtection": "Disabled",
            "Description": self.description,
            "KeyId": self.key_id,
            "KeySpec": self.key_spec,
            "KeyState": self.state,
            "KeyUsage": self.key_usage,
            "LastRotationDate": iso(self.version_created[self.primary_version]),
            "MaterialExpireTime": iso(self.material_expire) if self.material_expire else "",
            "NextRotationDate": "",
            "Origin": self.origin,
            "PrimaryKeyVersion": self.primary_version,
            "ProtectionLevel": self.protection_level,
            "RotationInterval": self.rotation_interval,
        }
        if self.asymmetric and settings.primary_key_version == "absent":
            del meta["PrimaryKeyVersion"]  # documented for symmetric keys only
        return meta

    def to_state(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        d["versions"] = {v: base64.b64encode(m).decode() for v, m in self.versions.items()}
        d["material"] = base64.b64encode(self.material).decode() if self.material else None
        return d

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Key:
        d = dict(d)
        d["versions"] = {v: base64.b64decode(m) for v, m in d["versions"].items()}
        d["material"] = base64.b64decode(d["material"]) if d["material"] else None
        return cls(**d)


@dataclass
class ImportToken:
    token: str
    key_id: str
    algorithm: str
    wrapping_key: WrappingPrivateKey = field(repr=False)
    expires: float

    def to_state(self) -> dict[str, Any]:
        if isinstance(self.wrapping_key, sm2.Sm2PrivateKey):
            kind, blob = "sm2", bytes(self.wrapping_key.scalar_bytes())
        else:
            kind, blob = (
                "rsa",
                self.wrapping_key.private_bytes(
                    serialization.Encoding.DER,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
        return {
            "token": self.token,
            "key_id": self.key_id,
            "algorithm": self.algorithm,
            "expires": self.expires,
            "kind": kind,
            "wrapping_key": base64.b64encode(blob).decode(),
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> ImportToken:
        blob = base64.b64decode(d["wrapping_key"])
        key = (
            sm2.Sm2PrivateKey.from_bytes(blob)
            if d["kind"] == "sm2"
            else serialization.load_der_private_key(blob, password=None)
        )
        return cls(d["token"], d["key_id"], d["algorithm"], key, d["expires"])


@dataclass
class SecretVersion:
    version_id: str
    data: str
    data_type: str
    created: float
    stages: list[str]


@dataclass
class Secret:
    name: str
    arn: str
    created: float
    updated: float
    description: str
    encryption_key_id: str
    versions: list[SecretVersion] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)

    def version(self, version_id: str | None, stage: str | None) -> SecretVersion:
        for v in self.versions:
            if (version_id is None or v.version_id == version_id) and (
                stage is None or stage in v.stages
            ):
                return v
        raise resource_not_found(f"The secret version of {self.name}")

    def to_state(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["versions"] = [dict(v.__dict__) for v in self.versions]
        return d

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Secret:
        d = dict(d)
        d["versions"] = [SecretVersion(**v) for v in d["versions"]]
        return cls(**d)


def _new_key_id() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "key-" + "".join(secrets.choice(alphabet) for _ in range(20))


def _new_version_id() -> str:
    b = secrets.token_hex(16)
    return f"{b[:8]}-{b[8:12]}-{b[12:16]}-{b[16:20]}-{b[20:]}"


MAX_POLICY_BYTES = 32_768  # CreateKey's Policy (the SDK model)


def _check_policy(policy: str) -> None:
    if not policy:
        return
    if len(policy.encode()) > MAX_POLICY_BYTES:
        raise invalid_parameter("Policy", f"at most {MAX_POLICY_BYTES} bytes")
    try:
        doc = json.loads(policy)
    except ValueError:
        raise invalid_parameter("Policy", "JSON is expected") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("Statement"), list):
        raise invalid_parameter("Policy", "a JSON object with a Statement list is expected")


def _tag_char(c: str) -> bool:
    return c.isalnum() or c in " /\\_-.+=:@"


def _canonical_context(context: dict[str, str] | None) -> bytes:
    if not context:
        return b""
    return json.dumps(context, sort_keys=True, separators=(",", ":")).encode()


class KmsBackend:
    """One region of one account. Every public method takes the lock."""

    def __init__(
        self,
        region: str,
        account_id: str,
        clock: Clock,
        on_change: Callable[[], None] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.region = region
        self.account_id = account_id
        self.clock = clock
        # The settings it was started with (a profile and overrides); reset returns to them.
        self._startup_settings = dict(settings or {})
        self.settings = self._startup()
        self.instances = dict(DEFAULT_INSTANCES)
        self.keys: dict[str, Key] = {}
        self.tokens: dict[str, ImportToken] = {}
        self.secrets: dict[str, Secret] = {}
        self.aliases: dict[str, str] = {}  # alias name -> key id
        self.lock = threading.RLock()
        self._on_change = on_change or (lambda: None)
        self.key_pool = RsaKeyPool()

    # ---- persistence ---------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "keys": [k.to_state() for k in self.keys.values()],
                "tokens": [t.to_state() for t in self.tokens.values()],
                "secrets": [s.to_state() for s in self.secrets.values()],
                "aliases": dict(self.aliases),
                "settings": self.settings.to_json(),
            }

    def load_state(self, state: dict[str, Any]) -> None:
        with self.lock:
            self.keys = {k["key_id"]: Key.from_state(k) for k in state.get("keys", [])}
            self.tokens = {t["token"]: ImportToken.from_state(t) for t in state.get("tokens", [])}
            self.secrets = {s["name"]: Secret.from_state(s) for s in state.get("secrets", [])}
            self.aliases = dict(state.get("aliases", {}))
            self.settings = Settings()
            self.settings.update(state.get("settings", {}))
            self.settings.update(self._startup_settings)  # the command line wins

    def reset(self) -> None:
        with self.lock:
            self.keys.clear()
            self.tokens.clear()
            self.secrets.clear()
            self.aliases.clear()
            self.settings = self._startup()
            self.instances = dict(DEFAULT_INSTANCES)

    def _startup(self) -> Settings:
        settings = Settings()
        settings.update(self._startup_settings)
        return settings

    def changed(self) -> None:
        self._on_change()

    # ---- key lookup and the clock ----------------------------------------------------------

    def _refresh(self, key: Key) -> Key | None:
        """Apply the clock: end deletion windows and expire material. None = key is gone."""
        now = self.clock.now()
        if key.delete_at is not None and now >= key.delete_at:
            del self.keys[key.key_id]
            for token in [t for t, v in self.tokens.items() if v.key_id == key.key_id]:
                del self.tokens[token]
            self.changed()
            return None
        if key.material is not None and key.material_expire and now >= key.material_expire:
            key.material = None
            key.material_expire = 0
            key._loaded = None
            self.changed()
        return key

    def get_key(self, key_id: str) -> Key:
        """The key called ``key_id``: a key id, or an alias name (``alias/...``)."""
        with self.lock:
            if key_id.startswith("alias/"):
                key_id = self.aliases.get(key_id, key_id)
            key = self.keys.get(key_id)
            if key is None or self._refresh(key) is None:
                raise key_not_found(key_id)
            return key

    def all_keys(self) -> list[Key]:
        with self.lock:
            return [k for k in list(self.keys.values()) if self._refresh(k) is not None]

    # ---- key lifecycle -------------------------------------------------------------------

    def create_key(
        self,
        *,
        key_spec: str,
        key_usage: str,
        origin: str,
        instance_id: str,
        protection_level: str,
        description: str,
        tags: dict[str, str],
        policy: str = "",
    ) -> Key:
        if origin not in ORIGINS:
            raise invalid_parameter("Origin", f"expected one of {', '.join(ORIGINS)}")
        spec = KEY_SPECS.get(key_spec)
        if spec is None and key_spec not in SYMMETRIC_SPECS:
            raise invalid_parameter("KeySpec", f"unsupported key spec {key_spec}")
        if spec is not None:
            if key_usage not in spec.usages:
                raise invalid_parameter("KeyUsage", f"{key_spec} supports {', '.join(spec.usages)}")
        elif key_usage != "ENCRYPT/DECRYPT":
            raise invalid_parameter("KeyUsage", f"{key_spec} supports ENCRYPT/DECRYPT")
        if instance_id:
            level = self.instances.get(instance_id)
            if level is None:
                raise invalid_parameter("DKMSInstanceId", f"instance {instance_id} not found")
            protection_level = level  # an instance decides the protection level
            if spec is not None and level not in spec.protection_levels:
                raise invalid_parameter(
                    "KeySpec", f"{key_spec} is not available in a {level} instance"
                )
        else:
            protection_level = protection_level or SOFTWARE
            if protection_level not in (SOFTWARE, HSM):
                raise invalid_parameter("ProtectionLevel", "expected SOFTWARE or HSM")
            if origin == "EXTERNAL" and spec is not None:
                raise invalid_parameter(
                    "DKMSInstanceId",
                    "asymmetric keys with Origin EXTERNAL must be created in a KMS instance",
                )
        if origin == "EXTERNAL" and spec is None:
            raise unsupported_operation(
                "aliyun-local emulates EXTERNAL origin for asymmetric key specs only"
            )
        self._check_tags(tags, {})
        _check_policy(policy)

        now = self.clock.now()
        version = _new_version_id()
        key_id = _new_key_id()
        key = Key(
            key_id=key_id,
            arn=f"acs:kms:{self.region}:{self.account_id}:key/{key_id}",
            key_spec=key_spec,
            key_usage=key_usage,
            origin=origin,
            protection_level=protection_level,
            instance_id=instance_id,
            description=description,
            created=now,
            creator=self.account_id,
            primary_version=version,
            version_created={version: now},
            tags=dict(tags),
            policy=policy,
        )
        if spec is None:
            key.versions[version] = os.urandom(32)
        elif origin == "Aliyun_KMS":
            key.material = _generate_material(key_spec)
            key.bound_fingerprint = load_private_key(key.material, key_spec=key_spec).fingerprint
        with self.lock:
            self.keys[key_id] = key
            self.changed()
        return key

    def enable_key(self, key_id: str) -> None:
        with self.lock:
            key = self.get_key(key_id)
            if key.state in (PENDING_DELETION, PENDING_IMPORT):
                raise state_rejected(key.state)
            key.disabled = False
            self.changed()

    def disable_key(self, key_id: str) -> None:
        with self.lock:
            key = self.get_key(key_id)
            if key.state in (PENDING_DELETION, PENDING_IMPORT):
                raise state_rejected(key.state)
            key.disabled = True
            self.changed()

    def schedule_deletion(self, key_id: str, days: int) -> None:
        if not 7 <= days <= 366:
            raise invalid_parameter("PendingWindowInDays", "must be between 7 and 366")
        with self.lock:
            key = self.get_key(key_id)
            if key.delete_at is not None:
                raise state_rejected(PENDING_DELETION)
            key.delete_at = self.clock.now() + days * 86400
            self.changed()

    def cancel_deletion(self, key_id: str) -> None:
        with self.lock:
            key = self.get_key(key_id)
            if key.delete_at is None:
                raise ApiError(
                    "Rejected.StateModifiedFailed", "The key is not pending deletion.", 409
                )
            key.delete_at = None
            key.disabled = False  # KMS returns a cancelled key to Enabled
            self.changed()

    def create_key_version(self, key_id: str) -> str:
        with self.lock:
            key = self.get_key(key_id)
            if key.origin == "EXTERNAL" or key.asymmetric:
                raise unsupported_operation(
                    "Key rotation is not supported for keys with Origin EXTERNAL or "
                    "asymmetric keys."
                )
            if key.state != ENABLED:
                raise state_rejected(key.state)
            version = _new_version_id()
            key.versions[version] = os.urandom(32)
            key.version_created[version] = self.clock.now()
            key.primary_version = version
            self.changed()
            return version

    def update_rotation_policy(self, key_id: str, enable: bool, interval: str) -> None:
        with self.lock:
            key = self.get_key(key_id)
            if key.origin == "EXTERNAL" or key.asymmetric:
                raise unsupported_operation(
                    "Automatic rotation is not supported for keys with Origin EXTERNAL or "
                    "asymmetric keys."
                )
            key.automatic_rotation = enable
            key.rotation_interval = interval if enable else ""
            self.changed()

    # ---- aliases and the key policy -----------------------------------------------------

    def create_alias(self, alias: str, key_id: str) -> None:
        """CreateAlias: 1-255 characters, prefix ``alias/`` (not ``alias/acs``), then letters,
        digits, ``_ - /`` (the seed page). An existing alias is never moved."""
        name = alias[len("alias/") :]
        if (
            not alias.startswith("alias/")
            or not 1 <= len(alias) <= 255
            or not name
            or alias.startswith("alias/acs")
            or not all(c.isascii() and (c.isalnum() or c in "_-/") for c in name)
        ):
            raise invalid_parameter(
                "AliasName", "alias/ followed by letters, digits, _ - /, at most 255 characters"
            )
        with self.lock:
            key = self.get_key(key_id)
            if alias in self.aliases:
                raise resource_exists(f"The alias {alias}")
            self.aliases[alias] = key.key_id
            self.changed()

    def aliases_of(self, key_id: str | None = None) -> list[dict[str, str]]:
        with self.lock:
            wanted = self.get_key(key_id).key_id if key_id is not None else None
            return [
                {
                    "AliasName": name,
                    "AliasArn": f"acs:kms:{self.region}:{self.account_id}:{name}",
                    "KeyId": target,
                }
                for name, target in sorted(self.aliases.items())
                if wanted is None or target == wanted
            ]

    def key_policy(self, key_id: str) -> str:
        key = self.get_key(key_id)
        if key.policy:
            return key.policy
        principal = f"acs:ram::{self.account_id}:*"
        return json.dumps(
            {
                "Version": "1",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"RAM": [principal]},
                        "Action": ["kms:*"],
                        "Resource": ["*"],
                    }
                ],
            }
        )

    # ---- tags ----------------------------------------------------------------------------

    def _check_tags(self, new: dict[str, str], existing: dict[str, str]) -> None:
        """The seed page's rules: key and value 1-128 (value 0-128) characters of letters,
        digits, spaces and ``/ \\ _ - . + = : @``; keys not starting with aliyun or acs:."""
        for k, v in new.items():
            if not k or len(k) > 128 or len(v) > 128:
                raise invalid_parameter("Tags", "TagKey 1-128 and TagValue 0-128 characters")
            if not all(_tag_char(c) for c in k + v):
                raise invalid_parameter(
                    "Tags", "only letters, digits, spaces and / \\ _ - . + = : @ are allowed"
                )
            if k.lower().startswith(("aliyun", "acs:")):
                raise invalid_parameter("Tags", "TagKey must not start with aliyun or acs:")
        if len({**existing, **new}) > self.settings.max_tags_per_key:
            raise invalid_parameter(
                "Tags", f"a key carries at most {self.settings.max_tags_per_key} tags"
            )

    def tag_key(self, key_id: str, tags: dict[str, str]) -> None:
        with self.lock:
            key = self.get_key(key_id)
            if key.state == PENDING_DELETION:  # the state-impact doc: tags are refused
                raise state_rejected(key.state)
            self._check_tags(tags, key.tags)
            key.tags.update(tags)
            self.changed()

    def untag_key(self, key_id: str, tag_keys: list[str]) -> None:
        with self.lock:
            key = self.get_key(key_id)
            if key.state == PENDING_DELETION:
                raise state_rejected(key.state)
            for k in tag_keys:
                key.tags.pop(k, None)
            self.changed()

    # ---- import --------------------------------------------------------------------------

    def get_parameters_for_import(
        self, key_id: str, algorithm: str, wrapping_key_spec: str
    ) -> tuple[ImportToken, bytes]:
        key = self.get_key(key_id)
        if key.origin != "EXTERNAL":
            raise unsupported_origin("GetParametersForImport")
        spec = KEY_SPECS[key.key_spec]
        if algorithm != spec.wrapping_algorithm:
            raise invalid_parameter(
                "WrappingAlgorithm",
                f"{key.key_spec} keys are imported with {spec.wrapping_algorithm}",
            )
        if wrapping_key_spec != spec.wrapping_key_spec:
            raise invalid_parameter(
                "WrappingKeySpec", f"{algorithm} needs wrapping key spec {spec.wrapping_key_spec}"
            )
        if key.protection_level == HSM and not self.settings.hardware_accepts_asymmetric_import:
            raise unsupported_operation(
                "This hardware KMS instance does not accept imported asymmetric key material."
            )
        # Key generation runs outside the lock; RSA keys come from the helper-process pool.
        wrapping_key = (
            self.key_pool.take() if algorithm == RSA_WRAPPING else new_wrapping_key(algorithm)
        )
        token = ImportToken(
            token=secrets.token_urlsafe(48),
            key_id=key.key_id,
            algorithm=algorithm,
            wrapping_key=wrapping_key,
            expires=self.clock.now() + TOKEN_TTL_SECONDS,
        )
        with self.lock:
            self._prune_tokens(key.key_id)
            self.tokens[token.token] = token
            self.changed()
        return token, wrapping_public_key_der(wrapping_key)

    def _prune_tokens(self, key_id: str) -> None:
        now = self.clock.now()
        for t in [t for t, v in self.tokens.items() if v.expires <= now]:
            del self.tokens[t]
        mine = [v for v in self.tokens.values() if v.key_id == key_id]
        for v in sorted(mine, key=lambda v: v.expires)[
            : max(0, len(mine) - MAX_TOKENS_PER_KEY + 1)
        ]:
            del self.tokens[v.token]

    def import_key_material(
        self, key_id: str, encrypted: str, token_text: str, expire_unix: int
    ) -> None:
        key = self.get_key(key_id)
        if key.origin != "EXTERNAL":
            raise unsupported_origin("ImportKeyMaterial")
        if key.state == PENDING_DELETION:
            raise import_rejected(key.state)
        with self.lock:
            token = self.tokens.get(token_text)
        if token is None or token.key_id != key.key_id:
            raise ApiError("InvalidImportToken", "The import token is invalid.", 400)
        now = self.clock.now()
        if token.expires <= now:
            raise ApiError("ExpiredImportToken", "The import token has expired.", 400)
        if expire_unix < 0 or (expire_unix and expire_unix <= now):
            raise invalid_parameter("KeyMaterialExpireUnix", "must be 0 or a time in the future")
        # Opened and checked by aliyun-local's own code, never the agent's (see unwrap.py).
        try:
            tak = unwrap.unwrap(encrypted, token.wrapping_key, token.algorithm)
        except unwrap.UnwrapFailed:
            raise invalid_key_material("it does not unwrap with the import token's key") from None
        try:
            fingerprint = unwrap.material_fingerprint(tak, key.key_spec)
        except unwrap.UnwrapFailed as exc:
            raise invalid_key_material(str(exc)) from None
        finally:
            material = bytes(tak)
            tak[:] = bytes(len(tak))
        with self.lock:
            key = self.get_key(key_id)  # re-read: the state may have moved meanwhile
            if key.state == PENDING_DELETION:
                raise import_rejected(key.state)
            if key.bound_fingerprint is not None and key.bound_fingerprint != fingerprint:
                raise self._different_material()
            key.bound_fingerprint = fingerprint
            if self.settings.disabled_key_after_import == ENABLED:
                key.disabled = False
            key.material = material
            key.material_expire = expire_unix
            key.import_count += 1
            key._loaded = None
            self.changed()

    def _different_material(self) -> ApiError:
        code = self.settings.different_material_error
        if code == "InvalidKeyMaterial":
            return invalid_key_material("it differs from the key's first imported material")
        if code == "InvalidParameter":
            return invalid_parameter("EncryptedKeyMaterial", "the key material is invalid")
        return unsupported_operation("The key material cannot be imported into this key.")

    def instance(self, instance_id: str) -> dict[str, str]:
        """GetKmsInstance's ``KmsInstance`` (the fields byok-keeper reads)."""
        level = self.instances.get(instance_id)
        if level is None:
            raise ApiError(
                "Forbidden.ResourceNotFound", f"The instance {instance_id} is not found.", 404
            )
        if self.settings.instance_product_version == "named":
            version = "hardware" if level == HSM else "software"
        else:
            version = "3"
        return {
            "InstanceId": instance_id,
            "InstanceName": instance_id,
            "Status": "Connected",
            "ProductVersion": version,
        }

    def delete_key_material(self, key_id: str) -> None:
        with self.lock:
            key = self.get_key(key_id)
            if key.origin != "EXTERNAL":
                raise unsupported_origin("DeleteKeyMaterial")
            key.material = None
            key.material_expire = 0
            key._loaded = None
            self.changed()

    # ---- cryptography with asymmetric keys -----------------------------------------------

    def _usable(self, key_id: str, version_id: str | None = None) -> Key:
        key = self.get_key(key_id)
        if key.state != ENABLED:
            raise state_rejected(key.state)
        if version_id is not None and version_id != key.primary_version:
            raise ApiError(
                "Forbidden.KeyVersionNotFound", f"The key version {version_id} is not found.", 404
            )
        return key

    def _private(self, key: Key) -> Any:
        if key._loaded is None:
            assert key.material is not None
            if key.key_spec == "EC_SM2":
                key._loaded = sm2.Sm2PrivateKey.from_bytes(key.material)
            else:
                key._loaded = serialization.load_der_private_key(key.material, password=None)
        return key._loaded

    def public_key_pem(self, key_id: str, version_id: str) -> str:
        key = self._usable(key_id, version_id)
        if not key.asymmetric:
            raise unsupported_operation("GetPublicKey needs an asymmetric key.")
        priv = self._private(key)
        spki = (
            priv.public_key().spki_der()
            if isinstance(priv, sm2.Sm2PrivateKey)
            else priv.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        body = base64.encodebytes(spki).decode()
        return f"-----BEGIN PUBLIC KEY-----\n{body}-----END PUBLIC KEY-----\n"

    def _asym(self, key_id: str, version_id: str, usage: str, algorithm: str) -> Key:
        key = self._usable(key_id, version_id)
        spec = KEY_SPECS.get(key.key_spec)
        if spec is None or key.key_usage != usage:
            raise unsupported_operation(f"The key usage of {key_id} is not {usage}.")
        allowed = spec.sign_algorithms if usage == "SIGN/VERIFY" else spec.encrypt_algorithms
        if algorithm not in allowed:
            raise invalid_parameter("Algorithm", f"{key.key_spec} supports {', '.join(allowed)}")
        return key

    def sign(self, key_id: str, version_id: str, algorithm: str, digest: bytes) -> bytes:
        key = self._asym(key_id, version_id, "SIGN/VERIFY", algorithm)
        if len(digest) != 32:
            raise invalid_parameter("Digest", "must be a 32-byte digest")
        priv = self._private(key)
        if algorithm == "SM2DSA":
            return sm2.signature_der(*priv.sign_digest(digest))
        if algorithm == "ECDSA_SHA_256":
            return priv.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        return priv.sign(digest, _rsa_sig_padding(algorithm), utils.Prehashed(hashes.SHA256()))

    def verify(
        self, key_id: str, version_id: str, algorithm: str, digest: bytes, signature: bytes
    ) -> bool:
        key = self._asym(key_id, version_id, "SIGN/VERIFY", algorithm)
        if len(digest) != 32:
            raise invalid_parameter("Digest", "must be a 32-byte digest")
        priv = self._private(key)
        try:
            if algorithm == "SM2DSA":
                sm2.verify_digest(priv.public_key(), digest, *sm2.signature_from_der(signature))
            elif algorithm == "ECDSA_SHA_256":
                priv.public_key().verify(
                    signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256()))
                )
            else:
                priv.public_key().verify(
                    signature,
                    digest,
                    _rsa_sig_padding(algorithm),
                    utils.Prehashed(hashes.SHA256()),
                )
        except (InvalidSignature, sm2.Sm2Error, ValueError):
            return False
        return True

    def asymmetric_encrypt(
        self, key_id: str, version_id: str, algorithm: str, plaintext: bytes
    ) -> bytes:
        key = self._asym(key_id, version_id, "ENCRYPT/DECRYPT", algorithm)
        priv = self._private(key)
        try:
            if algorithm == "SM2PKE":
                # Best guess: KMS returns SM2 ciphertext DER-encoded (GM/T 0009), as OpenSSL does.
                return sm2.ciphertext_to_der(sm2.encrypt(priv.public_key(), plaintext))
            return priv.public_key().encrypt(plaintext, _oaep(algorithm))
        except (ValueError, sm2.Sm2Error):
            raise invalid_parameter("Plaintext", "too long or empty for this key") from None

    def asymmetric_decrypt(
        self, key_id: str, version_id: str, algorithm: str, ciphertext: bytes
    ) -> bytes:
        key = self._asym(key_id, version_id, "ENCRYPT/DECRYPT", algorithm)
        priv = self._private(key)
        try:
            if algorithm == "SM2PKE":
                return bytes(priv.decrypt(sm2.ciphertext_from_der(ciphertext)))
            return priv.decrypt(ciphertext, _oaep(algorithm))
        except (ValueError, sm2.Sm2Error):
            raise invalid_ciphertext() from None

    # ---- symmetric envelope encryption ---------------------------------------------------

    def encrypt(
        self, key_id: str, plaintext: bytes, context: dict[str, str] | None
    ) -> tuple[Key, str]:
        key = self._usable(key_id)
        if key.asymmetric:
            raise unsupported_operation("Encrypt needs a symmetric key; use AsymmetricEncrypt.")
        nonce = os.urandom(12)
        kid, ver = key.key_id.encode(), key.primary_version.encode()
        aad = kid + b"\0" + ver + b"\0" + _canonical_context(context)
        ct = AESGCM(key.versions[key.primary_version]).encrypt(nonce, plaintext, aad)
        blob = _CIPHERTEXT_MAGIC + bytes([len(kid)]) + kid + bytes([len(ver)]) + ver + nonce + ct
        return key, base64.b64encode(blob).decode()

    def decrypt(self, blob_b64: str, context: dict[str, str] | None) -> tuple[Key, str, bytes]:
        try:
            blob = base64.b64decode(blob_b64, validate=True)
            if not blob.startswith(_CIPHERTEXT_MAGIC):
                raise ValueError
            pos = len(_CIPHERTEXT_MAGIC)
            kid = blob[pos + 1 : pos + 1 + blob[pos]]
            pos += 1 + blob[pos]
            ver = blob[pos + 1 : pos + 1 + blob[pos]]
            pos += 1 + blob[pos]
            nonce, ct = blob[pos : pos + 12], blob[pos + 12 :]
            key_id, version = kid.decode(), ver.decode()
        except (ValueError, IndexError, UnicodeDecodeError):
            raise invalid_ciphertext() from None
        key = self._usable(key_id)
        material = key.versions.get(version)
        if material is None or len(nonce) != 12:
            raise invalid_ciphertext()
        aad = kid + b"\0" + ver + b"\0" + _canonical_context(context)
        try:
            return key, version, AESGCM(material).decrypt(nonce, ct, aad)
        except Exception:  # cryptography raises InvalidTag
            raise invalid_ciphertext() from None

    # ---- secrets -------------------------------------------------------------------------

    def _check_secret_key(self, encryption_key_id: str) -> None:
        if encryption_key_id:
            key = self._usable(encryption_key_id)
            if key.asymmetric:
                raise invalid_parameter("EncryptionKeyId", "must be a symmetric key")

    def create_secret(
        self,
        name: str,
        data: str,
        data_type: str,
        version_id: str,
        encryption_key_id: str,
        description: str,
        tags: dict[str, str],
    ) -> Secret:
        self._check_secret_key(encryption_key_id)
        with self.lock:
            if name in self.secrets:
                raise resource_exists(f"The secret {name}")
            now = self.clock.now()
            secret = Secret(
                name=name,
                arn=f"acs:kms:{self.region}:{self.account_id}:secret/{name}",
                created=now,
                updated=now,
                description=description,
                encryption_key_id=encryption_key_id,
                versions=[SecretVersion(version_id, data, data_type, now, ["ACSCurrent"])],
                tags=dict(tags),
            )
            self.secrets[name] = secret
            self.changed()
            return secret

    def get_secret(self, name: str) -> Secret:
        with self.lock:
            secret = self.secrets.get(name)
            if secret is None:
                raise resource_not_found(f"The secret {name}")
            return secret

    def get_secret_value(
        self, name: str, version_id: str | None, stage: str | None
    ) -> tuple[Secret, SecretVersion]:
        with self.lock:
            secret = self.get_secret(name)
            if secret.encryption_key_id:
                self._usable(secret.encryption_key_id)  # a disabled CMK blocks reads, as in KMS
            if version_id is None and stage is None:
                stage = "ACSCurrent"
            return secret, secret.version(version_id, stage)

    def put_secret_value(
        self, name: str, data: str, data_type: str, version_id: str
    ) -> SecretVersion:
        with self.lock:
            secret = self.get_secret(name)
            for v in secret.versions:
                if v.version_id == version_id:
                    if v.data == data and v.data_type == data_type:
                        return v  # same version, same value: an idempotent success
                    raise resource_exists(f"The secret version {version_id}")
            now = self.clock.now()
            for v in secret.versions:
                if "ACSPrevious" in v.stages:
                    v.stages.remove("ACSPrevious")
                if "ACSCurrent" in v.stages:
                    v.stages.remove("ACSCurrent")
                    v.stages.append("ACSPrevious")
            # Keep the current and previous versions plus a bounded history.
            secret.versions = [v for v in secret.versions if v.stages][-8:]
            new = SecretVersion(version_id, data, data_type, now, ["ACSCurrent"])
            secret.versions.append(new)
            secret.updated = now
            self.changed()
            return new

    def emulator_view(self, key_id: str) -> dict[str, Any]:
        with self.lock:
            key = self.get_key(key_id)
            return {
                "key_id": key.key_id,
                "state": key.state,
                "origin": key.origin,
                "key_spec": key.key_spec,
                # The material bound to the key by its first import (null before it), whether
                # or not that material is present right now (see has_material).
                "material_fingerprint": key.bound_fingerprint,
                "has_material": key.material is not None,
                "material_expire_time": iso(key.material_expire) if key.material_expire else None,
                "import_count": key.import_count,
                "tags": dict(key.tags),
                "aliases": sorted(n for n, k in self.aliases.items() if k == key.key_id),
                "description": key.description,
                "policy": key.policy or None,
            }


def _rsa_sig_padding(algorithm: str) -> padding.AsymmetricPadding:
    if algorithm == "RSA_PSS_SHA_256":
        return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    return padding.PKCS1v15()


def _oaep(algorithm: str) -> padding.OAEP:
    # RSAES_OAEP_SHA_1 is a KMS algorithm callers may ask for; SHA-1 is its definition.
    h = hashes.SHA256() if algorithm == "RSAES_OAEP_SHA_256" else hashes.SHA1()  # noqa: S303
    return padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None)


def _generate_material(key_spec: str) -> bytes:
    """Material for a KMS-generated (Origin Aliyun_KMS) asymmetric key."""
    spec = KEY_SPECS[key_spec]
    if spec.curve == "SM2":
        return bytes(sm2.Sm2PrivateKey.generate().scalar_bytes())
    if spec.rsa_bits:
        key = rsa.generate_private_key(public_exponent=65537, key_size=spec.rsa_bits)
    else:
        curve = ec.SECP256R1() if spec.curve == "P-256" else ec.SECP256K1()
        key = ec.generate_private_key(curve)
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )

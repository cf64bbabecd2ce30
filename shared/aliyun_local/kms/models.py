"""KMS state and rules, per region: keys, import tokens, aliases (secrets: ``secrets.py``).

The rules follow Alibaba Cloud's KMS API reference, each with its source in docs/FIDELITY.md.
Where Alibaba Cloud's documentation is silent, the choice made here is marked "best guess"
and, where it matters to byok-keeper, is a setting.

A key's state is derived, never stored, so it cannot drift from the facts it comes from:
``PendingDeletion`` if deletion is scheduled, else ``PendingImport`` if it has no material
(never imported, deleted or expired), else ``Disabled`` if disabled, else ``Enabled``.
Expiry and the end of a deletion window are judged against the emulator clock on every access.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Callable
from typing import Any

from byok_keeper.material import load_private_key
from byok_keeper.specs import HSM, KEY_SPECS, SOFTWARE
from byok_keeper.wrapping import new_wrapping_key, wrapping_public_key_der

from ..clock import Clock, iso
from . import crypto, unwrap
from .errors import (
    ApiError,
    import_rejected,
    invalid_key_material,
    invalid_parameter,
    key_not_found,
    resource_exists,
    state_rejected,
    unsupported_operation,
    unsupported_origin,
)
from .keypool import RsaKeyPool
from .keys import (
    DISABLED,
    ENABLED,
    PENDING_DELETION,
    PENDING_IMPORT,
    ImportToken,
    Key,
    check_policy,
    new_key_id,
    new_version_id,
    tag_char,
)
from .listing import Listing, next_change
from .secrets import SecretStore
from .settings import Settings

__all__ = ["DISABLED", "ENABLED", "PENDING_DELETION", "PENDING_IMPORT", "KmsBackend"]

SYMMETRIC_SPECS = ("Aliyun_AES_256",)
ORIGINS = ("Aliyun_KMS", "EXTERNAL")
DEFAULT_INSTANCES = {"kst-local-software": SOFTWARE, "kst-local-hardware": HSM}
TOKEN_TTL_SECONDS = 24 * 3600
MAX_TOKENS_PER_KEY = 50
RSA_WRAPPING = "RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD"
MAX_LIST_FILTERS = 10
LIST_FILTER_KEYS = (
    "KeyState",
    "KeySpec",
    "KeyUsage",
    "ProtectionLevel",
    "CreatorType",
    "DKMSInstanceId",
    "keyId",
    "AliasName",
    "Creator",
    "TagKey",
    "TagValue",
)


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
        self.aliases: dict[str, str] = {}  # alias name -> key id
        self.lock = threading.RLock()
        self._on_change = on_change or (lambda: None)
        self.secrets = SecretStore(
            region,
            account_id,
            now=lambda: self.clock.now(),
            check_key=self._usable,
            lock=self.lock,
            on_change=self.changed,
        )
        self.key_pool = RsaKeyPool()
        self.listing = Listing()  # ListKeys' answer, kept between pages

    # ---- persistence ---------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "keys": [k.to_state() for k in self.keys.values()],
                "tokens": [t.to_state() for t in self.tokens.values()],
                "secrets": self.secrets.to_state(),
                "aliases": dict(self.aliases),
                "settings": self.settings.to_json(),
            }

    def load_state(self, state: dict[str, Any]) -> None:
        with self.lock:
            self.listing.changed()
            self.keys = {k["key_id"]: Key.from_state(k) for k in state.get("keys", [])}
            self.tokens = {t["token"]: ImportToken.from_state(t) for t in state.get("tokens", [])}
            self.secrets.load_state(state.get("secrets", []))
            self.aliases = dict(state.get("aliases", {}))
            self.settings = Settings()
            self.settings.update(state.get("settings", {}))
            self.settings.update(self._startup_settings)  # the command line wins

    def reset(self) -> None:
        with self.lock:
            self.listing.changed()
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
        self.listing.changed()
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

    def list_keys(self, filters: Any) -> list[Key]:
        """ListKeys' ``Filters`` (a JSON list of ``{Key, Values}``), oldest key first. The same
        Key twice or several Values: OR. Different Keys: AND."""
        if not isinstance(filters, list) or len(filters) > MAX_LIST_FILTERS:
            raise invalid_parameter("Filters", f"a JSON list of at most {MAX_LIST_FILTERS} filters")
        merged: dict[str, list[str]] = {}
        for f in filters:
            if (
                not isinstance(f, dict)
                or f.get("Key") not in LIST_FILTER_KEYS
                or not isinstance(f.get("Values"), list)
            ):
                raise invalid_parameter(
                    "Filters",
                    f"each filter is {{Key, Values}} with Key in {', '.join(LIST_FILTER_KEYS)}",
                )
            merged.setdefault(f["Key"], []).extend(str(v) for v in f["Values"])

        def build() -> tuple[list[Key], float]:
            keys = sorted(self.all_keys(), key=lambda k: (k.created, k.key_id))
            return [k for k in keys if _matches(k, list(merged.items()))], next_change(keys)

        with self.lock:
            return self.listing.get(json.dumps(merged), self.clock.now(), build)

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
        check_policy(policy)

        now = self.clock.now()
        version = new_version_id()
        key_id = new_key_id()
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
            key.material = crypto.generate_material(key_spec)
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
            version = new_version_id()
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
            if not all(tag_char(c) for c in k + v):
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
        answer = self.settings.instance_product_version
        if answer == "numeric":
            version = "5" if level == HSM else "3"
        elif answer == "named":
            version = "hardware" if level == HSM else "software"
        else:
            version = ""  # opaque: nothing the agent can read the instance's type from
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

    # ---- cryptography --------------------------------------------------------------------

    def _usable(self, key_id: str, version_id: str | None = None) -> Key:
        key = self.get_key(key_id)
        if key.state != ENABLED:
            raise state_rejected(key.state)
        if version_id is not None and version_id != key.primary_version:
            raise ApiError(
                "Forbidden.KeyVersionNotFound", f"The key version {version_id} is not found.", 404
            )
        return key

    def public_key_pem(self, key_id: str, version_id: str) -> str:
        key = self._usable(key_id, version_id)
        if not key.asymmetric:
            raise unsupported_operation("GetPublicKey needs an asymmetric key.")
        return crypto.public_key_pem(key)

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
        return crypto.sign(key, algorithm, digest)

    def verify(
        self, key_id: str, version_id: str, algorithm: str, digest: bytes, signature: bytes
    ) -> bool:
        key = self._asym(key_id, version_id, "SIGN/VERIFY", algorithm)
        return crypto.verify(key, algorithm, digest, signature)

    def asymmetric_encrypt(
        self, key_id: str, version_id: str, algorithm: str, plaintext: bytes
    ) -> bytes:
        key = self._asym(key_id, version_id, "ENCRYPT/DECRYPT", algorithm)
        return crypto.asymmetric_encrypt(key, algorithm, plaintext)

    def asymmetric_decrypt(
        self, key_id: str, version_id: str, algorithm: str, ciphertext: bytes
    ) -> bytes:
        key = self._asym(key_id, version_id, "ENCRYPT/DECRYPT", algorithm)
        return crypto.asymmetric_decrypt(key, algorithm, ciphertext)

    def encrypt(
        self, key_id: str, plaintext: bytes, context: dict[str, str] | None
    ) -> tuple[Key, str]:
        key = self._usable(key_id)
        if key.asymmetric:
            raise unsupported_operation("Encrypt needs a symmetric key; use AsymmetricEncrypt.")
        return key, crypto.envelope_encrypt(key, plaintext, context)

    def decrypt(self, blob_b64: str, context: dict[str, str] | None) -> tuple[Key, str, bytes]:
        parsed = crypto.envelope_parse(blob_b64)
        key = self._usable(parsed[0])
        return key, parsed[1], crypto.envelope_decrypt(key, parsed, context)

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


def _matches(key: Key, filters: list[tuple[str, list[str]]]) -> bool:
    for name, values in filters:
        if name == "TagKey":
            ok = any(k in values for k in key.tags)
        elif name == "TagValue":
            ok = any(v in values for v in key.tags.values())
        else:
            actual = {
                "KeyState": key.state,
                "KeySpec": key.key_spec,
                "KeyUsage": key.key_usage,
                "ProtectionLevel": key.protection_level,
                "CreatorType": "User",
                "DKMSInstanceId": key.instance_id,
                "keyId": key.key_id,
                "AliasName": "",
                "Creator": key.creator,
            }[name]
            ok = actual in values
        if not ok:
            return False
    return True

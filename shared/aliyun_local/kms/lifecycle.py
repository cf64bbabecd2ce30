"""A key's life: CreateKey (spec, usage, origin, instance, protection level), enabling and
disabling, scheduled deletion and its cancellation, versions and rotation, and the KMS
instances a key can live in."""

from __future__ import annotations

import os
import threading

from ..clock import Clock
from . import crypto, unwrap
from .errors import ApiError, invalid_parameter, state_rejected, unsupported_operation
from .keys import (
    ENABLED,
    PENDING_DELETION,
    PENDING_IMPORT,
    Key,
    check_policy,
    new_key_id,
    new_version_id,
)
from .settings import FidelitySettings
from .specs import HSM, KEY_SPECS, SOFTWARE

SYMMETRIC_SPECS = ("Aliyun_AES_256",)
ORIGINS = ("Aliyun_KMS", "EXTERNAL")
DEFAULT_INSTANCES = {"kst-local-software": SOFTWARE, "kst-local-hardware": HSM}


class KeyLifecycle:
    """Creating keys and moving them through their states, for ``KmsBackend`` (``models.py``)."""

    lock: threading.RLock
    region: str
    account_id: str
    clock: Clock
    settings: FidelitySettings
    keys: dict[str, Key]
    instances: dict[str, str]

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
            key.bound_fingerprint = unwrap.material_fingerprint(key.material, key_spec)
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

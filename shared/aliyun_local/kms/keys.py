"""The KMS records: keys (with their derived state) and import tokens, and the rules on the
fields callers give at creation (ids, key policies, tag characters)."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization

from ..clock import iso
from . import sm2
from .errors import invalid_parameter
from .settings import FidelitySettings
from .specs import KEY_SPECS
from .wrapkeys import WrappingPrivateKey

ENABLED, DISABLED, PENDING_DELETION, PENDING_IMPORT = (
    "Enabled",
    "Disabled",
    "PendingDeletion",
    "PendingImport",
)


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

    def metadata(self, settings: FidelitySettings) -> dict[str, str]:
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


def new_key_id() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "key-" + "".join(secrets.choice(alphabet) for _ in range(20))


def new_version_id() -> str:
    b = secrets.token_hex(16)
    return f"{b[:8]}-{b[8:12]}-{b[12:16]}-{b[16:20]}-{b[20:]}"


MAX_POLICY_BYTES = 32_768  # CreateKey's Policy (the SDK model)


def check_policy(policy: str) -> None:
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


def tag_char(c: str) -> bool:
    return c.isalnum() or c in " /\\_-.+=:@"

"""Keys: CreateKey, DescribeKey, ListKeys, enabling, disabling, deletion, versions, rotation,
and GetKmsInstance."""

from __future__ import annotations

from typing import Any

from ...clock import iso
from ..errors import invalid_parameter
from ..models import KmsBackend
from . import Params, action


@action
def get_kms_instance(b: KmsBackend, p: Params) -> dict[str, Any]:
    return {"KmsInstance": b.instance(p.req("KmsInstanceId"))}


@action
def create_key(b: KmsBackend, p: Params) -> dict[str, Any]:
    key = b.create_key(
        key_spec=p.get("KeySpec") or "Aliyun_AES_256",
        key_usage=p.get("KeyUsage") or "ENCRYPT/DECRYPT",
        origin=p.get("Origin") or "Aliyun_KMS",
        instance_id=p.get("DKMSInstanceId") or "",
        protection_level=p.get("ProtectionLevel") or "",
        description=p.get("Description") or "",
        tags=p.tags(),
        policy=p.get("Policy") or "",
    )
    return {"KeyMetadata": key.metadata(b.settings)}


@action
def describe_key(b: KmsBackend, p: Params) -> dict[str, Any]:
    return {"KeyMetadata": b.get_key(p.req("KeyId")).metadata(b.settings)}


@action
def list_keys(b: KmsBackend, p: Params) -> dict[str, Any]:
    page = p.int("PageNumber", 1)
    size = p.int("PageSize", 10)
    if page < 1:
        raise invalid_parameter("PageNumber", "must be at least 1")
    if not 1 <= size <= 100:
        raise invalid_parameter("PageSize", "must be between 1 and 100")
    keys = b.list_keys(p.json("Filters", []))
    chunk = keys[(page - 1) * size : page * size]
    return {
        "Keys": {"Key": [{"KeyId": k.key_id, "KeyArn": k.arn} for k in chunk]},
        "PageNumber": page,
        "PageSize": size,
        "TotalCount": len(keys),
    }


@action
def enable_key(b: KmsBackend, p: Params) -> dict[str, Any]:
    b.enable_key(p.req("KeyId"))
    return {}


@action
def disable_key(b: KmsBackend, p: Params) -> dict[str, Any]:
    b.disable_key(p.req("KeyId"))
    return {}


@action
def schedule_key_deletion(b: KmsBackend, p: Params) -> dict[str, Any]:
    b.schedule_deletion(p.req("KeyId"), p.int("PendingWindowInDays"))
    return {}


@action
def cancel_key_deletion(b: KmsBackend, p: Params) -> dict[str, Any]:
    b.cancel_deletion(p.req("KeyId"))
    return {}


@action
def create_key_version(b: KmsBackend, p: Params) -> dict[str, Any]:
    key_id = p.req("KeyId")
    version = b.create_key_version(key_id)
    created = b.get_key(key_id).version_created[version]
    return {"KeyVersion": {"KeyId": key_id, "KeyVersionId": version, "CreationDate": iso(created)}}


@action
def update_rotation_policy(b: KmsBackend, p: Params) -> dict[str, Any]:
    b.update_rotation_policy(
        p.req("KeyId"), p.bool("EnableAutomaticRotation"), p.get("RotationInterval") or ""
    )
    return {}


@action
def list_key_versions(b: KmsBackend, p: Params) -> dict[str, Any]:
    key = b.get_key(p.req("KeyId"))
    versions = [
        {"KeyId": key.key_id, "KeyVersionId": v, "CreationDate": iso(c)}
        for v, c in sorted(key.version_created.items(), key=lambda kv: kv[1])
    ]
    return {
        "KeyVersions": {"KeyVersion": versions},
        "PageNumber": 1,
        "PageSize": len(versions),
        "TotalCount": len(versions),
    }

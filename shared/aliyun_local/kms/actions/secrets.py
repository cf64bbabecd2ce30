"""Secrets Manager's generic secrets, as KMS serves them: create, read, put a new version,
describe, list."""

from __future__ import annotations

from typing import Any

from ...clock import iso
from ..errors import invalid_parameter
from ..models import KmsBackend
from . import Params, action


def _data_type(p: Params) -> str:
    data_type = p.get("SecretDataType") or "text"
    if data_type not in ("text", "binary"):
        raise invalid_parameter("SecretDataType", "text or binary")
    return data_type


@action
def create_secret(b: KmsBackend, p: Params) -> dict[str, Any]:
    secret = b.secrets.create(
        name=p.req("SecretName"),
        data=p.req("SecretData"),
        data_type=_data_type(p),
        version_id=p.req("VersionId"),
        encryption_key_id=p.get("EncryptionKeyId") or "",
        description=p.get("Description") or "",
        tags=p.tags(),
    )
    return {
        "Arn": secret.arn,
        "SecretName": secret.name,
        "VersionId": secret.versions[-1].version_id,
        "SecretType": "Generic",
    }


@action
def get_secret_value(b: KmsBackend, p: Params) -> dict[str, Any]:
    secret, version = b.secrets.get_value(
        p.req("SecretName"), p.get("VersionId") or None, p.get("VersionStage") or None
    )
    return {
        "SecretName": secret.name,
        "SecretType": "Generic",
        "SecretData": version.data,
        "SecretDataType": version.data_type,
        "VersionId": version.version_id,
        "VersionStages": {"VersionStage": list(version.stages)},
        "CreateTime": iso(version.created),
    }


@action
def put_secret_value(b: KmsBackend, p: Params) -> dict[str, Any]:
    name = p.req("SecretName")
    version = b.secrets.put_value(name, p.req("SecretData"), _data_type(p), p.req("VersionId"))
    return {
        "SecretName": name,
        "VersionId": version.version_id,
        "VersionStages": {"VersionStage": list(version.stages)},
    }


@action
def describe_secret(b: KmsBackend, p: Params) -> dict[str, Any]:
    s = b.secrets.get(p.req("SecretName"))
    return {
        "Arn": s.arn,
        "SecretName": s.name,
        "SecretType": "Generic",
        "CreateTime": iso(s.created),
        "UpdateTime": iso(s.updated),
        "Description": s.description,
        "EncryptionKeyId": s.encryption_key_id,
        "Tags": {"Tag": [{"TagKey": k, "TagValue": v} for k, v in s.tags.items()]},
    }


@action
def list_secrets(b: KmsBackend, p: Params) -> dict[str, Any]:
    page = p.int("PageNumber", 1)
    size = p.int("PageSize", 10)
    if page < 1 or not 1 <= size <= 100:
        raise invalid_parameter("PageSize", "PageNumber >= 1 and PageSize 1-100")
    secrets = b.secrets.list(p.json("Filters", []))
    chunk = secrets[(page - 1) * size : page * size]
    return {
        "SecretList": {
            "Secret": [
                {
                    "SecretName": s.name,
                    "SecretType": "Generic",
                    "CreateTime": iso(s.created),
                    "UpdateTime": iso(s.updated),
                }
                for s in chunk
            ]
        },
        "PageNumber": page,
        "PageSize": size,
        "TotalCount": len(secrets),
    }

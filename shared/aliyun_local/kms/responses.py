"""KMS actions: parse the request, dispatch the action, call the model, render the response.
Thin on purpose; ``server.py`` only checks the signature, runs the fault hooks and answers.

``parse`` reads a request (query and form body merged), ``check`` refuses a missing or unknown
action and a wrong version, ``dispatch`` runs the action against the backend.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..clock import iso
from . import API_VERSION
from .errors import ApiError, invalid_parameter, missing_parameter
from .models import KmsBackend

# Quota classes (KMS's performance page: docs/FIDELITY.md#quota-classes): each class has its own
# per-second quota; Encrypt/Decrypt and secrets calls have larger ones, not emulated.
QUOTA_CLASSES: dict[str, frozenset[str]] = {
    "read": frozenset(
        {
            "DescribeKey",
            "ListKeys",
            "GetParametersForImport",
            "ListKeyVersions",
            "GetPublicKey",
            "GetKmsInstance",
            "ListAliases",
            "ListAliasesByKeyId",
            "GetKeyPolicy",
            "DescribeSecret",
            "ListSecrets",
        }
    ),
    "tags": frozenset({"ListResourceTags"}),
    "write": frozenset(
        {
            "TagResource",
            "UntagResource",
            "CreateAlias",
            "ImportKeyMaterial",
            "DeleteKeyMaterial",
            "EnableKey",
            "DisableKey",
            "ScheduleKeyDeletion",
            "CancelKeyDeletion",
            "CreateKeyVersion",
            "UpdateRotationPolicy",
        }
    ),
    "create": frozenset({"CreateKey"}),
    "crypto": frozenset(
        {"AsymmetricSign", "AsymmetricVerify", "AsymmetricEncrypt", "AsymmetricDecrypt"}
    ),
}
_CLASS_OF = {action: kind for kind, actions in QUOTA_CLASSES.items() for action in actions}


def quota_class(action: str) -> str | None:
    return _CLASS_OF.get(action)


class Params:
    """Request parameters (query and form body merged) with typed accessors."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._v = values

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._v.get(name, default)

    def req(self, name: str) -> str:
        value = self._v.get(name)
        if value is None or value == "":
            raise missing_parameter(name)
        return value

    def int(self, name: str, default: int | None = None) -> int:
        raw = self._v.get(name)
        if raw is None or raw == "":
            if default is None:
                raise missing_parameter(name)
            return default
        try:
            return int(raw)
        except ValueError:
            raise invalid_parameter(name, "an integer is expected") from None

    def bool(self, name: str, default: bool = False) -> bool:
        raw = self._v.get(name)
        if raw is None or raw == "":
            return default
        if raw.lower() not in ("true", "false"):
            raise invalid_parameter(name, "true or false is expected")
        return raw.lower() == "true"

    def b64(self, name: str) -> bytes:
        try:
            return base64.b64decode(self.req(name), validate=True)
        except (binascii.Error, ValueError):
            raise invalid_parameter(name, "Base64 is expected") from None

    def json(self, name: str, default: Any = None) -> Any:
        raw = self._v.get(name)
        if raw is None or raw == "":
            return default
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise invalid_parameter(name, "JSON is expected") from None

    def tags(self, name: str = "Tags") -> dict[str, str]:
        value = self.json(name, [])
        if not isinstance(value, list) or not all(
            isinstance(t, dict) and isinstance(t.get("TagKey"), str) for t in value
        ):
            raise invalid_parameter(name, 'a JSON list of {"TagKey": ..., "TagValue": ...}')
        return {t["TagKey"]: str(t.get("TagValue", "")) for t in value}

    def context(self) -> dict[str, str] | None:
        value = self.json("EncryptionContext")
        if value is None:
            return None
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise invalid_parameter("EncryptionContext", "a JSON object of strings is expected")
        return value


Handler = Callable[[KmsBackend, Params], dict[str, Any]]
ACTIONS: dict[str, Handler] = {}


def action(fn: Handler) -> Handler:
    name = "".join(part.capitalize() for part in fn.__name__.split("_"))
    ACTIONS[name] = fn
    return fn


@dataclass(frozen=True)
class Request:
    """One KMS request as the wire carries it (RPC style: query string and/or form body)."""

    method: str
    path: str  # percent-encoded, as sent
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    params: dict[str, str]  # query and form body merged

    @property
    def action(self) -> str:
        return self.headers.get("x-acs-action") or self.params.get("Action") or ""

    @property
    def version(self) -> str | None:
        return self.headers.get("x-acs-version") or self.params.get("Version")

    @property
    def key_id(self) -> str | None:
        return self.params.get("KeyId")


def parse(method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Request:
    parts = urlsplit(raw_path)
    query = parse_qsl(parts.query, keep_blank_values=True)
    params = dict(query)
    if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return Request(method, parts.path, query, headers, body, params)


def require_action(request: Request) -> str:
    """The action named, before anything else is checked (even the signature)."""
    if not request.action:
        raise ApiError("MissingParameter", "The parameter Action is required.", 400)
    return request.action


def check(request: Request) -> Handler:
    """The handler of the request's action; unknown actions and other versions are refused."""
    handler = ACTIONS.get(request.action)
    if handler is None:
        raise ApiError(
            "InvalidAction.NotFound",
            f"Specified api {request.action} is not found (aliyun-local does not emulate it).",
            404,
        )
    if request.version != API_VERSION:
        raise ApiError("InvalidVersion", f"Specified version {request.version} is invalid.", 400)
    return handler


def dispatch(backend: KmsBackend, request: Request) -> dict[str, Any]:
    """Run the request's action against ``backend``: the response body without RequestId."""
    return check(request)(backend, Params(request.params))


def error_body(request_id: str, region: str, err: ApiError) -> dict[str, Any]:
    """KMS's error document (``Recommend`` is a diagnosis link in KMS; empty here)."""
    return {
        "RequestId": request_id,
        "HostId": f"kms.{region}.aliyuncs.com",
        "Code": err.code,
        "Message": err.message,
        "Recommend": "",
    }


def internal_error_body(request_id: str, region: str) -> dict[str, Any]:
    """The answer to a bug in the emulator, as KMS answers its own internal failures."""
    return {
        "RequestId": request_id,
        "HostId": f"kms.{region}.aliyuncs.com",
        "Code": "InternalFailure",
        "Message": "The request processing has failed due to some unknown error.",
    }


# ---- keys ------------------------------------------------------------------------------------


@action
def create_alias(b: KmsBackend, p: Params) -> dict[str, Any]:
    b.create_alias(p.req("AliasName"), p.req("KeyId"))
    return {}


def _alias_page(aliases: list[dict[str, str]], p: Params) -> dict[str, Any]:
    number, size = p.int("PageNumber", 1), p.int("PageSize", 10)
    if number < 1 or not 1 <= size <= 100:
        raise invalid_parameter("PageSize", "PageNumber >= 1 and PageSize 1-100")
    page = aliases[(number - 1) * size : number * size]
    return {
        "Aliases": {"Alias": page},
        "PageNumber": number,
        "PageSize": size,
        "TotalCount": len(aliases),
    }


@action
def list_aliases(b: KmsBackend, p: Params) -> dict[str, Any]:
    return _alias_page(b.aliases_of(), p)


@action
def list_aliases_by_key_id(b: KmsBackend, p: Params) -> dict[str, Any]:
    return _alias_page(b.aliases_of(p.req("KeyId")), p)


@action
def get_key_policy(b: KmsBackend, p: Params) -> dict[str, Any]:
    return {"Policy": b.key_policy(p.req("KeyId"))}


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


# ---- tags ------------------------------------------------------------------------------------


@action
def list_resource_tags(b: KmsBackend, p: Params) -> dict[str, Any]:
    key = b.get_key(p.req("KeyId"))
    tags = [{"KeyId": key.key_id, "TagKey": k, "TagValue": v} for k, v in key.tags.items()]
    return {"Tags": {"Tag": tags}}


@action
def tag_resource(b: KmsBackend, p: Params) -> dict[str, Any]:
    tags = p.tags()
    if not tags:
        raise missing_parameter("Tags")
    b.tag_key(p.req("KeyId"), tags)
    return {}


@action
def untag_resource(b: KmsBackend, p: Params) -> dict[str, Any]:
    keys = p.json("TagKeys")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise invalid_parameter("TagKeys", "a non-empty JSON list of tag keys")
    b.untag_key(p.req("KeyId"), keys)
    return {}


# ---- import ----------------------------------------------------------------------------------


@action
def get_parameters_for_import(b: KmsBackend, p: Params) -> dict[str, Any]:
    token, public_der = b.get_parameters_for_import(
        p.req("KeyId"), p.req("WrappingAlgorithm"), p.req("WrappingKeySpec")
    )
    return {
        "KeyId": token.key_id,
        "ImportToken": token.token,
        "PublicKey": base64.b64encode(public_der).decode(),
        "TokenExpireTime": iso(token.expires),
    }


@action
def import_key_material(b: KmsBackend, p: Params) -> dict[str, Any]:
    b.import_key_material(
        p.req("KeyId"),
        p.req("EncryptedKeyMaterial"),
        p.req("ImportToken"),
        p.int("KeyMaterialExpireUnix", 0),
    )
    return {}


@action
def delete_key_material(b: KmsBackend, p: Params) -> dict[str, Any]:
    b.delete_key_material(p.req("KeyId"))
    return {}


# ---- asymmetric cryptography -----------------------------------------------------------------


@action
def get_public_key(b: KmsBackend, p: Params) -> dict[str, Any]:
    key_id, version = p.req("KeyId"), p.req("KeyVersionId")
    return {
        "KeyId": key_id,
        "KeyVersionId": version,
        "PublicKey": b.public_key_pem(key_id, version),
    }


@action
def asymmetric_sign(b: KmsBackend, p: Params) -> dict[str, Any]:
    key_id, version = p.req("KeyId"), p.req("KeyVersionId")
    sig = b.sign(key_id, version, p.req("Algorithm"), p.b64("Digest"))
    return {"KeyId": key_id, "KeyVersionId": version, "Value": base64.b64encode(sig).decode()}


@action
def asymmetric_verify(b: KmsBackend, p: Params) -> dict[str, Any]:
    key_id, version = p.req("KeyId"), p.req("KeyVersionId")
    ok = b.verify(key_id, version, p.req("Algorithm"), p.b64("Digest"), p.b64("Value"))
    return {"KeyId": key_id, "KeyVersionId": version, "Value": ok}


@action
def asymmetric_encrypt(b: KmsBackend, p: Params) -> dict[str, Any]:
    key_id, version = p.req("KeyId"), p.req("KeyVersionId")
    ct = b.asymmetric_encrypt(key_id, version, p.req("Algorithm"), p.b64("Plaintext"))
    return {
        "KeyId": key_id,
        "KeyVersionId": version,
        "CiphertextBlob": base64.b64encode(ct).decode(),
    }


@action
def asymmetric_decrypt(b: KmsBackend, p: Params) -> dict[str, Any]:
    key_id, version = p.req("KeyId"), p.req("KeyVersionId")
    pt = b.asymmetric_decrypt(key_id, version, p.req("Algorithm"), p.b64("CiphertextBlob"))
    return {"KeyId": key_id, "KeyVersionId": version, "Plaintext": base64.b64encode(pt).decode()}


# ---- symmetric envelope encryption -----------------------------------------------------------


@action
def encrypt(b: KmsBackend, p: Params) -> dict[str, Any]:
    # KMS treats Plaintext as an opaque string and Decrypt gives the same string back.
    key, blob = b.encrypt(p.req("KeyId"), p.req("Plaintext").encode(), p.context())
    return {"KeyId": key.key_id, "KeyVersionId": key.primary_version, "CiphertextBlob": blob}


@action
def decrypt(b: KmsBackend, p: Params) -> dict[str, Any]:
    key, version, plaintext = b.decrypt(p.req("CiphertextBlob"), p.context())
    try:
        text = plaintext.decode()
    except UnicodeDecodeError:
        raise ApiError("InvalidCiphertext", "The plaintext is not text.", 400) from None
    return {"KeyId": key.key_id, "KeyVersionId": version, "Plaintext": text}


@action
def generate_data_key(b: KmsBackend, p: Params) -> dict[str, Any]:
    spec = p.get("KeySpec")
    if spec not in (None, "", "AES_256", "AES_128"):
        raise invalid_parameter("KeySpec", "AES_256 or AES_128")
    size = p.int("NumberOfBytes", 16 if spec == "AES_128" else 32)
    if not 1 <= size <= 1024:
        raise invalid_parameter("NumberOfBytes", "must be between 1 and 1024")
    plaintext = base64.b64encode(os.urandom(size)).decode()
    key, blob = b.encrypt(p.req("KeyId"), plaintext.encode(), p.context())
    return {
        "KeyId": key.key_id,
        "KeyVersionId": key.primary_version,
        "Plaintext": plaintext,
        "CiphertextBlob": blob,
    }


# ---- secrets ---------------------------------------------------------------------------------


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

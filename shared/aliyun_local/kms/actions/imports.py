"""Bring your own key: GetParametersForImport, ImportKeyMaterial, DeleteKeyMaterial."""

from __future__ import annotations

import base64
from typing import Any

from ...clock import iso
from ..models import KmsBackend
from . import Params, action


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

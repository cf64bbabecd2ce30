"""Using a key: GetPublicKey, signing and asymmetric encryption, symmetric envelope encryption
(Encrypt, Decrypt, GenerateDataKey)."""

from __future__ import annotations

import base64
import os
from typing import Any

from ..errors import ApiError, invalid_parameter
from ..models import KmsBackend
from . import Params, action


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

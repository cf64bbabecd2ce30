"""The gateway's data-plane calls: canary crypto, data keys (the KMS sealer) and Secrets Manager
(the kms-secrets vault store). A mixin of ``KmsGateway`` (``gateway.py``): every call goes
through its ``_call``; split out only to keep each file short."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from alibabacloud_kms20160120 import models as km

from .errors import KmsApiError
from .types import DataKey, SecretValue

_TEXT = "text"  # SecretDataType of an envelope


class DataPlaneCalls:
    """Sign, encrypt, decrypt; GenerateDataKey, Decrypt; the secrets calls."""

    _client: Any
    _call: Callable[..., Any]

    def sign(self, key_id: str, version_id: str, algorithm: str, digest: bytes) -> bytes:
        r = self._call(
            "AsymmetricSign",
            self._client.asymmetric_sign_with_options,
            km.AsymmetricSignRequest(
                key_id=key_id,
                key_version_id=version_id,
                algorithm=algorithm,
                digest=base64.b64encode(digest).decode(),
            ),
        )
        return base64.b64decode(r.body.value)

    def asymmetric_encrypt(
        self, key_id: str, version_id: str, algorithm: str, plaintext: bytes
    ) -> bytes:
        r = self._call(
            "AsymmetricEncrypt",
            self._client.asymmetric_encrypt_with_options,
            km.AsymmetricEncryptRequest(
                key_id=key_id,
                key_version_id=version_id,
                algorithm=algorithm,
                plaintext=base64.b64encode(plaintext).decode(),
            ),
        )
        return base64.b64decode(r.body.ciphertext_blob)

    def asymmetric_decrypt(
        self, key_id: str, version_id: str, algorithm: str, ciphertext: bytes
    ) -> bytes:
        r = self._call(
            "AsymmetricDecrypt",
            self._client.asymmetric_decrypt_with_options,
            km.AsymmetricDecryptRequest(
                key_id=key_id,
                key_version_id=version_id,
                algorithm=algorithm,
                ciphertext_blob=base64.b64encode(ciphertext).decode(),
            ),
        )
        return base64.b64decode(r.body.plaintext)

    # -- envelope encryption (the KMS sealer) --

    def generate_data_key(self, key_id: str, context: dict[str, str]) -> DataKey:
        r = self._call(
            "GenerateDataKey",
            self._client.generate_data_key_with_options,
            km.GenerateDataKeyRequest(
                key_id=key_id, key_spec="AES_256", encryption_context=dict(context)
            ),
        )
        return DataKey(
            key_id=r.body.key_id,
            ciphertext_blob=r.body.ciphertext_blob,
            request_id=r.body.request_id or "",
            plaintext=bytearray(base64.b64decode(r.body.plaintext)),
        )

    def decrypt_data_key(self, ciphertext_blob: str, context: dict[str, str]) -> bytearray:
        r = self._call(
            "Decrypt",
            self._client.decrypt_with_options,
            km.DecryptRequest(ciphertext_blob=ciphertext_blob, encryption_context=dict(context)),
        )
        return bytearray(base64.b64decode(r.body.plaintext))

    # -- Secrets Manager (the kms-secrets vault store) --

    def get_secret_value(self, name: str) -> SecretValue | None:
        """The ACSCurrent value, or None when the secret does not exist."""
        try:
            r = self._call(
                "GetSecretValue",
                self._client.get_secret_value_with_options,
                km.GetSecretValueRequest(secret_name=name),
            )
        except KmsApiError as exc:
            if exc.code == "Forbidden.ResourceNotFound":
                return None
            raise
        return SecretValue(
            name=r.body.secret_name, version_id=r.body.version_id, data=r.body.secret_data
        )

    def create_secret(self, name: str, data: str, version_id: str) -> None:
        self._call(
            "CreateSecret",
            self._client.create_secret_with_options,
            km.CreateSecretRequest(
                secret_name=name, secret_data=data, version_id=version_id, secret_data_type=_TEXT
            ),
        )

    def put_secret_value(self, name: str, data: str, version_id: str) -> None:
        self._call(
            "PutSecretValue",
            self._client.put_secret_value_with_options,
            km.PutSecretValueRequest(
                secret_name=name, secret_data=data, version_id=version_id, secret_data_type=_TEXT
            ),
        )

    def list_secret_names(self, contains: str, max_names: int = 100_000) -> list[str]:
        out: list[str] = []
        page = 1
        while len(out) < max_names:
            request = km.ListSecretsRequest(
                page_number=page,
                page_size=100,
                filters=json.dumps([{"Key": "SecretName", "Values": [contains]}]),
            )
            r = self._call("ListSecrets", self._client.list_secrets_with_options, request)
            items = (
                r.body.secret_list.secret
                if r.body.secret_list and r.body.secret_list.secret
                else []
            )
            out.extend(s.secret_name for s in items)
            if not items or len(out) >= (r.body.total_count or 0):
                break
            page += 1
        return out[:max_names]

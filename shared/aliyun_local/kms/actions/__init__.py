"""KMS's actions, one module per concern: ``keys`` (creation, states, deletion, versions,
instances), ``labels`` (aliases, tags, the key policy), ``imports`` (bring your own key),
``usage`` (signing, asymmetric and envelope encryption) and ``secrets``. Each action is a
function ``(backend, params) -> response body`` registered by ``@action`` under its API name
(``create_key`` -> ``CreateKey``); ``kms/responses.py`` looks it up and runs it."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import invalid_parameter, missing_parameter
from ..models import KmsBackend


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

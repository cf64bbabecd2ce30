"""The sealed envelope: one key's original material, sealed, with the facts that identify it.

Format (JSON, UTF-8)::

    {"format": "byok-keeper-envelope/1",
     "header": {key_id, region, account_id, key_spec, key_usage, protection_level,
                public_key_der, fingerprint, material_encoding, lease, enrolled_at,
                first_imported_at},
     "seal": {"sealer": "local" | "kms" | "pkcs11" | a plugin's kind, "key_ref": ...,
              "wrapped_data_key": ...},
     "material": {"nonce": ..., "ciphertext": ...}}

The material is AES-256-GCM under a fresh data key; the associated data is the canonical JSON
of ``format``, ``header`` and ``seal``, so changing any field (or moving the envelope to another
key id) makes it fail to open. Parsing is strict: size cap, UTF-8, exact fields and types.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..crypto.specs import KEY_SPECS, PROTECTION_LEVELS, USAGES
from ..domain.errors import InputError

# The id and field rules live on the domain floor; ``check_key_id`` and ``KEY_ID_RE`` stay
# importable from here for the entrypoints that import them today.
from ..domain.model import FINGERPRINT_RE, KEY_ID_RE, KMS_TIME_RE, check_key_id  # noqa: F401
from .registry import sealer_backend

FORMAT = "byok-keeper-envelope/1"
MAX_ENVELOPE_BYTES = 1024 * 1024


class EnvelopeError(InputError):
    """An envelope is malformed, tampered with, or does not belong where it was found."""


@dataclass(frozen=True)
class Header:
    key_id: str
    region: str
    account_id: str
    key_spec: str
    key_usage: str
    protection_level: str
    public_key_der: str  # Base64
    fingerprint: str
    material_encoding: str
    lease: str
    enrolled_at: str
    first_imported_at: str | None

    def with_first_import(self, when: str) -> Header:
        return replace(self, first_imported_at=when)


@dataclass(frozen=True)
class Seal:
    sealer: str  # "local", "kms", "pkcs11" or a plugin's kind (vault/registry.py)
    key_ref: str  # local key id (hash), KMS key id, or pkcs11:token=..;object=..;id=..
    wrapped_data_key: str  # Base64 (local, pkcs11) or a KMS CiphertextBlob


@dataclass(frozen=True)
class Envelope:
    header: Header
    seal: Seal
    nonce: str
    ciphertext: str

    @property
    def key_id(self) -> str:
        return self.header.key_id

    @property
    def fingerprint(self) -> str:
        return self.header.fingerprint

    def associated_data(self) -> bytes:
        return associated_data(self.header, self.seal)

    def to_bytes(self) -> bytes:
        doc = {
            "format": FORMAT,
            "header": asdict(self.header),
            "seal": asdict(self.seal),
            "material": {"nonce": self.nonce, "ciphertext": self.ciphertext},
        }
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def associated_data(header: Header, seal: Seal) -> bytes:
    doc = {"format": FORMAT, "header": asdict(header), "seal": asdict(seal)}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _fields(obj: Any, name: str, spec: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise EnvelopeError(f"envelope {name} must be an object")
    if set(obj) != set(spec):
        missing, extra = sorted(set(spec) - set(obj)), sorted(set(obj) - set(spec))
        raise EnvelopeError(
            f"envelope {name} fields differ (missing {missing}, unexpected {extra})"
        )
    for field_name, types in spec.items():
        if not isinstance(obj[field_name], types):
            raise EnvelopeError(f"envelope {name}.{field_name} has the wrong type")
    return obj


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError(f"envelope {what} is not Base64") from None


def parse(data: bytes, *, expected_key_id: str | None = None) -> Envelope:
    """Parse envelope bytes strictly. Does not unseal. Raises ``EnvelopeError``."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(f"envelope is larger than {MAX_ENVELOPE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise EnvelopeError("envelope is not UTF-8") from None
    try:
        doc = json.loads(text)
    except RecursionError:
        raise EnvelopeError("envelope JSON is nested too deeply") from None
    except ValueError:
        raise EnvelopeError("envelope is not valid JSON") from None
    doc = _fields(
        doc, "document", {"format": (str,), "header": (dict,), "seal": (dict,), "material": (dict,)}
    )
    if doc["format"] != FORMAT:
        raise EnvelopeError(f"unsupported envelope format {doc['format']!r}; expected {FORMAT}")
    s = (str,)
    h = _fields(
        doc["header"],
        "header",
        {
            "key_id": s,
            "region": s,
            "account_id": s,
            "key_spec": s,
            "key_usage": s,
            "protection_level": s,
            "public_key_der": s,
            "fingerprint": s,
            "material_encoding": s,
            "lease": s,
            "enrolled_at": s,
            "first_imported_at": (str, type(None)),
        },
    )
    seal = _fields(doc["seal"], "seal", {"sealer": s, "key_ref": s, "wrapped_data_key": s})
    mat = _fields(doc["material"], "material", {"nonce": s, "ciphertext": s})

    header = Header(**h)
    check_key_id(header.key_id)
    if header.key_spec not in KEY_SPECS:
        raise EnvelopeError(f"envelope names unsupported key spec {header.key_spec!r}")
    if header.key_usage not in USAGES or header.protection_level not in PROTECTION_LEVELS:
        raise EnvelopeError("envelope has an invalid key usage or protection level")
    if header.material_encoding != KEY_SPECS[header.key_spec].material_encoding:
        raise EnvelopeError("envelope material encoding does not fit its key spec")
    if not FINGERPRINT_RE.fullmatch(header.fingerprint):
        raise EnvelopeError("envelope fingerprint is not 64 lower-case hex digits")
    for stamp in (header.enrolled_at, header.first_imported_at):
        if stamp is not None and not KMS_TIME_RE.fullmatch(stamp):
            raise EnvelopeError("envelope timestamps must be YYYY-MM-DDTHH:MM:SSZ")
    _b64(header.public_key_der, "public key")
    if sealer_backend(seal["sealer"]) is None:
        raise EnvelopeError(f"envelope sealer {seal['sealer']!r} is unknown")
    if len(_b64(mat["nonce"], "nonce")) != 12:
        raise EnvelopeError("envelope nonce must be 12 bytes")
    _b64(mat["ciphertext"], "ciphertext")
    if expected_key_id is not None and header.key_id != expected_key_id:
        raise EnvelopeError(
            f"envelope found for key {expected_key_id} belongs to key {header.key_id}"
        )
    return Envelope(header, Seal(**seal), mat["nonce"], mat["ciphertext"])

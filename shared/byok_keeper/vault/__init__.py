"""The vault: sealed envelopes of original key material, and the only way to open them.

``Vault.put`` is invariant 3 (sealed before imported): seal, write, read back, open and compare
the fingerprint before anyone may import. ``Vault.open`` checks, in this order, that the
envelope belongs to the key asked for, that it was sealed by the configured sealer, that the
data key opens, that the material decrypts under the authenticated header, and that the
material's own public key matches the sealed fingerprint.
"""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..crypto.material import PrivateKeyMaterial, load_private_key, wipe
from ..domain.errors import ByokError, ConfigError, MaterialMismatch
from .envelope import Envelope, EnvelopeError, Header, Seal, associated_data, check_key_id, parse
from .registry import sealer_settings, store_backend
from .sealers import KmsSealer, LocalKeySealer, Sealer, SealError, seal_context
from .stores import FileStore, SecretsStore, Store, VaultConflict

if TYPE_CHECKING:
    from ..gateway.kms.gateway import KmsGateway  # the vault loads no SDK until a gateway is used

__all__ = [
    "Envelope",
    "EnvelopeError",
    "FileStore",
    "Header",
    "KmsSealer",
    "LocalKeySealer",
    "SealError",
    "SecretsStore",
    "Vault",
    "VaultConflict",
    "build_sealer",
    "build_store",
]


class Vault:
    def __init__(self, store: Store, sealer: Sealer) -> None:
        self.store = store
        self.sealer = sealer

    @property
    def uri(self) -> str:
        return self.store.uri

    def seal(self, header: Header, material: PrivateKeyMaterial) -> Envelope:
        if header.fingerprint != material.fingerprint or header.key_spec != material.key_spec:
            raise MaterialMismatch(
                header.key_id, "the material", header.fingerprint, material.fingerprint
            )
        data_key, wrapped = self.sealer.new_data_key(
            seal_context(header.key_id, header.fingerprint)
        )
        try:
            seal = Seal(
                sealer=self.sealer.kind, key_ref=self.sealer.key_ref, wrapped_data_key=wrapped
            )
            nonce = os.urandom(12)
            aad = associated_data(header, seal)
            ciphertext = AESGCM(data_key).encrypt(nonce, material.import_bytes(), aad)
        finally:
            wipe(data_key)
        return Envelope(
            header,
            seal,
            base64.b64encode(nonce).decode(),
            base64.b64encode(ciphertext).decode(),
        )

    def open(self, envelope: Envelope) -> PrivateKeyMaterial:
        """Unseal and check an envelope; the caller wipes the returned material."""
        h, seal = envelope.header, envelope.seal
        if (seal.sealer, seal.key_ref) != (self.sealer.kind, self.sealer.key_ref):
            raise ConfigError(
                f"the envelope for {h.key_id} was sealed with the {seal.sealer} key "
                f"{seal.key_ref}; the configured sealer is the {self.sealer.kind} key "
                f"{self.sealer.key_ref}"
            )
        data_key = self.sealer.open_data_key(
            seal.wrapped_data_key, seal_context(h.key_id, h.fingerprint)
        )
        ciphertext = base64.b64decode(envelope.ciphertext)
        buf = bytearray(max(0, len(ciphertext) - 16))
        try:
            AESGCM(data_key).decrypt_into(
                base64.b64decode(envelope.nonce), ciphertext, envelope.associated_data(), buf
            )
        except (InvalidTag, ValueError):
            raise EnvelopeError(
                f"the envelope for {h.key_id} does not open: it was altered after sealing"
            ) from None
        finally:
            wipe(data_key)
        try:
            material = load_private_key(buf, key_spec=h.key_spec)
        except ByokError:
            raise EnvelopeError(f"the envelope for {h.key_id} holds unusable material") from None
        finally:
            wipe(buf)
        if material.fingerprint != h.fingerprint:
            material.wipe()
            raise MaterialMismatch(
                h.key_id, "the sealed material", h.fingerprint, material.fingerprint
            )
        return material

    def get(self, key_id: str) -> Envelope | None:
        """The parsed (not unsealed) envelope for ``key_id``, or None."""
        data = self.store.read(check_key_id(key_id))
        return None if data is None else parse(data, expected_key_id=key_id)

    def fetch(self, key_id: str) -> tuple[Envelope, PrivateKeyMaterial]:
        envelope = self.get(key_id)
        if envelope is None:
            raise EnvelopeError(f"the vault {self.uri} holds no envelope for {key_id}")
        return envelope, self.open(envelope)

    def put(self, header: Header, material: PrivateKeyMaterial) -> Envelope:
        """Seal, write, read back, open and compare (invariant 3). Returns what was stored."""
        envelope = self.seal(header, material)
        self.store.write(header.key_id, envelope.to_bytes(), header.fingerprint)
        stored = self.get(header.key_id)
        if stored is None or stored.header != header:
            raise EnvelopeError(f"reading back the envelope for {header.key_id} failed")
        self.open(stored).wipe()
        return stored

    def inventory(self) -> list[str]:
        """Enrolled key ids, without unsealing anything."""
        return self.store.list_key_ids()

    def retired(self) -> list[str]:
        """Key ids retired on purpose (``retire.py``): out of the inventory, kept sealed."""
        return self.store.list_retired()


def build_store(uri: str, gateway: KmsGateway | None) -> Store:
    """The store ``uri`` names: ``file://DIR`` (or a plain path), ``kms-secrets://PREFIX``, or a
    plugin's scheme (``registry``)."""
    return store_backend(uri).open(uri, gateway)


def build_sealer(
    *,
    seal_key_file: str | None,
    seal_kms_key_id: str | None,
    gateway: KmsGateway | None,
    seal_pkcs11: str | None = None,
) -> Sealer:
    """The one sealer the settings configure (``registry.sealer_settings``)."""
    values = {
        "seal_key_file": seal_key_file,
        "seal_kms_key_id": seal_kms_key_id,
        "seal_pkcs11": seal_pkcs11,
    }
    chosen = [b for b in sealer_settings() if values.get(b.setting or "")]
    if len(chosen) != 1:
        raise ConfigError(
            "configure exactly one sealer: BYOK_SEAL_KEY_FILE (--seal-key-file), "
            "BYOK_SEAL_KMS_KEY_ID (--seal-kms-key-id) or BYOK_SEAL_PKCS11 (--seal-pkcs11)"
        )
    (backend,) = chosen
    return backend.open(values[backend.setting or ""] or "", gateway)

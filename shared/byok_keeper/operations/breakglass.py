"""Break-glass: wrap a key's sealed material offline for a manual console import.

When automation cannot reach KMS (credentials revoked, a partition, the agent broken), an
on-call engineer who holds the vault and the seal key follows the seed page's console
procedure: download the wrapping public key and import token from the console, wrap the
material here, upload both. This module makes **no KMS call** of its own: with a file vault and
a local seal key it works with KMS unreachable (a KMS sealer or a Secrets Manager vault needs
KMS to open the envelope, of course).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..crypto.wrapping import wrap_key_material
from ..domain.errors import InputError
from ..domain.files import read_capped, write_new
from ..vault import Vault

MAX_WRAPPING_KEY_FILE = 16 * 1024  # a PEM RSA-2048 public key is ~450 bytes


@dataclass(frozen=True)
class Wrapped:
    key_id: str
    key_spec: str
    algorithm: str
    fingerprint: str
    output: str


def wrap_for_console(
    vault: Vault, key_id: str, wrapping_public_key_file: str, output: str
) -> Wrapped:
    """Open ``key_id``'s envelope, check it, wrap its material for the console.

    The wrapping public key is the console's ``publickey_*.pem`` or ``publickey_*.bin`` (DER);
    it must be the kind the key's spec is imported with (RSA-2048 for RSA and EC keys, SM2
    for EC_SM2). Writes Base64 ``EncryptedKeyMaterial`` to ``output`` (new file, mode 0600;
    an existing file is never overwritten). Raises ``InputError`` for anything the engineer
    must change; nothing is written then.
    """
    wrapping_key = _read_wrapping_key(wrapping_public_key_file)
    target = Path(output)
    if target.exists() or target.is_symlink():  # checked again, atomically, by write_new
        raise InputError(f"{output} already exists; a break-glass output is never overwritten")
    envelope, material = vault.fetch(key_id)  # authenticates; checks the sealed fingerprint
    with material:
        if envelope.header.first_imported_at is None:
            raise InputError(
                f"enrollment of {key_id} is incomplete (no first import recorded): finish it "
                "with byok-keeper enroll, not by hand"
            )
        algorithm = material.spec.wrapping_algorithm
        encrypted = wrap_key_material(material.import_bytes(), wrapping_key, algorithm)
        write_new(target, encrypted.encode("ascii"), "a break-glass output")
        return Wrapped(key_id, material.key_spec, algorithm, material.fingerprint, output)


def _read_wrapping_key(path: str) -> bytes:
    try:
        data, _stat = read_capped(path, MAX_WRAPPING_KEY_FILE, "the wrapping public key")
    except FileNotFoundError:
        raise InputError(f"the wrapping public key {path} does not exist") from None
    return bytes(data)


def upload_steps(wrapped: Wrapped) -> list[str]:
    """The seed's console steps that remain, for the engineer to follow."""
    return [
        f"1. In the KMS console, open key {wrapped.key_id} and choose Import Key Material.",
        "2. Use the import token (token_*.txt) downloaded together with the wrapping public "
        "key you gave here: both come from one 'Obtain Parameters' and expire after 24 hours.",
        f"3. Upload {wrapped.output} as the encrypted key material (wrapped with "
        f"{wrapped.algorithm}), and choose the key material's expiry.",
        f"4. Once KMS is reachable again: byok-keeper verify {wrapped.key_id}, then delete "
        f"{wrapped.output}.",
    ]

"""What ``byok-keeper enroll`` is given, checked and read before anything else is built:
the create request (tags, policy file), and the private key material (file or generated)."""

from __future__ import annotations

import os

from ..crypto.material import generate_material, load_private_key, wipe
from ..domain.errors import InputError
from ..domain.files import read_capped
from .enroll import MAX_POLICY_BYTES, CreateRequest, check_console_fields

MAX_MATERIAL_BYTES = 1024 * 1024


def tags_from(pairs: tuple[str, ...]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--tag {pair!r}: expected KEY=VALUE")
        if key in tags:
            raise InputError(f"--tag {key} given twice")
        tags[key] = value
    return tags


def read_policy(path: str) -> str:
    """The key policy file's text, read with a bound (KMS takes at most 32,768 bytes)."""
    try:
        data, _stat = read_capped(path, MAX_POLICY_BYTES, "--policy")
        return data.decode("utf-8")
    except FileNotFoundError:
        raise InputError(f"cannot read --policy {path}: it does not exist") from None
    except UnicodeDecodeError:
        raise InputError(f"--policy {path} is not UTF-8 JSON") from None


def create_request(
    *,
    create: bool,
    key_id: str | None,
    key_spec: str | None,
    usage: str | None,
    instance: str | None,
    protection_level: str | None,
    description: str,
    alias: str | None,
    tag_pairs: tuple[str, ...],
    policy_path: str | None,
) -> CreateRequest | None:
    """The ``CreateRequest`` for ``--create`` (None to enroll ``--key-id``), with the console's
    field rules checked: all before credentials, the vault or the material."""
    if create == bool(key_id):
        raise InputError("give either --create (with --key-spec, --usage, --instance) or --key-id")
    if create and not (key_spec and usage and instance):
        raise InputError("--create needs --key-spec, --usage and --instance")
    if not create and (alias or tag_pairs or policy_path):
        raise InputError("--alias, --tag and --policy go with --create")
    if not create:
        return None
    request = CreateRequest(
        key_spec or "",
        usage or "",
        instance or "",
        description,
        protection_level=protection_level or "",
        alias=alias,
        tags=tags_from(tag_pairs),
        policy=read_policy(policy_path) if policy_path else None,
    )
    check_console_fields(request)
    return request


def load_material(
    material_path: str | None, generate: bool, key_spec: str | None, passphrase_env: str | None
):
    """The private key: generated in memory, or read (a regular file of at most 1 MiB) and
    parsed, the raw bytes wiped."""
    if bool(material_path) == bool(generate):
        raise InputError("give exactly one of --material FILE or --generate")
    if generate:
        if not key_spec:
            raise InputError("--generate needs --key-spec")
        return generate_material(key_spec)
    passphrase = None
    if passphrase_env:
        value = os.environ.get(passphrase_env)
        if value is None:
            raise InputError(f"--passphrase-env {passphrase_env}: that variable is not set")
        passphrase = value.encode()
    try:  # a regular file of at most 1 MiB (a link to /dev/zero must not exhaust memory)
        data, _ = read_capped(material_path or "", MAX_MATERIAL_BYTES, "--material")
    except FileNotFoundError:
        raise InputError(f"cannot read --material {material_path}: no such file") from None
    try:
        return load_private_key(data, key_spec=key_spec, passphrase=passphrase)
    finally:
        wipe(data)

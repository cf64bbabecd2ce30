"""``seal-key new`` and ``vault list``: the vault and its seal, without unsealing anything."""

from __future__ import annotations

import click

from .app import App, output_option


@click.group("seal-key")
def seal_key() -> None:
    """Local seal keys (for self-hosted runs; the cloud uses a KMS key)."""


@seal_key.command("new")
@click.argument("path", type=click.Path(dir_okay=False))
@output_option
@click.pass_obj
def seal_key_new(app: App, path: str) -> None:
    """Create a 32-byte seal key file at PATH (mode 0600; never overwrites).

    \b
    Example:
      byok-keeper seal-key new /etc/byok-keeper/seal.key
    Keep a copy somewhere safe: without it no envelope sealed with it can be opened.
    """
    from ..vault.sealers import new_seal_key_file

    key_ref = new_seal_key_file(path)
    app.emit({"path": path, "key_ref": key_ref}, f"created seal key {path} ({key_ref}, mode 0600)")


@click.group("vault")
def vault_group() -> None:
    """Inspect the vault without unsealing anything."""


@vault_group.command("list")
@click.option(
    "--aliases", "show_aliases", is_flag=True, help="Also ask KMS for each key's aliases."
)
@output_option
@click.pass_obj
def vault_list(app: App, show_aliases: bool) -> None:
    """List enrolled keys (key id, spec, fingerprint, lease, first import).

    Reads only the vault, unless --aliases (one ListAliasesByKeyId per key).

    \b
    Example:
      byok-keeper --vault file://./vault vault list --output json
      byok-keeper vault list --aliases
    """
    from ..inventory import list_vault

    uri, rows = list_vault(app.settings, with_aliases=show_aliases)
    lines = [f"{'KEY ID':<26} {'SPEC':<9} {'LEASE':<6} {'FIRST IMPORT':<21} FINGERPRINT"]
    lines += [
        f"{r['key_id']:<26} {r['key_spec']:<9} {r['lease']:<6} "
        f"{r['first_imported_at'] or '(incomplete)':<21} {r['fingerprint'][:16]}..."
        + (f"  {', '.join(r['aliases'] or ['-'])}" if show_aliases else "")
        for r in rows
    ]
    app.emit({"vault": uri, "keys": rows}, "\n".join(lines))

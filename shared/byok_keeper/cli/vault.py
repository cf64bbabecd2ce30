"""``seal-key new``, ``vault list``, ``vault retire`` and ``vault restore``: the vault and its
seal, without unsealing anything."""

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
    """Inspect the vault, retire or restore a key's envelope, without unsealing anything."""


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


@vault_group.command("retire")
@click.argument("key_id")
@click.option("--reason", required=True, help="Why (one line, into the audit log).")
@output_option
@click.pass_obj
def vault_retire(app: App, key_id: str, reason: str) -> None:
    """Retire a key on purpose (deleted in KMS, or no longer wanted): its envelope moves aside
    in the vault (VAULT/retired/KEY.json: kept, still sealed) and plan, sweep, verify, report
    and the metrics leave the key out from then on. An audit line records it. Undo with
    `byok-keeper vault restore KEY`. file:// vaults only.

    \b
    Example:
      byok-keeper vault retire key-xxx --reason "CHG-42: app decommissioned, key deleted"
    """
    from ..inventory import vault_store
    from ..retire import retire_key
    from ..runtime import local_actor

    store = vault_store(app.settings)
    done = retire_key(store, _audit(app), key_id, reason=reason, actor=local_actor())
    note = " (it already was)" if done["already"] else ""
    app.emit(done, f"retired {key_id}{note}: its envelope is kept sealed; undo with "
                   f"`byok-keeper vault restore {key_id}`")  # fmt: skip


@vault_group.command("restore")
@click.argument("key_id")
@output_option
@click.pass_obj
def vault_restore(app: App, key_id: str) -> None:
    """Bring a retired key back: its envelope returns to the vault unchanged, and plan and
    sweep look after the key again. An audit line records it.

    \b
    Example:
      byok-keeper vault restore key-xxx
    """
    from ..inventory import vault_store
    from ..retire import restore_key
    from ..runtime import local_actor

    done = restore_key(vault_store(app.settings), _audit(app), key_id, actor=local_actor())
    note = " (it already was)" if done["already"] else ""
    app.emit(done, f"restored {key_id}{note}: plan and sweep look after it again")


def _audit(app: App):
    from ..audit import AuditLog

    return AuditLog(app.settings.audit_file)

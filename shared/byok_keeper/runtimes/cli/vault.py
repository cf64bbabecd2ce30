"""``seal-key new``, ``vault list``, ``vault retire`` and ``vault restore``: the vault and its
seal, without unsealing anything."""

from __future__ import annotations

import click

from .app import App, output_option


@click.group("seal-key")
def seal_key() -> None:
    """Local seal keys (for self-hosted runs; the cloud uses a KMS key)."""


@seal_key.command("new")
@click.argument("path", type=click.Path(dir_okay=False), required=False)
@click.option(
    "--pkcs11",
    "pkcs11_uri",
    metavar="URI",
    help="Generate the seal key inside a PKCS#11 token instead (an RFC 7512 URI naming the "
    "token, the object label, module-path= and pin-source=; see docs/CUSTODY.md).",
)
@output_option
@click.pass_obj
def seal_key_new(app: App, path: str | None, pkcs11_uri: str | None) -> None:
    """Create a 32-byte seal key file at PATH (mode 0600; never overwrites), or an AES-256 key
    inside a PKCS#11 token with --pkcs11 URI (never exported; refused if the label exists).

    \b
    Examples:
      byok-keeper seal-key new /etc/byok-keeper/seal.key
      BYOK_PKCS11_PIN=... byok-keeper seal-key new --pkcs11 \\
        'pkcs11:token=byok;object=byok-seal?module-path=/usr/lib/softhsm/libsofthsm2.so'
    Keep a copy of a key file somewhere safe (and back the token up by its own means): without
    the key no envelope sealed with it can be opened.
    """
    if bool(path) == bool(pkcs11_uri):
        raise click.UsageError("give either PATH or --pkcs11 URI")
    if pkcs11_uri:
        _new_token_key(app, pkcs11_uri)
        return
    from ...vault.sealers import new_seal_key_file

    assert path is not None
    key_ref = new_seal_key_file(path)
    app.emit({"path": path, "key_ref": key_ref}, f"created seal key {path} ({key_ref}, mode 0600)")


def _new_token_key(app: App, uri: str) -> None:
    from ...vault.pkcs11 import new_token_key

    key_ref = new_token_key(uri)
    app.emit(
        {"pkcs11": key_ref, "key_ref": key_ref},
        f"created seal key {key_ref} inside the token (AES-256, sensitive, not extractable)",
    )


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
    from ...operations.inventory import list_vault

    uri, rows = list_vault(app.settings, with_aliases=show_aliases)
    lines = [f"{'KEY ID':<26} {'SPEC':<9} {'LEASE':<6} {'FIRST IMPORT':<21} FINGERPRINT"]
    lines += [
        f"{r['key_id']:<26} {r['key_spec']:<9} {r['lease']:<6} "
        f"{r['first_imported_at'] or '(incomplete)':<21} {r['fingerprint'][:16]}..."
        + (f"  {', '.join(r['aliases'] or ['-'])}" if show_aliases else "")
        for r in rows
    ]
    app.emit({"vault": uri, "keys": rows}, "\n".join(lines))


# ---- vault reseal: its own function, apart from the other vault commands -----------------------


@vault_group.command("reseal")
@click.option("--to-seal-key-file", metavar="FILE", help="Reseal under this 32-byte key file.")
@click.option("--to-seal-kms-key-id", metavar="ID", help="Reseal under this symmetric KMS key.")
@click.option(
    "--to-seal-pkcs11",
    metavar="URI",
    help="Reseal under this AES key in a PKCS#11 token (RFC 7512 URI, as --seal-pkcs11).",
)
@click.option("--dry-run", is_flag=True, help="Open and reseal in memory; write nothing.")
@output_option
@click.pass_obj
def vault_reseal(
    app: App,
    to_seal_key_file: str | None,
    to_seal_kms_key_id: str | None,
    to_seal_pkcs11: str | None,
    dry_run: bool,
) -> None:
    """Re-seal every envelope from the configured sealer to another one (rotating the vault's
    key-encryption key; the imported keys never change).

    Each envelope is opened (authenticated) under the configured sealer, sealed under the new
    one, opened back, and only then written over the old one, atomically; one audit line each.
    Resumable: a re-run skips envelopes already under the new sealer (after opening them).
    Then switch the configuration to the new sealer. Exit 1 if any envelope failed.

    \b
    Example (a file-sealed vault into a token):
      byok-keeper --seal-key-file ./seal.key vault reseal \\
        --to-seal-pkcs11 'pkcs11:token=byok;object=byok-seal?module-path=...&pin-source=file:...'
    """
    from ...core.deps import build_reseal, local_actor
    from ...vault.reseal import reseal

    vault, target, audit = build_reseal(
        app.settings,
        to_seal_key_file=to_seal_key_file,
        to_seal_kms_key_id=to_seal_kms_key_id,
        to_seal_pkcs11=to_seal_pkcs11,
    )
    report = reseal(vault, target, audit, dry_run=dry_run, actor=local_actor())
    verb = "would reseal" if dry_run else "resealed"
    lines = [f"{report.source} -> {report.target}"]
    lines += [f"{verb:<13} {k}" for k in report.resealed]
    lines += [f"{'already':<13} {k}" for k in report.already]
    lines += [f"{'FAILED':<13} {k}: {why}" for k, why in report.failed.items()]
    lines.append(
        f"{len(report.resealed)} {verb}, {len(report.already)} already, {len(report.failed)} failed"
    )
    app.emit(report.as_dict(), "\n".join(lines))
    if report.failed:
        raise click.exceptions.Exit(1)


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
    from ...core.deps import local_actor
    from ...operations.inventory import vault_store
    from ...operations.retire import retire_key

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
    from ...core.deps import local_actor
    from ...operations.inventory import vault_store
    from ...operations.retire import restore_key

    done = restore_key(vault_store(app.settings), _audit(app), key_id, actor=local_actor())
    note = " (it already was)" if done["already"] else ""
    app.emit(done, f"restored {key_id}{note}: plan and sweep look after it again")


def _audit(app: App):
    from ...domain.audit import AuditLog

    return AuditLog(app.settings.audit_file)

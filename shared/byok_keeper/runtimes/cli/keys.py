"""Commands on one key: ``enroll``, ``reimport``, ``verify``, ``status``, ``wrap``, ``hold``
and ``release``. Each parses, builds its dependencies, calls the core and renders."""

from __future__ import annotations

import click

from ...core.deps import local_actor
from ...domain.errors import InputError
from ...domain.model import check_key_id
from ...operations.render import table
from .app import App, fleet_target_option, output_option, target_option


@click.command("enroll")
@click.option("--create", is_flag=True, help="Create a new EXTERNAL key and enroll it.")
@click.option("--key-id", help="Enroll this existing EXTERNAL key instead.")
@click.option("--key-spec", help="RSA_2048|RSA_3072|RSA_4096|EC_P256|EC_P256K|EC_SM2.")
@click.option(
    "--usage",
    type=click.Choice(["SIGN/VERIFY", "ENCRYPT/DECRYPT"]),
    help="Key usage (with --create).",
)
@click.option("--instance", help="KMS instance id, kst-... (with --create).")
@click.option(
    "--protection-level",
    type=click.Choice(["SOFTWARE", "HSM"]),
    help="With --create: the level the instance must give the key (checked; also on resume).",
)
@click.option(
    "--material",
    "material_path",
    type=click.Path(dir_okay=False),
    help="Private key file: PEM or DER, PKCS#8/PKCS#1/SEC1, SM2, raw SM2 scalar.",
)
@click.option("--generate", is_flag=True, help="Make the private key in memory (CSPRNG).")
@click.option(
    "--passphrase-env", metavar="VAR", help="Environment variable holding the passphrase."
)
@click.option(
    "--lease",
    default="30d",
    show_default=True,
    help="Material lifetime in KMS: e.g. 30d, 12h, never.",
)
@click.option("--description", default="", help="Key description (with --create).")
@click.option(
    "--alias",
    metavar="alias/NAME",
    help="Alias to create once the key exists (with --create): alias/ then letters, digits, "
    "_ - /. An alias that names another key is refused, never moved.",
)
@click.option(
    "--tag",
    "tag_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A tag for CreateKey (with --create; repeatable; KMS's tag rule; at most 16, "
    "byok-keeper adds 4 of its own).",
)
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(dir_okay=False),
    help="Key policy JSON file for CreateKey (with --create; at most 32,768 bytes).",
)
@target_option
@output_option
@click.pass_obj
def enroll(
    app: App,
    create: bool,
    key_id: str | None,
    key_spec: str | None,
    usage: str | None,
    instance: str | None,
    protection_level: str | None,
    material_path: str | None,
    generate: bool,
    passphrase_env: str | None,
    lease: str,
    description: str,
    alias: str | None,
    tag_pairs: tuple[str, ...],
    policy_path: str | None,
    target_names: tuple[str, ...],
) -> None:
    """Seal a key's material in the vault, then import it into KMS for the first time.

    Order: validate, (create), seal and write, read back and check, import, verify (state,
    expiry, public key, canary), record the first import, tag byok-keeper:managed. Re-running
    the same command after a crash finishes the job. --create resumes only a key it created
    (tagged with a marker only the private key's holder can compute, and matching spec, usage,
    instance and protection level); any other key carrying the material's fingerprint tag is
    reported as an ALERT (exit 2) and never receives material.

    \b
    Examples:
      byok-keeper enroll --create --key-spec EC_P256 --usage SIGN/VERIFY \\
          --instance kst-xxx --material ./ec.pem --lease 30d
      byok-keeper enroll --create --key-spec RSA_3072 --usage SIGN/VERIFY \\
          --instance kst-xxx --material ./rsa.pem --alias alias/payments-signing \\
          --tag team=payments --description "payments signing" --policy ./policy.json
      byok-keeper enroll --key-id key-xxx --material ./rsa.pem --passphrase-env KEY_PASS
      byok-keeper --config targets.toml enroll --target prod-fra --create ...
    """
    from ...core.enroll import enroll as run_enroll
    from ...core.enroll_args import create_request, load_material
    from ...domain.lease import parse_lease
    from ...gateway.kms import ENROLL

    request = create_request(
        create=create,
        key_id=key_id,
        key_spec=key_spec,
        usage=usage,
        instance=instance,
        protection_level=protection_level,
        description=description,
        alias=alias,
        tag_pairs=tag_pairs,
        policy_path=policy_path,
    )
    lease_policy = parse_lease(lease)
    # --create makes a key, so with several targets --target must say where
    deps = app.key_deps(ENROLL, None if create else key_id, target_names)
    material = load_material(material_path, generate, key_spec, passphrase_env)
    with material:
        result = run_enroll(
            deps.gateway,
            deps.require_vault(),
            material,
            lease=lease_policy,
            key_id=key_id,
            create=request,
            on_step=lambda name, detail: app.progress(
                f"[enroll] {name}: ok" + "".join(f" {k}={v}" for k, v in detail.items())
            ),
        )
    expiry = result.to_json()["material_expire_time"] or "never"
    how = "created and enrolled" if result.created else "adopted" if result.adopted else "enrolled"
    human = (
        f"{result.key_id} {how}: {result.key_spec} {result.key_usage}, {result.key_state}, "
        f"material expires {expiry} (lease {result.lease})\n"
        f"fingerprint {result.fingerprint}\nvault {result.vault}; canary: {result.canary}"
    )
    if generate:
        human += "\nthe material was generated here: the vault holds the only copy; back it up"
    app.emit(result.to_json(), human)


@click.command("reimport")
@click.argument("key_id")
@click.option("--reason", required=True, help="Why (recorded in the audit event).")
@click.option("--dry-run", is_flag=True, help="Check everything, import nothing.")
@click.option("--override-hold", is_flag=True, help="Import even though the key is on hold.")
@click.option("--lease", help="New lease for this import (e.g. 30d, never).")
@target_option
@output_option
@click.pass_obj
def reimport_cmd(
    app: App,
    key_id: str,
    reason: str,
    dry_run: bool,
    override_hold: bool,
    lease: str | None,
    target_names: tuple[str, ...],
) -> int:
    """Re-import one key's identical material now, printing each step.

    Refuses a key on hold unless --override-hold. Exit 0 restored, 1 failed or held, 2 refused
    input (a tampered or unreadable envelope, a wrong seal key, a bad argument).

    \b
    Example:
      byok-keeper reimport key-xxx --reason "INC-1234 material deleted by mistake"
    """
    from ...core.restore import reimport_one, succeeded
    from ...domain.lease import parse_lease
    from ...gateway.kms import SWEEP

    check_key_id(key_id)
    lease_override = parse_lease(lease) if lease else None
    outcome = reimport_one(
        app.key_deps(SWEEP, key_id, target_names),
        key_id,
        reason=reason,
        trigger="cli-reimport",
        actor=local_actor(),
        audit_fields={"override_hold": override_hold, "dry_run": dry_run},
        override_hold=override_hold,
        dry_run=dry_run,
        lease_override=lease_override,
        on_step=lambda name, detail: app.progress(f"[reimport] {name}: {detail}"),
    )
    if outcome.bad_input:  # a tampered or unreadable envelope, a bad seal key: one line, exit 2
        raise InputError(f"{key_id}: {outcome.reason}")
    human = f"{key_id}: {outcome.outcome} - {outcome.reason}"
    app.emit(outcome.to_json(), human)
    return 0 if succeeded(outcome) else 1


@click.command("verify")
@click.argument("key_ids", nargs=-1)
@fleet_target_option
@output_option
@click.pass_obj
def verify_cmd(app: App, key_ids: tuple[str, ...], target_names: tuple[str, ...]) -> int:
    """Check vault vs KMS identity and run a canary, without importing. All keys by default
    (with [[targets]]: in every target, or those named with --target).

    Exit 1 when a key could not be checked, else 4 when a key needs a person (mismatch: KMS
    holds other material; gone: KMS no longer has the key), else 0.

    \b
    Example:
      byok-keeper verify key-xxx key-yyy
    """
    from ...core.verify import verify_exit, verify_key
    from ...gateway.kms import READ_ONLY

    targets = app.fleet_targets(target_names)
    if targets is not None:
        from .targeted import verify_targets

        return verify_targets(app, targets, key_ids)
    deps = app.deps(READ_ONLY)
    vault = deps.require_vault()
    results = [verify_key(deps.gateway, vault, k) for k in (key_ids or vault.inventory())]
    rows = [[r["key_id"], r["result"], r["key_state"], r["detail"]] for r in results]
    app.emit({"results": results}, table(rows, ["KEY", "RESULT", "STATE", "DETAIL"]))
    return verify_exit(results)


@click.command("status")
@click.argument("key_id")
@target_option
@output_option
@click.pass_obj
def status_cmd(app: App, key_id: str, target_names: tuple[str, ...]) -> int:
    """Everything known about one key (KMS, tags, envelope header); nothing secret.

    \b
    Example:
      byok-keeper status key-xxx --output json
    """
    from ...gateway.kms import READ_ONLY
    from ...operations.status import key_status

    check_key_id(key_id)
    payload = key_status(app.key_deps(READ_ONLY, key_id, target_names), key_id)
    kms_view, aliases = payload["kms"], payload["aliases"]
    tags, envelope_view = payload["tags"], payload["envelope"]
    decision = payload["decision"]
    lines = [f"key {key_id}", f"decision {decision}: {payload['reason']}"]
    if kms_view:
        lines += [f"  kms.{k}: {v}" for k, v in kms_view.items() if k != "request_id"]
    lines += [f"  alias {a}" for a in aliases]
    lines += [f"  tag {k} = {v}" for k, v in tags.items()]
    if envelope_view:
        lines += [f"  envelope.{k}: {v}" for k, v in envelope_view.items()]
    else:
        lines.append("  envelope: none in the vault")
    app.emit(payload, "\n".join(lines))
    return 0


@click.command("wrap")
@click.argument("key_id")
@click.option(
    "--wrapping-public-key",
    "wrapping_key",
    required=True,
    type=click.Path(dir_okay=False),
    help="The console's wrapping public key: publickey_*.pem or publickey_*.bin (DER).",
)
@click.option(
    "--output",
    "output_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the Base64 encrypted key material (a new file, mode 0600).",
)
@click.pass_obj
def wrap_cmd(app: App, key_id: str, wrapping_key: str, output_path: str) -> int:
    """Break-glass: wrap a key's material offline for a manual import in the KMS console.

    For when automation cannot reach KMS. Opens the envelope (checking its fingerprint),
    wraps the material with the algorithm the key's spec requires (RSA-2048 wrapping key for
    RSA and EC keys, SM2 for EC_SM2) and writes it for upload together with the import token
    downloaded with that wrapping key. Makes no KMS call itself (a file vault with a local
    seal key needs no KMS at all); never overwrites a file; audited.

    \b
    Example:
      byok-keeper wrap key-xxx --wrapping-public-key ./publickey_key-xxx.pem \\
          --output ./EncryptedKeyMaterial_base64.txt
    """
    from ...core.deps import build_offline_vault
    from ...domain.audit import AuditLog
    from ...operations.breakglass import upload_steps, wrap_for_console

    check_key_id(key_id)
    settings = app.settings
    wrapped = wrap_for_console(build_offline_vault(settings), key_id, wrapping_key, output_path)
    AuditLog(settings.audit_file).event(
        "break_glass_wrap",
        key_id=key_id,
        fingerprint=wrapped.fingerprint,
        algorithm=wrapped.algorithm,
        output=output_path,
        actor=local_actor(),
    )
    steps = upload_steps(wrapped)
    app.emit(
        {**wrapped.__dict__, "steps": steps},
        f"wrote {output_path} ({wrapped.key_spec}, {wrapped.algorithm}, fingerprint "
        f"{wrapped.fingerprint[:16]}...)\n" + "\n".join(steps),
    )
    return 0


@click.command("hold")
@click.argument("key_id")
@click.option(
    "--reason",
    required=True,
    help="Why the key must not be restored: the tag value, so KMS's tag rule applies (at most "
    "128 letters, digits, spaces and / \\ _ - . + = : @; no commas).",
)
@target_option
@output_option
@click.pass_obj
def hold_cmd(app: App, key_id: str, reason: str, target_names: tuple[str, ...]) -> int:
    """Put a key on hold: byok-keeper will not restore it until released.

    Deleting material is sometimes a deliberate kill switch; the hold is how you say so.

    \b
    Example:
      byok-keeper hold key-xxx --reason "INC-1234: compromised - material deleted on purpose"
    """
    from ...gateway.kms import HOLD_ACTIONS
    from ...operations.holds import check_hold, hold

    check_hold(key_id, reason)
    hold(
        app.key_deps(HOLD_ACTIONS, key_id, target_names, with_vault=False),
        key_id,
        reason,
        actor=local_actor(),
    )
    app.emit({"key_id": key_id, "hold": reason}, f"{key_id} is on hold: {reason}")
    return 0


@click.command("release")
@click.argument("key_id")
@target_option
@output_option
@click.pass_obj
def release_cmd(app: App, key_id: str, target_names: tuple[str, ...]) -> int:
    """Release a hold: the next sweep restores the key if it is due.

    \b
    Example:
      byok-keeper release key-xxx
    """
    from ...gateway.kms import HOLD_ACTIONS
    from ...operations.holds import release

    check_key_id(key_id)
    release(
        app.key_deps(HOLD_ACTIONS, key_id, target_names, with_vault=False),
        key_id,
        actor=local_actor(),
    )
    app.emit({"key_id": key_id, "hold": None}, f"{key_id} released")
    return 0

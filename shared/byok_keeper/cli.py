"""The ``byok-keeper`` command line. Thin: parse, build dependencies, call the core, map the
result to output and an exit code (0 ok, 1 failures or pending work, 2 usage/config/input)."""

from __future__ import annotations

import json
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import ByokError, InputError
from .settings import Settings, load_settings

EPILOG_ENV = """\b
Settings come from flags, then the environment, then --config FILE (TOML):
  BYOK_KMS_ENDPOINT   e.g. http://127.0.0.1:PORT for aliyun-local (https if no scheme;
                      plain http only to 127.0.0.0/8, ::1 or localhost)
  ALIBABA_CLOUD_REGION_ID, BYOK_VAULT (file://DIR or kms-secrets://PREFIX),
  BYOK_SEAL_KEY_FILE or BYOK_SEAL_KMS_KEY_ID, BYOK_OUTPUT (table|json)
Credentials: ALIBABA_CLOUD_ACCESS_KEY_ID / _SECRET / _SECURITY_TOKEN, --profile NAME (the
aliyun CLI's ~/.aliyun/config.json, which also gives the region), or an instance/OIDC role.
Exit codes: 0 ok or nothing pending; 1 a failure (a key failed, KMS unreachable, an unexpected
error); 2 usage, configuration or input error; 3 plan: work is pending.
Shell completion: eval "$(_BYOK_KEEPER_COMPLETE=bash_source byok-keeper)" (or zsh_source,
fish_source)."""


EXIT_PENDING = 3  # plan: work is pending


@dataclass
class App:
    flags: dict[str, Any] = field(default_factory=dict)
    config: str | None = None
    debug: bool = False
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.flags, config_path=self.config)
        return self._settings

    def emit(self, payload: dict[str, Any], human: str) -> None:
        if self.settings.output == "json":
            click.echo(json.dumps(payload, indent=2, sort_keys=True))
        else:
            click.echo(human)

    def progress(self, message: str) -> None:
        click.echo(message, err=True)


def output_option(f):
    def callback(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            ctx.ensure_object(App).flags["output"] = value

    return click.option(
        "-o",
        "--output",
        type=click.Choice(["table", "json"]),
        expose_value=False,
        callback=callback,
        help="Output format (also BYOK_OUTPUT). json prints one JSON object on stdout.",
    )(f)


# Settings with a global flag each, beside the ones spelled out on the group below (settings.py's
# table lists them all).
_MORE_SETTINGS = {
    "read-qps": "KMS read budget, requests/s (BYOK_READ_QPS; default 25, half the quota).",
    "write-qps": "KMS write budget, requests/s (BYOK_WRITE_QPS; default 15).",
    "create-qps": "CreateKey budget, requests/s (BYOK_CREATE_QPS; default 5).",
    "crypto-qps": "Canary (asymmetric crypto) budget, requests/s (BYOK_CRYPTO_QPS; default 100).",
    "tags-qps": "ListResourceTags budget, requests/s (BYOK_TAGS_QPS; default 150).",
    "renew-before": "Renewal window, e.g. 7d (BYOK_RENEW_BEFORE; at most half the lease).",
    "audit-file": "Append audit events as JSON lines here (BYOK_AUDIT_FILE).",
    "concurrency": "Keys worked on at once, 1-64 (BYOK_CONCURRENCY; default 8).",
    "dispatch": "FC sweep dispatch: inline or fc-async (BYOK_DISPATCH).",
    "dispatch-batch": "FC async fan-out batch size (BYOK_DISPATCH_BATCH; default 50).",
    "fc-api": "FC API: 3.0 (default) or 2.0 for accounts still on FC 2.0 (BYOK_FC_API).",
    "fc-prefix": "FC 3.0 function name prefix (BYOK_FC_PREFIX; default byok-keeper).",
    "fc-service": "FC 2.0 service name (BYOK_FC_SERVICE; default byok-keeper).",
    "budget-instances": "Instances sharing the budgets: each gets 1/N (BYOK_BUDGET_INSTANCES).",
    "kms-timeout": "Seconds to wait for one KMS answer before retrying (BYOK_KMS_TIMEOUT).",
}


def _setting_options(f):
    for name, text in reversed(_MORE_SETTINGS.items()):
        f = click.option(f"--{name}", metavar="VALUE", help=text)(f)
    return f


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EPILOG_ENV,
)
@click.option("--config", type=click.Path(dir_okay=False), help="TOML settings file (BYOK_CONFIG).")
@click.option(
    "--region", help="Alibaba Cloud region (ALIBABA_CLOUD_REGION_ID, or the --profile's)."
)
@click.option(
    "--profile",
    help="aliyun CLI profile in ~/.aliyun/config.json: credentials, and the region when none "
    "is given (ALIBABA_CLOUD_PROFILE).",
)
@click.option(
    "--kms-endpoint", help="KMS endpoint override (BYOK_KMS_ENDPOINT); http only for loopback."
)
@click.option("--vault", help="Vault URI: file://DIR or kms-secrets://PREFIX (BYOK_VAULT).")
@click.option("--seal-key-file", help="32-byte local seal key file (BYOK_SEAL_KEY_FILE).")
@click.option(
    "--seal-kms-key-id", help="Symmetric KMS key sealing envelopes (BYOK_SEAL_KMS_KEY_ID)."
)
@click.option(
    "--fc-endpoint", help="FC endpoint override (BYOK_FC_ENDPOINT); http only for loopback."
)
@_setting_options
@click.option("--account-id", help="Account id, for the default FC endpoint (BYOK_ACCOUNT_ID).")
@output_option
@click.option("--debug", is_flag=True, help="Show tracebacks for errors (and DEBUG logs).")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="On a terminal, show INFO logs on stderr too (by default only warnings, so they do "
    "not mix with the output).",
)
@click.version_option(__version__, prog_name="byok-keeper")
@click.pass_context
def cli(ctx: click.Context, config: str | None, debug: bool, verbose: bool, **flags: Any) -> None:
    """byok-keeper keeps imported (BYOK, Origin=EXTERNAL) asymmetric keys in Alibaba Cloud KMS
    usable by re-importing the identical sealed material before it expires or after it is
    deleted. It never rotates anything.

    \b
    Example (against a local emulator started with `aliyun-local serve`):
      byok-keeper seal-key new ./seal.key
      export BYOK_KMS_ENDPOINT=http://127.0.0.1:PORT BYOK_VAULT=file://./vault \\
             BYOK_SEAL_KEY_FILE=./seal.key
      byok-keeper enroll --create --key-spec RSA_2048 --usage SIGN/VERIFY \\
             --instance kst-local-software --generate --lease 30d
    """
    from .logs import configure

    app = ctx.ensure_object(App)
    app.config = config
    app.debug = debug
    app.flags.update({k: v for k, v in flags.items() if v is not None})
    configure(level=_log_level(debug, verbose))


def _log_level(debug: bool, verbose: bool) -> str:
    """DEBUG with --debug; else BYOK_LOG_LEVEL; else on a terminal WARNING unless -v (log
    lines would mix with the human output), and INFO off a terminal (JSON logs for machines)."""
    if debug:
        return "DEBUG"
    if os.environ.get("BYOK_LOG_LEVEL"):
        return os.environ["BYOK_LOG_LEVEL"]
    return "INFO" if verbose or not sys.stderr.isatty() else "WARNING"


# ---- seal-key ----------------------------------------------------------------------------------


@cli.group("seal-key")
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
    from .vault.sealers import new_seal_key_file

    key_ref = new_seal_key_file(path)
    app.emit({"path": path, "key_ref": key_ref}, f"created seal key {path} ({key_ref}, mode 0600)")


# ---- vault -------------------------------------------------------------------------------------


@cli.group("vault")
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
    from .factory import build_gateway
    from .kms import READ_ONLY
    from .vault import build_store
    from .vault.envelope import parse

    settings = app.settings
    gateway = (
        build_gateway(settings, READ_ONLY)
        if show_aliases or (settings.vault and settings.vault.startswith("kms-secrets:"))
        else None
    )
    store = build_store(settings.vault or "", gateway)
    rows = []
    for key_id in store.list_key_ids():
        data = store.read(key_id)
        if data is None:
            continue
        h = parse(data, expected_key_id=key_id).header
        rows.append(
            {
                "key_id": h.key_id,
                "key_spec": h.key_spec,
                "fingerprint": h.fingerprint,
                "lease": h.lease,
                "first_imported_at": h.first_imported_at,
                **({"aliases": _aliases_or_none(gateway, h.key_id)} if show_aliases else {}),
            }
        )
    lines = [f"{'KEY ID':<26} {'SPEC':<9} {'LEASE':<6} {'FIRST IMPORT':<21} FINGERPRINT"]
    lines += [
        f"{r['key_id']:<26} {r['key_spec']:<9} {r['lease']:<6} "
        f"{r['first_imported_at'] or '(incomplete)':<21} {r['fingerprint'][:16]}..."
        + (f"  {', '.join(r['aliases'] or ['-'])}" if show_aliases else "")
        for r in rows
    ]
    app.emit({"vault": store.uri, "keys": rows}, "\n".join(lines))


def _aliases_or_none(gateway, key_id: str) -> list[str] | None:
    """A key's aliases; None when KMS no longer has the key."""
    from .kms import KmsApiError

    try:
        return gateway.aliases_of(key_id)
    except KmsApiError as exc:
        if exc.code != "Forbidden.KeyNotFound":
            raise
        return None


# ---- enroll ------------------------------------------------------------------------------------


def _tags_from(pairs: tuple[str, ...]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--tag {pair!r}: expected KEY=VALUE")
        if key in tags:
            raise InputError(f"--tag {key} given twice")
        tags[key] = value
    return tags


def _read_policy(path: str) -> str:
    """The key policy file's text, read with a bound (KMS takes at most 32,768 bytes)."""
    from .enroll import MAX_POLICY_BYTES
    from .files import read_capped

    try:
        data, _stat = read_capped(path, MAX_POLICY_BYTES, "--policy")
        return data.decode("utf-8")
    except FileNotFoundError:
        raise InputError(f"cannot read --policy {path}: it does not exist") from None
    except UnicodeDecodeError:
        raise InputError(f"--policy {path} is not UTF-8 JSON") from None


def _load_material(
    material_path: str | None, generate: bool, key_spec: str | None, passphrase_env: str | None
):
    from .material import load_private_key, wipe

    if bool(material_path) == bool(generate):
        raise InputError("give exactly one of --material FILE or --generate")
    if generate:
        if not key_spec:
            raise InputError("--generate needs --key-spec")
        from .material import generate_material

        return generate_material(key_spec)
    passphrase = None
    if passphrase_env:
        value = os.environ.get(passphrase_env)
        if value is None:
            raise InputError(f"--passphrase-env {passphrase_env}: that variable is not set")
        passphrase = value.encode()
    from .files import read_capped

    try:  # a regular file of at most 1 MiB (a link to /dev/zero must not exhaust memory)
        data, _ = read_capped(material_path or "", 1024 * 1024, "--material")
    except FileNotFoundError:
        raise InputError(f"cannot read --material {material_path}: no such file") from None
    try:
        return load_private_key(data, key_spec=key_spec, passphrase=passphrase)
    finally:
        wipe(data)


@cli.command()
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
    """
    from .enroll import CreateRequest, check_console_fields
    from .enroll import enroll as run_enroll
    from .factory import build_gateway, build_vault
    from .kms import ENROLL
    from .lease import parse_lease

    if create == bool(key_id):
        raise InputError("give either --create (with --key-spec, --usage, --instance) or --key-id")
    if create and not (key_spec and usage and instance):
        raise InputError("--create needs --key-spec, --usage and --instance")
    if not create and (alias or tag_pairs or policy_path):
        raise InputError("--alias, --tag and --policy go with --create")
    request = (
        CreateRequest(
            key_spec or "",
            usage or "",
            instance or "",
            description,
            protection_level=protection_level or "",
            alias=alias,
            tags=_tags_from(tag_pairs),
            policy=_read_policy(policy_path) if policy_path else None,
        )
        if create
        else None
    )
    if request is not None:
        check_console_fields(request)  # before credentials, the vault or the material
    lease_policy = parse_lease(lease)
    settings = app.settings
    gateway = build_gateway(settings, ENROLL)
    vault = build_vault(settings, gateway)
    material = _load_material(material_path, generate, key_spec, passphrase_env)
    with material:
        result = run_enroll(
            gateway,
            vault,
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


# ---- the agent: plan, sweep, reimport, verify, status, hold ---------------------------------


def _agent(app: App, allowlist):
    from .factory import build_gateway, build_vault

    settings = app.settings
    gateway = build_gateway(settings, allowlist)
    return settings, gateway, build_vault(settings, gateway)


def _policy(settings: Settings):
    from datetime import timedelta

    from .plan import Policy

    return Policy(renew_before=timedelta(seconds=settings.renew_before_seconds))


def table(rows: list[list[str]], headers: list[str]) -> str:
    """Left-aligned columns with a header row."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*map(str, r)).rstrip() for r in [headers, *rows])


def _actor() -> str:
    import getpass

    try:
        return os.environ.get("BYOK_ACTOR") or getpass.getuser()
    except Exception:  # no user database entry (containers)
        return "unknown"


PROGRESS_MIN_KEYS = 25  # smaller fleets finish before a bar would help


def _progress_bar(label: str):
    """``(done, total)`` -> a one-line bar on stderr (callers use it on a terminal only),
    for fleets of ``PROGRESS_MIN_KEYS`` keys or more."""
    import threading

    lock = threading.Lock()

    def update(done: int, total: int) -> None:
        if total < PROGRESS_MIN_KEYS:
            return
        width = 30
        filled = width * done // total
        with lock:
            sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
            if done == total:
                sys.stderr.write("\n")
            sys.stderr.flush()

    return update


@cli.command("plan")
@click.option("--scan-account", is_flag=True, help="Also report EXTERNAL keys with no envelope.")
@click.option(
    "--aliases",
    "show_aliases",
    is_flag=True,
    help="Show each key's aliases beside its id (one ListAliasesByKeyId per key).",
)
@output_option
@click.pass_obj
def plan_cmd(app: App, scan_account: bool, show_aliases: bool) -> int:
    """Show what a sweep would do for every enrolled key. Changes nothing.

    Exit 3 when any key is due (REIMPORT or RENEW), 1 when a key could not be read, else 0
    (like terraform plan -detailed-exitcode, keeping 2 for usage errors).

    \b
    Example:
      byok-keeper plan --output json
    """
    from .kms import READ_ONLY
    from .plan import DUE
    from .plan import plan as make_plan
    from .sweep import decisions_json, discover

    settings, gateway, vault = _agent(app, READ_ONLY)
    policy = _policy(settings)
    facts, errors = discover(
        gateway,
        vault,
        policy=policy,
        details="all",
        scan_account=scan_account,
        concurrency=settings.concurrency,
        on_progress=_progress_bar("describing") if sys.stderr.isatty() else None,
    )
    decisions = make_plan(facts, gateway.now(), policy)
    aliases = {d.key_id: _aliases_or_none(gateway, d.key_id) for d in decisions if show_aliases}
    rows = [
        [
            d.key_id
            + (f" ({', '.join(aliases[d.key_id] or [])})" if aliases.get(d.key_id) else ""),
            d.key_spec,
            d.key_state,
            _expiry(d.key_state, d.material_expire_time),
            d.decision,
            d.reason,
        ]
        for d in decisions
    ]
    rows += [[k, "", "?", "", "ERROR", str(e)] for k, e in errors]
    shown = decisions_json(decisions)
    if show_aliases:
        shown = [{**row, "aliases": aliases.get(row["key_id"]) or []} for row in shown]
    payload = {
        "now": _fmt_time(gateway.now()),
        "decisions": shown,
        "errors": [{"key_id": k, "error": str(e)} for k, e in errors],
    }
    app.emit(payload, table(rows, ["KEY", "SPEC", "STATE", "EXPIRES", "DECISION", "REASON"]))
    if errors:
        return 1
    return EXIT_PENDING if any(d.decision in DUE for d in decisions) else 0


def _expiry(state: str, when) -> str:
    """A PendingImport key has no material, so no expiry: show '-' rather than 'never'."""
    return _fmt_time(when) if state in ("Enabled", "Disabled") else "-"


def _fmt_time(when) -> str:
    from .kms import format_kms_time

    return format_kms_time(when) if when else "never"


@cli.command("sweep")
@click.option("--dry-run", is_flag=True, help="Plan and check, import nothing (like plan).")
@click.option("--scan-account", is_flag=True, help="Also report EXTERNAL keys with no envelope.")
@click.option("--concurrency", type=click.IntRange(1, 64), help="Keys worked on at once.")
@output_option
@click.pass_obj
def sweep_cmd(app: App, dry_run: bool, scan_account: bool, concurrency: int | None) -> int:
    """Re-establish every key whose material is gone or near expiry.

    Exit 0 when every due key was restored (holds are not failures), 1 when any failed.

    \b
    Example:
      byok-keeper sweep --output json
    """
    from .audit import AuditLog
    from .kms import SWEEP
    from .logs import get_logger
    from .sweep import decisions_json, run_sweep

    settings, gateway, vault = _agent(app, SWEEP)
    show_bar = sys.stderr.isatty() and settings.output == "table"
    log = get_logger("byok_keeper.sweep")
    result = run_sweep(
        gateway,
        vault,
        policy=_policy(settings),
        dry_run=dry_run,
        scan_account=scan_account,
        concurrency=concurrency or settings.concurrency,
        audit=AuditLog(settings.audit_file),
        trigger="cli",
        actor=_actor(),
        on_outcome=(lambda o: click.echo(f"  {o.key_id}: {o.outcome}", err=True))
        if show_bar
        else None,
        on_progress=_progress_bar("describing") if show_bar else None,
        log=log.warning,
    )
    outcomes = sorted(result.outcomes, key=lambda o: o.key_id)
    rows = [
        [
            o.key_id,
            o.decision,
            o.outcome,
            o.key_state,
            _fmt_time(o.new_expiry) if o.new_expiry else "",
            o.reason,
        ]
        for o in outcomes
    ]
    summary = result.summary()
    payload = {
        "now": _fmt_time(result.now),
        "dry_run": dry_run,
        "summary": summary,
        "decisions": decisions_json(result.decisions),
        "outcomes": [o.to_json() for o in outcomes],
        "calls": result.stats,
    }
    human = table(rows, ["KEY", "DECISION", "OUTCOME", "STATE", "NEW EXPIRY", "REASON"])
    human += "\n" + ", ".join(f"{n} {k}" for k, n in sorted(summary.items()))
    app.emit(payload, human)
    return 1 if result.failed else 0


@cli.command("reimport")
@click.argument("key_id")
@click.option("--reason", required=True, help="Why (recorded in the audit event).")
@click.option("--dry-run", is_flag=True, help="Check everything, import nothing.")
@click.option("--override-hold", is_flag=True, help="Import even though the key is on hold.")
@click.option("--lease", help="New lease for this import (e.g. 30d, never).")
@output_option
@click.pass_obj
def reimport_cmd(
    app: App, key_id: str, reason: str, dry_run: bool, override_hold: bool, lease: str | None
) -> int:
    """Re-import one key's identical material now, printing each step.

    Refuses a key on hold unless --override-hold. Exit 0 restored, 1 failed or held, 2 refused
    input (a tampered or unreadable envelope, a wrong seal key, a bad argument).

    \b
    Example:
      byok-keeper reimport key-xxx --reason "INC-1234 material deleted by mistake"
    """
    from .audit import AuditLog
    from .kms import SWEEP
    from .lease import parse_lease
    from .reestablish import DRY_RUN, RENEWED, RESTORED, reestablish
    from .vault.envelope import check_key_id

    check_key_id(key_id)
    lease_override = parse_lease(lease) if lease else None
    settings, gateway, vault = _agent(app, SWEEP)
    outcome = reestablish(
        gateway,
        vault,
        key_id,
        decision="REIMPORT",
        override_hold=override_hold,
        dry_run=dry_run,
        lease_override=lease_override,
        on_step=lambda name, detail: app.progress(f"[reimport] {name}: {detail}"),
    )
    AuditLog(settings.audit_file).event(
        "key",
        trigger="cli-reimport",
        actor=_actor(),
        requested_reason=reason,
        override_hold=override_hold,
        dry_run=dry_run,
        **outcome.to_json(),
    )
    if outcome.bad_input:  # a tampered or unreadable envelope, a bad seal key: one line, exit 2
        raise InputError(f"{key_id}: {outcome.reason}")
    human = f"{key_id}: {outcome.outcome} - {outcome.reason}"
    app.emit(outcome.to_json(), human)
    return 0 if outcome.outcome in (RESTORED, RENEWED, DRY_RUN) else 1


@cli.command("verify")
@click.argument("key_ids", nargs=-1)
@output_option
@click.pass_obj
def verify_cmd(app: App, key_ids: tuple[str, ...]) -> int:
    """Check vault vs KMS identity and run a canary, without importing. All keys by default.

    \b
    Example:
      byok-keeper verify key-xxx key-yyy
    """
    from .kms import READ_ONLY
    from .verify import verify_key

    _settings, gateway, vault = _agent(app, READ_ONLY)
    results = [verify_key(gateway, vault, k) for k in (key_ids or vault.inventory())]
    rows = [[r["key_id"], r["result"], r["key_state"], r["detail"]] for r in results]
    app.emit({"results": results}, table(rows, ["KEY", "RESULT", "STATE", "DETAIL"]))
    return 0 if all(r["result"] in ("verified", "not-usable") for r in results) else 1


@cli.command("status")
@click.argument("key_id")
@output_option
@click.pass_obj
def status_cmd(app: App, key_id: str) -> int:
    """Everything known about one key (KMS, tags, envelope header); nothing secret.

    \b
    Example:
      byok-keeper status key-xxx --output json
    """
    from dataclasses import asdict

    from .kms import READ_ONLY, KmsApiError
    from .plan import EnvelopeFacts, KeyFacts, decide
    from .vault.envelope import check_key_id

    check_key_id(key_id)
    settings, gateway, vault = _agent(app, READ_ONLY)
    envelope = vault.get(key_id)
    try:
        key = gateway.describe_key(key_id)
        tags = gateway.list_tags(key_id)
        aliases = gateway.aliases_of(key_id)
    except KmsApiError as exc:
        if exc.code != "Forbidden.KeyNotFound":
            raise
        key, tags, aliases = None, {}, []
    env = envelope.header if envelope else None
    facts = KeyFacts(
        key_id,
        key,
        envelope is not None,
        EnvelopeFacts(env.fingerprint, env.key_spec, env.lease, env.first_imported_at is not None)
        if env
        else None,
        tags,
    )
    decision = decide(facts, gateway.now(), _policy(settings))
    kms_view = (
        {k: (_fmt_time(v) if hasattr(v, "tzinfo") else v) for k, v in asdict(key).items()}
        if key
        else None
    )
    envelope_view = {k: v for k, v in asdict(env).items() if k != "public_key_der"} if env else None
    payload = {
        "key_id": key_id,
        "kms": kms_view,
        "aliases": aliases,
        "tags": tags,
        "envelope": envelope_view,
        "decision": decision.decision,
        "reason": decision.reason,
    }
    lines = [f"key {key_id}", f"decision {decision.decision}: {decision.reason}"]
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


@cli.command("wrap")
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
    from .audit import AuditLog
    from .breakglass import upload_steps, wrap_for_console
    from .vault import Vault, build_sealer, build_store
    from .vault.envelope import check_key_id

    check_key_id(key_id)
    settings = app.settings
    gateway = None
    if (settings.vault or "").startswith("kms-secrets:") or settings.seal_kms_key_id:
        from .factory import build_gateway
        from .kms import READ_ONLY

        gateway = build_gateway(settings, READ_ONLY)  # the vault itself lives in KMS
    vault = Vault(
        build_store(settings.vault or "", gateway),
        build_sealer(
            seal_key_file=settings.seal_key_file,
            seal_kms_key_id=settings.seal_kms_key_id,
            gateway=gateway,
        ),
    )
    wrapped = wrap_for_console(vault, key_id, wrapping_key, output_path)
    AuditLog(settings.audit_file).event(
        "break_glass_wrap",
        key_id=key_id,
        fingerprint=wrapped.fingerprint,
        algorithm=wrapped.algorithm,
        output=output_path,
        actor=_actor(),
    )
    steps = upload_steps(wrapped)
    app.emit(
        {**wrapped.__dict__, "steps": steps},
        f"wrote {output_path} ({wrapped.key_spec}, {wrapped.algorithm}, fingerprint "
        f"{wrapped.fingerprint[:16]}...)\n" + "\n".join(steps),
    )
    return 0


@cli.command("hold")
@click.argument("key_id")
@click.option(
    "--reason",
    required=True,
    help="Why the key must not be restored: the tag value, so KMS's tag rule applies (at most "
    "128 letters, digits, spaces and / \\ _ - . + = : @; no commas).",
)
@output_option
@click.pass_obj
def hold_cmd(app: App, key_id: str, reason: str) -> int:
    """Put a key on hold: byok-keeper will not restore it until released.

    Deleting material is sometimes a deliberate kill switch; the hold is how you say so.

    \b
    Example:
      byok-keeper hold key-xxx --reason "INC-1234: compromised - material deleted on purpose"
    """
    from .factory import build_gateway
    from .kms import HOLD
    from .plan import HOLD_TAG
    from .tags import check_tag
    from .vault.envelope import check_key_id

    check_key_id(key_id)
    if not reason.strip():
        raise InputError("--reason must be non-empty: it is the hold tag's value")
    check_tag(HOLD_TAG, reason)  # the reason is the tag's value
    gateway = build_gateway(app.settings, HOLD)
    _refuse_pending_deletion(gateway.describe_key(key_id), "hold")
    gateway.tag_key(key_id, {HOLD_TAG: reason})
    from .audit import AuditLog

    AuditLog(app.settings.audit_file).event("hold", key_id=key_id, reason=reason, actor=_actor())
    app.emit({"key_id": key_id, "hold": reason}, f"{key_id} is on hold: {reason}")
    return 0


def _refuse_pending_deletion(key, verb: str) -> None:
    """KMS refuses tags on a PendingDeletion key (Rejected.PendingDeletion); say why first."""
    if key.key_state == "PendingDeletion":
        raise InputError(
            f"{key.key_id} is PendingDeletion: KMS refuses to tag it and byok-keeper never "
            f"restores it; cancel the deletion first to {verb} it"
        )


@cli.command("release")
@click.argument("key_id")
@output_option
@click.pass_obj
def release_cmd(app: App, key_id: str) -> int:
    """Release a hold: the next sweep restores the key if it is due.

    \b
    Example:
      byok-keeper release key-xxx
    """
    from .audit import AuditLog
    from .factory import build_gateway
    from .kms import HOLD
    from .plan import HOLD_TAG
    from .vault.envelope import check_key_id

    check_key_id(key_id)
    gateway = build_gateway(app.settings, HOLD)
    _refuse_pending_deletion(gateway.describe_key(key_id), "release")
    gateway.untag_key(key_id, [HOLD_TAG])
    AuditLog(app.settings.audit_file).event("release", key_id=key_id, actor=_actor())
    app.emit({"key_id": key_id, "hold": None}, f"{key_id} released")
    return 0


@cli.group("invoke")
def invoke_group() -> None:
    """Trigger the deployed FC functions with your own RAM identity (fc:InvokeFunction only).

    On-call engineers need no KMS permissions of their own: the function's role does the work.
    FC 3.0 by default: functions BYOK_FC_PREFIX-sweep and -reimport (prefix byok-keeper);
    BYOK_FC_API=2.0 for functions in the FC 2.0 service BYOK_FC_SERVICE.
    """


def _fc(app: App):
    """The FC client and where the functions are (FC 3.0 ``BYOK_FC_PREFIX``-named functions by
    default; ``BYOK_FC_API=2.0`` for functions in the FC 2.0 service ``BYOK_FC_SERVICE``)."""
    from .dispatch import FcTarget, build_fc_client

    settings = app.settings
    client = build_fc_client(
        region=settings.require_region(),
        account_id=settings.account_id or "",
        endpoint=settings.fc_endpoint,
        api=settings.fc_api,
    )
    return FcTarget.from_settings(settings), client


@invoke_group.command("reimport")
@click.argument("key_id")
@click.option("--reason", required=True, help="Why (recorded in the function's audit event).")
@click.option("--dry-run", is_flag=True)
@click.option("--async", "asynchronous", is_flag=True, help="Fire and forget (FC retries).")
@output_option
@click.pass_obj
def invoke_reimport(app: App, key_id: str, reason: str, dry_run: bool, asynchronous: bool) -> int:
    """Invoke the deployed reimport function for one key.

    The function never overrides a hold (anyone who may invoke it could ask): lift a hold with
    `byok-keeper release KEY` under your own identity first. Your user name travels in the
    event as requested_by and is audited as claimed_by, not as the actor.

    \b
    Example:
      BYOK_ACCOUNT_ID=1234567890123456 byok-keeper invoke reimport key-xxx --reason "INC-1"
    """
    from .dispatch import invoke
    from .vault.envelope import check_key_id

    check_key_id(key_id)
    target, client = _fc(app)
    event = {
        "key_id": key_id,
        "reason": reason,
        "requested_by": _actor(),
        "dry_run": dry_run,
    }
    result = invoke(client, target, "reimport", event, asynchronous=asynchronous)
    body = result["result"]
    payload = {"request_id": result["request_id"], "status": result["status"], "result": body}
    if asynchronous:
        app.emit(payload, f"sent (request id {result['request_id']})")
        return 0
    ok = isinstance(body, dict) and body.get("ok")
    human = f"{key_id}: {body.get('outcome') if isinstance(body, dict) else body}"
    if isinstance(body, dict):
        human += f" - {body.get('reason', '')}"
    app.emit(payload, human)
    return 0 if ok else 1


@invoke_group.command("sweep")
@click.option("--dry-run", is_flag=True)
@output_option
@click.pass_obj
def invoke_sweep(app: App, dry_run: bool) -> int:
    """Invoke the deployed sweep function now (as its timer would).

    \b
    Example:
      byok-keeper invoke sweep --dry-run
    """
    from .dispatch import invoke

    target, client = _fc(app)
    event = {
        "triggerTime": "",
        "triggerName": "manual",
        "payload": json.dumps({"dry_run": dry_run}),
    }
    result = invoke(client, target, "sweep", event, asynchronous=False)
    body = result["result"]
    app.emit({"request_id": result["request_id"], "result": body}, json.dumps(body, indent=2))
    return 0 if isinstance(body, dict) and body.get("ok") else 1


@cli.command("daemon")
@click.option(
    "--schedule",
    default="*/15 * * * *",
    show_default=True,
    help="Sweep schedule: 5-field crontab in UTC, or @every 15m.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    default="./byok-keeper-state",
    show_default=True,
    help="Where the job store (jobs.sqlite) lives; must be yours and not group/other-writable.",
)
@click.option(
    "--health-file",
    type=click.Path(dir_okay=False),
    help="JSON with the last run's time and outcome (default STATE_DIR/health.json).",
)
@click.option("--once", is_flag=True, help="Run one sweep and exit (0 ok, 1 some key failed).")
@click.option(
    "--metrics-addr",
    metavar="HOST:PORT",
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (not with --once).",
)
@click.pass_obj
def daemon_cmd(
    app: App,
    schedule: str,
    state_dir: str,
    health_file: str | None,
    once: bool,
    metrics_addr: str | None,
) -> int:
    """Run the sweep on a schedule (APScheduler, jobs kept in SQLite) until SIGTERM.

    Also places a one-shot job at each key's renewal moment. One job at a time, coalesced,
    with a misfire grace time; SIGTERM lets the key in flight finish, then exits 0.

    \b
    Example:
      byok-keeper daemon --schedule "*/15 * * * *" --state-dir /var/lib/byok-keeper \\
          --metrics-addr 127.0.0.1:9464
    """
    from .daemon import run_daemon

    state = Path(state_dir)
    return run_daemon(
        app.settings,
        schedule=schedule,
        state_dir=state,
        once=once,
        health_file=Path(health_file) if health_file else state / "health.json",
        metrics_addr=metrics_addr,
    )


@cli.command("report")
@click.option(
    "--html",
    "html_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Write the page here (one self-contained file: inline SVG, no scripts, no network).",
)
@click.option(
    "--schedule",
    default="*/15 * * * *",
    show_default=True,
    help="The sweep schedule, to mark the next sweep (crontab in UTC, or @every 15m).",
)
@click.option("--scan-account", is_flag=True, help="Also show EXTERNAL keys with no envelope.")
@output_option
@click.pass_obj
def report_cmd(app: App, html_path: str, schedule: str, scan_account: bool) -> int:
    """Draw the fleet: every key on a time axis from now to its material expiry, grouped by
    decision, renewal windows shaded, holds and alerts marked, the next sweep. Changes nothing.

    \b
    Example:
      byok-keeper report --html fleet.html
    """
    from .kms import READ_ONLY
    from .report import build_report, render_html, write_html

    settings, gateway, vault = _agent(app, READ_ONLY)
    fleet = build_report(
        gateway,
        vault,
        policy=_policy(settings),
        schedule=schedule,
        scan_account=scan_account,
        concurrency=settings.concurrency,
    )
    size = write_html(html_path, render_html(fleet))
    counts: dict[str, int] = {}
    for row in fleet.rows:
        counts[row.decision] = counts.get(row.decision, 0) + 1
    payload = {"path": html_path, "bytes": size, "keys": len(fleet.rows), "decisions": counts}
    app.emit(payload, f"wrote {html_path}: {len(fleet.rows)} keys, {size:,} bytes")
    return 0


@cli.command("demo")
@click.option("--keep", type=click.Path(file_okay=False), help="Keep the vault in this directory.")
@click.pass_obj
def demo_cmd(app: App, keep: str | None) -> int:
    """Run the whole story against an embedded emulator: enroll six keys, make trouble, plan,
    sweep, and check from outside that every restorable key is back. Exit 0 only if so.

    \b
    Example:
      byok-keeper demo
    """
    from .demo import run_demo

    return run_demo(echo=click.echo, keep=keep)


# ---- entry point -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from .hardening import harden_process

    harden_process()  # no core dumps, not dumpable, no SDK debug output: before anything else
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("BYOK_DEBUG") == "1"
    try:
        result = cli.main(args=args, prog_name="byok-keeper", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("byok-keeper: aborted", err=True)
        return 130
    except click.UsageError as exc:
        hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx else ""
        click.echo(f"byok-keeper: error: {exc.format_message()}{hint}", err=True)
        return 2
    except ByokError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"byok-keeper: error: {exc}", err=True)
        return exc.exit_code
    except Exception as exc:  # a bug or an unforeseen failure: one line, the type only
        if debug:
            traceback.print_exc()
        # Only the type: an SDK message can quote a request URL, which may carry material.
        click.echo(
            f"byok-keeper: error: unexpected {type(exc).__name__} (run with --debug for the "
            "traceback)",
            err=True,
        )
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

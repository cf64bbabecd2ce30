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
  BYOK_KMS_ENDPOINT   e.g. http://127.0.0.1:PORT for aliyun-local (https if no scheme)
  ALIBABA_CLOUD_REGION_ID, BYOK_VAULT (file://DIR or kms-secrets://PREFIX),
  BYOK_SEAL_KEY_FILE or BYOK_SEAL_KMS_KEY_ID, BYOK_OUTPUT (table|json)
Credentials: ALIBABA_CLOUD_ACCESS_KEY_ID / _SECRET / _SECURITY_TOKEN, a profile or a role.
Exit codes: 0 ok, 1 some keys failed or work is pending, 2 usage/config/input error."""


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
        "--output",
        type=click.Choice(["table", "json"]),
        expose_value=False,
        callback=callback,
        help="Output format (also BYOK_OUTPUT). json prints one JSON object on stdout.",
    )(f)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EPILOG_ENV,
)
@click.option("--config", type=click.Path(dir_okay=False), help="TOML settings file (BYOK_CONFIG).")
@click.option(
    "--region", help="Alibaba Cloud region (ALIBABA_CLOUD_REGION_ID; default cn-hangzhou)."
)
@click.option("--kms-endpoint", help="KMS endpoint override, with scheme (BYOK_KMS_ENDPOINT).")
@click.option("--vault", help="Vault URI: file://DIR or kms-secrets://PREFIX (BYOK_VAULT).")
@click.option("--seal-key-file", help="32-byte local seal key file (BYOK_SEAL_KEY_FILE).")
@click.option(
    "--seal-kms-key-id", help="Symmetric KMS key sealing envelopes (BYOK_SEAL_KMS_KEY_ID)."
)
@output_option
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, prog_name="byok-keeper")
@click.pass_context
def cli(ctx: click.Context, config: str | None, debug: bool, **flags: Any) -> None:
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
    app = ctx.ensure_object(App)
    app.config = config
    app.debug = debug
    app.flags.update({k: v for k, v in flags.items() if v is not None})


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
@output_option
@click.pass_obj
def vault_list(app: App) -> None:
    """List enrolled keys (key id, spec, fingerprint, lease, first import).

    \b
    Example:
      byok-keeper --vault file://./vault vault list --output json
    """
    from .factory import build_gateway
    from .kms import READ_ONLY
    from .vault import build_store
    from .vault.envelope import parse

    settings = app.settings
    gateway = (
        build_gateway(settings, READ_ONLY)
        if settings.vault and settings.vault.startswith("kms-secrets:")
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
            }
        )
    lines = [f"{'KEY ID':<26} {'SPEC':<9} {'LEASE':<6} {'FIRST IMPORT':<21} FINGERPRINT"]
    lines += [
        f"{r['key_id']:<26} {r['key_spec']:<9} {r['lease']:<6} "
        f"{r['first_imported_at'] or '(incomplete)':<21} {r['fingerprint'][:16]}..."
        for r in rows
    ]
    app.emit({"vault": store.uri, "keys": rows}, "\n".join(lines))


# ---- enroll ------------------------------------------------------------------------------------


def _load_material(
    material_path: str | None, generate: bool, key_spec: str | None, passphrase_env: str | None
):
    from .material import load_private_key, wipe

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
    try:
        data = bytearray(Path(material_path or "").read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read --material {material_path}: {exc.strerror}") from None
    try:
        return load_private_key(data, key_spec=key_spec, passphrase=passphrase)
    finally:
        wipe(data)


def generate_material(key_spec: str):
    """A fresh private key of ``key_spec``, made in memory from the OS CSPRNG."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from . import sm2
    from .material import load_private_key, wipe
    from .specs import key_spec as lookup

    spec = lookup(key_spec)
    if spec.curve == "SM2":
        scalar = sm2.Sm2PrivateKey.generate().scalar_bytes()
        try:
            return load_private_key(scalar, key_spec=spec.name)
        finally:
            wipe(scalar)
    if spec.rsa_bits:
        key = rsa.generate_private_key(public_exponent=65537, key_size=spec.rsa_bits)
    else:
        key = ec.generate_private_key(ec.SECP256R1() if spec.curve == "P-256" else ec.SECP256K1())
    der = bytearray(
        key.private_bytes(ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    )
    try:
        return load_private_key(der, key_spec=spec.name)
    finally:
        wipe(der)


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
@output_option
@click.pass_obj
def enroll(
    app: App,
    create: bool,
    key_id: str | None,
    key_spec: str | None,
    usage: str | None,
    instance: str | None,
    material_path: str | None,
    generate: bool,
    passphrase_env: str | None,
    lease: str,
    description: str,
) -> None:
    """Seal a key's material in the vault, then import it into KMS for the first time.

    Order: validate, (create), seal and write, read back and check, import, verify (state,
    expiry, public key, canary), record the first import, tag byok-keeper:managed. Re-running
    the same command after a crash finishes the job.

    \b
    Examples:
      byok-keeper enroll --create --key-spec EC_P256 --usage SIGN/VERIFY \\
          --instance kst-xxx --material ./ec.pem --lease 30d
      byok-keeper enroll --key-id key-xxx --material ./rsa.pem --passphrase-env KEY_PASS
    """
    from .enroll import CreateRequest
    from .enroll import enroll as run_enroll
    from .factory import build_gateway, build_vault
    from .kms import ENROLL
    from .lease import parse_lease

    if create == bool(key_id):
        raise InputError("give either --create (with --key-spec, --usage, --instance) or --key-id")
    if create and not (key_spec and usage and instance):
        raise InputError("--create needs --key-spec, --usage and --instance")
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
            create=CreateRequest(key_spec or "", usage or "", instance or "", description)
            if create
            else None,
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


# ---- entry point -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
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
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

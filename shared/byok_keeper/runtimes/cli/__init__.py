"""The ``byok-keeper`` command line. Thin: parse, build dependencies (``runtime.build_deps``),
call the core, render the result and map it to an exit code (``exits``: 0 ok, 1 failures,
2 usage/config/input, 3 pending work, 4 a key needs a person).

The group and ``main`` live here; the commands, one module per area: ``keys`` (enroll,
reimport, verify, status, hold, release, wrap), ``vault`` (seal-key, vault list), ``fleet``
(plan, sweep, report) and ``ops`` (invoke, daemon, demo).
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import click

from ... import __version__
from ...domain.errors import ByokError
from .app import App, output_option
from .fleet import plan_cmd, report_cmd, sweep_cmd
from .keys import enroll, hold_cmd, reimport_cmd, release_cmd, status_cmd, verify_cmd, wrap_cmd
from .ops import daemon_cmd, demo_cmd, invoke_group
from .vault import seal_key, vault_group

__all__ = ["App", "cli", "hold_cmd", "main"]

EPILOG_ENV = """\b
Settings come from flags, then the environment, then --config FILE (TOML):
  BYOK_KMS_ENDPOINT   e.g. http://127.0.0.1:PORT for aliyun-local (https if no scheme;
                      plain http only to 127.0.0.0/8, ::1 or localhost)
  ALIBABA_CLOUD_REGION_ID, BYOK_VAULT (file://DIR or kms-secrets://PREFIX),
  BYOK_SEAL_KEY_FILE, BYOK_SEAL_KMS_KEY_ID or BYOK_SEAL_PKCS11 (+ BYOK_PKCS11_PIN),
  BYOK_OUTPUT (table|json)
Credentials: ALIBABA_CLOUD_ACCESS_KEY_ID / _SECRET / _SECURITY_TOKEN, --profile NAME (the
aliyun CLI's ~/.aliyun/config.json, which also gives the region), or an instance/OIDC role.
Many accounts and regions: [[targets]] tables in the --config file (name, region, account_id,
role_arn, ...; see docs/TARGETS.md); plan, sweep and verify cover every target, --target NAME
narrows; enroll, reimport, status, hold and release take --target when the key is ambiguous.
Exit codes: 0 ok or nothing pending; 1 a failure (a key failed, KMS unreachable, an unexpected
error); 2 usage, configuration or input error; 3 plan: work is pending; 4 plan, sweep, verify,
daemon --once: a key needs a person (ALERT). The most urgent wins: 2 > 1 > 4 > 3 > 0.
Shell completion: eval "$(_BYOK_KEEPER_COMPLETE=bash_source byok-keeper)" (or zsh_source,
fish_source)."""


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
    "inline-keys": "fc-async: up to this many due keys the sweep restores itself, 0-1000 "
    "(BYOK_INLINE_KEYS; default 20).",
    "fc-api": "FC API: 3.0 (default) or 2.0 for accounts still on FC 2.0 (BYOK_FC_API).",
    "fc-prefix": "FC 3.0 function name prefix (BYOK_FC_PREFIX; default byok-keeper).",
    "fc-service": "FC 2.0 service name (BYOK_FC_SERVICE; default byok-keeper).",
    "budget-instances": "Instances sharing the budgets: each gets 1/N (BYOK_BUDGET_INSTANCES).",
    "budget-percent": "Percent of the budgets those instances share (BYOK_BUDGET_PERCENT; "
    "default 100).",
    "kms-timeout": "Seconds to wait for one KMS answer before retrying (BYOK_KMS_TIMEOUT).",
    "sweep-interval": "Longest gap between sweeps, e.g. 6h or the FC cron: renew what would "
    "come due before the next (BYOK_SWEEP_INTERVAL).",
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
    "--seal-pkcs11",
    metavar="URI",
    help="AES key in a PKCS#11 token sealing envelopes, an RFC 7512 URI with module-path= and "
    "pin-source=file:PATH (or BYOK_PKCS11_PIN); never pin-value (BYOK_SEAL_PKCS11).",
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
    from ...domain.logs import configure

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


for _command in (
    seal_key,
    vault_group,
    enroll,
    plan_cmd,
    sweep_cmd,
    reimport_cmd,
    verify_cmd,
    status_cmd,
    wrap_cmd,
    hold_cmd,
    release_cmd,
    invoke_group,
    daemon_cmd,
    report_cmd,
    demo_cmd,
):
    cli.add_command(_command)


# ---- entry point -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from ..hardening import harden_process

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
            # The cause our error was raised from (``from None``: never in the one line): its
            # types and a socket error's own text, never an SDK message (kms.errors.debug_cause).
            if getattr(exc, "debug_detail", ""):
                click.echo(f"byok-keeper: cause: {exc.debug_detail}", err=True)
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

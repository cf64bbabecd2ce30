"""The ``aliyun-local`` command line: serve a local Alibaba Cloud KMS for the real SDKs."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import NoReturn

from . import __version__
from .emulator import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    DEFAULT_ACCOUNT_ID,
    DEFAULT_REGION,
)
from .errors import ApiError
from .eventbridge import DEFAULT_DELIVERY_DELAY
from .faults import Faults
from .kms.settings import PROFILES, SETTINGS
from .server import LocalServer

DESCRIPTION = """\
aliyun-local serves a faithful local Alibaba Cloud KMS (API 2016-01-20) over HTTP, so the real
alibabacloud-kms20160120 SDK (ACS3-HMAC-SHA256) and the older aliyun-python-sdk-kms (RPC v1,
HMAC-SHA1) run against it unchanged. Key import really unwraps and checks material; signatures
and ciphertexts are real; the clock, latency, quotas and failures are under test control through
the unsigned admin API under /_local/ (see docs/EMULATOR.md).
"""

SERVE_EPILOG = """\
On start, one JSON line is printed on stdout, e.g.
  {"kms_endpoint": "127.0.0.1:38211", "admin_url": "http://127.0.0.1:38211/_local/", ...}
then the server runs until SIGINT or SIGTERM and exits 0.

Point the SDK at it with Config(endpoint=<kms_endpoint>, protocol="http",
access_key_id="local", access_key_secret="local-secret", region_id="cn-hangzhou") and unset
HTTP_PROXY/HTTPS_PROXY. Two KMS instances exist from the start: kst-local-software
(SOFTWARE) and kst-local-hardware (HSM, the only one that accepts EC_SM2).

Many accounts and regions: --account A --account B --region R1 --region R2 serves every
account in every region, one KMS endpoint per region ("kms_endpoints": {"R1": "HOST:PORT"}),
the account chosen by the credentials: local/local-secret for the first account,
local-<account id>/local-secret for the others. Each account has the role
acs:ram::<account>:role/byok-keeper, which every account may assume through STS AssumeRole at
"sts_endpoint" (API 2015-04-01). The admin API answers on every port.
"""


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if number <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return number


def _delay(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 <= number <= 600:
        raise argparse.ArgumentTypeError("must be 0-600 seconds")
    return number


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("must be 0-65535 (0 picks a free port)")
    return port


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line and exit code 2, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="aliyun-local",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"aliyun-local {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_serve(sub)
    return parser


def _add_serve(sub: argparse._SubParsersAction) -> None:
    """``aliyun-local serve``: where it listens and as whom, then how it behaves."""
    serve = sub.add_parser(
        "serve",
        help="serve the emulator until SIGINT/SIGTERM",
        description="Serve the KMS emulator until SIGINT/SIGTERM.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=0, help="port; 0 picks a free one (default)")
    serve.add_argument(
        "--state",
        type=Path,
        metavar="PATH",
        help="persist keys, material, tags, secrets and the clock offset in this JSON file "
        "(atomic writes, mode 0600); without it state lives in memory",
    )
    serve.add_argument(
        "--seed-state",
        type=Path,
        metavar="PATH",
        help="start from the state in PATH but keep changes in memory (benchmarks, drills)",
    )
    serve.add_argument("--access-key-id", default=DEFAULT_ACCESS_KEY_ID, metavar="ID")
    serve.add_argument("--access-key-secret", default=DEFAULT_ACCESS_KEY_SECRET, metavar="SECRET")
    serve.add_argument(
        "--security-token",
        metavar="TOKEN",
        help="require this STS security token with the access key (x-acs-security-token)",
    )
    serve.add_argument(
        "--region",
        action="append",
        metavar="REGION",
        help=f"a region to serve, one KMS endpoint each (repeatable; the first is the default "
        f"region; default {DEFAULT_REGION})",
    )
    serve.add_argument(
        "--account",
        "--account-id",
        dest="account",
        action="append",
        metavar="ACCOUNT_ID",
        help="an account (16 digits) to serve (repeatable; the first is the default account, "
        f"whose keys are --access-key-id; default {DEFAULT_ACCOUNT_ID})",
    )
    _add_serve_behaviour(serve)


def _add_serve_behaviour(serve: argparse.ArgumentParser) -> None:
    """``serve``'s answers: latency, quotas, the fidelity profile, FC runtimes, events."""
    serve.add_argument("--latency-ms", type=float, default=0.0, help="added to every KMS call")
    serve.add_argument("--read-qps", type=_positive, help="key-management read quota (429 above)")
    serve.add_argument("--write-qps", type=_positive, help="key-management write quota")
    serve.add_argument(
        "--documented-quotas",
        action="store_true",
        help="enforce the documented quotas: 50 read, 30 write, 10 CreateKey, 200 asymmetric "
        "crypto and 300 ListResourceTags QPS",
    )
    serve.add_argument(
        "--profile",
        choices=PROFILES,
        default="default",
        help="how to answer where Alibaba's documentation is silent or disagrees: 'default' "
        "(the documented or most likely answer) or 'strict' (the most hostile answer of each; "
        "see docs/FIDELITY.md)",
    )
    serve.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one setting of the profile (repeatable), e.g. "
        "--set disabled_key_after_import=Enabled; settings: " + ", ".join(SETTINGS),
    )
    serve.add_argument(
        "--fc-runtime",
        action="append",
        default=[],
        metavar="RUNTIME=PYTHON",
        help="run FC functions of RUNTIME under the interpreter PYTHON (repeatable), e.g. "
        "--fc-runtime python3.12=/usr/bin/python3.11 for a drill on a machine without 3.12 "
        "(package with deploy/package.py --python-version 3.11 then); default: pythonX.Y on PATH",
    )
    serve.add_argument(
        "--wrapping-key-pool",
        type=_pool_size,
        default=0,
        metavar="N",
        help="make N fresh RSA wrapping keys before serving (default 0: a small pool filled in "
        "the background); for benchmarks, which should not time the emulator's own key "
        "generation, a cost the real service bears on its side",
    )
    serve.add_argument(
        "--event-delay",
        type=_delay,
        default=DEFAULT_DELIVERY_DELAY,
        metavar="SECONDS",
        help="seconds from a KMS write to its EventBridge delivery to FC eventbridge triggers "
        f"(default {DEFAULT_DELIVERY_DELAY}; real delivery takes seconds; "
        "also POST /_local/events/config)",
    )


def _pool_size(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if not 0 <= number <= 100_000:
        raise argparse.ArgumentTypeError("must be from 0 to 100000")
    return number


def _runtimes(pairs: list[str]) -> dict[str, str]:
    """``--fc-runtime RUNTIME=PYTHON`` pairs -> {runtime: interpreter}."""
    out: dict[str, str] = {}
    for pair in pairs:
        runtime, sep, python = pair.partition("=")
        if not sep or not runtime or not python:
            raise ValueError(f"--fc-runtime {pair!r}: expected RUNTIME=PYTHON")
        out[runtime] = python
    return out


def _settings(profile: str, pairs: list[str]) -> dict[str, object]:
    """``--profile`` and ``--set NAME=VALUE`` -> the emulator's settings (JSON values)."""
    out: dict[str, object] = {"profile": profile}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or name not in SETTINGS:
            raise ValueError(f"--set {pair!r}: expected NAME=VALUE with NAME one of the settings")
        try:
            out[name] = json.loads(raw)
        except ValueError:
            out[name] = raw  # a bare string: --set disabled_key_after_import=Enabled
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "serve":
        parser.print_help()
        return 0 if args.command is None else 2
    if args.latency_ms < 0:
        parser.error("--latency-ms must be 0 or more")
    if args.state and args.seed_state:
        parser.error("give --state or --seed-state, not both")

    try:
        settings = _settings(args.profile, args.set)
        runtimes = _runtimes(args.fc_runtime)
        server = LocalServer(
            args.host,
            args.port,
            state_path=args.state,
            seed_path=args.seed_state,
            access_key_id=args.access_key_id,
            access_key_secret=args.access_key_secret,
            security_tokens={args.access_key_id: args.security_token}
            if args.security_token
            else None,
            regions=args.region or [DEFAULT_REGION],
            accounts=args.account or [DEFAULT_ACCOUNT_ID],
            settings=settings,
            fc_runtimes=runtimes,
            event_delivery_delay=args.event_delay,
        )
    except ApiError as exc:
        parser.error(f"--set: {exc.message}")
    except ValueError as exc:
        parser.error(str(exc))
    except OSError as exc:
        print(
            f"aliyun-local: cannot listen on {args.host}:{args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    faults: dict[str, object] = {"latency_ms": args.latency_ms}
    if args.documented_quotas:
        faults["quotas"] = "documented"
    if args.read_qps:
        faults["read_qps"] = args.read_qps
    if args.write_qps:
        faults["write_qps"] = args.write_qps
    server.emulator.faults = Faults.from_json(faults)
    if args.wrapping_key_pool:
        server.emulator.kms.key_pool.prefill(args.wrapping_key_pool)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    print(
        json.dumps(
            {
                "kms_endpoint": server.endpoint,
                "kms_endpoints": server.kms_endpoints,
                "sts_endpoint": server.sts_endpoint,
                "fc_endpoint": server.endpoint,
                "admin_url": f"{server.url}/_local/",
                "region": server.region,
                "access_key_id": args.access_key_id,
                "access_key_ids": {a: server.access_key(a)[0] for a in server.accounts},
                "state": str(args.state) if args.state else None,
                "settings": server.emulator.kms.settings.to_json(),
                "fc_runtimes": runtimes,
            }
        ),
        flush=True,
    )
    while not stop.wait(0.5):
        pass
    server.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

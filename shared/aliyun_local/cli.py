"""The ``aliyun-local`` command line (the emulator itself arrives with its issue)."""

from __future__ import annotations

import sys

from . import __version__

USAGE = """\
usage: aliyun-local [--help] [--version]

aliyun-local will serve a faithful local Alibaba Cloud KMS over HTTP for the real SDK.
Not yet available: serve.
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if args[0] == "--version":
        sys.stdout.write(f"aliyun-local {__version__}\n")
        return 0
    sys.stderr.write(f"aliyun-local: command {args[0]!r} is not available yet (see --help)\n")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

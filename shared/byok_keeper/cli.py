"""The ``byok-keeper`` command line.

Only ``--version`` and ``--help`` exist so far: enrollment, plan, sweep and re-import arrive
with their issues. The command says so instead of pretending.
"""

from __future__ import annotations

import sys

from . import __version__

USAGE = """\
usage: byok-keeper [--help] [--version]

byok-keeper keeps imported (BYOK, Origin=EXTERNAL) asymmetric keys in Alibaba Cloud KMS usable
by re-importing the identical sealed material before it expires or after it is deleted.

Not yet available: enroll, plan, sweep, reimport, verify, hold. Today the library provides the
key-material core (byok_keeper.material, byok_keeper.wrapping); see README.md.
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if args[0] == "--version":
        sys.stdout.write(f"byok-keeper {__version__}\n")
        return 0
    sys.stderr.write(f"byok-keeper: command {args[0]!r} is not available yet (see --help)\n")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

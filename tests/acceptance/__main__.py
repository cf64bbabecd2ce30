"""``python -m tests.acceptance``: see tests/acceptance/__init__.py."""

import sys

from .run import main

sys.exit(main())

"""``python -m byok_keeper.runtimes.cli``: the same as the ``byok-keeper`` console script."""

import sys

from . import main

sys.exit(main())

"""``python -m cnnserve``: the ``cnnserve`` console script without the installed entry point."""

import sys

from cnnserve.cli import main

sys.exit(main())

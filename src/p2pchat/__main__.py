"""``python -m p2pchat``: the ``p2pchat`` command, for when it is not on PATH."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

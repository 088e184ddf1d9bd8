"""``python -m skcicm``: the same as the ``skcicm`` command."""

import sys

from skcicm.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""``python -m secagg.cli``: the command line with this interpreter (used by subprocesses)."""

import sys

from secagg.cli import main

if __name__ == "__main__":
    sys.exit(main())

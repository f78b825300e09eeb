"""``python -m secagg``: the ``secagg`` command line without the console script."""

import sys

from secagg.cli import main

if __name__ == "__main__":
    sys.exit(main())

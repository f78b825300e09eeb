"""``python -m secagg.vectors``: see :mod:`secagg.vectors.cli`."""

import sys

from secagg.vectors.cli import main

sys.exit(main())

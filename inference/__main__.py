"""``python -m inference segment ...``: see :mod:`inference.cli`."""

import sys

from inference.cli import main

sys.exit(main())

"""`python -m messenger.cli`: the same as the `chinwag-cli` console script."""

import sys

from .quick import main

sys.exit(main())

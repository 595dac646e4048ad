"""Logging set-up shared by the window and the CLI."""

from __future__ import annotations

import logging


def configure_logging(verbose: int) -> None:
    """WARNING by default, INFO with -v, DEBUG with -vv, for our loggers and stem's."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # stem sets its own logger to its lowest level, so every control-port command would
    # reach the terminal whatever -v says: it follows ours instead.
    logging.getLogger("stem").setLevel(level)

"""Entry point of the desktop app.

The window itself is the desktop-app issue's work; until it lands, `chinwag` says so and
points at the headless front end, which runs the same peer service.
"""

from __future__ import annotations

import sys


def main() -> int:
    print(
        "The Chinwag desktop window is not built yet.\n"
        "Use the headless client, which runs the same peer service:\n\n"
        "  .venv/bin/chinwag-cli init --name 'Your Name'\n"
        "  .venv/bin/chinwag-cli run\n\n"
        "See README.md for a tour.",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

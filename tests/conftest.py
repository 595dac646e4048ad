"""Shared test setup. Every test has a timeout (pyproject: timeout = 120)."""

from __future__ import annotations

import os

# Qt tests never need a screen; the Xvfb smoke test sets its own DISPLAY.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Tests must never touch a real user's keyring or profile.
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
# Every `chinwag-cli run` started from here stays off Tor (it would try the public
# network); Tor tests and benchmarks configure their peers' tor explicitly.
os.environ["CHINWAG_NO_TOR"] = "1"
os.environ.pop("CHINWAG_PROFILE", None)
os.environ.pop("CHINWAG_PASSPHRASE", None)

"""Shared test setup. Every test has a timeout (pyproject: timeout = 120)."""

from __future__ import annotations

import gc
import os
import sys

import pytest

# Qt tests never need a screen; the Xvfb smoke test sets its own DISPLAY.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Tests must never touch a real user's keyring or profile.
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
# Every `chinwag-cli run` started from here stays off Tor (it would try the public
# network); Tor tests and benchmarks configure their peers' tor explicitly.
os.environ["CHINWAG_NO_TOR"] = "1"
os.environ.pop("CHINWAG_PROFILE", None)
os.environ.pop("CHINWAG_PASSPHRASE", None)


# -- the garbage collector once Qt is loaded -------------------------------------------------
#
# Left alone, Python's cyclic collector runs in whichever thread happens to allocate: in the
# network tests often a service's database thread. A QObject left over from a Qt test in a
# reference cycle is then deleted on that thread, behind Qt's back; its timers stay
# registered with the GUI thread, and pytest-qt's event processing around a later test
# crashes on them (a segfault in tests/net, only when a Qt test ran before it: random order
# showed it). The app collects on its GUI thread only (ui/app.py, MainThreadCollector); the
# suite does the same once a QApplication exists: no automatic collection, and between
# tests a collection of the generations that are due, on the main thread.


def _qt_application_exists() -> bool:
    widgets = sys.modules.get("PySide6.QtWidgets")
    return widgets is not None and widgets.QApplication.instance() is not None


def _collect_due_generations() -> None:
    counts = gc.get_count()
    due = -1
    for generation, (count, limit) in enumerate(zip(counts, _THRESHOLDS, strict=True)):
        if count > limit:
            due = generation
    if due >= 0:
        gc.collect(due)


_THRESHOLDS = gc.get_threshold()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    try:
        return (yield)
    finally:
        if _qt_application_exists():
            gc.disable()  # for good: this process is a Qt application now
            _collect_due_generations()


_session_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """What is left in cycles is freed now, on this thread, while the QApplication lives:
    not by the interpreter's last collection at exit, after Qt is gone."""
    _session_status.append(int(exitstatus))
    if _qt_application_exists():
        gc.collect()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """After everything is reported: a process that ran Qt tests leaves without the
    interpreter's finalisation. Whole-suite runs (random order, Qt, network and Tor tests
    in one process) sometimes crashed there (exit 139, after every test had passed and
    been reported, with no Python frame), as Qt objects were torn down after the
    QApplication. The exit status is the session's own. This matches an upstream PySide6
    bug, an intermittent segfault in interpreter teardown that depends on unrelated code
    (bugreports.qt.io PYSIDE-2254, enthought/envisage#476)."""
    if _qt_application_exists() and _session_status:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_session_status[-1])

"""Smoke test: the real `chinwag` (python -m ui.app) on a real X server (Xvfb), seen by
the X server as a window named Chinwag, then stopped with SIGTERM and shutting down
cleanly. Skipped where Xvfb or xwininfo (x11-utils) is not installed."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from messenger import PeerService
from tests.ui.conftest import peer_config

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed"),
    pytest.mark.skipif(
        shutil.which("xwininfo") is None, reason="xwininfo (x11-utils) is not installed"
    ),
]


def _start_xvfb() -> tuple[subprocess.Popen[bytes], int]:
    """Xvfb on a display number it picks itself (-displayfd): two test runs at once never
    race for the same free-looking number."""
    read_end, write_end = os.pipe()
    try:
        screen = ["-screen", "0", "1280x800x24", "-nolisten", "tcp"]
        xvfb = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_end), *screen],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(write_end,),
        )
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        line = answer.readline()  # written once the server is ready; EOF if it failed
    if not line.strip().isdigit():
        _stop(xvfb)
        raise RuntimeError(f"Xvfb did not start (exit {xvfb.returncode})")
    return xvfb, int(line)


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int | None:
    """Terminate one process we started (by its PID), then kill it if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def _windows(env: dict[str, str]) -> str:
    result = subprocess.run(
        ["xwininfo", "-root", "-tree"], env=env, capture_output=True, text=True, timeout=10
    )
    return result.stdout


@dataclass
class Window:
    """`chinwag` running on its own Xvfb, its window shown; output in `log`."""

    app: subprocess.Popen[bytes]
    xvfb: subprocess.Popen[bytes]
    env: dict[str, str]
    log: Path


@contextlib.contextmanager
def chinwag_window(qloop, tmp_path: Path, name: str) -> Iterator[Window]:
    """A fresh profile named `name`, and the real app started on it under a new Xvfb,
    until the X server lists a window named Chinwag. Both processes end afterwards."""
    profile = tmp_path / "profile"
    service, _ = qloop.run(
        PeerService.create_profile(profile, name, None, config=peer_config(network=False))
    )
    qloop.run(service.aclose())
    xvfb, display = _start_xvfb()
    app: subprocess.Popen[bytes] | None = None
    log = tmp_path / "chinwag.log"
    try:
        env = {
            **os.environ,
            "DISPLAY": f":{display}",
            "QT_QPA_PLATFORM": "xcb",
            "CHINWAG_PROFILE": str(profile),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        }
        env.pop("CHINWAG_PASSPHRASE", None)
        env.pop("WAYLAND_DISPLAY", None)
        with log.open("wb") as out:
            app = subprocess.Popen(
                [sys.executable, "-m", "ui.app", "--listen", "127.0.0.1:0"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 40
        while "Chinwag" not in _windows(env):
            if app.poll() is not None:
                pytest.fail(f"chinwag exited with {app.returncode}:\n{log.read_text()}")
            assert time.monotonic() < deadline, f"no Chinwag window:\n{log.read_text()}"
            time.sleep(0.2)
        yield Window(app, xvfb, env, log)
    finally:
        if app is not None:
            _stop(app)
        _stop(xvfb)


@pytest.mark.timeout(90)
def test_chinwag_shows_its_window_under_xvfb(qloop, tmp_path):
    with chinwag_window(qloop, tmp_path, "Smoke Test") as window:
        assert '"Chinwag"' in _windows(window.env)
        code = _stop(window.app, timeout=15)
        text = window.log.read_text()
        assert code == 0, f"chinwag did not shut down cleanly ({code}):\n{text}"
        assert "Traceback" not in text


@pytest.mark.timeout(90)
def test_chinwag_stops_plainly_when_the_display_goes_away(qloop, tmp_path):
    """The X server dies under the window (a session ending): Chinwag says so and exits
    with 1, without a traceback, and leaves its profile usable."""
    with chinwag_window(qloop, tmp_path, "Display Test") as window:
        window.xvfb.kill()  # the display goes away at once, as when a session ends
        window.xvfb.wait(10)
        code = window.app.wait(30)
        text = window.log.read_text()
        assert code == 1, f"exit {code}:\n{text}"
        assert "the display went away" in text
        assert "Traceback" not in text
    # The profile opens again (lock released, database intact).
    again = qloop.run(
        PeerService.open(tmp_path / "profile", None, config=peer_config(network=False))
    )
    assert again.display_name == "Display Test"
    qloop.run(again.aclose())

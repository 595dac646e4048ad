"""A flood of silent connections does not lock a contact out (issue 14, item 2).

Alice runs with the usual small descriptor limit lowered further (256) and a stranger
opens 1,000 connections to her at once and says nothing. Every accepted socket counts
against the caps on unauthenticated connections from accept() on (before, a connection
waiting in the first-bytes peek was not counted, and all 1,000 were accepted), so
Alice's descriptors stay well under her limit, and Bob, coming from another address,
connects and chats during the flood."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from .test_cli import ENV, cli, cli_json

pytestmark = [pytest.mark.timeout(180)]

FLOOD = 1000
NOFILE = 256

FLOODER = textwrap.dedent(
    """
    import resource, socket, sys, time
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 100), hard))

    def opened():
        s = socket.socket()
        s.bind(("127.0.0.3", 0))  # the stranger's own address
        s.setblocking(False)
        try:
            s.connect((host, port))
        except (BlockingIOError, OSError):
            pass
        return s

    held = [opened() for _ in range(count)]
    print("flooding", len(held), flush=True)
    while True:  # keep `count` silent connections open: replace every one that closes
        for i, s in enumerate(held):
            try:
                if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                    raise ConnectionResetError
            except BlockingIOError:
                continue
            except OSError:
                s.close()
                held[i] = opened()
        time.sleep(0.1)
    """
)


class PeakDescriptors:
    """The most descriptors a process had open, sampled on a thread until stopped."""

    def __init__(self, pid: int) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(pid,), daemon=True)
        self._thread.start()

    def _sample(self, pid: int) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, len(os.listdir(f"/proc/{pid}/fd")))
            except FileNotFoundError:
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.peak


def _run(profile: Path, *, nofile: int | None = None) -> subprocess.Popen[str]:
    def limit() -> None:
        if nofile is not None:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))

    command = ["-m", "messenger.cli", "--profile", str(profile), "run", "--listen"]
    return subprocess.Popen(
        [sys.executable, *command, "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=ENV,
        preexec_fn=limit,  # only setrlimit, before exec
    )


class Lines:
    """A process's stdout lines, read on a thread, to wait for one."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait(self, text: str, timeout: float = 60.0, start: int = 0) -> int:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index in range(start, len(self.lines)):
                    if text in self.lines[index]:
                        return index
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no line with {text!r}: {self.lines}")
                self._changed.wait(left)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/PID/fd")
def test_a_contact_connects_and_chats_during_a_flood_of_silent_connections(tmp_path):
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    cli(alice, "init", "--name", "Alice", "--no-passphrase")
    cli(bob, "init", "--name", "Bob", "--no-passphrase")
    started: list[subprocess.Popen[str]] = []
    try:
        a = _run(alice, nofile=NOFILE)
        started.append(a)
        a_lines = Lines(a)
        a_lines.wait("is online")
        port = cli_json(alice, "whoami")["listen_port"]
        cli(bob, "accept", cli_json(alice, "invite")["code"])  # Bob is a contact, offline

        descriptors = PeakDescriptors(a.pid)
        flooder = subprocess.Popen(
            [sys.executable, "-c", FLOODER, "127.0.0.1", str(port), str(FLOOD)],
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(flooder)
        assert flooder.stdout is not None
        assert flooder.stdout.readline().startswith(f"flooding {FLOOD}")

        b = _run(bob)  # Bob starts during the flood and dials Alice from 127.0.0.1
        started.append(b)
        b_lines = Lines(b)
        b_lines.wait("* Alice is online")
        cli(bob, "send", "Alice", "through the flood")
        a_lines.wait("Bob: through the flood")
        peak = descriptors.stop()
        assert flooder.poll() is None, "the flood ended before the chat"
        assert a.poll() is None, "alice died under the flood"
        # Her own (~15), at most 16 strangers from one host; refused sockets are closed
        # as they are accepted (before the fix: all 256 in use and accept() failing).
        print(f"peak descriptors during the flood: {peak} of {NOFILE}")
        assert peak < NOFILE // 4, f"{peak} descriptors open during the flood"
    finally:
        for proc in reversed(started):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)

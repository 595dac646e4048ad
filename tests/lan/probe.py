"""What the hostile-LAN test and benchmark watch in a running peer: its control socket
answering `lan` again and again (a stalled event loop shows up as slow or missing
answers) and its resident memory."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from pathlib import Path

ROOT = str(Path(__file__).parents[2])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class LoopProbe:
    """Asks a running peer for its LAN status over the control socket, again and again,
    and records how long each answer took. A failure to get an answer ends the probe and
    is kept in `error`."""

    def __init__(self, profile: Path, pause: float = 0.1) -> None:
        self.path = str(profile / "control.sock")
        self.pause = pause
        self.latencies: list[float] = []
        self.status: dict = {}
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _ask(self) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(self.path)
            sock.sendall(json.dumps({"cmd": "lan", "args": {}}).encode() + b"\n")
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the peer closed the control connection")
                answer += chunk
        return json.loads(answer)["result"]

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                start = time.monotonic()
                self.status = self._ask()
                self.latencies.append(time.monotonic() - start)
                self._stop.wait(self.pause)
        except BaseException as exc:  # kept for the test to report
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def mallory(host, *args: str, timeout: float = 60) -> str:  # type: ignore[no-untyped-def]
    """Run one tests.lan.hostile action on a host and return what it printed."""
    result = host.exec(sys.executable, "-m", "tests.lan.hostile", host.ip, *args, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result.stdout

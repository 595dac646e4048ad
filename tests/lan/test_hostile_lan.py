"""A hostile host on the LAN: floods, malformed and conflicting records, replayed tokens.

The peers must stay responsive, keep their memory bounded, show no noise (no presence
flapping, a Nearby list that stays capped and stable) and dial advertised addresses at a
bounded rate."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import Lan, bodies, cli, cli_json, contacts, make_profiles, wait_until

pytestmark = [pytest.mark.lan, pytest.mark.timeout(180)]

ROOT = str(Path(__file__).parents[2])


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class LoopProbe:
    """Asks a running peer for its LAN status over the control socket, again and again,
    and records how long each answer took (a stalled event loop shows up here)."""

    def __init__(self, profile: Path) -> None:
        self.path = str(profile / "control.sock")
        self.latencies: list[float] = []
        self.status: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(10)
                sock.connect(self.path)
                sock.sendall(json.dumps({"cmd": "lan", "args": {}}).encode() + b"\n")
                answer = b""
                while not answer.endswith(b"\n"):
                    answer += sock.recv(65536)
            self.latencies.append(time.monotonic() - start)
            self.status = json.loads(answer)["result"]
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def _mallory(host, *args: str, timeout: float = 60) -> str:
    result = host.exec(sys.executable, "-m", "tests.lan.hostile", host.ip, *args, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_floods_garbage_and_conflicts_stay_quiet(lan: Lan, tmp_path) -> None:
    profiles = make_profiles(tmp_path, ["alice", "bob"], [("alice", "bob")])
    hosts = {name: lan.add_host(name) for name in ("alice", "bob", "mallory")}
    runners = {name: hosts[name].run(profiles[name]) for name in profiles}
    runners["bob"].wait_line("* Alice is online")
    runners["alice"].wait_line("* Bob is online")
    for name in profiles:  # both visible: they get a Nearby list the fakes could fill
        cli(profiles[name], "set", "visible", "true")
    bob_pid = runners["bob"].proc.pid
    time.sleep(1.0)
    rss_before = _rss_kib(bob_pid)
    lines_before = {name: len(runners[name].lines) for name in profiles}
    probe = LoopProbe(profiles["bob"])
    conflict = hosts["mallory"].popen(
        sys.executable,
        "-m",
        "tests.lan.hostile",
        hosts["mallory"].ip,
        "conflict",
        "20",
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    started = time.monotonic()
    print(_mallory(hosts["mallory"], "flood", "1000"))
    print(_mallory(hosts["mallory"], "ptr-only", "500"))
    print(_mallory(hosts["mallory"], "garbage", "400"))
    print(_mallory(hosts["mallory"], "flood", "1000"))
    attack = time.monotonic() - started
    time.sleep(3.0)
    probe.stop()
    conflict.kill()
    conflict.wait()
    status = probe.status
    print(
        f"attack {attack:.1f} s; control answers: n={len(probe.latencies)}, "
        f"max {max(probe.latencies) * 1000:.0f} ms; status {status}"
    )
    # The loop kept answering within a fraction of a second, all along.
    assert len(probe.latencies) >= 10
    assert max(probe.latencies) < 1.0, probe.latencies
    # Bounded: a Nearby list of at most 32 (the first fakes to arrive; it does not churn),
    # a directory of at most that plus a few entries per contact, bounded lookups.
    assert status["nearby"] <= 32 and status["entries"] <= 32 + 4
    assert status["ignored"] >= 1000
    nearby = cli_json(profiles["bob"], "nearby")["people"]
    assert len(nearby) <= 32 and all(p["name"].startswith("Fake person") for p in nearby)
    rss_growth_mib = (_rss_kib(bob_pid) - rss_before) / 1024
    print(f"bob's RSS grew by {rss_growth_mib:.1f} MiB")
    assert rss_growth_mib < 40
    # No noise: neither peer printed anything during the attack (no presence changes).
    for name in profiles:
        assert runners[name].lines[lines_before[name] :] == [], runners[name].lines
        assert runners[name].proc.poll() is None
    # And they still talk.
    assert contacts(profiles["bob"])["Alice"]["online"]
    cli(profiles["alice"], "send", "bob", "still here")
    wait_until(lambda: bodies(profiles["bob"], "alice") == ["still here"], 15)


def test_replayed_tokens_cause_rate_limited_dials(lan: Lan, tmp_path) -> None:
    profiles = make_profiles(tmp_path, ["alice", "bob"], [("alice", "bob")])
    hosts = {name: lan.add_host(name) for name in ("alice", "bob", "mallory")}
    mallory = hosts["mallory"]
    sink_ip, sink_port = "10.77.0.99", 4444
    mallory.add_address(f"{sink_ip}/24")
    sink = mallory.popen(
        sys.executable,
        "-m",
        "tests.lan.hostile",
        mallory.ip,
        "sink",
        "40",
        str(sink_port),
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert sink.stdout is not None and sink.stdout.readline().strip() == "listening"
    # Mallory records every token it hears and replays it, pointing at her sink.
    replay = mallory.popen(
        sys.executable,
        "-m",
        "tests.lan.hostile",
        mallory.ip,
        "replay",
        "30",
        sink_ip,
        str(sink_port),
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    runners = {name: hosts[name].run(profiles[name]) for name in profiles}
    runners["bob"].wait_line("* Alice is online")
    stopped = time.monotonic()
    runners["alice"].stop()
    runners["bob"].wait_line("* Alice is offline", after=stopped)
    # Alice is gone; her (still valid) token keeps being replayed from the sink's address,
    # five fresh services a second. Bob tries it, at a bounded rate, and finds nobody.
    time.sleep(12.0)
    window = time.monotonic() - stopped
    sink.kill()
    out, _ = sink.communicate()
    replay.kill()
    replay.wait()
    # The sink printed a line per connection it accepted (each closed at once).
    attempts = sum(1 for line in out.splitlines() if line.startswith("connection "))
    print(f"{attempts} connection attempts to the replayed address in {window:.1f} s")
    assert attempts >= 1  # the replayed token was believed (it is valid for its epoch) ...
    assert attempts <= 2 * window + 4  # ... but tried about once a second, not 5 times
    assert not [line for _, line in runners["bob"].lines if "Alice is online" in line][1:]

"""A transfer survives SIGKILL of either side: `chinwag-cli run` processes, real sockets.

The receiver resumes from the bitmap it had saved (every chunk in it was verified and
flushed first) and fetches only the rest; the sender, restarted, serves the rest.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from .test_cli import cli, cli_json, wait_until
from .test_files import MiB, digest, random_file

pytestmark = pytest.mark.slow

SIZE = 32 * MiB  # 32 chunks: enough to stop in the middle; more would prove nothing more
CHUNKS = 32
# The receiver's rate limit until the kill: 16 s for the whole file, so the kill (after a
# quarter, seen by polling the CLI) comes mid-way even on a slow, busy machine. It is a
# margin for the polling, not a measured time; it is lifted once the kill is done.
SLOW = 2 * MiB


def _setup(tmp_path: Path, runners):
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    cli(alice, "init", "--name", "Alice", "--no-passphrase")
    cli(bob, "init", "--name", "Bob", "--no-passphrase")
    a_run, b_run = runners(alice), runners(bob)
    cli(bob, "accept", cli_json(alice, "invite")["code"])
    cli(bob, "file", "config", "--rate-limit", str(SLOW))
    source = random_file(tmp_path / "movie.bin", SIZE)
    tid = cli_json(alice, "file", "send", "bob", str(source))["id"]
    wait_until(lambda: any(t["id"] == tid for t in cli_json(bob, "file", "list")))
    cli(bob, "file", "accept", tid[:12])
    return alice, bob, a_run, b_run, source, tid


def _show(profile: Path, tid: str) -> dict:
    return cli_json(profile, "file", "show", tid[:12])


def _part_way(profile: Path, tid: str) -> None:
    wait_until(lambda: _show(profile, tid)["progress"] >= 0.25, timeout=60)


def _full_speed(profile: Path) -> None:
    cli(profile, "file", "config", "--rate-limit", "0")


def _finish(bob: Path, tid: str, source: Path, tmp_path: Path) -> dict:
    wait_until(lambda: _show(bob, tid)["state"] == "complete", timeout=90)
    saved = cli_json(bob, "file", "save", tid[:12], str(tmp_path / "out.bin"))["saved_to"]
    assert digest(Path(saved)) == digest(source)
    return _show(bob, tid)


def test_receiver_killed_part_way_resumes_without_refetching(tmp_path, runners):
    _alice, bob, _a_run, b_run, source, tid = _setup(tmp_path, runners)
    _part_way(bob, tid)
    b_run.proc.send_signal(signal.SIGKILL)
    b_run.proc.wait(timeout=10)
    # What bob's profile says it holds, read with the peer down.
    saved = _show(bob, tid)
    assert saved["state"] == "downloading"
    held = round(saved["have_bytes"] / MiB)
    assert 0 < held < CHUNKS
    _full_speed(bob)
    runners(bob)
    final = _finish(bob, tid, source, tmp_path)
    # The restarted peer fetched exactly the chunks it did not hold: none twice.
    assert final["fetched_chunks"] == CHUNKS - held


def test_sender_killed_part_way_resumes_when_it_is_back(tmp_path, runners):
    alice, bob, a_run, _b_run, source, tid = _setup(tmp_path, runners)
    _part_way(bob, tid)
    a_run.proc.send_signal(signal.SIGKILL)
    a_run.proc.wait(timeout=10)
    wait_until(lambda: _show(bob, tid)["speed"] < 1024, timeout=20)
    stalled = _show(bob, tid)
    assert stalled["state"] == "downloading" and stalled["progress"] < 1
    _full_speed(bob)  # through bob's running peer (its control socket)
    runners(alice)
    final = _finish(bob, tid, source, tmp_path)
    # bob ran throughout: every chunk was fetched once, across both of alice's lives.
    assert final["fetched_chunks"] == CHUNKS

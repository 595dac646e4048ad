"""chinwag-cli end to end: separate processes, real sockets, the control socket."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ENV = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
ENV.pop("CHINWAG_PASSPHRASE", None)

pytestmark = pytest.mark.slow  # separate processes


def cli(profile: Path, *args: str, env: dict[str, str] | None = None, check: bool = True):
    result = subprocess.run(
        [sys.executable, "-m", "messenger.cli", "--profile", str(profile), *args],
        capture_output=True,
        text=True,
        env=env or ENV,
        timeout=60,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"chinwag-cli {args} failed: {result.stderr}")
    return result


def cli_json(profile: Path, *args: str, env: dict[str, str] | None = None):
    return json.loads(cli(profile, *args, "--json", env=env).stdout)


class Runner:
    """`chinwag-cli run` in the background; stopped by PID, never by name."""

    def __init__(self, profile: Path, env: dict[str, str] | None = None) -> None:
        self.profile = profile
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "messenger.cli",
                "--profile",
                str(profile),
                "run",
                "--listen",
                "127.0.0.1:0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env or ENV,
        )
        line = self.proc.stdout.readline()
        if "is online" not in line:
            self.proc.kill()
            raise AssertionError(f"run did not start: {line!r} {self.proc.stderr.read()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=20)


def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def bodies(profile: Path, contact: str) -> list[str]:
    return [m["body"] for m in cli_json(profile, "history", contact, "--limit", "500")["messages"]]


def test_two_terminals_chat(tmp_path, runners):
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    cli(alice, "init", "--name", "Alice", "--no-passphrase")
    bob_env = {**ENV, "CHINWAG_PASSPHRASE": "correct horse battery staple"}
    created = cli_json(bob, "init", "--name", "Bob", env=bob_env)
    assert created["key"].startswith("passphrase (Argon2id")

    wrong = cli(bob, "whoami", env={**ENV, "CHINWAG_PASSPHRASE": "wrong"}, check=False)
    assert wrong.returncode == 1 and "wrong passphrase" in wrong.stderr

    runners(alice)
    runners(bob, bob_env)
    invite = cli_json(alice, "invite", "--qr", str(tmp_path / "invite.png"))
    assert invite["code"].startswith("CHINWAG:")
    assert (tmp_path / "invite.png").stat().st_size > 100

    accepted = cli_json(bob, "accept", invite["code"], env=bob_env)
    assert accepted["name"] == "Alice"
    again = cli(bob, "accept", invite["code"], env=bob_env, check=False)
    assert again.returncode == 1 and "already" in again.stderr

    sent = cli_json(bob, "send", "alice", "hello from bob", env=bob_env)
    assert sent["online"] is True
    wait_until(lambda: bodies(alice, "bob") == ["hello from bob"])
    cli(alice, "send", "Bob", "hi bob")
    wait_until(lambda: bodies(bob, "alice") == ["hello from bob", "hi bob"])
    wait_until(lambda: cli_json(alice, "contacts")[0]["queued"] == 0)

    contacts = cli_json(alice, "contacts")
    assert [(c["name"], c["online"]) for c in contacts] == [("Bob", True)]
    who = cli_json(alice, "whoami")
    assert who["running"] and who["name"] == "Alice"
    v_alice = cli_json(alice, "verify", contacts[0]["id"][:6], "--yes")
    v_bob = cli_json(bob, "verify", "alice", "--yes", env=bob_env)
    assert v_alice["safety_number"] == v_bob["safety_number"]
    assert len(v_alice["safety_number"]) == 60 and v_alice["verified"]
    assert cli_json(alice, "contacts")[0]["verified"] is True

    unknown = cli(alice, "send", "nobody", "x", check=False)
    assert unknown.returncode == 1 and "no contact" in unknown.stderr


def test_send_without_run_queues_then_run_delivers(tmp_path, runners):
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    cli(alice, "init", "--name", "Alice", "--no-passphrase")
    cli(bob, "init", "--name", "Bob", "--no-passphrase")
    a_run = runners(alice)
    b_run = runners(bob)
    code = cli_json(alice, "invite")["code"]
    cli(bob, "accept", code)
    assert a_run.stop() == 0  # SIGTERM: clean shutdown
    assert not (alice / "control.sock").exists()

    queued = cli_json(alice, "send", "bob", "written while offline")
    assert queued["online"] is False and queued["state"] == "queued"
    assert cli_json(alice, "contacts")[0]["queued"] == 1

    second = runners(alice)
    wait_until(lambda: bodies(bob, "alice") == ["written while offline"])
    wait_until(lambda: cli_json(alice, "contacts")[0]["queued"] == 0)

    # A second `run` of the same profile is refused and told who holds it.
    clash = subprocess.run(
        [sys.executable, "-m", "messenger.cli", "--profile", str(alice), "run"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=30,
    )
    assert clash.returncode == 1
    assert f"pid {second.proc.pid}" in clash.stderr and "run" in clash.stderr
    assert b_run.stop(signal.SIGINT) == 0


# -- first-hour papercuts (issue 20) ------------------------------------------------------


def _hold_profile(profile: Path, purpose: str):
    from messenger.profile import ProfileDir, ProfileLock

    lock = ProfileLock(ProfileDir(profile))
    lock.acquire(purpose)
    return lock


def _start_run(profile: Path) -> subprocess.Popen[str]:
    """`chinwag-cli run` in the background, without waiting for it to come online."""
    command = ["-m", "messenger.cli", "--profile", str(profile), "run", "--listen"]
    return subprocess.Popen(
        [sys.executable, *command, "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def _stderr_line(proc: subprocess.Popen, text: str) -> str:
    for line in proc.stderr:
        if text in line:
            return line
    raise AssertionError(f"no stderr line with {text!r}; exit {proc.wait(timeout=20)}")


def test_run_waits_for_a_one_shot_command_to_let_go(tmp_path):
    alice = tmp_path / "alice"
    cli(alice, "init", "--name", "Alice", "--no-passphrase")
    lock = _hold_profile(alice, "chinwag-cli send")
    proc = _start_run(alice)
    try:
        line = _stderr_line(proc, "waiting up to")
        assert "chinwag-cli send" in line  # says who holds it
        lock.release()  # the one-shot command finishes
        assert "is online" in proc.stdout.readline()
    finally:
        lock.release()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_a_one_shot_command_waits_for_another(tmp_path):
    bob = tmp_path / "bob"
    cli(bob, "init", "--name", "Bob", "--no-passphrase")
    lock = _hold_profile(bob, "chinwag-cli history")
    proc = subprocess.Popen(
        [sys.executable, "-m", "messenger.cli", "--profile", str(bob), "contacts", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        _stderr_line(proc, "waiting up to")
    finally:
        lock.release()
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert json.loads(out) == []


def test_a_script_that_starts_run_and_sends_at_once_loses_nothing(tmp_path, runners):
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    cli(alice, "init", "--name", "Alice", "--no-passphrase")
    cli(bob, "init", "--name", "Bob", "--no-passphrase")
    a = runners(alice)
    code = cli_json(alice, "invite")["code"]
    cli(bob, "accept", code)
    # Bob's script: `run &` then `send` at once; whichever takes the profile first, the
    # other waits, and the message is sent (or queued and then sent by run).
    proc = _start_run(bob)
    try:
        sent = cli(bob, "send", "Alice", "sent while run was starting", check=False)
        assert sent.returncode == 0, sent.stderr
        wait_until(lambda: "sent while run was starting" in bodies(alice, "Bob"), 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert a.proc.poll() is None


def test_a_closed_pipe_ends_the_console_script_quietly(tmp_path):
    alice = tmp_path / "alice"
    cli(alice, "init", "--name", "Alice", "--no-passphrase")
    script = Path(sys.executable).parent / "chinwag-cli"  # the installed entry point
    assert script.exists()
    reader, writer = os.pipe()
    os.close(reader)  # `| head` that has already gone
    try:
        result = subprocess.run(
            [str(script), "--profile", str(alice), "whoami", "--json"],
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
            timeout=60,
        )
    finally:
        os.close(writer)
    assert "Traceback" not in result.stderr
    assert "BrokenPipeError" not in result.stderr
    assert result.returncode == 141


def test_tor_status_needs_run_and_says_off_with_no_tor(tmp_path, runners):
    alice = tmp_path / "alice"
    cli(alice, "init", "--name", "Alice", "--no-passphrase")
    alone = cli(alice, "tor", check=False)
    assert alone.returncode != 0 and "needs the running peer" in alone.stderr
    # CHINWAG_NO_TOR is set for every test (tests/conftest.py): run starts no tor.
    assert ENV.get("CHINWAG_NO_TOR")
    runner = runners(alice)
    status = cli_json(alice, "tor")
    assert status["state"] == "off" and status["onion"] is None
    assert "Tor is off" in cli(alice, "tor").stdout
    assert not (alice / "tor-data").exists()
    assert runner.stop() == 0

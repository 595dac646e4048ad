"""chinwag-cli and a changed safety number: `contacts` shows it, `send` refuses with its own
exit status, `accept-key` lifts the hold. Separate processes, real sockets."""

from __future__ import annotations

import shutil

import pytest

from .test_cli import bodies, cli, cli_json, wait_until

pytestmark = pytest.mark.slow  # separate processes

KEY_CHANGED_EXIT = 7


def test_cli_holds_a_recreated_contact_until_accept_key(tmp_path, runners):
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    cli(alice, "init", "--name", "Alice", "--no-passphrase")
    cli(bob, "init", "--name", "Bob", "--no-passphrase")
    alice_run = runners(alice)
    old_bob_run = runners(bob)
    cli(bob, "accept", cli_json(alice, "invite")["code"])
    old_id = cli_json(alice, "contacts")[0]["id"]

    # Bob re-creates his profile under the same name and accepts a new invite.
    assert old_bob_run.stop() == 0
    shutil.rmtree(bob)
    cli(bob, "init", "--name", "Bob", "--no-passphrase")
    runners(bob)
    cli(bob, "accept", cli_json(alice, "invite")["code"])

    # The running peer says so as it happens.
    notice = _line_with(alice_run, "the safety number has changed")
    contacts = {c["id"]: c for c in cli_json(alice, "contacts")}
    assert len(contacts) == 2
    (new_id,) = set(contacts) - {old_id}
    assert contacts[new_id]["key_changed"] is True and contacts[new_id]["replaces"] == old_id
    assert contacts[old_id]["key_changed"] is False
    assert notice.startswith(f"* Bob ({new_id[:8]}): a new identity using the name")
    assert f"chinwag-cli accept-key {new_id[:8]}" in notice
    listing = cli(alice, "contacts").stdout
    assert f"{new_id[:8]}  [safety number changed" in listing
    assert f"accept-key {new_id[:8]}" in listing

    refused = cli(alice, "send", new_id[:8], "hello?", check=False)
    assert refused.returncode == KEY_CHANGED_EXIT
    assert "Bob's safety number has changed" in refused.stderr
    assert "Nothing was sent" in refused.stderr
    assert f"chinwag-cli accept-key {new_id[:8]}" in refused.stderr
    assert bodies(alice, new_id[:8]) == []

    accepted = cli_json(alice, "accept-key", new_id[:8])
    assert accepted["key_changed"] is False and accepted["moved"] == 0
    again = cli(alice, "accept-key", new_id[:8], check=False)
    assert again.returncode == 1 and "has not changed" in again.stderr

    cli(alice, "send", new_id[:8], "hello again")
    wait_until(lambda: bodies(bob, "alice") == ["hello again"])


def _line_with(runner, text: str) -> str:
    """The next line `chinwag-cli run` prints that holds `text` (the test's timeout bounds it)."""
    for line in runner.proc.stdout:
        if text in line:
            return line.strip()
    raise AssertionError(f"run ended without a line with {text!r}")

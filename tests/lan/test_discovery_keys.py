"""Removing a contact rotates your advertising key: the removed one can no longer
recognise you on the LAN, the others learn the new key over their sessions."""

from __future__ import annotations

import pytest

from .conftest import Lan, cli, cli_json, contacts, make_profiles, wait_until

pytestmark = [pytest.mark.lan, pytest.mark.timeout(180)]


def test_removing_a_contact_rotates_the_advertising_key(lan: Lan, tmp_path) -> None:
    names = ["alice", "bob", "carol"]
    profiles = make_profiles(
        tmp_path, names, [("alice", "bob"), ("alice", "carol"), ("bob", "carol")]
    )
    hosts = {name: lan.add_host(name) for name in names}
    runners = {name: hosts[name].run(profiles[name]) for name in names}
    for name in names:
        wait_until(lambda n=name: cli_json(profiles[n], "lan")["contacts_seen"] == 2, 15)
    removed = cli_json(profiles["alice"], "remove", "carol", "--yes")
    assert removed["name"] == "Carol"
    assert set(contacts(profiles["alice"])) == {"Bob"}
    # Alice now announces a token under a new key. Bob got the key over his session and
    # still recognises her; Carol (who still lists Alice) no longer can.
    wait_until(lambda: cli_json(profiles["carol"], "lan")["contacts_seen"] == 1, 15, "carol")
    assert cli_json(profiles["bob"], "lan")["contacts_seen"] == 2
    # Even across a restart of Alice (new names, new announcement): Bob finds her...
    runners["alice"].stop()
    runners["bob"].wait_line("* Alice is offline")
    runners["alice"] = hosts["alice"].run(profiles["alice"])
    runners["alice"].wait_line("* Bob is online", timeout=15)
    runners["bob"].wait_line("* Alice is online", timeout=15, after=runners["alice"].started_at)
    # ... and Carol sees nobody she knows there, and never gets a session with her.
    status = cli_json(profiles["carol"], "lan")
    assert status["contacts_seen"] == 1, status
    assert not contacts(profiles["carol"])["Alice"]["online"]
    cli(profiles["bob"], "send", "alice", "you rotated")

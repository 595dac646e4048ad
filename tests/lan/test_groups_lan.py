"""A five-member group on a LAN of network namespaces, with real mDNS: the members that
are not contacts find each other by the keys the signed roster introduced; a member that
was away catches up from one that is not the author."""

from __future__ import annotations

import pytest

from .conftest import Lan, cli, cli_json, make_profiles, wait_until

pytestmark = [pytest.mark.lan, pytest.mark.timeout(240)]

NAMES = ["admin", "bea", "cai", "dov", "eli"]


def _group(profile) -> dict:
    groups = cli_json(profile, "group", "list")
    assert isinstance(groups, list) and len(groups) == 1
    return groups[0]


def _online(profile) -> set[str]:
    return {m["name"] for m in _group(profile)["members"] if m["online"] and not m["me"]}


def _bodies(profile) -> list[str]:
    history = cli_json(profile, "group", "history", "Lab", "--limit", "1000")
    assert isinstance(history, dict)
    return [m["body"] for m in history["messages"]]


def test_group_on_a_lan_reaches_all_and_catches_up(lan: Lan, tmp_path) -> None:
    profiles = make_profiles(tmp_path, NAMES, [("admin", n) for n in NAMES[1:]])
    hosts = {name: lan.add_host(name) for name in NAMES}
    runners = {name: hosts[name].run(profiles[name]) for name in NAMES}
    for name in NAMES[1:]:
        runners["admin"].wait_line(f"* {name.capitalize()} is online", timeout=20)
    cli(profiles["admin"], "group", "create", "Lab", *NAMES[1:])
    everyone = {n.capitalize() for n in NAMES}
    for name in NAMES:  # a full mesh, though only the admin is anyone's contact
        wait_until(
            lambda n=name: _online(profiles[n]) == everyone - {n.capitalize()},
            30,
            f"{name} sees every member online",
        )
    cli(profiles["cai"], "group", "send", "Lab", "hello from cai")
    for name in NAMES:
        wait_until(lambda n=name: _bodies(profiles[n]) == ["hello from cai"], 20, f"{name} got it")

    # dov goes away; bea (the author) writes 20 messages, then goes away too.
    hosts["dov"].link(False)
    wait_until(lambda: "Dov" not in _online(profiles["admin"]), 20, "dov offline")
    for i in range(20):
        cli(profiles["bea"], "group", "send", "Lab", f"bea {i}")
    expected = ["hello from cai", *(f"bea {i}" for i in range(20))]
    for name in ("admin", "cai", "eli"):
        wait_until(lambda n=name: _bodies(profiles[n]) == expected, 30, f"{name} has bea's")
    runners["bea"].stop()
    hosts["dov"].link(True)
    wait_until(lambda: _bodies(profiles["dov"]) == expected, 40, "dov caught up without bea")
    history = cli_json(profiles["admin"], "group", "history", "Lab", "--limit", "1000")
    assert isinstance(history, dict)
    assert [m["author"] for m in history["messages"]][1:] == ["Bea"] * 20

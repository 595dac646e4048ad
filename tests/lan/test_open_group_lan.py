"""An open group on a LAN of network namespaces: announced by name over mDNS, joined by a
stranger after nearby pairing (the six digits) and the admin's approval."""

from __future__ import annotations

import pytest

from .conftest import Lan, cli, cli_json, make_profiles, wait_until
from .test_nearby_lan import _ask, _request_at

pytestmark = [pytest.mark.lan, pytest.mark.timeout(240)]


def _bodies(profile) -> list[str]:
    history = cli_json(profile, "group", "history", "Lab", "--limit", "100")
    assert isinstance(history, dict)
    return [m["body"] for m in history["messages"]]


def test_a_stranger_joins_an_open_group(lan: Lan, tmp_path) -> None:
    profiles = make_profiles(tmp_path, ["admin", "bea", "zoe"], [("admin", "bea")])
    runners = {name: lan.add_host(name).run(profiles[name]) for name in profiles}
    runners["admin"].wait_line("* Bea is online", timeout=20)
    cli(profiles["admin"], "group", "create", "Lab", "bea")
    cli(profiles["admin"], "group", "send", "Lab", "welcome to the lab")
    for name in ("admin", "zoe"):
        cli(profiles[name], "set", "visible", "true")
    cli(profiles["admin"], "group", "open", "Lab")

    people: list = []

    def lab_nearby() -> bool:
        people[:] = cli_json(profiles["zoe"], "nearby")["people"]
        return [(p["name"], p["open_group"]) for p in people] == [("Admin", "Lab")]

    wait_until(lab_nearby, 20, "zoe sees the open group nearby")
    assert "Lab" in cli(profiles["zoe"], "nearby").stdout
    # Pair first: both compare the six digits (zoe confirms with --yes, admin accepts).
    asking = _ask(profiles["zoe"], people[0]["id"], "--yes")
    request = _request_at(runners["admin"])
    cli(profiles["admin"], "pairing", "accept", request["id"])
    _out, err = asking.communicate(timeout=60)
    assert asking.returncode == 0, err
    # Then ask to join, by the name that was announced; the admin approves.
    cli(profiles["zoe"], "group", "join", "admin", "Lab")
    runners["admin"].wait_line("asks to join Lab", timeout=20)
    requests = cli_json(profiles["admin"], "group", "requests")
    assert [r["name"] for r in requests] == ["Zoe"]
    cli(profiles["admin"], "group", "approve", "Lab", "zoe")
    wait_until(lambda: _bodies(profiles["zoe"]) == ["welcome to the lab"], 30, "zoe caught up")
    # zoe and bea never met: the roster introduced them.
    cli(profiles["zoe"], "group", "send", "Lab", "hi, I am zoe")
    wait_until(lambda: "hi, I am zoe" in _bodies(profiles["bea"]), 30, "bea got zoe's message")
    assert cli_json(profiles["admin"], "group", "requests") == []

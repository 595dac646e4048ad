"""Two strangers on a LAN pair through the Nearby list and a short authentication string."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from .conftest import ENV, Lan, bodies, cli, cli_json, contacts, make_strangers, wait_until

pytestmark = [pytest.mark.lan, pytest.mark.timeout(180)]

REQUEST = re.compile(
    r"\* (?P<name>.+) \(nearby\) asks to pair (?P<id>[0-9a-f]{8})\. "
    r".* shows (?P<sas>\d{3} \d{3}),"
)


def _visible_pair(lan: Lan, tmp_path):
    profiles = make_strangers(tmp_path, ["erin", "frank"])
    runners = {}
    for name in profiles:
        runners[name] = lan.add_host(name).run(profiles[name])
    assert cli_json(profiles["erin"], "nearby")["visible"] is False
    for name in profiles:
        cli(profiles[name], "set", "visible", "true")
    people: list = []

    def frank_nearby() -> bool:
        people[:] = cli_json(profiles["erin"], "nearby")["people"]
        return [p["name"] for p in people] == ["Frank"]

    wait_until(frank_nearby, 15, "erin sees frank nearby")
    return profiles, runners, people[0]["id"]


def _ask(profile, nearby_id: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "messenger.cli",
            "--profile",
            str(profile),
            "pair",
            nearby_id,
            "--json",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def _request_at(runner):
    runner.wait_line("asks to pair", timeout=15)
    line = next(line for _, line in runner.lines if "asks to pair" in line)
    match = REQUEST.search(line)
    assert match, line
    return match


def test_nearby_strangers_pair_with_matching_digits(lan: Lan, tmp_path) -> None:
    profiles, runners, frank_id = _visible_pair(lan, tmp_path)
    asking = _ask(profiles["erin"], frank_id, "--yes")  # erin confirms the digits she sees
    request = _request_at(runners["frank"])
    assert request["name"] == "Erin"
    pending = cli_json(profiles["frank"], "pairing")
    assert [p["id"] for p in pending] == [request["id"]]
    assert contacts(profiles["frank"]) == {}  # nothing stored before frank confirms
    accepted = cli_json(profiles["frank"], "pairing", "accept", request["id"])
    out, err = asking.communicate(timeout=60)
    assert asking.returncode == 0, err
    erin_side = json.loads(out)
    # The same six digits were shown on both screens.
    assert erin_side["sas"] == request["sas"].replace(" ", "")
    assert erin_side["paired"] and accepted["paired"]
    assert erin_side["name"] == "Frank" and accepted["name"] == "Erin"
    erin_book, frank_book = contacts(profiles["erin"]), contacts(profiles["frank"])
    assert erin_book["Frank"]["verified"] and frank_book["Erin"]["verified"]
    assert erin_book["Frank"]["online"] and frank_book["Erin"]["online"]
    safety = [
        cli_json(profiles[p], "verify", c)["safety_number"]
        for p, c in (("erin", "frank"), ("frank", "erin"))
    ]
    assert safety[0] == safety[1]
    cli(profiles["erin"], "send", "frank", "we paired nearby")
    wait_until(lambda: bodies(profiles["frank"], "erin") == ["we paired nearby"], 15)
    # Contacts now: they recognise each other's tokens; a contact is no longer "nearby".
    wait_until(lambda: cli_json(profiles["erin"], "nearby")["people"] == [], 15)
    # After a restart the session comes back through discovery and IKpsk2, no address needed.
    runners["frank"].stop()
    runners["frank"] = lan.hosts["frank"].run(profiles["frank"])
    runners["frank"].wait_line("* Erin is online", timeout=15)


@pytest.mark.parametrize("who_declines", ["frank", "erin"])
def test_a_mismatch_writes_nothing(lan: Lan, tmp_path, who_declines: str) -> None:
    profiles, runners, frank_id = _visible_pair(lan, tmp_path)
    started = cli_json(profiles["erin"], "pair", frank_id)  # a script: no answer yet
    request = _request_at(runners["frank"])
    assert started["sas"] == request["sas"].replace(" ", "")
    # One of them sees different digits (in a real attack they would differ) and says no.
    # The other one has already accepted and waits for the answer, which is a no.
    ids = {"erin": started["pairing"], "frank": request["id"]}
    accepter = "erin" if who_declines == "frank" else "frank"
    accepts = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "messenger.cli",
            "--profile",
            str(profiles[accepter]),
            "pairing",
            "accept",
            ids[accepter],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    wait_until(lambda: cli_json(profiles[accepter], "pairing")[0]["confirmed_here"], 10)
    cli(profiles[who_declines], "pairing", "reject", ids[who_declines])
    _, err = accepts.communicate(timeout=30)
    assert accepts.returncode == 1 and "no pairing" in err
    for name in profiles:
        runners[name].wait_line("* pairing", timeout=10)
        assert cli_json(profiles[name], "pairing") == []
        assert contacts(profiles[name]) == {}
    # Nothing was written: after both stop, the databases hold no contact at all.
    for name in profiles:
        runners[name].stop()
        assert cli_json(profiles[name], "contacts") == []

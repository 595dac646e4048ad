"""Groups through chinwag-cli: separate processes, the control socket, SIGKILL mid-burst."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from messenger.cli import control

from .test_cli import cli, cli_json, wait_until

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]  # separate processes
COUNT = 200


def _three(tmp_path: Path, runners):
    profiles = [tmp_path / n for n in ("alice", "bob", "cai")]
    for p in profiles:
        cli(p, "init", "--name", p.name.capitalize(), "--no-passphrase")
    running = {p.name: runners(p) for p in profiles}
    alice, bob, cai = profiles
    for other in (bob, cai):
        cli(other, "accept", cli_json(alice, "invite")["code"])
    return alice, bob, cai, running


def _history(profile: Path) -> list[dict]:
    return cli_json(profile, "group", "history", "Lab", "--limit", "100000")["messages"]


def _bodies(profile: Path) -> list[str]:
    return [m["body"] for m in _history(profile)]


async def _send_many(sock: Path, count: int, halfway: asyncio.Event) -> list[str]:
    confirmed: list[str] = []
    for i in range(count):
        if i == count // 3:
            halfway.set()
        body = f"burst {i:04d}"
        try:
            await control.call(
                sock, "group", {"action": "send", "group": "Lab", "text": body}, wait=10
            )
        except (OSError, control.ControlError, asyncio.IncompleteReadError):
            break  # the sender died: what it confirmed is what must arrive
        confirmed.append(body)
    return confirmed


def test_group_commands_through_the_running_peer(tmp_path, runners):
    alice, bob, cai, _ = _three(tmp_path, runners)
    created = cli_json(alice, "group", "create", "Lab", "bob", "cai")
    assert [m["name"] for m in created["members"]] == ["Alice", "Bob", "Cai"]
    for p in (bob, cai):
        wait_until(lambda p=p: [g["name"] for g in cli_json(p, "group", "list")] == ["Lab"])
    cli(bob, "group", "send", "Lab", "hello", "from", "bob")
    for p in (alice, cai):  # cai is no contact of bob: the roster introduced them
        wait_until(lambda p=p: _bodies(p) == ["hello from bob"])
    wait_until(lambda: _history(bob)[0]["delivered_to"] == 2)
    assert "Bob" not in [c["name"] for c in cli_json(cai, "contacts")]
    # A file shared with the group: cai fetches it from bob, who is no contact of hers.
    notes = tmp_path / "notes.txt"
    notes.write_text("minutes of the lab meeting")
    shared = cli_json(bob, "group", "file", "Lab", str(notes))
    assert shared["groups"] == ["Lab"] and shared["outgoing"]
    wait_until(lambda: [t["id"] for t in cli_json(cai, "file", "list")] == [shared["id"]])
    assert _history(cai)[-1]["file"] == shared["id"]
    cli(cai, "file", "accept", shared["id"][:8])
    wait_until(lambda: cli_json(cai, "file", "show", shared["id"][:8])["state"] == "complete")
    cli(cai, "file", "save", shared["id"][:8], str(tmp_path / "got.txt"))
    assert (tmp_path / "got.txt").read_text() == "minutes of the lab meeting"
    listed = cli(cai, "file", "list").stdout
    assert "#Lab" in listed and "notes.txt" in listed
    found = cli_json(cai, "group", "search", "hello", "fro")
    assert [(m["group"], m["author"], m["body"]) for m in found["messages"]] == [
        ("Lab", "Bob", "hello from bob")
    ]
    shown = cli(cai, "group", "search", "hello").stdout
    assert "#Lab Bob: hello from bob" in shown
    assert "no group message matches 'goodbye'" in cli(cai, "group", "search", "goodbye").stdout
    cli(alice, "group", "rename", "Lab", "Lab", "2")
    wait_until(lambda: cli_json(cai, "group", "list")[0]["name"] == "Lab 2")
    cli(alice, "group", "remove", "Lab 2", "cai")
    wait_until(lambda: cli_json(cai, "group", "list")[0]["state"] == "removed")
    refused = cli(cai, "group", "send", "Lab 2", "still here?", check=False)
    assert refused.returncode == 1 and "no longer a member" in refused.stderr
    cli(bob, "group", "leave", "Lab 2")
    wait_until(
        lambda: [m["name"] for m in cli_json(alice, "group", "list")[0]["members"]] == ["Alice"]
    )
    text = cli(alice, "group", "list").stdout
    assert "Lab 2" in text and "1/1 online" in text


@pytest.mark.parametrize("killed", ["member", "author"])
def test_a_peer_killed_mid_burst_loses_nothing(tmp_path, runners, killed):
    alice, bob, cai, running = _three(tmp_path, runners)
    cli(alice, "group", "create", "Lab", "bob", "cai")
    for p in (bob, cai):
        wait_until(lambda p=p: len(cli_json(p, "group", "list")) == 1)
    victim = cai if killed == "member" else alice

    async def scenario() -> list[str]:
        halfway = asyncio.Event()
        sender = asyncio.create_task(_send_many(alice / "control.sock", COUNT, halfway))
        await halfway.wait()
        proc = running[victim.name].proc
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        return await sender

    confirmed = asyncio.run(scenario())
    if killed == "member":
        assert len(confirmed) == COUNT
    runners(victim)
    for p in (alice, bob, cai):
        wait_until(lambda p=p: len(_bodies(p)) >= len(confirmed), timeout=90)
    orders = [_bodies(p) for p in (alice, bob, cai)]
    for order in orders:
        assert len(order) == len(set(order)), "duplicates stored"
        assert order[: len(confirmed)] == confirmed, "lost or reordered messages"
    assert orders[0] == orders[1] == orders[2]

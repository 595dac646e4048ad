"""Contacts on a LAN of network namespaces find each other over mDNS, with no address
configured anywhere, and follow each other through link and address changes."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from .conftest import Lan, bodies, cli, cli_json, contacts, make_profiles, online, wait_until

pytestmark = [pytest.mark.lan, pytest.mark.timeout(180)]

EPOCH = {"CHINWAG_DISCOVERY_EPOCH": "600"}


def test_contacts_find_each_other_and_chat(lan: Lan, tmp_path) -> None:
    names = ["alice", "bob", "carol"]
    profiles = make_profiles(
        tmp_path, names, [("alice", "bob"), ("alice", "carol"), ("bob", "carol")]
    )
    hosts = {name: lan.add_host(name) for name in names}
    for name in names:
        assert all(not c["addresses"] for c in contacts(profiles[name]).values())
    for name in names:
        hosts[name].run(profiles[name])
    for name in names:
        for other in names:
            if other != name:
                wait_until(
                    lambda n=name, o=other: online(profiles[n], o.capitalize()),
                    15,
                    f"{name}: {other}",
                )
    cli(profiles["alice"], "send", "bob", "hi bob, from alice")
    cli(profiles["carol"], "send", "alice", "hi alice, from carol")
    wait_until(lambda: bodies(profiles["bob"], "alice") == ["hi bob, from alice"])
    wait_until(lambda: bodies(profiles["alice"], "carol") == ["hi alice, from carol"])
    seen = contacts(profiles["alice"])["Bob"]["addresses"]
    assert any(a.startswith(hosts["bob"].ip + ":") for a in seen), seen


def _three_contacts(lan: Lan, tmp_path):
    names = ["alice", "bob", "carol"]
    profiles = make_profiles(
        tmp_path, names, [("alice", "bob"), ("alice", "carol"), ("bob", "carol")]
    )
    hosts = {name: lan.add_host(name) for name in names}
    runners = {name: hosts[name].run(profiles[name]) for name in names}
    for name in names:
        for other in names:
            if other != name:
                runners[name].wait_line(f"* {other.capitalize()} is online", timeout=15)
    return profiles, hosts, runners


def test_link_down_marks_offline_and_link_up_delivers_queued(lan: Lan, tmp_path) -> None:
    profiles, hosts, runners = _three_contacts(lan, tmp_path)
    unplugged = time.monotonic()
    hosts["carol"].link(False)
    for name in ("alice", "bob"):  # (how fast is a figure, not a test: README, 6-8 s)
        runners[name].wait_line("* Carol is offline", timeout=30, after=unplugged)
    # Written while the cable is out: kept in the outboxes.
    for i in range(3):
        cli(profiles["carol"], "send", "alice", f"carol offline {i}")
    cli(profiles["alice"], "send", "carol", "alice to carol while away")
    assert contacts(profiles["carol"])["Alice"]["queued"] == 3
    plugged = time.monotonic()
    hosts["carol"].link(True)
    for name in ("alice", "bob"):
        runners[name].wait_line("* Carol is online", timeout=20, after=plugged)
    # The whole conversation on both sides: each message exactly once.
    expected = sorted([*(f"carol offline {i}" for i in range(3)), "alice to carol while away"])
    for side, other in (("alice", "carol"), ("carol", "alice")):
        wait_until(
            lambda s=side, o=other: sorted(bodies(profiles[s], o)) == expected,
            20,
            f"{side} has all",
        )
    for side, other in (("alice", "Carol"), ("carol", "Alice")):
        wait_until(lambda s=side, o=other: contacts(profiles[s])[o]["queued"] == 0, 20, "acked")
    # A resend of anything acknowledged would arrive before a marker sent after it on the
    # same session: once the markers are in, every message must still be there once.
    cli(profiles["alice"], "send", "carol", "marker from alice")
    cli(profiles["carol"], "send", "alice", "marker from carol")
    final = sorted([*expected, "marker from alice", "marker from carol"])
    for side, other in (("alice", "carol"), ("carol", "alice")):
        wait_until(lambda s=side, o=other: len(bodies(profiles[s], o)) >= len(final), 20, "markers")
    assert sorted(bodies(profiles["alice"], "carol")) == final
    assert sorted(bodies(profiles["carol"], "alice")) == final


def test_contacts_follow_an_address_change(lan: Lan, tmp_path) -> None:
    profiles, hosts, _ = _three_contacts(lan, tmp_path)
    old_ip = hosts["carol"].ip
    changed = time.monotonic()
    hosts["carol"].set_address("10.77.0.33")
    # The others find carol at her new address (a new announcement) and reconnect there.
    for name in ("alice", "bob"):
        wait_until(
            lambda n=name: (
                any(
                    a.startswith("10.77.0.33:") for a in contacts(profiles[n])["Carol"]["addresses"]
                )
                and online(profiles[n], "Carol")
            ),
            20,
            f"{name} follows carol",
        )
    print(f"followed in {time.monotonic() - changed:.1f} s")
    cli(profiles["alice"], "send", "carol", "found you again")
    cli(profiles["carol"], "send", "bob", "new address, same carol")
    wait_until(lambda: bodies(profiles["carol"], "alice") == ["found you again"], 15)
    wait_until(lambda: bodies(profiles["bob"], "carol") == ["new address, same carol"], 15)
    lan_status = cli_json(profiles["carol"], "lan")
    assert "10.77.0.33" in lan_status["addresses"] and old_ip not in lan_status["addresses"]


def _secrets_of(profile) -> dict[str, bytes]:
    """Everything that identifies a profile and must never appear on the LAN."""
    import asyncio

    from messenger.service import PeerService, ServiceConfig

    async def read() -> dict[str, bytes]:
        service = await PeerService.open(profile, None, config=ServiceConfig(network=False))
        async with service:
            found = {
                "name": service.display_name.encode(),
                "name (lower)": service.display_name.lower().encode(),
                "identity key": service.identity.ed25519_public,
                "static key": service.identity.static_public,
                "advertising key": service.own_discovery_key,
                "contact id": service.contact_id.encode(),
                "fingerprint": service.fingerprint.replace(" ", "").lower().encode(),
            }
            for contact in await service.contacts.all():
                found[f"contact {contact.display_name}"] = contact.ed25519_public
        return found

    return asyncio.run(read())


def _records(capture_file):
    """(time, record) for every record of every captured datagram."""
    import json

    from zeroconf import DNSIncoming

    found = []
    for line in capture_file.read_text().splitlines():
        item = json.loads(line)
        data = bytes.fromhex(item["data"])
        incoming = DNSIncoming(data)
        for record in incoming.answers():
            found.append((item["t"], record, data))
    return found


def test_a_stranger_sees_only_version_and_a_changing_token(lan: Lan, tmp_path) -> None:
    import re
    import shutil
    import subprocess
    import sys

    from zeroconf import DNSAddress, DNSPointer, DNSService, DNSText

    profiles = make_profiles(tmp_path, ["alice", "bob"], [("alice", "bob")])
    secrets = {name: _secrets_of(profiles[name]) for name in profiles}
    alice, bob, dave = lan.add_host("alice"), lan.add_host("bob"), lan.add_host("dave")
    capture_file = tmp_path / "dave.jsonl"
    capture = dave.popen(
        sys.executable,
        "-m",
        "tests.lan.capture",
        str(capture_file),
        "9",
        cwd=str(__import__("pathlib").Path(__file__).parents[2]),
        stdout=subprocess.PIPE,
    )
    assert capture.stdout is not None and "capturing" in capture.stdout.readline()
    fast = {"CHINWAG_DISCOVERY_EPOCH": "2"}  # a new token every 2 s
    runners = {
        "alice": alice.run(profiles["alice"], env=fast),
        "bob": bob.run(profiles["bob"], env=fast),
    }
    runners["alice"].wait_line("* Bob is online")
    dig = None
    if shutil.which("dig"):  # an independent DNS-SD client asks one of them directly
        dig = dave.exec(
            "dig", "-p", "5353", f"@{alice.ip}", "_chinwag._tcp.local", "PTR", "+time=2", "+tries=1"
        )
    capture.wait(timeout=30)
    records = _records(capture_file)
    assert records, "the observer received no mDNS records"

    ours = [
        (t, r)
        for t, r, _ in records
        if "_chinwag._tcp.local" in r.name.lower()
        or isinstance(r, DNSAddress | DNSService | DNSPointer)
    ]
    texts = [(t, r) for t, r in ours if isinstance(r, DNSText) and r.ttl > 0]
    assert texts, "no TXT record seen"
    tokens: dict[str, set[str]] = {}
    for _, record in texts:
        instance = record.name.split(".")[0]
        assert re.fullmatch(r"[0-9a-f]{16}", instance), record.name  # random, no name in it
        strings = []
        data = record.text
        while data:
            strings.append(data[1 : 1 + data[0]])
            data = data[1 + data[0] :]
        keys = sorted(s.partition(b"=")[0] for s in strings)
        assert keys == [b"s", b"t", b"v"], strings  # version, token, its salt; nothing else
        values = dict(s.split(b"=", 1) for s in strings)
        assert values[b"v"] == b"1"
        assert re.fullmatch(rb"[0-9a-f]{32}", values[b"t"])
        assert re.fullmatch(rb"[0-9a-f]{16}", values[b"s"])
        tokens.setdefault(instance, set()).add(values[b"t"].decode())
    assert len(tokens) == 2, tokens  # alice and bob, one service each
    for instance, seen in tokens.items():
        assert len(seen) >= 3, f"{instance}: the token did not change with the epoch: {seen}"
    all_tokens = [t for seen in tokens.values() for t in seen]
    assert len(all_tokens) == len(set(all_tokens))  # nobody's token repeats or is shared
    for _, record in ours:
        if isinstance(record, DNSService):
            assert re.fullmatch(r"[0-9a-f]{16}\.local\.", record.server), record.server
    # No name, key or id of anyone, anywhere in any datagram (names also case-folded).
    for _, _, data in records:
        folded = data.lower()
        for name, values in secrets.items():
            for what, value in values.items():
                assert value not in data and value.lower() not in folded, f"{name}'s {what} leaked"
    if dig is not None:
        assert dig.returncode == 0, dig.stderr
        answer = [line for line in dig.stdout.splitlines() if "\tTXT\t" in line or " TXT " in line]
        assert answer and all(
            re.search(r'"v=1" "t=[0-9a-f]{32}" "s=[0-9a-f]{16}"$', line) for line in answer
        ), dig.stdout


def _announcements(records) -> dict[str, dict[str, set]]:
    """Per announced instance: its host names, ports, addresses, tokens and salts."""
    import socket

    from zeroconf import DNSAddress, DNSService, DNSText

    hosts: dict[str, set[str]] = {}
    for _, record in ((t, r) for t, r, _ in records):
        if isinstance(record, DNSAddress) and record.ttl > 0:
            family = socket.AF_INET6 if len(record.address) == 16 else socket.AF_INET
            hosts.setdefault(record.name.lower(), set()).add(
                socket.inet_ntop(family, record.address)
            )
    found: dict[str, dict[str, set]] = {}
    for _, record, _ in records:
        if "_chinwag._tcp.local" not in record.name.lower() or record.ttl == 0:
            continue
        entry = found.setdefault(
            record.name.split(".")[0],
            {"host": set(), "port": set(), "ip": set(), "token": set(), "salt": set()},
        )
        if isinstance(record, DNSService):
            entry["host"].add(record.server.lower())
            entry["port"].add(record.port)
            entry["ip"] |= hosts.get(record.server.lower(), set())
        elif isinstance(record, DNSText):
            values = dict(s.split(b"=", 1) for s in _strings(record.text) if b"=" in s)
            entry["token"].add(values[b"t"])
            entry["salt"].add(values[b"s"])
    return {name: entry for name, entry in found.items() if entry["port"]}


def _strings(data: bytes) -> list[bytes]:
    out = []
    while data:
        out.append(data[1 : 1 + data[0]])
        data = data[1 + data[0] :]
    return out


def test_a_stranger_cannot_link_a_peer_across_a_restart_or_a_new_address(
    lan: Lan, tmp_path
) -> None:
    """Dave records every mDNS packet while Alice restarts and then moves to another
    address, all within one token epoch (600 s): each of her three announcements has its
    own instance, host name, port, salt and token; Bob recognises her every time."""
    import signal
    import subprocess
    import sys

    profiles = make_profiles(tmp_path, ["alice", "bob"], [("alice", "bob")])
    alice, bob, dave = lan.add_host("alice"), lan.add_host("bob"), lan.add_host("dave")
    capture_file = tmp_path / "dave.jsonl"
    capture = dave.popen(
        sys.executable,
        "-m",
        "tests.lan.capture",
        str(capture_file),
        "170",
        cwd=str(__import__("pathlib").Path(__file__).parents[2]),
        stdout=subprocess.PIPE,
    )
    assert capture.stdout is not None and "capturing" in capture.stdout.readline()
    first = alice.run(profiles["alice"])
    bob_runner = bob.run(profiles["bob"])
    bob_runner.wait_line("* Alice is online")
    first.stop()
    bob_runner.wait_line("* Alice is offline")
    second = alice.run(profiles["alice"])
    bob_runner.wait_line("* Alice is online", after=second.started_at)
    port_before = cli_json(profiles["alice"], "whoami")["listen_port"]
    alice.set_address("10.77.0.50")
    wait_until(
        lambda: (
            any("10.77.0.50" in a for a in cli_json(profiles["bob"], "contacts")[0]["addresses"])
            or "10.77.0.50" in cli_json(profiles["alice"], "lan")["addresses"]
        ),
        20,
        "alice announces her new address",
    )
    assert cli_json(profiles["alice"], "whoami")["listen_port"] != port_before
    wait_until(lambda: online(profiles["bob"], "Alice"), 20, "bob reaches alice again")
    cli(profiles["bob"], "send", "alice", "still you")
    wait_until(lambda: "still you" in bodies(profiles["alice"], "Bob"), 20)
    capture.send_signal(signal.SIGKILL)
    capture.wait(timeout=10)

    seen = _announcements(_records(capture_file))
    bob_ip = bob.ip
    hers = {name: e for name, e in seen.items() if bob_ip not in e["ip"]}
    assert len(hers) >= 3, hers  # first run, restart, new address
    for field in ("host", "port", "token", "salt"):
        values = [v for e in hers.values() for v in e[field]]
        assert len(values) == len(set(values)), f"{field} repeats across announcements: {hers}"


def test_a_peer_whose_records_were_lost_is_looked_up_again(lan: Lan, tmp_path) -> None:
    """On a busy LAN an answer can be lost; the lookup is tried again, not given up."""
    profiles = make_profiles(tmp_path, ["carol"], [])
    carol_host, late_host = lan.add_host("carol"), lan.add_host("late")
    carol_host.run(profiles["carol"])
    cli(profiles["carol"], "set", "visible", "true")
    late = late_host.popen(
        sys.executable,
        "-m",
        "tests.lan.late_responder",
        late_host.ip,
        "Latecomer",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert late.stdin is not None and late.stdout is not None
    assert late.stdout.readline().strip() == "announced"

    def unanswered() -> bool:
        status = cli_json(profiles["carol"], "lan")
        assert isinstance(status, dict)
        return int(status.get("lookups_unanswered", 0)) >= 1

    wait_until(unanswered, 20, "carol's first lookup of the latecomer went unanswered")
    late.stdin.write("answer now\n")
    late.stdin.flush()
    assert late.stdout.readline().strip() == "answering"

    def latecomer_nearby() -> bool:
        people = cli_json(profiles["carol"], "nearby")
        assert isinstance(people, dict)
        return any(p["name"] == "Latecomer" for p in people["people"])

    wait_until(latecomer_nearby, 20, "carol sees the latecomer once it answers")
    late.stdin.close()
    late.wait(timeout=10)

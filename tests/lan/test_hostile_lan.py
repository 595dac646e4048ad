"""A hostile host on the LAN: floods, malformed and conflicting records, replayed tokens.

The peers must stay responsive, keep their memory bounded, show no noise (no presence
flapping, a Nearby list that stays capped and stable) and not believe a replayed token
(a dial to the replayed address finds nobody, and the contact stays offline). How fast
they answer during a flood and how often a replay makes them dial are figures, not
tests: `python -m bench.bench_hostile_lan` (README)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from .conftest import Lan, cli, cli_json, contacts, make_profiles
from .probe import ROOT, LoopProbe, mallory, rss_kib

pytestmark = [pytest.mark.lan, pytest.mark.timeout(180)]


def test_floods_garbage_and_conflicts_stay_quiet(lan: Lan, tmp_path) -> None:
    profiles = make_profiles(tmp_path, ["alice", "bob"], [("alice", "bob")])
    hosts = {name: lan.add_host(name) for name in ("alice", "bob", "mallory")}
    runners = {name: hosts[name].run(profiles[name]) for name in profiles}
    runners["bob"].wait_line("* Alice is online")
    runners["alice"].wait_line("* Bob is online")
    for name in profiles:  # both visible: they get a Nearby list the fakes could fill
        cli(profiles[name], "set", "visible", "true")
    bob_pid = runners["bob"].proc.pid
    rss_before = rss_kib(bob_pid)
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
    answers_before = len(probe.latencies)
    print(mallory(hosts["mallory"], "flood", "1000"))
    print(mallory(hosts["mallory"], "ptr-only", "500"))
    print(mallory(hosts["mallory"], "garbage", "400"))
    print(mallory(hosts["mallory"], "flood", "1000"))
    answers_during = len(probe.latencies) - answers_before
    # Markers instead of a wait: each crosses its session after the whole attack was sent,
    # and `run` prints it; any noise the attack caused would be printed before it.
    cli(profiles["alice"], "send", "bob", "marker from alice")
    runners["bob"].wait_line("Alice: marker from alice", timeout=30)
    cli(profiles["bob"], "send", "alice", "marker from bob")
    runners["alice"].wait_line("Bob: marker from bob", timeout=30)
    probe.stop()
    conflict.kill()
    conflict.wait()
    status = probe.status
    print(f"control answers during the attack: {answers_during}; status {status}")
    # The loop kept answering through the attack (how fast: bench/bench_hostile_lan.py).
    assert probe.error is None, probe.error
    assert answers_during >= 1
    # Bounded: a Nearby list of at most 32 (the first fakes to arrive; it does not churn),
    # a directory of at most that plus a few entries per contact, bounded lookups.
    assert status["nearby"] <= 32 and status["entries"] <= 32 + 4
    assert status["ignored"] >= 1000
    nearby = cli_json(profiles["bob"], "nearby")["people"]
    assert len(nearby) <= 32 and all(p["name"].startswith("Fake person") for p in nearby)
    rss_growth_mib = (rss_kib(bob_pid) - rss_before) / 1024
    print(f"bob's RSS grew by {rss_growth_mib:.1f} MiB")
    assert rss_growth_mib < 40
    # No noise: neither peer printed anything during the attack but the marker (no
    # presence changes), and both still run and see each other.
    for name, marker in (("bob", "Alice: marker from alice"), ("alice", "Bob: marker from bob")):
        printed = [line for _, line in runners[name].lines[lines_before[name] :]]
        assert printed == [marker], printed
        assert runners[name].proc.poll() is None
    assert contacts(profiles["bob"])["Alice"]["online"]
    assert contacts(profiles["alice"])["Bob"]["online"]


def _connections(sink: subprocess.Popen[str], count: int) -> None:
    """Read the sink's output until it reported `count` accepted connections."""
    assert sink.stdout is not None
    seen = 0
    for line in sink.stdout:
        if line.startswith("connection "):
            seen += 1
            if seen == count:
                return
    raise AssertionError(f"the sink ended after {seen} connection(s)")


def test_replayed_tokens_cause_dials_that_find_nobody(lan: Lan, tmp_path) -> None:
    profiles = make_profiles(tmp_path, ["alice", "bob"], [("alice", "bob")])
    hosts = {name: lan.add_host(name) for name in ("alice", "bob", "mallory")}
    host = hosts["mallory"]
    sink_ip, sink_port = "10.77.0.99", 4444
    host.add_address(f"{sink_ip}/24")
    sink = host.popen(
        sys.executable,
        "-m",
        "tests.lan.hostile",
        host.ip,
        "sink",
        "120",
        str(sink_port),
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert sink.stdout is not None and sink.stdout.readline().strip() == "listening"
    # Mallory records every token it hears and replays it, pointing at her sink.
    replay = host.popen(
        sys.executable,
        "-m",
        "tests.lan.hostile",
        host.ip,
        "replay",
        "120",
        sink_ip,
        str(sink_port),
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        runners = {name: hosts[name].run(profiles[name]) for name in profiles}
        runners["bob"].wait_line("* Alice is online")
        stopped = time.monotonic()
        runners["alice"].stop()
        runners["bob"].wait_line("* Alice is offline", after=stopped)
        # Alice is gone; her (still valid) token keeps being replayed from the sink's
        # address. Bob believes it (it is valid for its epoch) and dials; the sink closes
        # each connection at once. A second dial means the first one's failure was taken.
        _connections(sink, 2)
    finally:
        sink.kill()
        sink.wait()
        replay.kill()
        replay.wait()
    # Nobody answered as Alice: she never came back online at Bob's.
    assert not [line for _, line in runners["bob"].lines if "Alice is online" in line][1:]
    assert not contacts(profiles["bob"])["Alice"]["online"]

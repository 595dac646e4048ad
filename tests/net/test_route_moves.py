"""Moving a session between a direct path and a path marked as Tor, without Tor.

The "Tor" path here is a plain loopback connection to the listener an onion service would
forward to (`Links.listen_onion`), dialled over a route marked `tor=True`: both ends treat
the session exactly as one through Tor (timers, the direct-first rule), only tor itself
is missing (tests/tor/test_session_moves.py runs the same story through a private Tor
network). The direct path is a cable (tests/cable.py): unplugged, it goes silent.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest

from messenger.events import MessageAdded
from messenger.net.links import Route, Streams
from messenger.net.transport import Timing, dial
from messenger.service import PeerService

from ..cable import Cable
from .conftest import FAST, PeerFactory, Recorder, wait_for

pytestmark = pytest.mark.timeout(90)

SLOW = Timing(handshake_timeout=5.0, keepalive_interval=2.0, dead_after=20.0, connect_timeout=2.0)


class LoopbackOnion:
    """A Dialer offering one route marked as Tor, to a peer's onion listener."""

    def __init__(self, contact_id: str, target: tuple[str, int]) -> None:
        self.contact_id = contact_id
        self.target = target

    async def routes(self, contact_id: str) -> list[Route]:
        if contact_id != self.contact_id:
            return []

        async def connect(timeout: float) -> Streams:
            return await dial(*self.target, timeout)

        return [Route("loopback.onion", connect, tor=True)]


@pytest.fixture
async def cables() -> AsyncIterator[list[Cable]]:
    made = [Cable("127.0.0.1"), Cable("127.0.0.1")]
    for cable in made:
        await cable.plug()
    try:
        yield made
    finally:
        for cable in made:
            await cable.aclose()


def _route(service: PeerService, contact_id: str) -> str | None:
    conn = service.links.connection(contact_id)
    if conn is None or conn.closed.is_set() or not conn.session.established:
        return None
    return "tor" if service.links.via_tor(conn) else "direct"


async def test_direct_goes_then_tor_then_direct_again_each_message_once(
    make_peer: PeerFactory, cables: list[Cable]
) -> None:
    cable_a, cable_b = cables
    common = {"timing": FAST, "tor_timing": SLOW, "direct_retry": 0.2}
    alice = await make_peer("alice", advertise=(cable_a.address,), **common)
    bob = await make_peer("bob", advertise=(cable_b.address,), **common)
    assert alice.listen_port and bob.listen_port
    cable_a.target = ("127.0.0.1", alice.listen_port)
    cable_b.target = ("127.0.0.1", bob.listen_port)
    code, invite = await alice.invites.create_invite()
    assert [str(x) for x in invite.addresses] == [cable_a.address]  # advertised only
    await bob.invites.accept_invite(code)
    bob_id, alice_id = bob.contact_id, alice.contact_id
    await wait_for(lambda: _route(alice, bob_id) == _route(bob, alice_id) == "direct")
    assert alice.reach.hello().listen_port == 0  # nothing to pair with the address seen
    # Bob can also reach Alice "through Tor" (her onion listener).
    bob.links.dialers.append(LoopbackOnion(alice_id, await alice.links.listen_onion()))
    got = {"alice": Recorder(alice), "bob": Recorder(bob)}

    sent: dict[str, list[str]] = {"alice": [], "bob": []}
    stop = asyncio.Event()

    async def chatter(me: PeerService, name: str, other: str) -> None:
        while not stop.is_set():
            body = f"{name}-{len(sent[name])}"
            await me.chat.send_text(other, body)
            sent[name].append(body)
            await asyncio.sleep(0.02)  # pacing: a conversation, not a flood

    def after(name: str, more: int) -> Callable[[], bool]:
        mark = len(sent[name])
        return lambda: len(sent[name]) >= mark + more

    talkers = [
        asyncio.ensure_future(chatter(alice, "alice", bob_id)),
        asyncio.ensure_future(chatter(bob, "bob", alice_id)),
    ]
    try:
        await wait_for(after("alice", 10))
        await cable_a.unplug()
        await cable_b.unplug()
        # Silence on the direct path: both notice, Bob dials the Tor route, both mark it.
        await wait_for(lambda: _route(alice, bob_id) == _route(bob, alice_id) == "tor", 30)
        for service, contact in ((alice, bob_id), (bob, alice_id)):
            conn = service.links.connection(contact)
            assert conn is not None and conn.timing == SLOW  # Tor's timers
        await wait_for(after("alice", 10))
        await cable_a.plug()
        await cable_b.plug()
        # Within a direct retry the session moves back, and the Tor one is retired.
        await wait_for(lambda: _route(alice, bob_id) == _route(bob, alice_id) == "direct", 30)
        await wait_for(after("alice", 10))
    finally:
        stop.set()
        await asyncio.gather(*talkers)

    for receiver, sender in (("bob", "alice"), ("alice", "bob")):
        rec, wanted = got[receiver], len(sent[sender])

        def bodies(rec: Recorder = rec) -> list[str]:
            return [e.message.body for e in rec.of(MessageAdded) if not e.message.outgoing]

        def all_in(bodies: Callable[[], list[str]] = bodies, wanted: int = wanted) -> bool:
            return len(bodies()) >= wanted

        await wait_for(all_in, 30)
        counts = Counter(bodies())
        assert set(counts) == set(sent[sender])
        assert max(counts.values()) == 1, [m for m, n in counts.items() if n > 1]


async def test_a_lan_sighting_moves_a_tor_session_at_once(
    make_peer: PeerFactory, cables: list[Cable]
) -> None:
    """No periodic retry (an hour away): the contact showing up on the LAN (discovery's
    callback, as tests/lan's real mDNS calls it) makes the dial loop try the direct route."""
    cable_a, cable_b = cables
    common = {"timing": FAST, "tor_timing": SLOW, "direct_retry": 3600.0}
    alice = await make_peer("alice", advertise=(cable_a.address,), **common)
    bob = await make_peer("bob", advertise=(cable_b.address,), **common)
    assert alice.listen_port and bob.listen_port
    cable_a.target = ("127.0.0.1", alice.listen_port)
    cable_b.target = ("127.0.0.1", bob.listen_port)
    code, _ = await alice.invites.create_invite()
    await bob.invites.accept_invite(code)
    bob_id, alice_id = bob.contact_id, alice.contact_id
    await wait_for(lambda: _route(alice, bob_id) == _route(bob, alice_id) == "direct")
    bob.links.dialers.append(LoopbackOnion(alice_id, await alice.links.listen_onion()))
    await cable_a.unplug()
    await cable_b.unplug()
    await wait_for(lambda: _route(alice, bob_id) == _route(bob, alice_id) == "tor", 30)
    tor_conn = bob.links.connection(alice_id)
    await cable_a.plug()
    await cable_b.plug()
    assert _route(bob, alice_id) == "tor"  # nothing tries the direct path by itself
    bob.lan.lan_contact_seen(alice_id, [cable_a.address])  # discovery's callback
    await wait_for(lambda: _route(alice, bob_id) == _route(bob, alice_id) == "direct", 30)
    assert tor_conn is not None and tor_conn.closed.is_set()  # the Tor session retired
    record = await bob.chat.send_text(alice_id, "on the LAN again")

    async def stored() -> bool:
        return any(m.msg_id == record.msg_id for m in await alice.chat.history(bob_id))

    await wait_for(stored)

"""A contact reached both directly and over Tor: the session runs on the direct path; when
that path goes silent it moves to Tor, and when the path comes back it moves back, and
every message sent meanwhile (both ways) arrives exactly once.

The direct path is a "cable": a real TCP relay on its own loopback address in front of each
peer's listener (the peers announce only the cable's address, `ServiceConfig.advertise`).
Unplugging it closes its listening socket and makes the connections through it silent, as
a LAN link that goes down does (nothing is reset; the sessions must notice by themselves).
Everything else is real: services, SQLCipher files, the private Tor network (conftest.py).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path

import pytest

from messenger.events import MessageAdded
from messenger.net.tor import TorSettings
from messenger.net.transport import Timing
from messenger.service import PeerService, ServiceConfig

from ..cable import Cable
from .test_service_tor import Watched

pytestmark = [pytest.mark.tor, pytest.mark.timeout(480)]

# The direct path notices a silent link within seconds; Tor sessions are more patient.
DIRECT_TIMING = Timing(
    handshake_timeout=10.0, keepalive_interval=1.0, dead_after=4.0, connect_timeout=2.0
)
TOR_TIMING = Timing(
    handshake_timeout=30.0, keepalive_interval=5.0, dead_after=30.0, connect_timeout=5.0
)


@pytest.fixture
async def cables() -> AsyncIterator[Callable[[str], Awaitable[Cable]]]:
    made: list[Cable] = []

    async def make(host: str) -> Cable:
        cable = Cable(host)
        await cable.plug()
        made.append(cable)
        return cable

    try:
        yield make
    finally:
        for cable in made:
            await cable.aclose()


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[list[PeerService]]:
    made: list[PeerService] = []
    try:
        yield made
    finally:
        for service in made:
            await service.aclose()


async def _service(
    name: str, host: str, cable: Cable, settings: TorSettings, folder: Path
) -> Watched:
    config = ServiceConfig(
        listen_host=host,
        listen_port=0,
        discovery=False,
        timing=DIRECT_TIMING,
        tor_timing=TOR_TIMING,
        dial_base=0.2,
        dial_cap=2.0,
        direct_retry=1.0,
        tor=True,
        tor_settings=settings,
        advertise=(cable.address,),
    )
    service, _ = await PeerService.create_profile(
        folder / name, name.capitalize(), None, config=config, rng=random.Random(1)
    )
    assert service.listen_port is not None
    cable.target = (host, service.listen_port)
    return Watched(service)


async def _poll(check: Callable[[], bool], within: float) -> None:
    """For states no event announces (a session replaced by another keeps the contact
    online): polled, a positive condition with a bound."""
    async with asyncio.timeout(within):
        while not check():
            await asyncio.sleep(0.05)


def _route(service: PeerService, contact_id: str) -> str | None:
    conn = service.links.connection(contact_id)
    if conn is None or conn.closed.is_set() or not conn.session.established:
        return None
    return "tor" if service.links.via_tor(conn) else "direct"


async def test_session_moves_to_tor_and_back_without_losing_or_doubling_a_message(
    tor_settings: TorSettings,
    cables: Callable[[str], Awaitable[Cable]],
    services: list[PeerService],
    tmp_path: Path,
) -> None:
    cable_a, cable_b = await cables("127.0.0.12"), await cables("127.0.0.13")
    alice = await _service("alice", "127.0.0.2", cable_a, tor_settings, tmp_path)
    services.append(alice.service)
    bob = await _service("bob", "127.0.0.3", cable_b, tor_settings, tmp_path)
    services.append(bob.service)
    a, b = alice.service, bob.service
    for w in (alice, bob):
        await w.until(partial(_tor_settled, w), within=180)
        assert _tor_state(w) == "ready"
    assert a.tor is not None

    # Paired through the cable; each knows the other's cable address and onion, direct first.
    code, invite = await a.invites.create_invite()
    assert [str(x) for x in invite.addresses] == [cable_a.address, a.tor.address]
    await b.invites.accept_invite(code)
    await alice.until(lambda: a.contacts.is_online(b.contact_id))
    await bob.until(lambda: b.contacts.is_online(a.contact_id))
    assert [r.tor for r in await a.links.routes(b.contact_id)] == [False, True]
    assert [r.tor for r in await b.links.routes(a.contact_id)] == [False, True]
    # On both paths, reached on the direct one.
    assert _route(a, b.contact_id) == _route(b, a.contact_id) == "direct"

    sent: dict[str, list[str]] = {"alice": [], "bob": []}
    stop = asyncio.Event()

    async def chatter(me: PeerService, name: str, other: str) -> None:
        while not stop.is_set():
            body = f"{name}-{len(sent[name])}"
            await me.chat.send_text(other, body)
            sent[name].append(body)
            await asyncio.sleep(0.05)  # pacing: a conversation, not a flood

    talkers = [
        asyncio.ensure_future(chatter(a, "alice", b.contact_id)),
        asyncio.ensure_future(chatter(b, "bob", a.contact_id)),
    ]
    try:
        await _poll(lambda: len(sent["alice"]) >= 10, within=30)
        # The link goes: silence. Both notice, and the session moves to Tor.
        await cable_a.unplug()
        await cable_b.unplug()
        await _poll(lambda: _route(a, b.contact_id) == _route(b, a.contact_id) == "tor", 180)
        assert _timing(a, b.contact_id) == _timing(b, a.contact_id) == TOR_TIMING
        mark = len(sent["alice"])
        await _poll(lambda: len(sent["alice"]) >= mark + 10, within=30)
        # The link comes back: within a direct retry the session moves back to it.
        carried = cable_a.carried + cable_b.carried
        await cable_a.plug()
        await cable_b.plug()
        await _poll(
            lambda: _route(a, b.contact_id) == _route(b, a.contact_id) == "direct", within=60
        )
        assert cable_a.carried + cable_b.carried > carried
        assert _timing(a, b.contact_id) == _timing(b, a.contact_id) == DIRECT_TIMING
        mark = len(sent["alice"])
        await _poll(lambda: len(sent["alice"]) >= mark + 10, within=30)
    finally:
        stop.set()
        await asyncio.gather(*talkers)

    # Every message arrives exactly once, and each sender hears it was delivered.
    for receiver, sender, who in ((bob, a, "alice"), (alice, b, "bob")):
        await _poll(partial(_received_all, receiver, sent[who]), within=120)
        counts = Counter(_bodies(receiver))
        assert set(counts) == set(sent[who])
        assert max(counts.values()) == 1, [m for m, n in counts.items() if n > 1]
        history = await receiver.service.chat.history(sender.contact_id, limit=10_000)
        stored = [m.body for m in history if not m.outgoing]
        assert sorted(stored) == sorted(sent[who])
        # ... and acknowledged: the sender's outbox empties (polled: a database read).
        async with asyncio.timeout(60):
            while await sender.db.run(sender.repo.outbox, receiver.service.contact_id):
                await asyncio.sleep(0.1)


def _timing(service: PeerService, contact_id: str) -> Timing | None:
    conn = service.links.connection(contact_id)
    return conn.timing if conn is not None else None


def _tor_state(w: Watched) -> str:
    return w.service.tor.status.state if w.service.tor is not None else "off"


def _tor_settled(w: Watched) -> bool:
    return _tor_state(w) in ("ready", "failed")


def _received_all(w: Watched, bodies: list[str]) -> bool:
    return len(_bodies(w)) >= len(bodies)


def _bodies(w: Watched) -> list[str]:
    return [
        e.message.body for e in w.events if isinstance(e, MessageAdded) and not e.message.outgoing
    ]

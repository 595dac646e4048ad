"""Contacts who paired without Tor learn each other's onion address over their session
(ReachUpdate, protocol.md §19.8), and reach each other through Tor once no direct path is
left. Real services, the private Tor network (conftest.py), no LAN discovery.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from messenger.net.reach import is_onion_address
from messenger.net.tor import TorSettings
from messenger.service import PeerService, ServiceConfig

from .test_service_tor import TOR_TIMING, Watched

pytestmark = [pytest.mark.tor, pytest.mark.timeout(420)]

Factory = Callable[..., Awaitable[Watched]]


@pytest.fixture
async def open_service(tmp_path: Path, tor_settings: TorSettings) -> AsyncIterator[Factory]:
    """open_service(name, host, tor=..., create=...): a service on `host` (port chosen
    fresh each time), closed after the test if still open."""
    services: list[PeerService] = []

    async def make(
        name: str, host: str, *, tor: bool, create: bool = False, port: int = 0, **kw: object
    ) -> Watched:
        config = ServiceConfig(
            listen_host=host,
            listen_port=port,
            discovery=False,
            timing=TOR_TIMING,
            dial_base=0.5,
            dial_cap=5.0,
            tor=tor,
            tor_settings=tor_settings,
            **kw,  # type: ignore[arg-type]
        )
        path = tmp_path / name
        if create:
            service, _ = await PeerService.create_profile(
                path, name.capitalize(), None, config=config, rng=random.Random(1)
            )
        else:
            service = await PeerService.open(path, None, config=config, rng=random.Random(1))
        services.append(service)
        return Watched(service)

    try:
        yield make
    finally:
        for service in services:
            await service.aclose()


def _state(service: PeerService) -> str:
    return service.tor.status.state if service.tor is not None else "off"


def _onion(service: PeerService) -> str:
    assert service.tor is not None and service.tor.address is not None
    return service.tor.address


async def _stored(at: PeerService, contact_id: str) -> tuple[str, ...]:
    record = await at.db.run(at.repo.contact, contact_id)
    assert record is not None
    return record.addresses


async def test_contacts_learn_onions_over_their_session_then_meet_over_tor(
    open_service: Factory,
) -> None:
    # Paired on loopback with Tor off: each knows only the other's direct address.
    alice = await open_service("alice", "127.0.0.2", tor=False, create=True)
    bob = await open_service("bob", "127.0.0.3", tor=False, create=True)
    a, b = alice.service, bob.service
    code, _ = await a.invites.create_invite()
    await b.invites.accept_invite(code)
    await alice.until(lambda: a.contacts.is_online(b.contact_id))
    assert not any(is_onion_address(x) for x in await _stored(a, b.contact_id))
    ports = a.listen_port, b.listen_port
    await a.aclose()
    await b.aclose()

    # Tor on, for the first time: no onion key yet, so no Hello can carry an onion. The
    # direct sessions come up at once; each onion is published seconds later and told to
    # the other over the live session.
    alice, bob = await asyncio.gather(
        open_service("alice", "127.0.0.2", tor=True, port=ports[0]),
        open_service("bob", "127.0.0.3", tor=True, port=ports[1]),
    )
    a, b = alice.service, bob.service
    await alice.until(lambda: _state(a) in ("ready", "failed"), within=180)
    await bob.until(lambda: _state(b) in ("ready", "failed"), within=180)
    assert (_state(a), _state(b)) == ("ready", "ready")
    await alice.until(lambda: a.contacts.is_online(b.contact_id))
    await bob.until(lambda: b.contacts.is_online(a.contact_id))

    async def knows(at: Watched, other: PeerService) -> bool:
        return _onion(other) in await _stored(at.service, other.contact_id)

    async with asyncio.timeout(60):  # polled: a database read, no event to await
        while not (await knows(alice, b) and await knows(bob, a)):
            await asyncio.sleep(0.1)
    # Learnt over the session, not from its Hello: the live session's Hellos carry none.
    conn = a.links.connection(b.contact_id)
    assert conn is not None and conn.session.peer is not None
    assert not any(is_onion_address(x) for x in conn.session.hello.addresses)
    assert not any(is_onion_address(x) for x in conn.session.peer.hello.addresses)

    # No direct path any more: both move to other addresses and announce only their onion.
    # The stored direct addresses lead nowhere; the onions (the same: the key was stored)
    # are dialled through Tor.
    alice_onion, bob_onion = _onion(a), _onion(b)
    await a.aclose()
    await b.aclose()
    alice, bob = await asyncio.gather(
        open_service("alice", "127.0.0.4", tor=True, tor_only=True),
        open_service("bob", "127.0.0.5", tor=True, tor_only=True),
    )
    a, b = alice.service, bob.service
    assert (_onion(a), _onion(b)) == (alice_onion, bob_onion)
    await alice.until(lambda: a.contacts.is_online(b.contact_id), within=180)
    await bob.until(lambda: b.contacts.is_online(a.contact_id), within=60)
    conn = a.links.connection(b.contact_id)
    assert conn is not None
    dialler, far = (a, conn) if conn.initiator else (b, b.links.connection(a.contact_id))
    assert dialler.tor is not None and dialler.tor.manager is not None and far is not None
    assert far.peer_address == dialler.tor.manager.socks_address  # through the dialler's tor
    await a.chat.send_text(b.contact_id, "over tor now")
    await b.chat.send_text(a.contact_id, "so it is")
    await bob.until(lambda: "over tor now" in bob.received(), within=60)
    await alice.until(lambda: "so it is" in alice.received(), within=60)

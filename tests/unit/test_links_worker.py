"""Dialling with the links worker built alone: real Noise sessions over loopback TCP
between two Links, wired to a small fake of their hooks (no PeerService)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from messenger.contacts import ContactBook
from messenger.events import PresenceChanged
from messenger.identity import Identity
from messenger.identity import contact_id as make_contact_id
from messenger.net.links import Links, Route, Streams, tcp_route
from messenger.net.transport import Connection, Timing
from messenger.protocol import wire
from messenger.protocol.session import ContactTarget, Established, Session, SessionEvent
from messenger.records import InviteRecord
from messenger.storage.repository import ContactKeys

from .fake_ports import Events, Tasks, until


class Hooks:
    """The LinkHooks port: adopts every known contact's session, records the rest."""

    def __init__(self) -> None:
        self.adoptions: list[str] = []
        self.suspected: list[Connection] = []
        self.messages: list[wire.WireMessage] = []

    async def established(self, links: Links, conn: Connection, event: Established) -> None:
        assert event.peer.contact_id is not None
        links.adopt(conn, event.peer.contact_id)

    async def received(self, conn: Connection, message: wire.WireMessage) -> None:
        self.messages.append(message)
        if isinstance(message, wire.Ping):  # keepalive, as the service answers it
            conn.send(wire.Pong(message.nonce))

    def received_now(self, conn: Connection, message: wire.WireMessage) -> bool:
        return False  # everything through `received`

    def delivered(self, conn: Connection) -> None:
        pass

    async def nearby(self, conn: Connection, event: SessionEvent) -> None:
        raise AssertionError("no nearby sessions here")

    def adopted(self, conn: Connection, contact_id: str) -> None:
        self.adoptions.append(contact_id)

    def suspect(self, conn: Connection) -> None:
        self.suspected.append(conn)

    async def peek_inbound(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        settled: Callable[[], None],
    ) -> bytes | None:
        return await reader.read(64)

    def nearby_offered(self) -> bool:
        return False

    def invite(self, invite_id: bytes) -> InviteRecord | None:
        return None


class ListDialer:
    """A dialer with fixed routes; records which it was asked for."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self._routes = list(routes)
        self.asked: list[str] = []

    async def routes(self, contact_id: str) -> list[Route]:
        self.asked.append(contact_id)
        return self._routes


def failing_route(key: str, tried: list[str]) -> Route:
    async def connect(connect_timeout: float) -> Streams:
        tried.append(key)
        raise ConnectionRefusedError(f"{key} refused")

    return Route(key, connect)


@dataclasses.dataclass
class Side:
    identity: Identity
    links: Links
    hooks: Hooks
    events: Events
    tasks: Tasks

    @property
    def id(self) -> str:
        return make_contact_id(self.identity.ed25519_public)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.links.listening_on()[0][1]}"


def build(identity: Identity, contacts: ContactBook) -> Side:
    hooks, events, tasks = Hooks(), Events(), Tasks()
    links = Links(
        identity=identity,
        contacts=contacts,
        hooks=hooks,
        hello=lambda: wire.Hello(identity.ed25519_public, identity.static_certificate, "x", 0, ()),
        emit=events,
        tasks=tasks,
        clock=lambda: 1_700_000_000.0,
        rng=random.Random(7),
        timing=Timing(),
        dial_base=0.05,
        dial_cap=0.2,
    )
    return Side(identity, links, hooks, events, tasks)


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[Side, Side]]:
    ids = Identity.generate(), Identity.generate()
    books = ContactBook(ids[0].ed25519_public), ContactBook(ids[1].ed25519_public)
    psk = os.urandom(32)
    for book, other in ((books[0], ids[1]), (books[1], ids[0])):
        cid = make_contact_id(other.ed25519_public)
        book.remember(ContactKeys(cid, other.ed25519_public, other.static_public, psk))
    sides = build(ids[0], books[0]), build(ids[1], books[1])
    for side in sides:
        await side.links.listen("127.0.0.1", 0)
    yield sides
    for side in sides:
        side.links.begin_close()
        await side.links.close_connections()
        await asyncio.gather(*side.links.cancel_dialers(), return_exceptions=True)
        await side.tasks.aclose()
        await side.links.wait_closed()


async def test_routes_are_tried_in_dialer_order_once_each_until_one_works(two) -> None:
    ann, ben = two
    tried: list[str] = []
    lan = ListDialer([failing_route("lan", tried), tcp_route(ben.address)])
    stored = ListDialer([failing_route("old", tried), tcp_route(ben.address)])
    ann.links.dialers = [lan, stored]
    assert [r.key for r in await ann.links.routes(ben.id)] == ["lan", ben.address, "old"]
    assert await ann.links.dial_once(ben.id)
    assert tried == ["lan"]  # the working route came next; "old" was never needed
    assert ann.links.is_online(ben.id) and ann.hooks.adoptions == [ben.id]
    await until(lambda: ben.links.is_online(ann.id))
    assert ann.events == [PresenceChanged(ben.id, online=True, route="lan")]  # loopback
    conn = ann.links.ready(ben.id)
    assert conn is not None and conn.initiator
    assert not ann.links.is_addressless(ben.id)


async def test_a_contact_with_no_route_is_marked_addressless(two) -> None:
    ann, ben = two
    ann.links.dialers = [ListDialer([])]
    assert not await ann.links.dial_once(ben.id)
    assert ann.links.is_addressless(ben.id)
    assert not ann.links.is_online(ben.id)


async def test_a_dropped_session_is_redialled_by_the_dial_loop(two) -> None:
    ann, ben = two
    ann.links.dialers = [ListDialer([tcp_route(ben.address)])]
    ann.links.ensure_dialer(ben.id, now=True)
    await until(lambda: ben.links.is_online(ann.id))
    first = ann.links.connection(ben.id)
    assert first is not None
    first.close("test: drop")
    await until(
        lambda: ann.links.ready(ben.id) is not None and ann.links.connection(ben.id) is not first
    )
    assert PresenceChanged(ben.id, online=False) in ann.events


async def test_simultaneous_dials_keep_one_session_on_both_sides(two) -> None:
    ann, ben = two
    ann.links.dialers = [ListDialer([tcp_route(ben.address)])]
    ben.links.dialers = [ListDialer([tcp_route(ann.address)])]
    await asyncio.gather(ann.links.dial_once(ben.id), ben.links.dial_once(ann.id))
    await until(lambda: ann.links.ready(ben.id) is not None and ben.links.ready(ann.id) is not None)
    a_conn, b_conn = ann.links.ready(ben.id), ben.links.ready(ann.id)
    assert a_conn is not None and b_conn is not None
    # The same TCP connection at both ends: ann's local address is ben's peer address.
    assert a_conn.writer.get_extra_info("sockname")[1] == b_conn.peer_address[1]
    # It is the one dialled by the smaller identity key.
    smaller = min(ann, ben, key=lambda s: s.identity.ed25519_public)
    kept = a_conn if smaller is ann else b_conn
    assert kept.initiator


async def test_forget_closes_the_session_and_stops_dialling(two) -> None:
    ann, ben = two
    ann.links.dialers = [ListDialer([tcp_route(ben.address)])]
    ann.links.ensure_dialer(ben.id, now=True)
    await until(lambda: ann.links.ready(ben.id) is not None)
    conn = ann.links.connection(ben.id)
    assert conn is not None
    ann.links.forget(ben.id)
    assert conn.closed.is_set() or conn.session.closed
    assert not ann.links.is_online(ben.id)
    assert ann.events[-1] == PresenceChanged(ben.id, online=False)


def tor_labelled(route: Route) -> Route:
    """A loopback route the links worker is told runs through Tor (as TorReach's do)."""
    return Route("x.onion:9878", route.connect, tor=True)


async def test_presence_carries_the_route_and_a_move_to_the_lan_is_announced(two) -> None:
    ann, ben = two
    ann.links.dialers = [ListDialer([tor_labelled(tcp_route(ben.address))])]
    assert await ann.links.dial_once(ben.id)
    assert ann.links.route(ben.id) == "tor"
    assert ann.events == [PresenceChanged(ben.id, online=True, route="tor")]
    first = ann.links.connection(ben.id)
    assert first is not None
    first.adopted_at -= 60  # an old session: a new one replaces it (not a simultaneous dial)
    keys = ann.links.contacts.keys(ben.id)
    assert keys is not None
    session = Session(
        initiator=True,
        static=ann.links.static_keypair(),
        hello=ann.links.hello(),
        target=ContactTarget(ben.id, keys.ed25519_public, keys.x25519_public, keys.psk),
    )
    second = await ann.links.open_route(tcp_route(ben.address), session)
    await asyncio.wait_for(second.adopted.wait(), 10)
    assert ann.links.connection(ben.id) is second
    assert ann.links.route(ben.id) == "lan"  # loopback counts as the LAN
    assert ann.events[-1] == PresenceChanged(ben.id, online=True, route="lan")
    assert len(ann.events.of(PresenceChanged)) == 2

"""What happens when a session is established (messenger/net/established.py), with the
worker built alone from small fakes of its ports: a real SQLCipher repository and keyring,
a fake session and a fake links worker (no PeerService, no MagicMock). The Noise
handshake itself is covered by test_session.py and test_links_worker.py; here the
Established event is made by hand, as the session would hand it over.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from messenger.identity import Identity, derive_contact_secrets
from messenger.identity import contact_id as make_contact_id
from messenger.net.established import EstablishedSessions
from messenger.protocol import wire
from messenger.protocol.invite import Address
from messenger.protocol.session import Established, PeerIdentity
from messenger.records import ContactRecord, InviteRecord
from messenger.storage.repository import ContactKeys, NewContact

from .fake_ports import InlineDb, Person, befriend, make_person

NOW = 1_700_000_000.0


class _Session:
    """The part of a Session this worker uses: accepting a first contact's peer."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self.accepted = 0

    def accept_peer(self) -> None:
        # As the real Session: only while the peer waits (not once the session closed).
        if self._conn.closed.is_set():
            raise RuntimeError("no peer is waiting to be accepted")
        self.accepted += 1


class Conn:
    def __init__(self, peer_address: tuple[str, int] | None = ("192.0.2.7", 40000)) -> None:
        self.peer_address = peer_address
        self.closed = asyncio.Event()
        self.close_reason: str | None = None
        self.session = _Session(self)

    def close(self, reason: str) -> None:
        self.close_reason = reason
        self.closed.set()


class Links:
    """The links port: which invite a session used, Tor or not; records adoptions."""

    def __init__(self) -> None:
        self.invites: dict[Any, bytes] = {}
        self.tor: set[Any] = set()
        self.adopted: list[tuple[Any, str]] = []

    def invite_of(self, conn: Any) -> bytes:
        return self.invites[conn]

    def adopt(self, conn: Any, contact_id: str) -> None:
        self.adopted.append((conn, contact_id))

    def via_tor(self, conn: Any) -> bool:
        return conn in self.tor


@dataclasses.dataclass
class World:
    me: Person
    sessions: EstablishedSessions
    links: Links
    invites: dict[bytes, InviteRecord]
    added: list[NewContact]
    adopted_when_added: list[int]  # how many adoptions there were when each was added


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    me = make_person(tmp_path / "me", "me")
    links = Links()
    invites: dict[bytes, InviteRecord] = {}
    added: list[NewContact] = []
    adopted_when_added: list[int] = []

    async def contact_added(new: NewContact) -> ContactRecord:
        added.append(new)
        adopted_when_added.append(len(links.adopted))
        me.contacts.remember(ContactKeys(new.id, new.ed25519_public, new.x25519_public, new.psk))
        record = me.repo.contact(new.id)
        assert record is not None
        return record

    sessions = EstablishedSessions(
        me=me.me,
        db=InlineDb(),
        repo=me.repo,
        links=links,
        contacts=me.contacts,
        invites=invites,
        contact_added=contact_added,
        clock=lambda: NOW,
    )
    try:
        yield World(me, sessions, links, invites, added, adopted_when_added)
    finally:
        me.repo.close()


def hello(
    identity: Identity,
    name: str = "Friend",
    listen_port: int = 7000,
    addresses: tuple[str, ...] = (),
) -> wire.Hello:
    return wire.Hello(
        identity.ed25519_public, identity.static_certificate, name, listen_port, addresses
    )


def first_contact(identity: Identity, h: wire.Hello | None = None) -> Established:
    return Established(
        PeerIdentity(
            hello=h or hello(identity),
            remote_static=identity.static_public,
            handshake_hash=os.urandom(32),
            contact_id=None,
        )
    )


def open_invite(world: World, *, expires_at: int = int(NOW) + 3600) -> bytes:
    invite_id = os.urandom(16)
    world.invites[invite_id] = world.me.repo.add_invite(invite_id, os.urandom(32), expires_at, 0)
    return invite_id


async def redeem(world: World, invite_id: bytes, event: Established) -> Conn:
    conn = Conn()
    world.links.invites[conn] = invite_id
    await world.sessions.on_established(conn, event)  # type: ignore[arg-type]
    return conn


# -- first contact through one of our invites -------------------------------------------


async def test_first_contact_stores_the_contact_and_redeems_the_invite(world: World) -> None:
    them = Identity.generate()
    invite_id = open_invite(world)
    event = first_contact(them, hello(them, "  Fri\x1bend\u202e  ", 7000, ("198.51.100.9:7000",)))
    conn = await redeem(world, invite_id, event)
    them_id = make_contact_id(them.ed25519_public)

    record = world.me.repo.contact(them_id)
    assert record is not None
    assert record.display_name == "Friend"  # control and bidi characters removed
    assert record.x25519_public == them.static_public
    assert record.created_at == NOW
    assert record.addresses == ("192.0.2.7:7000", "198.51.100.9:7000")
    secrets = derive_contact_secrets(event.peer.handshake_hash)
    keys = {k.id: k for k in world.me.repo.contact_keys()}
    assert keys[them_id].psk == secrets.psk
    assert world.me.repo.discovery_keys()[them_id] == secrets.discovery_key

    stored = world.me.repo.invite(invite_id)
    assert stored is not None and (stored.used_at, stored.used_by) == (NOW, them_id)
    assert world.invites[invite_id] == stored  # the service's copy says the same

    assert conn.session.accepted == 1 and not conn.closed.is_set()
    assert [n.id for n in world.added] == [them_id]
    assert world.adopted_when_added == [0]  # known to the service before it goes live
    assert world.links.adopted == [(conn, them_id)]


async def test_first_contact_whose_session_ends_while_stored_is_still_known(
    world: World,
) -> None:
    """Stored with the invite redeemed, so known in memory and shown, even though this
    session cannot go live: the new contact reconnects as a contact."""
    them = Identity.generate()
    invite_id = open_invite(world)
    conn = Conn()
    repo = world.me.repo

    class ClosingDb:  # the peer hangs up while the contact is being stored
        async def run(self, fn: Any, *args: Any) -> Any:
            result = fn(*args)
            conn.close("peer went away")
            return result

    world.sessions._db = ClosingDb()  # type: ignore[assignment]
    event = first_contact(them, hello(them, "Friend", 7000, ()))
    world.links.invites[conn] = invite_id
    await world.sessions.on_established(conn, event)  # type: ignore[arg-type]
    them_id = make_contact_id(them.ed25519_public)
    assert repo.contact(them_id) is not None
    assert [n.id for n in world.added] == [them_id]
    assert conn.session.accepted == 0 and world.links.adopted == []


async def test_first_contact_without_a_name_is_called_question_mark(world: World) -> None:
    them = Identity.generate()
    await redeem(world, open_invite(world), first_contact(them, hello(them, "\u200b\x00 ")))
    record = world.me.repo.contact(make_contact_id(them.ed25519_public))
    assert record is not None and record.display_name == "?"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("used", "this invite has already been used"),
        ("expired", "this invite expired"),
        ("unknown", "unknown invite"),
    ],
)
async def test_an_unusable_invite_closes_the_session_and_stores_nothing(
    world: World, case: str, reason: str
) -> None:
    if case == "used":
        invite_id = open_invite(world)
        await redeem(world, invite_id, first_contact(Identity.generate()))
    elif case == "expired":
        invite_id = open_invite(world, expires_at=int(NOW) - 1)
    else:
        invite_id = os.urandom(16)
    before = world.me.repo.contacts()
    adopted = list(world.links.adopted)
    them = Identity.generate()
    conn = await redeem(world, invite_id, first_contact(them))
    assert conn.close_reason == reason
    assert conn.session.accepted == 0
    assert world.me.repo.contacts() == before
    assert make_contact_id(them.ed25519_public) not in world.me.contacts
    assert world.links.adopted == adopted


async def test_a_second_invite_from_a_contact_is_refused_and_left_open(world: World) -> None:
    them = Identity.generate()
    await redeem(world, open_invite(world), first_contact(them))
    second = open_invite(world)
    conn = await redeem(world, second, first_contact(them))
    assert conn.close_reason == "you are already contacts"
    stored = world.me.repo.invite(second)
    assert stored is not None and stored.used_at is None  # both or neither: not used up
    assert world.invites[second].used_at is None
    assert len(world.added) == 1 and len(world.links.adopted) == 1


# -- a known contact reconnects ---------------------------------------------------------


def reconnect(friend: Person, h: wire.Hello, remote_static: bytes | None = None) -> Established:
    return Established(
        PeerIdentity(
            hello=h,
            remote_static=remote_static or friend.identity.static_public,
            handshake_hash=os.urandom(32),
            contact_id=friend.id,
        )
    )


async def test_reconnect_records_presence_and_adopts(world: World, tmp_path: Path) -> None:
    friend = make_person(tmp_path / "friend", "friend")
    try:
        befriend(world.me, friend)
        world.me.repo.update_presence(friend.id, ["203.0.113.5:6000"], 1.0, "friend")
        keys_before = world.me.contacts.keys(friend.id)
        conn = Conn(("2001:db8::7", 50000))
        h = hello(friend.identity, "Renamed\x07", 7001, ("198.51.100.9:7001",))
        await world.sessions.on_established(conn, reconnect(friend, h))  # type: ignore[arg-type]
        record = world.me.repo.contact(friend.id)
        assert record is not None
        assert record.display_name == "Renamed"
        assert record.last_seen == NOW
        # where it was reached first, then what it said, then what we knew already
        assert record.addresses == ("[2001:db8::7]:7001", "198.51.100.9:7001", "203.0.113.5:6000")
        assert record.x25519_public == friend.identity.static_public  # no rotation
        assert world.me.contacts.keys(friend.id) == keys_before
        assert world.links.adopted == [(conn, friend.id)]
        assert world.added == [] and conn.session.accepted == 0
    finally:
        friend.repo.close()


async def test_reconnect_with_a_rotated_static_key_records_it(world: World, tmp_path: Path) -> None:
    friend = make_person(tmp_path / "friend", "friend")
    try:
        befriend(world.me, friend)
        old = world.me.contacts.keys(friend.id)
        assert old is not None
        rotated = friend.identity.rotate_static()
        assert rotated.static_public != friend.identity.static_public
        conn = Conn()
        event = reconnect(friend, hello(rotated), remote_static=rotated.static_public)
        await world.sessions.on_established(conn, event)  # type: ignore[arg-type]
        record = world.me.repo.contact(friend.id)
        assert record is not None and record.x25519_public == rotated.static_public
        stored = {k.id: k for k in world.me.repo.contact_keys()}[friend.id]
        assert stored.x25519_public == rotated.static_public
        # the keyring keeps the identity key and psk, with the new static key
        assert world.me.contacts.keys(friend.id) == ContactKeys(
            friend.id, old.ed25519_public, rotated.static_public, old.psk
        )
        assert world.links.adopted == [(conn, friend.id)]
    finally:
        friend.repo.close()


# -- the peer's addresses ---------------------------------------------------------------


async def test_peer_addresses(world: World) -> None:
    them = Identity.generate()
    s = world.sessions
    h = hello(them, listen_port=7000, addresses=("198.51.100.9:7000", "192.0.2.7:7000"))
    # where the session came from (with its listening port) first; duplicates dropped
    assert s.peer_addresses(Conn(), h) == ("192.0.2.7:7000", "198.51.100.9:7000")  # type: ignore[arg-type]
    known = [Address("203.0.113.5", 6000), "203.0.113.6:6000"]
    assert s.peer_addresses(Conn(), h, known) == (  # type: ignore[arg-type]
        "192.0.2.7:7000",
        "198.51.100.9:7000",
        "203.0.113.5:6000",
        "203.0.113.6:6000",
    )
    # no listening port, no peer address, or over Tor: only what the hello says
    no_port = dataclasses.replace(h, listen_port=0)
    assert s.peer_addresses(Conn(), no_port) == ("198.51.100.9:7000", "192.0.2.7:7000")  # type: ignore[arg-type]
    assert s.peer_addresses(Conn(None), h) == ("198.51.100.9:7000", "192.0.2.7:7000")  # type: ignore[arg-type]
    tor = Conn(("127.0.0.1", 9050))
    world.links.tor.add(tor)
    assert s.peer_addresses(tor, h) == ("198.51.100.9:7000", "192.0.2.7:7000")  # type: ignore[arg-type]


async def test_peer_addresses_are_capped(world: World) -> None:
    them = Identity.generate()
    many = tuple(f"198.51.100.{i}:7000" for i in range(wire.MAX_ADDRESSES))
    found = world.sessions.peer_addresses(Conn(), hello(them, addresses=many))  # type: ignore[arg-type]
    assert len(found) == wire.MAX_ADDRESSES
    assert found[0] == "192.0.2.7:7000"  # where it came from is kept, the last one dropped
    assert found[1:] == many[:-1]

"""Invites (messenger/invites.py) built alone from small fakes of their ports: real
SQLCipher repositories, keyrings and invite codes, and a fake session opener that answers
each address of an invite the way the test scripts it (no PeerService, no MagicMock). The
Noise handshake itself is covered by test_session.py and tests/net; the inviter's side of
an invite session by test_established_worker.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import pytest

from messenger.core.settings import SETTING_PORT
from messenger.errors import InviteFailed, ServiceError
from messenger.identity import derive_contact_secrets
from messenger.invites import Invites
from messenger.net.links import Route
from messenger.net.transport import Timing
from messenger.protocol import wire
from messenger.protocol.invite import Address, decode_invite, encode_invite
from messenger.protocol.invite import create_invite as make_invite
from messenger.protocol.noise import KeyPair
from messenger.protocol.session import (
    Closed,
    Established,
    PeerIdentity,
    Rejected,
    Session,
    SessionEvent,
)
from messenger.records import ContactRecord, InviteRecord
from messenger.storage.repository import ContactKeys, NewContact

from .fake_ports import InlineDb, Person, befriend, make_person

NOW = 1_700_000_000.0
Handler = Callable[[Any, SessionEvent], Coroutine[Any, Any, None]]


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.peer_address = (host, port)
        self.contact_id: str | None = None
        self.closed = asyncio.Event()
        self.close_reason: str | None = None

    def close(self, reason: str) -> None:
        self.close_reason = reason
        self.closed.set()


class Opener:
    """The SessionOpener port: each address answers with what `script` says (an event
    handed to the session's handler, or an exception from the connect); others refuse."""

    def __init__(self, me: Person) -> None:
        self.me = me
        self.script: dict[str, SessionEvent | Exception] = {}
        self.tried: list[str] = []
        self.sessions: list[Session] = []
        self.adopted: list[tuple[Conn, str]] = []
        self.dispatched: list[SessionEvent] = []

    async def _answer(self, text: str, host: str, port: int, session: Session, handler: Any) -> Any:
        self.tried.append(text)
        self.sessions.append(session)
        answer = self.script.get(text, ConnectionRefusedError("connection refused"))
        if isinstance(answer, Exception):
            raise answer
        conn = Conn(host, port)
        assert handler is not None
        await handler(conn, answer)
        return conn

    async def open(self, host: str, port: int, session: Session, handler: Any = None) -> Any:
        return await self._answer(str(Address(host, port)), host, port, session, handler)

    async def open_route(self, route: Route, session: Session, handler: Any = None) -> Any:
        return await self._answer(route.key, route.key, 0, session, handler)

    async def dispatch(self, conn: Any, event: SessionEvent) -> None:
        self.dispatched.append(event)

    def adopt(self, conn: Any, contact_id: str) -> None:
        conn.contact_id = contact_id
        self.adopted.append((conn, contact_id))

    def hello(self) -> wire.Hello:
        identity = self.me.identity
        return wire.Hello(identity.ed25519_public, identity.static_certificate, self.me.name, 0, ())

    def static_keypair(self) -> KeyPair:
        return KeyPair(self.me.identity.static_private, self.me.identity.static_public)

    def dial_now(self, contact_id: str) -> None:
        raise AssertionError("an invite dials no contact")

    @property
    def timing(self) -> Timing:
        return Timing()


@dataclasses.dataclass
class World:
    me: Person
    invites: Invites
    opener: Opener
    records: dict[bytes, InviteRecord]
    added: list[NewContact]
    tor_only: list[bool]


def make_world(folder: Path, name: str) -> World:
    me = make_person(folder, name)
    opener = Opener(me)
    records: dict[bytes, InviteRecord] = {}
    added: list[NewContact] = []
    tor_only = [False]

    async def contact_added(new: NewContact) -> ContactRecord:
        added.append(new)
        me.contacts.remember(ContactKeys(new.id, new.ed25519_public, new.x25519_public, new.psk))
        record = me.repo.contact(new.id)
        assert record is not None
        return record

    def peer_addresses(conn: Any, hello: wire.Hello, listed: Sequence[Address]) -> tuple[str, ...]:
        return tuple(str(a) for a in listed)  # as the invite lists them

    invites = Invites(
        me=me.me,
        db=InlineDb(),
        repo=me.repo,
        clock=lambda: NOW,
        links=opener,
        contacts=me.contacts,
        invites=records,
        tor=lambda: None,  # Tor is off
        tor_only=lambda: tor_only[0],
        peer_addresses=peer_addresses,
        contact_added=contact_added,
    )
    return World(me, invites, opener, records, added, tor_only)


@pytest.fixture
async def worlds(tmp_path: Path) -> AsyncIterator[tuple[World, World]]:
    """(the inviter, the one accepting)"""
    inviter, guest = make_world(tmp_path / "inviter", "Ivy"), make_world(tmp_path / "guest", "Gus")
    inviter.me.me.listen_port = 7000
    inviter.me.me.reach = [Address("192.0.2.1", 7000), Address("198.51.100.1", 7000)]
    try:
        yield inviter, guest
    finally:
        inviter.me.repo.close()
        guest.me.repo.close()


def established(inviter: Person) -> Established:
    """What the guest's session hands over once the inviter completed the handshake."""
    hello = wire.Hello(
        inviter.identity.ed25519_public,
        inviter.identity.static_certificate,
        " I\x1bvy ",
        7000,
        ("192.0.2.1:7000",),
    )
    return Established(PeerIdentity(hello, inviter.identity.static_public, os.urandom(32), None))


# -- creating -----------------------------------------------------------------------------


async def test_an_invite_names_our_addresses_and_is_remembered(
    worlds: tuple[World, World],
) -> None:
    inviter, _ = worlds
    code, invite = await inviter.invites.create_invite(ttl=600, addresses=["203.0.113.5:9000"])

    decoded = decode_invite(code, now=NOW)
    assert decoded == invite
    assert [str(a) for a in invite.addresses] == [
        "203.0.113.5:9000",  # the ones given come first
        "192.0.2.1:7000",
        "198.51.100.1:7000",
    ]
    assert invite.display_name == "Ivy" and invite.expires_at == int(NOW) + 600
    assert invite.ed25519_public == inviter.me.identity.ed25519_public
    stored = inviter.me.repo.invite(invite.invite_id)
    assert stored is not None and stored.secret == invite.secret and stored.used_at is None
    assert inviter.records == {invite.invite_id: stored}  # shared with the inviter's side


async def test_each_invite_is_new(worlds: tuple[World, World]) -> None:
    inviter, _ = worlds
    _, one = await inviter.invites.create_invite()
    _, two = await inviter.invites.create_invite()
    assert one.invite_id != two.invite_id and one.secret != two.secret
    assert len(inviter.records) == 2


async def test_an_invite_before_the_first_run_uses_the_remembered_port(
    worlds: tuple[World, World],
) -> None:
    _, guest = worlds  # not listening
    with pytest.raises(ServiceError, match="no listening port yet"):
        await guest.invites.create_invite()
    assert guest.records == {}
    _, given = await guest.invites.create_invite(addresses=["192.0.2.9:7100"])
    assert str(given.addresses[0]) == "192.0.2.9:7100"
    guest.me.repo.set_setting(SETTING_PORT, 7200)
    _, remembered = await guest.invites.create_invite()
    assert remembered.addresses and {a.port for a in remembered.addresses} == {7200}


async def test_tor_only_needs_an_onion_address_first(worlds: tuple[World, World]) -> None:
    inviter, _ = worlds
    inviter.tor_only[0] = True
    with pytest.raises(ServiceError, match="onion address is not known yet"):
        await inviter.invites.create_invite()
    assert inviter.records == {} and inviter.me.repo.invites() == []


async def test_bad_ttl_or_address_is_refused(worlds: tuple[World, World]) -> None:
    inviter, _ = worlds
    with pytest.raises(ValueError):
        await inviter.invites.create_invite(addresses=["no port here"])
    with pytest.raises(ValueError, match="ttl"):
        await inviter.invites.create_invite(ttl=0)
    assert inviter.records == {}


# -- accepting ----------------------------------------------------------------------------


async def test_accepting_stores_the_inviter_as_a_contact(worlds: tuple[World, World]) -> None:
    inviter, guest = worlds
    code, invite = await inviter.invites.create_invite()
    event = established(inviter.me)
    guest.opener.script["192.0.2.1:7000"] = event

    record = await guest.invites.accept_invite(code, verified=True)

    assert record.id == inviter.me.id and record.display_name == "Ivy"  # made safe
    assert record.verified
    assert record.addresses == ("192.0.2.1:7000", "198.51.100.1:7000")
    assert guest.opener.tried == ["192.0.2.1:7000"]
    [session] = guest.opener.sessions
    assert session.initiator
    assert [(n.id, n.psk) for n in guest.added] == [
        (inviter.me.id, derive_contact_secrets(event.peer.handshake_hash).psk)
    ]
    [(conn, adopted)] = guest.opener.adopted
    assert adopted == inviter.me.id and conn.close_reason is None
    assert guest.me.repo.contact(inviter.me.id) == record
    assert invite.invite_id not in guest.records  # only the inviter keeps it


async def test_an_unreachable_address_is_skipped_for_the_next(
    worlds: tuple[World, World],
) -> None:
    inviter, guest = worlds
    code, _ = await inviter.invites.create_invite()
    guest.opener.script["192.0.2.1:7000"] = Closed("connection reset", clean=False)
    guest.opener.script["198.51.100.1:7000"] = established(inviter.me)

    record = await guest.invites.accept_invite(code)

    assert record.id == inviter.me.id and not record.verified
    assert guest.opener.tried == ["192.0.2.1:7000", "198.51.100.1:7000"]


async def test_nobody_answering_says_where_it_tried(worlds: tuple[World, World]) -> None:
    inviter, guest = worlds
    code, _ = await inviter.invites.create_invite()
    guest.opener.script["198.51.100.1:7000"] = TimeoutError()

    with pytest.raises(InviteFailed, match="could not reach the inviter") as caught:
        await guest.invites.accept_invite(code)

    message = str(caught.value)
    assert "192.0.2.1:7000: connection refused" in message
    assert "198.51.100.1:7000: timed out" in message
    assert guest.me.repo.contacts() == [] and guest.added == []


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (wire.RejectCode.INVITE_USED, "already been used"),
        (wire.RejectCode.INVITE_EXPIRED, "has expired"),
        (wire.RejectCode.BUSY, "busy"),
    ],
)
async def test_the_inviters_refusal_is_told_plainly(
    worlds: tuple[World, World], code: wire.RejectCode, reason: str
) -> None:
    inviter, guest = worlds
    invite_code, _ = await inviter.invites.create_invite()
    guest.opener.script["192.0.2.1:7000"] = Rejected(code)

    with pytest.raises(InviteFailed, match=reason):
        await guest.invites.accept_invite(invite_code)
    assert guest.opener.tried == ["192.0.2.1:7000"]  # a refusal is an answer: no other tried
    assert guest.me.repo.contacts() == []


async def test_a_clean_close_before_being_stored_is_a_refusal(
    worlds: tuple[World, World],
) -> None:
    inviter, guest = worlds
    code, _ = await inviter.invites.create_invite()
    guest.opener.script["192.0.2.1:7000"] = Closed("not now", clean=True)
    with pytest.raises(InviteFailed, match="the inviter refused: not now"):
        await guest.invites.accept_invite(code)


async def test_an_expired_invite_is_refused_without_dialling(
    worlds: tuple[World, World],
) -> None:
    inviter, guest = worlds
    old = make_invite(
        inviter.me.identity, addresses=[Address("192.0.2.1", 7000)], ttl=60, now=NOW - 61
    )
    with pytest.raises(InviteFailed, match="expired"):
        await guest.invites.accept_invite(encode_invite(old))
    assert guest.opener.tried == []


async def test_what_is_not_an_invite_is_refused(worlds: tuple[World, World]) -> None:
    _, guest = worlds
    for junk in ("", "CHINWAG:", "CHINWAG:AAAA", "hello", "CHINWAG:" + "7" * 80):
        with pytest.raises(InviteFailed):
            await guest.invites.accept_invite(junk)
    assert guest.opener.tried == []


async def test_our_own_invite_and_a_contacts_are_refused(worlds: tuple[World, World]) -> None:
    inviter, guest = worlds
    own, _ = await inviter.invites.create_invite()
    with pytest.raises(InviteFailed, match="your own invite"):
        await inviter.invites.accept_invite(own)

    befriend(inviter.me, guest.me)
    with pytest.raises(InviteFailed, match="Ivy is already a contact"):
        await guest.invites.accept_invite(own)
    assert inviter.opener.tried == [] and guest.opener.tried == []


async def test_reusing_a_code_after_it_worked_is_refused(worlds: tuple[World, World]) -> None:
    inviter, guest = worlds
    code, _ = await inviter.invites.create_invite()
    guest.opener.script["192.0.2.1:7000"] = established(inviter.me)
    await guest.invites.accept_invite(code)

    with pytest.raises(InviteFailed, match="already a contact"):
        await guest.invites.accept_invite(code)
    assert len(guest.opener.tried) == 1 and len(guest.added) == 1

"""Nearby pairing's public calls (messenger/nearby.py PairingManager: pair, pairings,
answer) built alone from small fakes of its ports: a real repository and keyring, fake
LAN presence and a session opener whose connects fail as the test says (no PeerService,
no MagicMock). A whole pairing between two hosts is tests/lan/test_nearby_lan.py's."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from messenger.errors import PairingError, ServiceError
from messenger.nearby import PairingManager
from messenger.net.transport import Timing
from messenger.protocol import wire
from messenger.protocol.noise import KeyPair
from messenger.records import ContactRecord
from messenger.storage.repository import NewContact

from .fake_ports import Events, InlineDb, Person, make_person


@dataclasses.dataclass
class Sighting:
    addresses: tuple[str, ...]


class Lan:
    def __init__(self) -> None:
        self.running = True
        self.people: dict[str, Sighting] = {}

    def find_nearby(self, nearby_id: str) -> Sighting | None:
        return self.people.get(nearby_id)


class Opener:
    """Every connect fails with what `errors` says for its host (refused otherwise)."""

    def __init__(self, me: Person) -> None:
        self.me = me
        self.errors: dict[str, Exception] = {}
        self.tried: list[str] = []

    async def open(self, host: str, port: int, session: Any, handler: Any = None) -> Any:
        self.tried.append(f"{host}:{port}")
        raise self.errors.get(host, ConnectionRefusedError("connection refused"))

    def hello(self) -> wire.Hello:
        identity = self.me.identity
        return wire.Hello(identity.ed25519_public, identity.static_certificate, "Me", 0, ())

    def static_keypair(self) -> KeyPair:
        return KeyPair(self.me.identity.static_private, self.me.identity.static_public)

    @property
    def timing(self) -> Timing:
        return Timing()


@dataclasses.dataclass
class World:
    pairing: PairingManager
    lan: Lan
    opener: Opener
    visible: list[bool]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    me = make_person(tmp_path / "me", "Me")
    lan, opener, visible = Lan(), Opener(me), [True]

    async def contact_added(new: NewContact) -> ContactRecord:
        raise AssertionError("nobody is paired in these tests")

    pairing = PairingManager(
        me=me.me,
        links=opener,  # type: ignore[arg-type]
        contacts=me.contacts,
        db=InlineDb(),
        repo=me.repo,
        emit=Events(),
        clock=lambda: 0.0,
        contact_added=contact_added,
        nearby_offered=lambda: visible[0],
        lan=lan,  # type: ignore[arg-type]
        visible=lambda: visible[0],
    )
    try:
        yield World(pairing, lan, opener, visible)
    finally:
        pairing.close()
        me.repo.close()


async def test_pairing_needs_discovery_visibility_and_someone_seen(world: World) -> None:
    world.lan.running = False
    with pytest.raises(ServiceError, match="LAN discovery is not running"):
        await world.pairing.pair("abc")
    world.lan.running = True
    world.visible[0] = False
    with pytest.raises(ServiceError, match="switch on `visible` first"):
        await world.pairing.pair("abc")
    world.visible[0] = True
    with pytest.raises(ServiceError, match="nobody nearby with id 'abc'"):
        await world.pairing.pair("abc")
    assert world.opener.tried == [] and world.pairing.pairings() == []


async def test_someone_unreachable_is_said_plainly_address_by_address(world: World) -> None:
    world.lan.people["abc"] = Sighting(("192.0.2.4:7000", "198.51.100.4:7000", "nonsense"))
    world.opener.errors["198.51.100.4"] = TimeoutError()

    with pytest.raises(PairingError, match="could not reach them") as caught:
        await world.pairing.pair("abc")

    message = str(caught.value)
    assert "192.0.2.4:7000: connection refused" in message
    assert "198.51.100.4:7000: timed out" in message  # a bare timeout still says so
    assert "nonsense: " in message  # not an address: said, and the others still tried
    assert world.opener.tried == ["192.0.2.4:7000", "198.51.100.4:7000"]
    assert world.pairing.pairings() == []


async def test_answering_a_pairing_that_is_not_pending_is_an_error(world: World) -> None:
    with pytest.raises(PairingError, match="no pending pairing 'f00'"):
        await world.pairing.answer("f00", True)
    with pytest.raises(PairingError, match="no pending pairing ''"):
        await world.pairing.answer("", False)

"""Where contacts reach us (messenger/net/reachability.py Reachability), built alone from
small fakes of its ports: a real SQLCipher repository and keyring, fake links that hand
out listeners by port, fake sessions (no PeerService, no MagicMock, no sockets). Tor
itself is tests/tor's; here Tor stays off."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from messenger.config import ServiceConfig
from messenger.core.settings import DEFAULT_SETTINGS, SETTING_PORT
from messenger.errors import ServiceError
from messenger.net.reachability import Reachability
from messenger.protocol import wire
from messenger.protocol.invite import Address

from .fake_ports import Events, InlineDb, Person, Tasks, befriend, make_person

NOW = 1_700_000_000.0


@dataclasses.dataclass
class Listener:
    port: int


class Links:
    """The ReachLinks port: listeners on the ports asked for (0: the next free one)."""

    def __init__(self) -> None:
        self.dialers: list[Any] = []
        self.listener: Listener | None = None
        self.taken: set[int] = set()
        self.live: list[Any] = []
        self.online: set[str] = set()
        self.poked: list[str] = []
        self._next = 40000

    async def listen(self, host: str, port: int) -> Listener:
        if port in self.taken:
            raise OSError(98, "address in use")
        if not port:
            self._next += 1
            port = self._next
        self.listener = Listener(port)
        return self.listener

    async def move_listener(self, host: str) -> Listener:
        return await self.listen(host, 0)

    async def listen_onion(self) -> tuple[str, int]:
        raise AssertionError("Tor is off in these tests")

    def listening_on(self) -> list[tuple[str, int]]:
        return [("0.0.0.0", self.listener.port)] if self.listener else []

    def live_connections(self) -> list[Any]:
        return self.live

    def is_online(self, contact_id: str) -> bool:
        return contact_id in self.online

    def poke(self, contact_id: str) -> None:
        self.poked.append(contact_id)

    def via_tor(self, conn: Any) -> bool:
        return False


class Session:
    def __init__(self, told: tuple[str, ...]) -> None:
        self.established = True
        self.hello = wire.Hello(b"\0" * 32, b"\0" * 96, "them", 0, told)


class Conn:
    def __init__(self, contact_id: str, told: tuple[str, ...] = ()) -> None:
        self.contact_id = contact_id
        self.session = Session(told)
        self.closed = asyncio.Event()
        self.sent: list[wire.WireMessage] = []

    def send(self, message: wire.WireMessage) -> None:
        self.sent.append(message)


@dataclasses.dataclass
class World:
    me: Person
    links: Links
    changed: list[str]
    lan_wanted: list[bool]
    folder: Path

    def reach(self, **config: Any) -> Reachability:
        return Reachability(
            config=ServiceConfig(**config),
            folder=self.folder,
            identity=self.me.identity,
            display_name=lambda: "Me",
            db=InlineDb(),
            repo=self.me.repo,
            emit=Events(),
            tasks=Tasks(),
            clock=lambda: NOW,
            links=self.links,  # type: ignore[arg-type]
            contacts=self.me.contacts,
            settings=dict(DEFAULT_SETTINGS),
            lan_wanted=lambda: self.lan_wanted[0],
            closing=lambda: False,
            contact_changed=self._changed,
        )

    async def _changed(self, contact_id: str) -> None:
        self.changed.append(contact_id)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    me = make_person(tmp_path / "me", "Me")
    try:
        yield World(me, Links(), [], [True], tmp_path)
    finally:
        me.repo.close()


async def test_what_we_tell_contacts_follows_the_configuration(world: World) -> None:
    reach = world.reach(listen_host="192.0.2.5", extra_addresses=("198.51.100.7:9000",))
    reach.listen_port = 7000
    assert reach.addresses() == [Address("198.51.100.7", 9000), Address("192.0.2.5", 7000)]
    hello = reach.hello()
    assert hello.addresses == ("198.51.100.7:9000", "192.0.2.5:7000")
    assert hello.listen_port == 7000 and hello.display_name == "Me"
    assert hello.ed25519_public == world.me.identity.ed25519_public

    forwarded = world.reach(advertise=("203.0.113.1:443", "203.0.113.1:443"))
    forwarded.listen_port = 7000
    assert forwarded.addresses() == [Address("203.0.113.1", 443)]  # each once
    assert forwarded.hello().listen_port == 0  # no port to pair with the address seen


async def test_tor_only_without_an_onion_tells_nothing_and_dials_no_direct_route(
    world: World,
) -> None:
    reach = world.reach(listen_host="192.0.2.5", tor_only=True)
    reach.listen_port = 7000
    assert reach.tor_only and reach.tor is None
    assert reach.addresses() == [] and reach.hello().listen_port == 0
    assert reach.tor_status.state == "off"

    async def seen_on_lan(contact_id: str) -> list[str]:
        return ["192.0.2.9:7000"]

    lan, direct = reach.dialers(seen_on_lan)
    assert await lan.routes("someone") == [] and await direct.routes("someone") == []


async def test_direct_dialers_skip_onion_addresses(world: World, tmp_path: Path) -> None:
    friend = make_person(tmp_path / "friend", "Friend")
    try:
        befriend(world.me, friend)
        onion = "a" * 56 + ".onion:9878"
        world.me.repo.set_addresses(friend.id, ["192.0.2.9:7000", onion])
        reach = world.reach()
        assert await reach.stored_addresses(friend.id) == ["192.0.2.9:7000", onion]
        assert await reach.direct_addresses(friend.id) == ["192.0.2.9:7000"]
        assert await reach.stored_addresses("nobody") == []
    finally:
        friend.repo.close()


async def test_a_session_hears_of_new_addresses_once_and_a_held_contact_never(
    world: World,
) -> None:
    reach = world.reach(listen_host="192.0.2.5")
    reach.listen_port = 7000
    stale = Conn("friend", told=("192.0.2.5:6000",))
    reach.announce(stale)
    reach.announce(stale)
    assert stale.sent == [wire.ReachUpdate(("192.0.2.5:7000",))]

    current = Conn("friend", told=("192.0.2.5:7000",))
    reach.announce(current)  # its Hello said as much already
    assert current.sent == []

    world.me.contacts.hold("held")
    held = Conn("held", told=())
    reach.announce(held)
    assert held.sent == []


async def test_addresses_a_contact_tells_us_are_stored_first(world: World, tmp_path: Path) -> None:
    friend = make_person(tmp_path / "friend", "Friend")
    try:
        befriend(world.me, friend)
        world.me.repo.set_addresses(friend.id, ["192.0.2.9:7000"])
        reach = world.reach()
        await reach.on_reach_update(friend.id, ("198.51.100.2:7100",))
        await reach.on_reach_update(friend.id, ("198.51.100.2:7100",))  # nothing new
        record = world.me.repo.contact(friend.id)
        assert record is not None
        assert record.addresses == ("198.51.100.2:7100", "192.0.2.9:7000")
        assert world.changed == [friend.id]
    finally:
        friend.repo.close()


async def test_the_port_is_fresh_with_discovery_unless_an_invite_names_it(world: World) -> None:
    world.me.repo.set_setting(SETTING_PORT, 7000)
    reach = world.reach()
    fresh = await reach.listen()
    assert fresh != 7000 and reach.listen_port == fresh
    assert world.me.repo.get_setting(SETTING_PORT) == fresh
    assert reach.listening_on() == [("0.0.0.0", fresh)]

    world.me.repo.add_invite(b"i" * 16, b"s" * 32, int(NOW) + 3600, NOW)
    assert await world.reach().listen() == fresh  # the open invite names it
    assert await reach.port_for_new_network() == fresh  # kept on a new network too

    world.lan_wanted[0] = False  # without discovery contacts know only this port
    world.me.repo.set_setting(SETTING_PORT, 7300)
    assert await world.reach().listen() == 7300


async def test_a_new_network_moves_the_listener_unless_the_user_chose_the_port(
    world: World,
) -> None:
    reach = world.reach()
    first = await reach.listen()
    moved = await reach.port_for_new_network()
    assert moved != first and world.me.repo.get_setting(SETTING_PORT) == moved

    chosen = world.reach(listen_port=7400)
    assert await chosen.listen() == 7400
    assert await chosen.port_for_new_network() == 7400


async def test_a_taken_port_the_user_chose_is_an_error(world: World) -> None:
    world.links.taken.add(7500)
    with pytest.raises(ServiceError, match="cannot listen on port 7500"):
        await world.reach(listen_port=7500).listen()
    world.lan_wanted[0] = False
    world.me.repo.set_setting(SETTING_PORT, 7500)  # remembered, not chosen: another one
    assert await world.reach().listen() not in (0, 7500)


async def test_tor_stays_off_unless_the_service_follows_the_setting(world: World) -> None:
    reach = world.reach(tor=False)
    await reach.setting_changed(True)
    assert reach.tor is None and world.links.dialers == []

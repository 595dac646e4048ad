"""LAN presence (messenger/net/presence.py) built alone from small fakes of its ports: a
real SQLCipher repository and keyring, fake sessions and a fake link registry (no
PeerService, no MagicMock). mDNS itself is not started here (tests/lan and
test_discovery.py cover it); these tests cover what the worker does with what discovery
reports: keys, dials, probes and the nearby list.

The worker's timers (LAN_YIELD, LAN_PROBE_TIMEOUT) are shortened with monkeypatch so the
tests await events instead of seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from messenger.core.settings import BLOB_DISCOVERY_KEY
from messenger.events import NearbyChanged
from messenger.net import presence
from messenger.net.discovery import SALT_LEN, Advert, Discovery, advert_token, epoch_of
from messenger.net.netif import NetworkSnapshot
from messenger.net.presence import LanPresence, is_loopback
from messenger.net.transport import Timing
from messenger.protocol import wire
from messenger.records import NearbyPerson

from .fake_ports import Events, InlineDb, Person, Tasks, befriend, make_person, until

T = TypeVar("T")


class CountingDb(InlineDb):
    """The Db port, inline, counting the calls it ran (by function name)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self.calls.append(fn.__name__)
        return fn(*args, **kwargs)


class _Session:
    def __init__(self, established: bool) -> None:
        self.established = established


class _Writer:
    def __init__(self, sockname: tuple[str, int] | None) -> None:
        self._sockname = sockname

    def get_extra_info(self, name: str) -> Any:
        return self._sockname if name == "sockname" else None


class Conn:
    """What the worker uses of a Connection: send, close, the addresses, last_heard."""

    def __init__(
        self,
        *,
        peer_address: tuple[str, int] | None = ("192.0.2.7", 4000),
        local: tuple[str, int] | None = ("192.0.2.1", 5000),
        established: bool = True,
    ) -> None:
        self.peer_address = peer_address
        self.writer = _Writer(local)
        self.session = _Session(established)
        self.closed = asyncio.Event()
        self.sent: list[wire.WireMessage] = []
        self.close_reason: str | None = None
        self.last_heard = 0.0
        self.timing: Timing | None = None

    def send(self, message: wire.WireMessage) -> None:
        self.sent.append(message)

    def close(self, reason: str) -> None:
        self.close_reason = reason
        self.closed.set()

    def use_timing(self, timing: Timing) -> None:
        self.timing = timing


class Links:
    """The LinkRegistry port: sessions the test plugs in; records pokes and lookups."""

    def __init__(self) -> None:
        self.conns: dict[str, Conn] = {}
        self.tor: set[Conn] = set()
        self.poked: list[str] = []
        self.looked_up: list[str] = []

    def connection(self, contact_id: str) -> Any:
        self.looked_up.append(contact_id)
        return self.conns.get(contact_id)

    def ready(self, contact_id: str) -> Any:
        conn = self.conns.get(contact_id)
        return None if conn is None or conn.closed.is_set() else conn

    def is_online(self, contact_id: str) -> bool:
        conn = self.conns.get(contact_id)
        return conn is not None and not conn.closed.is_set()

    def via_tor(self, conn: Any) -> bool:
        return conn in self.tor

    def live_connections(self) -> list[Any]:
        return [c for c in self.conns.values() if not c.closed.is_set()]

    def poke(self, contact_id: str) -> None:
        self.poked.append(contact_id)

    def dial_now(self, contact_id: str) -> None:
        raise AssertionError("LAN presence never dials a new contact")


@dataclasses.dataclass
class World:
    me: Person
    friend: Person
    lan: LanPresence
    links: Links
    events: Events
    tasks: Tasks
    db: CountingDb
    visible: list[bool]


LAN_TIMING = Timing(keepalive_interval=0.5, dead_after=1.5)
NOW = 1_700_000_000.0
EPOCH_SECONDS = 600.0


class QuietDiscovery(Discovery):
    """The real Discovery (tokens, directory, advert) without mDNS: `start` opens no
    socket, so the test feeds the directory and network snapshot itself."""

    async def start(self) -> None:
        self.started.set()


def quiet_discovery(made: list[Discovery]) -> Any:
    def make(*args: Any, **kwargs: Any) -> Discovery:
        made.append(QuietDiscovery(*args, **kwargs))
        return made[-1]

    return make


def build(
    me: Person,
    *,
    links: Links | None = None,
    visible: list[bool] | None = None,
    enabled: bool | None = None,
    listen_host: str = "0.0.0.0",
    discoveries: list[Discovery] | None = None,
) -> tuple[LanPresence, Links, Events, Tasks, CountingDb, list[bool]]:
    links = links or Links()
    events, tasks, db = Events(), Tasks(), CountingDb()
    shown = visible if visible is not None else [True]

    async def new_port() -> int:
        return 4242

    lan = LanPresence(
        me=me.me,
        db=db,
        repo=me.repo,
        emit=events,
        tasks=tasks,
        clock=lambda: NOW,
        links=links,
        contacts=me.contacts,
        visible=lambda: shown[0],
        new_port=new_port,
        enabled=enabled,
        listen_host=listen_host,
        epoch_seconds=EPOCH_SECONDS,
        lan_timing=LAN_TIMING,
        make_discovery=quiet_discovery(discoveries if discoveries is not None else []),
    )
    return lan, links, events, tasks, db, shown


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    # Short timers: the tests wait for what the timers cause, not for seconds.
    monkeypatch.setattr(presence, "LAN_YIELD", 0.02)
    monkeypatch.setattr(presence, "LAN_DIAL_INTERVAL", 0.02)
    monkeypatch.setattr(presence, "LAN_PROBE_TIMEOUT", 0.02)
    me, friend = make_person(tmp_path / "me", "me"), make_person(tmp_path / "friend", "friend")
    befriend(me, friend)
    lan, links, events, tasks, db, shown = build(me)
    await lan.load()
    try:
        yield World(me, friend, lan, links, events, tasks, db, shown)
    finally:
        await lan.aclose()
        await tasks.aclose()
        me.repo.close()
        friend.repo.close()


def with_keys(tmp_path: Path, *, ours_smaller: bool) -> tuple[Person, Person]:
    """Two befriended people, `me` holding the smaller identity key or not."""
    a, b = make_person(tmp_path / "a", "a"), make_person(tmp_path / "b", "b")
    if (a.identity.ed25519_public < b.identity.ed25519_public) != ours_smaller:
        a, b = b, a
    befriend(a, b)
    return a, b


# -- keys -------------------------------------------------------------------------------


async def test_load_makes_an_advertising_key_once_and_keeps_it(tmp_path: Path) -> None:
    me = make_person(tmp_path / "me", "me")
    try:
        first, *_ = build(me)
        await first.load()
        key = first.own_discovery_key
        assert len(key) == 32
        assert me.repo.get_blob(BLOB_DISCOVERY_KEY) == key
        again, *_ = build(me)
        await again.load()
        assert again.own_discovery_key == key  # stored: the contacts keep recognising us
    finally:
        me.repo.close()


async def test_load_replaces_a_damaged_advertising_key(tmp_path: Path) -> None:
    me = make_person(tmp_path / "me", "me")
    try:
        me.repo.set_blob(BLOB_DISCOVERY_KEY, b"short")
        lan, *_ = build(me)
        await lan.load()
        assert len(lan.own_discovery_key) == 32
        assert me.repo.get_blob(BLOB_DISCOVERY_KEY) == lan.own_discovery_key
    finally:
        me.repo.close()


async def test_load_reads_the_contacts_advertising_keys(world: World) -> None:
    key = bytes(range(32))
    world.me.repo.set_discovery_key(world.friend.id, key)
    lan, *_ = build(world.me)
    await lan.load()
    assert lan.discovery_keys() == {world.friend.id: key}


async def test_store_key_persists_and_skips_an_unchanged_key(world: World) -> None:
    key = b"k" * 32
    await world.lan.store_key(world.friend.id, key)
    assert world.lan.discovery_keys()[world.friend.id] == key
    assert world.me.repo.discovery_keys()[world.friend.id] == key
    writes = world.db.calls.count("set_discovery_key")
    await world.lan.store_key(world.friend.id, key)
    assert world.db.calls.count("set_discovery_key") == writes  # nothing new: no write


async def test_known_and_forgotten_contact_keys(world: World) -> None:
    world.lan.contact_key_known("someone", b"s" * 32)
    assert world.lan.discovery_keys()["someone"] == b"s" * 32
    world.lan.forget_contact("someone")
    world.lan.forget_contact("never-known")  # no error
    assert "someone" not in world.lan.discovery_keys()
    # discovery_keys() is a copy: changing it changes nothing in the worker
    world.lan.discovery_keys().clear()
    assert world.friend.id in world.lan.discovery_keys()


async def test_rotate_key_stores_it_and_tells_every_live_contact(world: World) -> None:
    old = world.lan.own_discovery_key
    live, gone = Conn(), Conn()
    gone.close("gone")
    world.links.conns = {world.friend.id: live, "other": gone}
    await world.lan.rotate_key()
    new = world.lan.own_discovery_key
    assert new != old and len(new) == 32
    assert world.me.repo.get_blob(BLOB_DISCOVERY_KEY) == new
    assert live.sent == [wire.DiscoveryKey(new)]
    assert gone.sent == []


# -- an adopted session -----------------------------------------------------------------


async def test_adopted_session_hears_our_key_and_keeps_its_timing_off_the_lan(
    world: World,
) -> None:
    conn = Conn()
    world.lan.adopted(conn)  # type: ignore[arg-type]
    assert conn.sent == [wire.DiscoveryKey(world.lan.own_discovery_key)]
    assert conn.timing is None  # discovery is not running: nothing is known on the link
    tor = Conn(peer_address=("127.0.0.1", 9050))
    world.links.tor.add(tor)
    world.lan.adopted(tor)  # type: ignore[arg-type]
    assert tor.sent == [wire.DiscoveryKey(world.lan.own_discovery_key)]
    assert tor.timing is None


# -- the LAN shows a contact ------------------------------------------------------------


async def test_seen_contact_we_outrank_is_dialled_at_once(tmp_path: Path) -> None:
    me, friend = with_keys(tmp_path, ours_smaller=True)
    lan, links, *_ = build(me)
    try:
        await lan.load()
        lan.lan_contact_seen(friend.id, ["192.0.2.7:4000"])
        assert links.poked == [friend.id]
    finally:
        await lan.aclose()
        me.repo.close()
        friend.repo.close()


async def test_seen_contact_that_outranks_us_is_dialled_after_yielding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence, "LAN_YIELD", 0.02)
    me, friend = with_keys(tmp_path, ours_smaller=False)
    lan, links, *_ = build(me)
    try:
        await lan.load()
        lan.lan_contact_seen(friend.id, ["192.0.2.7:4000"])
        assert links.poked == []  # the other side dials first
        await until(lambda: links.poked == [friend.id])
    finally:
        await lan.aclose()
        me.repo.close()
        friend.repo.close()


async def test_a_yielding_dial_is_dropped_when_the_contact_dialled_us(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence, "LAN_YIELD", 0.02)
    me, friend = with_keys(tmp_path, ours_smaller=False)
    lan, links, *_ = build(me)
    try:
        await lan.load()
        lan.lan_contact_seen(friend.id, ["192.0.2.7:4000"])
        asked = len(links.looked_up)
        links.conns[friend.id] = Conn()  # the contact dialled us meanwhile
        # The deferred dial looks the contact up when it fires: wait for that, not a time.
        await until(lambda: len(links.looked_up) > asked)
        assert links.poked == []
    finally:
        await lan.aclose()
        me.repo.close()
        friend.repo.close()


async def test_dials_are_rate_limited_per_contact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence, "LAN_DIAL_INTERVAL", 0.05)
    me, friend = with_keys(tmp_path, ours_smaller=True)
    lan, links, *_ = build(me)
    try:
        await lan.load()
        lan.lan_contact_seen(friend.id, ["192.0.2.7:4000"])
        lan.lan_contact_seen(friend.id, ["192.0.2.7:4000"])
        lan.lan_contact_seen(friend.id, ["192.0.2.8:4000"])
        assert links.poked == [friend.id]  # one at once, the next one deferred
        await until(lambda: len(links.poked) == 2)
        # The deferred dial and the two later sightings made one poke, not two.
        assert links.poked == [friend.id, friend.id]
    finally:
        await lan.aclose()
        me.repo.close()
        friend.repo.close()


async def test_a_stranger_seen_on_the_lan_is_not_dialled(world: World) -> None:
    world.lan.lan_contact_seen("not-a-contact", ["192.0.2.9:4000"])
    assert world.links.poked == [] and world.links.looked_up == []


async def test_seen_contact_online_over_tor_is_poked_to_move_to_the_lan(world: World) -> None:
    tor = Conn(peer_address=("127.0.0.1", 9050))
    world.links.conns[world.friend.id] = tor
    world.links.tor.add(tor)
    world.lan.lan_contact_seen(world.friend.id, ["192.0.2.7:4000"])
    assert world.links.poked == [world.friend.id]
    assert tor.sent == []  # no probe: the Tor session is fine


async def test_seen_contact_elsewhere_gets_its_session_probed(world: World) -> None:
    live = Conn(peer_address=("192.0.2.7", 4000))
    world.links.conns[world.friend.id] = live
    world.lan.lan_contact_seen(world.friend.id, ["192.0.2.7:4000"])
    assert live.sent == []  # seen where the session is: nothing to check
    world.lan.lan_contact_seen(world.friend.id, ["192.0.2.99:4000"])
    assert live.sent == [wire.Ping(0)]
    await until(lambda: live.closed.is_set())  # no answer
    assert live.close_reason == "no answer after a change on the LAN"
    assert world.links.poked == []


async def test_seen_contact_at_an_ipv6_address_matches_its_session(world: World) -> None:
    live = Conn(peer_address=("fe80::1%eth0", 4000))
    world.links.conns[world.friend.id] = live
    world.lan.lan_contact_seen(world.friend.id, ["[fe80::1%eth0]:4000"])
    assert live.sent == []


async def test_gone_contact_gets_its_session_probed(world: World) -> None:
    live = Conn()
    world.links.conns[world.friend.id] = live
    world.lan.lan_contact_gone(world.friend.id)
    assert live.sent == [wire.Ping(0)]
    world.lan.lan_contact_gone("nobody")  # no session: nothing happens
    await until(lambda: live.closed.is_set())


# -- probes -----------------------------------------------------------------------------


async def test_probe_keeps_a_session_that_answers(world: World) -> None:
    live = Conn()
    world.lan.probe(live)  # type: ignore[arg-type]
    world.lan.probe(live)  # type: ignore[arg-type]  # one probe at a time
    assert live.sent == [wire.Ping(0)]
    live.last_heard = 1.0  # the Pong came back
    await asyncio.gather(*world.tasks.tasks)
    assert not live.closed.is_set()
    world.lan.probe(live)  # type: ignore[arg-type]  # the probe finished: another may start
    assert live.sent == [wire.Ping(0), wire.Ping(0)]


async def test_probe_gives_a_session_through_tor_the_tor_deadline(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence, "TOR_PROBE_TIMEOUT", 3600.0)
    lan, tor = Conn(), Conn(peer_address=("127.0.0.1", 9050))
    world.links.tor.add(tor)
    world.lan.probe(tor)  # type: ignore[arg-type]
    world.lan.probe(lan)  # type: ignore[arg-type]
    assert tor.sent == lan.sent == [wire.Ping(0)]
    await until(lambda: lan.closed.is_set())  # neither answers: the LAN deadline passes
    assert not tor.closed.is_set()  # a round trip through Tor may take seconds


async def test_probe_leaves_a_session_still_in_its_handshake(world: World) -> None:
    shaking = Conn(established=False)
    world.lan.probe(shaking)  # type: ignore[arg-type]
    assert shaking.sent == [] and not world.tasks.tasks


# -- our own network changed ------------------------------------------------------------


async def test_network_change_drops_sessions_on_an_old_address_and_dials_the_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence, "LAN_PROBE_TIMEOUT", 0.02)
    monkeypatch.setattr(presence, "LAN_YIELD", 0.02)
    me, friend = with_keys(tmp_path, ours_smaller=True)
    other, third = make_person(tmp_path / "o", "o"), make_person(tmp_path / "t", "t")
    befriend(me, other)
    befriend(me, third)
    lan, links, _, tasks, *_ = build(me)
    try:
        await lan.load()
        stale = Conn(local=("192.0.2.1", 5000))
        kept = Conn(local=("::ffff:198.51.100.4", 5000))  # a v4-mapped address we still have
        local = Conn(local=("127.0.0.1", 5000))
        links.conns = {friend.id: stale, other.id: kept, "loopback": local}
        lan.lan_network_changed(("198.51.100.4",))
        assert stale.close_reason == "our network address changed"
        assert stale.sent == []
        assert kept.sent == [wire.Ping(0)] and not kept.closed.is_set()
        assert local.sent == [wire.Ping(0)] and not local.closed.is_set()
        # The contacts offline now (the dropped one and the third) are dialled; whoever
        # outranks us is dialled after LAN_YIELD, so wait for both.
        await until(lambda: {friend.id, third.id} <= set(links.poked))
        assert other.id not in links.poked
    finally:
        await lan.aclose()
        await tasks.aclose()
        for p in (me, friend, other, third):
            p.repo.close()


# -- closing ----------------------------------------------------------------------------


async def test_closing_cancels_deferred_dials_and_ignores_the_lan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence, "LAN_YIELD", 0.02)
    me, friend = with_keys(tmp_path, ours_smaller=False)
    lan, links, *_ = build(me)
    try:
        await lan.load()
        lan.lan_contact_seen(friend.id, ["192.0.2.7:4000"])  # deferred: they outrank us
        lan.begin_close()
        live = Conn()
        links.conns[friend.id] = live
        lan.lan_contact_gone(friend.id)
        lan.lan_network_changed(("192.0.2.1",))
        lan.lan_contact_seen(friend.id, ["192.0.2.99:4000"])
        assert live.sent == [] and not live.closed.is_set()
        # The cancelled timer never fires (it would look the contact up): a timer set for
        # after it fires, and by then nothing was looked up or poked.
        looked_up = len(links.looked_up)
        fired = asyncio.Event()
        asyncio.get_running_loop().call_later(2 * presence.LAN_YIELD, fired.set)
        await fired.wait()
        assert len(links.looked_up) == looked_up
        assert links.poked == []
    finally:
        await lan.aclose()
        me.repo.close()
        friend.repo.close()


# -- visibility and the nearby list -----------------------------------------------------


async def test_nearby_changes_are_announced_only_while_visible(world: World) -> None:
    world.lan.lan_nearby_changed()
    assert world.events.of(NearbyChanged) == [NearbyChanged(())]
    world.visible[0] = False
    world.lan.lan_nearby_changed()
    assert world.events.of(NearbyChanged) == [NearbyChanged(())]
    assert world.lan.nearby() == []
    assert world.lan.status() == {"discovery": False, "visible": False}


async def test_without_discovery_nothing_is_offered_or_found(world: World) -> None:
    assert not world.lan.running
    assert not world.lan.nearby_offered()  # visible, but discovery is not running
    assert world.lan.find_nearby("x") is None
    assert world.lan.contact_addresses(world.friend.id) == []
    world.lan.set_visible()
    world.lan.set_open_group("g")
    assert world.events == []
    assert await world.lan.lan_port_for_new_network() == 4242


@pytest.mark.parametrize(
    ("enabled", "host", "wanted"),
    [
        (None, "0.0.0.0", True),
        (None, "::", True),
        (None, "", True),
        (None, "192.0.2.1", True),
        (None, "127.0.0.1", False),
        (None, "::1", False),
        (None, "not-an-address", False),
        (True, "127.0.0.1", True),
        (False, "0.0.0.0", False),
    ],
)
async def test_discovery_is_wanted_unless_on_loopback(
    tmp_path: Path, enabled: bool | None, host: str, wanted: bool
) -> None:
    me = make_person(tmp_path / "me", "me")
    try:
        lan, *_ = build(me, enabled=enabled, listen_host=host)
        assert lan.wanted() is wanted
        if not wanted:
            assert await lan.start(4000) is False
            assert not lan.running
    finally:
        me.repo.close()


async def test_discovery_does_not_start_without_a_port(world: World) -> None:
    assert world.lan.wanted()
    assert await world.lan.start(None) is False
    assert not world.lan.running


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("::1%lo")
    assert not is_loopback("192.0.2.1")
    assert not is_loopback("fe80::1%eth0")
    assert not is_loopback("example.invalid")


# -- with discovery running (the real Discovery, no mDNS sockets) -----------------------


@dataclasses.dataclass
class Running:
    world: World
    lan: LanPresence
    links: Links
    events: Events
    discovery: Discovery
    visible: list[bool]


@pytest.fixture
async def running(world: World) -> AsyncIterator[Running]:
    made: list[Discovery] = []
    lan, links, events, tasks, _, shown = build(world.me, discoveries=made)
    await lan.load()
    try:
        assert await lan.start(4000) is True
        assert lan.running and len(made) == 1
        yield Running(world, lan, links, events, made[0], shown)
    finally:
        await lan.aclose()
        await tasks.aclose()


def advert(key: bytes, name: str | None = None, group: str | None = None) -> Advert:
    salt = bytes(range(SALT_LEN))
    token = advert_token(key, epoch_of(NOW, EPOCH_SECONDS), salt)
    return Advert(wire.PROTOCOL_VERSION, token, name, group, salt)


async def test_a_session_on_the_local_link_gets_the_short_keepalive(running: Running) -> None:
    running.discovery.snapshot = NetworkSnapshot(v4=("192.0.2.1",), networks=("192.0.2.0/24",))
    near, far = Conn(peer_address=("192.0.2.7", 4000)), Conn(peer_address=("203.0.113.5", 4000))
    onion = Conn(peer_address=("192.0.2.8", 4000))  # on the link, but a Tor session
    running.links.tor.add(onion)
    for conn in (near, far, onion):
        running.lan.adopted(conn)  # type: ignore[arg-type]
        assert conn.sent == [wire.DiscoveryKey(running.lan.own_discovery_key)]
    assert near.timing == LAN_TIMING
    assert far.timing is None
    assert onion.timing is None


async def test_a_contact_key_learnt_later_finds_its_sighting_and_dials(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence, "LAN_YIELD", 0.02)
    friend = running.world.friend.id
    key = b"f" * 32
    # The LAN showed the contact before we knew its advertising key: unmatched.
    running.discovery.directory.update("friend-instance", ["192.0.2.7:4000"], advert(key), NOW)
    assert running.lan.contact_addresses(friend) == []
    running.lan.contact_key_known(friend, key)
    assert running.lan.contact_addresses(friend) == ["192.0.2.7:4000"]
    await until(lambda: running.links.poked == [friend])
    running.lan.forget_contact(friend)
    assert running.lan.contact_addresses(friend) == []


async def test_nearby_people_are_listed_and_announced_while_visible(running: Running) -> None:
    stranger = advert(b"s" * 32, name="Stranger", group="Book club")
    running.discovery.directory.update("stranger", ["192.0.2.9:4000"], stranger, NOW)
    [person] = running.lan.nearby()
    assert person == NearbyPerson(person.id, "Stranger", ("192.0.2.9:4000",), NOW, "Book club")
    found = running.lan.find_nearby(person.id)
    assert found is not None and found.addresses == ("192.0.2.9:4000",)
    assert running.lan.nearby_offered()
    running.lan.lan_nearby_changed()
    assert running.events.of(NearbyChanged) == [NearbyChanged((person,))]
    status = running.lan.status()
    assert status["discovery"] is True and status["visible"] is True
    assert status["nearby"] == 1 and status["epoch_seconds"] == EPOCH_SECONDS
    # Going invisible: the advert loses our name, the list empties and the front ends hear.
    running.visible[0] = False
    running.lan.set_visible()
    assert running.discovery.current_advert().name is None
    assert running.events.of(NearbyChanged)[-1] == NearbyChanged(())
    assert running.lan.nearby() == [] and not running.lan.nearby_offered()
    running.visible[0] = True
    running.lan.set_visible()
    assert running.discovery.current_advert().name == running.world.me.me.display_name


async def test_the_advert_carries_our_key_and_open_group(running: Running) -> None:
    ad = running.discovery.current_advert()
    assert ad.token == advert_token(
        running.lan.own_discovery_key, epoch_of(NOW, EPOCH_SECONDS), ad.salt
    )
    running.lan.set_open_group("Book club")
    assert running.discovery.current_advert().open_group == "Book club"
    await running.lan.rotate_key()
    ad = running.discovery.current_advert()
    assert ad.token == advert_token(
        running.lan.own_discovery_key, epoch_of(NOW, EPOCH_SECONDS), ad.salt
    )

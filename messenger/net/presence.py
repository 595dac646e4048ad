"""LAN presence: mDNS discovery (net/discovery/) wired to the contacts' sessions.

The worker keeps our LAN advertising key and those of our contacts, starts and stops
discovery, dials a contact the LAN shows (once per LAN_DIAL_INTERVAL, the smaller identity
key first), probes sessions after a change on the LAN, and lists the visible people nearby.
It is the DiscoveryListener and the LanKeys port of the groups worker; PeerService builds
it and wires it to the ports below (docs/protocol.md §4).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import nacl.utils

from ..core.settings import BLOB_DISCOVERY_KEY
from ..events import NearbyChanged
from ..protocol import wire
from ..records import NearbyPerson
from .discovery import Discovery, DiscoverySettings, Sighting, host_of
from .transport import Connection, Timing

if TYPE_CHECKING:
    from ..core.ports import Clock, ContactKeyring, Db, Emit, LinkRegistry, Me, Tasks
    from ..storage.repository import Repository

log = logging.getLogger(__name__)

# Keepalive on sessions with a peer on the local link: a vanished host (link down, unplugged)
# is marked offline within dead_after + keepalive_interval seconds instead of ~60.
LAN_TIMING = Timing(keepalive_interval=2.0, dead_after=6.0)
# A live session with a contact that left the LAN (goodbye, TTL expiry, new address) is
# pinged; without an answer within this many seconds it is closed (and redialled).
LAN_PROBE_TIMEOUT = 2.0
# The same check on a session through Tor (probed after our network changed, or when a
# write stalls): a round trip over an established circuit can take seconds, and 2 s
# would close healthy sessions. Within the Tor keepalive interval (protocol.md §19.5).
TOR_PROBE_TIMEOUT = 30.0
# At most one discovery-triggered dial per contact per this many seconds.
LAN_DIAL_INTERVAL = 1.0
# When two contacts see each other appear at once, the one with the smaller identity key
# dials at once and the other waits this long first (and then only if still apart), so
# they rarely dial each other simultaneously (which resolves, but flaps presence).
LAN_YIELD = 1.0


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class LanPresence:
    """Discovery, advertising keys, LAN dials and probes. Built and wired by PeerService;
    its hooks: `load`, `start`, `adopted`, `store_key`, `probe`, `begin_close`, `aclose`."""

    def __init__(  # noqa: PLR0913  (the ports PeerService wires in, keyword-only)
        self,
        *,
        me: Me,
        db: Db,
        repo: Repository,
        emit: Emit,
        tasks: Tasks,
        clock: Clock,
        links: LinkRegistry,
        contacts: ContactKeyring,
        visible: Callable[[], bool],
        new_port: Callable[[], Awaitable[int]],
        enabled: bool | None,
        listen_host: str,
        epoch_seconds: float,
        lan_timing: Timing,
        make_discovery: Callable[..., Discovery] = Discovery,
    ) -> None:
        self._me = me
        self._db = db
        self._repo = repo
        self._emit = emit
        self._tasks = tasks
        self._clock = clock
        self._links = links
        self._contacts = contacts
        self._visible = visible  # the "visible on this network" setting
        self._new_port = new_port  # the service moves its listener for a new network
        self._enabled = enabled  # None: on unless listening on loopback only
        self._listen_host = listen_host
        self._epoch_seconds = epoch_seconds
        self._lan_timing = lan_timing
        self._make_discovery = make_discovery  # a test passes one that starts no mDNS
        self._closing = False
        self._discovery: Discovery | None = None
        self._own_discovery_key = b""
        self._discovery_keys: dict[str, bytes] = {}  # contact id -> its advertising key
        self._last_dial: dict[str, float] = {}
        self._dial_later: dict[str, asyncio.TimerHandle] = {}
        self._probing: set[Connection] = set()

    # -- lifecycle ------------------------------------------------------------------------

    async def load(self) -> None:
        own_key = await self._db.run(self._repo.get_blob, BLOB_DISCOVERY_KEY)
        if own_key is None or len(own_key) != 32:
            own_key = nacl.utils.random(32)
            await self._db.run(self._repo.set_blob, BLOB_DISCOVERY_KEY, own_key)
        self._own_discovery_key = own_key
        self._discovery_keys = await self._db.run(self._repo.discovery_keys)

    def begin_close(self) -> None:
        """The service is closing: nothing more is dialled or probed."""
        self._closing = True
        for handle in self._dial_later.values():
            handle.cancel()

    async def aclose(self) -> None:
        self.begin_close()
        if self._discovery is not None:
            await self._discovery.aclose()  # goodbye packets

    # -- keys and state (public) ----------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._discovery is not None

    @property
    def own_discovery_key(self) -> bytes:
        return self._own_discovery_key

    def discovery_keys(self) -> dict[str, bytes]:
        return dict(self._discovery_keys)

    def set_visible(self) -> None:
        """The display name or the visible setting changed: what the advert says."""
        if self._discovery is not None:
            visible = self._visible()
            self._discovery.set_visible(self._me.display_name if visible else None)
            if not visible:
                self._emit(NearbyChanged(()))

    def find_nearby(self, nearby_id: str) -> Sighting | None:
        return self._discovery.directory.find_nearby(nearby_id) if self._discovery else None

    def forget_contact(self, contact_id: str) -> None:
        self._discovery_keys.pop(contact_id, None)
        if self._discovery is not None:
            self._discovery.set_contact_key(contact_id, None)

    def contact_addresses(self, contact_id: str) -> list[str]:
        """Where the LAN saw the contact (the first dialer's addresses)."""
        discovery = self._discovery
        return discovery.contact_addresses(contact_id) if discovery is not None else []

    # LanKeys (the groups worker's port)
    def contact_key_known(self, contact_id: str, key: bytes) -> None:
        self._discovery_keys[contact_id] = key
        if self._discovery is not None:
            self._discovery.set_contact_key(contact_id, key)

    def set_open_group(self, name: str | None) -> None:
        if self._discovery is not None:
            self._discovery.set_open_group(name)

    # -- discovery, dials and probes ------------------------------------------------------

    def wanted(self) -> bool:
        if self._enabled is not None:
            return self._enabled
        host = self._listen_host
        if host in ("", "0.0.0.0", "::"):  # noqa: S104
            return True
        try:
            return not ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    async def start(self, port: int | None) -> bool:
        """Start mDNS discovery on `port` if it is wanted; True if it started."""
        if not self.wanted() or port is None:
            return False
        host = self._listen_host
        discovery = self._make_discovery(
            self,
            port=port,
            own_key=self._own_discovery_key,
            contact_keys=self._discovery_keys,
            visible_name=self._me.display_name if self._visible() else None,
            clock=self._clock,
            settings=DiscoverySettings(
                epoch_seconds=self._epoch_seconds,
                only_address=None if host in ("", "0.0.0.0", "::") else host,  # noqa: S104
            ),
        )
        await discovery.start()
        self._discovery = discovery
        return True

    def nearby_offered(self) -> bool:
        """Do we answer NEARBY handshakes? Only while visible on this network."""
        return self._discovery is not None and self._visible()

    def adopted(self, conn: Connection) -> None:
        """A contact's session went live: tell it our advertising key; on the local link,
        use the short keepalive so a vanished peer is noticed within seconds."""
        conn.send(wire.DiscoveryKey(self._own_discovery_key))
        discovery = self._discovery
        if self._links.via_tor(conn):
            return  # Tor's timers (tor_timing): the far end is our own tor, not the contact
        if discovery and conn.peer_address and discovery.snapshot.on_link(conn.peer_address[0]):
            conn.use_timing(self._lan_timing)

    async def store_key(self, contact_id: str, key: bytes) -> None:
        if self._discovery_keys.get(contact_id) == key:
            return
        await self._db.run(self._repo.set_discovery_key, contact_id, key)
        self._discovery_keys[contact_id] = key
        if self._discovery is not None:
            self._discovery.set_contact_key(contact_id, key)

    def lan_contact_seen(self, contact_id: str, addresses: list[str]) -> None:
        if self._closing or contact_id not in self._contacts:
            return
        live = self._links.connection(contact_id)
        if live is None or live.closed.is_set():
            self._dial(contact_id)
        elif self._links.via_tor(live):
            self._links.poke(contact_id)  # on the LAN now: its dial loop tries it, moves there
        elif live.peer_address is not None and live.peer_address[0] not in {
            host_of(a) for a in addresses
        }:
            self.probe(live)  # it announced itself elsewhere: is this session still up?

    def lan_contact_gone(self, contact_id: str) -> None:
        live = self._links.connection(contact_id)
        if not self._closing and live is not None and not live.closed.is_set():
            self.probe(live)

    def lan_nearby_changed(self) -> None:
        if not self._closing and self._visible():
            self._emit(NearbyChanged(tuple(self.nearby())))

    def lan_network_changed(self, addresses: tuple[str, ...]) -> None:
        """Our own addresses or links changed (`addresses`: all we have, links up or down):
        drop sessions bound to an address we no longer have, check the others, and dial
        every contact that is offline."""
        if self._closing:
            return
        ours = set(addresses)
        for conn in self._links.live_connections():
            local = conn.writer.get_extra_info("sockname")
            host = str(local[0]).removeprefix("::ffff:") if local else None
            if host is not None and host not in ours and not is_loopback(host):
                conn.close("our network address changed")
            else:
                self.probe(conn)
        for contact_id in self._contacts:
            if not self._links.is_online(contact_id):
                self._dial(contact_id)

    def _dial(self, contact_id: str, *, deferred: bool = False) -> None:
        """Dial a contact soon: at once if our identity key is the smaller one, else after
        LAN_YIELD; at most once per LAN_DIAL_INTERVAL (later requests are deferred)."""
        keys = self._contacts.keys(contact_id)
        if contact_id in self._dial_later or keys is None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_dial.get(contact_id, -LAN_DIAL_INTERVAL) + LAN_DIAL_INTERVAL
        wait -= loop.time()
        if not deferred:
            theirs = keys.ed25519_public
            if theirs < self._me.identity.ed25519_public:
                wait = max(wait, LAN_YIELD)
        if wait > 0:

            def later() -> None:
                self._dial_later.pop(contact_id, None)
                live = self._links.connection(contact_id)
                if live is None or live.closed.is_set():
                    self._dial(contact_id, deferred=True)

            self._dial_later[contact_id] = loop.call_later(wait, later)
            return
        self._last_dial[contact_id] = loop.time()
        if not self._closing and contact_id in self._contacts:
            self._links.poke(contact_id)

    def probe(self, conn: Connection) -> None:
        """Ping a live session; close it if nothing comes back within LAN_PROBE_TIMEOUT
        (TOR_PROBE_TIMEOUT through Tor)."""
        if conn in self._probing or not conn.session.established:
            return
        self._probing.add(conn)
        heard = conn.last_heard
        within = TOR_PROBE_TIMEOUT if self._links.via_tor(conn) else LAN_PROBE_TIMEOUT
        conn.send(wire.Ping(0))

        async def check() -> None:
            try:
                await asyncio.sleep(within)
                if conn.last_heard == heard and not conn.closed.is_set():
                    conn.close("no answer after a change on the LAN")
            finally:
                self._probing.discard(conn)

        self._tasks.spawn(check(), "chinwag-lan-probe")

    def nearby(self) -> list[NearbyPerson]:
        """Visible people on this network who are not contacts (empty unless we are visible)."""
        if self._discovery is None or not self._visible():
            return []
        return [
            NearbyPerson(
                s.nearby_id, s.advert.name or "?", s.addresses, s.seen_at, s.advert.open_group
            )
            for s in self._discovery.directory.nearby()
        ]

    async def rotate_key(self) -> None:
        """A fresh advertising key: announced from the next record update on, sent to every
        contact online now and to the others when they next connect."""
        key = nacl.utils.random(32)
        await self._db.run(self._repo.set_blob, BLOB_DISCOVERY_KEY, key)
        self._own_discovery_key = key
        for conn in self._links.live_connections():
            conn.send(wire.DiscoveryKey(key))
        if self._discovery is not None:
            self._discovery.set_own_key(key)

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "discovery": self._discovery is not None,
            "visible": self._visible(),
        }
        if self._discovery is not None:
            status.update(self._discovery.status())
        return status

    async def lan_port_for_new_network(self) -> int:
        """DiscoveryListener: the port to announce on a new network (the service decides)."""
        return await self._new_port()

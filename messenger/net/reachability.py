"""Where contacts can reach us, and how we reach them: the listener's port (a fresh one
on a new network), the addresses we tell contacts (Hello, ReachUpdate, invites), the ones
they tell us, the direct dialers' address lookups, and Tor reach switched on and off
while running (protocol.md §19).

PeerService builds one Reachability and exposes it as `service.reach`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..core.settings import SETTING_PORT, SETTING_TOR, SETTING_TOR_ONLY
from ..errors import ServiceError
from ..events import TorStatusChanged
from ..protocol import wire
from ..protocol.invite import Address, parse_address
from .links import Dialer, TcpDialer
from .netif import interface_addresses
from .reach import TorReach, is_onion_address, tor_missing
from .tor import TorSettings
from .transport import Connection, Listener

if TYPE_CHECKING:
    from ..config import ServiceConfig
    from ..core.ports import Clock, ContactKeyring, Db, Emit, Tasks
    from ..identity import Identity
    from ..storage.repository import Repository

log = logging.getLogger(__name__)

AddressLookup = Callable[[str], Awaitable[Iterable[str]]]


class ReachLinks(Protocol):
    """What this worker uses of the links worker (net/links.py)."""

    dialers: list[Dialer]

    async def listen(self, host: str, port: int) -> Listener: ...

    async def move_listener(self, host: str) -> Listener: ...

    async def listen_onion(self) -> tuple[str, int]: ...

    @property
    def listener(self) -> Listener | None: ...

    def listening_on(self) -> list[tuple[str, int]]: ...

    def live_connections(self) -> list[Connection]: ...

    def is_online(self, contact_id: str) -> bool: ...

    def poke(self, contact_id: str) -> None: ...

    def via_tor(self, conn: Connection) -> bool: ...


class Reachability:
    def __init__(  # noqa: PLR0913  (the ports PeerService wires in, keyword-only)
        self,
        *,
        config: ServiceConfig,
        folder: Path,
        identity: Identity,
        display_name: Callable[[], str],
        db: Db,
        repo: Repository,
        emit: Emit,
        tasks: Tasks,
        clock: Clock,
        links: ReachLinks,
        contacts: ContactKeyring,
        settings: Mapping[str, Any],
        lan_wanted: Callable[[], bool],
        closing: Callable[[], bool],
        contact_changed: Callable[[str], Awaitable[None]],
    ) -> None:
        self._config = config
        self._folder = folder
        self._identity = identity
        self._display_name = display_name  # ours, read live (the user can change it)
        self._db = db
        self._repo = repo
        self._emit = emit
        self._tasks = tasks
        self._clock = clock
        self._links = links
        self._contacts = contacts
        self._settings = settings  # the service's settings, read live
        self._lan_wanted = lan_wanted  # is LAN discovery on (then the port changes)?
        self._closing = closing
        self._contact_changed = contact_changed
        self.listen_port: int | None = None
        self.tor: TorReach | None = None
        # The addresses we last told each live session (its Hello's, or a ReachUpdate's).
        self._told: weakref.WeakKeyDictionary[Connection, tuple[str, ...]] = (
            weakref.WeakKeyDictionary()
        )
        self.tunnel = _TorTunnel(self)  # the files worker's: bulk goes through Tor too
        if config.tor:
            self._make_tor()

    # -- dialling contacts --------------------------------------------------------------

    def dialers(self, lan_addresses: AddressLookup) -> list[TcpDialer]:
        """Dial order: where the LAN saw the contact, then its last direct addresses (then
        its onion addresses, when Tor is on: added by _make_tor). Tor-only dials no direct
        route: that would show the contact our IP address."""
        return [
            TcpDialer(self._unless_tor_only(lan_addresses)),
            TcpDialer(self._unless_tor_only(self.direct_addresses)),
        ]

    def _unless_tor_only(self, lookup: AddressLookup) -> AddressLookup:
        async def addresses(contact_id: str) -> Iterable[str]:
            return () if self.tor_only else await lookup(contact_id)

        return addresses

    async def stored_addresses(self, contact_id: str) -> list[str]:
        contact = await self._db.run(self._repo.contact, contact_id)
        return list(contact.addresses) if contact is not None else []

    async def direct_addresses(self, contact_id: str) -> list[str]:
        """The stored addresses plain TCP can reach (the onion dialer takes the rest)."""
        return [a for a in await self.stored_addresses(contact_id) if not is_onion_address(a)]

    # -- listening ----------------------------------------------------------------------

    async def listen(self) -> int:
        """Open the listener (the remembered port, or a fresh one: _port_to_reuse)."""
        host, port = self._config.listen_host, self._config.listen_port
        if port is None:
            port = await self._db.run(self._port_to_reuse, self._clock())
        try:
            server = await self._links.listen(host, port or 0)
        except OSError as exc:
            if not port or self._config.listen_port is not None:
                raise ServiceError(f"cannot listen on port {port}: {exc}") from exc
            log.warning("remembered port %s is taken (%s); choosing another", port, exc)
            server = await self._links.listen(host, 0)
        self.listen_port = server.port
        await self._db.run(self._repo.set_setting, SETTING_PORT, self.listen_port)
        log.info("listening on %s:%s", host or "*", self.listen_port)
        return self.listen_port

    def listening_on(self) -> list[tuple[str, int]]:
        """Every (host, port) a listening socket of ours is bound to; empty when offline."""
        return self._links.listening_on()

    def _port_to_reuse(self, now: float) -> int:
        """With LAN discovery on, a fresh port at every start, so a stranger cannot link
        our announcements by it (contacts find the new one over mDNS), except while an
        invite we gave out is still open, since the invite names it. Without discovery
        nothing is announced and contacts have only the address they know: keep it
        (protocol.md 4.1)."""
        if self._lan_wanted() and not self._repo.pending_invites(now):
            return 0
        return int(self._repo.get_setting(SETTING_PORT, 0))

    async def port_for_new_network(self) -> int:
        """Move the listener to a fresh port when the network changes (a stranger could
        link our announcements on two networks by the port), unless the user chose the
        port or an open invite names the current one. Live sessions are not affected."""
        current = self.listen_port or 0
        if self._closing() or self._links.listener is None:
            return current
        if self._config.listen_port is not None:
            return current
        if await self._db.run(self._port_to_reuse, self._clock()):
            return current
        try:
            fresh = await self._links.move_listener(self._config.listen_host)
        except OSError as exc:
            log.warning("could not move to a new port (%s); keeping %s", exc, current)
            return current
        self.listen_port = fresh.port
        await self._db.run(self._repo.set_setting, SETTING_PORT, self.listen_port)
        log.info("new network: listening on port %s now", self.listen_port)
        return self.listen_port

    # -- what we tell contacts ----------------------------------------------------------

    def hello(self) -> wire.Hello:
        return wire.Hello(
            ed25519_public=self._identity.ed25519_public,
            static_certificate=self._identity.static_certificate,
            display_name=self._display_name(),
            # No port when announcing other addresses: a contact would pair it with the
            # address it sees us at, and reach the listener around what we announce.
            listen_port=0
            if self.tor_only or self._config.advertise is not None
            else self.listen_port or 0,
            addresses=tuple(str(a) for a in self.addresses()[: wire.MAX_ADDRESSES]),
        )

    def addresses(self) -> list[Address]:
        """Where contacts can reach us: configured addresses first, then every interface,
        then our onion address (with Tor on; only that one when tor_only)."""
        onion = self.tor.address if self.tor is not None else None
        if self.tor_only:
            return [parse_address(onion)] if onion else []
        found = list(dict.fromkeys(self._direct_addresses()))
        if onion:
            # Last (direct routes are faster), but never cut off by the Hello's limit.
            found = [*found[: wire.MAX_ADDRESSES - 1], parse_address(onion)]
        return found

    def _direct_addresses(self) -> list[Address]:
        config = self._config
        if config.advertise is not None:
            return list(dict.fromkeys(parse_address(a) for a in config.advertise))
        port = self.listen_port or 0
        found = [parse_address(text) for text in config.extra_addresses]
        if config.listen_host not in ("", "0.0.0.0", "::"):  # noqa: S104
            found.append(Address(config.listen_host, port))
        elif port:
            found += interface_addresses(port)
        return list(dict.fromkeys(found))

    def announce(self, conn: Connection) -> None:
        """Send a ReachUpdate if our addresses changed since what this session was told
        (its Hello was built before our onion service was published, protocol.md §19.8)."""
        if not conn.session.established or conn.closed.is_set():
            return
        if conn.contact_id is not None and self._contacts.is_held(conn.contact_id):
            return  # its safety number changed: nothing more of ours until the user answers
        now = tuple(self.hello().addresses)
        told = self._told.get(conn, tuple(conn.session.hello.addresses))
        if now and now != told:
            conn.send(wire.ReachUpdate(now))
            self._told[conn] = now

    async def on_reach_update(self, contact_id: str, addresses: tuple[str, ...]) -> None:
        """A contact told us where it can be reached now: stored as a Hello's addresses
        are (first, before those known), for the dialers to use later."""
        if await self._db.run(self._repo.remember_addresses, contact_id, addresses):
            await self._contact_changed(contact_id)

    # -- Tor ----------------------------------------------------------------------------

    @property
    def tor_only(self) -> bool:
        """Whether contacts are told only our onion address (ServiceConfig.tor_only, or
        the "tor_only" setting while Tor is on and follows the settings)."""
        if self._config.tor_only:
            return True
        return (
            self._config.tor is None
            and self.tor is not None
            and bool(self._settings.get(SETTING_TOR_ONLY))
        )

    @property
    def tor_status(self) -> TorStatusChanged:
        """Tor reach now (the last TorStatusChanged; state "off" when Tor is off)."""
        return self.tor.status if self.tor is not None else TorStatusChanged("off")

    def _tor_setting(self) -> bool:
        """The profile's choice; never chosen: on when this machine can run Tor."""
        chosen = self._settings[SETTING_TOR]
        return tor_missing() is None if chosen is None else bool(chosen)

    def _make_tor(self) -> TorReach:
        """The Tor reach worker, last in the dial order (built when Tor is turned on)."""
        self.tor = TorReach(
            folder=self._folder,
            settings=self._config.tor_settings or TorSettings.from_env(),
            db=self._db,
            repo=self._repo,
            emit=self._emit,
            tasks=self._tasks,
            addresses=self.stored_addresses,
            on_ready=self._tor_ready,
            via_tor=self._links.via_tor,
        )
        self._links.dialers.append(self.tor)
        return self.tor

    async def load(self) -> None:
        """Once the settings are loaded: Tor on if they say so (and followed)."""
        if self._config.tor is None and self._tor_setting():
            self._make_tor()
        if self.tor is not None:
            await self.tor.load()

    async def start_tor(self) -> None:
        """Publish our onion service (once the listener is up)."""
        if self.tor is not None:
            # Our onion forwards to a listener of its own, so every session accepted there
            # is known to come through Tor (its address is tor's loopback either way).
            self.tor.start(await self._links.listen_onion())

    async def setting_changed(self, on: bool) -> None:
        """The "tor" setting changed: follow it at once, if this service follows it."""
        if self._config.tor is None and self._config.network:
            await self._switch_tor(on)

    async def _switch_tor(self, on: bool) -> None:
        """Turn Tor reach on or off while running."""
        if on and self.tor is None:
            tor = self._make_tor()
            await tor.load()
            if self.listen_port is not None and not self._closing():
                tor.start(await self._links.listen_onion())
        elif not on and self.tor is not None:
            tor, self.tor = self.tor, None
            with contextlib.suppress(ValueError):
                self._links.dialers.remove(tor)
            # Sessions over Tor end with its process; their dial loops then find the LAN
            # or a direct address, if any.
            await tor.aclose()

    def _tor_ready(self) -> None:
        """Our onion is up (or back): tell the contacts online now where we can be reached
        (their sessions' Hellos may predate the onion), and dial every contact not online,
        since contacts known only by onion address had no route before."""
        for conn in self._links.live_connections():
            self.announce(conn)
        for contact_id in self._contacts:
            if not self._links.is_online(contact_id):
                self._links.poke(contact_id)

    async def aclose(self) -> None:
        if self.tor is not None:
            await self.tor.aclose()


class _TorTunnel:
    """The files worker's Tunnel port: Tor's, while Tor is on (it can be switched)."""

    def __init__(self, reach: Reachability) -> None:
        self._reach = reach

    def wanted(self, contact_id: str, conn: Connection) -> bool:
        tor = self._reach.tor
        return tor is not None and tor.wanted(contact_id, conn)

    async def open(self, contact_id: str) -> socket.socket:
        tor = self._reach.tor
        if tor is None:
            raise ConnectionError("Tor is off")
        return await tor.open(contact_id)

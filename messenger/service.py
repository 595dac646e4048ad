"""PeerService: the one object front ends use. It owns storage, the listener, dialers and
every connection, routes session events, and emits service events.

PeerService builds the workers (links, groups, files, nearby pairing) and wires each to
the ports it uses (core/ports.py). All database work runs on one dedicated thread
(`self.db`, core/runtime.py), so the event loop never waits on disk; arriving messages
and our own sends are written in batches (group commit, core/batch.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import socket
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .chat import Chat
from .contacts import ContactBook
from .core.runtime import DbThread, TaskOwner
from .core.settings import (
    BLOB_IDENTITY,
    DEFAULT_SETTINGS,
    SETTING_NAME,
    SETTING_PORT,
    SETTING_TOR,
    SETTING_TOR_ONLY,
    SETTING_VISIBLE,
)
from .core.text import safe_name
from .errors import (
    ContactNotFound,
    DiskFull,
    PairingError,
    ProfileError,
    ServiceError,
)
from .events import (
    ContactAdded,
    ContactChanged,
    ContactRemoved,
    DiskSpace,
    PairingRequested,
    SafetyNumberChanged,
    ServiceEvent,
    TorStatusChanged,
)
from .files.manager import FileManager
from .groups import GroupManager
from .identity import (
    Identity,
    fingerprint,
    safety_number,
)
from .identity import (
    contact_id as make_contact_id,
)
from .invites import Invites
from .nearby import PairingManager
from .net.established import EstablishedSessions
from .net.links import DIRECT_RETRY, Links, TcpDialer
from .net.netif import interface_addresses
from .net.presence import LAN_TIMING, LanPresence
from .net.reach import TorReach, is_onion_address, tor_missing
from .net.tor import TorSettings
from .net.transport import Connection, Timing, bound_port
from .profile import KdfParams, ProfileDir, ProfileLock
from .protocol import wire
from .protocol.invite import (
    Address,
    Invite,
    parse_address,
)
from .protocol.session import (
    Established,
    SessionEvent,
)
from .records import (
    ContactRecord,
    ConversationSummary,
    InviteRecord,
    MessageRecord,
    NearbyPerson,
)
from .storage.database import open_database
from .storage.group_repository import StoredGroupMessage
from .storage.repository import (
    ContactKeys,
    NewContact,
    Repository,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Sessions through Tor (protocol.md §19.5): a first circuit takes 10-30 s on the public
# network and a circuit can stall for seconds, so the handshake gets longer and keepalives
# are rarer and more patient than on a LAN (they cost cells on every relay of the path).
TOR_TIMING = Timing(handshake_timeout=60.0, keepalive_interval=30.0, dead_after=120.0)
# A contact with no address at all (none stored, not seen on the LAN) is retried this
# rarely: discovery (or a message to send) pokes its dial loop when there is one.
ADDRESSLESS_RETRY = 300.0


# While the disk is full, its free space is looked at this often; once this much more is
# free than when the write failed, the sessions whose messages were not stored are closed
# so their senders resend (more than "some": a write too big for a sliver would fail again).
DISK_POLL_INTERVAL = 0.5
DISK_ROOM_NEEDED = 1 << 20

# Connections adopted within this many seconds of each other count as simultaneous dials.
SIMULTANEOUS_WINDOW = 5.0


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    listen_host: str = ""
    listen_port: int | None = None  # None: the remembered port, or a free one
    extra_addresses: tuple[str, ...] = ()
    network: bool = True  # False: open the profile only (CLI reads, offline queueing)
    timing: Timing = field(default_factory=Timing)
    dial_base: float = 0.5
    dial_cap: float = 60.0
    batch_max: int = 2000
    # LAN discovery over mDNS. None: on when listening on all interfaces or on one
    # non-loopback address (a peer bound to 127.0.0.1 has no LAN to announce on).
    discovery: bool | None = None
    discovery_epoch: float = 600.0  # token lifetime in seconds (tests shorten it)
    lan_timing: Timing = LAN_TIMING
    # Tor reach (protocol.md §19): off here so library users and tests opt in;
    # `chinwag-cli run` turns it on when a tor binary is found. None: follow the profile's
    # "tor" setting (the desktop app), which `set_setting("tor", ...)` switches at once.
    tor: bool | None = False
    tor_settings: TorSettings | None = None  # None: TorSettings.from_env() (CHINWAG_TOR_*)
    # Tell contacts (Hello, invites) only the onion address, never a direct one: hides our
    # IP address from them, and makes every contact session go through Tor.
    tor_only: bool = False
    tor_timing: Timing = TOR_TIMING  # the timers of sessions through Tor
    # While a contact is reached through Tor, its direct routes are retried this often (at
    # once when it appears on the LAN): a direct session replaces the Tor one.
    direct_retry: float = DIRECT_RETRY
    # Direct addresses to announce (Hello, invites) instead of the listener's own: a port
    # forwarded on a router, a relay in front of us. None: the listener's addresses.
    advertise: tuple[str, ...] | None = None


class PeerService:
    """Create with `await PeerService.open(...)`, or `create_profile` for a new one."""

    def __init__(
        self,
        profile: ProfileDir,
        repo: Repository,
        db: DbThread,
        lock: ProfileLock,
        config: ServiceConfig,
        *,
        identity: Identity,
        clock: Callable[[], float],
        rng: random.Random,
    ) -> None:
        self.profile = profile
        self.repo = repo
        self.config = config
        self.db = db  # the database thread: every worker's Db port
        self._lock = lock
        self._clock = clock
        self._rng = rng
        self.identity = identity
        self.display_name: str = ""
        self.settings: dict[str, Any] = dict(DEFAULT_SETTINGS)
        self.listen_port: int | None = None
        self._tasks = TaskOwner()
        self._subscribers: list[Callable[[ServiceEvent], None]] = []
        self._invites: dict[bytes, InviteRecord] = {}
        self._closing = False
        # The addresses we last told each live session (its Hello's, or a ReachUpdate's).
        self._reach_told: weakref.WeakKeyDictionary[Connection, tuple[str, ...]] = (
            weakref.WeakKeyDictionary()
        )
        # Contacts whose arriving messages were not stored because the disk was full (they
        # were not acknowledged; their sessions are closed once there is room again).
        self._unstored: set[str] = set()
        self._disk_full = False
        self._free_when_full = 0
        self._build_workers()

    def _build_workers(self) -> None:
        """Build each worker and wire it to the ports it uses, nothing more."""
        wiring = _Wiring(self)
        self.contact_keys = ContactBook(self.identity.ed25519_public)
        self.links = Links(
            identity=self.identity,
            contacts=self.contact_keys,
            hooks=wiring,
            hello=self._hello,
            emit=self._emit,
            tasks=self._tasks,
            clock=self._clock,
            rng=self._rng,
            timing=self.config.timing,
            dial_base=self.config.dial_base,
            dial_cap=self.config.dial_cap,
            tor_timing=self.config.tor_timing,
            direct_retry=self.config.direct_retry,
            # Dial order: where the LAN saw the contact, then its last direct addresses
            # (then its onion addresses, when Tor is on: below). Tor-only dials no direct
            # route: that would show the contact our IP address.
            dialers=[
                TcpDialer(self._unless_tor_only(wiring.lan_addresses)),
                TcpDialer(self._unless_tor_only(wiring.direct_addresses)),
            ],
        )
        self.tor: TorReach | None = None
        if self.config.tor:
            self._make_tor()
        self.lan = LanPresence(  # LAN presence: discovery, advertising keys, LAN dials
            me=self,
            db=self.db,
            repo=self.repo,
            emit=self._emit,
            tasks=self._tasks,
            clock=self._clock,
            links=self.links,
            contacts=self.contact_keys,
            visible=lambda: self.visible,
            new_port=self._port_for_new_network,
            enabled=self.config.discovery,
            listen_host=self.config.listen_host,
            epoch_seconds=self.config.discovery_epoch,
            lan_timing=self.config.lan_timing,
        )
        self.sessions = EstablishedSessions(
            me=self,
            db=self.db,
            repo=self.repo,
            links=self.links,
            contacts=self.contact_keys,
            invites=self._invites,
            contact_added=self._contact_added,
            clock=self._clock,
        )
        self.invites = Invites(  # invites: create_invite, accept_invite
            me=self,
            db=self.db,
            repo=self.repo,
            clock=self._clock,
            links=self.links,
            contacts=self.contact_keys,
            invites=self._invites,
            tor=lambda: self.tor,
            tor_only=lambda: self.tor_only,
            peer_addresses=self.sessions.peer_addresses,
            contact_added=self._contact_added,
        )
        self._pairing = PairingManager(
            me=self,
            links=self.links,
            contacts=self.contact_keys,
            db=self.db,
            repo=self.repo,
            emit=self._emit,
            clock=self._clock,
            contact_added=self._contact_added,
            nearby_offered=self.lan.nearby_offered,
        )
        self.groups = GroupManager(  # LAN group chat (groups/)
            me=self,
            db=self.db,
            repo=self.repo,
            emit=self._emit,
            tasks=self._tasks,
            clock=self._clock,
            links=self.links,
            contacts=self.contact_keys,
            lan=self.lan,
            remove_contact=self.remove_contact,
            on_offers=wiring.group_offers,
            batch_max=self.config.batch_max,
            not_stored=self._not_stored,
        )
        self.files = FileManager(  # file transfer (files/)
            folder=self.profile.path,
            db=self.db,
            repo=self.repo,
            emit=self._emit,
            clock=self._clock,
            links=self.links,
            contacts=self.contact_keys,
            groups=self.groups,
            timing=self.config.timing,
            tunnel=_TorTunnel(self),  # bulk connections go through Tor when the session does
        )
        self.chat = Chat(  # 1:1 messages: outbox, arrivals, receipts, typing, queries
            db=self.db,
            repo=self.repo,
            emit=self._emit,
            tasks=self._tasks,
            clock=self._clock,
            links=self.links,
            contacts=self.contact_keys,
            settings=self.settings,
            send_offer_for=self.files.send_offer_for,
            not_stored=self._not_stored,
            note_disk_full=self._note_disk_full,
            space_back=self._space_back,
            batch_max=self.config.batch_max,
        )

    def _make_tor(self) -> TorReach:
        """The Tor reach worker, last in the dial order (built when Tor is turned on)."""
        self.tor = TorReach(
            folder=self.profile.path,
            settings=self.config.tor_settings or TorSettings.from_env(),
            db=self.db,
            repo=self.repo,
            emit=self._emit,
            tasks=self._tasks,
            addresses=_Wiring(self).stored_addresses,
            on_ready=self._tor_ready,
            via_tor=self.links.via_tor,
        )
        self.links.dialers.append(self.tor)
        return self.tor

    def _unless_tor_only(
        self, lookup: Callable[[str], Awaitable[Iterable[str]]]
    ) -> Callable[[str], Awaitable[Iterable[str]]]:
        """A direct dialer's lookup that finds nothing while Tor-only is on."""

        async def addresses(contact_id: str) -> Iterable[str]:
            return () if self.tor_only else await lookup(contact_id)

        return addresses

    # -- construction ---------------------------------------------------------------------

    @classmethod
    async def create_profile(
        cls,
        path: Path,
        display_name: str,
        passphrase: str | None,
        *,
        kdf: KdfParams | None = None,
        config: ServiceConfig | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        settings: dict[str, Any] | None = None,
    ) -> tuple[PeerService, list[str]]:
        """`settings`: choices made at first run (e.g. "tor"), stored before the network
        starts, so a service following them never starts what the user turned off."""
        name = display_name.strip()
        if not name or len(name) > wire.MAX_NAME_CHARS:
            raise ServiceError(f"a display name needs 1 to {wire.MAX_NAME_CHARS} characters")
        unknown = set(settings or {}) - set(DEFAULT_SETTINGS)
        if unknown:
            raise ServiceError(f"unknown setting {sorted(unknown)[0]!r}")
        profile = ProfileDir(path)
        lock = ProfileLock(profile)
        lock.acquire("creating profile")
        try:
            key, warnings = await asyncio.to_thread(profile.prepare_new, passphrase, kdf=kdf)
            engine = await asyncio.to_thread(open_database, profile.db_path, key, create=True)
            repo = Repository(engine)
            identity = Identity.generate()
            repo.set_blob(BLOB_IDENTITY, identity.to_bytes())
            repo.set_setting(SETTING_NAME, name)
            for setting, value in (settings or {}).items():
                repo.set_setting(setting, value)
        except BaseException:
            lock.release()
            raise
        service = await cls._finish_open(profile, repo, lock, config, clock, rng)
        return service, warnings

    @classmethod
    async def open(
        cls,
        path: Path,
        passphrase: str | None,
        *,
        config: ServiceConfig | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        purpose: str = "chinwag",
        lock_wait: float = 0.0,
        on_lock_wait: Callable[[str], None] | None = None,
        give_up_waiting: Callable[[], bool] | None = None,
    ) -> PeerService:
        """Open a profile. If another process holds it, wait up to `lock_wait` seconds for
        it to let go (see ProfileLock.acquire_waiting) before raising ProfileLocked."""
        profile = ProfileDir(path)
        if not profile.exists():
            profile.read_meta()  # raises ProfileMissing with the right message
        # The key first (Argon2id takes about a second), so the lock is held only while
        # the database is open: a one-shot command blocks a starting `run` briefly.
        key, trusted = await asyncio.to_thread(profile.unlock_key, passphrase)
        lock = ProfileLock(profile)
        await lock.acquire_waiting(
            purpose, lock_wait, on_wait=on_lock_wait, give_up=give_up_waiting
        )
        try:
            await asyncio.to_thread(profile.secure)  # warns and narrows what is too wide
            engine = await asyncio.to_thread(
                open_database, profile.db_path, key, key_trusted=trusted
            )
            await asyncio.to_thread(profile.remember_key_check, key)
            repo = Repository(engine)
        except BaseException:
            lock.release()
            raise
        return await cls._finish_open(profile, repo, lock, config, clock, rng)

    @classmethod
    async def _finish_open(
        cls,
        profile: ProfileDir,
        repo: Repository,
        lock: ProfileLock,
        config: ServiceConfig | None,
        clock: Callable[[], float],
        rng: random.Random | None,
    ) -> PeerService:
        db = DbThread()
        try:
            blob = await db.run(repo.get_blob, BLOB_IDENTITY)
            if blob is None:
                raise ProfileError("the profile database holds no identity")
            identity = Identity.from_bytes(blob)
        except BaseException:
            with contextlib.suppress(Exception):
                await db.run(repo.close)
            db.shutdown()
            lock.release()
            raise
        service = cls(
            profile,
            repo,
            db,
            lock,
            config or ServiceConfig(),
            identity=identity,
            clock=clock,
            rng=rng or random.Random(),  # noqa: S311  (jitter, not secrets)
        )
        try:
            await service._load()
            if service.config.network:
                await service._start_network()
        except BaseException:
            await service.aclose()
            raise
        return service

    async def _load(self) -> None:
        self.display_name = await self.db.run(self.repo.get_setting, SETTING_NAME, "")
        for key, default in DEFAULT_SETTINGS.items():
            self.settings[key] = await self.db.run(self.repo.get_setting, key, default)
        for keys in await self.db.run(self.repo.contact_keys):
            self.contact_keys.remember(keys)
        for contact_id in await self.db.run(self.repo.key_changed_contacts):
            self.contact_keys.hold(contact_id)
        for inv in await self.db.run(self.repo.invites):
            self._invites[inv.id] = inv
        await self.lan.load()
        self.chat.start()
        await self.groups.load()
        await self.files.load()
        if self.config.tor is None and self._tor_setting():
            self._make_tor()
        if self.tor is not None:
            await self.tor.load()

    async def _start_network(self) -> None:
        port = self.config.listen_port
        if port is None:
            port = await self.db.run(self._port_to_reuse, self._clock())
        try:
            server = await self.links.listen(self.config.listen_host, port or 0)
        except OSError as exc:
            if not port or self.config.listen_port is not None:
                raise ServiceError(f"cannot listen on port {port}: {exc}") from exc
            log.warning("remembered port %s is taken (%s); choosing another", port, exc)
            server = await self.links.listen(self.config.listen_host, 0)
        self.listen_port = bound_port(server)
        await self.db.run(self.repo.set_setting, SETTING_PORT, self.listen_port)
        log.info("listening on %s:%s", self.config.listen_host or "*", self.listen_port)
        for contact_id in self.contact_keys:
            self.links.ensure_dialer(contact_id)
        if self.tor is not None:
            # Our onion forwards to a listener of its own, so every session accepted there
            # is known to come through Tor (its address is tor's loopback either way).
            self.tor.start(await self.links.listen_onion())
        if await self.lan.start(self.listen_port):
            self.groups.announce()

    def _tor_setting(self) -> bool:
        """The profile's choice; never chosen: on when this machine can run Tor."""
        chosen = self.settings[SETTING_TOR]
        return tor_missing() is None if chosen is None else bool(chosen)

    @property
    def tor_only(self) -> bool:
        """Whether contacts are told only our onion address (ServiceConfig.tor_only, or
        the "tor_only" setting while Tor is on and follows the settings)."""
        if self.config.tor_only:
            return True
        return (
            self.config.tor is None
            and self.tor is not None
            and bool(self.settings.get(SETTING_TOR_ONLY))
        )

    @property
    def tor_status(self) -> TorStatusChanged:
        """Tor reach now (the last TorStatusChanged; state "off" when Tor is off)."""
        return self.tor.status if self.tor is not None else TorStatusChanged("off")

    def route(self, contact_id: str) -> str | None:
        """How the contact's live session runs: "lan", "direct", "tor"; None: offline."""
        return self.links.route(contact_id)

    async def _switch_tor(self, on: bool) -> None:
        """Turn Tor reach on or off while running (the "tor" setting changed)."""
        if on and self.tor is None:
            tor = self._make_tor()
            await tor.load()
            if self.listen_port is not None and not self._closing:
                tor.start(await self.links.listen_onion())
        elif not on and self.tor is not None:
            tor, self.tor = self.tor, None
            with contextlib.suppress(ValueError):
                self.links.dialers.remove(tor)
            # Sessions over Tor end with its process; their dial loops then find the LAN
            # or a direct address, if any.
            await tor.aclose()

    def _tor_ready(self) -> None:
        """Our onion is up (or back): tell the contacts online now where we can be reached
        (their sessions' Hellos may predate the onion), and dial every contact not online,
        since contacts known only by onion address had no route before."""
        for conn in self.links.live_connections():
            self._announce_reach(conn)
        for contact_id in self.contact_keys:
            if not self.links.is_online(contact_id):
                self.links.poke(contact_id)

    def _announce_reach(self, conn: Connection) -> None:
        """Send a ReachUpdate if our addresses changed since what this session was told
        (its Hello was built before our onion service was published, protocol.md §19.8)."""
        if not conn.session.established or conn.closed.is_set():
            return
        if conn.contact_id is not None and self.contact_keys.is_held(conn.contact_id):
            return  # its safety number changed: nothing more of ours until the user answers
        now = tuple(self._hello().addresses)
        told = self._reach_told.get(conn, tuple(conn.session.hello.addresses))
        if now and now != told:
            conn.send(wire.ReachUpdate(now))
            self._reach_told[conn] = now

    async def _store_reach(self, contact_id: str, addresses: tuple[str, ...]) -> None:
        """A contact told us where it can be reached now: stored as a Hello's addresses
        are (first, before those known), for the dialers to use later."""
        if await self.db.run(self.repo.remember_addresses, contact_id, addresses):
            await self._emit_contact_changed(contact_id)

    def _port_to_reuse(self, now: float) -> int:
        """With LAN discovery on, a fresh port at every start, so a stranger cannot link
        our announcements by it (contacts find the new one over mDNS), except while an
        invite we gave out is still open, since the invite names it. Without discovery
        nothing is announced and contacts have only the address they know: keep it
        (protocol.md 4.1)."""
        if self.lan.wanted() and not self.repo.pending_invites(now):
            return 0
        return int(self.repo.get_setting(SETTING_PORT, 0))

    async def aclose(self) -> None:
        """Close every connection with a goodbye, stop all tasks, close the database."""
        if self._closing:
            return
        self._closing = True
        self.lan.begin_close()
        self.links.begin_close()
        self._pairing.close()
        await self.files.aclose()
        await self.links.close_connections()
        await self.lan.aclose()  # goodbye packets
        tasks = [*self._tasks.cancel_all(), *self.links.cancel_dialers()]
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.chat.aclose()
        await self.groups.aclose()
        await self.links.wait_closed()
        if self.tor is not None:
            await self.tor.aclose()
        await self.db.run(self.repo.close)
        self.db.shutdown()
        self._lock.release()

    async def __aenter__(self) -> PeerService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- events ---------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[ServiceEvent], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def _emit(self, event: ServiceEvent) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber failed on %r", event)

    # -- identity, settings ---------------------------------------------------------------

    @property
    def contact_id(self) -> str:
        return make_contact_id(self.identity.ed25519_public)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.identity.ed25519_public)

    async def set_setting(self, key: str, value: Any) -> None:
        if key not in DEFAULT_SETTINGS and key != SETTING_NAME:
            raise ServiceError(f"unknown setting {key!r}")
        if key == SETTING_NAME:
            value = safe_name(str(value))
            if not value or len(value) > wire.MAX_NAME_CHARS:
                raise ServiceError(f"a display name needs 1 to {wire.MAX_NAME_CHARS} characters")
        if key in (SETTING_VISIBLE, SETTING_TOR, SETTING_TOR_ONLY) and not isinstance(value, bool):
            raise ServiceError(f"{key} is true or false")
        await self.db.run(self.repo.set_setting, key, value)
        if key == SETTING_NAME:
            self.display_name = value
            for conn in self.links.live_connections():
                conn.send(wire.ProfileUpdate(value))
        else:
            self.settings[key] = value
        if key in (SETTING_NAME, SETTING_VISIBLE):
            self.lan.set_visible()
        if key == SETTING_TOR and self.config.tor is None and self.config.network:
            await self._switch_tor(bool(value))

    async def _emit_contact_changed(self, contact_id: str) -> None:
        record = await self.db.run(self.repo.contact, contact_id)
        if record is not None:
            self._emit(ContactChanged(record))

    def _hello(self) -> wire.Hello:
        return wire.Hello(
            ed25519_public=self.identity.ed25519_public,
            static_certificate=self.identity.static_certificate,
            display_name=self.display_name,
            # No port when announcing other addresses: a contact would pair it with the
            # address it sees us at, and reach the listener around what we announce.
            listen_port=0
            if self.tor_only or self.config.advertise is not None
            else self.listen_port or 0,
            addresses=tuple(str(a) for a in self.addresses()[: wire.MAX_ADDRESSES]),
        )

    def listening_on(self) -> list[tuple[str, int]]:
        """Every (host, port) a listening socket of ours is bound to; empty when offline."""
        return self.links.listening_on()

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
        if self.config.advertise is not None:
            return list(dict.fromkeys(parse_address(a) for a in self.config.advertise))
        port = self.listen_port or 0
        found: list[Address] = []
        for text in self.config.extra_addresses:
            found.append(parse_address(text))
        if self.config.listen_host not in ("", "0.0.0.0", "::"):  # noqa: S104
            found.append(Address(self.config.listen_host, port))
        elif port:
            found += interface_addresses(port)
        return list(dict.fromkeys(found))

    # -- contacts -------------------------------------------------------------------------

    async def contacts(self) -> list[ContactRecord]:
        return await self.db.run(self.repo.contacts)

    async def display_names(self) -> dict[str, str]:
        """Names by id for what the CLI prints: contacts, group-only members and groups."""
        names: dict[str, str] = {}
        for group in await self.groups.groups():
            names[group.id] = group.name
            names.update((m.contact_id, m.name) for m in group.members)
        names.update((c.id, c.display_name) for c in await self.contacts())
        return names

    async def resolve_contact(self, query: str) -> ContactRecord:
        found = await self.db.run(self.repo.find_contacts, query)
        if not found:
            raise ContactNotFound(f"no contact named {query!r} or with an id starting so")
        if len(found) > 1:
            names = ", ".join(f"{c.display_name} ({c.id[:8]})" for c in found)
            raise ContactNotFound(f"{query!r} matches several contacts: {names}; use an id prefix")
        return found[0]

    def is_online(self, contact_id: str) -> bool:
        return self.links.is_online(contact_id)

    def poke(self, contact_id: str) -> None:
        """Try to reach a contact now rather than at the next backoff tick."""
        self.links.poke(contact_id)

    @property
    def own_discovery_key(self) -> bytes:
        """Our current LAN advertising key (contacts recognise our mDNS token with it)."""
        return self.lan.own_discovery_key

    def discovery_keys(self) -> dict[str, bytes]:
        """The advertising key of every contact we know one for (contact id -> key)."""
        return self.lan.discovery_keys()

    def safety_number(self, contact: ContactRecord) -> str:
        return safety_number(self.identity.ed25519_public, contact.ed25519_public)

    async def set_verified(self, contact_id: str, verified: bool = True) -> None:
        """Mark a contact (un)verified. Verifying also answers a changed safety number:
        the hold is lifted (messages waiting for the contact it replaces stay there)."""
        await self.db.run(self.repo.set_verified, contact_id, verified)
        if verified:
            self.contact_keys.hold(contact_id, False)
        await self._emit_contact_changed(contact_id)

    async def waiting_for_replaced(self, contact_id: str) -> int:
        """How many of our texts wait for the earlier contact this one replaces (what
        accept_new_key(send_queued=True) would move); 0 when it replaces none."""
        record = await self.db.run(self.repo.contact, contact_id)
        if record is None or record.replaces is None:
            return 0
        return await self.db.run(self.repo.waiting_texts, record.replaces)

    async def accept_new_key(self, contact_id: str, *, send_queued: bool = False) -> ContactRecord:
        """The user accepts a contact's changed safety number without verifying it: from now
        on messages are sent to it. With `send_queued`, our messages still waiting for the
        earlier contact it replaces (texts; file offers stay) are moved to it and sent;
        without, they stay queued for the earlier contact. Only what the user chooses goes."""
        record = await self.db.run(self.repo.contact, contact_id)
        if record is None:
            raise ContactNotFound(f"no contact {contact_id}")
        if not self.contact_keys.is_held(contact_id):
            raise ServiceError(f"{record.display_name}'s safety number has not changed")
        moved = await self.db.run(self.repo.accept_new_key, contact_id, move_queued=send_queued)
        self.contact_keys.hold(contact_id, False)
        await self._emit_contact_changed(contact_id)
        if moved and record.replaces is not None:
            await self._emit_contact_changed(record.replaces)  # its outbox count changed
            conn = self.links.ready(contact_id)
            if conn is not None:
                self._tasks.spawn(
                    self.chat.flush_outbox(contact_id, conn), f"chinwag-flush-{contact_id[:8]}"
                )
            else:
                self.links.poke(contact_id)
        updated = await self.db.run(self.repo.contact, contact_id)
        assert updated is not None
        return updated

    # -- invites --------------------------------------------------------------------------

    async def create_invite(
        self, *, ttl: int = 24 * 3600, addresses: Sequence[str] = ()
    ) -> tuple[str, Invite]:
        return await self.invites.create_invite(ttl=ttl, addresses=addresses)

    async def accept_invite(self, code: str, *, verified: bool = False) -> ContactRecord:
        """Contact the inviter, run the XXpsk3 handshake, and store each other as contacts."""
        return await self.invites.accept_invite(code, verified=verified)

    async def _contact_added(self, new: NewContact) -> ContactRecord:
        self.contact_keys.remember(
            ContactKeys(new.id, new.ed25519_public, new.x25519_public, new.psk)
        )
        record = await self.db.run(self.repo.contact, new.id)
        assert record is not None
        if record.key_changed:
            self.contact_keys.hold(record.id)
            log.warning(
                "%s (%s) uses the name of contact %s with another identity key: held until "
                "the user verifies or accepts its safety number",
                record.display_name,
                record.id[:8],
                (record.replaces or "?")[:8],
            )
        self._emit(ContactAdded(record))
        if record.key_changed:
            self._emit(SafetyNumberChanged(record))
        return record

    # -- sessions established (a LinkHooks hook: net/established.py) ----------------------

    def _adopted(self, conn: Connection, contact_id: str) -> None:
        """A contact's session went live: resend its outbox, and tell the workers."""
        self._tasks.spawn(
            self.chat.flush_outbox(contact_id, conn), f"chinwag-flush-{contact_id[:8]}"
        )
        self._announce_reach(conn)
        self.lan.adopted(conn)
        self.groups.on_adopted(conn, contact_id)
        self.files.contact_online(contact_id)

    # -- LAN discovery (net/presence.py) and nearby pairing (nearby.py) --------------------

    async def _port_for_new_network(self) -> int:
        """Move the listener to a fresh port when the network changes (a stranger could
        link our announcements on two networks by the port), unless the user chose the
        port or an open invite names the current one. Live sessions are not affected."""
        current = self.listen_port or 0
        if self._closing or self.links.listener is None or self.config.listen_port is not None:
            return current
        if await self.db.run(self._port_to_reuse, self._clock()):
            return current
        try:
            fresh = await self.links.move_listener(self.config.listen_host)
        except OSError as exc:
            log.warning("could not move to a new port (%s); keeping %s", exc, current)
            return current
        self.listen_port = fresh.port
        await self.db.run(self.repo.set_setting, SETTING_PORT, self.listen_port)
        log.info("new network: listening on port %s now", self.listen_port)
        return self.listen_port

    # Public: Nearby, pairing, removal.

    @property
    def visible(self) -> bool:
        return bool(self.settings[SETTING_VISIBLE])

    def nearby(self) -> list[NearbyPerson]:
        """Visible people on this network who are not contacts (empty unless we are visible)."""
        return self.lan.nearby()

    async def pair_nearby(self, nearby_id: str) -> PairingRequested:
        """Start pairing with someone in the Nearby list; returns once both screens show the
        digits. Then `answer_pairing(id, True)` once the user compared them."""
        if not self.lan.running:
            raise ServiceError("LAN discovery is not running")
        if not self.settings[SETTING_VISIBLE]:
            raise ServiceError("switch on `visible` first: only visible people can pair")
        found = self.lan.find_nearby(nearby_id)
        if found is None:
            raise ServiceError(f"nobody nearby with id {nearby_id!r}; look again with `nearby`")
        try:
            pairing = await self._pairing.start(list(found.addresses))
        except PairingError as exc:
            raise ServiceError(str(exc)) from None
        return PairingRequested(pairing.id, pairing.peer_name, pairing.sas, pairing.incoming)

    def pairings(self) -> list[dict[str, object]]:
        return [p.summary() for p in self._pairing.pending()]

    async def answer_pairing(
        self, pairing_id: str, accept: bool, *, wait: bool = True
    ) -> ContactRecord | None:
        """Our user compared the six digits: confirm or decline a pending pairing. With
        `wait`, a confirmation returns the new contact once the other side confirmed too."""
        try:
            return await self._pairing.answer(pairing_id, accept, wait=wait)
        except PairingError as exc:
            raise ServiceError(str(exc)) from None

    async def remove_contact(self, contact_id: str) -> None:
        """Forget a contact and its conversation; then rotate our LAN advertising key, so
        it can no longer recognise us on a LAN (the others learn the new key)."""
        if self.contact_keys.forget(contact_id) is None:
            raise ContactNotFound(f"no contact {contact_id}")
        self.links.forget(contact_id)
        await self.db.run(self.repo.delete_contact, contact_id)
        self.lan.forget_contact(contact_id)
        await self.rotate_discovery_key()
        self._emit(ContactRemoved(contact_id))

    async def rotate_discovery_key(self) -> None:
        """A fresh advertising key: announced from the next record update on, sent to every
        contact online now and to the others when they next connect."""
        await self.lan.rotate_key()

    def lan_status(self) -> dict[str, Any]:
        status = self.lan.status()
        status["pairings"] = len(self._pairing.pending())
        return status

    # -- messaging (chat.py) ----------------------------------------------------------------

    async def send_text(self, contact_id: str, body: str) -> MessageRecord:
        """Store a message in the outbox (durably) and send it if the contact is online."""
        return await self.chat.send_text(contact_id, body)

    async def history(
        self,
        contact_id: str,
        *,
        limit: int = 50,
        before: tuple[int, bytes] | None = None,
        after: tuple[int, bytes] | None = None,
    ) -> list[MessageRecord]:
        """A page of a conversation, oldest first (see Repository.history)."""
        return await self.chat.history(contact_id, limit=limit, before=before, after=after)

    async def conversations(self) -> list[ConversationSummary]:
        """Every contact with its newest message and unread count, most recent first."""
        return await self.chat.conversations()

    async def search(
        self,
        text: str,
        *,
        contact_id: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> list[MessageRecord]:
        """Full-text search of every conversation, or of one; newest first, and with
        `before` (the last result's row_id) the next page (see Repository.search)."""
        return await self.chat.search(text, contact_id=contact_id, limit=limit, before=before)

    async def mark_read(self, contact_id: str) -> int:
        return await self.chat.mark_read(contact_id)

    def set_typing(self, contact_id: str, active: bool) -> None:
        self.chat.set_typing(contact_id, active)

    async def unread_counts(self) -> dict[str, int]:
        return await self.chat.unread_counts()

    async def outbox_counts(self) -> dict[str, int]:
        return await self.chat.outbox_counts()

    async def _on_message(self, conn: Connection, message: wire.WireMessage) -> None:
        contact_id = conn.contact_id
        if contact_id is None:
            return
        if await self.groups.on_message(conn, message):
            return
        if self.chat.on_message(contact_id, conn, message):
            return
        match message:
            case wire.Ping(nonce=nonce):
                conn.send(wire.Pong(nonce))
            case wire.ProfileUpdate(display_name=display_name):
                name = safe_name(display_name)
                await self.db.run(self.repo.set_display_name, contact_id, name)
                await self._emit_contact_changed(contact_id)
            case wire.DiscoveryKey(key=key):
                await self.lan.store_key(contact_id, key)
            case wire.ReachUpdate(addresses=addresses):
                await self._store_reach(contact_id, addresses)
            case wire.FileOffer() | wire.FileRequest() | wire.FileControl() | wire.FileHave():
                await self.files.on_message(contact_id, conn, message)

    # -- a full disk ----------------------------------------------------------------------

    def _not_stored(self, exc: DiskFull, contact_ids: set[str]) -> None:
        """Arrivals from these contacts could not be stored: resent once there is room."""
        self._unstored.update(contact_ids)
        self._note_disk_full(exc)

    def _note_disk_full(self, exc: DiskFull) -> None:
        """A write failed for lack of space: tell the user once, and watch for room."""
        if self._disk_full:
            log.debug("still full: %s", exc)
            return
        log.warning("%s", exc)
        if self._closing:
            return
        self._disk_full = True
        self._free_when_full = shutil.disk_usage(self.profile.path).free
        self._emit(DiskSpace(full=True, message=str(exc)))
        self._tasks.spawn(self._await_space(), "chinwag-disk-watch")

    async def _await_space(self) -> None:
        """Poll the free space while the disk is full (there is no portable "space freed"
        notification); a cheap statvfs, no write, every DISK_POLL_INTERVAL seconds."""
        while self._disk_full:
            usage = await asyncio.to_thread(shutil.disk_usage, self.profile.path)
            if usage.free >= self._free_when_full + DISK_ROOM_NEEDED:
                self._space_back()
                return
            await asyncio.sleep(DISK_POLL_INTERVAL)

    def _space_back(self) -> None:
        """Room again: close the sessions whose messages were not stored, so each sender
        resends its outbox on the new session (stored once: dedupe by id, protocol.md
        9.3); the dialers redial at once. If the disk fills again, we come back here."""
        if not self._disk_full:
            return
        self._disk_full = False
        unstored, self._unstored = self._unstored, set()
        for contact_id in unstored:
            conn = self.links.connection(contact_id)
            if conn is not None and not conn.closed.is_set():
                conn.close("messages were not stored (disk full); send them again")
            else:
                self.links.poke(contact_id)
        self.chat.index_soon()
        self._emit(DiskSpace(full=False, message="there is room on the disk again"))

    async def change_passphrase(
        self, new_passphrase: str | None, *, kdf: KdfParams | None = None
    ) -> list[str]:
        """Re-encrypt the database under a new passphrase (or a keyring key if None)."""
        key, meta, warnings = await asyncio.to_thread(
            self.profile.new_key_material, new_passphrase, kdf=kdf
        )
        await self.db.run(self.repo.rekey, key)
        await asyncio.to_thread(self.profile.commit_key_material, meta)
        return warnings


class _TorTunnel:
    """The files worker's Tunnel port: Tor's, while Tor is on (it can be switched)."""

    def __init__(self, service: PeerService) -> None:
        self._service = service

    def wanted(self, contact_id: str, conn: Connection) -> bool:
        tor = self._service.tor
        return tor is not None and tor.wanted(contact_id, conn)

    async def open(self, contact_id: str) -> socket.socket:
        tor = self._service.tor
        if tor is None:
            raise ConnectionError("Tor is off")
        return await tor.open(contact_id)


class _Wiring:
    """The service's side of the workers' ports it does not hand over directly: the
    LinkHooks of the links worker, the dialers' address lookups.
    (Same module as PeerService: it may use the service's private parts.)"""

    def __init__(self, service: PeerService) -> None:
        self._service = service

    # LinkHooks
    async def established(self, links: Links, conn: Connection, event: Established) -> None:
        await self._service.sessions.on_established(conn, event)

    async def received(self, conn: Connection, message: wire.WireMessage) -> None:
        await self._service._on_message(conn, message)

    async def nearby(self, conn: Connection, event: SessionEvent) -> None:
        await self._service._pairing.on_event(conn, event)

    def adopted(self, conn: Connection, contact_id: str) -> None:
        self._service._adopted(conn, contact_id)

    def suspect(self, conn: Connection) -> None:
        self._service.lan.probe(conn)

    async def peek_inbound(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        settled: Callable[[], None],
    ) -> bytes | None:
        return await self._service.files.peek_inbound(reader, writer, settled)

    def nearby_offered(self) -> bool:
        return self._service.lan.nearby_offered()

    def invite(self, invite_id: bytes) -> InviteRecord | None:
        return self._service._invites.get(invite_id)

    # groups -> files
    async def group_offers(self, messages: list[StoredGroupMessage]) -> None:
        await self._service.files.on_group_offers(messages)

    # dialers: where the LAN saw the contact, then where it was last reached
    async def lan_addresses(self, contact_id: str) -> list[str]:
        return self._service.lan.contact_addresses(contact_id)

    async def stored_addresses(self, contact_id: str) -> list[str]:
        service = self._service
        contact = await service.db.run(service.repo.contact, contact_id)
        return list(contact.addresses) if contact is not None else []

    async def direct_addresses(self, contact_id: str) -> list[str]:
        """The stored addresses plain TCP can reach (the onion dialer takes the rest)."""
        return [a for a in await self.stored_addresses(contact_id) if not is_onion_address(a)]

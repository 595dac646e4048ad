"""PeerService: the one object front ends open. It opens (or creates) the profile, builds
the workers and wires each only to the ports it uses (core/ports.py), routes what arrives
on a session to the worker it is for, emits service events to subscribers, and closes it
all in order.

Front ends use the workers it exposes: `.chat` (chat.py), `.contacts` (contacts.py),
`.invites` (invites.py), `.groups` (groups/), `.files` (files/), `.lan` (net/presence.py),
`.pairing` (nearby.py) and `.reach` (net/reachability.py). All database work runs on one
dedicated thread (`self.db`, core/runtime.py), so the event loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .chat import Chat
from .config import ServiceConfig
from .contacts import ContactBook, Contacts
from .core.disk import DiskWatch
from .core.runtime import DbThread, TaskOwner
from .core.settings import (
    BLOB_IDENTITY,
    DEFAULT_SETTINGS,
    SETTING_NAME,
    SETTING_TOR,
    SETTING_TOR_ONLY,
    SETTING_VISIBLE,
)
from .core.text import safe_name
from .errors import ProfileError, ServiceError
from .events import ServiceEvent
from .files.manager import FileManager
from .groups import GroupManager
from .identity import Identity, fingerprint
from .identity import contact_id as make_contact_id
from .invites import Invites
from .nearby import PairingManager
from .net.established import EstablishedSessions
from .net.links import Links
from .net.presence import LanPresence
from .net.reach import TorReach
from .net.reachability import Reachability
from .net.transport import Connection
from .profile import KdfParams, ProfileDir, ProfileLock
from .protocol import wire
from .protocol.invite import Address
from .protocol.session import Established, SessionEvent
from .records import InviteRecord
from .storage.database import open_database
from .storage.group_rows import StoredGroupMessage
from .storage.repository import Repository

__all__ = ["PeerService", "ServiceConfig"]

log = logging.getLogger(__name__)


class PeerService:
    """Create with `await PeerService.open(...)`, or `create_profile` for a new one."""

    def __init__(  # noqa: PLR0913  (the parts open() made, and what tests control)
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
        self._tasks = TaskOwner()
        self._subscribers: tuple[Callable[[ServiceEvent], None], ...] = ()
        self._invites: dict[bytes, InviteRecord] = {}
        self._closing = False
        self._build_workers()

    def _build_workers(self) -> None:
        """Build each worker and wire it to the ports it uses, nothing more."""
        wiring = _Wiring(self)
        self.contact_keys = ContactBook(self.identity.ed25519_public)
        self.links = Links(
            identity=self.identity,
            contacts=self.contact_keys,
            hooks=wiring,
            hello=lambda: self.reach.hello(),
            emit=self._emit,
            tasks=self._tasks,
            clock=self._clock,
            rng=self._rng,
            timing=self.config.timing,
            dial_base=self.config.dial_base,
            dial_cap=self.config.dial_cap,
            tor_timing=self.config.tor_timing,
            direct_retry=self.config.direct_retry,
        )
        self.reach = Reachability(  # our addresses, the listener's port, Tor on or off
            config=self.config,
            folder=self.profile.path,
            identity=self.identity,
            display_name=lambda: self.display_name,
            db=self.db,
            repo=self.repo,
            emit=self._emit,
            tasks=self._tasks,
            clock=self._clock,
            links=self.links,
            contacts=self.contact_keys,
            settings=self.settings,
            lan_wanted=lambda: self.lan.wanted(),
            closing=lambda: self._closing,
            contact_changed=lambda contact_id: self.contacts.changed(contact_id),
        )
        # Ahead of Tor's onion dialer, which the reach worker added when Tor is on.
        self.links.dialers[:0] = self.reach.dialers(wiring.lan_addresses)
        self.disk = DiskWatch(  # a full disk: tell the user, resend once there is room
            folder=self.profile.path,
            emit=self._emit,
            tasks=self._tasks,
            links=self.links,
            index_soon=lambda: self.chat.index_soon(),
            closing=lambda: self._closing,
        )
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
            new_port=self.reach.port_for_new_network,
            enabled=self.config.discovery,
            listen_host=self.config.listen_host,
            epoch_seconds=self.config.discovery_epoch,
            lan_timing=self.config.lan_timing,
        )
        self.contacts = Contacts(  # the contact list, safety numbers, removal
            own_ed25519=self.identity.ed25519_public,
            db=self.db,
            repo=self.repo,
            emit=self._emit,
            keyring=self.contact_keys,
            links=self.links,
            lan=self.lan,
            groups=lambda: self.groups.groups(),
            send_waiting=lambda contact_id: self.chat.send_waiting(contact_id),
        )
        self.sessions = EstablishedSessions(
            me=self,
            db=self.db,
            repo=self.repo,
            links=self.links,
            contacts=self.contact_keys,
            invites=self._invites,
            contact_added=self.contacts.added,
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
            tor=lambda: self.reach.tor,
            tor_only=lambda: self.reach.tor_only,
            peer_addresses=self.sessions.peer_addresses,
            contact_added=self.contacts.added,
        )
        self.pairing = PairingManager(  # nearby pairing (nearby.py)
            me=self,
            links=self.links,
            contacts=self.contact_keys,
            db=self.db,
            repo=self.repo,
            emit=self._emit,
            clock=self._clock,
            contact_added=self.contacts.added,
            nearby_offered=self.lan.nearby_offered,
            lan=self.lan,
            visible=lambda: self.visible,
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
            remove_contact=self.contacts.remove,
            on_offers=wiring.group_offers,
            batch_max=self.config.batch_max,
            not_stored=self.disk.not_stored,
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
            tunnel=self.reach.tunnel,  # bulk connections go through Tor when the session does
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
            not_stored=self.disk.not_stored,
            note_disk_full=self.disk.note_full,
            space_back=self.disk.space_back,
            batch_max=self.config.batch_max,
        )

    # -- construction ---------------------------------------------------------------------

    @classmethod
    async def create_profile(  # noqa: PLR0913  (keyword-only options)
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
    async def open(  # noqa: PLR0913  (keyword-only options)
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
        await self.contacts.load()
        for inv in await self.db.run(self.repo.invites):
            self._invites[inv.id] = inv
        await self.lan.load()
        self.chat.start()
        await self.groups.load()
        await self.files.load()
        await self.reach.load()

    async def _start_network(self) -> None:
        port = await self.reach.listen()
        for contact_id in self.contact_keys:
            self.links.ensure_dialer(contact_id)
        await self.reach.start_tor()
        if await self.lan.start(port):
            self.groups.announce()

    async def aclose(self) -> None:
        """Close every connection with a goodbye, stop all tasks, close the database."""
        if self._closing:
            return
        self._closing = True
        self.lan.begin_close()
        self.links.begin_close()
        self.pairing.close()
        await self.files.aclose()
        await self.links.close_connections()
        await self.lan.aclose()  # goodbye packets
        tasks = [*self._tasks.cancel_all(), *self.links.cancel_dialers()]
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.chat.aclose()
        await self.groups.aclose()
        await self.links.wait_closed()
        await self.reach.aclose()
        await self.db.run(self.repo.close)
        self.db.shutdown()
        self._lock.release()

    async def __aenter__(self) -> PeerService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- events ---------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[ServiceEvent], None]) -> Callable[[], None]:
        # A new tuple on each change, so an event's walk needs no copy of its own (a
        # callback may unsubscribe while it runs).
        self._subscribers = (*self._subscribers, callback)
        return lambda: self._unsubscribe(callback)

    def _unsubscribe(self, callback: Callable[[ServiceEvent], None]) -> None:
        subscribers = list(self._subscribers)
        subscribers.remove(callback)
        self._subscribers = tuple(subscribers)

    def _emit(self, event: ServiceEvent) -> None:
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber failed on %r", event)

    # -- who we are (the workers' Me port), settings --------------------------------------

    @property
    def contact_id(self) -> str:
        return make_contact_id(self.identity.ed25519_public)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.identity.ed25519_public)

    @property
    def listen_port(self) -> int | None:
        return self.reach.listen_port

    @property
    def tor(self) -> TorReach | None:
        """Tor reach, while it is on (net/reach.py)."""
        return self.reach.tor

    def addresses(self) -> list[Address]:
        """Where contacts can reach us (see Reachability.addresses)."""
        return self.reach.addresses()

    @property
    def own_discovery_key(self) -> bytes:
        """Our current LAN advertising key (contacts recognise our mDNS token with it)."""
        return self.lan.own_discovery_key

    @property
    def visible(self) -> bool:
        return bool(self.settings[SETTING_VISIBLE])

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
        if key == SETTING_TOR:
            await self.reach.setting_changed(bool(value))

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

    # -- sessions (LinkHooks hooks) -------------------------------------------------------

    def _adopted(self, conn: Connection, contact_id: str) -> None:
        """A contact's session went live: resend its outbox, and tell the workers."""
        self.chat.online(contact_id, conn)
        self.reach.announce(conn)
        self.lan.adopted(conn)
        self.groups.on_adopted(conn, contact_id)
        self.files.contact_online(contact_id)

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
                await self.contacts.renamed(contact_id, display_name)
            case wire.DiscoveryKey(key=key):
                await self.lan.store_key(contact_id, key)
            case wire.ReachUpdate(addresses=addresses):
                await self.reach.on_reach_update(contact_id, addresses)
            case wire.FileOffer() | wire.FileRequest() | wire.FileControl() | wire.FileHave():
                await self.files.on_message(contact_id, conn, message)


# What a contact's session hands to the chat worker in the read callback itself (the
# send -> delivered path); everything else goes through `_on_message`.
_CHAT_NOW = (wire.ChatMessage, wire.Receipt, wire.Typing)
# And to the groups worker: a live group message (stored and acknowledged there, when the
# database is free) and a member's ack of ours (the group send -> delivered path).
_GROUPS_NOW = (wire.GroupMessage, wire.GroupAck)


class _Wiring:
    """The service's side of the workers' ports it does not hand over directly: the
    LinkHooks of the links worker, the LAN dialer's address lookup.
    (Same module as PeerService: it may use the service's private parts.)"""

    def __init__(self, service: PeerService) -> None:
        self._service = service

    # LinkHooks
    async def established(self, links: Links, conn: Connection, event: Established) -> None:
        await self._service.sessions.on_established(conn, event)

    async def received(self, conn: Connection, message: wire.WireMessage) -> None:
        await self._service._on_message(conn, message)

    def received_now(self, conn: Connection, message: wire.WireMessage) -> bool:
        """`_on_message` for the messages that need no await (the same order of checks:
        a group-only peer's chat message is the groups worker's to drop)."""
        contact_id = conn.contact_id
        if contact_id is None:
            return False
        service = self._service
        if isinstance(message, _GROUPS_NOW):
            return service.groups.received_now(conn, message)
        if not isinstance(message, _CHAT_NOW):
            return False
        if isinstance(message, wire.ChatMessage) and service.groups.is_group_only(contact_id):
            return True
        return service.chat.on_message(contact_id, conn, message)

    def delivered(self, conn: Connection) -> None:
        self._service.chat.arrivals_done()
        self._service.groups.arrivals_done()

    async def nearby(self, conn: Connection, event: SessionEvent) -> None:
        await self._service.pairing.on_event(conn, event)

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

    # the first dialer's lookup: where the LAN saw the contact (the reach worker's dialers
    # take the stored addresses next)
    async def lan_addresses(self, contact_id: str) -> list[str]:
        return self._service.lan.contact_addresses(contact_id)

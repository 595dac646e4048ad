"""PeerService: the one object front ends use. It owns storage, the listener, dialers and
every connection, routes session events, and emits service events.

All database work runs on one dedicated thread (`_db`), so the event loop never waits on
disk; arriving messages and our own sends are written in batches (group commit).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import ipaddress
import logging
import random
import threading
import time
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import nacl.encoding
import nacl.hash
import nacl.utils

from . import wire
from .discovery import Discovery, DiscoverySettings, host_of
from .events import (
    ContactAdded,
    ContactChanged,
    ContactRemoved,
    MessageAdded,
    MessageStatesChanged,
    NearbyChanged,
    PairingRequested,
    PresenceChanged,
    ServiceEvent,
    TypingChanged,
)
from .files.manager import FileManager
from .groups import GroupManager
from .identity import (
    Identity,
    derive_contact_secrets,
    fingerprint,
    safety_number,
)
from .identity import (
    contact_id as make_contact_id,
)
from .invite import (
    Address,
    Invite,
    InviteError,
    create_invite,
    decode_invite,
    encode_invite,
    interface_addresses,
)
from .nearby import PairingError, PairingManager
from .noise import KeyPair
from .profile import KdfParams, ProfileDir, ProfileError, ProfileLock
from .records import ContactRecord, InviteRecord, MessageRecord, MessageState, NearbyPerson
from .session import (
    Closed,
    ContactMatch,
    ContactTarget,
    Established,
    InviteTarget,
    Received,
    Rejected,
    Session,
    SessionEvent,
)
from .storage.database import open_database
from .storage.repository import (
    ContactExists,
    ContactKeys,
    InviteUnusable,
    NewContact,
    Repository,
)
from .transport import Backoff, Connection, Listener, Timing, bound_port, dial, serve

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

SETTING_NAME = "display_name"
SETTING_PORT = "listen_port"
SETTING_READ_RECEIPTS = "read_receipts"
SETTING_TYPING = "typing_notifications"
BLOB_IDENTITY = "identity"
# Our LAN advertising key: contacts recognise our mDNS token with it (discovery.py).
BLOB_DISCOVERY_KEY = "discovery_key"
SETTING_VISIBLE = "visible"

SETTING_NOTIFICATIONS = "notifications"
SETTING_PREVIEWS = "notification_previews"
SETTING_THEME = "theme"

DEFAULT_SETTINGS: dict[str, Any] = {
    # Read receipts tell a contact exactly when you read; off unless the user opts in.
    SETTING_READ_RECEIPTS: False,
    SETTING_TYPING: True,
    SETTING_NOTIFICATIONS: True,
    SETTING_PREVIEWS: True,
    SETTING_THEME: "system",  # "system", "light" or "dark"
    # "Visible on this network": announce the display name on the LAN, see the Nearby list,
    # accept nearby pairing requests. Off unless the user opts in.
    SETTING_VISIBLE: False,
}

# Keepalive on sessions with a peer on the local link: a vanished host (link down, unplugged)
# is marked offline within dead_after + keepalive_interval seconds instead of ~60.
LAN_TIMING = Timing(keepalive_interval=2.0, dead_after=6.0)
# A live session with a contact that left the LAN (goodbye, TTL expiry, new address) is
# pinged; without an answer within this many seconds it is closed (and redialled).
LAN_PROBE_TIMEOUT = 2.0
# At most one discovery-triggered dial per contact per this many seconds.
LAN_DIAL_INTERVAL = 1.0
# When two contacts see each other appear at once, the one with the smaller identity key
# dials at once and the other waits this long first (and then only if still apart), so
# they rarely dial each other simultaneously (which resolves, but flaps presence).
LAN_YIELD = 1.0
# A contact with no address at all (none stored, not seen on the LAN) is retried this
# rarely: discovery (or a message to send) pokes its dial loop when there is one.
ADDRESSLESS_RETRY = 300.0


# Unauthenticated inbound connections allowed at once; more are closed at once.
MAX_PENDING_HANDSHAKES = 64
# A Lamport time or sequence number this large can only come from a hostile peer (and
# would overflow SQLite's 64-bit integers one increment later).
MAX_COUNTER = 1 << 62

# Hot-path writes of at most this many messages, and this many characters of text, may
# run on the loop thread (_db_write): a few hundred microseconds of blocking at most.
INLINE_WRITE_MAX = 16
INLINE_WRITE_MAX_CHARS = 16 * 1024
# Recording DELIVERED/READ states waits this long to gather receipts into one commit: it
# is bookkeeping after the fact (the event is emitted at once), kept off the path of the
# next message.
RECEIPT_COMMIT_DELAY = 0.05

# An outbox resend waits for the socket's buffer after this many messages.
OUTBOX_DRAIN_EVERY = 256

# Seconds after a write before its messages are added to the search index.
SEARCH_INDEX_DELAY = 0.5

# Connections adopted within this many seconds of each other count as simultaneous dials.
SIMULTANEOUS_WINDOW = 5.0

REJECTION_MESSAGES = {
    wire.RejectCode.INVITE_USED: "this invite has already been used; ask for a new one",
    wire.RejectCode.INVITE_EXPIRED: "this invite has expired; ask for a new one",
    wire.RejectCode.BUSY: "the inviter is busy; try again in a moment",
    wire.RejectCode.VERSION: "the inviter runs an incompatible Chinwag version",
}


class ServiceError(Exception):
    """A request the service cannot carry out; the message is for the user."""


class MessageTooLong(ServiceError):
    pass


class ContactNotFound(ServiceError):
    pass


class InviteFailed(ServiceError):
    pass


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


class GroupCommitter(Generic[T, R]):
    """Collects items submitted concurrently and writes them in one batch (group commit).

    `submit` waits until its item is durably written and returns that item's result;
    `post` queues an item whose result nobody waits for.
    """

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[list[R]]],
        max_batch: int,
        name: str,
        gather_delay: float = 0.0,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._gather_delay = gather_delay  # wait this long after the first item for more
        # A deque and one Event: asyncio.Queue costs several times more per item.
        self._items: collections.deque[tuple[T, asyncio.Future[R] | None]] = collections.deque()
        self._ready = asyncio.Event()
        self._writing = False
        self._wake = asyncio.Event()  # cuts the gather delay short (settle)
        self._settlers: list[asyncio.Future[None]] = []
        self._task = asyncio.create_task(self._run(), name=name)

    def _put(self, item: T, future: asyncio.Future[R] | None) -> None:
        self._items.append((item, future))
        if not self._ready.is_set():
            self._ready.set()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._put(item, future)
        return await future

    def submit_nowait(self, item: T) -> asyncio.Future[R]:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._put(item, future)
        return future

    def post(self, item: T) -> None:
        self._put(item, None)

    async def _run(self) -> None:
        items = self._items
        while True:
            if not items:
                self._release_settlers()
                self._ready.clear()
                await self._ready.wait()
            if self._gather_delay and not self._settlers:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._gather_delay):
                        await self._wake.wait()
            self._wake.clear()
            batch = [items.popleft() for _ in range(min(len(items), self._max_batch))]
            settlers, self._settlers = self._settlers, []
            await self._write_batch(batch)
            for settler in settlers:
                if not settler.done():
                    settler.set_result(None)

    async def settle(self) -> None:
        """Write what was submitted so far without waiting out the gather delay, and
        return once it is written (reads see what the events already told)."""
        if not self._items and not self._writing:
            return
        settler: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._settlers.append(settler)
        self._wake.set()
        await settler

    def _release_settlers(self) -> None:
        settlers, self._settlers = self._settlers, []
        for settler in settlers:
            if not settler.done():
                settler.set_result(None)

    async def _write_batch(self, batch: list[tuple[T, asyncio.Future[R] | None]]) -> None:
        self._writing = True
        try:
            results = await self._write([item for item, _ in batch])
        except Exception as exc:
            log.exception("batch write failed")
            for _, future in batch:
                if future is not None and not future.done():
                    future.set_exception(exc)
            return
        finally:
            self._writing = False
        for (_, future), result in zip(batch, results, strict=True):
            if future is not None and not future.done():
                future.set_result(result)

    async def aclose(self, *, flush: bool = False) -> None:
        """Stop. With `flush`, items not yet being written are written first (receipts:
        their batch may be waiting out the gather delay); else they fail."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        left = list(self._items)
        self._items.clear()
        if flush and left:
            await self._write_batch(left)
        for _, future in left:
            if future is None:
                continue
            if not future.done():
                future.set_exception(ServiceError("the service is shutting down"))
            if not future.cancelled():
                future.exception()  # retrieved: nobody awaits a submit_nowait future
        self._release_settlers()


_ReceiptUpdate = tuple[str, tuple[bytes, ...], MessageState]


@dataclass(slots=True)
class _Arrival:
    contact_id: str
    message: wire.ChatMessage
    connection: Connection


def check_text(body: str) -> None:
    """The rules every text message obeys, 1:1 or group: within the size limit, not blank."""
    size = len(body.encode("utf-8"))
    if size > wire.MAX_BODY_BYTES:
        raise MessageTooLong(
            f"message is {size} bytes; the limit is {wire.MAX_BODY_BYTES} bytes of text"
        )
    if not body.strip():
        raise ServiceError("an empty message is not sent")


def safe_name(name: str) -> str:
    """A peer-chosen name made safe to show: no control or bidi-override characters."""
    cleaned = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    return " ".join(cleaned.split())[: wire.MAX_NAME_CHARS]


def conversation_id(a: bytes, b: bytes) -> bytes:
    low, high = sorted((a, b))
    return nacl.hash.blake2b(
        low + high, digest_size=16, person=b"chinwag-conv-1:1", encoder=nacl.encoding.RawEncoder
    )


class PeerService:
    """Create with `await PeerService.open(...)`, or `create_profile` for a new one."""

    def __init__(
        self,
        profile: ProfileDir,
        repo: Repository,
        executor: ThreadPoolExecutor,
        lock: ProfileLock,
        config: ServiceConfig,
        *,
        clock: Callable[[], float],
        rng: random.Random,
    ) -> None:
        self.profile = profile
        self.repo = repo
        self.config = config
        self._executor = executor
        self._lock = lock
        self._clock = clock
        self._rng = rng
        self.identity: Identity
        self.display_name: str = ""
        self.settings: dict[str, Any] = dict(DEFAULT_SETTINGS)
        self.listen_port: int | None = None
        self._server: Listener | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subscribers: list[Callable[[ServiceEvent], None]] = []
        self._contact_keys: dict[str, ContactKeys] = {}
        self._by_static: dict[bytes, str] = {}
        self._by_ed25519: dict[bytes, str] = {}
        self._live: dict[str, Connection] = {}
        self._connections: set[Connection] = set()
        self._dialers: dict[str, asyncio.Task[None]] = {}
        self._dial_wakeup: dict[str, asyncio.Event] = {}
        self._invites: dict[bytes, InviteRecord] = {}
        self._conversations: dict[bytes, bytes] = {}
        self._send_locks: dict[str, asyncio.Lock] = {}
        self._closing = False
        self._db_jobs = 0  # database jobs handed to the thread and not yet finished
        self._db_jobs_lock = threading.Lock()
        self._index_wanted = asyncio.Event()
        self._incoming: GroupCommitter[_Arrival, bool] | None = None
        self._outgoing: GroupCommitter[tuple[str, str], MessageRecord] | None = None
        self._receipts: GroupCommitter[_ReceiptUpdate, None] | None = None
        self._discovery: Discovery | None = None
        self._own_discovery_key = b""
        self._discovery_keys: dict[str, bytes] = {}  # contact id -> its advertising key
        self._lan_last_dial: dict[str, float] = {}
        self._lan_dial_later: dict[str, asyncio.TimerHandle] = {}
        self._lan_probing: set[Connection] = set()
        self._addressless: set[str] = set()  # contacts _dial_once found no address for
        self._pairing = PairingManager(self)
        self.groups = GroupManager(self)  # LAN group chat (groups.py)
        self.files = FileManager(self)  # file transfer (files/manager.py)

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
    ) -> tuple[PeerService, list[str]]:
        name = display_name.strip()
        if not name or len(name) > wire.MAX_NAME_CHARS:
            raise ServiceError(f"a display name needs 1 to {wire.MAX_NAME_CHARS} characters")
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
        key = await asyncio.to_thread(profile.database_key, passphrase)
        lock = ProfileLock(profile)
        await lock.acquire_waiting(
            purpose, lock_wait, on_wait=on_lock_wait, give_up=give_up_waiting
        )
        try:
            engine = await asyncio.to_thread(open_database, profile.db_path, key)
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
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chinwag-db")
        service = cls(
            profile,
            repo,
            executor,
            lock,
            config or ServiceConfig(),
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

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._db_jobs_lock:
            self._db_jobs += 1
        try:
            job = self._executor.submit(fn, *args, **kwargs)
        except BaseException:
            self._db_job_done(None)
            raise
        # Counted down when the job has really finished (or was cancelled before it ran),
        # not when an awaiting task is cancelled: until then the thread may be using the
        # connection, and _db_write must not run beside it.
        job.add_done_callback(self._db_job_done)
        return await asyncio.wrap_future(job)

    def _db_job_done(self, _job: object) -> None:
        with self._db_jobs_lock:
            self._db_jobs -= 1

    async def _db_write(self, bodies: Sequence[str], fn: Callable[..., T], *args: Any) -> T:
        """A hot-path write: a small one runs right here on the loop thread when the
        database thread is idle (a ~200 us commit beats two thread hand-offs, which cost
        ~150-600 us each under load); a big batch goes to the database thread so the loop
        keeps serving the network while SQLite (which drops the GIL) works. Running inline
        only when no job is queued or running keeps every write in submission order and
        the connection used by one thread at a time."""
        if (
            self._db_jobs == 0
            and len(bodies) <= INLINE_WRITE_MAX
            and sum(map(len, bodies)) <= INLINE_WRITE_MAX_CHARS
        ):
            return fn(*args)
        return await self._db(fn, *args)

    async def _load(self) -> None:
        blob = await self._db(self.repo.get_blob, BLOB_IDENTITY)
        if blob is None:
            raise ProfileError("the profile database holds no identity")
        self.identity = Identity.from_bytes(blob)
        self.display_name = await self._db(self.repo.get_setting, SETTING_NAME, "")
        for key, default in DEFAULT_SETTINGS.items():
            self.settings[key] = await self._db(self.repo.get_setting, key, default)
        for keys in await self._db(self.repo.contact_keys):
            self._remember_contact(keys)
        for inv in await self._db(self.repo.invites):
            self._invites[inv.id] = inv
        own_key = await self._db(self.repo.get_blob, BLOB_DISCOVERY_KEY)
        if own_key is None or len(own_key) != 32:
            own_key = nacl.utils.random(32)
            await self._db(self.repo.set_blob, BLOB_DISCOVERY_KEY, own_key)
        self._own_discovery_key = own_key
        self._discovery_keys = await self._db(self.repo.discovery_keys)
        self._incoming = GroupCommitter(
            self._store_arrivals, self.config.batch_max, "chinwag-incoming"
        )
        self._outgoing = GroupCommitter(
            self._queue_sends, self.config.batch_max, "chinwag-outgoing"
        )
        self._receipts = GroupCommitter(
            self._store_receipts,
            self.config.batch_max,
            "chinwag-receipts",
            gather_delay=RECEIPT_COMMIT_DELAY,
        )
        self._spawn(self._search_indexer(), "chinwag-search-indexer")
        self._index_soon()  # whatever a killed process left unindexed
        await self.groups.load()
        await self.files.load()

    def _remember_contact(self, keys: ContactKeys) -> None:
        self._contact_keys[keys.id] = keys
        self._by_static[keys.x25519_public] = keys.id
        self._by_ed25519[keys.ed25519_public] = keys.id

    async def _start_network(self) -> None:
        port = self.config.listen_port
        if port is None:
            port = await self._db(self._port_to_reuse, self._clock())
        try:
            self._server = await serve(self.config.listen_host, port or 0, self._on_inbound)
        except OSError as exc:
            if not port or self.config.listen_port is not None:
                raise ServiceError(f"cannot listen on port {port}: {exc}") from exc
            log.warning("remembered port %s is taken (%s); choosing another", port, exc)
            self._server = await serve(self.config.listen_host, 0, self._on_inbound)
        self.listen_port = bound_port(self._server)
        await self._db(self.repo.set_setting, SETTING_PORT, self.listen_port)
        log.info("listening on %s:%s", self.config.listen_host or "*", self.listen_port)
        for contact_id in list(self._contact_keys):
            self._ensure_dialer(contact_id)
        await self._start_discovery()

    def _port_to_reuse(self, now: float) -> int:
        """A fresh port at every start, so a stranger cannot link our runs by it (contacts
        find the new one over mDNS or by their own dial); the last one only while an
        invite we gave out is still open, since the invite names it (protocol.md 4.1)."""
        if not self.repo.pending_invites(now):
            return 0
        return int(self.repo.get_setting(SETTING_PORT, 0))

    async def aclose(self) -> None:
        """Close every connection with a goodbye, stop all tasks, close the database."""
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        self._pairing.close()
        await self.files.aclose()
        for handle in self._lan_dial_later.values():
            handle.cancel()
        for conn in list(self._connections):
            conn.close("shutting down")
        for conn in list(self._connections):
            with contextlib.suppress(Exception):
                await conn.drain()
        if self._discovery is not None:
            await self._discovery.aclose()  # goodbye packets
        tasks = [*self._tasks, *self._dialers.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for committer in (self._incoming, self._outgoing):
            if committer is not None:
                await committer.aclose()
        if self._receipts is not None:
            await self._receipts.aclose(flush=True)
        await self.groups.aclose()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        await self._db(self.repo.close)
        self._executor.shutdown(wait=True)
        self._lock.release()

    async def __aenter__(self) -> PeerService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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
        if key == SETTING_VISIBLE and not isinstance(value, bool):
            raise ServiceError("visible is true or false")
        await self._db(self.repo.set_setting, key, value)
        if key == SETTING_NAME:
            self.display_name = value
            for conn in list(self._live.values()):
                conn.send(wire.ProfileUpdate(value))
        else:
            self.settings[key] = value
        if key in (SETTING_NAME, SETTING_VISIBLE) and self._discovery is not None:
            visible = bool(self.settings[SETTING_VISIBLE])
            self._discovery.set_visible(self.display_name if visible else None)
            if not self.settings[SETTING_VISIBLE]:
                self._emit(NearbyChanged(()))

    async def _emit_contact_changed(self, contact_id: str) -> None:
        record = await self._db(self.repo.contact, contact_id)
        if record is not None:
            self._emit(ContactChanged(record))

    def _hello(self) -> wire.Hello:
        return wire.Hello(
            ed25519_public=self.identity.ed25519_public,
            static_certificate=self.identity.static_certificate,
            display_name=self.display_name,
            listen_port=self.listen_port or 0,
            addresses=tuple(str(a) for a in self.addresses()[: wire.MAX_ADDRESSES]),
        )

    def listening_on(self) -> list[tuple[str, int]]:
        """Every (host, port) a listening socket of ours is bound to; empty when offline."""
        if self._server is None:
            return []
        return [
            (str(sock.getsockname()[0]), int(sock.getsockname()[1]))
            for sock in self._server.sockets
        ]

    def addresses(self) -> list[Address]:
        """Where contacts can reach us: configured addresses first, then every interface."""
        port = self.listen_port or 0
        found: list[Address] = []
        for text in self.config.extra_addresses:
            from .invite import parse_address

            found.append(parse_address(text))
        if self.config.listen_host not in ("", "0.0.0.0", "::"):  # noqa: S104
            found.append(Address(self.config.listen_host, port))
        elif port:
            found += interface_addresses(port)
        return list(dict.fromkeys(found))

    # -- contacts -------------------------------------------------------------------------

    async def contacts(self) -> list[ContactRecord]:
        return await self._db(self.repo.contacts)

    async def display_names(self) -> dict[str, str]:
        """Names by id for what the CLI prints: contacts, group-only members and groups."""
        names: dict[str, str] = {}
        for group in await self.groups.groups():
            names[group.id] = group.name
            names.update((m.contact_id, m.name) for m in group.members)
        names.update((c.id, c.display_name) for c in await self.contacts())
        return names

    async def resolve_contact(self, query: str) -> ContactRecord:
        found = await self._db(self.repo.find_contacts, query)
        if not found:
            raise ContactNotFound(f"no contact named {query!r} or with an id starting so")
        if len(found) > 1:
            names = ", ".join(f"{c.display_name} ({c.id[:8]})" for c in found)
            raise ContactNotFound(f"{query!r} matches several contacts: {names}; use an id prefix")
        return found[0]

    def is_online(self, contact_id: str) -> bool:
        return contact_id in self._live

    def safety_number(self, contact: ContactRecord) -> str:
        return safety_number(self.identity.ed25519_public, contact.ed25519_public)

    async def set_verified(self, contact_id: str, verified: bool = True) -> None:
        await self._db(self.repo.set_verified, contact_id, verified)

    # -- invites --------------------------------------------------------------------------

    async def create_invite(
        self, *, ttl: int = 24 * 3600, addresses: Sequence[str] = ()
    ) -> tuple[str, Invite]:
        from .invite import parse_address

        extra = [parse_address(a) for a in addresses]
        port = self.listen_port or await self._db(self.repo.get_setting, SETTING_PORT, 0)
        if not port and not extra:
            raise ServiceError("no listening port yet: run the service once, or give --address")
        if self.listen_port:
            own = self.addresses()
        else:
            own = interface_addresses(port) if port else []
        all_addresses = list(dict.fromkeys([*extra, *own]))[:16]
        if not all_addresses:
            raise ServiceError("this machine has no network address; give one with --address")
        invite = create_invite(
            self.identity,
            addresses=all_addresses,
            display_name=self.display_name,
            ttl=ttl,
            now=self._clock(),
        )
        record = await self._db(
            self.repo.add_invite, invite.invite_id, invite.secret, invite.expires_at, self._clock()
        )
        self._invites[invite.invite_id] = record
        return encode_invite(invite), invite

    async def accept_invite(self, code: str, *, verified: bool = False) -> ContactRecord:
        """Contact the inviter, run the XXpsk3 handshake, and store each other as contacts."""
        try:
            invite = decode_invite(code, now=self._clock())
        except InviteError as exc:
            raise InviteFailed(str(exc)) from exc
        if invite.ed25519_public == self.identity.ed25519_public:
            raise InviteFailed("this is your own invite")
        if invite.ed25519_public in self._by_ed25519:
            raise InviteFailed(f"{invite.display_name or 'the inviter'} is already a contact")
        target = InviteTarget(
            invite.invite_id, invite.secret, invite.ed25519_public, invite.x25519_public
        )
        failures: list[str] = []
        for address in invite.addresses:
            try:
                reader, writer = await dial(
                    address.host, address.port, self.config.timing.connect_timeout
                )
            except (OSError, TimeoutError) as exc:
                failures.append(f"{address}: {exc or 'timed out'}")
                continue
            outcome: asyncio.Future[ContactRecord] = asyncio.get_running_loop().create_future()
            session = Session(
                initiator=True, static=self._static_keypair(), hello=self._hello(), target=target
            )
            conn = Connection(
                reader,
                writer,
                session,
                self._invite_handler(invite, outcome, verified),
                self.config.timing,
            )
            self._track(conn)
            try:
                return await outcome
            except _Unreachable as exc:
                failures.append(f"{address}: {exc}")
        raise InviteFailed(
            "could not reach the inviter; is their Chinwag running? " + "; ".join(failures)
        )

    def _invite_handler(
        self, invite: Invite, outcome: asyncio.Future[ContactRecord], verified: bool
    ) -> Callable[[Connection, SessionEvent], Awaitable[None]]:
        async def handle(conn: Connection, event: SessionEvent) -> None:
            if isinstance(event, Established):
                if outcome.done():
                    return
                peer = event.peer
                secrets = derive_contact_secrets(peer.handshake_hash)
                new = NewContact(
                    id=make_contact_id(peer.hello.ed25519_public),
                    display_name=safe_name(peer.hello.display_name) or "?",
                    ed25519_public=peer.hello.ed25519_public,
                    x25519_public=peer.remote_static,
                    static_certificate=peer.hello.static_certificate,
                    psk=secrets.psk,
                    discovery_key=secrets.discovery_key,
                    conversation_id=conversation_id(
                        self.identity.ed25519_public, peer.hello.ed25519_public
                    ),
                    verified=verified,
                    addresses=self._peer_addresses(conn, peer.hello, invite.addresses),
                )
                try:
                    await self._db(self.repo.add_contact, new, self._clock())
                except ContactExists as exc:
                    conn.close("already contacts")
                    outcome.set_exception(InviteFailed(str(exc)))
                    return
                record = await self._contact_added(new)
                self._adopt(conn, new.id)
                outcome.set_result(record)
            elif isinstance(event, Rejected):
                if not outcome.done():
                    reason = REJECTION_MESSAGES.get(event.code, event.code.name)
                    outcome.set_exception(InviteFailed(reason))
            elif isinstance(event, Closed):
                if conn.contact_id is not None:
                    await self._on_connection_event(conn, event)
                elif not outcome.done():
                    if "does not match the invite" in event.reason:
                        outcome.set_exception(InviteFailed(event.reason))
                    elif event.clean:  # the inviter completed the handshake, then refused
                        outcome.set_exception(InviteFailed(f"the inviter refused: {event.reason}"))
                    else:
                        outcome.set_exception(_Unreachable(event.reason))
            else:
                await self._on_connection_event(conn, event)

        return handle

    async def _contact_added(self, new: NewContact) -> ContactRecord:
        self._remember_contact(ContactKeys(new.id, new.ed25519_public, new.x25519_public, new.psk))
        record = await self._db(self.repo.contact, new.id)
        assert record is not None
        self._emit(ContactAdded(record))
        return record

    def _peer_addresses(
        self, conn: Connection, hello: wire.Hello, known: Iterable[Address | str] = ()
    ) -> tuple[str, ...]:
        found: list[str] = []
        if conn.peer_address and hello.listen_port:
            host = conn.peer_address[0]
            found.append(
                f"[{host}]:{hello.listen_port}" if ":" in host else f"{host}:{hello.listen_port}"
            )
        found += list(hello.addresses)
        found += [str(a) for a in known]
        return tuple(dict.fromkeys(found))[: wire.MAX_ADDRESSES]

    def _static_keypair(self) -> KeyPair:
        return KeyPair(self.identity.static_private, self.identity.static_public)

    # -- inbound connections ----------------------------------------------------------------

    async def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pending = sum(1 for c in self._connections if c.contact_id is None)
        if self._closing or pending >= MAX_PENDING_HANDSHAKES:
            log.warning("refusing an inbound connection: %d handshakes pending", pending)
            writer.close()
            return
        initial = await self.files.peek_inbound(reader, writer)  # a bulk connection: handled
        if initial is None:
            return
        session = Session(
            initiator=False,
            static=self._static_keypair(),
            hello=self._hello(),
            authority=_Authority(self),
            nearby=self._nearby_offered(),
        )
        garbage = session.receive_data(initial)  # at most a Closed, for a malformed start
        conn = Connection(reader, writer, session, self._on_connection_event, self.config.timing)
        self._connections.add(conn)
        try:
            for event in garbage:
                await self._on_connection_event(conn, event)
            if garbage:
                conn.close(session.close_reason or "malformed first frame")
                return
            await conn.run()
        finally:
            self._connections.discard(conn)

    def _track(self, conn: Connection) -> None:
        self._connections.add(conn)

        async def run() -> None:
            try:
                await conn.run()
            finally:
                self._connections.discard(conn)

        self._spawn(run(), f"chinwag-conn-{id(conn):x}")

    async def _on_connection_event(self, conn: Connection, event: SessionEvent) -> None:
        if conn.contact_id is None and conn.session.kind is wire.HandshakeKind.NEARBY:
            if isinstance(event, Closed):
                log.info("connection %r closed: %s", conn, event.reason)
            await self._pairing.on_event(conn, event)  # a nearby pairing (nearby.py)
            return
        if isinstance(event, Established):
            await self._on_established(conn, event)
        elif isinstance(event, Received):
            await self._on_message(conn, event.message)
        elif isinstance(event, Closed):
            log.info("connection %r closed: %s", conn, event.reason)
            contact_id = conn.contact_id
            if contact_id is not None and self._live.get(contact_id) is conn:
                del self._live[contact_id]
                self._emit(PresenceChanged(contact_id, online=False))
                self._ensure_dialer(contact_id)
        elif isinstance(event, Rejected):
            log.info("connection %r rejected: %s", conn, event.code.name)

    async def _on_established(self, conn: Connection, event: Established) -> None:
        peer = event.peer
        if peer.contact_id is None:
            # First contact through one of our invites: store both the contact and the used
            # invite in one transaction, then let the session send our hello.
            invite_id = _Authority.invite_of(conn)
            secrets = derive_contact_secrets(peer.handshake_hash)
            new = NewContact(
                id=make_contact_id(peer.hello.ed25519_public),
                display_name=safe_name(peer.hello.display_name) or "?",
                ed25519_public=peer.hello.ed25519_public,
                x25519_public=peer.remote_static,
                static_certificate=peer.hello.static_certificate,
                psk=secrets.psk,
                discovery_key=secrets.discovery_key,
                conversation_id=conversation_id(
                    self.identity.ed25519_public, peer.hello.ed25519_public
                ),
                verified=False,
                addresses=self._peer_addresses(conn, peer.hello),
            )
            try:
                await self._db(self.repo.redeem_invite, invite_id, new, self._clock())
            except InviteUnusable as exc:
                conn.close(
                    {
                        "used": "this invite has already been used",
                        "expired": "this invite expired",
                    }.get(exc.reason, "unknown invite")
                )
                return
            except ContactExists:
                conn.close("you are already contacts")
                return
            used = self._invites[invite_id]
            self._invites[invite_id] = dataclasses.replace(
                used, used_at=self._clock(), used_by=new.id
            )
            conn.session.accept_peer()
            await self._contact_added(new)
            self._adopt(conn, new.id)
            return
        contact_id = peer.contact_id
        keys = self._contact_keys.get(contact_id)
        if keys is not None and keys.x25519_public != peer.remote_static:
            # A static-key rotation certified by the same identity key (checked by the session).
            await self._db(
                self.repo.update_static,
                contact_id,
                peer.remote_static,
                peer.hello.static_certificate,
            )
            self._by_static.pop(keys.x25519_public, None)
            self._remember_contact(
                ContactKeys(contact_id, keys.ed25519_public, peer.remote_static, keys.psk)
            )
        addresses = self._peer_addresses(conn, peer.hello)
        await self._db(
            self.repo.update_presence,
            contact_id,
            addresses,
            self._clock(),
            safe_name(peer.hello.display_name) or "?",
        )
        self._adopt(conn, contact_id)

    def _adopt(self, conn: Connection, contact_id: str) -> None:
        """Make `conn` the contact's live session, resolving simultaneous dials."""
        conn.contact_id = contact_id
        conn.adopted_at = time.monotonic()
        current = self._live.get(contact_id)
        # Online already (a replacement, not a new presence): decided before `current`
        # is closed below, or a replaced session would announce "online" twice.
        was_online = current is not None and not current.closed.is_set()
        if current is not None and current is not conn and not current.closed.is_set():
            # Two live connections: if both are new, both ends dialled at once and the key
            # rule picks the same one on both sides; an older one is presumed dead (the peer
            # would not have dialled otherwise) and gives way.
            simultaneous = conn.adopted_at - current.adopted_at < SIMULTANEOUS_WINDOW
            if simultaneous and self._preferred(current, conn) is current:
                conn.close("duplicate connection")
                # If `current` is in fact dead (the peer moved to another address right
                # after connecting), the peer redials at once; a probe ends that quickly.
                self._lan_probe(current)
                return
            current.contact_id = None  # its close must not mark the contact offline
            current.close("duplicate connection")
        self._live[contact_id] = conn
        conn.adopted.set()
        if not was_online:
            self._emit(PresenceChanged(contact_id, online=True))
        self._spawn(self._flush_outbox(contact_id, conn), f"chinwag-flush-{contact_id[:8]}")
        self._lan_adopted(conn)
        self.groups.on_adopted(conn, contact_id)
        self.files.contact_online(contact_id)

    def _preferred(self, a: Connection, b: Connection) -> Connection:
        """Both ends keep the connection dialled by the peer with the smaller identity key."""
        mine = self.identity.ed25519_public
        contact_id = a.contact_id or b.contact_id
        assert contact_id is not None
        theirs = self._contact_keys[contact_id].ed25519_public
        dialled_by_me_wins = mine < theirs
        for conn in (a, b):
            if conn.initiator == dialled_by_me_wins:
                return conn
        return a  # both dialled the same way: keep the older one

    # -- dialing ----------------------------------------------------------------------------

    def _ensure_dialer(self, contact_id: str, *, now: bool = False) -> None:
        if self._closing or not self.config.network or self._server is None:
            return
        wake = self._dial_wakeup.setdefault(contact_id, asyncio.Event())
        if now:
            wake.set()
        task = self._dialers.get(contact_id)
        if task is None or task.done():
            self._dialers[contact_id] = asyncio.create_task(
                self._dial_loop(contact_id, wake), name=f"chinwag-dial-{contact_id[:8]}"
            )

    def poke(self, contact_id: str) -> None:
        """Try to reach a contact now rather than at the next backoff tick."""
        wake = self._dial_wakeup.get(contact_id)
        if wake is not None:
            wake.set()
        else:
            self._ensure_dialer(contact_id, now=True)

    async def _dial_loop(self, contact_id: str, wake: asyncio.Event) -> None:
        backoff = Backoff(self._rng, self.config.dial_base, self.config.dial_cap)
        while not self._closing:
            live = self._live.get(contact_id)
            if live is not None and not live.closed.is_set():
                backoff.reset()
                wake.clear()
                await live.closed.wait()
                continue
            if await self._dial_once(contact_id):
                backoff.reset()
                continue
            wake.clear()
            delay = backoff.next_delay()
            if contact_id in self._addressless:
                delay = max(delay, ADDRESSLESS_RETRY)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await wake.wait()

    async def _dial_once(self, contact_id: str) -> bool:
        keys = self._contact_keys.get(contact_id)
        contact = await self._db(self.repo.contact, contact_id)
        if keys is None or contact is None:
            return False
        from .invite import parse_address

        addresses = self._dial_addresses(contact_id, contact.addresses)
        if addresses:
            self._addressless.discard(contact_id)
        else:
            self._addressless.add(contact_id)
        for text in addresses:
            live = self._live.get(contact_id)
            if live is not None and not live.closed.is_set():
                return True
            try:
                address = parse_address(text)
                reader, writer = await dial(
                    address.host, address.port, self.config.timing.connect_timeout
                )
            except (OSError, TimeoutError, InviteError) as exc:
                log.debug("dial %s at %s failed: %s", contact_id[:8], text, exc)
                continue
            session = Session(
                initiator=True,
                static=self._static_keypair(),
                hello=self._hello(),
                target=ContactTarget(contact_id, keys.ed25519_public, keys.x25519_public, keys.psk),
            )
            conn = Connection(
                reader, writer, session, self._on_connection_event, self.config.timing
            )
            self._track(conn)
            waiters = {
                asyncio.ensure_future(conn.closed.wait()),
                asyncio.ensure_future(conn.adopted.wait()),
            }
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if self._live.get(contact_id) is conn:
                return True
        return False

    # -- LAN discovery and nearby pairing (discovery.py, nearby.py) -------------------------

    def _discovery_wanted(self) -> bool:
        if self.config.discovery is not None:
            return self.config.discovery
        host = self.config.listen_host
        if host in ("", "0.0.0.0", "::"):  # noqa: S104
            return True
        try:
            return not ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    async def _start_discovery(self) -> None:
        if not self._discovery_wanted() or self.listen_port is None:
            return
        host = self.config.listen_host
        discovery = Discovery(
            self,
            port=self.listen_port,
            own_key=self._own_discovery_key,
            contact_keys=self._discovery_keys,
            visible_name=self.display_name if self.settings[SETTING_VISIBLE] else None,
            clock=self._clock,
            settings=DiscoverySettings(
                epoch_seconds=self.config.discovery_epoch,
                only_address=None if host in ("", "0.0.0.0", "::") else host,  # noqa: S104
            ),
        )
        await discovery.start()
        self._discovery = discovery
        self.groups.announce()

    def _nearby_offered(self) -> bool:
        """Do we answer NEARBY handshakes? Only while visible on this network."""
        return self._discovery is not None and bool(self.settings[SETTING_VISIBLE])

    def _dial_addresses(self, contact_id: str, stored: Iterable[str]) -> list[str]:
        """A contact seen on the LAN is dialled there first, then at its stored addresses."""
        lan = self._discovery.contact_addresses(contact_id) if self._discovery else []
        return list(dict.fromkeys([*lan, *stored]))

    def _lan_adopted(self, conn: Connection) -> None:
        """A contact's session went live: tell it our advertising key; on the local link,
        use the short keepalive so a vanished peer is noticed within seconds."""
        conn.send(wire.DiscoveryKey(self._own_discovery_key))
        discovery = self._discovery
        if discovery and conn.peer_address and discovery.snapshot.on_link(conn.peer_address[0]):
            conn.use_timing(self.config.lan_timing)

    async def _lan_store_key(self, contact_id: str, key: bytes) -> None:
        if self._discovery_keys.get(contact_id) == key:
            return
        await self._db(self.repo.set_discovery_key, contact_id, key)
        self._discovery_keys[contact_id] = key
        if self._discovery is not None:
            self._discovery.set_contact_key(contact_id, key)

    # DiscoveryListener: called by Discovery on the event loop.

    def lan_contact_seen(self, contact_id: str, addresses: list[str]) -> None:
        if self._closing or contact_id not in self._contact_keys:
            return
        live = self._live.get(contact_id)
        if live is None or live.closed.is_set():
            self._lan_dial(contact_id)
        elif live.peer_address is not None and live.peer_address[0] not in {
            host_of(a) for a in addresses
        }:
            self._lan_probe(live)  # it announced itself elsewhere: is this session still up?

    def lan_contact_gone(self, contact_id: str) -> None:
        live = self._live.get(contact_id)
        if not self._closing and live is not None and not live.closed.is_set():
            self._lan_probe(live)

    def lan_nearby_changed(self) -> None:
        if not self._closing and self.settings[SETTING_VISIBLE]:
            self._emit(NearbyChanged(tuple(self.nearby())))

    def lan_network_changed(self, addresses: tuple[str, ...]) -> None:
        """Our own addresses or links changed (`addresses`: all we have, links up or down):
        drop sessions bound to an address we no longer have, check the others, and dial
        every contact that is offline."""
        if self._closing:
            return
        ours = set(addresses)
        for conn in list(self._live.values()):
            local = conn.writer.get_extra_info("sockname")
            host = str(local[0]).removeprefix("::ffff:") if local else None
            if host is not None and host not in ours and not _is_loopback(host):
                conn.close("our network address changed")
            else:
                self._lan_probe(conn)
        for contact_id in list(self._contact_keys):
            if contact_id not in self._live:
                self._lan_dial(contact_id)

    async def lan_port_for_new_network(self) -> int:
        """Move the listener to a fresh port when the network changes (a stranger could
        link our announcements on two networks by the port), unless the user chose the
        port or an open invite names the current one. Live sessions are not affected."""
        current = self.listen_port or 0
        if self._closing or self._server is None or self.config.listen_port is not None:
            return current
        if await self._db(self._port_to_reuse, self._clock()):
            return current
        try:
            fresh = await serve(self.config.listen_host, 0, self._on_inbound)
        except OSError as exc:
            log.warning("could not move to a new port (%s); keeping %s", exc, current)
            return current
        old, self._server = self._server, fresh
        old.close()
        self.listen_port = fresh.port
        await self._db(self.repo.set_setting, SETTING_PORT, self.listen_port)
        log.info("new network: listening on port %s now", self.listen_port)
        return self.listen_port

    def _lan_dial(self, contact_id: str, *, deferred: bool = False) -> None:
        """Dial a contact soon: at once if our identity key is the smaller one, else after
        LAN_YIELD; at most once per LAN_DIAL_INTERVAL (later requests are deferred)."""
        if contact_id in self._lan_dial_later or contact_id not in self._contact_keys:
            return
        loop = asyncio.get_running_loop()
        wait = self._lan_last_dial.get(contact_id, -LAN_DIAL_INTERVAL) + LAN_DIAL_INTERVAL
        wait -= loop.time()
        if not deferred:
            theirs = self._contact_keys[contact_id].ed25519_public
            if theirs < self.identity.ed25519_public:
                wait = max(wait, LAN_YIELD)
        if wait > 0:

            def later() -> None:
                self._lan_dial_later.pop(contact_id, None)
                live = self._live.get(contact_id)
                if live is None or live.closed.is_set():
                    self._lan_dial(contact_id, deferred=True)

            self._lan_dial_later[contact_id] = loop.call_later(wait, later)
            return
        self._lan_last_dial[contact_id] = loop.time()
        if not self._closing and contact_id in self._contact_keys:
            self.poke(contact_id)

    def _lan_probe(self, conn: Connection) -> None:
        """Ping a live session; close it if nothing comes back within LAN_PROBE_TIMEOUT."""
        if conn in self._lan_probing or not conn.session.established:
            return
        self._lan_probing.add(conn)
        heard = conn.last_heard
        conn.send(wire.Ping(0))

        async def check() -> None:
            try:
                await asyncio.sleep(LAN_PROBE_TIMEOUT)
                if conn.last_heard == heard and not conn.closed.is_set():
                    conn.close("no answer after a change on the LAN")
            finally:
                self._lan_probing.discard(conn)

        self._spawn(check(), "chinwag-lan-probe")

    # Public: Nearby, pairing, removal.

    @property
    def visible(self) -> bool:
        return bool(self.settings[SETTING_VISIBLE])

    def nearby(self) -> list[NearbyPerson]:
        """Visible people on this network who are not contacts (empty unless we are visible)."""
        if self._discovery is None or not self.settings[SETTING_VISIBLE]:
            return []
        return [
            NearbyPerson(
                s.nearby_id, s.advert.name or "?", s.addresses, s.seen_at, s.advert.open_group
            )
            for s in self._discovery.directory.nearby()
        ]

    async def pair_nearby(self, nearby_id: str) -> PairingRequested:
        """Start pairing with someone in the Nearby list; returns once both screens show the
        digits. Then `answer_pairing(id, True)` once the user compared them."""
        if self._discovery is None:
            raise ServiceError("LAN discovery is not running")
        if not self.settings[SETTING_VISIBLE]:
            raise ServiceError("switch on `visible` first: only visible people can pair")
        found = self._discovery.directory.find_nearby(nearby_id)
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
        keys = self._contact_keys.pop(contact_id, None)
        if keys is None:
            raise ContactNotFound(f"no contact {contact_id}")
        self._by_static.pop(keys.x25519_public, None)
        self._by_ed25519.pop(keys.ed25519_public, None)
        dialer = self._dialers.pop(contact_id, None)
        if dialer is not None:
            dialer.cancel()
        self._dial_wakeup.pop(contact_id, None)
        conn = self._live.pop(contact_id, None)
        if conn is not None:
            conn.close("no longer a contact")
            self._emit(PresenceChanged(contact_id, online=False))
        await self._db(self.repo.delete_contact, contact_id)
        self._discovery_keys.pop(contact_id, None)
        if self._discovery is not None:
            self._discovery.set_contact_key(contact_id, None)
        await self.rotate_discovery_key()
        self._emit(ContactRemoved(contact_id))

    async def rotate_discovery_key(self) -> None:
        """A fresh advertising key: announced from the next record update on, sent to every
        contact online now and to the others when they next connect."""
        key = nacl.utils.random(32)
        await self._db(self.repo.set_blob, BLOB_DISCOVERY_KEY, key)
        self._own_discovery_key = key
        for conn in list(self._live.values()):
            conn.send(wire.DiscoveryKey(key))
        if self._discovery is not None:
            self._discovery.set_own_key(key)

    def lan_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"discovery": self._discovery is not None, "visible": self.visible}
        if self._discovery is not None:
            status.update(self._discovery.status())
        status["pairings"] = len(self._pairing.pending())
        return status

    # -- messaging --------------------------------------------------------------------------

    async def send_text(self, contact_id: str, body: str) -> MessageRecord:
        """Store a message in the outbox (durably) and send it if the contact is online."""
        check_text(body)
        if contact_id not in self._contact_keys:
            raise ContactNotFound(f"no contact {contact_id}")
        assert self._outgoing is not None
        record = await self._outgoing.submit((contact_id, body))
        self._emit(MessageAdded(record))
        conn = self._live.get(contact_id)
        if conn is not None and not conn.closed.is_set() and conn.session.established:
            self._send_chat(conn, record)
        else:
            self.poke(contact_id)
        return record

    async def _queue_sends(self, items: list[tuple[str, str]]) -> list[MessageRecord]:
        records = await self._db_write(
            [body for _, body in items],
            self.repo.queue_outgoing_many,
            items,
            int(self._clock() * 1000),
        )
        self._index_soon()
        return records

    def _send_chat(self, conn: Connection, record: MessageRecord) -> None:
        keys = self._contact_keys[record.contact_id]
        contact_conv = self._conversation(keys)
        conn.send(
            wire.ChatMessage(
                msg_id=record.msg_id,
                conversation=contact_conv,
                seq=record.seq,
                lamport=record.lamport,
                sent_at_ms=record.sent_at_ms,
                body=record.body,
            )
        )

    def _conversation(self, keys: ContactKeys) -> bytes:
        # Cached: a BLAKE2b through PyNaCl costs ~17 us and runs twice per chat message.
        conv = self._conversations.get(keys.ed25519_public)
        if conv is None:
            conv = conversation_id(self.identity.ed25519_public, keys.ed25519_public)
            self._conversations[keys.ed25519_public] = conv
        return conv

    async def _flush_outbox(self, contact_id: str, conn: Connection) -> None:
        """Resend everything not yet acknowledged: on every (re)connect."""
        pending = await self._db(self.repo.outbox, contact_id)
        for i, record in enumerate(pending):
            if conn.closed.is_set() or not conn.session.established:
                return
            if not self.files.send_offer_for(conn, record):  # a file offer goes as such
                self._send_chat(conn, record)
            if i % OUTBOX_DRAIN_EVERY == OUTBOX_DRAIN_EVERY - 1:
                await conn.drain()  # backpressure; the messages in between share frames
        await conn.drain()
        if pending:
            self._emit(
                MessageStatesChanged(
                    contact_id, tuple(r.msg_id for r in pending), MessageState.SENT
                )
            )

    async def _on_message(self, conn: Connection, message: wire.WireMessage) -> None:
        contact_id = conn.contact_id
        if contact_id is None:
            return
        if await self.groups.on_message(conn, message):
            return
        if isinstance(message, wire.ChatMessage):
            if message.conversation != self._conversation(self._contact_keys[contact_id]):
                conn.close("message for an unknown conversation")
                return
            if message.lamport >= MAX_COUNTER or message.seq >= MAX_COUNTER:
                conn.close("implausible Lamport time or sequence number")
                return
            assert self._incoming is not None
            self._incoming.post(_Arrival(contact_id, message, conn))
        elif isinstance(message, wire.Receipt):
            state = (
                MessageState.DELIVERED
                if message.kind is wire.ReceiptKind.DELIVERED
                else MessageState.READ
            )
            # The receipt is the fact: show it now. Recording it is bookkeeping, group-
            # committed without holding up the read loop (if it is lost in a crash, the
            # message is resent, dropped as a duplicate and acknowledged again).
            self._emit(MessageStatesChanged(contact_id, message.msg_ids, state))
            assert self._receipts is not None
            self._receipts.post((contact_id, message.msg_ids, state))
        elif isinstance(message, wire.Typing):
            if self.settings[SETTING_TYPING]:
                self._emit(TypingChanged(contact_id, message.active))
        elif isinstance(message, wire.Ping):
            conn.send(wire.Pong(message.nonce))
        elif isinstance(message, wire.ProfileUpdate):
            await self._db(self.repo.set_display_name, contact_id, safe_name(message.display_name))
            await self._emit_contact_changed(contact_id)
        elif isinstance(message, wire.DiscoveryKey):
            await self._lan_store_key(contact_id, message.key)
        elif isinstance(
            message, wire.FileOffer | wire.FileRequest | wire.FileControl | wire.FileHave
        ):
            await self.files.on_message(contact_id, conn, message)

    def _index_soon(self) -> None:
        """Wake the background search indexer (it batches, so bursts cost little)."""
        self._index_wanted.set()

    async def _search_indexer(self) -> None:
        while True:
            await self._index_wanted.wait()
            await asyncio.sleep(SEARCH_INDEX_DELAY)  # let a burst finish first
            self._index_wanted.clear()
            while await self._db(self.repo.index_pending, 2000):
                pass  # in chunks, so other work gets the database in between

    async def _states_recorded(self) -> None:
        """Wait until every receipt that arrived so far is recorded, so that a read shows
        the states that MessageStatesChanged events already announced."""
        if self._receipts is not None:
            await self._receipts.settle()

    async def _store_receipts(self, updates: list[_ReceiptUpdate]) -> list[None]:
        await self._db(self.repo.record_states, updates)
        return [None] * len(updates)

    async def _store_arrivals(self, arrivals: list[_Arrival]) -> list[bool]:
        """Group commit of arriving messages, then one delivery receipt per connection."""
        by_contact: dict[str, list[wire.ChatMessage]] = {}
        for a in arrivals:
            by_contact.setdefault(a.contact_id, []).append(a.message)
        stored = await self._db_write(
            [a.message.body for a in arrivals],
            self.repo.store_incoming,
            list(by_contact.items()),
            int(self._clock() * 1000),
        )
        if stored:
            self._index_soon()
        # Acknowledge only now that it is stored: duplicates too, their first ack was lost.
        acks: dict[Connection, list[bytes]] = {}
        for a in arrivals:
            acks.setdefault(a.connection, []).append(a.message.msg_id)
        for conn, ids in acks.items():
            if conn.closed.is_set() or not conn.session.established:
                continue
            for start in range(0, len(ids), wire.MAX_RECEIPT_IDS):
                conn.send(
                    wire.Receipt(
                        wire.ReceiptKind.DELIVERED, tuple(ids[start : start + wire.MAX_RECEIPT_IDS])
                    )
                )
        for record in stored:
            self._emit(MessageAdded(record))
        return [True] * len(arrivals)

    async def history(
        self,
        contact_id: str,
        *,
        limit: int = 50,
        before: tuple[int, bytes] | None = None,
        after: tuple[int, bytes] | None = None,
    ) -> list[MessageRecord]:
        """A page of a conversation, oldest first (see Repository.history)."""
        await self._states_recorded()
        return await self._db(
            self.repo.history, contact_id, limit=limit, before=before, after=after
        )

    async def conversations(self) -> list[ConversationSummary]:
        """Every contact with its newest message and unread count, most recent first."""
        await self._states_recorded()
        rows = await self._db(self.repo.conversations)  # one read of kept summaries
        summaries = [
            ConversationSummary(
                r.contact, r.last_message, r.unread, self.is_online(r.contact.id), r.queued
            )
            for r in rows
        ]
        summaries.sort(key=lambda s: -s.last_activity)
        return summaries

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
        await self._states_recorded()
        return await self._db(
            self.repo.search, text, contact_id=contact_id, limit=limit, before=before
        )

    async def change_passphrase(
        self, new_passphrase: str | None, *, kdf: KdfParams | None = None
    ) -> list[str]:
        """Re-encrypt the database under a new passphrase (or a keyring key if None)."""
        key, meta, warnings = await asyncio.to_thread(
            self.profile.new_key_material, new_passphrase, kdf=kdf
        )
        await self._db(self.repo.rekey, key)
        await asyncio.to_thread(self.profile.commit_key_material, meta)
        return warnings

    async def mark_read(self, contact_id: str) -> int:
        ids = await self._db(self.repo.mark_seen, contact_id)
        conn = self._live.get(contact_id)
        if ids and self.settings[SETTING_READ_RECEIPTS] and conn and conn.session.established:
            for start in range(0, len(ids), wire.MAX_RECEIPT_IDS):
                conn.send(
                    wire.Receipt(
                        wire.ReceiptKind.READ, tuple(ids[start : start + wire.MAX_RECEIPT_IDS])
                    )
                )
        return len(ids)

    def set_typing(self, contact_id: str, active: bool) -> None:
        conn = self._live.get(contact_id)
        keys = self._contact_keys.get(contact_id)
        if self.settings[SETTING_TYPING] and conn and keys and conn.session.established:
            conn.send(wire.Typing(self._conversation(keys), active))

    async def unread_counts(self) -> dict[str, int]:
        return await self._db(self.repo.unread_counts)

    async def outbox_counts(self) -> dict[str, int]:
        await self._states_recorded()
        return await self._db(self.repo.outbox_counts)


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    contact: ContactRecord
    last_message: MessageRecord | None
    unread: int
    online: bool
    queued: int = 0  # our messages still in the outbox

    @property
    def last_activity(self) -> float:
        if self.last_message is not None:
            return self.last_message.sent_at_ms / 1000
        return self.contact.created_at


class _Unreachable(Exception):
    pass


class _Authority:
    """Answers a responder session's questions from the service's in-memory tables."""

    def __init__(self, service: PeerService) -> None:
        self._service = service
        self.invite_id: bytes | None = None

    @staticmethod
    def invite_of(conn: Connection) -> bytes:
        authority = conn.session._authority
        assert isinstance(authority, _Authority) and authority.invite_id is not None
        return authority.invite_id

    def invite_psk(self, invite_id: bytes) -> bytes | wire.RejectCode | None:
        service = self._service
        invite = service._invites.get(invite_id)
        if invite is None:
            return None
        if invite.used_at is not None:
            return wire.RejectCode.INVITE_USED
        if service._clock() >= invite.expires_at:
            return wire.RejectCode.INVITE_EXPIRED
        self.invite_id = invite_id
        return invite.secret

    def match_contact(self, remote_static: bytes, hello: wire.Hello) -> ContactMatch | None:
        service = self._service
        contact_id = service._by_ed25519.get(hello.ed25519_public)
        if contact_id is None:
            return None
        keys = service._contact_keys[contact_id]
        return ContactMatch(contact_id, keys.psk)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False

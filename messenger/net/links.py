"""Links: every connection we hold, which one is a contact's live session, and dialling.

The links worker owns the listener and the connection registry. It dials each contact in
a loop with backoff, asking its dialers, in order, for the routes to try (a LAN sighting,
the last direct addresses; Tor's onion dialer plugs in the same way); the first route whose
session is adopted wins. When both ends dial at once, the connection dialled by the peer
with the smaller identity key wins on both sides.

It knows nothing of chat, groups or files: what a session says goes to the `LinkHooks`
PeerService wires in (core/ports.py has the ports the other workers see).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..core.ports import Clock, ContactKeyring, Emit, Tasks
from ..events import PresenceChanged
from ..identity import Identity
from ..protocol import wire
from ..protocol.invite import InviteError, parse_address
from ..protocol.noise import KeyPair
from ..protocol.session import (
    Closed,
    ContactMatch,
    ContactTarget,
    Established,
    Received,
    Rejected,
    Session,
    SessionEvent,
)
from ..records import InviteRecord
from .transport import Backoff, Connection, Listener, Timing, dial, serve_admitting

log = logging.getLogger(__name__)

# Unauthenticated inbound connections allowed at once; more are closed at once.
# Inbound connections not yet authenticated, counted from accept() to the end of the
# handshake (or a bulk preamble): at most this many at once, and per remote host fewer, so
# a flood from one host cannot lock a contact out (threat-model.md §4.4).
MAX_PENDING_HANDSHAKES = 64
MAX_PENDING_PER_HOST = 16
# Every stranger through our onion arrives from tor on 127.0.0.1: they count in a bucket of
# their own, so onion strangers cannot hold the LAN's slots (nor a local process's) and a
# flood through the onion leaves room for LAN strangers (threat-model §4.13).
MAX_PENDING_VIA_TOR = 32
VIA_TOR_BUCKET = "onion"
# Connections adopted within this many seconds of each other count as simultaneous dials.
SIMULTANEOUS_WINDOW = 5.0
# A contact with no address at all (none stored, not seen on the LAN) is retried this
# rarely: discovery (or a message to send) pokes its dial loop when there is one.
ADDRESSLESS_RETRY = 300.0
# While a contact's session runs through Tor, its direct routes are tried this often (and
# at once when poked: it appeared on the LAN); a direct session that comes up replaces the
# Tor one (protocol.md §19.7).
DIRECT_RETRY = 120.0

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
EventHandler = Callable[[Connection, SessionEvent], Awaitable[None]]


# --------------------------------------------------------------------------- dialers


@dataclass(frozen=True, slots=True)
class Route:
    """One way to open a stream to a contact. `key` names it (routes with the same key
    from two dialers are tried once); `connect(timeout)` opens the stream; `tor`: through
    Tor (slower: Tor's timers, and a direct route replaces it when one comes up)."""

    key: str
    connect: Callable[[float], Awaitable[Streams]]  # (connect timeout) -> the streams
    tor: bool = False


class Dialer(Protocol):
    """Where a contact might be reached now, best first."""

    async def routes(self, contact_id: str) -> Sequence[Route]: ...


def tcp_route(text: str) -> Route:
    """A route to "host:port" (or "[v6]:port") over TCP."""

    async def connect(connect_timeout: float) -> Streams:
        address = parse_address(text)
        return await dial(address.host, address.port, connect_timeout)

    return Route(text, connect)


class TcpDialer:
    """Dials the addresses a lookup gives (a LAN sighting, the stored addresses, ...)."""

    def __init__(self, addresses: Callable[[str], Awaitable[Iterable[str]]]) -> None:
        self._addresses = addresses

    async def routes(self, contact_id: str) -> list[Route]:
        return [tcp_route(text) for text in await self._addresses(contact_id)]


def address_route(host: str) -> str:
    """The route a direct connection to `host` is shown as: "lan" for private, link-local
    and loopback addresses, "direct" for the rest (a public address)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return "direct"
    return "lan" if ip.is_private or ip.is_link_local or ip.is_loopback else "direct"


# --------------------------------------------------------------------------- hooks


class LinkHooks(Protocol):
    """What the links worker hands on (PeerService routes it to the other workers)."""

    async def established(self, links: Links, conn: Connection, event: Established) -> None:
        """A handshake completed: a known contact, or a first contact through an invite
        (then `links.invite_of(conn)` names it); the hook adopts the connection or not."""
        ...

    async def received(self, conn: Connection, message: wire.WireMessage) -> None: ...

    def received_now(self, conn: Connection, message: wire.WireMessage) -> bool:
        """A contact's message handled synchronously in the read callback (chat, receipts:
        the hot path); False: it goes to `received`."""
        ...

    def delivered(self, conn: Connection) -> None:
        """The messages of one read of a contact's session were all handed over."""
        ...

    async def nearby(self, conn: Connection, event: SessionEvent) -> None:
        """An event of a NEARBY (pairing) connection, not yet any contact's."""
        ...

    def adopted(self, conn: Connection, contact_id: str) -> None:
        """`conn` became the contact's live session."""
        ...

    def suspect(self, conn: Connection) -> None:
        """`conn` may be dead though not yet timed out: check it (a probe)."""
        ...

    async def peek_inbound(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        settled: Callable[[], None],
    ) -> bytes | None:
        """The first bytes of an inbound connection, or None if it was taken elsewhere
        (then `settled()` is called once it is no longer a stranger's: a bulk transfer)."""
        ...

    def nearby_offered(self) -> bool: ...

    def invite(self, invite_id: bytes) -> InviteRecord | None: ...


class _Authority:
    """Answers a responder session's questions from the in-memory tables."""

    def __init__(self, links: Links) -> None:
        self._links = links
        self.invite_id: bytes | None = None

    def invite_psk(self, invite_id: bytes) -> bytes | wire.RejectCode | None:
        invite = self._links.hooks.invite(invite_id)
        if invite is None:
            return None
        if invite.used_at is not None:
            return wire.RejectCode.INVITE_USED
        if self._links.clock() >= invite.expires_at:
            return wire.RejectCode.INVITE_EXPIRED
        self.invite_id = invite_id
        return invite.secret

    def match_contact(self, remote_static: bytes, hello: wire.Hello) -> ContactMatch | None:
        contacts = self._links.contacts
        contact_id = contacts.by_ed25519(hello.ed25519_public)
        keys = contacts.keys(contact_id) if contact_id is not None else None
        if contact_id is None or keys is None:
            return None
        return ContactMatch(contact_id, keys.psk)


# --------------------------------------------------------------------------- the worker


class Links:
    # Keyword-only ports and settings, wired by PeerService._build_workers: one argument
    # per collaborator is the point (a test hands each a small fake).
    def __init__(  # noqa: PLR0913  (the ports PeerService wires in, keyword-only)
        self,
        *,
        identity: Identity,
        contacts: ContactKeyring,
        hooks: LinkHooks,
        hello: Callable[[], wire.Hello],
        emit: Emit,
        tasks: Tasks,
        clock: Clock,
        rng: random.Random,
        timing: Timing,
        dial_base: float,
        dial_cap: float,
        dialers: Sequence[Dialer] = (),
        tor_timing: Timing | None = None,
        direct_retry: float = DIRECT_RETRY,
    ) -> None:
        self.identity = identity
        self.contacts = contacts
        self.hooks = hooks
        self.clock = clock
        self.timing = timing
        self.tor_timing = tor_timing or timing  # the timers of sessions through Tor
        self.direct_retry = direct_retry
        self._hello = hello
        self._emit = emit
        self._tasks = tasks
        self._rng = rng
        self._dial_base = dial_base
        self._dial_cap = dial_cap
        self.dialers: list[Dialer] = list(dialers)
        self._server: Listener | None = None
        self._onion_server: Listener | None = None  # what our onion service forwards to
        # Connections through Tor: dialled over a Tor route, or accepted from our onion.
        self._via_tor: weakref.WeakSet[Connection] = weakref.WeakSet()
        self._live: dict[str, Connection] = {}
        self._connections: set[Connection] = set()
        self._authorities: dict[Connection, _Authority] = {}
        self._strangers: dict[str, int] = {}  # unauthenticated inbound, by remote host
        self._settle: dict[Connection, Callable[[], None]] = {}
        self.refused_inbound = 0  # connections refused by the caps (for tests and status)
        self._dialing: dict[str, asyncio.Task[None]] = {}
        self._dial_wakeup: dict[str, asyncio.Event] = {}
        self._addressless: set[str] = set()  # contacts no dialer found a route for
        self.closing = False

    # -- queries (the LinkRegistry port) ---------------------------------------------------

    def connection(self, contact_id: str) -> Connection | None:
        return self._live.get(contact_id)

    def ready(self, contact_id: str) -> Connection | None:
        conn = self._live.get(contact_id)
        if conn is None or conn.closed.is_set() or not conn.session.established:
            return None
        return conn

    def is_online(self, contact_id: str) -> bool:
        return contact_id in self._live

    def live_connections(self) -> list[Connection]:
        return list(self._live.values())

    def via_tor(self, conn: Connection) -> bool:
        """Does this connection run through Tor (ours or the contact's onion service)?"""
        return conn in self._via_tor

    def route(self, contact_id: str) -> str | None:
        """How the contact's live session runs ("lan", "direct", "tor"); None: offline."""
        conn = self._live.get(contact_id)
        return None if conn is None else self._route_of(conn)

    def _route_of(self, conn: Connection) -> str:
        if self.via_tor(conn):
            return "tor"
        return address_route(conn.peer_address[0] if conn.peer_address else "")

    def online(self) -> list[str]:
        """Contact ids with a live session."""
        return list(self._live)

    def pending_handshakes(self) -> int:
        """Inbound connections accepted and not yet authenticated."""
        return sum(self._strangers.values())

    def _admit_via_tor(self, host: str) -> Callable[[], None] | None:
        """`_admit_stranger` for the onion listener: one bucket for every onion stranger."""
        return self._admit_stranger(VIA_TOR_BUCKET, MAX_PENDING_VIA_TOR)

    def _admit_stranger(
        self, host: str, per_host: int = MAX_PENDING_PER_HOST
    ) -> Callable[[], None] | None:
        """Count an accepted connection as a stranger's, or None if a cap is reached; the
        callable returned ends the count (idempotent)."""
        if (
            self.closing
            or self.pending_handshakes() >= MAX_PENDING_HANDSHAKES
            or self._strangers.get(host, 0) >= per_host
        ):
            self.refused_inbound += 1
            if self.refused_inbound % 100 == 1:  # a flood logs once per hundred
                log.warning(
                    "refusing inbound connections: %d unauthenticated pending (%s: %d)",
                    self.pending_handshakes(),
                    host,
                    self._strangers.get(host, 0),
                )
            return None
        self._strangers[host] = self._strangers.get(host, 0) + 1
        done = False

        def settle() -> None:
            nonlocal done
            if done:
                return
            done = True
            left = self._strangers[host] - 1
            if left:
                self._strangers[host] = left
            else:
                del self._strangers[host]

        return settle

    def invite_of(self, conn: Connection) -> bytes:
        """The invite an inbound first-contact session used."""
        authority = self._authorities[conn]
        assert authority.invite_id is not None
        return authority.invite_id

    def static_keypair(self) -> KeyPair:
        return KeyPair(self.identity.static_private, self.identity.static_public)

    def hello(self) -> wire.Hello:
        return self._hello()

    # -- listening -------------------------------------------------------------------------

    async def listen(self, host: str, port: int) -> Listener:
        self._server = await serve_admitting(host, port, self._on_inbound, self._admit_stranger)
        return self._server

    async def move_listener(self, host: str) -> Listener:
        """Listen on a fresh port instead (live connections are not affected)."""
        fresh = await serve_admitting(host, 0, self._on_inbound, self._admit_stranger)
        old, self._server = self._server, fresh
        if old is not None:
            old.close()
        return fresh

    async def listen_onion(self) -> tuple[str, int]:
        """A listener of its own for our onion service to forward to (127.0.0.1, a random
        port): every session accepted there came through Tor, whatever address it shows."""
        if self._onion_server is None:
            self._onion_server = await serve_admitting(
                "127.0.0.1", 0, self._on_onion_inbound, self._admit_via_tor
            )
        return "127.0.0.1", self._onion_server.port

    @property
    def listener(self) -> Listener | None:
        return self._server

    def listening_on(self) -> list[tuple[str, int]]:
        if self._server is None:
            return []
        return [
            (str(sock.getsockname()[0]), int(sock.getsockname()[1]))
            for sock in self._server.sockets
        ]

    async def _on_onion_inbound(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        settle: Callable[[], None],
    ) -> None:
        await self._on_inbound(reader, writer, settle, tor=True)

    async def _on_inbound(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        settle: Callable[[], None],
        *,
        tor: bool = False,
    ) -> None:
        """An inbound connection the caps admitted (`_admit_stranger`, called at accept)."""
        conn: Connection | None = None
        try:
            initial = await self.hooks.peek_inbound(reader, writer, settle)
            if initial is None:
                return  # a bulk connection (served), or closed
            authority = _Authority(self)
            session = Session(
                initiator=False,
                static=self.static_keypair(),
                hello=self._hello(),
                authority=authority,
                nearby=self.hooks.nearby_offered(),
            )
            garbage = session.receive_data(initial)  # at most a Closed, for a malformed start
            timing = self.tor_timing if tor else self.timing
            conn = Connection(reader, writer, session, self.dispatch, timing)
            conn.fast = self
            if tor:
                self._via_tor.add(conn)
            self._connections.add(conn)
            self._authorities[conn] = authority
            self._settle[conn] = settle  # until adopted as a contact's session
            for event in garbage:
                await self.dispatch(conn, event)
            if garbage:
                conn.close(session.close_reason or "malformed first frame")
                return
            await conn.run()
        finally:
            settle()
            if conn is not None:
                self._connections.discard(conn)
                self._authorities.pop(conn, None)
                self._settle.pop(conn, None)

    # -- outgoing sessions -----------------------------------------------------------------

    async def open(
        self,
        host: str,
        port: int,
        session: Session,
        handler: EventHandler | None = None,
    ) -> Connection:
        """Dial host:port and run `session` over it (events to `handler`, else handled as
        any contact's). Raises OSError or TimeoutError if the host cannot be reached."""
        reader, writer = await dial(host, port, self.timing.connect_timeout)
        return self._start(reader, writer, session, handler)

    async def open_route(
        self, route: Route, session: Session, handler: EventHandler | None = None
    ) -> Connection:
        """As `open`, over a route (an onion's, through Tor)."""
        reader, writer = await route.connect(self.timing.connect_timeout)
        return self._start(reader, writer, session, handler, tor=route.tor)

    def _start(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        session: Session,
        handler: EventHandler | None,
        *,
        tor: bool = False,
    ) -> Connection:
        timing = self.tor_timing if tor else self.timing
        conn = Connection(reader, writer, session, handler or self.dispatch, timing)
        if handler is None:
            conn.fast = self
        if tor:
            self._via_tor.add(conn)
        self._connections.add(conn)

        async def run() -> None:
            try:
                await conn.run()
            finally:
                self._connections.discard(conn)

        self._tasks.spawn(run(), f"chinwag-conn-{id(conn):x}")
        return conn

    # -- session events -------------------------------------------------------------------

    def received_now(self, conn: Connection, message: wire.WireMessage) -> bool:
        """The fast path (transport.FastPath) of a contact's session: what `dispatch`
        would hand to `hooks.received`, if the hooks take it synchronously."""
        if conn.contact_id is None:
            return False
        return self.hooks.received_now(conn, message)

    def delivered(self, conn: Connection) -> None:
        if conn.contact_id is not None:
            self.hooks.delivered(conn)

    async def dispatch(self, conn: Connection, event: SessionEvent) -> None:
        """Where every session event goes (unless a caller of `open` took them)."""
        if conn.contact_id is None and conn.session.kind is wire.HandshakeKind.NEARBY:
            if isinstance(event, Closed):
                log.info("connection %r closed: %s", conn, event.reason)
            await self.hooks.nearby(conn, event)  # a nearby pairing (nearby.py)
            return
        match event:
            case Established():
                await self.hooks.established(self, conn, event)
            case Received(message=message):
                if conn.contact_id is not None:
                    await self.hooks.received(conn, message)
            case Closed(reason=reason):
                log.info("connection %r closed: %s", conn, reason)
                contact_id = conn.contact_id
                if contact_id is not None and self._live.get(contact_id) is conn:
                    del self._live[contact_id]
                    self._emit(PresenceChanged(contact_id, online=False))
                    self.ensure_dialer(contact_id)
            case Rejected(code=code):
                log.info("connection %r rejected: %s", conn, code.name)

    def adopt(self, conn: Connection, contact_id: str) -> None:
        """Make `conn` the contact's live session, resolving simultaneous dials."""
        settle = self._settle.pop(conn, None)
        if settle is not None:
            settle()  # authenticated: no longer counts against the strangers' caps
        conn.contact_id = contact_id
        conn.adopted_at = time.monotonic()
        current = self._live.get(contact_id)
        # Online already (a replacement, not a new presence): decided before `current`
        # is closed below, or a replaced session would announce "online" twice.
        was_online = current is not None and not current.closed.is_set()
        old_route = self._route_of(current) if was_online and current is not None else None
        if current is not None and current is not conn and not current.closed.is_set():
            # Two live connections: if both are new, both ends dialled at once and the key
            # rule picks the same one on both sides; an older one is presumed dead (the peer
            # would not have dialled otherwise) and gives way.
            simultaneous = conn.adopted_at - current.adopted_at < SIMULTANEOUS_WINDOW
            if simultaneous and self._preferred(current, conn) is current:
                conn.close("duplicate connection")
                # If `current` is in fact dead (the peer moved to another address right
                # after connecting), the peer redials at once; a probe ends that quickly.
                self.hooks.suspect(current)
                return
            current.contact_id = None  # its close must not mark the contact offline
            current.close("duplicate connection")
        self._live[contact_id] = conn
        if conn.fast is None:
            # A session opened with a handler of its own (an accepted invite's) hands what
            # it receives to `dispatch` once adopted: its fast path is ours too, or the
            # first session with a new contact would have none.
            conn.fast = self
        conn.adopted.set()
        # A replacement is announced only when it moves the session to another route
        # (Tor -> LAN, say): the window shows the route.
        route = self._route_of(conn)
        if route != old_route:
            self._emit(PresenceChanged(contact_id, online=True, route=route))
        self.hooks.adopted(conn, contact_id)

    def _preferred(self, a: Connection, b: Connection) -> Connection:
        """Both ends keep a direct connection rather than one through Tor (each end knows
        which runs through Tor: it dialled an onion, or accepted from its onion service);
        else the connection dialled by the peer with the smaller identity key."""
        if self.via_tor(a) != self.via_tor(b):
            return b if self.via_tor(a) else a
        mine = self.identity.ed25519_public
        contact_id = a.contact_id or b.contact_id
        assert contact_id is not None
        keys = self.contacts.keys(contact_id)
        assert keys is not None
        dialled_by_me_wins = mine < keys.ed25519_public
        for conn in (a, b):
            if conn.initiator == dialled_by_me_wins:
                return conn
        return a  # both dialled the same way: keep the older one

    def forget(self, contact_id: str) -> None:
        """No longer a contact: stop dialling it and close its session."""
        dialer = self._dialing.pop(contact_id, None)
        if dialer is not None:
            dialer.cancel()
        self._dial_wakeup.pop(contact_id, None)
        conn = self._live.pop(contact_id, None)
        if conn is not None:
            conn.close("no longer a contact")
            self._emit(PresenceChanged(contact_id, online=False))

    # -- dialling --------------------------------------------------------------------------

    def ensure_dialer(self, contact_id: str, *, now: bool = False) -> None:
        if self.closing or self._server is None:
            return
        wake = self._dial_wakeup.setdefault(contact_id, asyncio.Event())
        if now:
            wake.set()
        task = self._dialing.get(contact_id)
        if task is None or task.done():
            self._dialing[contact_id] = asyncio.create_task(
                self._dial_loop(contact_id, wake), name=f"chinwag-dial-{contact_id[:8]}"
            )

    def dial_now(self, contact_id: str) -> None:
        self.ensure_dialer(contact_id, now=True)

    def poke(self, contact_id: str) -> None:
        """Try to reach a contact now rather than at the next backoff tick."""
        wake = self._dial_wakeup.get(contact_id)
        if wake is not None:
            wake.set()
        else:
            self.ensure_dialer(contact_id, now=True)

    async def _dial_loop(self, contact_id: str, wake: asyncio.Event) -> None:
        backoff = Backoff(self._rng, self._dial_base, self._dial_cap)
        while not self.closing:
            live = self._live.get(contact_id)
            if live is not None and not live.closed.is_set():
                backoff.reset()
                wake.clear()
                if live not in self._via_tor:
                    await live.closed.wait()
                    continue
                # Through Tor: look for a direct route now and then, or when poked (the
                # contact appeared on the LAN); one that comes up replaces this session.
                await _first(live.closed.wait(), wake.wait(), within=self.direct_retry)
                if not live.closed.is_set() and not self.closing:
                    await self.dial_once(contact_id, direct_only=True)
                continue
            if await self.dial_once(contact_id):
                backoff.reset()
                continue
            wake.clear()
            delay = backoff.next_delay()
            if contact_id in self._addressless:
                delay = max(delay, ADDRESSLESS_RETRY)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await wake.wait()

    async def routes(self, contact_id: str) -> list[Route]:
        """Every route the dialers know, in dialer order, each key once."""
        found: dict[str, Route] = {}
        for dialer in self.dialers:
            for route in await dialer.routes(contact_id):
                found.setdefault(route.key, route)
        return list(found.values())

    async def dial_once(self, contact_id: str, *, direct_only: bool = False) -> bool:
        """Try each route until a session is adopted; True if the contact is online.
        `direct_only`: the contact's session runs through Tor; try the routes that are
        not Tor's, and True if one of them replaced it."""
        keys = self.contacts.keys(contact_id)
        if keys is None:
            return False
        routes = await self.routes(contact_id)
        if direct_only:
            routes = [r for r in routes if not r.tor]
        elif routes:
            self._addressless.discard(contact_id)
        else:
            self._addressless.add(contact_id)
        for route in routes:
            live = self._live.get(contact_id)
            if direct_only and (live is None or live not in self._via_tor):
                return False  # gone, or already direct: the dial loop takes it from here
            if not direct_only and live is not None and not live.closed.is_set():
                return True
            try:
                reader, writer = await route.connect(self.timing.connect_timeout)
            except (OSError, TimeoutError, InviteError) as exc:
                log.debug("dial %s at %s failed: %s", contact_id[:8], route.key, exc)
                continue
            session = Session(
                initiator=True,
                static=self.static_keypair(),
                hello=self._hello(),
                target=ContactTarget(contact_id, keys.ed25519_public, keys.x25519_public, keys.psk),
            )
            conn = self._start(reader, writer, session, None, tor=route.tor)
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

    def is_addressless(self, contact_id: str) -> bool:
        return contact_id in self._addressless

    # -- closing ---------------------------------------------------------------------------

    def begin_close(self) -> None:
        """Stop listening and dialling (connections stay until close_connections)."""
        self.closing = True
        for server in (self._server, self._onion_server):
            if server is not None:
                server.close()

    async def close_connections(self) -> None:
        """Close every connection with a goodbye and wait until it is sent."""
        for conn in list(self._connections):
            conn.close("shutting down")
        for conn in list(self._connections):
            with contextlib.suppress(Exception):
                await conn.drain()

    def cancel_dialers(self) -> list[asyncio.Task[None]]:
        tasks = list(self._dialing.values())
        for task in tasks:
            task.cancel()
        return tasks

    async def wait_closed(self) -> None:
        for server in (self._server, self._onion_server):
            if server is not None:
                with contextlib.suppress(Exception):
                    await server.wait_closed()


async def _first(*waits: Awaitable[object], within: float) -> None:
    """Return when the first of `waits` is done, or after `within` seconds."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()

"""asyncio TCP: a listener, a dialer with backoff, and a connection that feeds a Session.

This module moves bytes and keeps time (handshake deadline, keepalive, dead-peer
detection); what the bytes mean is the Session's business, what to do with the
events is the service's.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import functools
import logging
import os
import random
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from ..protocol import wire
from ..protocol.session import Closed, Received, Session, SessionEvent

log = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class Timing:
    """Timers of a connection, in seconds. Tests shorten them."""

    handshake_timeout: float = 10.0
    keepalive_interval: float = 15.0
    dead_after: float = 45.0
    connect_timeout: float = 5.0
    max_session_age: float = 3600.0  # then re-handshake with fresh ephemeral keys


EventHandler = Callable[["Connection", SessionEvent], Awaitable[None]]


class FastPath(Protocol):
    """Handlers that run in the read callback itself. A StreamReader would cost a task
    switch per read (~15-20 us of every message's way on a loaded machine, issue 15), so
    bytes are fed to the session as they come, and what can be handled synchronously is."""

    def received_now(self, conn: Connection, message: wire.WireMessage) -> bool:
        """Handle `message` now, without awaiting anything; False: it goes to the event
        handler instead (and so does everything after it, in order)."""
        ...

    def delivered(self, conn: Connection) -> None:
        """The messages of one read were all handed over: a worker that gathered them
        may write them now, in one go."""
        ...


class _Feed(asyncio.Protocol):
    """Takes a connection's transport over from its StreamReader: bytes go straight to the
    Connection; flow control and the close go on to the stream's own protocol, which the
    StreamWriter (drain, wait_closed) still uses."""

    def __init__(self, conn: Connection, stream: asyncio.BaseProtocol) -> None:
        self._conn = conn
        self._stream = stream

    def data_received(self, data: bytes) -> None:
        self._conn._on_data(data)

    def eof_received(self) -> bool:
        self._conn._on_data(b"")
        return True  # half-open: the Connection closes the transport itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._conn._on_lost(exc)
        self._stream.connection_lost(exc)

    def pause_writing(self) -> None:
        self._stream.pause_writing()

    def resume_writing(self) -> None:
        self._stream.resume_writing()


class Connection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        session: Session,
        on_event: EventHandler,
        timing: Timing,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.session = session
        self._on_event = on_event
        self._timing = timing
        self._clock = clock
        self._last_heard = clock()
        self._started = clock()
        self._ping = 0
        self.contact_id: str | None = None
        self.closed = asyncio.Event()
        self.adopted = asyncio.Event()
        self._reported_closed = False
        self.adopted_at = 0.0  # set when the service made it a contact's live session
        self._flush_scheduled = False
        # Encoded messages sent and not yet handed to the session: (record, batchable).
        self._pending: list[tuple[bytes, bool]] = []
        # Set by the links worker for its own sessions: handled in the read callback.
        self.fast: FastPath | None = None
        # Work for the run task, in arrival order: session events a fast handler left
        # (always handled first), then reads (b"": the peer's EOF) and a connection error.
        self._events: collections.deque[SessionEvent] = collections.deque()
        self._inbox: collections.deque[bytes | Exception] = collections.deque()
        self._inbox_bytes = 0
        self._busy = False  # the run task is handling events: new reads queue behind them
        self._wake = asyncio.Event()
        self._quiet_since = self._last_heard  # the last read, or the last keepalive check
        # The writer's transport, asked directly (StreamWriter.is_closing only asks it,
        # a call more three times a message; it never changes for a connection).
        self._transport = cast(asyncio.Transport, writer.transport)
        peer = writer.get_extra_info("peername")
        self.peer_address: tuple[str, int] | None = (peer[0], peer[1]) if peer else None

    def __repr__(self) -> str:
        who = self.contact_id or "?"
        return f"<Connection {who} {self.peer_address} {self.session.state.name}>"

    @property
    def initiator(self) -> bool:
        return self.session.initiator

    @property
    def last_heard(self) -> float:
        """When bytes last arrived (the connection's clock, monotonic by default)."""
        return self._last_heard

    @property
    def timing(self) -> Timing:
        """The timers this connection runs with now (per route: direct, LAN, Tor)."""
        return self._timing

    def use_timing(self, timing: Timing) -> None:
        """Change the keepalive timers of this connection (the service uses shorter ones
        for peers on the local link); applies from the next read timeout on."""
        self._timing = timing

    def _push(self) -> None:
        """Hand the queued messages to the session (which batches them into frames)."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        if not self.session.established or self._transport.is_closing():
            return  # dropped, as in send(): the outbox resends chat
        self.session.send_records(pending)
        if self.session.needs_rehandshake:
            self.close("rehandshake")

    def _flush(self) -> None:
        if self._pending:  # a read's closing flush usually has nothing queued
            self._push()
        self._write_out()

    def _write_out(self) -> None:
        data = self.session.data_to_send()
        if data and not self._transport.is_closing():
            self.writer.write(data)

    def send(self, message: wire.WireMessage, encoded: bytes | None = None) -> None:
        """Send if the session is live; otherwise drop it (the outbox resends chat).
        `encoded` is the message as `wire.encode_message` gives it, for a sender that
        sends one message on many sessions (a group message to every member).

        Messages queued in one pass of the event loop are encrypted together (chat
        messages and receipts in Batch records) and leave in one write."""
        if not self.session.established or self._transport.is_closing():
            return
        # Encoded (and so validated) now: a bad message fails here, at its sender.
        record = wire.encode_message(message) if encoded is None else encoded
        if self.queue(message, record):
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def queue(self, message: wire.WireMessage, encoded: bytes) -> bool:
        """`send(message, encoded)` without scheduling the flush: True when the caller
        must see that this connection's flush runs in this loop pass (`send_to_all`)."""
        if not self.session.established or self._transport.is_closing():
            return False
        self._pending.append((encoded, isinstance(message, wire.BATCHABLE)))
        if self._flush_scheduled:
            return False  # a flush is due already
        self._flush_scheduled = True
        return True

    def send_encoded(self, records: Sequence[bytes], *, batchable: bool = True) -> None:
        """`send` of messages already encoded by `wire.encode_message` (or its fast
        encoders), all batchable (chat: a stored batch of ours, queued in one call instead
        of one `send` per message, issue 15) or, with batchable=False, none (a group ack).
        Dropped if the session is not live, as in `send`."""
        if not self.session.established or self._transport.is_closing():
            return
        self._pending += [(record, batchable) for record in records]
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def flush(self) -> None:
        """Encrypt and write what is queued now, instead of at the end of this loop pass
        (for a caller that has queued everything it has: the acks of a stored batch)."""
        self._flush()

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self._flush()

    async def drain(self) -> None:
        self._flush()
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    def close(self, reason: str) -> None:
        """Close with an explicit Close message when the session is live."""
        if not self.closed.is_set():
            log.info("closing %r: %s", self, reason)
        self._push()  # what was sent before the close goes out before it
        self.session.close(reason)
        self._flush()
        self._shutdown()

    def _shutdown(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        self.closed.set()
        self._wake.set()  # the run task ends now, not when the transport has closed

    async def run(self) -> None:
        """Read until the connection ends; always returns normally."""
        try:
            self._flush()
            await self._attach()
            await self._read_loop()
        except (ConnectionError, OSError) as exc:
            await self._emit(Closed(f"connection error: {exc}", clean=False))
        finally:
            self._shutdown()
            if not self._reported_closed:
                # Closed from our side (close() called): the service still hears of it once.
                reason = self.session.close_reason or "closed"
                with contextlib.suppress(Exception):
                    await self._emit(Closed(reason, clean=False))
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    async def _attach(self) -> None:
        """Feed the transport's bytes to this connection from now on (_Feed), after what
        the StreamReader holds already (a caller may have read from it first)."""
        transport = self._transport
        transport.set_protocol(_Feed(self, transport.get_protocol()))
        self._busy = True  # what _Feed gets meanwhile is queued, after what the reader has
        held: list[bytes] = []
        try:
            while True:
                # Its buffer, or b"" if it saw the end: returned at once. Otherwise the read
                # would wait for bytes that no longer come to it, and is cancelled.
                read = asyncio.ensure_future(self.reader.read(READ_CHUNK))
                await asyncio.sleep(0)
                if not read.done():
                    read.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await read
                    break
                held.append(read.result())  # raises the connection's error, if it had one
                if not held[-1]:
                    break
        finally:
            self._busy = False
        self._inbox.extendleft(reversed(held))
        self._inbox_bytes += sum(map(len, held))
        if not transport.is_closing() and not transport.is_reading():
            transport.resume_reading()  # the StreamReader may have paused it when full

    async def _read_loop(self) -> None:
        handshake_deadline = self._started + self._timing.handshake_timeout
        while not self.closed.is_set():
            if await self._work():
                return
            t = self._timing  # may change while live (use_timing)
            wait = self._next_wait(t, handshake_deadline)
            if wait is None:
                return
            if self.session.established:
                # Counted from the last read (reads no longer pass through here).
                wait -= self._clock() - max(self._quiet_since, self._last_heard)
            if self._events or self._inbox:
                continue
            self._wake.clear()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                if self._wake.is_set():
                    continue
            if not self._silent(t):
                continue
            self._quiet_since = self._clock()
            if not self._on_silence(t):
                return

    def _silent(self, t: Timing) -> bool:
        """Nothing arrived for a keepalive interval (or the handshake's time is up)."""
        if not self.session.established:
            return True
        quiet = self._clock() - max(self._quiet_since, self._last_heard)
        return quiet >= t.keepalive_interval

    async def _work(self) -> bool:
        """Handle what the read callback left for this task, in order; True once the
        connection has ended (the peer's EOF, or the session closed)."""
        self._busy = True
        try:
            while self._events or self._inbox:
                if self._events:
                    event = self._events.popleft()
                    if not (isinstance(event, Received) and self.closed.is_set()):
                        await self._emit(event)
                    if not self._events:
                        self._delivered()
                    continue
                item = self._inbox.popleft()
                if isinstance(item, Exception):
                    raise item
                self._inbox_bytes -= len(item)
                self._resume_if_drained()
                if not item:
                    for event in self.session.receive_eof():
                        await self._emit(event)
                    return True
                await self._deliver(item)
                if self.session.closed:
                    return True
            return self.session.closed
        finally:
            self._busy = False

    def _on_data(self, data: bytes) -> None:
        """Bytes from the transport (b"": EOF). Handled right here while the run task has
        nothing queued and every message is taken by the fast path; else queued for it."""
        if data:
            self._last_heard = self._clock()
        if self._busy or self._events or self._inbox or not data or self.fast is None:
            self._queue(data)
            return
        scheduled = self._flush_scheduled
        # What the handlers send leaves with this read's own flush, below: no loop
        # callback of its own per read (send() schedules one only if none is due).
        self._flush_scheduled = True
        try:
            events = self.session.receive_data(data)
            self._handle_now(events, self.fast)
            self._flush()  # the session's own answers first, then what handlers sent
        except Exception:
            log.exception("handling a read failed on %r", self)
            self.close("internal error")
        finally:
            self._flush_scheduled = scheduled

    def _handle_now(self, events: list[SessionEvent], fast: FastPath) -> None:
        for i, event in enumerate(events):
            if isinstance(event, Received):
                if self.closed.is_set() or fast.received_now(self, event.message):
                    continue  # closed by a handler: unacknowledged, the peer sends it again
            self._events.extend(events[i:])  # the rest, in order, on the run task
            self._wake.set()
            return
        if events:
            fast.delivered(self)

    def _delivered(self) -> None:
        if self.fast is not None:
            self.fast.delivered(self)
        self._flush()

    def _queue(self, item: bytes | Exception) -> None:
        self._inbox.append(item)
        self._wake.set()
        if isinstance(item, bytes):
            self._inbox_bytes += len(item)
            transport = self._transport
            if self._inbox_bytes > 2 * READ_CHUNK and not transport.is_closing():
                transport.pause_reading()  # the handlers are behind: let TCP push back

    def _resume_if_drained(self) -> None:
        transport = self._transport
        if (
            self._inbox_bytes <= READ_CHUNK
            and not transport.is_closing()
            and not transport.is_reading()
        ):
            transport.resume_reading()

    def _on_lost(self, exc: Exception | None) -> None:
        self._queue(exc if exc is not None else b"")

    def _next_wait(self, t: Timing, handshake_deadline: float) -> float | None:
        """How long the next read may take, or None once the connection is closed for age
        or for a handshake that took too long."""
        now = self._clock()
        if self.session.established:
            if now - self._started >= t.max_session_age:
                self.close("rehandshake")  # fresh ephemeral keys: the dialer reconnects
                return None
            return t.keepalive_interval
        # One deadline for the whole handshake, so a stranger trickling bytes cannot hold
        # the connection open.
        wait = handshake_deadline - now
        if wait <= 0:
            self.close("handshake timed out")
            return None
        return wait

    def _on_silence(self, t: Timing) -> bool:
        """Nothing arrived in time: ping a live peer, or close one that stayed silent too
        long. False once closed."""
        if not self.session.established:
            return True  # the handshake deadline is checked before the next read
        if self._clock() - self._last_heard >= t.dead_after:
            self.close("peer unresponsive")
            return False
        self._ping += 1
        self.send(wire.Ping(self._ping))
        return True

    async def _deliver(self, data: bytes) -> None:
        self._last_heard = self._clock()
        events = self.session.receive_data(data)
        self._flush()
        for event in events:
            if isinstance(event, Received) and self.closed.is_set():
                continue  # closed by a handler: unacknowledged, the peer sends it again
            await self._emit(event)
        if events:
            self._delivered()
        self._flush()  # handlers may have queued bytes (an accepted invite's hello)

    async def _emit(self, event: SessionEvent) -> None:
        if isinstance(event, Closed):
            if self._reported_closed:
                return
            self._reported_closed = True
            self.closed.set()
        try:
            await self._on_event(self, event)
        except Exception:
            log.exception("event handler failed for %r on %r", event, self)
            self.close("internal error")


def send_to_all(conns: Iterable[Connection], message: wire.WireMessage, encoded: bytes) -> None:
    """`Connection.send(message, encoded)` on each of `conns`, in their order, with one
    loop callback for all of their flushes instead of one per connection (a group
    message to 19 members scheduled 19, ~3 us each on the admin's path: issue 15). Each
    connection still writes once in this loop pass, with whatever else it was sent in
    the pass, as with `send`."""
    due = [conn for conn in conns if conn.queue(message, encoded)]
    if due:
        asyncio.get_running_loop().call_soon(_scheduled_flushes, due)


def _scheduled_flushes(conns: list[Connection]) -> None:
    # Every session's frames first, then the writes back to back: a write wakes its
    # member, which may take this CPU from us before the next member's frame is built
    # (issue 15).
    for conn in conns:
        conn._flush_scheduled = False  # a later send schedules its own flush again
    for conn in conns:
        try:
            conn._push()
        except Exception:  # one session's failure must not keep the others' frames
            log.exception("sending failed on %r", conn)
            conn.close("internal error")
    for conn in conns:
        conn._write_out()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
# Called with the remote host of each accepted socket, before anything else: a callable
# that ends the connection's admission (when it authenticates, or ends), or None to close
# the socket at once.
Admit = Callable[[str], Callable[[], None] | None]
AdmittedHandler = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter, Callable[[], None]], Awaitable[None]
]

# After accept() fails (EMFILE: out of descriptors), wait this long before the next try.
_ACCEPT_RETRY_DELAY = 0.1


class Listener:
    """The listening sockets of one peer: every address family on the same port, each
    with its own accept loop.

    asyncio.start_server(host=None, port=0) binds IPv4 and IPv6 each to its own ephemeral
    port, so an address advertised with "the" port would point at nothing on one family:
    we bind the families ourselves on one port. And asyncio's servers accept up to 100
    sockets per wake-up and open a transport for each before any handler runs, so a flood
    of connections costs descriptors before it can be refused: our loop accepts one socket
    at a time and asks `admit` first; a refused socket is closed there and then."""

    def __init__(
        self, sockets: list[socket.socket], handler: AdmittedHandler, admit: Admit
    ) -> None:
        if not sockets:
            raise RuntimeError("a listener needs at least one socket")
        self._sockets = sockets
        self._handler = handler
        self._admit = admit
        self._connections: set[asyncio.Task[None]] = set()
        self._accepting = [
            asyncio.create_task(self._accept_loop(sock), name="chinwag-accept") for sock in sockets
        ]

    @property
    def sockets(self) -> list[socket.socket]:
        return list(self._sockets)

    @property
    def port(self) -> int:
        ports = {int(sock.getsockname()[1]) for sock in self.sockets}
        if len(ports) != 1:  # cannot happen with serve(); a guard for what we advertise
            raise RuntimeError(f"listening sockets disagree on the port: {sorted(ports)}")
        return ports.pop()

    async def _accept_loop(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        told = False
        while True:
            try:
                sock, address = await loop.sock_accept(listening)
            except OSError as exc:  # out of descriptors or memory: the backlog waits
                if not told:
                    log.warning("accept() failed (%s); retrying", exc)
                    told = True
                await asyncio.sleep(_ACCEPT_RETRY_DELAY)
                continue
            told = False
            settle = self._admit(str(address[0]))
            if settle is None:
                if os.name == "posix":  # reset, not FIN: nothing to wait for
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
                continue
            task = asyncio.create_task(self._serve(sock, settle), name="chinwag-inbound")
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def _serve(self, sock: socket.socket, settle: Callable[[], None]) -> None:
        try:
            sock.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=sock, limit=READ_CHUNK)
        except OSError:
            settle()
            sock.close()
            return
        try:
            await self._handler(reader, writer, settle)
        except Exception:
            log.exception("inbound connection handler failed")
        finally:
            settle()
            writer.close()

    def close(self) -> None:
        """Stop accepting (connections already accepted go on, as with asyncio servers)."""
        for task, sock in zip(self._accepting, self._sockets, strict=True):
            # Closed once its loop has ended, so the event loop has dropped its reader
            # first (a descriptor closed under a registered reader could be reused by a
            # new socket before the reader is removed).
            task.add_done_callback(functools.partial(_close_after, sock))
            task.cancel()

    async def wait_closed(self) -> None:
        await asyncio.gather(*self._accepting, return_exceptions=True)


def _close_after(sock: socket.socket, _task: asyncio.Task[None]) -> None:
    sock.close()


def _admit_all(host: str) -> Callable[[], None]:
    return lambda: None


# How often a fresh ephemeral port taken on IPv4 may turn out to be in use on IPv6.
_PORT_ATTEMPTS = 20


async def serve(host: str, port: int, handler: Handler) -> Listener:
    """Listen on host:port (see serve_admitting), admitting every connection."""

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, settle: Callable[[], None]
    ) -> None:
        await handler(reader, writer)

    return await serve_admitting(host, port, handle, _admit_all)


async def serve_admitting(host: str, port: int, handler: AdmittedHandler, admit: Admit) -> Listener:
    """Listen on host:port; host "" means every interface, IPv4 and IPv6 on one port.

    With port 0 the OS picks the port for IPv4 and IPv6 is bound to the same one; if that
    is taken on IPv6, another port is tried. A machine without IPv6 listens on IPv4 only.
    Every accepted socket is first offered to `admit` (see Listener)."""
    if host not in ("", "0.0.0.0", "::"):  # noqa: S104 - one given address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return Listener([_listening_socket(family, host, port)], handler, admit)
    last_error: OSError | None = None
    for _ in range(_PORT_ATTEMPTS if port == 0 else 1):
        try:
            sockets = _bind_all_families(port)
        except OSError as exc:
            last_error = exc
            if port != 0 or exc.errno != errno.EADDRINUSE:
                raise
            continue
        return Listener(sockets, handler, admit)
    assert last_error is not None
    raise last_error


def _bind_all_families(port: int) -> list[socket.socket]:
    """An IPv4 socket on port (0: the OS picks) and an IPv6-only one on the same port."""
    v4 = _listening_socket(socket.AF_INET, "0.0.0.0", port)  # noqa: S104
    chosen = int(v4.getsockname()[1])
    if not socket.has_ipv6:
        return [v4]
    try:
        v6 = _listening_socket(socket.AF_INET6, "::", chosen)
    except OSError as exc:
        if exc.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT):
            log.info("no IPv6 on this machine (%s): listening on IPv4 only", exc)
            return [v4]
        v4.close()
        raise
    return [v4, v6]


def _listening_socket(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6:
            # Its own socket for IPv6, so IPv4 keeps the separate one on the same port.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if os.name == "posix":  # on Windows SO_REUSEADDR would let others steal the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(100)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bound_port(server: Listener) -> int:
    return server.port


async def dial(
    host: str, port: int, connect_timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with asyncio.timeout(connect_timeout):
        reader, writer = await asyncio.open_connection(host, port, limit=READ_CHUNK)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


class Backoff:
    """Exponential backoff with jitter: sleep uniform(c/2, c), c = min(cap, base * 2**n).

    The random half keeps two peers that failed together from retrying in lockstep."""

    def __init__(self, rng: random.Random, base: float = 0.5, cap: float = 60.0) -> None:
        self._rng = rng
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0

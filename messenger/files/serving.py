"""Serving files: tickets from FileRequest, inbound bulk connections, the serving loop."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..protocol import wire
from ..records import TransferState
from .base import FileBase
from .bulk import PEEK_LEN, PREAMBLE_LEN, BulkError, Channel, Served, derive_keys, serve
from .bulk import encode_preamble as _encode_bulk_preamble
from .transfer import PERSIST_INTERVAL, Ticket, Transfer

if TYPE_CHECKING:
    from ..net.transport import Connection

log = logging.getLogger(__name__)

BULK_PEEK = _encode_bulk_preamble(bytes(16))[:PEEK_LEN]  # what starts every bulk preamble
TICKET_TTL = 30.0  # seconds a FileRequest's ticket waits for its bulk connection
MAX_BULK_CONNECTIONS = 32


class FileServing(FileBase):
    """What we serve: a ticket per FileRequest, redeemed by one bulk connection."""

    def _on_request(self, contact_id: str, conn: Connection, request: wire.FileRequest) -> None:
        f = self._files.get(request.root)
        if f is None or f.have is None or f.have.have == 0:
            conn.send(wire.FileControl(request.root, wire.FileAction.UNAVAILABLE, "not held here"))
            return
        if not f.row.serving:
            reason = "paused by the sender" if f.state is TransferState.COMPLETE else "not served"
            conn.send(wire.FileControl(request.root, wire.FileAction.PAUSE, reason))
            return
        now = time.monotonic()
        for ticket in [t for t, v in self._tickets.items() if v.expires < now]:
            del self._tickets[ticket]
        self._tickets[request.ticket] = Ticket(
            request.root, contact_id, request.secret, now + TICKET_TTL
        )
        if contact_id not in f.peers or f.peers[contact_id] == "offered":
            f.peers[contact_id] = "downloading"

    # -- inbound bulk connections (service hook) ----------------------------------------------

    async def peek_inbound(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        settled: Callable[[], None] = lambda: None,
    ) -> bytes | None:
        """The first bytes of an inbound connection: a bulk preamble is handled here (and
        None returned); anything else is returned as soon as it differs from one (or at
        EOF), for the chat session to start with. `settled()` is called once a whole bulk
        preamble arrived, before the (long) transfer: the connection no longer counts as
        a stranger's (a preamble with no valid ticket is closed at once)."""
        got = b""
        try:
            async with asyncio.timeout(self._timing.handshake_timeout):
                while len(got) < PEEK_LEN and got == BULK_PEEK[: len(got)]:
                    more = await reader.read(PEEK_LEN - len(got))
                    if not more:
                        return got  # EOF: the session reports it
                    got += more
                if got != BULK_PEEK:
                    return got
                ticket = await reader.readexactly(PREAMBLE_LEN - PEEK_LEN)
        except TimeoutError:
            log.info("closing an inbound connection: handshake timed out")
            writer.close()
            return None
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return None
        settled()
        await self._serve_inbound(writer, ticket)
        return None

    async def _serve_inbound(self, writer: asyncio.StreamWriter, ticket_id: bytes) -> None:
        ticket = self._tickets.pop(ticket_id, None)
        if ticket is None or self._closing or self._bulk_open >= MAX_BULK_CONNECTIONS:
            writer.close()
            return
        f = self._files.get(ticket.root)
        if f is None or f.manifest is None or f.have is None:
            writer.close()
            return
        raw = writer.get_extra_info("socket")
        sock = socket.socket(fileno=os.dup(raw.fileno()))
        writer.transport.abort()  # asyncio lets go; our duplicate keeps the connection
        sock.setblocking(True)
        d2s, s2d = derive_keys(ticket.secret)
        channel = Channel(sock, send_key=s2d, recv_key=d2s)
        contact_id = ticket.contact_id
        loop = asyncio.get_running_loop()

        def is_serving() -> str | None:
            if self._closing:
                return "the sender is shutting down"
            return None if f.row.serving else "paused by the sender"

        def on_served(n: int) -> None:
            loop.call_soon_threadsafe(self._served, f, contact_id, n)

        served = Served(f.root, f.manifest, f.have, is_serving, on_served)
        self._bulk_open += 1
        self._channels.add(channel)
        try:
            await loop.run_in_executor(self._pool, serve, channel, self.store, served)
        except (BulkError, OSError) as exc:
            log.info("serving %s to %s ended: %s", f.row.name, contact_id[:8], exc)
        finally:
            self._bulk_open -= 1
            self._channels.discard(channel)
            channel.close()

    def _served(self, f: Transfer, contact_id: str, n: int) -> None:
        f.served_bytes[contact_id] = f.served_bytes.get(contact_id, 0) + n
        now = time.monotonic()
        if now - f.last_emit >= PERSIST_INTERVAL:
            f.last_emit = now
            self._changed(f)

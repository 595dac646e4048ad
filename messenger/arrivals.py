"""1:1 arrivals: stored in group commits, then acknowledged (docs/protocol.md §9.3).

The chat worker (chat.py) hands every chat message a contact's session brings here. They
are written by a Batcher; once a read's messages were all handed over (`flush_now`, from
the transport's read callback), what is queued is written right there when nothing else
is being written, instead of on the batcher task's next turn: a task switch less on the
send -> delivered path, and still one transaction for all the messages of that read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .core.batch import Batcher
from .errors import DiskFull
from .events import MessageAdded
from .net.transport import Connection
from .protocol import wire

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .core.ports import Clock, Db, Emit
    from .records import MessageRecord
    from .storage.repository import Repository


@dataclass(slots=True)
class _Arrival:
    contact_id: str
    message: wire.ChatMessage
    connection: Connection


def _by_contact(arrivals: list[_Arrival]) -> dict[str, list[wire.ChatMessage]]:
    by_contact: dict[str, list[wire.ChatMessage]] = {}
    for a in arrivals:
        by_contact.setdefault(a.contact_id, []).append(a.message)
    return by_contact


class Arrivals:
    """Stores arriving chat messages, then acknowledges each (duplicates too: their first
    acknowledgement was lost); on a full disk nothing is acknowledged.

    A read's messages are held until `flush_now` (the transport calls it once the read's
    messages were handed over; a callback scheduled at the first one is the fallback):
    written there and then when the batcher is idle and the database thread too, else
    handed to the batcher, behind what it has."""

    def __init__(
        self,
        *,
        db: Db,
        repo: Repository,
        emit: Emit,
        clock: Clock,
        not_stored: Callable[[DiskFull, set[str]], None],
        stored: Callable[[bool], None],
        batch_max: int,
    ) -> None:
        self._db = db
        self._repo = repo
        self._emit = emit
        self._clock = clock
        self._not_stored = not_stored  # the disk is full: these contacts' messages wait
        self._stored_hook = stored  # a write succeeded (True: with new messages)
        self._batcher: Batcher[_Arrival, bool] = Batcher(self._store, batch_max, "chinwag-incoming")
        self._held: list[_Arrival] = []
        self._writing = False

    def post(self, contact_id: str, message: wire.ChatMessage, conn: Connection) -> None:
        if not self._held:
            asyncio.get_running_loop().call_soon(self.flush_now)
        self._held.append(_Arrival(contact_id, message, conn))

    def flush_now(self) -> None:
        """Write the held arrivals now, in the caller's loop pass, if nothing is being
        written and the database thread is idle (a task switch less on the send ->
        delivered path, and one transaction for the read); else the batcher writes them
        after what it has."""
        held = self._held
        if not held:
            return
        self._held = []
        if not self._writing and self._batcher.idle:
            self._writing = True
            try:
                if self._store_now(held) is not None:
                    return
            except Exception:  # as the batcher does: logged; unacknowledged, so resent
                log.exception("storing arrivals failed")
                return
            finally:
                self._writing = False
        for arrival in held:
            self._batcher.post(arrival)

    async def aclose(self) -> None:
        self._held.clear()  # never acknowledged: their senders still have them
        await self._batcher.aclose()

    def _store_now(self, arrivals: list[_Arrival]) -> list[bool] | None:
        """`_store` from synchronous code; None if the database thread is busy."""
        if not self._db.can_write_now([a.message.body for a in arrivals]):
            return None
        by_contact = _by_contact(arrivals)
        try:
            stored = self._db.write_now(
                self._repo.store_incoming, list(by_contact.items()), int(self._clock() * 1000)
            )
        except DiskFull as exc:
            return self._unstored(exc, by_contact)
        return self._acknowledge(arrivals, stored)

    async def _store(self, arrivals: list[_Arrival]) -> list[bool]:
        """Group commit of arriving messages, then one delivery receipt per connection."""
        by_contact = _by_contact(arrivals)
        try:
            stored = await self._db.write(
                [a.message.body for a in arrivals],
                self._repo.store_incoming,
                list(by_contact.items()),
                int(self._clock() * 1000),
            )
        except DiskFull as exc:
            return self._unstored(exc, by_contact)
        return self._acknowledge(arrivals, stored)

    def _unstored(self, exc: DiskFull, by_contact: dict[str, list[wire.ChatMessage]]) -> list[bool]:
        # Not stored, so not acknowledged: the senders keep these in their outboxes.
        # They resend them only on a new session, so ours are closed once there is room
        # again (the service's _space_back), not now: a session closed at once would be
        # redialled at once (a successful dial resets the backoff) and fail again, over
        # and over.
        self._not_stored(exc, set(by_contact))
        return [False] * sum(map(len, by_contact.values()))

    def _acknowledge(self, arrivals: list[_Arrival], stored: list[MessageRecord]) -> list[bool]:
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
            conn.flush()  # the acks leave now, not after the MessageAdded handlers run
        self._stored_hook(bool(stored))  # after the acks: off the send -> delivered path
        for record in stored:
            self._emit(MessageAdded(record))
        return [True] * len(arrivals)

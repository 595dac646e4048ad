"""1:1 chat: sending texts (outbox, resend on reconnect), arrivals (stored in group
commits, then acknowledged), receipts, typing, and the history and search queries.

PeerService builds one Chat and wires it to the ports it uses (core/ports.py); the
service's public messaging methods delegate here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from .arrivals import Arrivals
from .core.batch import Batcher
from .core.indexer import SearchIndexer
from .core.settings import SETTING_READ_RECEIPTS, SETTING_TYPING
from .core.text import check_text
from .errors import ContactKeyChanged, ContactNotFound, DiskFull
from .events import MessageAdded, MessageStatesChanged, TypingChanged
from .net.transport import Connection
from .protocol import wire
from .records import ConversationSummary, MessageRecord, MessageState

if TYPE_CHECKING:
    from .core.ports import Clock, ContactKeyring, Db, Emit, LinkRegistry, Tasks
    from .storage.repository import Repository

# A Lamport time or sequence number this large can only come from a hostile peer (and
# would overflow SQLite's 64-bit integers one increment later).
MAX_COUNTER = 1 << 62

# Recording DELIVERED/READ states waits this long to gather receipts into one commit: it
# is bookkeeping after the fact (the event is emitted at once), kept off the path of the
# next message.
RECEIPT_COMMIT_DELAY = 0.05

# An outbox resend waits for the socket's buffer after this many messages.
OUTBOX_DRAIN_EVERY = 256

_ReceiptUpdate = tuple[str, tuple[bytes, ...], MessageState]
_Send = tuple[str, str]  # contact id, body


class Chat:
    """The 1:1 conversations of one service."""

    def __init__(  # noqa: PLR0913  (the ports PeerService wires in, keyword-only)
        self,
        *,
        db: Db,
        repo: Repository,
        emit: Emit,
        tasks: Tasks,
        clock: Clock,
        links: LinkRegistry,
        contacts: ContactKeyring,
        settings: Mapping[str, Any],
        send_offer_for: Callable[[Connection, MessageRecord], bool],
        not_stored: Callable[[DiskFull, set[str]], None],
        note_disk_full: Callable[[DiskFull], None],
        space_back: Callable[[], None],
        batch_max: int,
    ) -> None:
        self._db = db
        self._repo = repo
        self._emit = emit
        self._tasks = tasks
        self._clock = clock
        self._links = links
        self._contacts = contacts
        self._settings = settings  # the service's settings, read live
        self._send_offer_for = send_offer_for  # files: an outbox entry that is a file offer
        # A full disk (the service watches for room): arrivals not stored, a write that
        # failed, and a write that succeeded (room again if the disk was full).
        self._not_stored = not_stored
        self._note_disk_full = note_disk_full
        self._space_back = space_back
        self._batch_max = batch_max
        self._indexer = SearchIndexer(db, repo.index_pending, note_disk_full)
        self._incoming: Arrivals | None = None
        self._outgoing: Batcher[_Send, MessageRecord] | None = None
        self._receipts: Batcher[_ReceiptUpdate, None] | None = None

    def start(self) -> None:
        """Start the batchers and the search indexer (once the profile is loaded)."""
        self._incoming = Arrivals(
            db=self._db,
            repo=self._repo,
            emit=self._emit,
            clock=self._clock,
            not_stored=self._not_stored,
            stored=self._arrivals_stored,
            batch_max=self._batch_max,
        )
        self._outgoing = Batcher(
            self._queue_sends,
            self._batch_max,
            "chinwag-outgoing",
            write_now=self._queue_sends_now,
        )
        self._receipts = Batcher(
            self._store_receipts,
            self._batch_max,
            "chinwag-receipts",
            gather_delay=RECEIPT_COMMIT_DELAY,
        )
        self._tasks.spawn(self._indexer.run(), "chinwag-search-indexer")
        self.index_soon()  # whatever a killed process left unindexed

    async def aclose(self) -> None:
        """Commit what the batchers hold (the service's tasks are cancelled already)."""
        for committer in (self._incoming, self._outgoing):
            if committer is not None:
                await committer.aclose()
        if self._receipts is not None:
            await self._receipts.aclose(flush=True)

    def on_message(self, contact_id: str, conn: Connection, message: wire.WireMessage) -> bool:
        """A contact's chat message, receipt or typing notice; False: not one of ours."""
        match message:
            case wire.ChatMessage():
                self._on_chat(contact_id, conn, message)
            case wire.Receipt(kind=kind, msg_ids=msg_ids):
                state = (
                    MessageState.DELIVERED
                    if kind is wire.ReceiptKind.DELIVERED
                    else MessageState.READ
                )
                # The receipt is the fact: show it now. Recording it is bookkeeping, group-
                # committed without holding up the read loop (if it is lost in a crash, the
                # message is resent, dropped as a duplicate and acknowledged again).
                self._emit(MessageStatesChanged(contact_id, msg_ids, state))
                assert self._receipts is not None
                self._receipts.post((contact_id, msg_ids, state))
            case wire.Typing(active=active):
                if self._settings[SETTING_TYPING]:
                    self._emit(TypingChanged(contact_id, active))
            case _:
                return False
        return True

    def send_text(self, contact_id: str, body: str) -> Awaitable[MessageRecord]:
        """Store a message in the outbox (durably) and send it if the contact is online;
        await it for the stored record (MessageAdded is emitted before). A plain function
        returning an awaitable, not a coroutine, so a program gathering a thousand sends
        makes no Task per message (issue 15). Body and contact are checked now (raising
        ServiceError at the call); a later failure (a full disk) is raised by the await."""
        check_text(body)
        if contact_id not in self._contacts:
            raise ContactNotFound(f"no contact {contact_id}")
        if self._contacts.is_held(contact_id):
            return self._refuse_held(contact_id)
        assert self._outgoing is not None
        # Written at the end of this loop pass: right there if it is alone (or few) and
        # nothing else is being written (_queue_sends_now), else by the batcher.
        return self._outgoing.submit_soon((contact_id, body))  # stored, sent, announced

    async def _refuse_held(self, contact_id: str) -> MessageRecord:
        """Nothing of ours goes to a contact whose safety number changed until the user
        verified or accepted it (docs/threat-model.md §4.14): raises ContactKeyChanged
        with the contact's name, read from the database."""
        record = await self._db.run(self._repo.contact, contact_id)
        raise ContactKeyChanged(contact_id, record.display_name if record else None)

    async def _queue_sends(self, items: list[_Send]) -> list[MessageRecord]:
        # Stored first, then sent: a message is in the outbox before it leaves (DESIGN
        # "kept in the outbox until acknowledged"). Sending while the row commits saved
        # ~100 us of send -> delivered on a quiet machine, but a failed commit would have
        # left a message the recipient has and we do not, and its seq reused.
        records = await self._db.write(
            [body for _, body in items],
            self._repo.queue_outgoing_many,
            items,
            int(self._clock() * 1000),
        )
        return self._sent(records)

    def _queue_sends_now(self, items: list[_Send]) -> list[MessageRecord] | None:
        """_queue_sends from synchronous code (the batcher's `write_now`): None if the
        database thread is busy or the write is big."""
        if not self._db.can_write_now([body for _, body in items]):
            return None
        records = self._db.write_now(
            self._repo.queue_outgoing_many, items, int(self._clock() * 1000)
        )
        return self._sent(records)

    def _sent(self, records: list[MessageRecord]) -> list[MessageRecord]:
        """Stored: send them to whoever is online, dial the others, announce them."""
        self.index_soon()
        # Sent in the same loop pass as the commit, instead of from each send_text once
        # its task resumes (one loop pass later; ~15-25 us of the send -> delivered path).
        # Packed from the records' fields and queued per contact in one call: no
        # ChatMessage and no Connection.send per message (issue 15).
        routes: dict[str, tuple[Connection, bytes, list[bytes]] | None] = {}  # once each
        pack = wire.pack_chat_fields
        for r in records:
            cid = r.contact_id
            if cid in routes:
                route = routes[cid]
            else:
                conn = self._links.ready(cid)
                route = routes[cid] = (
                    None if conn is None else (conn, self._contacts.conversation(cid), [])
                )
            if route is not None:
                conv = route[1]
                packed = pack(r.msg_id, conv, r.seq, r.lamport, r.sent_at_ms, r.body)
                if packed is None:  # not plainly valid: the checked path raises the error
                    packed = wire.encode_message(
                        wire.ChatMessage(r.msg_id, conv, r.seq, r.lamport, r.sent_at_ms, r.body)
                    )
                route[2].append(packed)
        for cid, route in routes.items():
            if route is None:
                self._links.poke(cid)
            else:
                route[0].send_encoded(route[2])
                route[0].flush()
        # Announced here, in the same pass (no receipt can be read before it, so
        # MessageAdded comes before the DELIVERED that follows it), and before the
        # senders' awaits return: after the flush, so subscribers cost the sending nothing.
        for record in records:
            self._emit(MessageAdded(record))
        return records

    def _send_chat(self, conn: Connection, r: MessageRecord) -> None:
        conv = self._contacts.conversation(r.contact_id)
        conn.send(wire.ChatMessage(r.msg_id, conv, r.seq, r.lamport, r.sent_at_ms, r.body))

    def online(self, contact_id: str, conn: Connection) -> None:
        """The contact's session went live: resend its outbox on it."""
        self._tasks.spawn(self.flush_outbox(contact_id, conn), f"chinwag-flush-{contact_id[:8]}")

    def send_waiting(self, contact_id: str) -> None:
        """Send the contact's outbox now if it is online, else have it dialled now."""
        conn = self._links.ready(contact_id)
        if conn is not None:
            self.online(contact_id, conn)
        else:
            self._links.poke(contact_id)

    async def flush_outbox(self, contact_id: str, conn: Connection) -> None:
        """Resend everything not yet acknowledged: on every (re)connect."""
        pending = await self._db.run(self._repo.outbox, contact_id)
        for i, record in enumerate(pending):
            if conn.closed.is_set() or not conn.session.established:
                return
            if not self._send_offer_for(conn, record):  # a file offer goes as such
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

    def _on_chat(self, contact_id: str, conn: Connection, message: wire.ChatMessage) -> None:
        if message.conversation != self._contacts.conversation(contact_id):
            conn.close("message for an unknown conversation")
            return
        if message.lamport >= MAX_COUNTER or message.seq >= MAX_COUNTER:
            conn.close("implausible Lamport time or sequence number")
            return
        assert self._incoming is not None
        self._incoming.post(contact_id, message, conn)

    def _arrivals_stored(self, stored: bool) -> None:
        """A write of arrivals succeeded: room again, if the disk was full (the service's
        _space_back does nothing otherwise); new messages are to be indexed."""
        self._space_back()
        if stored:
            self.index_soon()

    def index_soon(self) -> None:
        """Wake the background search indexer (it batches, so bursts cost little)."""
        self._indexer.soon()

    async def states_recorded(self) -> None:
        """Wait until every receipt that arrived so far is recorded, so that a read shows
        the states that MessageStatesChanged events already announced."""
        if self._receipts is not None:
            await self._receipts.settle()

    async def _store_receipts(self, updates: list[_ReceiptUpdate]) -> list[None]:
        try:
            await self._db.run(self._repo.record_states, updates)
        except DiskFull as exc:
            # Bookkeeping only: the message stays in the outbox, is resent later, dropped
            # as a duplicate and acknowledged again, and then its state is recorded.
            self._note_disk_full(exc)
        return [None] * len(updates)

    def arrivals_done(self) -> None:
        """The messages of one read were handed over (see Arrivals.flush_now)."""
        if self._incoming is not None:
            self._incoming.flush_now()

    async def history(
        self,
        contact_id: str,
        *,
        limit: int = 50,
        before: tuple[int, bytes] | None = None,
        after: tuple[int, bytes] | None = None,
    ) -> list[MessageRecord]:
        """A page of a conversation, oldest first (see Repository.history)."""
        await self.states_recorded()
        return await self._db.run(
            self._repo.history, contact_id, limit=limit, before=before, after=after
        )

    async def conversations(self) -> list[ConversationSummary]:
        """Every contact with its newest message and unread count, most recent first."""
        await self.states_recorded()
        rows = await self._db.run(self._repo.conversations)  # one read of kept summaries
        summaries = [
            ConversationSummary(
                r.contact, r.last_message, r.unread, self._links.is_online(r.contact.id), r.queued
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
        await self.states_recorded()
        return await self._db.run(
            self._repo.search, text, contact_id=contact_id, limit=limit, before=before
        )

    async def mark_read(self, contact_id: str) -> int:
        """Mark the conversation read here; tell the contact (a READ receipt) only if the
        user allows it and the contact is not held (threat-model §4.14: nothing of ours
        goes to a changed safety number, not even when we read)."""
        ids = await self._db.run(self._repo.mark_seen, contact_id)
        conn = self._links.connection(contact_id)
        if (
            ids
            and self._settings[SETTING_READ_RECEIPTS]
            and not self._contacts.is_held(contact_id)
            and conn
            and conn.session.established
        ):
            for start in range(0, len(ids), wire.MAX_RECEIPT_IDS):
                conn.send(
                    wire.Receipt(
                        wire.ReceiptKind.READ, tuple(ids[start : start + wire.MAX_RECEIPT_IDS])
                    )
                )
        return len(ids)

    def set_typing(self, contact_id: str, active: bool) -> None:
        """Tell the contact we are typing (if the user allows it; never a held contact)."""
        conn = self._links.connection(contact_id)
        if (
            self._settings[SETTING_TYPING]
            and conn
            and contact_id in self._contacts
            and not self._contacts.is_held(contact_id)
        ):
            if conn.session.established:
                conn.send(wire.Typing(self._contacts.conversation(contact_id), active))

    async def unread_counts(self) -> dict[str, int]:
        return await self._db.run(self._repo.unread_counts)

    async def outbox_counts(self) -> dict[str, int]:
        await self.states_recorded()
        return await self._db.run(self._repo.outbox_counts)

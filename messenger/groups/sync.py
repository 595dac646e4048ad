"""Group messages between members: storing, acknowledging, delivery marks and catch-up
(docs/protocol.md §16.4-16.5)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from ..errors import DiskFull
from ..events import GroupDeliveryChanged
from ..identity import contact_id as make_contact_id
from ..net.transport import Connection
from ..protocol import wire
from ..storage.group_repository import NewGroupMessage
from ..storage.group_rows import StoredGroupMessage
from .base import Arrival
from .live import GroupLive
from .model import NO_HASH, Group, GroupState, newer
from .signing import NO_SIGNATURE, message_id, sign_leave

log = logging.getLogger(__name__)

# Catch-up sends at most this many messages before waiting for the socket to drain.
CATCH_UP_BATCH: Final = 500
# Seconds a burst of delivery acks is collected before it is written (one transaction).
DELIVERY_WRITE_DELAY: Final = 0.2
# Arriving messages checked in one go: fewer than this on the loop thread, more in
# VERIFY_THREADS threads (PyNaCl drops the GIL inside libsodium).
VERIFY_INLINE_MAX: Final = 16
VERIFY_THREADS: Final = 2


class GroupSync(GroupLive):
    """Messages in, acks out, and what a member that was away lacks."""

    def _new(self, m: wire.GroupMessage, *, outgoing: bool) -> NewGroupMessage:
        return NewGroupMessage(
            msg_id=message_id(m.group_id, m.author, m.seq),
            group_id=m.group_id,
            author=m.author,
            seq=m.seq,
            epoch=m.epoch,
            lamport=m.lamport,
            sent_at_ms=m.sent_at_ms,
            body=m.body,
            signature=m.signature,
            outgoing=outgoing,
            attachment=(
                wire.encode_group_attachment(m.attachment) if m.attachment is not None else None
            ),
        )

    def _on_group_message(self, conn: Connection, m: wire.GroupMessage) -> None:
        """A group message from a member: synchronous, so the transport's read callback
        hands it over (`received_now`, the fast path); what must wait is queued here."""
        group = self._groups.get(m.group_id)
        if group is None or group.state is not GroupState.ACTIVE:
            return
        sender = self._peer_key(conn)
        if sender is None or group.member(sender) is None:
            self.rejected += 1  # only members pass messages on
            log.warning("group message from a non-member refused")
            return
        if group.marks.has(m.author, m.seq):
            self._ack_soon(conn, group, m.author)  # its first ack may have been lost
            return
        problem = group.check_message(m, signature=False)
        if problem is not None:
            self.rejected += 1
            log.warning("group message refused: %s", problem)
            return
        self._arrived += 1
        if self._verifying is None and not self._inline_checked:
            # Nothing waits to be checked: check the first of a read now, unless its author
            # sent it on its own session (that proves the sender; a bad signature only gets
            # it refused where we pass it on, as a gap would: protocol.md §16.4, ~45 us).
            bad = sender != m.author and not self._verify([m])[0]
            self._inline_checked = True  # the rest of the read queues (arrivals_done)
            if bad:
                self.rejected += 1
                log.warning("group message refused: bad signature")
                self._note_checked(self._checked + 1)
                return
            # Accepted (as _accept_verified does; the group was looked up just now).
            group.lamport = max(group.lamport, m.lamport)
            arrival = Arrival(self._new(m, outgoing=False), conn)
            # Nothing is queued to be stored before it: store it here, in this read's
            # loop pass, not on the committer's task (its ack leaves with this read's
            # flush). A file offer goes the committer's way (its hook awaits more), and
            # so does everything while the database thread is busy.
            if not (self._committing == 0 and m.attachment is None and self._store_now(arrival)):
                self._post(arrival)
            self._note_checked(self._checked + 1)
            return
        self._unverified.append((conn, m))  # checked by _verify_arrivals with the read's rest
        if self._verifying is None and len(self._unverified) == 1:
            asyncio.get_running_loop().call_soon(self._after_inline_check)

    def _after_inline_check(self) -> None:
        self._inline_checked = False
        if self._unverified and self._verifying is None and not self._closed:
            self._verifying = self._tasks.spawn(self._verify_arrivals(), "chinwag-group-verify")

    async def _verify_arrivals(self) -> None:
        """Check the signatures of what arrived (the messages of a whole read, often
        hundreds in a catch-up), then hand the good ones to the committer, in order.
        Ed25519 verification is most of a catch-up's CPU: a big batch is checked in
        threads beside the loop, a few on the loop (a thread hand-off costs more)."""
        try:
            while self._unverified:
                batch, self._unverified = self._unverified, []
                messages = [m for _, m in batch]
                if len(messages) < VERIFY_INLINE_MAX:
                    good = self._verify(messages)
                else:
                    good = await self._verify_in_threads(messages)
                for arrival in self._accept_verified(batch, good):
                    self._post(arrival)
                self._note_checked(self._checked + len(batch))
        finally:
            self._verifying = None
            if self._unverified or self._checked < self._arrived:  # cancelled or failed
                self._unverified.clear()
                self._note_checked(self._arrived)

    def _note_checked(self, checked: int) -> None:
        self._checked = checked
        if not self._checked_waiters:
            return  # as nearly always: no new list for every message
        waiting, self._checked_waiters = self._checked_waiters, []
        for target, waiter in waiting:
            if target > checked:
                self._checked_waiters.append((target, waiter))
            elif not waiter.done():
                waiter.set_result(None)

    async def _arrivals_checked(self) -> None:
        """Wait until the messages that arrived before now are checked and handed on, so
        that a message of ours comes after them (Lamport time, storage order), as when an
        arrival went to the committer at once."""
        target = self._arrived
        if self._checked >= target:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._checked_waiters.append((target, waiter))
        await waiter

    async def _verify_in_threads(self, messages: list[wire.GroupMessage]) -> list[bool]:
        if self._verifier is None:
            self._verifier = ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="chinwag-verify")
        loop = asyncio.get_running_loop()
        size = -(-len(messages) // VERIFY_THREADS)
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(self._verifier, self._verify, messages[i : i + size])
                for i in range(0, len(messages), size)
            )
        )
        return [ok for part in parts for ok in part]

    def _accept_verified(
        self, batch: list[tuple[Connection, wire.GroupMessage]], good: list[bool]
    ) -> list[Arrival]:
        """The messages whose signature checked, to be stored (the others refused)."""
        accepted: list[Arrival] = []
        for (conn, m), ok in zip(batch, good, strict=True):
            if not ok:
                self.rejected += 1
                log.warning("group message refused: bad signature")
                continue
            group = self._groups.get(m.group_id)
            if group is None or group.state is not GroupState.ACTIVE:
                continue  # left or deleted while it was checked
            group.lamport = max(group.lamport, m.lamport)
            accepted.append(Arrival(self._new(m, outgoing=False), conn))
        return accepted

    def _post(self, arrival: Arrival) -> None:
        """Queue an arrival for the committer (nobody awaits it)."""
        assert self._committer is not None
        self._committing += 1
        self._committer.post(arrival)

    async def _store(self, arrivals: list[Arrival]) -> list[StoredGroupMessage | None]:
        """Group commit of group messages (ours and arriving ones), then acks and events."""
        try:
            return await self._store_counted(arrivals)
        finally:
            self._committing -= len(arrivals)

    async def _store_counted(self, arrivals: list[Arrival]) -> list[StoredGroupMessage | None]:
        messages = [a.message for a in arrivals]
        try:
            # db.write: a few messages (a live one) commit right here when the database
            # thread is idle, as 1:1 messages do, instead of two thread hand-offs.
            stored = await self._db.write(
                [m.body for m in messages], self.repo.store_messages, messages, self._now_ms()
            )
        except DiskFull as exc:
            self._unstored(exc, arrivals)
            if any(a.connection is None for a in arrivals):
                raise  # one of ours: the user's send fails with the plain DiskFull
            return [None] * len(arrivals)
        self._acknowledge(arrivals, stored)
        offers = [m for m in stored if m.attachment is not None and not m.outgoing]
        if offers:
            await self._on_offers(offers)  # before the UI hears of the messages
        self._added(stored)
        by_id = {m.msg_id: m for m in stored}
        return [by_id.get(a.message.msg_id) for a in arrivals]

    def _acknowledge(self, arrivals: list[Arrival], stored: list[StoredGroupMessage]) -> None:
        """Stored: mark them held and acknowledge them to the members that sent them."""
        if stored:
            self._indexer.soon()
        acks: dict[Connection, dict[bytes, set[bytes]]] = {}
        for a in arrivals:
            new = a.message
            group = self._groups.get(new.group_id)
            if group is None:
                continue
            group.marks.add(new.author, new.seq)
            if a.connection is not None:
                acks.setdefault(a.connection, {}).setdefault(new.group_id, set()).add(new.author)
        for conn, by_group in acks.items():
            for group_id, authors in by_group.items():
                self._ack(conn, self._groups[group_id], authors)
            conn.flush()  # the acks leave now, not after the events' handlers have run

    def _ack_soon(self, conn: Connection, group: Group, author: bytes) -> None:
        """Duplicates (a second member replaying a catch-up) are acknowledged once per
        turn of the loop, not once per message."""
        if not self._pending_acks:
            asyncio.get_running_loop().call_soon(self._flush_acks)
        self._pending_acks.setdefault((conn, group.id), set()).add(author)

    def _flush_acks(self) -> None:
        pending, self._pending_acks = self._pending_acks, {}
        for (conn, group_id), authors in pending.items():
            group = self._groups.get(group_id)
            if group is not None:
                self._ack(conn, group, authors)

    def _ack(self, conn: Connection, group: Group, authors: Iterable[bytes]) -> None:
        if conn.closed.is_set() or not conn.session.established:
            return
        marks = tuple(wire.GroupMark(a, group.marks.mark.get(a, 0)) for a in sorted(authors))
        conn.send(wire.GroupAck(group.id, marks[: wire.MAX_GROUP_MARKS]))

    def on_adopted(self, conn: Connection, contact_id: str) -> None:
        """Service hook: a session went live. Tell the peer what we hold of every group we
        share with it (it answers with what we lack, and we with what it lacks)."""
        keys = self._contacts.keys(contact_id)
        if keys is None:
            return
        for group in self._groups.values():
            if group.state is GroupState.ACTIVE and group.member(keys.ed25519_public):
                conn.send(self._have(group))

    def _have(self, group: Group) -> wire.GroupHave:
        return wire.GroupHave(group.id, group.epoch, group.hash, group.marks.wire())

    async def _on_have(self, conn: Connection, have: wire.GroupHave) -> None:
        peer = self._peer_key(conn)
        group = self._groups.get(have.group_id)
        if peer is None:
            return
        if group is None:
            if have.epoch > 0 and conn.contact_id not in self._group_only:
                conn.send(wire.GroupHave(have.group_id, 0, NO_HASH, ()))  # "show me"
            return
        if group.state is GroupState.LEFT and peer in group.roster.admins:
            conn.send(
                sign_leave(
                    self._me_port.identity,
                    wire.GroupLeave(group.id, self._me, group.epoch, NO_SIGNATURE),
                )
            )
            return
        if group.state is not GroupState.ACTIVE:
            return
        theirs = (have.epoch, have.roster_hash)
        if group.member(peer) is None:
            if newer(theirs, group.version):
                conn.send(self._have(group))  # they may know that it was added: show us
            elif group.removed_cutoff(peer) is not None and newer(group.version, theirs):
                await self._send_rosters(conn, group, have.epoch)  # "you were removed"
            return  # a non-member gets no messages from us
        if newer(group.version, theirs):
            await self._send_rosters(conn, group, have.epoch)
        elif newer(theirs, group.version):
            conn.send(self._have(group))
        theirs_marks = {m.author: m.seq for m in have.marks}
        self._note_delivery(group, peer, theirs_marks.get(self._me, 0))
        self._tasks.spawn(self._send_missing(conn, group, theirs_marks), "chinwag-group-catch-up")

    async def _send_rosters(self, conn: Connection, group: Group, their_epoch: int) -> None:
        if their_epoch == 0:
            conn.send(group.roster)
            return
        # Every version after theirs (and ours at their epoch, if it beat theirs), so each
        # step can be checked against the one before it.
        for data in await self._db.run(self.repo.roster_versions, group.id, their_epoch - 1):
            roster = wire.decode_message(data)
            assert isinstance(roster, wire.GroupRoster)
            conn.send(roster)

    async def _send_missing(self, conn: Connection, group: Group, theirs: dict[bytes, int]) -> None:
        """Stream every message the peer lacks, author by author, in bounded batches."""
        for author in sorted(group.marks.authors()):
            after = theirs.get(author, 0)
            if group.marks.highest(author) <= after:
                continue
            while not conn.closed.is_set():
                batch = await self._db.run(
                    self.repo.messages_after, group.id, author, after, CATCH_UP_BATCH
                )
                if not batch:
                    break
                for m in batch:
                    conn.send(
                        wire.GroupMessage(
                            m.group_id,
                            m.author,
                            m.epoch,
                            m.seq,
                            m.lamport,
                            m.sent_at_ms,
                            m.body,
                            m.signature,
                            _attachment(m.attachment),
                        )
                    )
                after = batch[-1].seq
                await conn.drain()

    def _on_ack(self, conn: Connection, ack: wire.GroupAck) -> None:
        peer = self._peer_key(conn)
        group = self._groups.get(ack.group_id)
        if peer is None or group is None or group.member(peer) is None:
            return
        for mark in ack.marks:
            if mark.author == self._me:
                self._note_delivery(group, peer, mark.seq)

    def _note_delivery(self, group: Group, member: bytes, seq: int) -> None:
        seq = min(seq, group.next_seq - 1)  # nobody holds what we have not written
        if seq <= group.delivery.get(member, 0):
            return
        group.delivery[member] = seq
        # Recorded in one write per burst of acks, off the path of the next send.
        if not self._delivery_dirty:
            self._tasks.spawn(self._write_delivery(), "chinwag-group-delivery")
        self._delivery_dirty[(group.id, member)] = seq
        self._emit(GroupDeliveryChanged(group.id.hex(), make_contact_id(member), seq))

    async def _write_delivery(self) -> None:
        await asyncio.sleep(DELIVERY_WRITE_DELAY)
        dirty, self._delivery_dirty = self._delivery_dirty, {}
        marks = [(g, m, s) for (g, m), s in dirty.items()]
        await self._db.run(self.repo.set_delivery_marks, marks)


def _attachment(stored: bytes | None) -> wire.GroupAttachment | None:
    """A stored attachment back as signed (it was validated before it was stored)."""
    return wire.decode_group_attachment(stored) if stored is not None else None

"""LAN group chat (docs/protocol.md §16): signed rosters, signed messages, catch-up.

A group has no server: every member holds the whole conversation and passes on what
others missed. Messages travel over the pairwise Noise sessions the service already runs;
members that are not contacts of each other are introduced by the signed roster and get a
hidden, group-only contact row (so the ordinary IKpsk2 reconnect authenticates them).

The pure parts are signing.py (signatures, hashes, ids) and model.py (roster rules,
high-water marks); :class:`GroupManager` (this module: lifecycle, public API, dispatch)
is assembled from the parts base.py, rosters.py, joining.py and sync.py.
"""

from __future__ import annotations

import asyncio
import contextlib

from ..core.batch import Batcher
from ..core.text import check_text
from ..errors import GroupError
from ..events import GroupDeleted
from ..identity import contact_id as make_contact_id
from ..net.transport import Connection, send_to_all
from ..protocol import wire
from ..records import GroupId, GroupMessageRecord, GroupRecord
from .base import Arrival
from .joining import SETTING_OPEN_GROUPS, GroupJoining
from .model import Group, GroupState, Marks, group_key
from .signing import NO_SIGNATURE, sign_leave, sign_message
from .sync import GroupSync


class GroupManager(GroupJoining, GroupSync):
    """Groups over the contacts' sessions. Built and wired by PeerService; its hooks:
    `load`, `on_message`, `on_adopted`, `announce`, `aclose`."""

    # -- lifecycle ------------------------------------------------------------------------

    async def load(self) -> None:
        for row in await self._db.run(self.repo.groups):
            roster = wire.decode_message(row.roster)
            assert isinstance(roster, wire.GroupRoster)
            group = Group(roster, row.roster_hash, GroupState(row.state), row.lamport, row.next_seq)
            group.names = {m.ed25519_public: m.display_name for m in roster.members}
            if group.state is not GroupState.DELETED:
                group.marks = Marks.from_seqs(await self._db.run(self.repo.author_seqs, row.id))
            self._groups[row.id] = group
        for group_id, marks in (await self._db.run(self.repo.delivery_marks)).items():
            if group_id in self._groups:
                self._groups[group_id].delivery = marks
        self._group_only = await self._db.run(self.repo.group_only_ids)
        opened = await self._db.run(self._settings.get_setting, SETTING_OPEN_GROUPS, [])
        self._open = [bytes.fromhex(g) for g in opened if bytes.fromhex(g) in self._groups]
        self._committer = Batcher(self._store, self._batch_max, "chinwag-group-messages")
        self._indexer.soon()  # whatever a killed process left unindexed
        self._tasks.spawn(self._indexer.run(), "chinwag-group-search-indexer")

    async def aclose(self) -> None:
        self._closed = True
        if self._verifying is not None:
            self._verifying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._verifying
        if self._unverified:  # queued behind an inline check, never to be checked now
            self._unverified.clear()
            self._note_checked(self._arrived)
        if self._verifier is not None:
            self._verifier.shutdown(wait=True)
        if self._committer is not None:
            await self._committer.aclose()
        dirty, self._delivery_dirty = self._delivery_dirty, {}
        if dirty:  # the delayed write was cancelled with the service's tasks
            marks = [(g, m, s) for (g, m), s in dirty.items()]
            await self._db.run(self.repo.set_delivery_marks, marks)

    # -- public API -----------------------------------------------------------------------

    async def groups(self) -> list[GroupRecord]:
        unread = await self._db.run(self.repo.unread_counts)
        return [
            self.record(g, unread.get(gid, 0))
            for gid, g in self._groups.items()
            if g.state is not GroupState.DELETED
        ]

    async def group(self, group_id: GroupId) -> GroupRecord:
        group = self._group(group_id)
        unread = await self._db.run(self.repo.unread_counts)
        return self.record(group, unread.get(group.id, 0))

    def resolve(self, query: str) -> GroupId:
        """A group by id (or a unique id prefix) or by exact name (case-insensitive)."""
        q = query.strip().casefold()
        live = {gid: g for gid, g in self._groups.items() if g.state is not GroupState.DELETED}
        found = [gid for gid, g in live.items() if g.roster.name.casefold() == q]
        if not found and q:
            found = [gid for gid in live if gid.hex().startswith(q)]
        if not found:
            raise GroupError(f"no group named {query!r} or with an id starting so")
        if len(found) > 1:
            names = ", ".join(f"{live[g].roster.name} ({g.hex()[:8]})" for g in found)
            raise GroupError(f"{query!r} matches several groups: {names}; use an id prefix")
        return found[0].hex()

    async def leave(self, group_id: GroupId) -> GroupRecord:
        """Leave: an admin removes itself with a roster update (handing administration to
        the next member if it was the only admin); a member asks the admins to remove it."""
        group = self._active(group_id)
        if self._me in group.roster.admins:
            if len(group.roster.members) > 1:
                await self._remove(group, {self._me})
        else:
            leave = sign_leave(
                self._me_port.identity,
                wire.GroupLeave(group.id, self._me, group.epoch, NO_SIGNATURE),
            )
            for m in group.roster.members:
                conn = self._live(m.ed25519_public)
                if conn is not None:
                    conn.send(leave)
        group.state = GroupState.LEFT
        await self._db.run(self.repo.set_state, group.id, int(group.state))
        self._changed(group)
        await self._forget_unneeded_contacts()
        return self.record(group)

    async def delete(self, group_id: GroupId) -> None:
        """Delete the group's history on this device (leaving it first if still a member)."""
        group = self._group(group_id)
        if group.state is GroupState.ACTIVE:
            await self.leave(group_id)
        group.state = GroupState.DELETED
        group.marks = Marks()
        await self._db.run(self.repo.forget_group, group.id, int(group.state))
        self._emit(GroupDeleted(group.id.hex()))

    async def send_text(
        self, group_id: GroupId, body: str, *, attachment: wire.GroupAttachment | None = None
    ) -> GroupMessageRecord:
        """Sign, store durably, then send to every member online now (the others get it
        at their next catch-up, from us or from any member that has it). `attachment`
        makes it a file offer (files/manager.py sends those)."""
        check_text(body)
        self._active(group_id)
        await self._arrivals_checked()
        group = self._active(group_id)
        group.lamport += 1
        seq = group.next_seq
        group.next_seq += 1
        message = sign_message(
            self._me_port.identity,
            wire.GroupMessage(
                group.id,
                self._me,
                group.epoch,
                seq,
                group.lamport,
                self._now_ms(),
                body,
                NO_SIGNATURE,
                attachment,
            ),
        )
        assert self._committer is not None
        self._committing += 1
        stored = await self._committer.submit(Arrival(self._new(message, outgoing=True), None))
        assert stored is not None
        encoded = wire.encode_message(message)  # once, the same bytes for every member
        me = self._me
        live = (
            self._live(m.ed25519_public) for m in group.roster.members if m.ed25519_public != me
        )
        send_to_all([c for c in live if c is not None], message, encoded)
        return self._message_record(group, stored)

    def get(self, group_id: GroupId) -> Group | None:
        """The group as held here (roster, state, version; a deleted one too), or None."""
        return self._groups.get(group_key(group_id))

    def held(self) -> list[Group]:
        """Every group held here, deleted ones too (for diagnostics and tests)."""
        return list(self._groups.values())

    # is_active, member_contacts and attachment_links serve the files worker, which holds
    # group ids as bytes, as storage does (files/transfer.py GroupsPort): no front end calls them.

    def is_active(self, group_id: bytes) -> bool:
        group = self._groups.get(group_id)
        return group is not None and group.state is GroupState.ACTIVE

    def member_contacts(self, group_id: bytes) -> set[str]:
        """Contact ids of the other members of an active group (empty if there is none)."""
        group = self._groups.get(group_id)
        if group is None or group.state is not GroupState.ACTIVE:
            return set()
        return {
            make_contact_id(m.ed25519_public)
            for m in group.roster.members
            if m.ed25519_public != self._me
        }

    async def history(
        self, group_id: GroupId, *, limit: int = 50, before: tuple[int, bytes, int] | None = None
    ) -> list[GroupMessageRecord]:
        group = self._group(group_id)
        rows = await self._db.run(self.repo.history, group.id, limit=limit, before=before)
        return [self._message_record(group, r) for r in rows]

    async def search(
        self,
        text: str,
        *,
        group_id: GroupId | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> list[GroupMessageRecord]:
        """Full-text search of every group's messages (or one group's), newest first;
        `before` (the last result's row_id) gives the next page."""
        key = None if group_id is None else self._group(group_id).id
        rows = await self._db.run(self.repo.search, text, group_id=key, limit=limit, before=before)
        found = []
        for row in rows:
            group = self._groups.get(row.group_id)
            if group is not None:
                found.append(self._message_record(group, row))
        return found

    async def mark_read(self, group_id: GroupId) -> int:
        group = self._group(group_id)
        return await self._db.run(self.repo.mark_seen, group.id)

    def delivery(self, group_id: GroupId) -> dict[str, int]:
        """How far each member holds our messages (contact id -> our seq)."""
        group = self._group(group_id)
        return {make_contact_id(k): s for k, s in group.delivery.items()}

    async def attachment_links(self) -> list[tuple[bytes, bytes, bytes, bool, bytes]]:
        """Every stored group message that offers a file: (msg id, group, author key,
        ours, attachment as stored) (files/manager.py notes them at start)."""
        return await self._db.run(self.repo.attachment_links)

    async def repo_count(self, group_id: GroupId) -> int:
        """How many messages of the group this device holds."""
        return await self._db.run(self.repo.message_count, group_key(group_id))

    def marks(self, group_id: GroupId) -> dict[str, int]:
        """Our high-water mark per author (contact id -> seq): for tests and diagnostics."""
        group = self._group(group_id)
        return {make_contact_id(a): s for a, s in group.marks.mark.items()}

    # -- message dispatch -----------------------------------------------------------------

    def received_now(self, conn: Connection, message: wire.WireMessage) -> bool:
        """Service hook for the transport's fast path (its read callback): a live group
        message and an ack are handled here, synchronously; False: not one of those."""
        match message:
            case wire.GroupMessage():
                self._on_group_message(conn, message)
            case wire.GroupAck():
                self._on_ack(conn, message)
            case _:
                return False
        return True

    async def on_message(self, conn: Connection, message: wire.WireMessage) -> bool:
        """Service hook: True if the message was a group matter (handled here)."""
        if self.received_now(conn, message):
            return True
        match message:
            case wire.GroupHave():
                await self._on_have(conn, message)
            case wire.GroupRoster():
                await self._on_roster(conn, message)
            case wire.GroupLeave():
                await self._on_leave(conn, message)
            case wire.GroupJoinRequest():
                await self._on_join_request(conn, message)
            case wire.ChatMessage() if conn.contact_id in self._group_only:
                pass  # a group-only peer is no contact: no 1:1 chat with it
            case _:
                return False
        return True

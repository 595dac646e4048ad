"""A live group message stored in the read that brought it (sync.py's inline path): one
arrival's store, ack and event, without the committer's batch steps (issue 15: a
member's Python per message)."""

from __future__ import annotations

import logging

from ..errors import DiskFull
from ..events import GroupMessageAdded
from ..protocol import wire
from ..storage.group_rows import StoredGroupMessage
from .base import Arrival, GroupBase

log = logging.getLogger(__name__)


class GroupLive(GroupBase):
    """The inline store of sync.py, and the steps it shares with the committer's."""

    def _store_now(self, arrival: Arrival) -> bool:
        """Store an arrival (not a file offer) right here, with its ack and event, if the
        database thread is idle; False: it is not, nothing was done. One message, so none
        of _store's batch steps (issue 15: the member's Python per message)."""
        message = arrival.message
        if not self._db.can_write_now((message.body,)):
            return False
        try:
            try:
                stored = self._db.write_now(self.repo.store_messages, (message,), self._now_ms())
            except DiskFull as exc:
                self._unstored(exc, [arrival])
                return True
            self._acknowledge_one(arrival, stored)
            self._added(stored)
        except Exception:  # as the committer does: logged, not acknowledged
            log.exception("storing a group message failed")
        return True

    def _acknowledge_one(self, arrival: Arrival, stored: list[StoredGroupMessage]) -> None:
        """_acknowledge of one arrival from a member: its ack is encoded from the three
        values it carries, without building a GroupAck to check and walk again."""
        if stored:
            self._indexer.soon()
        new = arrival.message
        group = self._groups.get(new.group_id)
        conn = arrival.connection
        if group is None or conn is None:
            return
        marks = group.marks
        marks.add(new.author, new.seq)
        if not conn.closed.is_set():  # as _ack; send_encoded checks the session
            ack = wire.encode_group_ack_one(group.id, new.author, marks.mark.get(new.author, 0))
            conn.send_encoded((ack,), batchable=False)
        conn.flush()  # the ack leaves now, not after the event's handlers have run

    def _added(self, stored: list[StoredGroupMessage]) -> None:
        for m in stored:
            group = self._groups.get(m.group_id)
            if group is not None:
                self._emit(GroupMessageAdded(self._message_record(group, m)))

    def _unstored(self, exc: DiskFull, arrivals: list[Arrival]) -> None:
        # Not stored, not acknowledged, not marked: the members that sent them are told
        # to catch us up again on a new session once there is room (the service closes
        # those sessions then, protocol.md 9.3).
        senders = {
            a.connection.contact_id
            for a in arrivals
            if a.connection is not None and a.connection.contact_id is not None
        }
        self._not_stored(exc, senders)

"""Rows of the conversation list as plain SQL over a DB-API cursor, without SQLAlchemy.

The repository reads the list through this module inside its own transaction, and the
desktop app's first paint reads it on a raw sqlcipher3 connection (storage/reader.py)
before the service (and SQLAlchemy with it) is imported: one query, one decoder, so the
two cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..records import ContactRecord, MessageRecord, MessageState

MESSAGE_SQL_COLUMNS = (
    "m.id, m.msg_id, m.contact_id, m.outgoing, m.seq, m.lamport, m.sent_at_ms, "
    "m.received_at_ms, m.body, m.state"
)
# The search index's mark: the summary columns of `contacts` hold what the messages up
# to it make them (the indexer folds each chunk it indexes in; migration 0013).
MARK = "(SELECT last_id FROM search_progress WHERE id = 1)"
# What the rows above the mark add, per contact: a walk of the newest rows by row id
# (the unary + keeps SQLite from walking a contact index of every message instead).
SUMMARY_DELTA = (
    "SELECT contact_id AS cid, sum(state = 10) AS unread, sum(state IN (0, 1)) AS queued "  # noqa: S608
    f"FROM messages WHERE id > {MARK} GROUP BY +contact_id"
)
# Summary columns as readers see them: kept + delta. `c` is contacts, `d` the delta.
UNREAD = "c.unread + coalesce(d.unread, 0)"
QUEUED = "c.queued + coalesce(d.queued, 0)"
# The newest message: the kept one, unless newer rows came since (then one seek of the
# conversation's (lamport, msg_id) index).
_NEWEST = (
    "CASE WHEN d.cid IS NULL THEN c.last_id ELSE (SELECT n.id FROM messages n "
    "WHERE n.contact_id = c.id ORDER BY n.lamport DESC, n.msg_id DESC LIMIT 1) END"
)
SELECT_CONVERSATIONS = (
    f"WITH d AS ({SUMMARY_DELTA}) "  # noqa: S608
    "SELECT c.id, c.display_name, c.ed25519_public, c.x25519_public, c.verified, c.addresses, "
    f"c.created_at, c.last_seen, c.conversation_id, {UNREAD}, "
    f"{QUEUED}, c.key_changed, c.replaces, {MESSAGE_SQL_COLUMNS} FROM contacts c "
    f"LEFT JOIN d ON d.cid = c.id LEFT JOIN messages m ON m.id = {_NEWEST} "
    "WHERE NOT c.group_only ORDER BY c.display_name, c.id"
)


@dataclass(frozen=True, slots=True)
class ConversationRow:
    """A contact with its conversation's summary (the summary columns of models.Contact)."""

    contact: ContactRecord
    last_message: MessageRecord | None
    unread: int
    queued: int


def message_from_row(row: Sequence[Any]) -> MessageRecord:
    """A MessageRecord from the columns of MESSAGE_SQL_COLUMNS, in that order."""
    return MessageRecord(
        row_id=row[0],
        msg_id=row[1],
        contact_id=row[2],
        outgoing=bool(row[3]),
        seq=row[4],
        lamport=row[5],
        sent_at_ms=row[6],
        received_at_ms=row[7],
        body=row[8],
        state=MessageState(row[9]),
    )


def conversation_rows(cursor: Any) -> list[ConversationRow]:
    """Every listed contact with its newest message, unread and outbox counts, by name:
    one read of the summary columns the indexer keeps, plus the rows it has not reached
    (migrations 0008, 0013)."""
    found = []
    for row in cursor.execute(SELECT_CONVERSATIONS).fetchall():
        contact = ContactRecord(
            id=row[0],
            display_name=row[1],
            ed25519_public=row[2],
            x25519_public=row[3],
            verified=bool(row[4]),
            addresses=tuple(json.loads(row[5])),
            created_at=row[6],
            last_seen=row[7],
            conversation_id=row[8],
            key_changed=bool(row[11]),
            replaces=row[12],
        )
        last = message_from_row(row[13:]) if row[13] is not None else None
        found.append(ConversationRow(contact, last, row[9], row[10]))
    return found

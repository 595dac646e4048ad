"""conversation summaries and counters are brought up to date by the search indexer, not
by a trigger on every message insert

Revision ID: 0013
Revises: 0012

The insert trigger of 0008/0011 updated the contact's row in the statement that stores a
message. That row is on a page of its own, so every commit of a lone message encrypted
and wrote one page more than the message's own four (table and three indexes): ~15-20 us
of a ~90 us commit, on both sides of send -> delivered (issue 15; a trigger that leaves
the row's bytes unchanged costs ~3 us, one that changes them ~18 us).

Now a message insert touches no other row. The summary columns of `contacts` (unread,
queued, newest message) and its counters (lamport, next_seq) hold what the messages up to
`search_progress.last_id` (the rows the search index has taken in) make them; the
background indexer folds each chunk it indexes into them in its own transaction
(Repository.index_pending). Readers add the few rows above that mark (storage/rows.py);
the counters of a contact are read the same way once, then kept by the repository.
State changes and deletes of rows at or below the mark still move the kept summary in
their statement; rows above it are counted as they are when read or folded. One delete
trigger does the summary's and the search index's part, in that order, because the
search part lowers the mark.
"""

# Trigger SQL is put together from the constants below, never from values.
# ruff: noqa: S608

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_MARK = "(SELECT last_id FROM search_progress WHERE id = 1)"
_NEWEST_UPTO_MARK = (
    "SELECT id, lamport, msg_id FROM messages WHERE contact_id = {c} AND id <= "
    f"{_MARK} ORDER BY lamport DESC, msg_id DESC LIMIT 1"
)
_RECOUNT_UPTO_MARK = (
    "UPDATE contacts SET unread = (SELECT count(*) FROM messages m WHERE "
    f"m.contact_id = {{c}} AND m.state = 10 AND m.id <= {_MARK}), "
    "queued = (SELECT count(*) FROM messages m WHERE "
    f"m.contact_id = {{c}} AND m.state IN (0, 1) AND m.id <= {_MARK}), "
    f"(last_id, last_lamport, last_msg_id) = ({_NEWEST_UPTO_MARK}) WHERE id = {{c}};"
)
# A row above the mark leaves (deleted, or moved to another contact) before it was
# folded: its counters are kept, so a Lamport clock or seq never goes back.
_KEEP_CLOCKS = (
    "UPDATE contacts SET lamport = max(lamport, old.lamport), next_seq = CASE WHEN "
    "old.outgoing THEN max(next_seq, old.seq + 1) ELSE next_seq END "
    f"WHERE id = old.contact_id AND old.id > {_MARK};"
)
# A row moved to a contact brings its counters along (whichever side of the mark it is).
_TAKE_CLOCKS = (
    "UPDATE contacts SET lamport = max(lamport, new.lamport), next_seq = CASE WHEN "
    "new.outgoing THEN max(next_seq, new.seq + 1) ELSE next_seq END WHERE id = new.contact_id;"
)

TRIGGERS = {
    "messages_summary_state": (
        # The mark is read last: only for a change that moves a count.
        "CREATE TRIGGER messages_summary_state AFTER UPDATE OF state ON messages "
        "WHEN old.contact_id = new.contact_id AND "
        "((old.state = 10) != (new.state = 10) "
        f"OR (old.state IN (0, 1)) != (new.state IN (0, 1))) AND old.id <= {_MARK} BEGIN "
        "UPDATE contacts SET "
        "unread = unread + (new.state = 10) - (old.state = 10), "
        "queued = queued + (new.state IN (0, 1)) - (old.state IN (0, 1)) "
        "WHERE id = new.contact_id; END"
    ),
    "messages_summary_delete": (
        "CREATE TRIGGER messages_summary_delete AFTER DELETE ON messages BEGIN "
        "UPDATE contacts SET unread = unread - (old.state = 10), "
        "queued = queued - (old.state IN (0, 1)) "
        f"WHERE id = old.contact_id AND old.id <= {_MARK}; "
        "UPDATE contacts SET (last_id, last_lamport, last_msg_id) = "
        f"({_NEWEST_UPTO_MARK.format(c='old.contact_id')}) "
        "WHERE id = old.contact_id AND last_id = old.id; "
        f"{_KEEP_CLOCKS} "
        # The search index's part (0008's messages_fts_delete), after the summary's: it
        # lowers the mark when the row at it goes.
        "INSERT INTO messages_fts(messages_fts, rowid, body, contact_id) "
        f"SELECT 'delete', old.id, old.body, old.contact_id WHERE old.id <= {_MARK}; "
        "UPDATE search_progress SET last_id = "
        "(SELECT coalesce(max(id), 0) FROM messages WHERE id < old.id) "
        "WHERE id = 1 AND last_id = old.id; END"
    ),
    "messages_summary_move": (
        "CREATE TRIGGER messages_summary_move AFTER UPDATE OF contact_id, lamport, msg_id "
        f"ON messages BEGIN {_KEEP_CLOCKS} {_TAKE_CLOCKS} "
        f"{_RECOUNT_UPTO_MARK.format(c='old.contact_id')} "
        f"{_RECOUNT_UPTO_MARK.format(c='new.contact_id')} END"
    ),
}

# -- as 0008 and 0011 made them, for downgrade ----------------------------------------------


def _newer(column: str) -> str:
    value = column.replace("last_", "new.")
    return (
        f"{column} = CASE WHEN last_id IS NULL OR (new.lamport, new.msg_id) > "
        f"(last_lamport, last_msg_id) THEN {value} ELSE {column} END"
    )


_NEWEST = (
    "SELECT id, lamport, msg_id FROM messages WHERE contact_id = {c} "
    "ORDER BY lamport DESC, msg_id DESC LIMIT 1"
)
_RECOMPUTE = (
    "UPDATE contacts SET "
    "unread = (SELECT count(*) FROM messages m WHERE m.contact_id = {c} AND m.state = 10), "
    "queued = (SELECT count(*) FROM messages m WHERE m.contact_id = {c} AND m.state IN (0, 1)), "
    f"(last_id, last_lamport, last_msg_id) = ({_NEWEST}) WHERE id = {{c}};"
)
_OLD_TRIGGERS = {
    "messages_summary_insert": (
        "CREATE TRIGGER messages_summary_insert AFTER INSERT ON messages BEGIN "
        "UPDATE contacts SET "
        "unread = unread + (new.state = 10), queued = queued + (new.state IN (0, 1)), "
        f"{_newer('last_id')}, {_newer('last_lamport')}, {_newer('last_msg_id')}, "
        "lamport = max(lamport, new.lamport), next_seq = CASE WHEN new.outgoing "
        "THEN max(next_seq, new.seq + 1) ELSE next_seq END "
        "WHERE id = new.contact_id; END"
    ),
    "messages_summary_state": (
        "CREATE TRIGGER messages_summary_state AFTER UPDATE OF state ON messages "
        "WHEN old.contact_id = new.contact_id AND "
        "((old.state = 10) != (new.state = 10) "
        "OR (old.state IN (0, 1)) != (new.state IN (0, 1))) BEGIN "
        "UPDATE contacts SET "
        "unread = unread + (new.state = 10) - (old.state = 10), "
        "queued = queued + (new.state IN (0, 1)) - (old.state IN (0, 1)) "
        "WHERE id = new.contact_id; END"
    ),
    "messages_summary_delete": (
        "CREATE TRIGGER messages_summary_delete AFTER DELETE ON messages BEGIN "
        "UPDATE contacts SET "
        "unread = unread - (old.state = 10), queued = queued - (old.state IN (0, 1)) "
        "WHERE id = old.contact_id; "
        "UPDATE contacts SET (last_id, last_lamport, last_msg_id) = "
        f"({_NEWEST.format(c='old.contact_id')}) "
        "WHERE id = old.contact_id AND last_id = old.id; END"
    ),
    "messages_summary_move": (
        "CREATE TRIGGER messages_summary_move AFTER UPDATE OF contact_id, lamport, msg_id "
        "ON messages BEGIN "
        f"{_RECOMPUTE.format(c='old.contact_id')} {_RECOMPUTE.format(c='new.contact_id')} END"
    ),
    "messages_fts_delete": (
        f"CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.id <= {_MARK} "
        "BEGIN INSERT INTO messages_fts(messages_fts, rowid, body, contact_id) "
        "VALUES ('delete', old.id, old.body, old.contact_id); "
        "UPDATE search_progress SET last_id = "
        "(SELECT coalesce(max(id), 0) FROM messages WHERE id < old.id) "
        "WHERE id = 1 AND last_id = old.id; END"
    ),
}


def _index_everything() -> None:
    """Index the rows the indexer had not reached, so the mark is the newest row: the
    summaries the old triggers kept (of every row) are then exactly what 0013's columns
    mean (the rows up to the mark)."""
    op.execute(
        "INSERT INTO messages_fts(rowid, body, contact_id) SELECT id, body, contact_id "
        f"FROM messages WHERE id > {_MARK} ORDER BY id"
    )
    op.execute("UPDATE search_progress SET last_id = (SELECT coalesce(max(id), 0) FROM messages)")


def upgrade() -> None:
    for name in _OLD_TRIGGERS:
        op.execute(f"DROP TRIGGER {name}")
    _index_everything()
    for sql in TRIGGERS.values():
        op.execute(sql)


def downgrade() -> None:
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name}")
    # Counters and summaries of every row, as the old triggers keep them.
    op.execute(
        "UPDATE contacts SET lamport = max(lamport, coalesce((SELECT max(lamport) FROM "
        "messages m WHERE m.contact_id = contacts.id), 0)), next_seq = max(next_seq, "
        "coalesce((SELECT max(seq) + 1 FROM messages m WHERE m.contact_id = contacts.id "
        "AND m.outgoing), 0))"
    )
    op.execute(_RECOMPUTE.format(c="contacts.id"))
    _index_everything()
    for sql in _OLD_TRIGGERS.values():
        op.execute(sql)

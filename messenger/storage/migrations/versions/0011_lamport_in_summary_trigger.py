"""the message insert trigger also moves the conversation's counters forward

Revision ID: 0011
Revises: 0010

Storing an arriving message updated the contact's row twice: the summary trigger of 0008
(counts and newest message) and then an UPDATE of the Lamport clock, a statement of its
own (~14 us of a ~120 us commit here, on the send -> delivered path of every message,
issue 15). The trigger now also sets `lamport = max(lamport, new.lamport)`, which is the
receive rule for an arriving message, and for one of ours the time it was given from
the clock, and `next_seq` past an outgoing message's seq. A lone arriving message is
stored with one statement, and a lone message of ours too (its INSERT reads the
counters from the contact's row): no SELECT and UPDATE of the counters around it.
"""

# ruff: noqa: S608  (constant SQL: no values are interpolated)

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _newer(column: str) -> str:
    """As 0008: SET column from the new message if it is the conversation's newest."""
    value = column.replace("last_", "new.")
    return (
        f"{column} = CASE WHEN last_id IS NULL OR (new.lamport, new.msg_id) > "
        f"(last_lamport, last_msg_id) THEN {value} ELSE {column} END"
    )


def _trigger(extra: str) -> str:
    return (
        "CREATE TRIGGER messages_summary_insert AFTER INSERT ON messages BEGIN "
        "UPDATE contacts SET "
        "unread = unread + (new.state = 10), queued = queued + (new.state IN (0, 1)), "
        f"{_newer('last_id')}, {_newer('last_lamport')}, {_newer('last_msg_id')}{extra} "
        "WHERE id = new.contact_id; END"
    )


def upgrade() -> None:
    op.execute("DROP TRIGGER messages_summary_insert")
    op.execute(
        _trigger(
            ", lamport = max(lamport, new.lamport), next_seq = CASE WHEN new.outgoing "
            "THEN max(next_seq, new.seq + 1) ELSE next_seq END"
        )
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER messages_summary_insert")
    op.execute(_trigger(""))

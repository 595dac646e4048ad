"""the group message insert trigger also moves the group's counters forward

Revision ID: 0012
Revises: 0011

As 0011 did for 1:1 messages: storing a lone group message was BEGIN, the INSERT (whose
summary trigger of 0008 updates the group's row), an UPDATE of the group's Lamport clock
and next sequence number, and COMMIT. The trigger now also sets
`lamport = max(lamport, new.lamport)` and, for one of ours, `next_seq` past its seq, so
a lone group message (a live one, at every member, for every message: issue 15) is one
autocommitted INSERT, and a batch needs no UPDATE after its INSERTs.
"""

# ruff: noqa: S608  (constant SQL: no values are interpolated)

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _newer(column: str) -> str:
    """As 0008: SET column from the new message if it is the group's newest."""
    value = column.replace("last_", "new.")
    return (
        f"{column} = CASE WHEN last_id IS NULL OR (new.lamport, new.author, new.seq) > "
        f"(last_lamport, last_author, last_seq) THEN {value} ELSE {column} END"
    )


def _trigger(extra: str) -> str:
    return (
        "CREATE TRIGGER group_messages_summary_insert AFTER INSERT ON group_messages BEGIN "
        "UPDATE chat_groups SET unread = unread + (new.seen = 0), "
        f"{_newer('last_id')}, {_newer('last_lamport')}, "
        f"{_newer('last_author')}, {_newer('last_seq')}{extra} "
        "WHERE id = new.group_id; END"
    )


def upgrade() -> None:
    op.execute("DROP TRIGGER group_messages_summary_insert")
    op.execute(
        _trigger(
            ", lamport = max(lamport, new.lamport), next_seq = CASE WHEN new.outgoing "
            "THEN max(next_seq, new.seq + 1) ELSE next_seq END"
        )
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER group_messages_summary_insert")
    op.execute(_trigger(""))

"""index group message text for search in the background, as 0003 did for 1:1 messages

Revision ID: 0010
Revises: 0009

The FTS5 insert trigger was about a third of the cost of storing a lone arriving group
message (~80-110 us of ~300 us of CPU: each commit wrote a new FTS5 segment), and every
member of a group pays it for every message. Group messages are now indexed in batches
shortly after they are stored (and always before a search runs);
`group_search_progress` records the highest group message id that is indexed.
"""

from alembic import op

# ruff: noqa: S608  (constant SQL: no values are interpolated)

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_INDEXED = "old.id <= (SELECT last_id FROM group_search_progress WHERE id = 1)"
# As 0008 did for 1:1 messages: only rows already indexed leave the index, and when the
# row at last_id goes, last_id moves down to the newest row below it (every row up to
# there is indexed), so that an id handed out again is above last_id and gets indexed.
_TRIGGERS = (
    f"CREATE TRIGGER group_messages_fts_delete AFTER DELETE ON group_messages WHEN {_INDEXED} "
    "BEGIN INSERT INTO group_messages_fts(group_messages_fts, rowid, body) "
    "VALUES ('delete', old.id, old.body); "
    "UPDATE group_search_progress SET last_id = "
    "(SELECT coalesce(max(id), 0) FROM group_messages WHERE id < old.id) "
    "WHERE id = 1 AND last_id = old.id; END",
    "CREATE TRIGGER group_messages_fts_update AFTER UPDATE OF body ON group_messages "
    f"WHEN {_INDEXED} BEGIN "
    "INSERT INTO group_messages_fts(group_messages_fts, rowid, body) "
    "VALUES ('delete', old.id, old.body); "
    "INSERT INTO group_messages_fts(rowid, body) VALUES (new.id, new.body); END",
)
# What 0008 made, for downgrade.
_OLD_TRIGGERS = (
    "CREATE TRIGGER group_messages_fts_insert AFTER INSERT ON group_messages BEGIN "
    "INSERT INTO group_messages_fts(rowid, body) VALUES (new.id, new.body); END",
    "CREATE TRIGGER group_messages_fts_delete AFTER DELETE ON group_messages BEGIN "
    "INSERT INTO group_messages_fts(group_messages_fts, rowid, body) "
    "VALUES ('delete', old.id, old.body); END",
    "CREATE TRIGGER group_messages_fts_update AFTER UPDATE OF body ON group_messages BEGIN "
    "INSERT INTO group_messages_fts(group_messages_fts, rowid, body) "
    "VALUES ('delete', old.id, old.body); "
    "INSERT INTO group_messages_fts(rowid, body) VALUES (new.id, new.body); END",
)
_NAMES = ("group_messages_fts_insert", "group_messages_fts_delete", "group_messages_fts_update")


def upgrade() -> None:
    op.execute(
        "CREATE TABLE group_search_progress "
        "(id INTEGER PRIMARY KEY CHECK (id = 1), last_id INTEGER NOT NULL)"
    )
    # Everything stored so far is indexed (0008's triggers kept the index whole).
    op.execute(
        "INSERT INTO group_search_progress (id, last_id) "
        "SELECT 1, coalesce(max(id), 0) FROM group_messages"
    )
    for name in _NAMES:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    for sql in _TRIGGERS:
        op.execute(sql)


def downgrade() -> None:
    for name in _NAMES:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("DROP TABLE group_search_progress")
    op.execute("INSERT INTO group_messages_fts(group_messages_fts) VALUES ('rebuild')")
    for sql in _OLD_TRIGGERS:
        op.execute(sql)

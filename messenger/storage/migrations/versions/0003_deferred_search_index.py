"""index message text for search in the background, not inside each message's transaction

Revision ID: 0003
Revises: 0002

FTS5 work was two thirds of the cost of storing a message. Messages are now indexed in
batches shortly after they are stored (and always before a search runs); `search_progress`
records the highest message id that is indexed.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE TABLE search_progress "
        "(id INTEGER PRIMARY KEY CHECK (id = 1), last_id INTEGER NOT NULL)"
    )
    op.execute(
        "INSERT INTO search_progress (id, last_id) SELECT 1, coalesce(max(id), 0) FROM messages"
    )
    for trigger in ("messages_fts_insert", "messages_fts_delete", "messages_fts_update"):
        op.execute(f"DROP TRIGGER {trigger}")
    # Only rows already in the index may be removed from it.
    op.execute(
        "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages "
        "WHEN old.id <= (SELECT last_id FROM search_progress WHERE id = 1) BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, body) "
        "VALUES ('delete', old.id, old.body); END"
    )
    op.execute(
        "CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages "
        "WHEN old.id <= (SELECT last_id FROM search_progress WHERE id = 1) BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, body) "
        "VALUES ('delete', old.id, old.body); "
        "INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body); END"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER messages_fts_delete")
    op.execute("DROP TRIGGER messages_fts_update")
    op.execute("DROP TABLE search_progress")
    op.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
    op.execute(
        "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
        "INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body); END"
    )
    op.execute(
        "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, body) "
        "VALUES ('delete', old.id, old.body); END"
    )
    op.execute(
        "CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, body) "
        "VALUES ('delete', old.id, old.body); "
        "INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body); END"
    )

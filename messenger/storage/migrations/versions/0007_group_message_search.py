"""full-text search over group message bodies (FTS5, inside the encrypted database)

Revision ID: 0007
Revises: 0006

As messages_fts (0002) for 1:1 conversations: an external-content FTS5 table, so the text
lives once, in group_messages, kept by triggers (a group's deletion cascades to its
messages and so to the index). Group messages arrive in smaller numbers than 1:1 ones
and each is signature-checked anyway, so they are indexed in the same transaction.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TRIGGERS = ("group_messages_fts_insert", "group_messages_fts_delete", "group_messages_fts_update")


def upgrade() -> None:
    op.execute(
        "CREATE VIRTUAL TABLE group_messages_fts USING fts5(body, content='group_messages', "
        "content_rowid='id', tokenize='unicode61 remove_diacritics 2')"
    )
    op.execute(
        "CREATE TRIGGER group_messages_fts_insert AFTER INSERT ON group_messages BEGIN "
        "INSERT INTO group_messages_fts(rowid, body) VALUES (new.id, new.body); END"
    )
    op.execute(
        "CREATE TRIGGER group_messages_fts_delete AFTER DELETE ON group_messages BEGIN "
        "INSERT INTO group_messages_fts(group_messages_fts, rowid, body) "
        "VALUES ('delete', old.id, old.body); END"
    )
    op.execute(
        "CREATE TRIGGER group_messages_fts_update AFTER UPDATE OF body ON group_messages BEGIN "
        "INSERT INTO group_messages_fts(group_messages_fts, rowid, body) "
        "VALUES ('delete', old.id, old.body); "
        "INSERT INTO group_messages_fts(rowid, body) VALUES (new.id, new.body); END"
    )
    op.execute("INSERT INTO group_messages_fts(group_messages_fts) VALUES ('rebuild')")


def downgrade() -> None:
    for trigger in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute("DROP TABLE IF EXISTS group_messages_fts")

"""both search indexes without their per-row size table (FTS5 columnsize=0)

Revision ID: 0016
Revises: 0015

FTS5 keeps, besides the index itself, a row per indexed message in `<table>_docsize`
(the token count of each column) for ranking by bm25 and for its auxiliary functions'
column sizes. We rank by nothing but row id (newest first, fts_search_sql) and call no
auxiliary function, so that row was written and encrypted for nothing with every
message. Measured (issue 15, ninth round of 1:1 throughput; bench/fts_shapes.py:
SQLCipher, 120,000 two-word messages, a pass every 15,000 in chunks of 5,000): the
indexer's pass 2.72 -> 2.19 us a message, on each side of a conversation.

The option is fixed when an FTS5 table is made, so each index is made again and filled
with the rows it held: those up to its indexer's mark (search_progress /
group_search_progress), which stays where it was; the rows above it are still the
background indexer's, whose chunks also fold the 1:1 summaries (0013). ~5 s for a
million messages (the bench_storage profile), once. The triggers that write to the
indexes name them, not their options, so they are kept as they are.
"""

from alembic import op

# ruff: noqa: S608  (constant SQL: only our own table and column names are interpolated)

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_TOKENIZE = "tokenize='unicode61 remove_diacritics 2'"
# (index, its columns, content table, the mark of what it holds)
_INDEXES = (
    ("messages_fts", "body, contact_id", "messages", "search_progress"),
    ("group_messages_fts", "body", "group_messages", "group_search_progress"),
)


def _remake(options: str) -> None:
    for fts, columns, table, progress in _INDEXES:
        op.execute(f"DROP TABLE {fts}")
        op.execute(
            f"CREATE VIRTUAL TABLE {fts} USING fts5({columns}, content='{table}', "
            f"content_rowid='id', {_TOKENIZE}, prefix='2 3'{options})"
        )
        op.execute(f"INSERT INTO {fts}({fts}, rank) VALUES('automerge', 8)")  # as 0015
        # Not 'rebuild': that would index the rows above the mark too, which the
        # indexer then adds again.
        op.execute(
            f"INSERT INTO {fts}(rowid, {columns}) SELECT id, {columns} FROM {table} "
            f"WHERE id <= (SELECT last_id FROM {progress} WHERE id = 1) ORDER BY id"
        )
        # One segment: a bulk insert leaves many (FTS5 flushes every ~1 MB of terms, and
        # merges them 8 at a time), and a prefix query reads every segment: on the
        # million-message profile the bare first page of "the"* took 84 us after the
        # insert, 16 us after this (+0.5 s of the migration's ~5 s).
        op.execute(f"INSERT INTO {fts}({fts}) VALUES('optimize')")


def upgrade() -> None:
    _remake(", columnsize=0")


def downgrade() -> None:
    _remake("")

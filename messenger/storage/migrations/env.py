"""Alembic environment: always run programmatically with a live connection (see database.py)."""

from alembic import context

from messenger.storage.models import Base

connection = context.config.attributes["connection"]


RAW_SQL_TABLES = (
    "messages_fts",
    "search_progress",
    "group_messages_fts",
    "group_search_progress",
)


def include_name(name: str | None, type_: str, _parents: object) -> bool:
    # The search indexes (0002, 0003, 0007) are raw SQL: FTS5 with its shadow tables, and
    # a progress row; the models do not describe them.
    return not (type_ == "table" and name is not None and name.startswith(RAW_SQL_TABLES))


context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    include_name=include_name,
)
with context.begin_transaction():
    context.run_migrations()

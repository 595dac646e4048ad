"""Alembic environment: always run programmatically with a live connection (see database.py)."""

from alembic import context

from messenger.storage.models import Base

connection = context.config.attributes["connection"]


def include_name(name: str | None, type_: str, _parents: object) -> bool:
    # The FTS5 index (0002) is raw SQL with shadow tables the models do not describe.
    return not (type_ == "table" and name is not None and name.startswith("messages_fts"))


context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    include_name=include_name,
)
with context.begin_transaction():
    context.run_migrations()

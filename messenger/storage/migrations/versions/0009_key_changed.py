"""contacts: a "safety number changed" hold, and the earlier contact it may replace

Revision ID: 0009
Revises: 0008

Identity keys never change, so a re-created profile on the other side arrives as a new
contact (a new key, a new id) that calls itself by the name of one we already have. Such
a contact is stored with `key_changed` set and `replaces` naming the earlier contact:
nothing is sent to it until the user verifies or accepts the new safety number
(docs/threat-model.md §4.14). Profiles made before have no such contacts: all 0 / NULL.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_COLUMNS: tuple[sa.Column[object], ...] = (
    sa.Column("key_changed", sa.Boolean(), nullable=False, server_default="0"),
    sa.Column("replaces", sa.String(32), nullable=True),
)


def upgrade() -> None:
    # ALTER TABLE ADD COLUMN (no table copy): a constant default and a nullable column.
    for column in _COLUMNS:
        op.add_column("contacts", column)


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        for column in _COLUMNS:
            batch.drop_column(column.name)

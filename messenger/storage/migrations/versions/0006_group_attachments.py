"""group_messages.attachment: files shared in groups

Revision ID: 0006
Revises: 0005

A group message may carry a file offer (docs/protocol.md §16.9). It is stored exactly as
signed (the msgpack array of the attachment fields) so catch-up can pass the message on
with its signature intact; the partial index finds a profile's group files at start-up
without scanning every group message.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("group_messages") as batch:
        batch.add_column(sa.Column("attachment", sa.LargeBinary(), nullable=True))
    op.create_index(
        "ix_group_messages_attachment",
        "group_messages",
        ["group_id"],
        sqlite_where=sa.text("attachment IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_group_messages_attachment", "group_messages")
    with op.batch_alter_table("group_messages") as batch:
        batch.drop_column("attachment")

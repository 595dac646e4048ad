"""attachments: files offered and received, their sources and their messages

Revision ID: 0005
Revises: 0003

One row per file (named by its manifest root) with its key, manifest and the bitmap of
chunks held, so a download resumes after a restart from the last verified chunk. A file
can appear in several conversations (attachment_messages) and be served by several
contacts (attachment_sources).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attachments",
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("mime", sa.String(255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("chunk_size", sa.Integer(), nullable=False),
        sa.Column("file_key", sa.LargeBinary(), nullable=False),
        sa.Column("manifest", sa.LargeBinary(), nullable=True),
        sa.Column("have", sa.LargeBinary(), nullable=True),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("serving", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("thumbnail", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("root", name="pk_attachments"),
    )
    op.create_table(
        "attachment_messages",
        sa.Column("msg_id", sa.LargeBinary(), nullable=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("contact_id", sa.String(32), nullable=False),
        sa.Column("outgoing", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["root"],
            ["attachments.root"],
            name="fk_attachment_messages_root_attachments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("msg_id", name="pk_attachment_messages"),
    )
    op.create_index("ix_attachment_messages_root", "attachment_messages", ["root"])
    op.create_table(
        "attachment_sources",
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("contact_id", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["root"],
            ["attachments.root"],
            name="fk_attachment_sources_root_attachments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("root", "contact_id", name="pk_attachment_sources"),
    )


def downgrade() -> None:
    op.drop_table("attachment_sources")
    op.drop_index("ix_attachment_messages_root", "attachment_messages")
    op.drop_table("attachment_messages")
    op.drop_table("attachments")

"""LAN group chat: groups, their roster versions, group messages, delivery marks, and
contacts known only through a group

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("group_only", sa.Boolean(), nullable=False, server_default="0"))
    op.create_table(
        "chat_groups",
        sa.Column("id", sa.LargeBinary(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("roster_hash", sa.LargeBinary(), nullable=False),
        sa.Column("roster", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("lamport", sa.Integer(), nullable=False),
        sa.Column("next_seq", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_groups")),
    )
    op.create_table(
        "group_rosters",
        sa.Column("group_id", sa.LargeBinary(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("roster", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["chat_groups.id"],
            name=op.f("fk_group_rosters_group_id_chat_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "epoch", name=op.f("pk_group_rosters")),
    )
    op.create_table(
        "group_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("msg_id", sa.LargeBinary(), nullable=False),
        sa.Column("group_id", sa.LargeBinary(), nullable=False),
        sa.Column("author", sa.LargeBinary(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("lamport", sa.Integer(), nullable=False),
        sa.Column("sent_at_ms", sa.Integer(), nullable=False),
        sa.Column("received_at_ms", sa.Integer(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("outgoing", sa.Boolean(), nullable=False),
        sa.Column("seen", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["chat_groups.id"],
            name=op.f("fk_group_messages_group_id_chat_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_group_messages")),
        sa.UniqueConstraint("msg_id", name=op.f("uq_group_messages_msg_id")),
    )
    op.create_index(
        "ix_group_messages_author_seq",
        "group_messages",
        ["group_id", "author", "seq"],
        unique=True,
    )
    op.create_index("ix_group_messages_order", "group_messages", ["group_id", "lamport", "author"])
    op.create_table(
        "group_delivery",
        sa.Column("group_id", sa.LargeBinary(), nullable=False),
        sa.Column("member", sa.LargeBinary(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["chat_groups.id"],
            name=op.f("fk_group_delivery_group_id_chat_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "member", name=op.f("pk_group_delivery")),
    )


def downgrade() -> None:
    op.drop_table("group_delivery")
    op.drop_index("ix_group_messages_order", table_name="group_messages")
    op.drop_index("ix_group_messages_author_seq", table_name="group_messages")
    op.drop_table("group_messages")
    op.drop_table("group_rosters")
    op.drop_table("chat_groups")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("group_only")

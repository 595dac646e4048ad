"""an index of the outbox alone instead of every message's (contact, state)

Revision ID: 0014
Revises: 0013

Every message had an entry in ix_messages_contact_state, so a lone commit wrote that
index's page besides the message's table and two other indexes: ~15 us of a ~90 us
commit on each side of send -> delivered, and each receipt moved the entry (issue 15).
What it served: the outbox read on every connect, marking a conversation read, and the
summary recounts (kept since 0008/0013). Now only our messages not yet acknowledged
(QUEUED 0, SENT 1) are indexed, by contact: an arriving message adds no entry, and a
receipt removes one. Marking read walks the conversation's newest messages until it has
found as many unread as the kept summary counts (Repository.mark_seen).
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX ix_messages_contact_state")
    op.execute("CREATE INDEX ix_messages_outbox ON messages (contact_id) WHERE state IN (0, 1)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_messages_outbox")
    op.execute("CREATE INDEX ix_messages_contact_state ON messages (contact_id, state)")

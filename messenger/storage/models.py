"""SQLAlchemy 2.x models. Alembic migrations in ``migrations/`` build exactly this schema."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Setting(Base):
    """Profile-wide key/value settings (JSON values), including the local identity."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class Contact(Base):
    __tablename__ = "contacts"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(64))
    ed25519_public: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    x25519_public: Mapped[bytes] = mapped_column(LargeBinary)
    static_certificate: Mapped[bytes] = mapped_column(LargeBinary)
    psk: Mapped[bytes] = mapped_column(LargeBinary)
    discovery_key: Mapped[bytes] = mapped_column(LargeBinary)
    conversation_id: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    addresses: Mapped[str] = mapped_column(Text, default="[]")
    created_at: Mapped[float] = mapped_column()
    last_seen: Mapped[float | None] = mapped_column(nullable=True)
    lamport: Mapped[int] = mapped_column(Integer, default=0)
    next_seq: Mapped[int] = mapped_column(Integer, default=1)
    # Known only as a member of a group we share (introduced by a signed roster): not
    # listed as a contact, used for the group's pairwise sessions only.
    group_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # A new identity under the name of a contact we already have (a re-created profile,
    # or someone using that name): nothing is sent to it until the user verifies or
    # accepts its safety number (migration 0009). `replaces` names that earlier contact.
    key_changed: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    replaces: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The conversation's summary: unread (RECEIVED) and outbox (QUEUED or SENT) counts and
    # the newest message in conversation order (lamport, msg_id), and with them `lamport`
    # and `next_seq` above, as the messages up to the search index's mark make them: the
    # indexer folds each chunk it indexes in, readers add the rows above the mark
    # (storage/rows.py), state changes and deletes move them by trigger (migrations 0008,
    # 0013). Storing a message writes no contact row: one page less per commit.
    unread: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    queued: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # messages.id
    last_lamport: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_msg_id: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class Invite(Base):
    """Invites we issued. Used ones stay as tombstones so a reuse is recognised as such."""

    __tablename__ = "invites"
    id: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[float] = mapped_column()
    expires_at: Mapped[int] = mapped_column(Integer)
    used_at: Mapped[float | None] = mapped_column(nullable=True)
    used_by: Mapped[str | None] = mapped_column(String(32), nullable=True)


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    msg_id: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    contact_id: Mapped[str] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    outgoing: Mapped[bool] = mapped_column(Boolean)
    seq: Mapped[int] = mapped_column(Integer)
    lamport: Mapped[int] = mapped_column(Integer)
    sent_at_ms: Mapped[int] = mapped_column(Integer)
    received_at_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_messages_conversation_order", "contact_id", "lamport", "msg_id"),
        # Our messages not yet acknowledged (QUEUED, SENT) only: an arriving message adds
        # no entry and a receipt removes one (migration 0014). A query uses it only if it
        # says `state IN (0, 1)` in these words (see Repository.outbox).
        Index("ix_messages_outbox", "contact_id", sqlite_where=text("state IN (0, 1)")),
    )


# -- groups (docs/protocol.md §16) ---------------------------------------------------------


class ChatGroup(Base):
    """A group we belong (or belonged) to; `roster` is the encoded, signed wire roster."""

    __tablename__ = "chat_groups"
    id: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    epoch: Mapped[int] = mapped_column(Integer)
    roster_hash: Mapped[bytes] = mapped_column(LargeBinary)
    roster: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[int] = mapped_column(Integer, default=0)  # groups.GroupState
    lamport: Mapped[int] = mapped_column(Integer, default=0)
    next_seq: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[float] = mapped_column()
    # As on Contact: unread count and the newest message in the group's order (lamport,
    # author, seq), kept by triggers on group_messages (migration 0008).
    unread: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # group_messages.id
    last_lamport: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_author: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    last_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)


class GroupRosterVersion(Base):
    """Every roster we accepted as current, by epoch: sent to members that are behind, so
    each step can be checked against the one before it."""

    __tablename__ = "group_rosters"
    group_id: Mapped[bytes] = mapped_column(
        ForeignKey("chat_groups.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    roster: Mapped[bytes] = mapped_column(LargeBinary)


class GroupMessageRow(Base):
    __tablename__ = "group_messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    msg_id: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    group_id: Mapped[bytes] = mapped_column(ForeignKey("chat_groups.id", ondelete="CASCADE"))
    author: Mapped[bytes] = mapped_column(LargeBinary)
    seq: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    lamport: Mapped[int] = mapped_column(Integer)
    sent_at_ms: Mapped[int] = mapped_column(Integer)
    received_at_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    body: Mapped[str] = mapped_column(Text)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    outgoing: Mapped[bool] = mapped_column(Boolean)
    seen: Mapped[bool] = mapped_column(Boolean)
    attachment: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)

    __table_args__ = (
        Index("ix_group_messages_author_seq", "group_id", "author", "seq", unique=True),
        Index("ix_group_messages_order", "group_id", "lamport", "author"),
        Index(
            "ix_group_messages_attachment",
            "group_id",
            sqlite_where=text("attachment IS NOT NULL"),
        ),
    )


class GroupDelivery(Base):
    """How far a member holds our own messages in a group (for "delivered to N of M")."""

    __tablename__ = "group_delivery"
    group_id: Mapped[bytes] = mapped_column(
        ForeignKey("chat_groups.id", ondelete="CASCADE"), primary_key=True
    )
    member: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)


class Attachment(Base):
    """A file offered to us or by us, named by its manifest root (docs/protocol.md §17)."""

    __tablename__ = "attachments"
    root: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    mime: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    chunk_size: Mapped[int] = mapped_column(Integer)
    file_key: Mapped[bytes] = mapped_column(LargeBinary)
    manifest: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    have: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    state: Mapped[int] = mapped_column(Integer)
    serving: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    thumbnail: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[float] = mapped_column()


class AttachmentMessage(Base):
    __tablename__ = "attachment_messages"
    msg_id: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    root: Mapped[bytes] = mapped_column(
        ForeignKey("attachments.root", ondelete="CASCADE"), index=True
    )
    contact_id: Mapped[str] = mapped_column(String(32))
    outgoing: Mapped[bool] = mapped_column(Boolean)


class AttachmentSource(Base):
    __tablename__ = "attachment_sources"
    root: Mapped[bytes] = mapped_column(
        ForeignKey("attachments.root", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[str] = mapped_column(String(32), primary_key=True)

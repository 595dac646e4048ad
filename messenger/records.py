"""What the service hands to front ends: plain frozen records, no ORM objects, no sockets."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class MessageState(IntEnum):
    QUEUED = 0  # stored in our outbox, not yet written to the peer
    SENT = 1  # written to a live session, no receipt yet (resent on reconnect)
    DELIVERED = 2  # the peer stored it and said so
    READ = 3  # the peer's read receipt arrived
    RECEIVED = 10  # incoming, not yet read by us
    SEEN = 11  # incoming, read by us

    @property
    def outgoing_pending(self) -> bool:
        return self in (MessageState.QUEUED, MessageState.SENT)


@dataclass(frozen=True, slots=True)
class ContactRecord:
    id: str
    display_name: str
    ed25519_public: bytes
    x25519_public: bytes
    verified: bool
    addresses: tuple[str, ...]
    created_at: float
    last_seen: float | None
    conversation_id: bytes


@dataclass(frozen=True, slots=True)
class MessageRecord:
    row_id: int
    msg_id: bytes
    contact_id: str
    outgoing: bool
    seq: int
    lamport: int
    sent_at_ms: int
    received_at_ms: int | None
    body: str
    state: MessageState

    @property
    def id_hex(self) -> str:
        return self.msg_id.hex()


@dataclass(frozen=True, slots=True)
class InviteRecord:
    id: bytes
    secret: bytes
    created_at: float
    expires_at: int
    used_at: float | None
    used_by: str | None


@dataclass(frozen=True, slots=True)
class NearbyPerson:
    """Someone visible on this network who is not a contact (LAN discovery, opt-in)."""

    id: str  # short id for `pair`: 8 hex digits, from the random mDNS instance name
    name: str  # self-chosen and unverified
    addresses: tuple[str, ...]
    seen_at: float
    open_group: str | None = None  # a group they announce as open to join (name only)


# -- groups (messenger/groups.py) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupMemberRecord:
    contact_id: str
    name: str  # as the roster introduced it (self-chosen when added)
    admin: bool
    online: bool
    is_me: bool


@dataclass(frozen=True, slots=True)
class GroupRecord:
    id: str  # 32 hex digits
    name: str
    epoch: int
    state: str  # "active", "left", "removed" or "deleted"
    members: tuple[GroupMemberRecord, ...]
    unread: int
    i_am_admin: bool


@dataclass(frozen=True, slots=True)
class GroupMessageRecord:
    row_id: int
    msg_id: bytes
    group_id: str
    author_id: str  # the author's contact id
    author_key: bytes  # the author's identity key: (lamport, author_key, seq) is the order
    author_name: str
    seq: int
    lamport: int
    sent_at_ms: int
    received_at_ms: int | None
    body: str
    outgoing: bool
    delivered_to: int  # our messages: members (other than us) known to hold it
    member_count: int  # members other than us

    @property
    def id_hex(self) -> str:
        return self.msg_id.hex()

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
    # "Safety number changed": a new identity under the name of the earlier contact
    # `replaces`; nothing is sent to it until the user verifies or accepts it.
    key_changed: bool = False
    replaces: str | None = None


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
class ConversationSummary:
    """One row of the conversation list: a contact and its conversation's summary."""

    contact: ContactRecord
    last_message: MessageRecord | None
    unread: int
    online: bool
    queued: int = 0  # our messages still in the outbox

    @property
    def last_activity(self) -> float:
        if self.last_message is not None:
            return self.last_message.sent_at_ms / 1000
        return self.contact.created_at


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


# -- groups (messenger/groups/) ------------------------------------------------------------

# A group's id as every record, event and public method carries it: 32 lowercase hex
# digits (the 16 bytes of the wire and storage, converted once inside the group worker).
GroupId = str


@dataclass(frozen=True, slots=True)
class GroupMemberRecord:
    contact_id: str
    name: str  # as the roster introduced it (self-chosen when added)
    admin: bool
    online: bool
    is_me: bool


@dataclass(frozen=True, slots=True)
class GroupRecord:
    id: GroupId
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
    group_id: GroupId
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
    file_id: str | None = None  # a file offer: the transfer id (its root hash, hex)

    @property
    def id_hex(self) -> str:
        return self.msg_id.hex()


class TransferState(IntEnum):
    """Our copy of a file (docs/protocol.md §17)."""

    OFFERED = 0  # offered to us, not accepted yet
    DOWNLOADING = 1  # accepted: fetching chunks whenever a source is reachable
    PAUSED = 2  # paused by us
    COMPLETE = 3  # every chunk verified and stored; we can serve it
    CANCELLED = 4  # cancelled (by us or its sender); the partial copy is deleted
    FAILED = 5  # stopped on an error (disk full, bad manifest); `error` says which


@dataclass(frozen=True, slots=True)
class TransferRecord:
    """A file in our attachment store, or offered to us. `id` is its root hash in hex."""

    id: str
    name: str
    mime: str
    size: int
    state: TransferState
    have_bytes: int
    outgoing: bool  # we sent it (imported it ourselves)
    serving: bool  # we answer chunk requests for it
    contacts: tuple[str, ...]  # conversations it appears in
    groups: tuple[GroupId, ...]  # groups it was shared in
    sources: tuple[str, ...]  # contacts that can serve it to us
    dropped_sources: tuple[str, ...]  # sources that sent a bad chunk or manifest
    error: str | None  # why it failed or waits (disk full, paused by the sender, ...)
    speed: float  # bytes per second over the last moments (0 when idle)
    fetched_chunks: int  # chunks this run fetched (not counting those held before)
    chunks_by_source: tuple[tuple[str, int], ...]  # chunks this run fetched from each source
    msg_ids: tuple[bytes, ...]  # the chat messages that carry it
    peers: tuple[tuple[str, str], ...]  # (contact, status) for those we send it to

    @property
    def progress(self) -> float:
        return self.have_bytes / self.size if self.size else 1.0

    @property
    def eta(self) -> float | None:
        if self.speed <= 0 or self.state is not TransferState.DOWNLOADING:
            return None
        return (self.size - self.have_bytes) / self.speed

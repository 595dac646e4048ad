"""Events the service emits to its front ends (Qt bridge, CLI, bots)."""

from __future__ import annotations

from dataclasses import dataclass

from .records import (
    ContactRecord,
    GroupId,
    GroupMessageRecord,
    GroupRecord,
    MessageRecord,
    MessageState,
    NearbyPerson,
    TransferRecord,
)


@dataclass(frozen=True, slots=True)
class ContactAdded:
    contact: ContactRecord


@dataclass(frozen=True, slots=True)
class ContactChanged:
    contact: ContactRecord


@dataclass(frozen=True, slots=True)
class SafetyNumberChanged:
    """A new contact arrived under the name of one we already have (`contact.replaces`),
    with another identity key: held (nothing sent) until the user verifies or accepts it.
    Sent after its ContactAdded; later, ContactRecord.key_changed says the same."""

    contact: ContactRecord


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    """A contact came online or went offline, or its live session moved to another route.
    `route` (None when offline) says how the session runs: "lan" (a direct connection to a
    private, link-local or loopback address), "direct" (a direct connection to a public
    address) or "tor" (through Tor: their onion service or ours)."""

    contact_id: str
    online: bool
    route: str | None = None


@dataclass(frozen=True, slots=True)
class MessageAdded:
    """A message entered a conversation: one of ours queued, or one of theirs stored."""

    message: MessageRecord


@dataclass(frozen=True, slots=True)
class MessageStatesChanged:
    """Our messages reached `state` (a state only moves forward: apply max(old, new);
    ids that are not ours, or already further, are to be ignored)."""

    contact_id: str
    msg_ids: tuple[bytes, ...]
    state: MessageState


@dataclass(frozen=True, slots=True)
class TypingChanged:
    contact_id: str
    active: bool


@dataclass(frozen=True, slots=True)
class ContactRemoved:
    contact_id: str


@dataclass(frozen=True, slots=True)
class NearbyChanged:
    """The Nearby list changed (at most one event a second)."""

    people: tuple[NearbyPerson, ...]


@dataclass(frozen=True, slots=True)
class PairingRequested:
    """A nearby pairing reached the point where both users compare `sas` and confirm."""

    pairing_id: str
    name: str  # the other side's self-chosen name; trust it only once the digits match
    sas: str  # six digits
    incoming: bool  # they asked us (True) or we asked them


@dataclass(frozen=True, slots=True)
class PairingEnded:
    pairing_id: str
    contact_id: str | None  # the new (verified) contact, or None if it did not happen
    reason: str


@dataclass(frozen=True, slots=True)
class GroupChanged:
    """A group appeared or its roster, name or state changed."""

    group: GroupRecord


@dataclass(frozen=True, slots=True)
class GroupDeleted:
    """The group was deleted on this device."""

    group_id: GroupId


@dataclass(frozen=True, slots=True)
class GroupMessageAdded:
    message: GroupMessageRecord


@dataclass(frozen=True, slots=True)
class GroupDeliveryChanged:
    """`contact_id` now holds our messages in the group up to `seq` (our author seq):
    each of our messages with seq <= this counts it in "delivered to N of M"."""

    group_id: GroupId
    contact_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class GroupJoinRequested:
    """A contact (usually just paired nearby) asks to join an open group we administer."""

    group_id: GroupId
    contact_id: str
    name: str  # the contact's name


@dataclass(frozen=True, slots=True)
class TransferChanged:
    """A file transfer changed state, or made progress (at most a few times a second)."""

    transfer: TransferRecord


@dataclass(frozen=True, slots=True)
class FileOfferRejected:
    """An offer was refused: one we received was hostile or unacceptable (incoming=True),
    or a contact refused ours (incoming=False). `reason` is for the user."""

    contact_id: str
    name: str
    reason: str
    incoming: bool


@dataclass(frozen=True, slots=True)
class TorStatusChanged:
    """Tor reach: `state` is "off", "starting" (bootstrapping: see `percent`), "ready" (the
    onion service is published at `onion`), "lost" (tor went away; restarting) or
    "failed" (`error` says why; LAN and direct addresses still work)."""

    state: str
    percent: int = 0
    summary: str = ""
    onion: str | None = None  # "<56 chars>.onion:<port>", once known
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DiskSpace:
    """The disk holding the profile became full (full=True: arriving messages cannot be
    stored, their senders keep them and send them again), or has room again (full=False).
    `message` is for the user."""

    full: bool
    message: str


ServiceEvent = (
    ContactAdded
    | ContactChanged
    | SafetyNumberChanged
    | PresenceChanged
    | MessageAdded
    | MessageStatesChanged
    | TypingChanged
    | ContactRemoved
    | NearbyChanged
    | PairingRequested
    | PairingEnded
    | GroupChanged
    | GroupDeleted
    | GroupMessageAdded
    | GroupDeliveryChanged
    | GroupJoinRequested
    | TransferChanged
    | FileOfferRejected
    | TorStatusChanged
    | DiskSpace
)

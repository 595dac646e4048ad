"""Events the service emits to its front ends (Qt bridge, CLI, bots)."""

from __future__ import annotations

from dataclasses import dataclass

from .records import ContactRecord, MessageRecord, MessageState


@dataclass(frozen=True, slots=True)
class ContactAdded:
    contact: ContactRecord


@dataclass(frozen=True, slots=True)
class ContactChanged:
    contact: ContactRecord


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    contact_id: str
    online: bool


@dataclass(frozen=True, slots=True)
class MessageAdded:
    """A message entered a conversation: one of ours queued, or one of theirs stored."""

    message: MessageRecord


@dataclass(frozen=True, slots=True)
class MessageStatesChanged:
    contact_id: str
    msg_ids: tuple[bytes, ...]
    state: MessageState


@dataclass(frozen=True, slots=True)
class TypingChanged:
    contact_id: str
    active: bool


ServiceEvent = (
    ContactAdded
    | ContactChanged
    | PresenceChanged
    | MessageAdded
    | MessageStatesChanged
    | TypingChanged
)

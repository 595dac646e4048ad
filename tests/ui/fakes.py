"""An in-memory stand-in for ui.bridge.Bridge: the same signals and coroutines, over lists.

For model tests that are about paging and ordering, not about the network; the window
tests use real peers on loopback instead.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from PySide6.QtCore import QObject, Signal

from messenger import ContactRecord, ConversationSummary, MessageRecord, MessageState


def contact(name: str, cid: str | None = None, *, verified: bool = False) -> ContactRecord:
    cid = cid or name.lower().ljust(32, "0")[:32]
    return ContactRecord(
        id=cid,
        display_name=name,
        ed25519_public=os.urandom(32),
        x25519_public=os.urandom(32),
        verified=verified,
        addresses=(),
        created_at=time.time() - 3 * 3600,
        last_seen=None,
        conversation_id=os.urandom(16),
    )


BASE_MS = int(time.time() * 1000) - 2 * 3600 * 1000


def message(
    contact_id: str,
    lamport: int,
    body: str = "",
    *,
    outgoing: bool = False,
    sent_at_ms: int | None = None,
    state: MessageState | None = None,
) -> MessageRecord:
    return MessageRecord(
        row_id=lamport,
        msg_id=lamport.to_bytes(8, "big") + os.urandom(8),
        contact_id=contact_id,
        outgoing=outgoing,
        seq=lamport,
        lamport=lamport,
        sent_at_ms=sent_at_ms if sent_at_ms is not None else BASE_MS + lamport * 1000,
        received_at_ms=None if outgoing else BASE_MS + lamport * 1000,
        body=body or f"message {lamport}",
        state=state
        if state is not None
        else (MessageState.DELIVERED if outgoing else MessageState.SEEN),
    )


class FakeBridge(QObject):
    contactAdded = Signal(object)
    contactChanged = Signal(object)
    presenceChanged = Signal(str, bool)
    routeChanged = Signal(str, str)
    messageAdded = Signal(object)
    messageStatesChanged = Signal(str, object, int)
    typingChanged = Signal(str, bool)
    settingChanged = Signal(str, object)
    transferChanged = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.contacts: list[ContactRecord] = []
        self.messages: dict[str, list[MessageRecord]] = {}
        self.online: set[str] = set()
        self.settings: dict[str, Any] = {"notifications": True, "notification_previews": True}
        self.history_calls: list[dict[str, Any]] = []
        self.marked_read: list[str] = []
        self.delay = 0.0
        self.display_name = "Me"
        self.my_id = "f" * 32
        self.max_body_bytes = 65536

    def add(self, c: ContactRecord, messages: list[MessageRecord] = ()) -> None:  # type: ignore[assignment]
        self.contacts.append(c)
        self.messages[c.id] = sorted(messages, key=lambda m: (m.lamport, m.msg_id))

    def setting(self, key: str) -> Any:
        return self.settings.get(key)

    def transfers(self, contact_id: str | None = None) -> list[Any]:
        return []  # no files in the fake's conversations

    def route(self, contact_id: str) -> str:
        return "lan" if contact_id in self.online else ""

    def is_online(self, contact_id: str) -> bool:
        return contact_id in self.online

    async def conversations(self) -> list[ConversationSummary]:
        out = []
        for c in self.contacts:
            msgs = self.messages.get(c.id, [])
            unread = sum(1 for m in msgs if m.state is MessageState.RECEIVED)
            out.append(
                ConversationSummary(c, msgs[-1] if msgs else None, unread, c.id in self.online)
            )
        out.sort(key=lambda s: -s.last_activity)
        return out

    async def history(
        self,
        contact_id: str,
        *,
        limit: int = 50,
        before: tuple[int, bytes] | None = None,
        after: tuple[int, bytes] | None = None,
    ) -> list[MessageRecord]:
        self.history_calls.append({"limit": limit, "before": before, "after": after})
        if self.delay:
            await asyncio.sleep(self.delay)
        msgs = self.messages.get(contact_id, [])
        if after is not None:
            return [m for m in msgs if (m.lamport, m.msg_id) > after][:limit]
        if before is not None:
            msgs = [m for m in msgs if (m.lamport, m.msg_id) < before]
        return msgs[-limit:]

    async def mark_read(self, contact_id: str) -> int:
        self.marked_read.append(contact_id)
        return 0

    async def search(self, text: str, contact_id: str | None = None) -> list[MessageRecord]:
        words = text.lower().split()
        found = [
            m
            for cid, msgs in self.messages.items()
            if contact_id in (None, cid)
            for m in msgs
            if all(w in m.body.lower() for w in words)
        ]
        return sorted(found, key=lambda m: -m.sent_at_ms)[:100]

    def deliver(self, m: MessageRecord) -> None:
        """A message arrives (stored, then the event)."""
        self.messages.setdefault(m.contact_id, []).append(m)
        self.messages[m.contact_id].sort(key=lambda x: (x.lamport, x.msg_id))
        self.messageAdded.emit(m)

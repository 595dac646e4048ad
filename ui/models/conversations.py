"""The conversation list: one row per contact, newest activity first, live from the bridge."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from PySide6.QtCore import (
    QByteArray,
    QModelIndex,
    QObject,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)

from messenger import ContactRecord, MessageRecord, MessageState
from ui.bridge import Bridge
from ui.models.base import RecordListModel

# A typing notice that is not renewed within this many seconds has expired (the peer may
# have closed the window or lost the connection before saying it stopped).
TYPING_TTL = 8.0
# During a burst of arrivals the list is re-sorted and repainted at most this often (s).
COMMIT_SPACING = 0.1


def _order(m: MessageRecord) -> tuple[int, bytes]:
    return (m.lamport, m.msg_id)


@dataclass(slots=True)
class ConversationItem:
    contact: ContactRecord
    last: MessageRecord | None
    unread: int
    online: bool
    typing: bool = False
    last_seen: float | None = None
    route: str = ""  # how the live session runs: "lan", "direct", "tor"; "" offline

    @property
    def id(self) -> str:
        return self.contact.id

    @property
    def name(self) -> str:
        return self.contact.display_name

    @property
    def activity_ms(self) -> int:
        """When this conversation last moved: our clock for what arrived, else its own."""
        if self.last is None:
            return int(self.contact.created_at * 1000)
        return self.last.received_at_ms or self.last.sent_at_ms

    def sort_key(self) -> tuple[int, str]:
        return (-self.activity_ms, self.name.casefold())

    def accessible_text(self) -> str:
        parts = [self.name]
        if self.contact.key_changed:
            parts.append("safety number changed")
        if self.contact.verified:
            parts.append("verified")
        if self.online and self.route == "tor":
            parts.append("online over Tor")
        else:
            parts.append("online" if self.online else "offline")
        if self.unread:
            parts.append(f"{self.unread} unread")
        if self.typing:
            parts.append("typing")
        elif self.last is not None:
            who = "You" if self.last.outgoing else self.name
            parts.append(f"last message from {who}: {self.last.body[:80]}")
        return ", ".join(parts)


class ConversationListModel(RecordListModel[ConversationItem]):
    ItemRole = Qt.ItemDataRole.UserRole + 1
    ContactIdRole = Qt.ItemDataRole.UserRole + 2

    unreadTotalChanged = Signal(int)
    typingChanged = Signal(str, bool)  # contact_id, active (expires by itself)
    contactUpdated = Signal(object)  # ConversationItem: name, verification or presence changed

    def __init__(self, bridge: Bridge, parent: QObject | None = None) -> None:
        super().__init__(bridge, parent)
        self._typing_until: dict[str, float] = {}
        self._typing_timer = QTimer(self)
        self._typing_timer.setInterval(1000)
        self._typing_timer.timeout.connect(self._expire_typing)
        self._unread_total = 0
        self._dirty: set[str] = set()
        self._last_commit = 0.0
        self._commit_timer = QTimer(self)
        self._commit_timer.setSingleShot(True)
        self._commit_timer.timeout.connect(self._commit)
        # Set by the window: True when the user is looking at that conversation right now,
        # so what arrives there is read, not unread.
        self.read_now: Callable[[str], bool] | None = None
        self._listen(
            (bridge.messageAdded, self._on_message_added),
            (bridge.messageStatesChanged, self._on_states_changed),
            (bridge.presenceChanged, self._on_presence_changed),
            (bridge.routeChanged, self._on_route_changed),
            (bridge.contactAdded, self._on_contact_added),
            (bridge.contactChanged, self._on_contact_changed),
            (bridge.typingChanged, self._on_typing_changed),
        )

    def detach(self) -> None:
        super().detach()
        self._typing_timer.stop()
        self._commit_timer.stop()

    # -- loading ----------------------------------------------------------------------------

    async def load(self) -> None:
        summaries = await self.bridge.conversations()
        items = [
            ConversationItem(
                s.contact,
                s.last_message,
                s.unread,
                s.online,
                last_seen=s.contact.last_seen,
                route=self.bridge.route(s.contact.id) if s.online else "",
            )
            for s in summaries
        ]
        items.sort(key=ConversationItem.sort_key)
        self.beginResetModel()
        self._rows = items
        self.endResetModel()
        self._update_unread_total()

    async def reload(self) -> None:
        """Read every summary again and update the rows in place (selection and scroll
        stay): the window does this when the service comes up behind a list painted
        from the StartupView. A different set of conversations is loaded afresh."""
        summaries = {s.contact.id: s for s in await self.bridge.conversations()}
        if set(summaries) != {item.id for item in self._rows}:
            await self.load()
            return
        for contact_id, summary in summaries.items():
            row = self.row_of(contact_id)
            item = self._rows[row]
            item.contact, item.last, item.unread = (
                summary.contact,
                summary.last_message,
                summary.unread,
            )
            item.online = summary.online
            item.route = self.bridge.route(contact_id) if summary.online else ""
            if not summary.online:
                item.last_seen = summary.contact.last_seen
            self._changed(row)
            self._resort(row)
            self.contactUpdated.emit(item)
        self._update_unread_total()

    async def refresh(self, contact_ids: set[str]) -> None:
        """Read these conversations' summaries again (messages moved between them)."""
        for summary in await self.bridge.conversations():
            row = self.row_of(summary.contact.id)
            if summary.contact.id not in contact_ids or row < 0:
                continue
            item = self._rows[row]
            item.contact, item.last, item.unread = (
                summary.contact,
                summary.last_message,
                summary.unread,
            )
            self._changed(row)
            self._resort(row)
        self._update_unread_total()

    # -- Qt model API -------------------------------------------------------------------------

    def role_data(self, row: int, item: ConversationItem, role: int) -> Any:
        answer = _ROLES.get(role)
        return None if answer is None else answer(self, item)

    def roleNames(self) -> dict[int, QByteArray]:
        return {
            **super().roleNames(),
            self.ItemRole: QByteArray(b"item"),
            self.ContactIdRole: QByteArray(b"contactId"),
        }

    # -- lookups ------------------------------------------------------------------------------

    def items(self) -> list[ConversationItem]:
        return self.records()

    def row_of(self, contact_id: str) -> int:
        for row, item in enumerate(self._rows):
            if item.id == contact_id:
                return row
        return -1

    def item(self, contact_id: str) -> ConversationItem | None:
        row = self.row_of(contact_id)
        return self._rows[row] if row >= 0 else None

    def unread_total(self) -> int:
        return sum(item.unread for item in self._rows)

    def is_typing(self, contact_id: str) -> bool:
        return self._typing_until.get(contact_id, 0.0) > time.monotonic()

    # -- changes ------------------------------------------------------------------------------

    def clear_unread(self, contact_id: str) -> None:
        row = self.row_of(contact_id)
        if row >= 0 and self._rows[row].unread:
            self._rows[row].unread = 0
            self._changed(row)
            self._update_unread_total()

    def _update_unread_total(self) -> None:
        total = sum(item.unread for item in self._rows)
        if total != self._unread_total:
            self._unread_total = total
            self.unreadTotalChanged.emit(total)

    def _resort(self, row: int) -> int:
        """Move the row to where its activity puts it; returns its new row."""
        key = self._rows[row].sort_key()
        new_row = sum(
            1 for i, other in enumerate(self._rows) if i != row and other.sort_key() < key
        )
        if new_row == row:
            return row
        dest = new_row if new_row < row else new_row + 1
        self.beginMoveRows(QModelIndex(), row, row, QModelIndex(), dest)
        self._rows.insert(new_row, self._rows.pop(row))
        self.endMoveRows()
        return new_row

    def _on_message_added(self, message: MessageRecord) -> None:
        row = self.row_of(message.contact_id)
        if row < 0:
            return
        item = self._rows[row]
        if item.last is None or _order(message) >= _order(item.last):
            item.last = message
        if (
            not message.outgoing
            and message.state is MessageState.RECEIVED
            and not (self.read_now is not None and self.read_now(message.contact_id))
        ):
            item.unread += 1
        if not message.outgoing and item.typing:
            item.typing = False
            self._typing_until.pop(item.id, None)
            self.typingChanged.emit(item.id, False)
        # Repaint, re-sort and recount once per burst, not once per message.
        self._dirty.add(item.id)
        if not self._commit_timer.isActive():
            recent = time.monotonic() - self._last_commit < COMMIT_SPACING
            self._commit_timer.setInterval(int(COMMIT_SPACING * 1000) if recent else 0)
            self._commit_timer.start()

    def _commit(self) -> None:
        self._last_commit = time.monotonic()
        dirty, self._dirty = self._dirty, set()
        for contact_id in dirty:
            row = self.row_of(contact_id)
            if row >= 0:
                self._changed(row)
                self._resort(row)
        self._update_unread_total()

    def flush(self) -> None:
        """Apply pending arrivals now (tests, and before a window closes)."""
        if self._dirty:
            self._commit_timer.stop()
            self._commit()

    def _on_states_changed(self, contact_id: str, msg_ids: object, state: int) -> None:
        row = self.row_of(contact_id)
        if row < 0:
            return
        item = self._rows[row]
        last = item.last
        if last is not None and last.msg_id in set(msg_ids) and last.state < state:  # type: ignore[call-overload]
            item.last = replace(last, state=MessageState(state))
            self._changed(row)

    def _on_presence_changed(self, contact_id: str, online: bool) -> None:
        row = self.row_of(contact_id)
        if row < 0:
            return
        item = self._rows[row]
        item.online = online
        item.last_seen = time.time()
        if not online and item.typing:
            item.typing = False
            self._typing_until.pop(contact_id, None)
            self.typingChanged.emit(contact_id, False)
        self._changed(row)
        self.contactUpdated.emit(item)

    def _on_route_changed(self, contact_id: str, route: str) -> None:
        row = self.row_of(contact_id)
        if row < 0 or self._rows[row].route == route:
            return
        item = self._rows[row]
        item.route = route
        self._changed(row)
        self.contactUpdated.emit(item)

    def _on_contact_added(self, contact: ContactRecord) -> None:
        if self.row_of(contact.id) >= 0:
            self._on_contact_changed(contact)
            return
        online = self.bridge.is_online(contact.id)
        item = ConversationItem(
            contact,
            None,
            0,
            online,
            last_seen=contact.last_seen,
            route=self.bridge.route(contact.id) if online else "",
        )
        self.beginInsertRows(QModelIndex(), 0, 0)
        self._rows.insert(0, item)
        self.endInsertRows()
        self._resort(0)

    def _on_contact_changed(self, contact: ContactRecord) -> None:
        row = self.row_of(contact.id)
        if row < 0:
            self._on_contact_added(contact)
            return
        item = self._rows[row]
        item.contact = contact
        item.last_seen = contact.last_seen if not item.online else item.last_seen
        self._changed(row)
        self.contactUpdated.emit(item)

    def _on_typing_changed(self, contact_id: str, active: bool) -> None:
        row = self.row_of(contact_id)
        if row < 0:
            return
        item = self._rows[row]
        if active:
            self._typing_until[contact_id] = time.monotonic() + TYPING_TTL
            if not self._typing_timer.isActive():
                self._typing_timer.start()
        else:
            self._typing_until.pop(contact_id, None)
        if item.typing != active:
            item.typing = active
            self._changed(row)
            self.typingChanged.emit(contact_id, active)

    def _expire_typing(self) -> None:
        now = time.monotonic()
        for contact_id, until in list(self._typing_until.items()):
            if until <= now:
                self._on_typing_changed(contact_id, False)
        if not self._typing_until:
            self._typing_timer.stop()


_ROLES: dict[int, Callable[[ConversationListModel, ConversationItem], Any]] = {
    ConversationListModel.ItemRole: lambda _m, item: item,
    Qt.ItemDataRole.DisplayRole: lambda _m, item: item.name,
    Qt.ItemDataRole.EditRole: lambda _m, item: item.name,
    ConversationListModel.ContactIdRole: lambda _m, item: item.id,
    Qt.ItemDataRole.AccessibleTextRole: lambda _m, item: item.accessible_text(),
    Qt.ItemDataRole.ToolTipRole: lambda _m, item: _tooltip(item),
}

_ROUTE_NOTE = {"tor": "online over Tor", "lan": "online on your network", "direct": "online"}


def _tooltip(item: ConversationItem) -> str:
    """Name and id, and how they are reached (the onion mark is explained here)."""
    text = f"{item.name} · {item.id[:16]}"
    if item.online:
        text += f"\n{_ROUTE_NOTE.get(item.route, 'online')}"
    return text


class ConversationFilterModel(QSortFilterProxyModel):
    """The filter box: matches a name anywhere, ignoring case and accents' absence."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setFilterRole(Qt.ItemDataRole.DisplayRole)
        self.setDynamicSortFilter(False)

    def set_filter(self, text: str) -> None:
        self.setFilterFixedString(text.strip())

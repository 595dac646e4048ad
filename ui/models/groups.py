"""Groups in the sidebar and one group's history, live from the bridge (ui/bridge.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from PySide6.QtCore import (
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QImage

from messenger import GroupMessageRecord, GroupRecord, TransferRecord
from ui.bridge import Bridge
from ui.models.base import RecordListModel
from ui.models.history import day_label, local_time
from ui.models.thumbnails import Thumbnails
from ui.models.transfers import status_text
from ui.tasks import TaskSet

Index = QModelIndex | QPersistentModelIndex
PAGE = 50
MAX_JUMP_PAGES = 400  # a search hit further back than 20,000 messages is not loaded


def message_order(m: GroupMessageRecord) -> tuple[int, bytes, int]:
    """The order every member shows: Lamport time, author key, author seq."""
    return (m.lamport, m.author_key, m.seq)


@dataclass(slots=True)
class GroupItem:
    group: GroupRecord
    last: GroupMessageRecord | None
    unread: int

    @property
    def id(self) -> str:
        return self.group.id

    @property
    def activity_ms(self) -> int:
        if self.last is None:
            return 0
        return self.last.received_at_ms or self.last.sent_at_ms

    def online_count(self, bridge: Bridge) -> int:
        return sum(1 for m in self.group.members if m.is_me or bridge.is_online(m.contact_id))

    def preview(self) -> str:
        if self.group.state != "active":
            return {"left": "You left this group", "removed": "You were removed"}.get(
                self.group.state, ""
            )
        if self.last is None:
            return f"{len(self.group.members)} members"
        who = "You" if self.last.outgoing else self.last.author_name
        return f"{who}: {' '.join(self.last.body.split())}"


class GroupListModel(RecordListModel[GroupItem]):
    ItemRole = Qt.ItemDataRole.UserRole + 1
    GroupIdRole = Qt.ItemDataRole.UserRole + 2

    unreadTotalChanged = Signal(int)

    def __init__(self, bridge: Bridge, parent: QObject | None = None) -> None:
        super().__init__(bridge, parent)
        # Set by the window: is the user reading that group now?
        self.read_now: Callable[[str], bool] | None = None
        self._listen(
            (bridge.groupChanged, self._on_group_changed),
            (bridge.groupDeleted, self._on_group_deleted),
            (bridge.groupMessageAdded, self._on_message),
            (bridge.presenceChanged, self._on_presence),
        )

    async def load(self) -> None:
        """Fill the list; when the same groups are listed already (painted from the
        StartupView, then the service came up) the rows are updated in place, so the
        selection stays."""
        items = [
            GroupItem(group, last, group.unread) for group, last in await self.bridge.group_list()
        ]
        items.sort(key=lambda i: (-i.activity_ms, i.group.name.casefold()))
        if [i.id for i in items] == [i.id for i in self._rows]:
            self._rows = items
            for row in range(len(items)):
                self._changed(row)
        else:
            self.beginResetModel()
            self._rows = items
            self.endResetModel()
        self.unreadTotalChanged.emit(self.unread_total())

    # -- Qt model ------------------------------------------------------------------------

    def role_data(self, row: int, item: GroupItem, role: int) -> Any:
        if role == Qt.ItemDataRole.DisplayRole:
            return item.group.name
        if role == Qt.ItemDataRole.AccessibleTextRole:
            online = item.online_count(self.bridge)
            unread = f", {item.unread} unread" if item.unread else ""
            return f"group {item.group.name}, {online} of {len(item.group.members)} online{unread}"
        if role == self.ItemRole:
            return item
        if role == self.GroupIdRole:
            return item.id
        return None

    # -- queries ---------------------------------------------------------------------------

    def item(self, group_id: str) -> GroupItem | None:
        for item in self._rows:
            if item.id == group_id:
                return item
        return None

    def unread_total(self) -> int:
        return sum(i.unread for i in self._rows)

    def clear_unread(self, group_id: str) -> None:
        row = self._row(group_id)
        if row is not None and self._rows[row].unread:
            self._rows[row].unread = 0
            self._changed(row)
            self.unreadTotalChanged.emit(self.unread_total())

    # -- updates ---------------------------------------------------------------------------

    def _row(self, group_id: str) -> int | None:
        for row, item in enumerate(self._rows):
            if item.id == group_id:
                return row
        return None

    def _on_group_changed(self, group: GroupRecord) -> None:
        row = self._row(group.id)
        if row is None:
            self.beginInsertRows(QModelIndex(), 0, 0)
            self._rows.insert(0, GroupItem(group, None, 0))
            self.endInsertRows()
            return
        item = self._rows[row]
        item.group = replace(group, unread=item.unread)
        self._changed(row)

    def _on_group_deleted(self, group_id: str) -> None:
        row = self._row(group_id)
        if row is not None:
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._rows[row]
            self.endRemoveRows()
            self.unreadTotalChanged.emit(self.unread_total())

    def _on_message(self, message: GroupMessageRecord) -> None:
        row = self._row(message.group_id)
        if row is None:
            return
        item = self._rows[row]
        if item.last is None or message_order(message) >= message_order(item.last):
            item.last = message
        if not message.outgoing and not (self.read_now and self.read_now(message.group_id)):
            item.unread += 1
            self.unreadTotalChanged.emit(self.unread_total())
        if row != 0 and item.activity_ms >= self._rows[0].activity_ms:
            self.beginMoveRows(QModelIndex(), row, row, QModelIndex(), 0)
            self._rows.insert(0, self._rows.pop(row))
            self.endMoveRows()
            row = 0
        self._changed(row)

    def _on_presence(self, contact_id: str, _online: bool) -> None:
        for row, item in enumerate(self._rows):
            if any(m.contact_id == contact_id for m in item.group.members):
                self._changed(row)


class GroupHistoryModel(RecordListModel[GroupMessageRecord]):
    """One group's messages, oldest first; older pages load as the view scrolls up."""

    MessageRole = Qt.ItemDataRole.UserRole + 1

    loadingChanged = Signal(bool)  # an older page started / finished loading

    def __init__(self, bridge: Bridge, parent: QObject | None = None) -> None:
        super().__init__(bridge, parent)
        self.group_id: str | None = None
        self._delivery: dict[str, int] = {}
        self._others: set[str] = set()
        self._more = False
        self._loading = False
        self._tasks = TaskSet("group history")
        self._transfers: dict[str, TransferRecord] = {}  # file id -> its current state
        self._thumbnails = Thumbnails(bridge, self._tasks, lambda _id, _image: self._relayout())
        self.highlight: bytes | None = None  # a message found by search, outlined
        self._listen(
            (bridge.groupMessageAdded, self._on_message),
            (bridge.groupDeliveryChanged, self._on_delivery),
            (bridge.groupChanged, self._on_group_changed),
            (bridge.transferChanged, self._on_transfer),
        )

    def detach(self) -> None:
        self._tasks.close()
        super().detach()

    async def show_group(self, group: GroupRecord) -> None:
        self.group_id = group.id
        self.highlight = None
        self._others = {m.contact_id for m in group.members if not m.is_me}
        self._delivery = self.bridge.group_delivery(group.id)
        page = await self.bridge.group_history(group.id, limit=PAGE)
        if self.group_id != group.id:
            return  # another group was opened meanwhile
        # Messages of this group that came in while the page was read (our own, sent at
        # once, among them) were added to the rows on screen: they stay, after the page.
        listed = {m.msg_id for m in page}
        arrived = [m for m in self._rows if m.group_id == group.id and m.msg_id not in listed]
        self.beginResetModel()
        self._rows = sorted([*page, *arrived], key=message_order) if arrived else page
        self._more = len(page) == PAGE
        self._transfers = {t.id: t for t in self.bridge.transfers(group_id=group.id)}
        self.endResetModel()

    def role_data(self, row: int, m: GroupMessageRecord, role: int) -> Any:
        if role == self.MessageRole:
            return m
        if role == Qt.ItemDataRole.DisplayRole:
            return m.body
        if role == Qt.ItemDataRole.AccessibleTextRole:
            who = "You" if m.outgoing else m.author_name
            tail = (
                f", delivered to {self.delivered(m)} of {len(self._others)}" if m.outgoing else ""
            )
            t = self.transfer_of(m)
            file = f", file {t.name}: {status_text(t)}" if t is not None else ""
            return f"{who}: {m.body}{file}{tail}"
        return None

    def day_of(self, row: int) -> str | None:
        """The day's label shown above this row ("Today", "Yesterday", a date): on the
        first row, and on each row sent on another day than the row before it."""
        day = local_time(self._rows[row].sent_at_ms).date()
        if row > 0 and local_time(self._rows[row - 1].sent_at_ms).date() == day:
            return None
        return day_label(day)

    def transfer_of(self, m: GroupMessageRecord) -> TransferRecord | None:
        """The file a message offers (its current state); None for text, or a file this
        member refused (the message then reads as text)."""
        return self._transfers.get(m.file_id) if m.file_id else None

    def thumbnail(self, t: TransferRecord) -> QImage | None:
        """A finished image's thumbnail; the first ask loads it (the layout follows)."""
        return self._thumbnails.get(t)

    def _relayout(self) -> None:
        """Rows changed height (a thumbnail arrived, a progress bar came or went)."""
        self.layoutAboutToBeChanged.emit()
        self.layoutChanged.emit()

    def _on_transfer(self, t: TransferRecord) -> None:
        if self.group_id is None or self.group_id not in t.groups:
            return
        old = self._transfers.get(t.id)
        self._transfers[t.id] = t
        if old is None or old.state is not t.state:
            self._relayout()
            return
        rows = [i for i, m in enumerate(self._rows) if m.file_id == t.id]
        if rows:
            self._changed(min(rows), max(rows))

    def delivered(self, m: GroupMessageRecord) -> int:
        return sum(1 for c in self._others if self._delivery.get(c, 0) >= m.seq)

    def member_count(self) -> int:
        return len(self._others)

    def row_of(self, msg_id: bytes) -> int:
        for row, m in enumerate(self._rows):
            if m.msg_id == msg_id:
                return row
        return -1

    @property
    def has_older(self) -> bool:
        """Older messages than those loaded are stored."""
        return self._more

    async def load_until(self, msg_id: bytes, max_pages: int = MAX_JUMP_PAGES) -> int:
        """Load older pages until `msg_id` is in the model; its row, or -1 (not in the
        group, or more than `max_pages` pages back)."""
        pages = 0
        while pages < max_pages:
            row = self.row_of(msg_id)
            if row >= 0 or not self._more or not self._rows or self.group_id is None:
                return row
            if self._loading:  # the view's own fetch is on its way: let it land first
                await asyncio.sleep(0.005)
                continue
            self._set_loading(True)
            await self._older(self.group_id, message_order(self._rows[0]))
            pages += 1
        return self.row_of(msg_id)

    def set_highlight(self, msg_id: bytes | None) -> None:
        old, self.highlight = self.highlight, msg_id
        for changed in (old, msg_id):
            row = self.row_of(changed) if changed is not None else -1
            if row >= 0:
                self._changed(row)

    # Qt's own paging is off: a QListView asks for more when its *last* row is on screen,
    # which in a history (newest at the bottom) is on opening and at every scroll to the
    # newest message, and never when the user scrolls up to the oldest one. The view asks
    # with fetch_older() when it nears the top instead (GroupMessageList).
    def canFetchMore(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        return False

    def fetchMore(self, parent: Index = QModelIndex()) -> None:  # noqa: B008
        pass

    @property
    def loading(self) -> bool:
        """An older page is on its way."""
        return self._loading

    def _set_loading(self, loading: bool) -> None:
        if loading != self._loading:
            self._loading = loading
            self.loadingChanged.emit(loading)

    def can_fetch_older(self) -> bool:
        return (
            self._more
            and not self._loading
            and self.group_id is not None
            and bool(self._rows)
            and not self._tasks.closed
        )

    def fetch_older(self) -> bool:
        """Load the page before the first row (rows are prepended when it lands); False if
        there is none, or one is already on its way."""
        if not self.can_fetch_older() or self.group_id is None:
            return False
        self._set_loading(True)
        self._tasks.spawn(self._older(self.group_id, message_order(self._rows[0])))
        return True

    async def _older(self, group_id: str, before: tuple[int, bytes, int]) -> None:
        try:
            page = await self.bridge.group_history(group_id, limit=PAGE, before=before)
        except BaseException:
            self._set_loading(False)
            raise
        if group_id != self.group_id or not page:
            if group_id == self.group_id:
                self._more = False
            self._set_loading(False)
            return
        self.beginInsertRows(QModelIndex(), 0, len(page) - 1)
        self._rows[:0] = page
        self._more = len(page) == PAGE
        self.endInsertRows()
        self._set_loading(False)  # after the rows: a view that asks again sees them

    def _on_message(self, message: GroupMessageRecord) -> None:
        if message.group_id != self.group_id:
            return
        if any(m.msg_id == message.msg_id for m in self._rows):
            return  # the page read while the group opened has it already
        key = message_order(message)
        row = len(self._rows)
        while row > 0 and message_order(self._rows[row - 1]) > key:
            row -= 1
        self.beginInsertRows(QModelIndex(), row, row)
        self._rows.insert(row, message)
        self.endInsertRows()

    def _on_delivery(self, group_id: str, contact_id: str, seq: int) -> None:
        if group_id != self.group_id:
            return
        self._delivery[contact_id] = max(self._delivery.get(contact_id, 0), seq)
        self._changed_all()

    def _on_group_changed(self, group: GroupRecord) -> None:
        if group.id == self.group_id:
            self._others = {m.contact_id for m in group.members if not m.is_me}
            self._changed_all()

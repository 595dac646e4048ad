"""One conversation's history as a window of a few pages over the service's storage.

The model never holds a whole conversation: it starts with the newest page, loads older
pages when asked (``canFetchMore``/``fetchMore``, which the history view calls when it is
scrolled near the top) and newer ones (``fetch_newer``, near the bottom, after a jump into
the past). Whatever it loads on one side it drops on the other beyond ``max_rows``.

Rows are ordered as both peers order them: by (Lamport time, message id).
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import functools
import time
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any, TypeVar

from PySide6.QtCore import (
    QDate,
    QLocale,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTime,
    QTimer,
    Signal,
)
from PySide6.QtGui import QImage

from messenger import MessageRecord, MessageState, TransferRecord
from ui.bridge import Bridge
from ui.models.base import RecordListModel
from ui.models.thumbnails import Thumbnails
from ui.tasks import TaskSet

T = TypeVar("T")

PAGE_SIZE = 50
MAX_ROWS = 250  # five pages
# Two messages of the same author closer than this are drawn as one group.
GROUP_GAP_MS = 3 * 60 * 1000
# During a burst of arrivals, live rows are added at most this often (seconds).
FLUSH_SPACING = 0.1

Index = QModelIndex | QPersistentModelIndex
Key = tuple[int, bytes]


def key_of(m: MessageRecord) -> Key:
    return (m.lamport, m.msg_id)


def local_time(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000)


def time_label(ms: int) -> str:
    return _minute_label(ms // 60_000)


@functools.lru_cache(maxsize=4096)
def _minute_label(minute: int) -> str:
    when = local_time(minute * 60_000)
    return QLocale().toString(QTime(when.hour, when.minute), QLocale.FormatType.ShortFormat)


def day_label(day: dt.date, today: dt.date | None = None) -> str:
    today = today or dt.date.today()
    delta = (today - day).days
    if delta == 0:
        return "Today"
    if delta == 1:
        return "Yesterday"
    locale = QLocale()
    if 1 < delta < 7:
        return locale.dayName(day.isoweekday(), QLocale.FormatType.LongFormat)
    date = QDate(day.year, day.month, day.day)
    if day.year == today.year:
        return locale.toString(date, "ddd, d MMMM")
    return locale.toString(date, "ddd, d MMMM yyyy")


def state_label(state: MessageState) -> str:
    return {
        MessageState.QUEUED: "waiting to send",
        MessageState.SENT: "sent",
        MessageState.DELIVERED: "delivered",
        MessageState.READ: "read",
    }.get(state, "")


class HistoryModel(RecordListModel[MessageRecord]):
    MessageRole = Qt.ItemDataRole.UserRole + 1
    DayRole = Qt.ItemDataRole.UserRole + 2  # str | None: day separator above this row
    GroupRole = Qt.ItemDataRole.UserRole + 3  # (joins previous, joins next)
    HighlightRole = Qt.ItemDataRole.UserRole + 4  # bool: the message jumped to
    TransferRole = Qt.ItemDataRole.UserRole + 5  # TransferRecord | None: the file it carries

    loadingChanged = Signal(bool)
    appended = Signal(int)  # rows added at the end (live messages or a newer page)
    windowReset = Signal()  # a new window was loaded (latest, or around a message)
    beyondWindow = Signal(int)  # live messages not shown because the window is in the past
    # A file message changed shape (state or thumbnail): its row height may differ now.
    transferShapeChanged = Signal()

    def __init__(
        self,
        bridge: Bridge,
        contact_id: str,
        parent: QObject | None = None,
        *,
        page_size: int = PAGE_SIZE,
        max_rows: int = MAX_ROWS,
    ) -> None:
        super().__init__(bridge, parent)
        self.contact_id = contact_id
        self.page_size = page_size
        self.max_rows = max(max_rows, 2 * page_size)
        self.live_rows = page_size
        self._keys: list[Key] = []
        self._key_of_id: dict[bytes, Key] = {}
        self._days: dict[int, dt.date] = {}
        self.at_start = False  # nothing older than the first row exists
        self.at_end = True  # the last row is the newest message
        self.loaded = False
        self.follow_live = True  # the view sits at the bottom: live rows may push old ones out
        self.highlight: bytes | None = None
        self.search_terms: tuple[str, ...] = ()  # words the delegate marks in bubbles
        self._busy = 0
        self._older = False
        self._newer = False
        self._pending: list[MessageRecord] = []
        self._tasks = TaskSet(f"history {contact_id[:8]}")
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(0)
        self._flush_timer.timeout.connect(self._flush_pending)
        self._last_flush = 0.0
        self._views: list[tuple[MessageRecord, str | None, bool, bool, bool]] | None = None
        # Files carried by messages, by message id: a handful per conversation, kept whole
        # (the service holds them in memory anyway) so painting a row is one dict lookup.
        self._transfers: dict[bytes, TransferRecord] = {}
        self._thumbnails = Thumbnails(
            bridge, self._tasks, lambda _id, _image: self.transferShapeChanged.emit()
        )
        for t in bridge.transfers(contact_id):
            self._index_transfer(t)
        self._listen(
            (bridge.messageAdded, self._on_message_added),
            (bridge.messageStatesChanged, self._on_states_changed),
            (bridge.transferChanged, self._on_transfer),
        )

    def close(self) -> None:
        self.detach()
        self._flush_timer.stop()
        self._tasks.close()

    @property
    def busy(self) -> bool:
        return self._busy > 0

    # -- Qt model API -------------------------------------------------------------------------

    def role_data(self, row: int, m: MessageRecord, role: int) -> Any:
        if role == self.MessageRole:
            return m
        if role == self.DayRole:
            return self.row_view(row)[1]
        if role == self.GroupRole:
            return (self._joins(row - 1, row), self._joins(row, row + 1))
        if role == self.HighlightRole:
            return self.highlight is not None and m.msg_id == self.highlight
        if role == self.TransferRole:
            return self._transfers.get(m.msg_id)
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return m.body
        if role == Qt.ItemDataRole.AccessibleTextRole:
            who = "You" if m.outgoing else "Them"
            state = state_label(m.state)
            return f"{who}, {time_label(m.sent_at_ms)}{', ' + state if state else ''}: {m.body}"
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def canFetchMore(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        """Older messages exist and none are being loaded."""
        return (
            not parent.isValid()
            and self.loaded
            and not self.at_start
            and not self._older
            and not self._tasks.closed
        )

    def fetchMore(self, parent: Index = QModelIndex()) -> None:  # noqa: B008
        """Load the page older than the first row (asynchronously; rows are prepended)."""
        if self.canFetchMore(parent):
            self._older = True
            self._tasks.spawn(self.fetch_older())

    def can_fetch_newer(self) -> bool:
        return self.loaded and not self.at_end and not self._newer and not self._tasks.closed

    def fetch_newer_soon(self) -> None:
        if self.can_fetch_newer():
            self._newer = True
            self._tasks.spawn(self.fetch_newer())

    # -- lookups ------------------------------------------------------------------------------

    def row_view(self, row: int) -> tuple[MessageRecord, str | None, bool, bool, bool]:
        """(record, day separator, joins previous, joins next, highlighted) of a row.

        Delegates read rows through this, not QModelIndex.data(): PySide6 6.12 returns an
        invalid QVariant to Python as a None it does not own (the interpreter aborts later).
        """
        views = self._views
        if views is None:
            views = self._views = self._compute_views()
        return views[row]

    def _compute_views(self) -> list[tuple[MessageRecord, str | None, bool, bool, bool]]:
        """Every row's view in one pass (the delegate asks for each row on every layout)."""
        rows = self._rows
        days = [self._day(m) for m in rows]
        joins = [self._joins(i, i + 1) for i in range(len(rows) - 1)] + [False]
        highlight = self.highlight
        labels: dict[dt.date, str] = {}
        views = []
        for i, m in enumerate(rows):
            day_text = None
            if i == 0 or days[i - 1] != days[i]:
                day_text = labels.get(days[i]) or labels.setdefault(days[i], day_label(days[i]))
            views.append(
                (
                    m,
                    day_text,
                    joins[i - 1] if i else False,
                    joins[i],
                    highlight is not None and m.msg_id == highlight,
                )
            )
        return views

    def transfer_of(self, msg_id: bytes) -> TransferRecord | None:
        """The file a message carries (its current state), if it carries one."""
        return self._transfers.get(msg_id)

    def thumbnail(self, t: TransferRecord) -> QImage | None:
        """A finished image's thumbnail; the first ask loads it (transferShapeChanged follows)."""
        return self._thumbnails.get(t)

    def _index_transfer(self, t: TransferRecord) -> list[int]:
        """Remember `t` for its messages; the rows on screen that show it."""
        rows = []
        for msg_id in t.msg_ids:
            self._transfers[msg_id] = t
            row = self.row_of(msg_id)
            if row >= 0:
                rows.append(row)
        return rows

    def _on_transfer(self, t: TransferRecord) -> None:
        if self.contact_id not in t.contacts:
            return
        old = next((self._transfers[i] for i in t.msg_ids if i in self._transfers), None)
        rows = self._index_transfer(t)
        if not rows:
            return
        if old is None or old.state is not t.state:
            self.transferShapeChanged.emit()
        self.dataChanged.emit(self.index(min(rows)), self.index(max(rows)))

    def row_of(self, msg_id: bytes) -> int:
        key = self._key_of_id.get(msg_id)
        if key is None:
            return -1
        row = bisect.bisect_left(self._keys, key)
        return row if row < len(self._keys) and self._keys[row] == key else -1

    def _day(self, m: MessageRecord) -> dt.date:
        day = self._days.get(m.row_id)
        if day is None:
            day = self._days[m.row_id] = local_time(m.sent_at_ms).date()
        return day

    def _joins(self, a: int, b: int) -> bool:
        if a < 0 or b >= len(self._rows):
            return False
        x, y = self._rows[a], self._rows[b]
        return (
            x.outgoing == y.outgoing
            and abs(y.sent_at_ms - x.sent_at_ms) < GROUP_GAP_MS
            and self._day(x) == self._day(y)
        )

    # -- loading windows ----------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run one of this model's loads as its own task: closing the model cancels it."""
        return self._tasks.spawn(coro)

    def _begin(self) -> None:
        self._busy += 1
        if self._busy == 1:
            self.loadingChanged.emit(True)

    def _end(self) -> None:
        self._busy -= 1
        if self._busy == 0 and not self._tasks.closed:
            self.loadingChanged.emit(False)
            if self._pending:
                self._flush_timer.start()

    async def load_latest(self) -> None:
        """The newest page; the window follows live messages again."""
        self._begin()
        try:
            rows = await self.bridge.history(self.contact_id, limit=self.page_size)
            if self._tasks.closed:
                return
            self.highlight = None
            self._reset(rows, at_start=len(rows) < self.page_size, at_end=True)
        finally:
            self._end()

    async def load_around(self, target: MessageRecord) -> int:
        """A window centred on `target` (a search hit); returns its row."""
        self._begin()
        try:
            key = key_of(target)
            half = max(1, self.page_size // 2)
            older = await self.bridge.history(self.contact_id, limit=half, before=key)
            newer = await self.bridge.history(self.contact_id, limit=half, after=key)
            if self._tasks.closed:
                return -1
            self.highlight = target.msg_id
            self._views = None
            self._reset(
                [*older, target, *newer], at_start=len(older) < half, at_end=len(newer) < half
            )
            return self.row_of(target.msg_id)
        finally:
            self._end()

    def _reset(self, rows: list[MessageRecord], *, at_start: bool, at_end: bool) -> None:
        self.beginResetModel()
        self._set_rows(rows)
        self.at_start = at_start
        self.at_end = at_end
        self.loaded = True
        self.endResetModel()
        self.windowReset.emit()

    def _set_rows(self, rows: list[MessageRecord]) -> None:
        self._views = None
        self._rows = rows
        self._keys = [key_of(m) for m in rows]
        self._key_of_id = {m.msg_id: k for m, k in zip(rows, self._keys, strict=True)}
        if len(self._days) > 4 * self.max_rows:
            self._days.clear()

    async def fetch_older(self) -> int:
        """Prepend the page older than the first row; returns how many rows came."""
        self._older = True
        self._begin()
        try:
            if not self._rows:
                return 0
            first = self._keys[0]
            page = await self.bridge.history(self.contact_id, limit=self.page_size, before=first)
            if self._tasks.closed or not self._rows or self._keys[0] != first:
                return 0  # the window moved meanwhile
            if len(page) < self.page_size:
                self.at_start = True
            new = [m for m in page if m.msg_id not in self._key_of_id]
            if new:
                self.beginInsertRows(QModelIndex(), 0, len(new) - 1)
                self._set_rows(new + self._rows)
                self.endInsertRows()
                seam = self.index(len(new))
                self.dataChanged.emit(seam, seam)  # its day separator and grouping changed
                self._trim_back()
            return len(new)
        finally:
            self._older = False
            self._end()

    async def fetch_newer(self) -> int:
        """Append the page newer than the last row (after a jump into the past)."""
        self._newer = True
        self._begin()
        try:
            if not self._rows:
                return 0
            last = self._keys[-1]
            page = await self.bridge.history(self.contact_id, limit=self.page_size, after=last)
            if self._tasks.closed or not self._rows or self._keys[-1] != last:
                return 0
            if len(page) < self.page_size:
                self.at_end = True
            new = [m for m in page if m.msg_id not in self._key_of_id]
            if new:
                self._append(new)
                self._trim_front()
            return len(new)
        finally:
            self._newer = False
            self._end()

    def _append(self, new: list[MessageRecord]) -> None:
        start = len(self._rows)
        self.beginInsertRows(QModelIndex(), start, start + len(new) - 1)
        self._set_rows(self._rows + new)
        self.endInsertRows()
        if start:
            seam = self.index(start - 1)
            self.dataChanged.emit(seam, seam)
        self.appended.emit(len(new))

    def _trim_back(self) -> None:
        excess = len(self._rows) - self.max_rows
        if excess > 0:
            n = len(self._rows)
            self.beginRemoveRows(QModelIndex(), n - excess, n - 1)
            self._set_rows(self._rows[: n - excess])
            self.endRemoveRows()
            self.at_end = False

    def _trim_front(self, keep: int | None = None) -> None:
        excess = len(self._rows) - (self.max_rows if keep is None else keep)
        if excess > 0:
            self.beginRemoveRows(QModelIndex(), 0, excess - 1)
            self._set_rows(self._rows[excess:])
            self.endRemoveRows()
            self.at_start = False
            top = self.index(0)
            self.dataChanged.emit(top, top)

    # -- live updates -------------------------------------------------------------------------

    def _on_message_added(self, message: MessageRecord) -> None:
        if message.contact_id != self.contact_id:
            return
        self._pending.append(message)
        if not self._busy and not self._flush_timer.isActive():
            # A lone message shows at once; during a burst, at most ~25 inserts a second
            # (each one lays the window out again).
            recent = time.monotonic() - self._last_flush < FLUSH_SPACING
            self._flush_timer.setInterval(int(FLUSH_SPACING * 1000) if recent else 0)
            self._flush_timer.start()

    def _flush_pending(self) -> None:
        if self._busy or not self.loaded or not self._pending:
            return
        self._last_flush = time.monotonic()
        pending = sorted(
            {m.msg_id: m for m in self._pending if m.msg_id not in self._key_of_id}.values(),
            key=key_of,
        )
        self._pending = []
        if not pending:
            return
        if not self.at_end:
            self.beyondWindow.emit(len(pending))
            return
        last = self._keys[-1] if self._keys else None
        tail = [m for m in pending if last is None or key_of(m) > last]
        for m in pending[: len(pending) - len(tail)]:
            self._insert_inside(m)
        if not tail:
            return
        if not self.follow_live:
            room = max(0, self.max_rows - len(self._rows))
            if len(tail) > room:
                self.at_end = False
                self.beyondWindow.emit(len(tail) - room)
                tail = tail[:room]
            if tail:
                self._append(tail)
            return
        if len(tail) >= self.live_rows + self.page_size:
            self._reset(tail[-self.live_rows :], at_start=False, at_end=True)
            return
        self._append(tail)
        if len(self._rows) > self.live_rows + self.page_size:
            # Following the live end, the window holds a page or two (the view lays every
            # row out again on each insert); old rows leave a page at a time.
            self._trim_front(keep=self.live_rows)

    def _insert_inside(self, m: MessageRecord) -> None:
        """A message that sorts before our newest row (a peer's clock was behind)."""
        key = key_of(m)
        row = bisect.bisect_left(self._keys, key)
        if row == 0 and not self.at_start:
            return  # older than the window: it will come with that page
        self.beginInsertRows(QModelIndex(), row, row)
        self._set_rows([*self._rows[:row], m, *self._rows[row:]])
        self.endInsertRows()
        self.dataChanged.emit(
            self.index(max(0, row - 1)), self.index(min(len(self._rows) - 1, row + 1))
        )

    def _on_states_changed(self, contact_id: str, msg_ids: object, state: int) -> None:
        if contact_id != self.contact_id:
            return
        new_state = MessageState(state)
        ids = set(msg_ids)  # type: ignore[call-overload]
        # States only move forward (a late "sent" must not undo "delivered").
        rows = [
            r for r in (self.row_of(i) for i in ids) if r >= 0 and self._rows[r].state < new_state
        ]
        for r in rows:
            self._rows[r] = replace(self._rows[r], state=new_state)
        if rows:
            self._views = None
        if self._pending:
            self._pending = [
                replace(m, state=new_state) if m.msg_id in ids and m.state < new_state else m
                for m in self._pending
            ]
        if rows:
            self.dataChanged.emit(self.index(min(rows)), self.index(max(rows)))

    def set_search_terms(self, words: list[str]) -> None:
        terms = tuple(w for w in words if w)
        if terms != self.search_terms:
            self.search_terms = terms
            if self._rows:
                self.dataChanged.emit(self.index(0), self.index(len(self._rows) - 1))

    def set_highlight(self, msg_id: bytes | None) -> None:
        old = self.row_of(self.highlight) if self.highlight else -1
        self.highlight = msg_id
        self._views = None
        for row in (old, self.row_of(msg_id) if msg_id else -1):
            if row >= 0:
                self.dataChanged.emit(self.index(row), self.index(row))

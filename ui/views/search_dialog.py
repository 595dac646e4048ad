"""Search every conversation (FTS5 inside the encrypted database); choosing a result opens
its conversation scrolled to the message."""

from __future__ import annotations

import asyncio
import html
import re
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QRectF,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QFont, QFontMetricsF, QKeyEvent, QPainter, QTextDocument
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QLabel,
    QLineEdit,
    QListView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from messenger import GroupMessageRecord, MessageRecord
from ui import theme
from ui.bridge import Bridge
from ui.models.conversations import ConversationListModel
from ui.models.groups import GroupListModel
from ui.models.history import local_time, time_label
from ui.tasks import TaskSet
from ui.views.conversation_list import list_time
from ui.views.paint import paint_avatar

Index = QModelIndex | QPersistentModelIndex
SNIPPET = 90


def snippet(body: str, words: list[str], width: int = SNIPPET) -> str:
    """The part of `body` around the first matching word, on one line."""
    text = " ".join(body.split())
    lowered = text.casefold()
    first = min((i for i in (lowered.find(w.casefold()) for w in words if w) if i >= 0), default=0)
    start = max(0, first - width // 3)
    if start:
        space = text.rfind(" ", 0, start + 1)
        start = space + 1 if space >= 0 and start - space < 12 else start
    cut = text[start : start + width]
    return ("…" if start else "") + cut + ("…" if start + width < len(text) else "")


def highlight_html(text: str, words: list[str], color: str) -> str:
    if not words:
        return html.escape(text)
    pattern = re.compile("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)), re.I)
    out, pos = [], 0
    for m in pattern.finditer(text):
        out.append(html.escape(text[pos : m.start()]))
        out.append(f'<b style="color:{color}">{html.escape(m.group(0))}</b>')
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


class SearchResultsModel(QAbstractListModel):
    RecordRole = Qt.ItemDataRole.UserRole + 1
    NameRole = Qt.ItemDataRole.UserRole + 2

    def __init__(
        self,
        conversations: ConversationListModel,
        groups: GroupListModel | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._conversations = conversations
        self._groups = groups
        self.results: list[MessageRecord | GroupMessageRecord] = []
        self.words: list[str] = []

    def set_results(self, results: list[MessageRecord | GroupMessageRecord], query: str) -> None:
        self.beginResetModel()
        self.results = results
        self.words = query.split()
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.results)

    def name_of(self, m: MessageRecord | GroupMessageRecord) -> str:
        """The conversation's name: the contact's, or the group's."""
        if isinstance(m, GroupMessageRecord):
            group = self._groups.item(m.group_id) if self._groups is not None else None
            return group.group.name if group is not None else m.group_id[:8]
        item = self._conversations.item(m.contact_id)
        return item.name if item is not None else m.contact_id[:8]

    @staticmethod
    def who(m: MessageRecord | GroupMessageRecord, name: str) -> str:
        """Who wrote it, where: "Ana", "You → Ana", "Ana in Lab", "You in Lab"."""
        if isinstance(m, GroupMessageRecord):
            return f"{'You' if m.outgoing else m.author_name} in {name}"
        return f"You → {name}" if m.outgoing else name

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.results):
            return None
        m = self.results[index.row()]
        if role == self.RecordRole:
            return m
        if role == self.NameRole:
            return self.name_of(m)
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.AccessibleTextRole):
            who = self.who(m, self.name_of(m))
            return (
                f"{who}, {local_time(m.sent_at_ms):%d %b %Y} {time_label(m.sent_at_ms)}: {m.body}"
            )
        return None


class SearchResultDelegate(QStyledItemDelegate):
    HEIGHT = 64

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        fm = QFontMetricsF(option.font)
        return QSize(300, max(self.HEIGHT, round(fm.height() * 2 + 28)))

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        m: MessageRecord | GroupMessageRecord | None = index.data(SearchResultsModel.RecordRole)
        if m is None:
            return
        model = index.model()
        assert isinstance(model, SearchResultsModel)
        t = theme.current()
        name = index.data(SearchResultsModel.NameRole)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(option.rect)
        if option.state & (QStyle.StateFlag.State_Selected | QStyle.StateFlag.State_MouseOver):
            selected = option.state & QStyle.StateFlag.State_Selected
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(t.color("selected" if selected else "hover"))
            painter.drawRoundedRect(rect.adjusted(4, 2, -4, -2), 8, 8)
        avatar = QRectF(rect.left() + 14, rect.center().y() - 18, 36, 36)
        seed = m.group_id if isinstance(m, GroupMessageRecord) else m.contact_id
        paint_avatar(painter, avatar, name, seed, option.font)
        left = avatar.right() + 12
        right = rect.right() - 14
        bold = theme.scaled_font(option.font, 1.0, QFont.Weight.DemiBold)
        small = theme.scaled_font(option.font, 0.86)
        fm_bold, fm_small = QFontMetricsF(bold), QFontMetricsF(small)
        top = rect.center().y() - (fm_bold.height() + 4 + fm_small.height() + 2) / 2
        when = list_time(m.sent_at_ms)
        when_w = fm_small.horizontalAdvance(when)
        painter.setFont(small)
        painter.setPen(t.color("text_muted"))
        painter.drawText(
            QRectF(right - when_w, top, when_w, fm_bold.height()),
            Qt.AlignmentFlag.AlignVCenter,
            when,
        )
        painter.setFont(bold)
        painter.setPen(t.color("text"))
        who = model.who(m, name)
        painter.drawText(
            QRectF(left, top, right - when_w - 8 - left, fm_bold.height()),
            Qt.AlignmentFlag.AlignVCenter,
            fm_bold.elidedText(who, Qt.TextElideMode.ElideRight, right - when_w - 8 - left),
        )
        doc = QTextDocument()
        doc.setDocumentMargin(0)
        doc.setDefaultFont(theme.scaled_font(option.font, 0.94))
        doc.setDefaultStyleSheet(f"body {{ color: {t.text_secondary}; }}")
        width = right - left
        words = model.words
        text = snippet(m.body, words)
        # Shorten until it fits on one line.
        fm_text = QFontMetricsF(doc.defaultFont())
        while len(text) > 8 and fm_text.horizontalAdvance(text) > width:
            text = text[: int(len(text) * 0.9)].rstrip() + "…"
        doc.setHtml(f"<body>{highlight_html(text, words, t.text)}</body>")
        doc.setTextWidth(width + 40)
        painter.translate(left, top + fm_bold.height() + 4)
        doc.drawContents(painter)
        painter.restore()


class SearchDialog(QDialog):
    resultChosen = Signal(object)  # MessageRecord or GroupMessageRecord

    def __init__(
        self,
        bridge: Bridge,
        conversations: ConversationListModel,
        parent: QWidget | None = None,
        groups: GroupListModel | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.setWindowTitle("Search all messages")
        self.setModal(True)
        self.resize(560, 520)
        self._tasks = TaskSet("search")
        self._generation = 0
        self._running: asyncio.Task[None] | None = None  # the search for the newest text
        self.field = QLineEdit(self)
        self.field.setObjectName("FilterBox")
        self.field.setPlaceholderText("Search all messages")
        self.field.setAccessibleName("Search all messages")
        self.field.setClearButtonEnabled(True)
        self.field.addAction(theme.icon("search"), QLineEdit.ActionPosition.LeadingPosition)
        self.status = QLabel("Type a word to search every conversation.", self)
        self.status.setObjectName("MutedLabel")
        self.model = SearchResultsModel(conversations, groups, self)
        self.list = QListView(self)
        self.list.setObjectName("SearchResults")
        self.list.setAccessibleName("Search results")
        self.list.setModel(self.model)
        self.list.setItemDelegate(SearchResultDelegate(self.list))
        self.list.setUniformItemSizes(True)
        self.list.setMouseTracking(True)
        self.list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 14, 14, 14)
        layout.setSpacing(10)
        layout.addWidget(self.field)
        layout.addWidget(self.status)
        layout.addWidget(self.list, 1)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(200)
        self._debounce.timeout.connect(self.run_search)
        self.field.textChanged.connect(lambda _t: self._debounce.start())
        self.field.installEventFilter(self)
        self.list.clicked.connect(self._choose)
        self.list.activated.connect(self._choose)

    def showEvent(self, event: object) -> None:
        super().showEvent(event)  # type: ignore[arg-type]
        parent = self.parentWidget()
        if parent is not None:
            top = parent.mapToGlobal(QPoint(0, 0))
            self.move(top.x() + (parent.width() - self.width()) // 2, top.y() + 60)
        self.field.setFocus()

    def done(self, result: int) -> None:
        self._tasks.close()
        super().done(result)

    def run_search(self) -> None:
        """Start the search for the field's text (tests call it to skip the debounce)."""
        self._debounce.stop()
        query = self.field.text()
        self._generation += 1
        generation = self._generation
        if self._running is not None:
            # Typing on supersedes it: its results would be thrown away, and cancelling
            # keeps its second (group) query off the database thread.
            self._running.cancel()
            self._running = None
        if not query.strip():
            self.model.set_results([], "")
            self.status.setText("Type a word to search every conversation.")
            return
        self.status.setText("Searching…")

        async def search() -> None:
            direct = await self.bridge.search(query)
            in_groups = await self.bridge.search_groups(query)
            if generation != self._generation:
                return
            results: list[MessageRecord | GroupMessageRecord] = [*direct, *in_groups]
            results.sort(key=lambda m: m.sent_at_ms, reverse=True)
            results = results[:100]
            self.model.set_results(results, query)
            if results:
                more = "+" if len(results) >= 100 else ""
                noun = "message" if len(results) == 1 else "messages"
                self.status.setText(f"{len(results)}{more} {noun} · Enter opens the selected one")
                self.list.setCurrentIndex(self.model.index(0, 0))
            else:
                self.status.setText(f"No messages match “{query.strip()}”.")

        self._running = self._tasks.spawn(search())

    def searching(self) -> bool:
        return len(self._tasks) > 0

    def _choose(self, index: QModelIndex | None = None) -> None:
        index = index if index is not None and index.isValid() else self.list.currentIndex()
        if not index.isValid():
            return
        record = index.data(SearchResultsModel.RecordRole)
        self.accept()
        self.resultChosen.emit(record)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is self.field and event.type() == QEvent.Type.KeyPress:
            assert isinstance(event, QKeyEvent)
            rows = self.model.rowCount()
            if event.key() in (Qt.Key.Key_Down, Qt.Key.Key_Up) and rows:
                delta = 1 if event.key() == Qt.Key.Key_Down else -1
                row = (max(0, self.list.currentIndex().row()) + delta) % rows
                self.list.setCurrentIndex(self.model.index(row, 0))
                return True
            if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                if self._debounce.isActive():
                    self.run_search()
                else:
                    self._choose()
                return True
        return super().eventFilter(obj, event)

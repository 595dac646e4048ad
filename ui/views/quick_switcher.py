"""Ctrl+K: type a few letters of a name, Enter opens that conversation."""

from __future__ import annotations

from PySide6.QtCore import (
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QDialog, QLabel, QLineEdit, QVBoxLayout, QWidget

from ui import theme
from ui.models.conversations import ConversationListModel
from ui.views.conversation_list import ConversationListView

Index = QModelIndex | QPersistentModelIndex


def match_score(name: str, query: str) -> int | None:
    """Lower is better; None: no match. Prefix < word start < substring < letters in order."""
    n, q = name.casefold(), query.casefold().strip()
    if not q:
        return 3
    if n.startswith(q):
        return 0
    if any(word.startswith(q) for word in n.split()):
        return 1
    if q in n:
        return 2
    pos = 0
    for ch in q:
        pos = n.find(ch, pos)
        if pos < 0:
            return None
        pos += 1
    return 4


class SwitcherFilter(QSortFilterProxyModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._query = ""

    def set_query(self, query: str) -> None:
        self._query = query
        self.invalidate()
        self.sort(0)

    def filterAcceptsRow(self, row: int, parent: Index) -> bool:
        name = self.sourceModel().index(row, 0, parent).data(Qt.ItemDataRole.DisplayRole) or ""
        return match_score(name, self._query) is not None

    def lessThan(self, left: Index, right: Index) -> bool:
        a = match_score(left.data(Qt.ItemDataRole.DisplayRole) or "", self._query) or 0
        b = match_score(right.data(Qt.ItemDataRole.DisplayRole) or "", self._query) or 0
        if a != b:
            return a < b
        return left.row() < right.row()  # then by recent activity, the source order


class QuickSwitcher(QDialog):
    chosen = Signal(str)  # contact_id

    def __init__(self, conversations: ConversationListModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Go to conversation")
        self.setModal(True)
        self.setMinimumWidth(440)
        self.field = QLineEdit(self)
        self.field.setObjectName("FilterBox")
        self.field.setPlaceholderText("Go to conversation…")
        self.field.setAccessibleName("Conversation name")
        self.field.addAction(theme.icon("search"), QLineEdit.ActionPosition.LeadingPosition)
        self.filter = SwitcherFilter(self)
        self.filter.setSourceModel(conversations)
        self.filter.set_query("")
        self.list = ConversationListView(self)
        self.list.setObjectName("SwitcherList")
        self.list.setAccessibleName("Matching conversations")
        self.list.setModel(self.filter)
        self.list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.list.setMinimumHeight(72 * 5)
        self.hint = QLabel("↑ ↓ to choose · Enter to open · Esc to close", self)
        self.hint.setObjectName("MutedLabel")
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 14, 14, 10)
        layout.setSpacing(10)
        layout.addWidget(self.field)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.hint)
        self.field.textChanged.connect(self._on_query)
        self.field.installEventFilter(self)
        self.list.clicked.connect(lambda index: self._choose(index))
        self._select_first()

    def showEvent(self, event: object) -> None:
        super().showEvent(event)  # type: ignore[arg-type]
        parent = self.parentWidget()
        if parent is not None:
            top = parent.mapToGlobal(QPoint(0, 0))
            self.move(top.x() + (parent.width() - self.width()) // 2, top.y() + 80)
        self.field.setFocus()

    def _on_query(self, text: str) -> None:
        self.filter.set_query(text)
        self._select_first()

    def _select_first(self) -> None:
        if self.filter.rowCount():
            self.list.setCurrentIndex(self.filter.index(0, 0))

    def _move(self, delta: int) -> None:
        rows = self.filter.rowCount()
        if not rows:
            return
        row = (max(0, self.list.currentIndex().row()) + delta) % rows
        self.list.setCurrentIndex(self.filter.index(row, 0))

    def _choose(self, index: QModelIndex | None = None) -> None:
        index = index if index is not None and index.isValid() else self.list.currentIndex()
        if not index.isValid():
            return
        contact_id = index.data(ConversationListModel.ContactIdRole)
        self.accept()
        self.chosen.emit(contact_id)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is self.field and event.type() == QEvent.Type.KeyPress:
            assert isinstance(event, QKeyEvent)
            if event.key() == Qt.Key.Key_Down:
                self._move(1)
                return True
            if event.key() == Qt.Key.Key_Up:
                self._move(-1)
                return True
            if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self._choose()
                return True
        return super().eventFilter(obj, event)

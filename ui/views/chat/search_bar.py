"""Search in the open conversation (Ctrl+F): a field, a count, older/newer, close."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QLineEdit, QToolButton, QWidget

from ui import theme


class SearchBar(QFrame):
    """Search in the open conversation: results newest first, Enter/↑/↓ step through."""

    queryChanged = Signal(str)
    nextRequested = Signal()
    previousRequested = Signal()
    closed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("SearchBar")
        self.field = QLineEdit(self)
        self.field.setObjectName("SearchField")
        self.field.setPlaceholderText("Search in this conversation")
        self.field.setAccessibleName("Search in this conversation")
        self.field.setClearButtonEnabled(True)
        self._icon_action = self.field.addAction(
            theme.icon("search"), QLineEdit.ActionPosition.LeadingPosition
        )
        self.count = QLabel(self)
        self.count.setObjectName("MutedLabel")
        self.count.setMinimumWidth(70)
        self.count.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.up = QToolButton(self)
        self.up.setToolTip("Older match (Enter)")
        self.up.setAccessibleName("Older match")
        self.down = QToolButton(self)
        self.down.setToolTip("Newer match (Shift+Enter)")
        self.down.setAccessibleName("Newer match")
        self.close_button = QToolButton(self)
        self.close_button.setToolTip("Close search (Esc)")
        self.close_button.setAccessibleName("Close search")
        for button in (self.up, self.down, self.close_button):
            button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.retheme()
        row = QHBoxLayout(self)
        row.setContentsMargins(16, 8, 12, 8)
        row.setSpacing(6)
        row.addWidget(self.field, 1)
        row.addWidget(self.count)
        row.addWidget(self.up)
        row.addWidget(self.down)
        row.addWidget(self.close_button)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(220)
        self._debounce.timeout.connect(lambda: self.queryChanged.emit(self.field.text()))
        self.field.textChanged.connect(lambda _t: self._debounce.start())
        self.up.clicked.connect(self.previousRequested)
        self.down.clicked.connect(self.nextRequested)
        self.close_button.clicked.connect(self.closed)
        self.field.installEventFilter(self)

    def retheme(self) -> None:
        self._icon_action.setIcon(theme.icon("search"))
        self.up.setIcon(theme.icon("chevron-up"))
        self.down.setIcon(theme.icon("chevron-down"))
        self.close_button.setIcon(theme.icon("close"))

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is self.field and event.type() == QEvent.Type.KeyPress:
            assert isinstance(event, QKeyEvent)
            key = event.key()
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                if self._debounce.isActive():
                    self._debounce.stop()
                    self.queryChanged.emit(self.field.text())
                elif event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                    self.nextRequested.emit()
                else:
                    self.previousRequested.emit()
                return True
            if key == Qt.Key.Key_Up:
                self.previousRequested.emit()
                return True
            if key == Qt.Key.Key_Down:
                self.nextRequested.emit()
                return True
            if key == Qt.Key.Key_Escape:
                self.closed.emit()
                return True
        return super().eventFilter(obj, event)

    def set_count(self, current: int, total: int, searching: bool = False) -> None:
        if searching:
            self.count.setText("…")
        elif not self.field.text().strip():
            self.count.setText("")
        elif total == 0:
            self.count.setText("No results")
        else:
            self.count.setText(f"{current + 1} of {total}")
        self.up.setEnabled(total > 0 and current < total - 1)
        self.down.setEnabled(total > 0 and current > 0)

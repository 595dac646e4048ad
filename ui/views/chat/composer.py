"""The composer: an editor where Enter sends, an emoji picker, a byte counter."""

from __future__ import annotations

import math
import time

from PySide6.QtCore import (
    QMimeData,
    QPoint,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QKeyEvent, QTextCursor
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ui import theme
from ui.views.chat.attachments import take_files

# What a composer says while the service starts behind an already filled window.
STARTING_PLACEHOLDER = "Starting Chinwag… you can write in a moment"

EMOJI = (
    "😀 😂 🥲 😊 😍 🥰 😘 😉 😎 🤔 😅 😭 😡 😱 🥳 😴 "
    "👍 👎 👏 🙏 🙌 💪 👋 🤝 ❤️ 🔥 ✨ 🎉 💯 ✅ ❌ ⭐ "
    "☕ 🍕 🍻 🎂 🚀 💡 📎 👀"
).split()


class ComposerEdit(QPlainTextEdit):
    """Enter sends, Shift+Enter starts a new line; grows from one to six lines. Pasting an
    image (or files) sends it instead of inserting text."""

    submitted = Signal()
    escapePressed = Signal()
    imagePasted = Signal(object)  # QImage
    filesDropped = Signal(object)  # list[Path]

    MAX_LINES = 6

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ComposerEdit")
        self.setAccessibleName("Message")
        self.setTabChangesFocus(True)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self._fit()

    def canInsertFromMimeData(self, source: QMimeData) -> bool:
        return source.hasImage() or source.hasUrls() or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:
        if not take_files(source, self.filesDropped.emit, self.imagePasted.emit):
            super().insertFromMimeData(source)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            mods = event.modifiers()
            if not mods & (
                Qt.KeyboardModifier.ShiftModifier
                | Qt.KeyboardModifier.AltModifier
                | Qt.KeyboardModifier.ControlModifier
            ):
                self.submitted.emit()
                return
            self.insertPlainText("\n")
            return
        if event.key() == Qt.Key.Key_Escape:
            self.escapePressed.emit()
        super().keyPressEvent(event)

    def _fit(self, *_args: object) -> None:
        fm = self.fontMetrics()
        lines = max(1, min(self.MAX_LINES, int(self.document().size().height())))
        margins = self.contentsMargins()
        doc_margin = self.document().documentMargin()
        height = math.ceil(
            lines * fm.lineSpacing() + 2 * doc_margin + margins.top() + margins.bottom() + 12
        )
        self.setFixedHeight(max(40, height))


class EmojiPicker(QFrame):
    """A small popup grid of common emoji; Esc or a click outside closes it."""

    chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Popup)
        self.setObjectName("EmojiPicker")
        self.setAccessibleName("Emoji")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        grid = QGridLayout(self)
        grid.setContentsMargins(8, 8, 8, 8)
        grid.setSpacing(2)
        self.buttons: list[QToolButton] = []
        for i, emoji in enumerate(EMOJI):
            button = QToolButton(self)
            button.setObjectName("EmojiButton")
            button.setText(emoji)
            button.setAccessibleName(f"Insert {emoji}")
            button.setAutoRaise(True)
            button.setFixedSize(38, 38)
            button.clicked.connect(lambda _=False, e=emoji: self._choose(e))
            grid.addWidget(button, i // 8, i % 8)
            self.buttons.append(button)

    def _choose(self, emoji: str) -> None:
        self.chosen.emit(emoji)
        self.close()

    def popup_above(self, anchor: QWidget) -> None:
        self.adjustSize()
        top_left = anchor.mapToGlobal(QPoint(0, 0))
        self.move(top_left.x(), top_left.y() - self.height() - 6)
        self.show()
        if self.buttons:
            self.buttons[0].setFocus()


class Composer(QFrame):
    sendRequested = Signal(str)
    typingChanged = Signal(bool)
    attachRequested = Signal()

    TYPING_REFRESH = 4.0  # re-announce while typing goes on
    TYPING_IDLE_MS = 5000  # stopped typing after this long without a key

    def __init__(self, max_bytes: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Composer")
        self.max_bytes = max_bytes
        self.emoji_button = QToolButton(self)
        self.emoji_button.setIcon(theme.icon("smile"))
        self.emoji_button.setIconSize(QSize(22, 22))
        self.emoji_button.setToolTip("Emoji")
        self.emoji_button.setAccessibleName("Insert emoji")
        self.attach_button = QToolButton(self)
        self.attach_button.setIcon(theme.icon("paperclip"))
        self.attach_button.setIconSize(QSize(22, 22))
        self.attach_button.setToolTip("Send a file or image (or drop it here, or paste it)")
        self.attach_button.setAccessibleName("Attach a file")
        self.edit = ComposerEdit(self)
        self.counter = QLabel(self)
        self.counter.setObjectName("Counter")
        self.counter.setAccessibleName("Characters left")
        self.counter.hide()
        self.send_button = QToolButton(self)
        self.send_button.setObjectName("SendButton")
        self.send_button.setIcon(theme.icon("send", "#ffffff"))
        self.send_button.setIconSize(QSize(18, 18))
        self.send_button.setFixedSize(36, 36)
        self.send_button.setToolTip("Send (Enter)")
        self.send_button.setAccessibleName("Send")
        self.error = QLabel(self)
        self.error.setObjectName("ComposerError")
        self.error.setWordWrap(True)
        self.error.hide()

        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(8)
        row.addWidget(self.attach_button, 0, Qt.AlignmentFlag.AlignBottom)
        row.addWidget(self.emoji_button, 0, Qt.AlignmentFlag.AlignBottom)
        row.addWidget(self.edit, 1)
        row.addWidget(self.counter, 0, Qt.AlignmentFlag.AlignBottom)
        row.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(14, 10, 14, 12)
        outer.setSpacing(6)
        outer.addWidget(self.error)
        outer.addLayout(row)

        for button in (self.attach_button, self.emoji_button, self.send_button):
            button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.attach_button.clicked.connect(self.attachRequested)
        self._picker: EmojiPicker | None = None
        self._typing = False
        self._typing_sent_at = 0.0
        self._idle = QTimer(self)
        self._idle.setSingleShot(True)
        self._idle.setInterval(self.TYPING_IDLE_MS)
        self._idle.timeout.connect(self._stop_typing)
        self._placeholder = ""
        self.emoji_button.clicked.connect(self.show_emoji_picker)
        self.send_button.clicked.connect(self.submit)
        self.edit.submitted.connect(self.submit)
        self.edit.textChanged.connect(self._on_text_changed)
        self._on_text_changed()

    def retheme(self) -> None:
        self.emoji_button.setIcon(theme.icon("smile"))
        self.send_button.setIcon(theme.icon("send", "#ffffff"))
        self.error.setStyleSheet(f"color: {theme.current().danger};")

    def set_available(self, available: bool, placeholder: str) -> None:
        """Enable for a conversation, or disable with the reason as the placeholder."""
        self._placeholder = placeholder
        self.edit.setPlaceholderText(placeholder)
        self.edit.setEnabled(available)
        self.emoji_button.setEnabled(available)
        self.attach_button.setEnabled(available)
        if not available:
            self._stop_typing()
        self._on_text_changed()

    def set_placeholder(self, placeholder: str) -> None:
        self._placeholder = placeholder
        self.edit.setPlaceholderText(placeholder)

    def text(self) -> str:
        return self.edit.toPlainText()

    def set_text(self, text: str) -> None:
        self.edit.setPlainText(text)
        cursor = self.edit.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        self.edit.setTextCursor(cursor)

    def show_error(self, message: str) -> None:
        self.error.setStyleSheet(f"color: {theme.current().danger};")
        self.error.setText(message)
        self.error.setVisible(bool(message))

    def bytes_used(self) -> int:
        return len(self.text().encode("utf-8"))

    def _on_text_changed(self) -> None:
        text = self.text()
        size = len(text.encode("utf-8"))
        left = self.max_bytes - size
        over = left < 0
        if size > self.max_bytes * 0.9:
            self.counter.setText(f"{-left:,} too long" if over else f"{left:,} left")
            self.counter.setProperty("over", over)
            self.counter.style().unpolish(self.counter)
            self.counter.style().polish(self.counter)
            self.counter.show()
            self.counter.setToolTip(f"A message can hold {self.max_bytes:,} bytes of text")
        else:
            self.counter.hide()
        enabled = self.edit.isEnabled()
        self.send_button.setEnabled(enabled and bool(text.strip()) and not over)
        if over:
            self.send_button.setToolTip("The message is too long to send")
        else:
            self.send_button.setToolTip("Send (Enter)")
        if self.error.isVisible() and text:
            self.show_error("")
        if enabled and text.strip():
            now = time.monotonic()
            if not self._typing or now - self._typing_sent_at > self.TYPING_REFRESH:
                self._typing = True
                self._typing_sent_at = now
                self.typingChanged.emit(True)
            self._idle.start()
        elif self._typing:
            self._stop_typing()

    def _stop_typing(self) -> None:
        self._idle.stop()
        if self._typing:
            self._typing = False
            self.typingChanged.emit(False)

    def submit(self) -> None:
        text = self.text()
        if not self.edit.isEnabled() or not text.strip():
            return
        if len(text.encode("utf-8")) > self.max_bytes:
            self.show_error(
                f"This message is too long: a message can hold {self.max_bytes:,} bytes of text."
            )
            return
        self.edit.clear()
        self._stop_typing()
        self.sendRequested.emit(text.strip("\n"))

    def show_emoji_picker(self) -> None:
        if self._picker is None:
            self._picker = EmojiPicker(self)
            self._picker.chosen.connect(self._insert_emoji)
        self._picker.popup_above(self.emoji_button)

    def _insert_emoji(self, emoji: str) -> None:
        self.edit.insertPlainText(emoji)
        self.edit.setFocus()

"""'Alice is typing' with three animated dots, under the history."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QWidget

from ui import theme
from ui.views.chat.bubbles import SIDE


class TypingIndicator(QWidget):
    """'Alice is typing' with three animated dots."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("TypingIndicator")
        self._name = ""
        self._phase = 0
        self._timer = QTimer(self)
        self._timer.setInterval(280)
        self._timer.timeout.connect(self._tick)
        self.setFixedHeight(24)
        self.setAccessibleName("Typing indicator")
        self.hide()

    def set_typing(self, name: str, active: bool) -> None:
        self._name = name
        if active:
            self.setAccessibleDescription(f"{name} is typing")
            self.show()
            self._timer.start()
        else:
            self._timer.stop()
            self.hide()

    def text(self) -> str:
        return f"{self._name} is typing…" if self.isVisible() else ""

    def _tick(self) -> None:
        self._phase = (self._phase + 1) % 3
        self.update()

    def paintEvent(self, _event: object) -> None:
        t = theme.current()
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        x, cy = SIDE + 4, self.height() / 2
        painter.setPen(Qt.PenStyle.NoPen)
        for i in range(3):
            color = t.color("text_muted")
            if i != self._phase:
                color.setAlphaF(0.45)
            painter.setBrush(color)
            painter.drawEllipse(QPointF(x + i * 9, cy), 3, 3)
        font = theme.scaled_font(self.font(), 0.88)
        painter.setFont(font)
        painter.setPen(t.color("text_muted"))
        painter.drawText(
            QRectF(x + 30, 0, self.width() - x - 40, self.height()),
            Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
            f"{self._name} is typing…",
        )
        painter.end()

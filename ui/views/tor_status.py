"""Tor in the sidebar: the bootstrap progress bar while tor connects, then a one-line
status ("Tor: reachable", "Tor: off", ...) whose tooltip shows the onion address.

Fed by ``bridge.torStatusChanged`` (messenger's TorStatusChanged events); a click opens
Settings at the Network page, where Tor is turned on or off.
"""

from __future__ import annotations

from typing import Final

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPaintEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

from messenger import TorStatusChanged
from ui import theme
from ui.views.paint import paint_onion_rings

# state -> (short text, theme colour of the onion mark)
STATES: Final = {
    "ready": ("Tor: reachable", "tor"),
    "starting": ("Tor: connecting", "text_muted"),
    "lost": ("Tor: reconnecting…", "warning_text"),
    "failed": ("Tor: not available", "danger"),
    "off": ("Tor: off", "text_muted"),
}
TOR_SETTING: Final = "Reach contacts over the internet (Tor)"
TOR_EXPLAINED: Final = (
    "Contacts on other networks reach you through Tor, with no server and no port "
    "forwarding, and the network in between cannot see who talks to whom. The first "
    "connection is slower, and contacts learn your onion address, which stays the same."
)
TOR_ONLY_SETTING: Final = "Hide my IP address from contacts (Tor only)"
TOR_ONLY_EXPLAINED: Final = (
    "Invites and contacts get only your onion address, so contacts on other networks "
    "learn no IP address of yours; every contact is then reached through Tor, which is "
    "slower. Contacts who already know an address keep it, and contacts on your local "
    "network still find you there."
)
OFF_HINT: Final = (
    "Contacts are reached on your local network only.\n"
    "Turn on “Reach contacts over the internet (Tor)” in Settings → Network."
)


def connecting_text(percent: int) -> str:
    if percent >= 100:  # bootstrapped; the onion service's descriptor is being published
        return "Tor: publishing your onion address…"
    return f"Connecting to the Tor network… {percent} %"


def status_tooltip(status: TorStatusChanged, unavailable: str | None = None) -> str:
    """What the status line's tooltip says (the onion address once it is known)."""
    match status.state:
        case "ready":
            return (
                "Contacts anywhere can reach you through Tor, without learning your IP "
                f"address.\nYour onion address: {status.onion or 'unknown'}"
            )
        case "starting":
            where = f" ({status.summary})" if status.summary else ""
            return f"Tor is starting{where}. Contacts on your network work meanwhile."
        case "lost":
            return f"Tor stopped: {status.error or 'unknown reason'}. Restarting it…"
        case "failed":
            return f"Tor could not start: {status.error or 'unknown reason'}"
        case _:
            return f"Tor is not available: {unavailable}" if unavailable else OFF_HINT


class OnionMark(QWidget):
    """Tor's onion (rings round a dot) in the state's colour."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFixedSize(16, 16)
        self.color_name = "text_muted"

    def set_color(self, name: str) -> None:
        self.color_name = name
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(16, 16)

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        color: QColor = theme.current().color(self.color_name)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(color)
        painter.drawEllipse(QRectF(1, 1, 14, 14))
        paint_onion_rings(painter, QRectF(2.2, 2.2, 11.6, 11.6))
        painter.end()


class TorStatusBar(QFrame):
    clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("TorStatus")
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setAttribute(Qt.WidgetAttribute.WA_Hover)  # the style sheet's :hover
        self.mark = OnionMark(self)
        self.label = QLabel(self)
        self.label.setObjectName("TorStatusText")
        self.label.setFont(theme.scaled_font(self.font(), 0.9))
        self.progress = QProgressBar(self)
        self.progress.setObjectName("TorProgress")
        self.progress.setRange(0, 100)
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(4)
        self.progress.setAccessibleName("Tor bootstrap progress")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(8)
        row.addWidget(self.mark)
        row.addWidget(self.label, 1)
        column = QVBoxLayout(self)
        column.setContentsMargins(16, 9, 16, 10)
        column.setSpacing(7)
        column.addLayout(row)
        column.addWidget(self.progress)
        self.status = TorStatusChanged("off")
        self.unavailable: str | None = None
        self.set_status(self.status)

    @property
    def connecting(self) -> bool:
        return self.status.state == "starting"

    def set_unavailable(self, reason: str | None) -> None:
        """Why Tor cannot run here (shown while it is off)."""
        self.unavailable = reason
        self.set_status(self.status)

    def set_status(self, status: TorStatusChanged) -> None:
        self.status = status
        text, color = STATES.get(status.state, (f"Tor: {status.state}", "text_muted"))
        if status.state == "starting":
            text = connecting_text(status.percent)
        self.label.setText(text)
        self.mark.set_color(color)
        self.progress.setValue(max(0, min(100, status.percent)))
        self.progress.setVisible(status.state == "starting")
        tip = status_tooltip(status, self.unavailable)
        self.setToolTip(tip)
        self.setAccessibleName(text)
        self.setAccessibleDescription(tip)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit()
        super().mouseReleaseEvent(event)

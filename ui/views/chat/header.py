"""A conversation's header: avatar, name, verified mark, presence, buttons."""

from __future__ import annotations

import time

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QFont, QPainter
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from ui import theme
from ui.models.conversations import ConversationItem
from ui.models.history import local_time, time_label
from ui.views.paint import Avatar, paint_verified

ROUTE_TEXT = {
    "tor": "online · over Tor",
    "lan": "online · on your network",
    "direct": "online",
}
ROUTE_TIP = {
    "tor": "Connected through Tor: neither of you sees the other's IP address.",
    "lan": "Connected directly, on your local network.",
    "direct": "Connected directly over the internet.",
}


def presence_text(item: ConversationItem, now: float | None = None) -> str:
    if item.online:
        return ROUTE_TEXT.get(item.route, "online")
    if not item.last_seen:
        return "offline"
    now = now or time.time()
    ago = max(0.0, now - item.last_seen)
    if ago < 60:
        return "last seen just now"
    if ago < 3600:
        return f"last seen {int(ago // 60)} min ago"
    when = local_time(int(item.last_seen * 1000))
    today = local_time(int(now * 1000)).date()
    if when.date() == today:
        return f"last seen today at {time_label(int(item.last_seen * 1000))}"
    if (today - when.date()).days == 1:
        return f"last seen yesterday at {time_label(int(item.last_seen * 1000))}"
    return f"last seen {when.strftime('%d %b %Y')}"


class VerifiedMark(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFixedSize(16, 16)
        self.setToolTip("Verified: you compared safety numbers")
        self.setAccessibleName("Verified")

    def paintEvent(self, _event: object) -> None:
        painter = QPainter(self)
        paint_verified(painter, QRectF(1, 1, 14, 14), theme.current().color("accent"))
        painter.end()


class ChatHeader(QFrame):
    searchClicked = Signal()
    safetyClicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ChatHeader")
        self.avatar = Avatar(40, self)
        self.name = QLabel(self)
        self.name.setObjectName("HeaderName")
        self.name.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.name.setFont(theme.scaled_font(self.font(), 1.15, QFont.Weight.DemiBold))
        self.verified = VerifiedMark(self)
        self.status = QLabel(self)
        self.status.setObjectName("HeaderStatus")
        self.status.setFont(theme.scaled_font(self.font(), 0.88))
        self.search_button = QToolButton(self)
        self.search_button.setToolTip("Search this conversation (Ctrl+F)")
        self.search_button.setAccessibleName("Search this conversation")
        self.safety_button = QToolButton(self)
        self.safety_button.setToolTip("Safety number: verify this contact")
        self.safety_button.setAccessibleName("Safety number")
        for button in (self.search_button, self.safety_button):
            button.setIconSize(QSize(20, 20))
            button.setFixedSize(36, 36)
            button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.retheme()

        names = QHBoxLayout()
        names.setSpacing(6)
        names.setContentsMargins(0, 0, 0, 0)
        names.addWidget(self.name)
        names.addWidget(self.verified)
        names.addStretch(1)
        text = QVBoxLayout()
        text.setSpacing(0)
        text.setContentsMargins(0, 0, 0, 0)
        text.addLayout(names)
        text.addWidget(self.status)
        row = QHBoxLayout(self)
        row.setContentsMargins(16, 10, 12, 10)
        row.setSpacing(12)
        row.addWidget(self.avatar)
        row.addLayout(text, 1)
        row.addWidget(self.search_button)
        row.addWidget(self.safety_button)
        self.search_button.clicked.connect(self.searchClicked)
        self.safety_button.clicked.connect(self.safetyClicked)

    def retheme(self) -> None:
        self.search_button.setIcon(theme.icon("search"))
        self.safety_button.setIcon(theme.icon("shield"))

    def show_item(self, item: ConversationItem, typing: bool = False) -> None:
        self.avatar.set_contact(item.name, item.id, item.online)
        self.avatar.set_route(item.route)
        self.status.setToolTip(ROUTE_TIP.get(item.route, "") if item.online else "")
        self.name.setText(item.name)
        self.name.setAccessibleName(f"Conversation with {item.name}")
        self.verified.setVisible(item.contact.verified)
        self.status.setText("typing…" if typing else presence_text(item))
        self.safety_button.setToolTip(
            f"Safety number with {item.name}" + (" (verified)" if item.contact.verified else "")
        )

"""The system tray icon (with the unread count) and desktop notifications.

Without a system tray (a bare X server, some Wayland shells) there is no icon and no
balloon; the window still flashes in the task bar (QApplication.alert) and every
notification that would have been shown is kept in ``shown`` (the tests read it).
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QObject, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QIcon, QPainter
from PySide6.QtWidgets import QMenu, QSystemTrayIcon, QWidget

from messenger import MessageRecord
from ui import theme

COALESCE_MS = 400  # a burst from one contact makes one notification
PREVIEW_CHARS = 140


@dataclass(frozen=True, slots=True)
class Notification:
    contact_id: str
    title: str
    body: str


def badged_icon(count: int) -> QIcon:
    """The app icon with a red count badge (crisp: drawn at each size)."""
    base = theme.app_icon()
    icon = QIcon()
    for size in (16, 22, 24, 32, 48, 64, 128):
        pixmap = base.pixmap(QSize(size, size))
        if count:
            painter = QPainter(pixmap)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            text = "99+" if count > 99 else str(count)
            d = size * (0.62 if len(text) == 1 else 0.72)
            rect = QRectF(size - d, 0, d, d * (0.86 if len(text) > 1 else 1))
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor("#e5383b"))
            painter.drawRoundedRect(rect, rect.height() / 2, rect.height() / 2)
            font = QFont()
            font.setPixelSize(max(6, round(rect.height() * (0.7 if len(text) == 1 else 0.55))))
            font.setBold(True)
            painter.setFont(font)
            painter.setPen(QColor("#ffffff"))
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
            painter.end()
        icon.addPixmap(pixmap)
    return icon


class Tray(QObject):
    showRequested = Signal()
    quitRequested = Signal()
    conversationRequested = Signal(str)  # a notification was clicked

    def __init__(
        self, bridge: object, window: QWidget | None = None, *, force: bool = False
    ) -> None:
        super().__init__(window)
        self.bridge = bridge
        self.window = window
        self.available = force or QSystemTrayIcon.isSystemTrayAvailable()
        self.shown: list[Notification] = []
        self.unread = 0
        self._pending: dict[str, list[tuple[str, MessageRecord]]] = {}
        self._last_contact: str | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(COALESCE_MS)
        self._timer.timeout.connect(self._flush)
        self.icon: QSystemTrayIcon | None = None
        if not self.available:
            return
        self.icon = QSystemTrayIcon(badged_icon(0), self)
        self.icon.setToolTip("Chinwag")
        menu = QMenu(window)
        open_action = menu.addAction("Open Chinwag")
        open_action.triggered.connect(self.showRequested)
        menu.addSeparator()
        quit_action = menu.addAction("Quit Chinwag")
        quit_action.triggered.connect(self.quitRequested)
        self.menu = menu
        self.icon.setContextMenu(menu)
        self.icon.activated.connect(self._on_activated)
        self.icon.messageClicked.connect(self._on_message_clicked)
        self.icon.show()

    def hide(self) -> None:
        self._timer.stop()
        if self.icon is not None:
            self.icon.hide()

    def set_unread(self, count: int) -> None:
        if count == self.unread:
            return
        self.unread = count
        if self.icon is not None:
            self.icon.setIcon(badged_icon(count))
            self.icon.setToolTip(f"Chinwag: {count} unread" if count else "Chinwag")

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (
            QSystemTrayIcon.ActivationReason.Trigger,
            QSystemTrayIcon.ActivationReason.DoubleClick,
        ):
            self.showRequested.emit()

    def _on_message_clicked(self) -> None:
        if self._last_contact is not None:
            self.conversationRequested.emit(self._last_contact)
        else:
            self.showRequested.emit()

    # -- notifications ----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Messages queued for the next notification (a burst is shown as one)."""
        return sum(len(items) for items in self._pending.values())

    def notify_message(self, message: MessageRecord, name: str) -> None:
        """Queue a notification for an arriving message; bursts are coalesced."""
        self._pending.setdefault(message.contact_id, []).append((name, message))
        if not self._timer.isActive():
            self._timer.start()

    def _setting(self, key: str, default: bool) -> bool:
        getter = getattr(self.bridge, "setting", None)
        value = getter(key) if getter is not None else None
        return default if value is None else bool(value)

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        if not self._setting("notifications", True):
            return
        previews = self._setting("notification_previews", True)
        for contact_id, items in pending.items():
            name = items[-1][0]
            if previews:
                last = " ".join(items[-1][1].body.split())
                if len(last) > PREVIEW_CHARS:
                    last = last[: PREVIEW_CHARS - 1] + "…"
                body = last if len(items) == 1 else f"{last}\n(+{len(items) - 1} more)"
            else:
                body = "New message" if len(items) == 1 else f"{len(items)} new messages"
            note = Notification(contact_id, name, body)
            self.shown.append(note)
            del self.shown[:-50]
            self._last_contact = contact_id
            if self.icon is not None:
                self.icon.showMessage(note.title, note.body, theme.app_icon(), 6000)

    def click_last(self) -> None:
        """What clicking the newest notification does (for tests and keyboard users)."""
        self._on_message_clicked()

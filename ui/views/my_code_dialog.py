""" "My code": a fresh single-use invite as a large QR code and as text, with its expiry."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from messenger import Invite, ServiceError, invite_qr, save_invite_qr
from ui.bridge import Bridge
from ui.qr import QrWidget
from ui.views.dialog_parts import (
    BusyRow,
    DialogTasks,
    InlineMessage,
    hint_label,
    monospace_font,
    primary_button,
    secondary_button,
    section_label,
    style_dialog,
    title_label,
)

REFRESH_MS: Final = 30_000


def format_expiry(expires_at: float, now: float) -> str:
    """ "Expires in 23 h, at 17:05 tomorrow" (local time), or that it has expired."""
    remaining = expires_at - now
    if remaining <= 0:
        return "This code has expired. Create a new one."
    if remaining >= 3600:
        span = f"{int(remaining // 3600)} h"
    else:
        span = f"{max(1, math.ceil(remaining / 60))} min"
    when = datetime.fromtimestamp(expires_at)
    today = datetime.fromtimestamp(now).date()
    if when.date() == today:
        day = ""
    elif when.date() == today + timedelta(days=1):
        day = " tomorrow"
    else:
        day = f" on {when:%a %d %b}"
    return f"Expires in {span}, at {when:%H:%M}{day}"


class MyCodeDialog(QDialog):
    """Shows a new invite: QR (crisp at any DPI), selectable text code, Copy, expiry."""

    def __init__(
        self,
        bridge: Bridge,
        parent: QWidget | None = None,
        *,
        clock: Callable[[], float] = time.time,
        create: bool = True,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self._clock = clock
        self.code: str | None = None
        self.invite: Invite | None = None
        self.tasks = DialogTasks("my code", on_error=self._failed)
        self.setWindowTitle("My code")
        self.setMinimumWidth(460)

        self.qr_widget = QrWidget(self, minimum=300)
        self.qr_widget.setAccessibleName("Your invite as a QR code")
        self.name_label = QLabel(bridge.display_name)
        self.name_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.name_label.setStyleSheet("font-size: 13pt; font-weight: 600;")
        self.expiry_label = hint_label()
        self.expiry_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.busy = BusyRow()
        self.message = InlineMessage()
        self.code_view = QPlainTextEdit()
        self.code_view.setReadOnly(True)
        self.code_view.setFont(monospace_font())
        self.code_view.setWordWrapMode(self.code_view.wordWrapMode().WrapAnywhere)
        self.code_view.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
            | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        self.code_view.setObjectName("CodeBlock")
        self.code_view.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.code_view.setFixedHeight(self.code_view.fontMetrics().lineSpacing() * 4 + 26)
        self.code_view.setAccessibleName("Your invite code as text")
        self.copy_button = secondary_button("Copy code", "copy")
        self.save_button = secondary_button("Save image…", "download")
        self.new_button = secondary_button("New code", "refresh-cw")
        self.done_button = primary_button("Done")
        self.copy_button.setToolTip("Copy the text code to send it in another app")
        self.save_button.setToolTip("Save the QR code as a PNG or SVG image")
        self.new_button.setToolTip("Make a fresh code; this one stays valid until it expires")

        self._lay_out()
        self.copy_button.clicked.connect(self.copy_code)
        self.save_button.clicked.connect(self.save_image)
        self.new_button.clicked.connect(self.new_code)
        self.done_button.clicked.connect(self.accept)
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self._refresh_expiry)
        self._copied_timer = QTimer(self)
        self._copied_timer.setSingleShot(True)
        self._copied_timer.timeout.connect(lambda: self.copy_button.setText(" Copy code"))
        self._set_has_code(False)
        style_dialog(self)
        if create:
            self.new_code()

    # -- creating --------------------------------------------------------------------------

    def _lay_out(self) -> None:
        """Title, QR with its busy overlay, name, expiry, text code, buttons."""
        qr_area = QGridLayout()
        qr_area.addWidget(self.qr_widget, 0, 0)
        qr_area.addWidget(self.busy, 0, 0, Qt.AlignmentFlag.AlignCenter)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(28, 24, 28, 22)
        layout.setSpacing(8)
        layout.addWidget(title_label("Your code"))
        layout.addWidget(
            hint_label(
                "Let someone nearby scan this code with Chinwag, or send them the text "
                "code. Each code can be used once."
            )
        )
        layout.addSpacing(10)
        layout.addLayout(qr_area)
        layout.addSpacing(4)
        layout.addWidget(self.name_label)
        layout.addWidget(self.expiry_label)
        layout.addWidget(self.message)
        layout.addSpacing(10)
        layout.addWidget(section_label("Text code"))
        layout.addWidget(self.code_view)
        actions = QHBoxLayout()
        actions.setSpacing(8)
        actions.addWidget(self.copy_button)
        actions.addWidget(self.save_button)
        actions.addStretch(1)
        actions.addWidget(self.new_button)
        layout.addLayout(actions)
        layout.addSpacing(12)
        bottom = QHBoxLayout()
        bottom.addStretch(1)
        bottom.addWidget(self.done_button)
        layout.addLayout(bottom)

    def new_code(self) -> asyncio.Task[Any] | None:
        if self.tasks.pending:
            return None
        return self.tasks.spawn(self._create())

    async def _create(self) -> None:
        self.message.clear_message()
        self.new_button.setEnabled(False)
        self.busy.start("Creating your code…")
        try:
            code, invite = await self.bridge.create_invite()
        except ServiceError as exc:
            self._failed(exc)
            return
        finally:
            self.busy.stop()
            self.new_button.setEnabled(True)
        self.show_code(code, invite)

    def _fit_code(self) -> None:
        """Tall enough for the whole code (up to 8 lines; a longer one scrolls)."""
        view = self.code_view
        layout = view.document().documentLayout()
        lines = max(2, min(8, round(layout.documentSize().height())))  # lines, in a plain edit
        chrome = view.height() - view.viewport().height()
        margin = 2 * view.document().documentMargin()
        view.setFixedHeight(lines * view.fontMetrics().lineSpacing() + chrome + round(margin) + 2)

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._fit_code()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.done_button.setFocus()
        self._fit_code()

    def show_code(self, code: str, invite: Invite) -> None:
        self.code, self.invite = code, invite
        self.qr_widget.set_qr(invite_qr(code))
        self.code_view.setPlainText(code)
        self._fit_code()
        self._set_has_code(True)
        self._refresh_expiry()
        self._timer.start()

    def _failed(self, exc: BaseException) -> None:
        self.message.error(f"Could not create a code: {exc}")

    def _set_has_code(self, has: bool) -> None:
        self.copy_button.setEnabled(has)
        self.save_button.setEnabled(has)
        self.qr_widget.set_dimmed(not has)

    def _refresh_expiry(self) -> None:
        if self.invite is None:
            self.expiry_label.setText("")
            return
        now = self._clock()
        self.expiry_label.setText(format_expiry(self.invite.expires_at, now))
        expired = self.invite.is_expired(now)
        self.qr_widget.set_dimmed(expired)
        self.copy_button.setEnabled(not expired)
        self.save_button.setEnabled(not expired)

    # -- actions ---------------------------------------------------------------------------

    def copy_code(self) -> None:
        if self.code:
            QGuiApplication.clipboard().setText(self.code)
            self.copy_button.setText(" Copied ✓")
            self._copied_timer.start(1600)

    def save_image(self) -> None:
        if not self.code:
            return
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Save your code as an image",
            str(Path.home() / "chinwag-code.png"),
            "PNG image (*.png);;SVG image (*.svg)",
        )
        if path:
            if Path(path).suffix.lower() not in (".png", ".svg"):
                path += ".png"
            self.tasks.spawn(self._save(self.code, Path(path)))

    async def _save(self, code: str, path: Path) -> None:
        try:
            await asyncio.to_thread(save_invite_qr, code, path, scale=10)
        except (OSError, ValueError) as exc:
            self.message.error(f"Could not save the image: {exc}")
            return
        self.message.success(f"Saved to {path.name}.")

    def done(self, result: int) -> None:
        self._timer.stop()
        self.tasks.cancel()
        super().done(result)

"""Files in a conversation: one row per transfer with a progress bar, speed and time left,
pause/resume/cancel, accept, open, show in folder and save as; image thumbnails made
locally (and kept in the encrypted database), click one to see the image.

Nothing here writes plaintext except "Save as" (where the user chose) and "Open" (a
private temporary folder, so the system viewer can read it).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from PySide6.QtCore import QByteArray, QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QImage, QMouseEvent, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from messenger import TransferRecord, TransferState, sanitise

from .. import theme
from ..bridge import Bridge
from ..models.thumbnails import Thumbnails
from ..models.transfers import (
    ACTION_LABELS,
    MENU_ONLY,
    available_actions,
    in_progress,
    status_text,
)
from ..tasks import TaskSet
from .dialog_parts import hint_label, primary_button, secondary_button, style_dialog, title_label

log = logging.getLogger(__name__)

THUMB = 56
MAX_ROWS_SHOWN = 3


class ImageViewer(QDialog):
    def __init__(self, name: str, data: bytes, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(name)
        self.label = QLabel(self)
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        pixmap = QPixmap()
        pixmap.loadFromData(QByteArray(data))
        screen = (
            self.screen().availableGeometry().size() * 0.8 if self.screen() else QSize(1200, 800)
        )
        if pixmap.width() > screen.width() or pixmap.height() > screen.height():
            pixmap = pixmap.scaled(
                screen,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        self.label.setPixmap(pixmap)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)


class _Thumb(QLabel):
    clicked = Signal()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit()
        super().mouseReleaseEvent(event)


class ForwardDialog(QDialog):
    """Where to pass a file on: a contact, or a group (you become one of its sources)."""

    chosen = Signal(str, str)  # "contact_id" or "group_id", the id

    def __init__(
        self,
        name: str,
        contacts: list[tuple[str, str]],
        groups: list[tuple[str, str]],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Forward")
        self.setModal(True)
        self.setMinimumWidth(380)
        self.list = QListWidget(self)
        self.list.setAccessibleName("Where to forward the file")
        self.list.setStyleSheet("QListWidget::item { padding: 7px 6px; }")
        for label, kind, items in (("", "contact_id", contacts), ("# ", "group_id", groups)):
            for display, target in sorted(items, key=lambda item: item[0].casefold()):
                item = QListWidgetItem(f"{label}{display}")
                item.setData(Qt.ItemDataRole.UserRole, (kind, target))
                self.list.addItem(item)
        self.ok = primary_button("Forward")
        cancel = secondary_button("Cancel")
        self.ok.setEnabled(False)
        # Enabled by a selection only (focus alone makes the first row current, and a
        # stray Enter must not send the file to whoever sorts first).
        self.list.itemSelectionChanged.connect(
            lambda: self.ok.setEnabled(bool(self.list.selectedItems()))
        )
        self.list.itemDoubleClicked.connect(lambda _item: self.accept())
        self.ok.clicked.connect(self.accept)
        cancel.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(cancel)
        buttons.addWidget(self.ok)
        layout = QVBoxLayout(self)
        layout.addWidget(title_label("Forward"))
        layout.addWidget(
            hint_label(
                f"Offer {name} to a contact or share it in a group; they fetch it from you "
                "(and, in a group, from everyone who has it)."
            )
        )
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        style_dialog(self)
        self.resize(400, 440)

    def accept(self) -> None:
        selected = self.list.selectedItems()
        if not selected:
            return
        kind, target = selected[0].data(Qt.ItemDataRole.UserRole)
        super().accept()
        self.chosen.emit(kind, target)


class TransferRow(QFrame):
    """One file: thumbnail or icon, name, progress, status, buttons for what makes sense."""

    actionRequested = Signal(str, str)  # action, transfer id

    def __init__(self, transfer: TransferRecord, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("TransferRow")
        self.transfer = transfer
        self.thumb = _Thumb(self)
        self.thumb.setFixedSize(THUMB, THUMB)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.name = QLabel(self)
        self.name.setObjectName("TransferName")
        self.status = QLabel(self)
        self.status.setObjectName("TransferStatus")
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(6)
        self.buttons: dict[str, QToolButton] = {}
        text = QVBoxLayout()
        text.setSpacing(3)
        text.addWidget(self.name)
        text.addWidget(self.progress)
        text.addWidget(self.status)
        row = QHBoxLayout(self)
        row.setContentsMargins(10, 6, 10, 6)
        row.setSpacing(10)
        row.addWidget(self.thumb)
        row.addLayout(text, 1)
        for action, label in ACTION_LABELS.items():
            if action in MENU_ONLY:
                continue  # the thumbnail is View's button
            button = QToolButton(self)
            button.setText(label)
            button.setAccessibleName(f"{label} {transfer.name}")
            button.clicked.connect(
                lambda _c=False, a=action: self.actionRequested.emit(a, self.transfer.id)
            )
            row.addWidget(button)
            self.buttons[action] = button
        self.thumb.clicked.connect(lambda: self.actionRequested.emit("view", self.transfer.id))
        self.saved_to: Path | None = None
        self.update_transfer(transfer)

    def set_thumbnail(self, image: QImage | None) -> None:
        if image is not None:
            self.thumb.setPixmap(
                QPixmap.fromImage(image).scaled(
                    THUMB,
                    THUMB,
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
            )
            self.thumb.setCursor(Qt.CursorShape.PointingHandCursor)
            self.thumb.setToolTip("View the image")
        else:
            icon = "image" if self.transfer.mime.startswith("image/") else "paperclip"
            self.thumb.setPixmap(theme.icon(icon).pixmap(28, 28))

    def update_transfer(self, t: TransferRecord) -> None:
        self.transfer = t
        self.name.setText(("↑ " if t.outgoing else "↓ ") + t.name)
        self.status.setText(status_text(t))
        self.progress.setValue(int(t.progress * 1000))
        moving = t.state in (TransferState.DOWNLOADING, TransferState.PAUSED)
        self.progress.setVisible(moving or t.state is TransferState.FAILED)
        shown = available_actions(t, self.saved_to is not None)
        for action, button in self.buttons.items():
            button.setVisible(action in shown)
        if self.thumb.pixmap().isNull():
            self.set_thumbnail(None)


class TransfersPanel(QFrame):
    """The conversation's downloads that are under way or wait for a decision, newest
    first, above the composer; hidden when there are none. Finished files and our own
    offers are shown by their message bubbles alone (the panel would only repeat them),
    but the panel keeps a row for every file of the conversation: the bubbles' actions
    run through it (`run_action`), and it remembers where a file was saved."""

    errorShown = Signal(str)

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("TransfersPanel")
        self.bridge = bridge
        self.contact_id: str | None = None
        self.group_id: str | None = None
        self.rows: dict[str, TransferRow] = {}
        self._tasks = TaskSet("transfers panel")
        self._thumbnails = Thumbnails(bridge, self._tasks, self._on_thumbnail)
        self.forward_dialog: ForwardDialog | None = None  # the last one opened
        self._inner = QWidget()
        self._list = QVBoxLayout(self._inner)
        self._list.setContentsMargins(0, 0, 0, 0)
        self._list.setSpacing(0)
        self._list.addStretch(1)
        self.scroll_area = QScrollArea(self)
        self.scroll_area.setWidget(self._inner)
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.scroll_area)
        self.hide()
        bridge.transferChanged.connect(self._on_transfer)

    def shutdown(self) -> None:
        self._tasks.close()

    def show_contact(self, contact_id: str | None) -> None:
        self._show(contact_id, None)

    def show_group(self, group_id: str | None) -> None:
        self._show(None, group_id)

    def _show(self, contact_id: str | None, group_id: str | None) -> None:
        self.contact_id, self.group_id = contact_id, group_id
        for row in self.rows.values():
            row.deleteLater()
        self.rows.clear()
        if contact_id is not None or group_id is not None:
            for t in reversed(self.bridge.transfers(contact_id, group_id)):
                self._add(t)
        self._fit()

    def _shows(self, t: TransferRecord) -> bool:
        """Is `t` one of the files of the conversation on screen?"""
        if self.contact_id is not None:
            return self.contact_id in t.contacts
        return self.group_id is not None and self.group_id in t.groups

    def _on_transfer(self, t: TransferRecord) -> None:
        if not self._shows(t):
            return
        row = self.rows.get(t.id)
        if row is None:
            self._add(t)
            self._fit()
        else:
            row.update_transfer(t)
            row.setVisible(in_progress(t))
            self._want_thumbnail(row)
            self._fit()

    def _add(self, t: TransferRecord) -> None:
        row = TransferRow(t, self._inner)
        row.actionRequested.connect(self._on_action)
        row.setVisible(in_progress(t))
        self._list.insertWidget(0, row)
        self.rows[t.id] = row
        self._want_thumbnail(row)

    def shown_rows(self) -> list[TransferRow]:
        return [row for row in self.rows.values() if in_progress(row.transfer)]

    def _fit(self) -> None:
        shown = self.shown_rows()
        self.setVisible(bool(shown))
        if shown:
            per_row = shown[0].sizeHint().height()
            self.setFixedHeight(per_row * min(len(shown), MAX_ROWS_SHOWN) + 2)

    def _want_thumbnail(self, row: TransferRow) -> None:
        image = self._thumbnails.get(row.transfer)
        if image is not None:
            row.set_thumbnail(image)

    def _on_thumbnail(self, transfer_id: str, image: QImage) -> None:
        row = self.rows.get(transfer_id)
        if row is not None:
            row.set_thumbnail(image)

    def saved(self, transfer_id: str) -> bool:
        row = self.rows.get(transfer_id)
        return row is not None and row.saved_to is not None

    def run_action(self, action: str, transfer_id: str) -> None:
        """An action on one of this conversation's files (from the panel or a chat bubble)."""
        self._on_action(action, transfer_id)

    def _on_action(self, action: str, transfer_id: str) -> None:
        row = self.rows.get(transfer_id)
        if row is None:
            return
        t = row.transfer
        if action in ("accept", "pause", "resume", "cancel"):
            self._run(self.bridge.transfer_action(action, transfer_id))
        elif action == "save":
            start = str(Path.home() / sanitise(t.name))
            path, _ = QFileDialog.getSaveFileName(self, "Save as", start)
            if path:
                self._run(self._save(row, Path(path)))
        elif action == "open":
            self._run(self._open(row))
        elif action == "folder" and row.saved_to is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(row.saved_to.parent)))
        elif action == "view" and t.mime.startswith("image/"):
            self._run(self._view(t))
        elif action == "forward":
            self._run(self._ask_where_to_forward(t))

    async def _ask_where_to_forward(self, t: TransferRecord) -> None:
        contacts = [(c.display_name, c.id) for c in await self.bridge.contacts()]
        groups = [(g.name, g.id) for g in await self.bridge.groups() if g.state == "active"]
        dialog = ForwardDialog(t.name, contacts, groups, self.window())
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.chosen.connect(lambda kind, target: self._run(self._forward(t, kind, target)))
        dialog.open()  # not exec(): no event loop nested in this task
        self.forward_dialog = dialog

    async def _forward(self, t: TransferRecord, kind: str, target: str) -> None:
        await self.bridge.forward_file(t.id, **{kind: target})

    async def _save(self, row: TransferRow, path: Path) -> None:
        row.saved_to = await self.bridge.save_file(row.transfer.id, path)
        row.update_transfer(row.transfer)

    async def _open(self, row: TransferRow) -> None:
        folder = Path(tempfile.mkdtemp(prefix="chinwag-open-"))  # 0700, ours alone
        saved = await self.bridge.save_file(row.transfer.id, folder)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(saved)))

    async def _view(self, t: TransferRecord) -> None:
        data = await self.bridge.file_bytes(t.id)
        viewer = ImageViewer(t.name, data, self.window())
        viewer.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        viewer.show()

    def _run(self, coro: object) -> None:
        def failed(exc: BaseException) -> None:
            self.errorShown.emit(str(exc))
            QMessageBox.warning(self, "File transfer", str(exc))

        self._tasks.spawn(coro, on_error=failed)  # type: ignore[arg-type]

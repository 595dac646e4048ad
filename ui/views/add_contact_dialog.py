""" "Add a contact": from their QR code (webcam, image file, clipboard image) or text code.

A QR code scanned with the camera, from the other person's screen in front of you, marks
the new contact verified. A code from an image file, a clipboard image or text does not:
a screenshot or a code can pass through other hands on its way (compare safety numbers).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage
from PySide6.QtWidgets import QDialog, QHBoxLayout, QVBoxLayout, QWidget

from messenger import (
    ContactRecord,
    Invite,
    InviteError,
    InviteFailed,
    InviteMalformed,
    ServiceError,
    decode_invite,
)
from ui.bridge import Bridge
from ui.qr import parse_safety_qr_text
from ui.views.dialog_parts import (
    BusyRow,
    CodeEdit,
    DialogTasks,
    InlineMessage,
    ScanPanel,
    hint_label,
    primary_button,
    rule,
    secondary_button,
    section_label,
    style_dialog,
    title_label,
)
from ui.views.my_code_dialog import format_expiry

SAFETY_CODE_IN_ADD: str = (
    "This is a safety-number code, used to verify someone who is already a contact. "
    "To add a contact, scan the code on their “My code” screen."
)
NOT_AN_INVITE: str = "This QR code is not a Chinwag invite."


def _same_invite(a: Invite, b: Invite) -> bool:
    return a.secret == b.secret and a.ed25519_public == b.ed25519_public


def _who(invite: Invite) -> str:
    return invite.display_name or "an unnamed contact"


class AddContactDialog(QDialog):
    """Reads an invite in one of four ways, then ``bridge.accept_invite``.

    On success the dialog is accepted and ``contact`` is the new ContactRecord.
    """

    def __init__(
        self,
        bridge: Bridge,
        parent: QWidget | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self._clock = clock
        self.contact: ContactRecord | None = None
        self.verified = False  # whether the last add attempt was from a scanned QR
        self._scanned: Invite | None = None
        self.tasks = DialogTasks("add contact", on_error=self._unexpected)
        self.setWindowTitle("Add a contact")
        self.setMinimumWidth(500)
        self.setAcceptDrops(True)

        self.scan = ScanPanel(self)
        self.code_edit = CodeEdit()
        self.code_edit.setPlaceholderText("CHINWAG:…")
        self.code_edit.setAccessibleName("Invite code")
        self.preview = InlineMessage()
        self.message = InlineMessage()
        self.busy = BusyRow()
        self.add_button = primary_button("Add contact")
        self.cancel_button = secondary_button("Cancel")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(28, 24, 28, 22)
        layout.setSpacing(8)
        layout.addWidget(title_label("Add a contact"))
        layout.addWidget(
            hint_label(
                "Scan the code on their screen, or paste the text code they sent you. "
                "A code you scan in person also verifies them."
            )
        )
        layout.addSpacing(12)
        layout.addWidget(section_label("Scan their code"))
        layout.addWidget(self.scan)
        layout.addSpacing(12)
        layout.addWidget(rule())
        layout.addSpacing(8)
        layout.addWidget(section_label("Or paste their text code"))
        layout.addWidget(self.code_edit)
        layout.addWidget(self.preview)
        layout.addSpacing(4)
        layout.addWidget(self.message)
        layout.addWidget(self.busy)
        layout.addSpacing(12)
        layout.addStretch(1)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.add_button)
        layout.addLayout(buttons)

        self.scan.scanned.connect(self._on_scanned)
        self.scan.problem.connect(self._on_problem)
        self.code_edit.textChanged.connect(self._validate)
        self.code_edit.imagePasted.connect(lambda image: self.scan.decode_image(image, "clipboard"))
        self.code_edit.submitted.connect(self.add_typed)
        self.add_button.clicked.connect(self.add_typed)
        self.cancel_button.clicked.connect(self.reject)
        style_dialog(self)
        self._validate()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.code_edit.setFocus()

    # -- the typed / pasted code -----------------------------------------------------------

    def _decode(self, text: str) -> Invite:
        return decode_invite(text, now=self._clock())

    def _validate(self) -> None:
        text = self.code_edit.toPlainText().strip()
        self.message.clear_message()
        if not text:
            self.preview.clear_message()
            self.add_button.setEnabled(False)
            return
        try:
            invite = self._decode(text)
        except InviteError as exc:
            self.preview.error(str(exc))
            self.add_button.setEnabled(False)
            return
        note = "" if not self._is_scanned(invite) else " · scanned from a QR code"
        expiry = format_expiry(invite.expires_at, self._clock()).lower()
        self.preview.success(f"✓ Invite from {_who(invite)} · {expiry}{note}")
        self.add_button.setEnabled(not self.tasks.pending)

    def _is_scanned(self, invite: Invite) -> bool:
        return self._scanned is not None and _same_invite(invite, self._scanned)

    def add_typed(self) -> asyncio.Task[Any] | None:
        """Add from the text field (verified only if that text came from a scanned QR)."""
        text = self.code_edit.toPlainText().strip()
        try:
            invite = self._decode(text)
        except InviteError as exc:
            self.preview.error(str(exc))
            return None
        return self.add(text, verified=self._is_scanned(invite))

    # -- scanned codes ---------------------------------------------------------------------

    def _on_scanned(self, texts: list[str], source: str) -> None:
        if self.tasks.pending and self.busy.active:
            return
        problem: str | None = None
        for text in texts:
            try:
                invite = self._decode(text)
            except InviteMalformed:
                if parse_safety_qr_text(text) is not None:
                    problem = problem or SAFETY_CODE_IN_ADD
                continue
            except InviteError as exc:  # expired, unsupported version
                problem = str(exc)
                continue
            self.scan.stop_camera()
            in_person = source == "camera"
            self._scanned = invite if in_person else None
            self.code_edit.blockSignals(True)
            self.code_edit.setPlainText(text)
            self.code_edit.blockSignals(False)
            self._validate()
            self.add(text, verified=in_person)
            return
        self.message.error(problem or NOT_AN_INVITE)

    def _on_problem(self, text: str) -> None:
        self.message.error(text)

    def scan_image(self, image: QImage) -> asyncio.Task[Any]:
        """Decode an image as if pasted from the clipboard (drag and drop, tests)."""
        return self.scan.decode_image(image, "clipboard")

    # -- accepting -------------------------------------------------------------------------

    def add(self, code: str, *, verified: bool) -> asyncio.Task[Any] | None:
        if self.busy.active:
            return None
        return self.tasks.spawn(self._add(code, verified))

    async def _add(self, code: str, verified: bool) -> None:
        self.verified = verified
        try:
            name = _who(self._decode(code))
        except InviteError:
            name = "them"
        self._set_busy(True, f"Contacting {name}…")
        try:
            contact = await self.bridge.accept_invite(code, verified=verified)
        except (InviteFailed, ServiceError) as exc:
            self._set_busy(False)
            self.message.error(_sentence(str(exc)))
            return
        self._set_busy(False)
        self.contact = contact
        self.accept()

    def _unexpected(self, exc: BaseException) -> None:
        self._set_busy(False)
        self.message.error(f"Something went wrong: {exc}")

    def _set_busy(self, busy: bool, text: str = "") -> None:
        self.scan.set_active(not busy)
        self.code_edit.setReadOnly(busy)
        self.add_button.setEnabled(not busy)
        if busy:
            self.message.clear_message()
            self.busy.start(text)
        else:
            self.busy.stop()
            self._validate_keep_message()

    def _validate_keep_message(self) -> None:
        message, kind = self.message.text(), self.message.kind
        self._validate()
        if kind == "error" and message:
            self.message.error(message)

    # -- drag and drop an image ------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        mime = event.mimeData()
        if mime.hasImage() or any(url.isLocalFile() for url in mime.urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        mime = event.mimeData()
        for url in mime.urls():
            if url.isLocalFile():
                self.scan.decode_file(url.toLocalFile())
                event.acceptProposedAction()
                return
        if mime.hasImage():
            image = mime.imageData()
            if isinstance(image, QImage):
                self.scan.decode_image(image, "file")
                event.acceptProposedAction()

    def done(self, result: int) -> None:
        # Cancelling while an accept is in flight stops waiting for it; the handshake
        # may still complete, in which case the contact simply appears in the list.
        self.scan.close_panel()
        self.tasks.cancel()
        super().done(result)


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return "Could not add this contact."
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."

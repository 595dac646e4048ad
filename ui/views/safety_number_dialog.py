"""Safety number of a conversation: 60 digits and a QR code, scan-to-verify, and the
"verified" toggle.

The QR holds ``CHINWAG-SAFETY:`` + base32 of ``bridge.safety_qr_payload(contact)``
(see ui/qr.py). The payload is directional, so scanning your own screen never verifies.
"""

from __future__ import annotations

import asyncio
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from messenger import ContactRecord, InviteError, decode_invite
from ui.bridge import Bridge
from ui.qr import QrWidget, parse_safety_qr_text, safety_qr
from ui.views.dialog_parts import (
    BusyRow,
    DialogTasks,
    InlineMessage,
    ScanPanel,
    error_color,
    hint_label,
    monospace_font,
    primary_button,
    secondary_button,
    secondary_text_color,
    section_label,
    style_dialog,
    success_color,
    title_label,
)


class SafetyNumberDialog(QDialog):
    def __init__(
        self, bridge: Bridge, contact: ContactRecord, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.contact = contact
        self.verified = contact.verified
        self.tasks = DialogTasks("safety number", on_error=self._unexpected)
        name = contact.display_name or "your contact"
        self._name = name
        self.setWindowTitle(f"Safety number with {name}")
        self.setMinimumWidth(640)

        self.qr_widget = QrWidget(self, minimum=184)
        self.qr_widget.setFixedSize(184, 184)
        self.qr_widget.set_qr(safety_qr(bridge.safety_qr_payload(contact)))
        self.qr_widget.setAccessibleName("Safety number as a QR code")
        self.digits_label = QLabel(bridge.safety_number(contact))
        self.digits_label.setFont(monospace_font(14.5))
        self.digits_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.digits_label.setAccessibleName("Safety number digits")
        self.digits_label.setSizePolicy(QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Fixed)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setAccessibleName("Verification status")
        self.message = InlineMessage()
        self.busy = BusyRow()
        self.scan = ScanPanel(self, compact=True)
        self.scan.hide()
        self.scan_button = secondary_button("Scan their code", "camera")
        self.verify_button = secondary_button("Mark as verified", "shield")
        self.close_button = primary_button("Close")

        self._lay_out(name)
        self.scan_button.clicked.connect(self.toggle_scanner)
        self.verify_button.clicked.connect(self.toggle_verified)
        self.close_button.clicked.connect(self.accept)
        self.scan.scanned.connect(self._on_scanned)
        self.scan.problem.connect(self.message.error)
        bridge.contactChanged.connect(self._on_contact_changed)
        style_dialog(self)
        self._show_state()

    # -- state -----------------------------------------------------------------------------

    def _lay_out(self, name: str) -> None:
        """Title, hint, the card (QR beside the digits), scanner, buttons."""
        numbers = QVBoxLayout()
        numbers.setSpacing(12)
        numbers.addStretch(1)
        numbers.addWidget(section_label("Safety number"))
        numbers.addWidget(self.digits_label)
        numbers.addWidget(self.status_label)
        numbers.addStretch(1)
        card = QFrame()
        card.setObjectName("Card")
        card.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        body = QHBoxLayout(card)
        body.setContentsMargins(16, 16, 24, 16)
        body.setSpacing(24)
        body.addWidget(self.qr_widget, 0, Qt.AlignmentFlag.AlignVCenter)
        body.addLayout(numbers, 1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(28, 24, 28, 22)
        layout.setSpacing(8)
        layout.addWidget(title_label(f"Verify {name}"))
        layout.addWidget(
            hint_label(
                f"If these numbers match the ones on {name}'s screen, nobody is listening in "
                f"between. Compare them in person, or scan the code on {name}'s screen."
            )
        )
        # Identity keys never change (protocol.md §2.1): a different number means a different
        # identity (a re-created profile, or someone else), and Chinwag holds that chat.
        self.stability_label = hint_label(
            "Safety numbers do not change in normal use: they come from your two identity "
            "keys, which stay the same for as long as each profile exists. If "
            f"{name} re-creates their profile, Chinwag shows it as a new identity and "
            "sends nothing to it until you verify it or accept it.",
            small=True,
        )
        self.stability_label.setAccessibleName("Safety numbers do not change")
        layout.addWidget(self.stability_label)
        layout.addSpacing(14)
        layout.addWidget(card)
        layout.addSpacing(10)
        layout.addWidget(self.scan)
        layout.addWidget(self.message)
        layout.addWidget(self.busy)
        layout.addStretch(1)
        layout.addSpacing(12)
        buttons = QHBoxLayout()
        buttons.setSpacing(8)
        buttons.addWidget(self.scan_button)
        buttons.addWidget(self.verify_button)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)
        layout.addLayout(buttons)

    def _show_state(self) -> None:
        if self.contact.key_changed and not self.verified:
            self.status_label.setText(
                "Changed: a new identity under a name you know. Verify it before you trust it."
            )
            self.status_label.setStyleSheet(f"color: {error_color()}; font-weight: 600;")
            self.verify_button.setText(" Mark as verified")
            return
        if self.verified:
            color = success_color()
            self.status_label.setText("✓  Verified")
            self.verify_button.setText(" Clear verification")
        else:
            color = secondary_text_color()
            self.status_label.setText("Not verified")
            self.verify_button.setText(" Mark as verified")
        self.status_label.setStyleSheet(f"color: {color}; font-weight: 600;")

    def _on_contact_changed(self, record: ContactRecord) -> None:
        if record.id == self.contact.id:
            self.contact = record
            self.verified = record.verified
            self._show_state()

    # -- manual toggle ---------------------------------------------------------------------

    def toggle_verified(self) -> asyncio.Task[Any] | None:
        if self.busy.active:
            return None
        return self.tasks.spawn(self._set_verified(not self.verified))

    async def _set_verified(self, verified: bool) -> None:
        self.message.clear_message()
        self._busy(True, "Saving…")
        try:
            await self.bridge.set_verified(self.contact.id, verified)
        finally:
            self._busy(False)
        self.verified = verified
        self._show_state()

    # -- scanning --------------------------------------------------------------------------

    def toggle_scanner(self) -> None:
        shown = not self.scan.isVisible()
        self.scan.setVisible(shown)
        self.scan_button.setText(" Hide scanner" if shown else " Scan their code")
        if not shown:
            self.scan.stop_camera()
        self.adjustSize()

    def _on_scanned(self, texts: list[str], source: str) -> None:
        for text in texts:
            payload = parse_safety_qr_text(text)
            if payload is not None:
                self.scan.stop_camera()
                if source == "camera":
                    self.tasks.spawn(self._verify(payload))
                else:
                    self._compare_only(payload)
                return
        for text in texts:
            try:
                decode_invite(text, now=0)
            except InviteError:
                continue
            self.message.error(
                f"This is an invite code, not a safety number. Ask {self._name} to open "
                "the safety number of your chat and show that code."
            )
            return
        self.message.error("This QR code is not a Chinwag safety number.")

    def _compare_only(self, payload: bytes) -> None:
        """A picture (file, clipboard) can come from anyone: compare, but do not verify."""
        if self.bridge.check_safety_qr(self.contact, payload):
            self.message.success(
                "The numbers in this picture match yours. A picture can come from anyone, "
                f"so the chat is not marked verified: scan {self._name}'s screen with the "
                "camera, or compare the digits in person."
            )
        else:
            self.message.error(
                f"This code does not match. It may belong to another chat, or {self._name}'s "
                "key may have changed."
            )

    async def verify_payload(self, payload: bytes) -> bool:
        """Check a scanned payload (what scanning does); True if it verified."""
        return await self._verify(payload)

    async def _verify(self, payload: bytes) -> bool:
        self.message.clear_message()
        self._busy(True, "Checking…")
        try:
            ok = await self.bridge.verify_with_qr(self.contact, payload)
        finally:
            self._busy(False)
        if ok:
            self.verified = True
            self._show_state()
            self.message.success(
                f"The codes match. Your chat with {self._name} is verified and secure."
            )
        else:
            self.message.error(
                f"This code does not match. It may belong to another chat, or {self._name}'s "
                "key may have changed. Compare the numbers in person before you trust "
                "this chat."
            )
        return ok

    def _unexpected(self, exc: BaseException) -> None:
        self._busy(False)
        self.message.error(f"Something went wrong: {exc}")

    def _busy(self, busy: bool, text: str = "") -> None:
        self.verify_button.setEnabled(not busy)
        self.scan_button.setEnabled(not busy)
        if busy:
            self.busy.start(text)
        else:
            self.busy.stop()

    def done(self, result: int) -> None:
        self.scan.close_panel()
        self.tasks.cancel()
        try:
            self.bridge.contactChanged.disconnect(self._on_contact_changed)
        except (RuntimeError, TypeError):
            pass
        super().done(result)

"""The banner over a conversation whose safety number changed (a new identity under the
name of a contact we already have): what happened, and the user's two answers, Verify
(compare the new safety number) and Accept. The composer stays disabled until then."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QFrame, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from ui.views.dialog_parts import primary_button, secondary_button


class KeyChangedBanner(QFrame):
    verifyRequested = Signal()
    acceptRequested = Signal(bool)  # send the messages waiting for the earlier contact too

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Banner")
        self.setAccessibleName("Safety number changed")
        self.text = QLabel(self)
        self.text.setWordWrap(True)
        self.send_queued = QCheckBox(self)
        self.send_queued.hide()
        self.waiting = 0
        self.verify_button = secondary_button("Verify", "shield")
        self.accept_button = primary_button("Accept", default=False)
        self.verify_button.setAccessibleName("Verify the new safety number")
        self.accept_button.setAccessibleName("Accept the new safety number")
        self.verify_button.clicked.connect(self.verifyRequested)
        self.accept_button.clicked.connect(
            lambda: self.acceptRequested.emit(
                self.send_queued.isVisible() and self.send_queued.isChecked()
            )
        )
        buttons = QHBoxLayout()
        buttons.setSpacing(8)
        buttons.addWidget(self.send_queued, 1)
        buttons.addWidget(self.verify_button)
        buttons.addWidget(self.accept_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 10, 16, 10)
        layout.setSpacing(8)
        layout.addWidget(self.text)
        layout.addLayout(buttons)
        self.hide()

    def show_for(self, name: str, waiting: int, *, keep_choice: bool = False) -> None:
        """Show for contact `name`; `waiting` of our messages wait for the earlier one.
        `keep_choice`: the same contact again (renamed, seen): keep the box as ticked."""
        self.waiting = waiting
        self.text.setText(
            f"<b>{_escape(name)}'s safety number has changed.</b> This is a new identity "
            f"using the name of a contact you already have: {_escape(name)} may have "
            "re-created their profile, or someone else is using the name. Safety numbers "
            "do not change in normal use. Nothing is sent until you verify the new safety "
            f"number with {_escape(name)}, or accept it."
        )
        self.send_queued.setText(
            f"Then also send the {waiting} message{'s' if waiting != 1 else ''} waiting "
            f"for the earlier {name}"
        )
        if not keep_choice:
            self.send_queued.setChecked(False)  # never sent to the new identity unless chosen
        self.send_queued.setVisible(waiting > 0)
        self.show()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


__all__ = ["KeyChangedBanner"]

"""First run (choose a name and how the profile is protected) and the unlock screen."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDialog,
    QHBoxLayout,
    QLineEdit,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

import messenger
from messenger import (
    DatabaseDamaged,
    ProfileError,
    ProfileLocked,
    ServiceError,
    WrongPassphrase,
)
from ui.views.dialog_parts import (
    BusyRow,
    DialogTasks,
    InlineMessage,
    hint_label,
    primary_button,
    secondary_button,
    section_label,
    style_dialog,
    title_label,
)
from ui.views.tor_status import TOR_EXPLAINED, TOR_ONLY_SETTING, TOR_SETTING

if TYPE_CHECKING:
    from messenger import PeerService, ServiceConfig

MAX_NAME_CHARS: Final = 64
SHORT_PASSPHRASE: Final = 8

KEYRING_TRADE_OFF: Final = (
    "Chinwag will open without asking. The key that encrypts your messages is kept in "
    "your system's keyring (or in a file only your account can read, if there is no "
    "keyring), so anyone who can use your computer account can read your messages. "
    "You can add a passphrase later in Settings."
)
REMEMBER_IT: Final = (
    "You type it each time you open Chinwag. Nobody can recover it for you, "
    "so keep it somewhere safe."
)


def _password_field(placeholder: str, accessible: str) -> QLineEdit:
    field = QLineEdit()
    field.setEchoMode(QLineEdit.EchoMode.Password)
    field.setPlaceholderText(placeholder)
    field.setAccessibleName(accessible)
    field.setClearButtonEnabled(False)
    return field


class PassphraseChooser(QWidget):
    """ "Use a passphrase" (new + confirm) or "No passphrase" with the keyring trade-off.

    Shared by onboarding and the settings dialog. ``changed`` fires on every edit.
    """

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        with_label: str = "Use a passphrase (recommended)",
        without_label: str = "No passphrase",
    ) -> None:
        super().__init__(parent)
        self.use_passphrase = QRadioButton(with_label)
        self.no_passphrase = QRadioButton(without_label)
        self.use_passphrase.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.use_passphrase)
        group.addButton(self.no_passphrase)
        self.passphrase = _password_field("Passphrase", "New passphrase")
        self.confirm = _password_field("Type it again", "Confirm passphrase")
        self.show_text = QCheckBox("Show passphrase")
        self.passphrase_hint = hint_label(REMEMBER_IT)
        self.no_passphrase_hint = hint_label(KEYRING_TRADE_OFF)
        self.message = InlineMessage()

        fields = QVBoxLayout()
        fields.setContentsMargins(26, 2, 0, 4)
        fields.setSpacing(8)
        fields.addWidget(self.passphrase)
        fields.addWidget(self.confirm)
        fields.addWidget(self.show_text)
        fields.addWidget(self.message)
        fields.addWidget(self.passphrase_hint)
        no_hint = QVBoxLayout()
        no_hint.setContentsMargins(26, 0, 0, 0)
        no_hint.addWidget(self.no_passphrase_hint)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(self.use_passphrase)
        layout.addLayout(fields)
        layout.addWidget(self.no_passphrase)
        layout.addLayout(no_hint)

        self.use_passphrase.toggled.connect(self._refresh)
        self.passphrase.textChanged.connect(self._refresh)
        self.confirm.textChanged.connect(self._refresh)
        self.show_text.toggled.connect(self._show_text)
        self._listeners: list[Any] = []
        self._refresh()

    def on_change(self, callback: Any) -> None:
        self._listeners.append(callback)

    def _show_text(self, shown: bool) -> None:
        mode = QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password
        self.passphrase.setEchoMode(mode)
        self.confirm.setEchoMode(mode)

    def _refresh(self) -> None:
        wanted = self.use_passphrase.isChecked()
        for widget in (self.passphrase, self.confirm, self.show_text, self.passphrase_hint):
            widget.setVisible(wanted)
        self.no_passphrase_hint.setVisible(not wanted)
        first, second = self.passphrase.text(), self.confirm.text()
        if not wanted:
            self.message.clear_message()
        elif second and first != second and not first.startswith(second):
            self.message.error("The passphrases don't match.")
        elif second and first != second:
            self.message.clear_message()  # still typing the confirmation
        elif first and len(first) < SHORT_PASSPHRASE:
            self.message.info("Short passphrases are easy to guess; a few words are better.")
        else:
            self.message.clear_message()
        for callback in self._listeners:
            callback()

    def is_valid(self) -> bool:
        if self.no_passphrase.isChecked():
            return True
        first = self.passphrase.text()
        return bool(first) and first == self.confirm.text()

    def result(self) -> str | None:
        if self.no_passphrase.isChecked():
            return None
        return self.passphrase.text()

    def reset(self) -> None:
        self.passphrase.clear()
        self.confirm.clear()


class OnboardingDialog(QDialog):
    """First run: a display name, and a passphrase or the "no passphrase" choice.

    The dialog only collects; the caller creates the profile with
    ``PeerService.create_profile(path, dialog.result_name(), dialog.result_passphrase())``.
    """

    def __init__(
        self, parent: QWidget | None = None, *, tor_unavailable: str | None = None
    ) -> None:
        """`tor_unavailable`: why Tor cannot run here (default: asks messenger)."""
        super().__init__(parent)
        self.setWindowTitle("Welcome to Chinwag")
        self.setModal(True)
        self.setFixedWidth(500)

        self.name = QLineEdit()
        self.name.setPlaceholderText("Your name, as contacts will see it")
        self.name.setAccessibleName("Display name")
        self.name.setMaxLength(MAX_NAME_CHARS)
        self.protection = PassphraseChooser(self)
        # First run: what Tor means, on by default when it can run here.
        self.tor_unavailable = (
            tor_unavailable if tor_unavailable is not None else messenger.tor_missing()
        )
        self.tor_box = QCheckBox(TOR_SETTING)
        self.tor_box.setAccessibleName(TOR_SETTING)
        self.tor_box.setChecked(self.tor_unavailable is None)
        self.tor_box.setEnabled(self.tor_unavailable is None)
        tor_text = (
            f"{TOR_EXPLAINED} Your contacts also learn your IP addresses, so nearby ones "
            f"connect directly; “{TOR_ONLY_SETTING}” in Settings → Network hides them."
        )
        if self.tor_unavailable is not None:
            tor_text = (
                f"Not available on this computer: {self.tor_unavailable}. Install Tor, then "
                "turn this on in Settings → Network. Until then, Chinwag reaches contacts "
                "on your local network."
            )
        self.tor_hint = hint_label(tor_text)
        self.tor_hint.setContentsMargins(26, 0, 0, 0)
        self.create_button = primary_button("Create profile")
        self.cancel_button = secondary_button("Cancel")
        self.restore_button = secondary_button("Restore a backup…")
        self.restore_button.setToolTip("Bring back a profile from a Chinwag backup file")
        self.wants_restore = False

        layout = QVBoxLayout(self)
        layout.setContentsMargins(28, 24, 28, 22)
        layout.setSpacing(6)
        layout.addWidget(title_label("Welcome to Chinwag"))
        layout.addWidget(
            hint_label(
                "Private chat on your own network: no account, no phone number, no cloud. "
                "Your messages are stored encrypted on this computer only."
            )
        )
        layout.addSpacing(16)
        layout.addWidget(section_label("Your name"))
        layout.addWidget(self.name)
        layout.addWidget(hint_label("Shown to the people you add. You can change it later."))
        layout.addSpacing(16)
        layout.addWidget(section_label("Protect your messages"))
        layout.addWidget(self.protection)
        layout.addSpacing(16)
        layout.addWidget(section_label("Reach contacts anywhere"))
        layout.addWidget(self.tor_box)
        layout.addWidget(self.tor_hint)
        layout.addSpacing(18)
        layout.addStretch(1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.restore_button)
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.create_button)
        layout.addLayout(buttons)

        self.restore_button.clicked.connect(self._restore)
        self.name.textChanged.connect(self._refresh)
        self.protection.on_change(self._refresh)
        self.create_button.clicked.connect(self._create)
        self.cancel_button.clicked.connect(self.reject)
        self.name.returnPressed.connect(self.protection.passphrase.setFocus)
        self.protection.confirm.returnPressed.connect(self._create)
        style_dialog(self)
        self._refresh()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self._fit_height()
        self.name.setFocus()

    def _fit_height(self) -> None:
        """A top-level dialog ignores its wrapped labels' height for its width: without
        this the passphrase fields are squeezed to make room for the Tor explanation."""
        layout = self.layout()
        if layout is not None:
            self.setMinimumHeight(layout.totalHeightForWidth(self.width()))

    def _refresh(self) -> None:
        self.create_button.setEnabled(self._valid())

    def _valid(self) -> bool:
        return bool(self.result_name()) and self.protection.is_valid()

    def _create(self) -> None:
        if self._valid():
            self.accept()

    def _restore(self) -> None:
        """The caller shows the restore dialog instead (see ui.app._onboard)."""
        self.wants_restore = True
        self.reject()

    def result_name(self) -> str:
        return " ".join(self.name.text().split())

    def result_passphrase(self) -> str | None:
        return self.protection.result()

    def result_settings(self) -> dict[str, Any]:
        """Choices to store with the new profile (PeerService.create_profile(settings=))."""
        if self.tor_unavailable is not None:
            return {}  # not a choice: on by default once Tor is installed
        return {"tor": self.tor_box.isChecked()}


async def _service_opener() -> Any:
    """PeerService.open, its module imported on a thread (the dialog keeps painting)."""
    service_class = await asyncio.to_thread(getattr, messenger, "PeerService")
    return service_class.open


class UnlockDialog(QDialog):
    """Asks for the passphrase and opens the profile (Argon2id runs on a thread, so the
    window stays responsive). A wrong passphrase is said inline and can be retried.

    On success the dialog is accepted and ``service`` is the running PeerService, which
    the caller owns from then on.
    """

    def __init__(
        self,
        profile_path: Path | str,
        parent: QWidget | None = None,
        *,
        config: ServiceConfig | None = None,
        open_service: Any = None,
    ) -> None:
        super().__init__(parent)
        self.profile_path = Path(profile_path)
        self.config = config
        # injectable for tests: an async callable like PeerService.open (looked up when
        # used: the dialog shows before the service is imported, issue 15)
        self._open_service = open_service
        self.service: PeerService | None = None
        self.attempts = 0
        self.tasks = DialogTasks("unlock", on_error=self._unexpected)
        self.setWindowTitle("Unlock Chinwag")
        self.setModal(True)
        self.setMinimumWidth(420)

        self.passphrase = _password_field("Passphrase", "Passphrase")
        self.message = InlineMessage()
        self.busy = BusyRow()
        self.unlock_button = primary_button("Unlock")
        self.quit_button = secondary_button("Quit")
        location = hint_label(f"Profile: {self.profile_path}", small=True)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(28, 24, 28, 22)
        layout.setSpacing(8)
        layout.addWidget(title_label("Unlock Chinwag"))
        layout.addWidget(hint_label("Enter your passphrase to open your messages."))
        layout.addSpacing(10)
        layout.addWidget(self.passphrase)
        layout.addWidget(self.message)
        layout.addWidget(self.busy)
        layout.addSpacing(8)
        layout.addWidget(location)
        layout.addSpacing(12)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.quit_button)
        buttons.addWidget(self.unlock_button)
        layout.addLayout(buttons)

        self.passphrase.textChanged.connect(self._refresh)
        self.passphrase.returnPressed.connect(self.unlock)
        self.unlock_button.clicked.connect(self.unlock)
        self.quit_button.clicked.connect(self.reject)
        style_dialog(self)
        self._refresh()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.passphrase.setFocus()

    def _refresh(self) -> None:
        self.unlock_button.setEnabled(bool(self.passphrase.text()) and not self.tasks.pending)

    def unlock(self) -> asyncio.Task[Any] | None:
        """Try the typed passphrase; returns the task (tests await it)."""
        passphrase = self.passphrase.text()
        if not passphrase or self.tasks.pending:
            return None
        return self.tasks.spawn(self._unlock(passphrase))

    async def _unlock(self, passphrase: str) -> None:
        self.attempts += 1
        self._set_busy(True)
        try:
            open_service = self._open_service or await _service_opener()
            service = await open_service(self.profile_path, passphrase, config=self.config)
        except WrongPassphrase:
            self._set_busy(False)
            self.message.error("That passphrase is not right. Please try again.")
            self.passphrase.selectAll()
            self.passphrase.setFocus()
            return
        except ProfileLocked:
            self._set_busy(False)
            self.message.error(
                "Chinwag is already open with this profile, in another window or process. "
                "Close it first, then try again."
            )
            return
        except DatabaseDamaged as exc:  # the passphrase was right: retrying will not help
            self._set_busy(False)
            self.message.error(f"Your messages database is damaged. {exc}")
            return
        except (ProfileError, ServiceError, OSError) as exc:
            self._set_busy(False)
            self.message.error(f"Chinwag could not open your profile: {exc}")
            return
        self.service = service
        self._set_busy(False)
        self.accept()

    def _unexpected(self, exc: BaseException) -> None:
        self._set_busy(False)
        self.message.error(f"Chinwag could not open your profile: {exc}")

    def _set_busy(self, busy: bool) -> None:
        self.passphrase.setEnabled(not busy)
        self.quit_button.setEnabled(not busy)
        if busy:
            self.message.clear_message()
            self.busy.start("Unlocking…")
            self.unlock_button.setEnabled(False)
        else:
            self.busy.stop()
            self.unlock_button.setEnabled(bool(self.passphrase.text()))

    def reject(self) -> None:
        if self.tasks.pending:  # an open in flight finishes first (it holds the lock)
            return
        super().reject()

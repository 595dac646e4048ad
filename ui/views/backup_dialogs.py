"""Backing up a profile (a section of Settings) and restoring one (from the first-run
screen). Both run messenger.backup_profile / restore_backup on a thread: Argon2id and
the copy take seconds, and the window keeps painting meanwhile."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from messenger import (
    BackupError,
    ProfileError,
    WrongPassphrase,
    backup_profile,
    restore_backup,
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

BACKUP_SUFFIX = ".chinwag-backup"


def _password_field(placeholder: str) -> QLineEdit:
    field = QLineEdit()
    field.setEchoMode(QLineEdit.EchoMode.Password)
    field.setPlaceholderText(placeholder)
    field.setAccessibleName(placeholder)
    return field


class BackupSection(QWidget):
    """Settings → Privacy → Backup: one encrypted file of the whole profile.

    With a passphrase profile the backup is encrypted under that passphrase (typed again
    here: the window does not keep it); without one the user chooses a backup passphrase.
    """

    def __init__(self, profile_path: Path | None, has_passphrase: bool | None) -> None:
        super().__init__()
        self.profile_path = profile_path
        self.tasks = DialogTasks("backup", on_error=self._unexpected)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(section_label("Backup"))
        self.hint = hint_label()
        layout.addWidget(self.hint)
        self.passphrase = _password_field("Your passphrase")
        self.confirm = _password_field("Backup passphrase again")
        layout.addWidget(self.passphrase)
        layout.addWidget(self.confirm)
        self.busy = BusyRow()
        self.message = InlineMessage()
        self.button = secondary_button("Back up…")
        row = QHBoxLayout()
        row.addWidget(self.busy, 1)
        row.addWidget(self.button)
        layout.addWidget(self.message)
        layout.addLayout(row)
        self.passphrase.textChanged.connect(self._refresh)
        self.confirm.textChanged.connect(self._refresh)
        self.button.clicked.connect(self._choose_file)
        self.set_has_passphrase(bool(has_passphrase))

    def set_has_passphrase(self, has: bool) -> None:
        self.has_passphrase = has
        if has:
            text = (
                "One file with all your messages, contacts and files, encrypted under your "
                "passphrase. Restore it on this or another computer from the first-run screen "
                "(“Restore a backup”) or with `chinwag-cli restore FILE`."
            )
        else:
            text = (
                "One file with all your messages, contacts and files. You have no passphrase, "
                "so choose one for the backup: it is needed to restore it, and nobody can "
                "recover it for you."
            )
        self.hint.setText(text)
        self.passphrase.setPlaceholderText("Your passphrase" if has else "Backup passphrase")
        self.passphrase.setAccessibleName(self.passphrase.placeholderText())
        self.confirm.setVisible(not has)
        self._refresh()

    def _valid(self) -> bool:
        text = self.passphrase.text()
        if not text or self.profile_path is None:
            return False
        return self.has_passphrase or text == self.confirm.text()

    def _refresh(self) -> None:
        self.button.setEnabled(self._valid() and not self.busy.active)

    def _choose_file(self) -> None:
        name, _ = QFileDialog.getSaveFileName(
            self,
            "Save the backup",
            str(Path.home() / f"chinwag{BACKUP_SUFFIX}"),
            f"Chinwag backups (*{BACKUP_SUFFIX});;All files (*)",
        )
        if name:
            self.backup_to(Path(name))

    def backup_to(self, path: Path) -> asyncio.Task[Any] | None:
        """Write the backup to `path` (the file dialog's choice; tests call it directly)."""
        if not self._valid() or self.busy.active or self.profile_path is None:
            return None
        return self.tasks.spawn(self._backup(self.profile_path, path, self.passphrase.text()))

    async def _backup(self, profile_path: Path, path: Path, passphrase: str) -> None:
        self.message.clear_message()
        self.busy.start("Writing the backup…")
        self.button.setEnabled(False)
        try:
            info = await asyncio.to_thread(backup_profile, profile_path, path, passphrase)
        except WrongPassphrase:
            self.message.error("That is not your passphrase; no backup was written.")
            return
        except (ProfileError, OSError) as exc:
            self.message.error(f"No backup was written: {exc}")
            return
        finally:
            self.busy.stop()
            self._refresh()
        self.passphrase.clear()
        self.confirm.clear()
        size = info.size / 1048576
        self.message.success(f"Backup written to {info.path} ({size:.1f} MiB).")

    def _unexpected(self, exc: BaseException) -> None:
        self.busy.stop()
        self.message.error(f"No backup was written: {exc}")
        self._refresh()


class RestoreDialog(QDialog):
    """Restore a backup file into the profile folder Chinwag was started with (which holds
    no profile yet). On success the dialog is accepted; the caller opens the profile, with
    ``passphrase`` when ``needs_passphrase``."""

    def __init__(self, profile_path: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.profile_path = Path(profile_path)
        self.needs_passphrase = False
        self.passphrase_used = ""
        self.tasks = DialogTasks("restore", on_error=self._unexpected)
        self.setWindowTitle("Restore a backup")
        self.setModal(True)
        self.setMinimumWidth(460)

        self.file = QLineEdit()
        self.file.setPlaceholderText("The backup file")
        self.file.setAccessibleName("Backup file")
        self.browse = secondary_button("Choose…")
        self.passphrase = _password_field("Backup passphrase")
        self.message = InlineMessage()
        self.busy = BusyRow()
        self.restore_button = primary_button("Restore")
        self.cancel_button = secondary_button("Cancel")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(28, 24, 28, 22)
        layout.setSpacing(8)
        layout.addWidget(title_label("Restore a backup"))
        layout.addWidget(
            hint_label(
                "Your messages, contacts and files come back as they were when the backup "
                "was made. Type the passphrase the backup was made with."
            )
        )
        row = QHBoxLayout()
        row.addWidget(self.file, 1)
        row.addWidget(self.browse)
        layout.addLayout(row)
        layout.addWidget(self.passphrase)
        layout.addWidget(self.message)
        layout.addWidget(self.busy)
        layout.addWidget(hint_label(f"Into: {self.profile_path}", small=True))
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.restore_button)
        layout.addLayout(buttons)

        self.file.textChanged.connect(self._refresh)
        self.passphrase.textChanged.connect(self._refresh)
        self.passphrase.returnPressed.connect(self.restore)
        self.browse.clicked.connect(self._choose_file)
        self.restore_button.clicked.connect(self.restore)
        self.cancel_button.clicked.connect(self.reject)
        style_dialog(self)
        self._refresh()

    def _refresh(self) -> None:
        ready = bool(self.file.text().strip() and self.passphrase.text())
        self.restore_button.setEnabled(ready and not self.tasks.pending)

    def _choose_file(self) -> None:
        name, _ = QFileDialog.getOpenFileName(
            self, "Choose the backup", str(Path.home()), f"Chinwag backups (*{BACKUP_SUFFIX})"
        )
        if name:
            self.file.setText(name)

    def restore(self) -> asyncio.Task[Any] | None:
        source, passphrase = self.file.text().strip(), self.passphrase.text()
        if not source or not passphrase or self.tasks.pending:
            return None
        return self.tasks.spawn(self._restore(Path(source).expanduser(), passphrase))

    async def _restore(self, source: Path, passphrase: str) -> None:
        self.message.clear_message()
        self.busy.start("Restoring…")
        self._set_enabled(False)
        try:
            info, _ = await asyncio.to_thread(restore_backup, source, self.profile_path, passphrase)
        except WrongPassphrase:
            self.message.error("That passphrase does not open this backup. Please try again.")
            return
        except (BackupError, ProfileError, OSError) as exc:
            self.message.error(f"Nothing was restored: {exc}")
            return
        finally:
            self.busy.stop()
            self._set_enabled(True)
        self.needs_passphrase = info.key_source == "passphrase"
        self.passphrase_used = passphrase
        self.accept()

    def _set_enabled(self, enabled: bool) -> None:
        for widget in (self.file, self.browse, self.passphrase, self.cancel_button):
            widget.setEnabled(enabled)
        self._refresh()

    def _unexpected(self, exc: BaseException) -> None:
        self.busy.stop()
        self._set_enabled(True)
        self.message.error(f"Nothing was restored: {exc}")

    def reject(self) -> None:
        if self.tasks.pending:  # a restore in flight finishes first
            return
        super().reject()

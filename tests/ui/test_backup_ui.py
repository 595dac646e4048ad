"""The window's side of issue 14 item 5: a damaged database is said plainly at start (with
what to do), Settings writes a backup, and the first-run screen restores one."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QApplication, QMessageBox

from messenger import KdfParams, PeerService, ProfileDir
from tests.ui.conftest import QLoop, peer_config
from ui import app as ui_app
from ui.bridge import Bridge
from ui.views.backup_dialogs import RestoreDialog
from ui.views.onboarding import OnboardingDialog, UnlockDialog
from ui.views.settings_dialog import SettingsDialog

FAST_KDF = KdfParams(1, 8 * 1024 * 1024)


def _top_level(kind: type) -> Any:
    for widget in QApplication.topLevelWidgets():
        if isinstance(widget, kind) and widget.isVisible():
            return widget
    return None


def _start(qloop: QLoop, coro: Any) -> asyncio.Task[Any]:
    async def start() -> asyncio.Task[Any]:
        return asyncio.ensure_future(coro)

    return qloop.run(start())


def _cut_short(qloop: QLoop, path: Path, passphrase: str | None = None) -> str:
    service, _ = qloop.run(
        PeerService.create_profile(
            path, "Tester", passphrase, kdf=FAST_KDF, config=peer_config(network=False)
        )
    )
    qloop.run(service.aclose())
    db = path / "chinwag.db"
    os.truncate(db, db.stat().st_size // 4096 // 2 * 4096)
    return hashlib.sha256(db.read_bytes()).hexdigest()


def test_a_damaged_database_at_start_is_said_with_what_to_do(qloop: QLoop, tmp_path: Path) -> None:
    path = tmp_path / "p"
    before = _cut_short(qloop, path)
    task = _start(qloop, ui_app.obtain_service(ProfileDir(path), peer_config()))
    qloop.until(lambda: _top_level(QMessageBox) is not None, what="the damage message")
    box = _top_level(QMessageBox)
    assert box.windowTitle() == "Your messages database is damaged"
    assert "cut short" in box.text() and "Restore a backup" in box.text()
    assert "passphrase" not in box.text().lower()
    box.accept()
    assert qloop.run(task) is None
    assert hashlib.sha256((path / "chinwag.db").read_bytes()).hexdigest() == before


def test_unlock_dialog_says_damaged_not_wrong_passphrase(
    qloop: QLoop, qtbot: Any, tmp_path: Path
) -> None:
    path = tmp_path / "p"
    _cut_short(qloop, path, "open sesame")
    dialog = UnlockDialog(path, config=peer_config(network=False))
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.passphrase.setText("open sesame")
    task = dialog.unlock()
    assert task is not None
    qloop.run(task)
    assert dialog.service is None and dialog.message.kind == "error"
    assert "damaged" in dialog.message.text() and "cut short" in dialog.message.text()
    assert "not right" not in dialog.message.text()


def test_settings_backup_then_restore_from_the_first_run_screen(
    qloop: QLoop, qtbot: Any, make_peer: Any, tmp_path: Path
) -> None:
    alice = make_peer("alice", network=False)
    bridge = Bridge(alice)
    try:
        settings = SettingsDialog(bridge)
        qtbot.addWidget(settings)
        settings.show()
        settings.show_page("Privacy")
        section = settings.backup
        assert section.confirm.isVisibleTo(settings)  # no passphrase: choose one
        section.passphrase.setText("backup words")
        section.confirm.setText("backup wordz")
        assert section.backup_to(tmp_path / "x") is None  # they differ
        section.confirm.setText("backup words")
        out = tmp_path / "alice.chinwag-backup"
        task = section.backup_to(out)
        assert task is not None
        qloop.run(task, timeout=60)
        assert section.message.kind == "success", section.message.text()
        assert out.exists() and section.passphrase.text() == ""
    finally:
        bridge.detach()
    fingerprint = alice.fingerprint

    profile = ProfileDir(tmp_path / "restored")
    task = _start(qloop, ui_app.obtain_service(profile, peer_config(network=False)))
    qloop.until(lambda: _top_level(OnboardingDialog) is not None, what="onboarding")
    _top_level(OnboardingDialog).restore_button.click()
    qloop.until(lambda: _top_level(RestoreDialog) is not None, what="the restore dialog")
    restore = _top_level(RestoreDialog)
    restore.file.setText(str(out))
    restore.passphrase.setText("wrong words")
    qloop.run(restore.restore(), timeout=60)
    assert "does not open this backup" in restore.message.text()
    assert not profile.exists()
    restore.passphrase.setText("backup words")
    qloop.run(restore.restore(), timeout=60)  # accepted: the app opens the profile
    service = qloop.run(task, timeout=60)
    assert service is not None
    try:
        assert service.fingerprint == fingerprint and service.display_name == "Alice"
    finally:
        qloop.run(service.aclose())

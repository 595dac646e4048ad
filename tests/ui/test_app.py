"""ui.app: opening the profile (onboarding, unlock, CHINWAG_PASSPHRASE, a locked profile)
and running the window until the user quits, with the service closed cleanly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from messenger import KdfParams, PeerService, ProfileDir
from tests.ui.conftest import peer_config, start_task, top_level
from ui import app as ui_app

FAST_KDF = KdfParams(1, 8 * 1024 * 1024)


def _make_profile(qloop, path: Path, passphrase: str | None = None) -> None:
    service, _ = qloop.run(
        PeerService.create_profile(
            path, "Tester", passphrase, kdf=FAST_KDF, config=peer_config(network=False)
        )
    )
    qloop.run(service.aclose())


def test_existing_profile_without_passphrase_opens_directly(qloop, tmp_path):
    _make_profile(qloop, tmp_path / "p")
    service = qloop.run(ui_app.obtain_service(ProfileDir(tmp_path / "p"), peer_config()))
    assert service is not None and service.display_name == "Tester"
    qloop.run(service.aclose())


def test_passphrase_from_environment(qloop, tmp_path, monkeypatch):
    _make_profile(qloop, tmp_path / "p", "correct horse")
    monkeypatch.setenv("CHINWAG_PASSPHRASE", "correct horse")
    service = qloop.run(ui_app.obtain_service(ProfileDir(tmp_path / "p"), peer_config()))
    assert service is not None
    qloop.run(service.aclose())

    monkeypatch.setenv("CHINWAG_PASSPHRASE", "wrong")
    task = start_task(qloop, ui_app.obtain_service(ProfileDir(tmp_path / "p"), peer_config()))
    qloop.until(lambda: top_level(QMessageBox) is not None, what="an error message")
    box = top_level(QMessageBox)
    assert "Wrong passphrase" in box.windowTitle()
    box.accept()
    assert qloop.run(task) is None


def test_unlock_dialog_when_the_profile_needs_a_passphrase(qloop, tmp_path, monkeypatch):
    from ui.views.onboarding import UnlockDialog

    monkeypatch.delenv("CHINWAG_PASSPHRASE", raising=False)
    _make_profile(qloop, tmp_path / "p", "correct horse")
    task = start_task(qloop, ui_app.obtain_service(ProfileDir(tmp_path / "p"), peer_config()))
    qloop.until(lambda: top_level(UnlockDialog) is not None, what="the unlock dialog")
    dialog = top_level(UnlockDialog)
    dialog.passphrase.setText("correct horse")
    qloop.run(dialog.unlock())
    service = qloop.run(task)
    assert service is not None and service.display_name == "Tester"
    qloop.run(service.aclose())


def test_locked_profile_names_the_holder(qloop, tmp_path):
    _make_profile(qloop, tmp_path / "p")
    holder = qloop.run(PeerService.open(tmp_path / "p", None, config=peer_config(), purpose="x"))
    try:
        task = start_task(qloop, ui_app.obtain_service(ProfileDir(tmp_path / "p"), peer_config()))
        qloop.until(lambda: top_level(QMessageBox) is not None, what="the locked message")
        box = top_level(QMessageBox)
        assert "already running" in box.windowTitle()
        assert "pid" in box.text()
        box.accept()
        assert qloop.run(task) is None
    finally:
        qloop.run(holder.aclose())


def test_first_run_onboarding_creates_the_profile(qloop, tmp_path):
    from ui.views.onboarding import OnboardingDialog

    profile = ProfileDir(tmp_path / "new")
    task = start_task(qloop, ui_app.obtain_service(profile, peer_config()))
    qloop.until(lambda: top_level(OnboardingDialog) is not None, what="onboarding")
    dialog = top_level(OnboardingDialog)
    dialog.name.setText("  Nova   Quinn ")
    dialog.protection.no_passphrase.setChecked(True)
    assert dialog.result_passphrase() is None
    dialog.accept()

    async def dismiss_notes() -> None:  # a no-keyring warning may follow
        while not task.done():
            box = top_level(QMessageBox)
            if box is not None:
                box.accept()
            await asyncio.sleep(0.02)

    qloop.run(dismiss_notes(), timeout=60)
    service = task.result()
    assert service is not None and service.display_name == "Nova Quinn"
    assert profile.exists() and not profile.needs_passphrase()
    qloop.run(service.aclose())


def test_onboarding_cancelled_creates_nothing(qloop, tmp_path):
    from ui.views.onboarding import OnboardingDialog

    profile = ProfileDir(tmp_path / "new")
    task = start_task(qloop, ui_app.obtain_service(profile, peer_config()))
    qloop.until(lambda: top_level(OnboardingDialog) is not None)
    top_level(OnboardingDialog).reject()
    assert qloop.run(task) is None
    assert not profile.exists()


def test_closing_the_window_shuts_the_service_down(qloop, tmp_path):
    from ui.views.main_window import MainWindow

    _make_profile(qloop, tmp_path / "p")
    service = qloop.run(PeerService.open(tmp_path / "p", None, config=peer_config()))
    task = start_task(qloop, ui_app.run_window(service))
    qloop.until(lambda: top_level(MainWindow) is not None, what="the main window")
    window = top_level(MainWindow)
    assert window.windowTitle() == "Chinwag"
    window.close()
    assert qloop.run(task) == 0
    # The service is closed and its lock released: the profile opens again at once.
    again = qloop.run(PeerService.open(tmp_path / "p", None, config=peer_config(network=False)))
    qloop.run(again.aclose())


def test_quit_action_shuts_down_too(qloop, tmp_path):
    from ui.views.main_window import MainWindow

    _make_profile(qloop, tmp_path / "p")
    service = qloop.run(PeerService.open(tmp_path / "p", None, config=peer_config()))
    task = start_task(qloop, ui_app.run_window(service))
    qloop.until(lambda: top_level(MainWindow) is not None)
    top_level(MainWindow).quit_action.trigger()
    assert qloop.run(task) == 0


@pytest.mark.parametrize("argv", [["--listen", "host:notaport"], ["--listen", "h:99999"]])
def test_bad_arguments(argv, capsys):
    assert ui_app.main(argv) == 2
    assert "chinwag:" in capsys.readouterr().err

"""Start-up (issue 15): the window is painted from a raw read before the service and its
heavy imports; the service opens behind it and the window then follows it live. The
unlock dialog, too, shows before the service is imported.

The import checks run the real app in a fresh interpreter (offscreen Qt) and look at
sys.modules at the moment of each first paint, so a module-level import of the service
anywhere on the window path makes them fail."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from messenger import KdfParams, PeerService, ProfileDir, read_startup
from tests.ui.conftest import befriend, peer_config, start_task, top_level
from ui import app as ui_app
from ui.models.conversations import ConversationListModel
from ui.models.groups import GroupListModel
from ui.views.chat.composer import STARTING_PLACEHOLDER

ROOT = Path(__file__).resolve().parents[2]
FAST_KDF = KdfParams(1, 8 * 1024 * 1024)
HEAVY = ("sqlalchemy", "alembic", "zeroconf", "stem", "messenger.service")

# Runs `chinwag` (ui.app.main) and prints, at each start-up marker, which of HEAVY are
# loaded; the unlock dialog is dismissed once painted (the app then ends with 1).
PROBE = f"""
import json, sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
import ui.app as app

said = app._say

def say(what):
    loaded = [m for m in {HEAVY!r} if m in sys.modules]
    print("PROBE", what, json.dumps(loaded, separators=(",", ":")), flush=True)
    said(what)
    if what == "unlock dialog shown":
        for widget in QApplication.topLevelWidgets():
            if type(widget).__name__ == "UnlockDialog" and widget.isVisible():
                QTimer.singleShot(0, widget.reject)

app._say = say
sys.exit(app.main(["--listen", "127.0.0.1:0"]))
"""


def _make_profile(qloop, path: Path, passphrase: str | None = None) -> None:
    service, _ = qloop.run(
        PeerService.create_profile(
            path, "Tester", passphrase, kdf=FAST_KDF, config=peer_config(network=False)
        )
    )
    qloop.run(service.aclose())


def _probe(profile: Path) -> tuple[int, dict[str, list[str]]]:
    env = {
        **os.environ,
        "CHINWAG_PROFILE": str(profile),
        "CHINWAG_EXIT_AFTER_SHOWN": "1",
        "CHINWAG_NO_TOR": "1",
        "QT_QPA_PLATFORM": "offscreen",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    env.pop("CHINWAG_PASSPHRASE", None)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    seen = {}
    for line in proc.stdout.splitlines():
        if line.startswith("PROBE "):
            what, _, loaded = line.removeprefix("PROBE ").rpartition(" ")
            seen[what] = json.loads(loaded)
    assert seen, f"no start-up marker (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return proc.returncode, seen


def test_the_window_is_painted_before_the_service_is_imported(qloop, tmp_path):
    _make_profile(qloop, tmp_path / "p")
    code, seen = _probe(tmp_path / "p")
    assert code == 0
    assert seen["window shown"] == []
    assert seen["conversations listed"] == []
    # Then the service came up behind the window: the check does see these modules.
    assert set(seen["service up"]) >= {"sqlalchemy", "messenger.service"}


def test_the_unlock_dialog_is_painted_before_the_service_is_imported(qloop, tmp_path):
    _make_profile(qloop, tmp_path / "p", "correct horse")
    code, seen = _probe(tmp_path / "p")
    assert seen["unlock dialog shown"] == []
    assert code == 1  # the dialog was dismissed: the app ends without opening the profile


def _early_window(qloop, profile: ProfileDir):
    """The app's window painted from read_startup, the service held back until `gate` is
    set: (the window, run_window's task, the gate)."""
    from ui.views.main_window import MainWindow

    early = read_startup(profile, None)
    assert early is not None
    gate = asyncio.Event()

    async def opening() -> PeerService:
        await gate.wait()
        return await PeerService.open(profile.path, None, config=peer_config())

    task = start_task(qloop, ui_app.run_window(None, early=early, opening=opening, profile=profile))
    qloop.until(lambda: top_level(MainWindow) is not None, what="the main window")
    return top_level(MainWindow), task, gate


def test_the_early_window_follows_the_service_once_it_is_up(qloop, qtbot, make_peer, tmp_path):
    """Painted from read_startup: the list as stored, the composer and the dialogs that
    need the service off with a visible "starting" state. Then the service opens: a
    message sent while it was starting arrives live, the contact shows online, and the
    composer sends."""
    alice, bob = make_peer("alice"), make_peer("bob")
    bob_at_alice, alice_at_bob = befriend(qloop, alice, bob)
    qloop.run(bob.chat.send_text(alice_at_bob, "before the window"))

    async def stored_at_alice() -> bool:
        return any(m.body == "before the window" for m in await alice.chat.history(bob_at_alice))

    qloop.until(stored_at_alice, what="the first message at Alice")
    qloop.run(alice.aclose())
    profile = ProfileDir(tmp_path / "alice")
    window, task, gate = _early_window(qloop, profile)
    bridge, chat = window.bridge, window.chat
    qloop.until(lambda: window.conversations.rowCount() == 1, what="the list from the raw read")
    assert not bridge.ready
    item = window.conversations.item(bob_at_alice)
    assert item is not None and item.name == "Bob" and not item.online
    assert item.last is not None and item.last.body == "before the window"
    window.open_conversation(bob_at_alice)
    assert not chat.composer.edit.isEnabled()
    assert chat.composer.edit.placeholderText() == STARTING_PLACEHOLDER
    assert not window.add_action.isEnabled() and not window.settings_action.isEnabled()
    assert window.tor_status.label.text() == "Starting…"

    qloop.run(bob.chat.send_text(alice_at_bob, "while Alice starts"))  # queued: Alice is away
    gate.set()
    qloop.until(lambda: bridge.ready, what="the service behind the window")

    def latest() -> str:
        row = window.conversations.item(bob_at_alice)
        return row.last.body if row is not None and row.last is not None else ""

    qloop.until(lambda: latest() == "while Alice starts", what="the message sent meanwhile")
    qloop.until(lambda: window.conversations.item(bob_at_alice).online, what="Bob online")
    # Updated in place: the open conversation is still the selected row.
    assert window.list.currentIndex().data(ConversationListModel.ContactIdRole) == bob_at_alice
    assert window.add_action.isEnabled() and window.settings_action.isEnabled()
    assert window.tor_status.label.text() != "Starting…"
    qloop.until(chat.composer.edit.isEnabled, what="the composer")
    assert "Bob" in chat.composer.edit.placeholderText()
    assert chat.history is not None
    qloop.until(lambda: chat.history.rowCount() >= 2, what="the history once the service is up")

    qtbot.keyClicks(chat.composer.edit, "hello from the early window")
    qtbot.keyClick(chat.composer.edit, Qt.Key.Key_Return)

    async def at_bob() -> bool:
        return any(
            m.body == "hello from the early window" for m in await bob.chat.history(alice_at_bob)
        )

    qloop.until(at_bob, what="the message at Bob")
    window.close()
    assert qloop.run(task) == 0
    # The service was closed and its lock released: the profile opens again at once.
    again = qloop.run(PeerService.open(profile.path, None, config=peer_config(network=False)))
    qloop.run(again.aclose())


def test_groups_are_painted_first_and_the_service_catches_up(qloop, make_peer, tmp_path):
    """The group list is in the first paint too (read raw with the conversations): a
    group opened while starting shows "starting" in its composer, the safety number asked
    for meanwhile opens once the service is up, and then the same group row stays
    selected while what arrived meanwhile comes in."""
    from ui.views.safety_number_dialog import SafetyNumberDialog

    alice, bob = make_peer("alice"), make_peer("bob")
    bob_at_alice, _ = befriend(qloop, alice, bob)
    group_id = qloop.run(alice.groups.create_group("Lab", [bob.contact_id])).id
    qloop.until(lambda: bob.groups.get(group_id) is not None, what="Bob has the group")
    qloop.run(bob.groups.send_text(group_id, "for the lab"))

    async def stored_at_alice() -> bool:
        return any(m.body == "for the lab" for m in await alice.groups.history(group_id))

    qloop.until(stored_at_alice, what="Bob's group message at Alice")
    qloop.run(alice.aclose())
    window, task, gate = _early_window(qloop, ProfileDir(tmp_path / "alice"))
    qloop.until(lambda: window.groups.rowCount() == 1, what="the group from the raw read")
    assert not window.bridge.ready
    item = window.groups.item(group_id)
    assert item is not None and item.unread == 1 and item.preview() == "Bob: for the lab"
    assert window.windowTitle() == "Chinwag (1)"  # group unread counts from the first paint
    window.open_group(group_id)
    view = window.group_view
    qloop.until(lambda: view.title.text() == "Lab", what="the group's pane")
    assert not view.composer.isEnabled()
    assert view.composer.placeholderText() == STARTING_PLACEHOLDER
    window.show_safety_number(bob_at_alice)  # needs the service: opens once it is up
    assert _dialog_of(window, SafetyNumberDialog) is None

    qloop.run(bob.groups.send_text(group_id, "while Alice starts"))
    gate.set()
    qloop.until(lambda: window.bridge.ready, what="the service behind the window")
    qloop.until(lambda: _dialog_of(window, SafetyNumberDialog) is not None, what="the dialog")
    qloop.until(view.composer.isEnabled, what="the group's composer")
    assert view.composer.placeholderText() == "Write to the group"
    assert window.current_group() == group_id
    selected = window.group_list.currentIndex()
    assert selected.data(GroupListModel.GroupIdRole) == group_id  # updated in place

    async def caught_up() -> bool:
        return view.model.rowCount() == 2

    qloop.until(caught_up, what="the message sent while Alice started, in the open group")
    window.close()
    assert qloop.run(task) == 0


def _dialog_of(window, kind):
    return next((d for d in window.findChildren(kind) if d.isVisible()), None)


def test_quitting_while_the_service_starts_closes_it_cleanly(qloop, tmp_path):
    from ui.views.main_window import MainWindow

    _make_profile(qloop, tmp_path / "p")
    profile = ProfileDir(tmp_path / "p")
    early = read_startup(profile, None)
    started = asyncio.Event()

    async def opening() -> PeerService:
        started.set()
        await asyncio.Event().wait()  # never opens: the user quits first
        raise AssertionError("unreachable")

    task = start_task(qloop, ui_app.run_window(None, early=early, opening=opening, profile=profile))
    qloop.until(lambda: top_level(MainWindow) is not None and started.is_set())
    top_level(MainWindow).quit_action.trigger()
    assert qloop.run(task) == 0
    again = qloop.run(PeerService.open(profile.path, None, config=peer_config(network=False)))
    qloop.run(again.aclose())


def test_a_service_that_cannot_open_behind_the_window_is_reported(qloop, tmp_path):
    """Another Chinwag takes the profile between the raw read and the open: the user is
    told who holds it, and the app ends."""
    from ui.views.main_window import MainWindow

    _make_profile(qloop, tmp_path / "p")
    profile = ProfileDir(tmp_path / "p")
    early = read_startup(profile, None)
    holder = qloop.run(PeerService.open(profile.path, None, config=peer_config(), purpose="x"))
    try:
        task = start_task(
            qloop,
            ui_app.run_window(
                None,
                early=early,
                opening=lambda: ui_app.open_behind(profile, lambda: peer_config()),
                profile=profile,
            ),
        )
        qloop.until(lambda: top_level(QMessageBox) is not None, what="the locked message")
        assert top_level(MainWindow) is not None  # the window was shown first
        box = top_level(QMessageBox)
        assert "already running" in box.windowTitle() and "pid" in box.text()
        box.accept()
        assert qloop.run(task) == 1
    finally:
        qloop.run(holder.aclose())

"""The window over a contact whose safety number changed: a banner with Verify and Accept,
the composer disabled until then; the safety-number dialog says numbers do not change.

Real peers on 127.0.0.1; Bob's profile is deleted and made again under the same name."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt

from messenger import PeerService
from tests.ui.conftest import QLoop, befriend
from ui.views.conversation_list import preview_text
from ui.views.safety_number_dialog import SafetyNumberDialog


def _recreate_bob(
    qloop: QLoop, make_peer: Any, tmp_path: Path, alice: PeerService, bob: PeerService
) -> tuple[PeerService, str]:
    qloop.run(bob.aclose())
    shutil.rmtree(tmp_path / "bob")
    new_bob = make_peer("bob")
    _, new_id = befriend(qloop, new_bob, alice)  # the new Bob invites Alice
    return new_bob, new_id


def _bodies_end_with(service: PeerService, contact_id: str, expected: list[str]) -> Any:
    async def check() -> bool:
        bodies = [m.body for m in await service.chat.history(contact_id, limit=50)]
        return bodies[-len(expected) :] == expected

    return check


def test_banner_holds_the_conversation_until_accepted(
    qloop: QLoop, qtbot: Any, make_peer: Any, open_window: Any, tmp_path: Path
) -> None:
    alice, bob = make_peer("alice"), make_peer("bob")
    old_id, _ = befriend(qloop, alice, bob)
    window = open_window(alice)
    new_bob, new_id = _recreate_bob(qloop, make_peer, tmp_path, alice, bob)
    qloop.run(alice.chat.send_text(old_id, "waiting for the Bob I knew"))
    qloop.until(lambda: window.conversations.item(new_id) is not None, what="the new Bob listed")

    held = window.conversations.item(new_id)
    assert preview_text(held) == "⚠ Safety number changed"
    assert "safety number changed" in held.accessible_text()
    window.open_conversation(new_id)
    chat = window.chat
    banner = chat.key_banner
    assert banner.isVisible()
    assert "Bob's safety number has changed" in banner.text.text()
    assert "do not change in normal use" in banner.text.text()
    assert not chat.composer.edit.isEnabled()
    assert not chat.composer.attach_button.isEnabled()
    assert "Verify or accept Bob's new safety number" in chat.composer.edit.placeholderText()
    # The message waiting for the earlier Bob is offered, never ticked by default.
    qloop.until(banner.send_queued.isVisible, what="the offer to send the waiting message")
    assert "1 message waiting for the earlier Bob" in banner.send_queued.text()
    assert not banner.send_queued.isChecked()

    # Another conversation has no banner; coming back shows it again.
    window.open_conversation(old_id)
    assert not banner.isVisible() and chat.composer.edit.isEnabled()
    window.open_conversation(new_id)
    assert banner.isVisible() and not chat.composer.edit.isEnabled()
    qloop.until(banner.send_queued.isVisible, what="the offer, counted again")
    assert not banner.send_queued.isChecked()

    banner.send_queued.setChecked(True)
    qtbot.mouseClick(banner.accept_button, Qt.MouseButton.LeftButton)
    qloop.until(lambda: not banner.isVisible(), what="the banner to go")
    assert chat.composer.edit.isEnabled() and chat.composer.attach_button.isEnabled()
    # The window shows the moved message in this conversation, no longer in the earlier one.
    history = chat.history
    assert history is not None

    def moved_here() -> bool:
        return [history.record(r).body for r in range(history.rowCount())] == [
            "waiting for the Bob I knew"
        ]

    qloop.until(moved_here, what="the moved message in the new Bob's conversation")
    assert window.conversations.item(old_id).last is None
    assert preview_text(window.conversations.item(new_id)) == "waiting for the Bob I knew"
    qloop.until(
        _bodies_end_with(new_bob, alice.contact_id, ["waiting for the Bob I knew"]),
        what="the waiting message at the new Bob, once Alice chose to send it",
    )
    qtbot.keyClicks(chat.composer.edit, "welcome back")
    qtbot.keyClick(chat.composer.edit, Qt.Key.Key_Return)
    qloop.until(
        _bodies_end_with(new_bob, alice.contact_id, ["welcome back"]),
        what="a message from the composer",
    )


def test_verify_from_the_banner_lifts_the_hold(
    qloop: QLoop, qtbot: Any, make_peer: Any, open_window: Any, tmp_path: Path
) -> None:
    alice, bob = make_peer("alice"), make_peer("bob")
    old_id, _ = befriend(qloop, alice, bob)
    window = open_window(alice)
    _new_bob, new_id = _recreate_bob(qloop, make_peer, tmp_path, alice, bob)
    qloop.until(lambda: window.conversations.item(new_id) is not None, what="the new Bob listed")
    window.open_conversation(new_id)
    chat = window.chat
    assert chat.key_banner.isVisible()

    qtbot.mouseClick(chat.key_banner.verify_button, Qt.MouseButton.LeftButton)
    dialogs = window.findChildren(SafetyNumberDialog)
    assert len(dialogs) == 1
    dialog = dialogs[0]
    assert "do not change in normal use" in dialog.stability_label.text()
    assert dialog.status_label.text().startswith("Changed: a new identity")
    qtbot.mouseClick(dialog.verify_button, Qt.MouseButton.LeftButton)
    qloop.until(lambda: not chat.key_banner.isVisible(), what="the banner to go")
    qloop.run(dialog.tasks.wait())
    assert dialog.status_label.text() == "✓  Verified"
    assert chat.composer.edit.isEnabled()
    assert not qloop.run(alice.db.run(alice.repo.contact, new_id)).key_changed
    # The earlier Bob's conversation is untouched and still his.
    assert window.conversations.item(old_id) is not None

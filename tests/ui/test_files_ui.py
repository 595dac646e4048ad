"""Files in the desktop app over real peers: drop a file, paste an image, progress,
pause/resume, save as, thumbnails."""

from __future__ import annotations

import os

from PySide6.QtCore import QMimeData, Qt, QUrl
from PySide6.QtGui import QColor, QImage

from messenger.records import TransferState
from tests.ui.conftest import befriend
from ui.views.transfers import status_text


def test_drop_a_file_download_pause_resume_and_save(qloop, qtbot, make_peer, open_window, tmp_path):
    alice, bob = make_peer("alice"), make_peer("bob")
    _bob_at_alice, alice_at_bob = befriend(qloop, alice, bob)
    source = tmp_path / "report.bin"
    source.write_bytes(os.urandom(12 << 20))
    window = open_window(bob)
    window.open_conversation(alice_at_bob)
    panel = window.chat.transfers
    assert panel.isHidden()

    # Alice sends it (the headless way); it shows up in Bob's window as an offer.
    qloop.run(alice.files.send_file(bob.contact_id, source))
    qloop.until(lambda: len(panel.rows) == 1, what="the offer in Bob's panel")
    assert not panel.isHidden()
    (row,) = panel.rows.values()
    assert "offered to you" in row.status.text()
    assert row.buttons["accept"].isVisibleTo(row) and not row.buttons["save"].isVisibleTo(row)

    qloop.run(bob.files.configure(rate_limit=3 << 20))
    qtbot.mouseClick(row.buttons["accept"], Qt.MouseButton.LeftButton)
    qloop.until(lambda: row.transfer.state is TransferState.DOWNLOADING and row.transfer.speed > 0)
    assert "left" in row.status.text() and "/s" in row.status.text()
    assert row.progress.isVisibleTo(row) and 0 < row.progress.value() < 1000

    qtbot.mouseClick(row.buttons["pause"], Qt.MouseButton.LeftButton)
    qloop.until(lambda: row.transfer.state is TransferState.PAUSED, what="paused")
    assert row.buttons["resume"].isVisibleTo(row) and "paused" in row.status.text()
    qloop.run(bob.files.configure(rate_limit=0))
    qtbot.mouseClick(row.buttons["resume"], Qt.MouseButton.LeftButton)
    qloop.until(lambda: row.transfer.state is TransferState.COMPLETE, timeout=60, what="done")
    assert row.buttons["save"].isVisibleTo(row) and row.buttons["open"].isVisibleTo(row)

    dest = tmp_path / "saved.bin"
    qloop.run(panel._save(row, dest))
    assert dest.read_bytes() == source.read_bytes()
    assert row.buttons["folder"].isVisibleTo(row)


def test_dropped_file_and_pasted_image_are_sent_with_a_thumbnail(
    qloop, qtbot, make_peer, open_window, tmp_path
):
    alice, bob = make_peer("alice"), make_peer("bob")
    bob_at_alice, _alice_at_bob = befriend(qloop, alice, bob)
    window = open_window(alice)
    window.open_conversation(bob_at_alice)
    chat = window.chat

    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(notes))])
    chat.composer.edit.insertFromMimeData(mime)  # what a drop or a paste of files does
    qloop.until(lambda: any(t.name == "notes.txt" for t in bob.files.transfers()))

    image = QImage(200, 100, QImage.Format.Format_RGB32)
    image.fill(QColor("#3366cc"))
    pasted = QMimeData()
    pasted.setImageData(image)
    chat.composer.edit.insertFromMimeData(pasted)
    assert chat.composer.edit.toPlainText() == ""  # sent, not pasted as text
    qloop.until(lambda: any(t.mime == "image/png" for t in bob.files.transfers()))
    png = next(t for t in bob.files.transfers() if t.mime == "image/png")
    # A small image is accepted without asking and completes at Bob's.
    qloop.until(lambda: bob.files.find(png.id).state is TransferState.COMPLETE)

    # Alice's own panel shows both, the image with a locally made thumbnail.
    panel = chat.transfers
    qloop.until(lambda: len(panel.rows) == 2)
    row = panel.rows[png.id]
    qloop.until(lambda: not row.thumb.pixmap().isNull() and row.thumb.toolTip() == "View the image")
    stored = qloop.run(alice.files.thumbnail(png.id))
    assert stored is not None and QImage.fromData(stored).width() <= 112
    assert "received" in status_text(bob.files.find(png.id))

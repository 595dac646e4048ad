"""Files in the desktop app over real peers: drop a file, paste an image, progress,
pause/resume, save as, thumbnails."""

from __future__ import annotations

import asyncio
import os

from PySide6.QtCore import QMimeData, QRect, Qt, QUrl
from PySide6.QtGui import QColor, QImage

from messenger.records import TransferRecord, TransferState
from tests.ui.conftest import befriend
from ui.models.history import HistoryModel
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
    # Done: it leaves the panel (its bubble shows it), whose actions still serve the bubble.
    assert panel.isHidden() and panel.shown_rows() == [] and list(panel.rows) == [row.transfer.id]

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

    # Alice's panel holds both (for the bubbles' actions), the image with a locally made
    # thumbnail, but shows neither: her own offers are in her bubbles.
    panel = chat.transfers
    qloop.until(lambda: len(panel.rows) == 2)
    assert panel.isHidden() and panel.shown_rows() == []
    row = panel.rows[png.id]
    qloop.until(lambda: not row.thumb.pixmap().isNull() and row.thumb.toolTip() == "View the image")
    stored = qloop.run(alice.files.thumbnail(png.id))
    assert stored is not None and QImage.fromData(stored).width() <= 112
    assert "received" in status_text(bob.files.find(png.id))


def _bubble_center(chat, row: int):
    view = chat.view
    index = view.model().index(row, 0)
    view.scrollTo(index)
    rect = view.visualRect(index)
    return view.delegate.bubble_rect(rect, view.delegate.layout(index)).center().toPoint()


def test_file_message_bubble_shows_progress_and_acts(
    qloop, qtbot, make_peer, open_window, tmp_path
):
    alice, bob = make_peer("alice"), make_peer("bob")
    _bob_at_alice, alice_at_bob = befriend(qloop, alice, bob)
    source = tmp_path / "dataset.bin"
    source.write_bytes(os.urandom(12 << 20))
    window = open_window(bob)
    window.open_conversation(alice_at_bob)
    chat = window.chat
    history = chat.history
    assert history is not None

    sent = qloop.run(alice.files.send_file(bob.contact_id, source))
    (msg_id,) = sent.msg_ids
    qloop.until(lambda: history.row_of(msg_id) >= 0, what="the offer in Bob's history")
    row = history.row_of(msg_id)
    index = history.index(row)

    def shown() -> TransferRecord | None:
        return history.data(history.index(history.row_of(msg_id)), HistoryModel.TransferRole)

    qloop.until(lambda: shown() is not None, what="the offer's transfer on its row")
    assert shown().id == sent.id and shown().state is TransferState.OFFERED
    assert chat.view.transfer_actions(shown()) == ["accept", "cancel"]
    # A text message carries no transfer.
    qloop.run(alice.chat.send_text(bob.contact_id, "that was the data set"))
    qloop.until(lambda: history.rowCount() == row + 2)
    assert history.data(history.index(row + 1), HistoryModel.TransferRole) is None
    offered_height = chat.view.delegate.layout(index).row_height

    # A click on the bubble downloads it (the hint says "Download"); slowly, so it shows moving.
    qloop.run(bob.files.configure(rate_limit=3 << 20))
    with qtbot.waitSignal(chat.view.transferActionRequested) as clicked:
        qtbot.mouseClick(
            chat.view.viewport(), Qt.MouseButton.LeftButton, pos=_bubble_center(chat, row)
        )
    assert clicked.args == ["accept", sent.id]
    qloop.until(
        lambda: shown().state is TransferState.DOWNLOADING and shown().speed > 0,
        what="downloading, as the bubble shows",
    )
    assert 0 < shown().progress < 1
    assert "left" in status_text(shown()) and "/s" in status_text(shown())
    # The progress bar and its status line make the bubble taller.
    assert chat.view.delegate.layout(history.index(row)).progress_bar
    assert chat.view.delegate.layout(history.index(row)).row_height > offered_height

    # Clicking again pauses it at the service; the context menu's actions follow the state.
    qtbot.mouseClick(chat.view.viewport(), Qt.MouseButton.LeftButton, pos=_bubble_center(chat, row))
    qloop.until(lambda: bob.files.find(sent.id).state is TransferState.PAUSED, what="paused")
    qloop.until(lambda: shown().state is TransferState.PAUSED)
    assert chat.view.transfer_actions(shown()) == ["resume", "cancel"]
    qloop.run(bob.files.configure(rate_limit=0))
    chat.view.transferActionRequested.emit("resume", sent.id)  # what the menu's Resume does
    qloop.until(lambda: shown().state is TransferState.COMPLETE, timeout=60, what="complete")
    assert not chat.view.delegate.layout(history.index(row)).progress_bar
    assert chat.view.transfer_actions(shown()) == ["open", "save", "forward"]
    assert qloop.run(bob.files.plaintext(sent.id)) == source.read_bytes()


def test_a_received_image_shows_its_thumbnail_in_the_bubble(
    qloop, qtbot, make_peer, open_window, tmp_path, monkeypatch
):
    alice, bob = make_peer("alice"), make_peer("bob")
    _bob_at_alice, alice_at_bob = befriend(qloop, alice, bob)
    image = QImage(600, 400, QImage.Format.Format_RGB32)
    image.fill(QColor("#cc6633"))
    photo = tmp_path / "photo.png"
    assert image.save(str(photo))
    # A small image is fetched without asking; Bob opens the conversation afterwards.
    sent = qloop.run(alice.files.send_file(bob.contact_id, photo))
    (msg_id,) = sent.msg_ids
    qloop.until(
        lambda: any(t.id == sent.id and t.state is TransferState.COMPLETE
                    for t in bob.files.transfers()),
        what="the photo downloaded",
    )  # fmt: skip
    qloop.run(alice.chat.send_text(bob.contact_id, "and a caption after it"))
    window = open_window(bob)
    # The thumbnail is loaded only once the row has been laid out without it, as when
    # loading it takes a while.
    bridge = window.bridge
    loaded = bridge.thumbnail
    gate = asyncio.Event()

    async def slow_thumbnail(transfer_id: str) -> bytes | None:
        await gate.wait()
        return await loaded(transfer_id)

    monkeypatch.setattr(bridge, "thumbnail", slow_thumbnail)
    window.open_conversation(alice_at_bob)
    chat = window.chat
    history = chat.history
    assert history is not None
    qloop.until(lambda: history.row_of(msg_id) >= 0, what="the photo in Bob's history")

    def row_rect() -> QRect:
        return chat.view.rectForIndex(chat.view.model().index(history.row_of(msg_id), 0))

    qloop.until(lambda: row_rect().height() > 0, what="the photo's row laid out")
    qloop.run(asyncio.sleep(0.3))  # idle: no layout of the view is pending
    chat.view.executeDelayedItemsLayout()
    before = row_rect().height()
    gate.set()

    # Its bubble grows a thumbnail, and the view lays the row out again: the row is as
    # tall as the bubble now needs (not painted over the messages below it).
    def laid_out() -> bool:
        index = chat.view.model().index(history.row_of(msg_id), 0)
        layout = chat.view.delegate.layout(index)
        return layout.thumb is not None and row_rect().height() == layout.row_height

    qloop.until(laid_out, what="the thumbnail in the bubble, laid out")
    assert row_rect().height() > before
    index = chat.view.model().index(history.row_of(msg_id), 0)
    thumb = chat.view.delegate.layout(index).thumb
    assert thumb is not None and thumb.pixelColor(5, 5) == QColor("#cc6633")


def test_a_received_file_is_forwarded_into_a_group_from_its_bubble(
    qloop, qtbot, make_peer, open_window, tmp_path
):
    alice, bob, cai = make_peer("alice"), make_peer("bob"), make_peer("cai")
    _bob_at_alice, alice_at_bob = befriend(qloop, alice, bob)
    befriend(qloop, bob, cai)
    record = qloop.run(bob.groups.create_group("Lab", [cai.contact_id]))
    gid = record.id
    qloop.until(lambda: cai.groups.get(gid) is not None, what="the group at cai")
    report = tmp_path / "report.pdf"
    report.write_bytes(os.urandom(300_000))
    sent = qloop.run(alice.files.send_file(bob.contact_id, report))
    qloop.until(lambda: any(t.id == sent.id for t in bob.files.transfers()))
    qloop.run(bob.files.accept(sent.id))
    qloop.until(lambda: bob.files.find(sent.id).state is TransferState.COMPLETE)

    window = open_window(bob)
    window.open_conversation(alice_at_bob)
    chat = window.chat
    qloop.until(lambda: sent.id in chat.transfers.rows, what="the file in Bob's conversation")
    assert "forward" in chat.view.transfer_actions(bob.files.find(sent.id))
    chat.view.transferActionRequested.emit("forward", sent.id)  # the menu's Forward…
    panel = chat.transfers
    qloop.until(lambda: panel.forward_dialog is not None, what="the forward dialog")
    dialog = panel.forward_dialog
    targets = [dialog.list.item(i).text() for i in range(dialog.list.count())]
    assert targets == ["Alice", "Cai", "# Lab"]
    assert not dialog.ok.isEnabled()  # nothing chosen yet
    dialog.list.setCurrentRow(2)
    qtbot.mouseClick(dialog.ok, Qt.MouseButton.LeftButton)
    # Cai sees it in the group, offered by Bob, and can fetch it from him.
    qloop.until(lambda: any(t.id == sent.id for t in cai.files.transfers()), what="at cai")
    (message,) = qloop.run(cai.groups.history(gid))
    assert message.author_name == "Bob" and message.file_id == sent.id
    qloop.run(cai.files.accept(sent.id))
    qloop.until(lambda: cai.files.find(sent.id).state is TransferState.COMPLETE)
    assert qloop.run(cai.files.plaintext(sent.id)) == report.read_bytes()

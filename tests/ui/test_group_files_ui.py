"""Files shared in a group, in the desktop app over real peers on 127.0.0.1: share by drop
or paste, the file's bubble with progress and its click, the group's files panel."""

from __future__ import annotations

import os

from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QColor, QImage

from messenger.records import TransferState
from tests.ui.conftest import befriend


def _group(qloop, make_peer):
    alice, bob, cai = make_peer("alice"), make_peer("bob"), make_peer("cai")
    befriend(qloop, alice, bob)
    befriend(qloop, alice, cai)
    record = qloop.run(alice.groups.create_group("Lab", [bob.contact_id, cai.contact_id]))
    gid = record.id
    for p in (bob, cai):
        qloop.until(lambda p=p: p.groups.get(gid) is not None, what="the group everywhere")
    return (alice, bob, cai), record.id


def _bubble_center(view, row: int) -> QPoint:
    messages = view.messages
    index = view.model.index(row, 0)
    messages.scrollTo(index)
    from PySide6.QtWidgets import QStyleOptionViewItem

    option = QStyleOptionViewItem()
    option.initFrom(messages)
    option.rect = messages.visualRect(index)
    return messages.itemDelegate().bubble_rect(option, index).center().toPoint()


def test_a_dropped_file_and_a_pasted_image_are_shared_with_the_group(
    qloop, make_peer, open_window, tmp_path
):
    (alice, bob, cai), group_id = _group(qloop, make_peer)
    window = open_window(alice)
    window.open_group(group_id)
    view = window.group_view
    qloop.until(lambda: view.group_id == group_id, what="the group open")
    assert view.transfers.isHidden() and view.attach_button.isEnabled()

    notes = tmp_path / "minutes.txt"
    notes.write_text("we agreed")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(notes))])
    view.composer.insertFromMimeData(mime)  # what a drop or a paste of files does
    for p in (bob, cai):
        qloop.until(lambda p=p: any(t.name == "minutes.txt" for t in p.files.transfers()))

    image = QImage(240, 120, QImage.Format.Format_RGB32)
    image.fill(QColor("#cc6633"))
    pasted = QMimeData()
    pasted.setImageData(image)
    view.composer.insertFromMimeData(pasted)
    assert view.composer.toPlainText() == ""  # shared, not pasted as text
    for p in (bob, cai):
        qloop.until(lambda p=p: any(t.mime == "image/png" for t in p.files.transfers()))
        png = next(t for t in p.files.transfers() if t.mime == "image/png")
        # A small image is fetched without asking.
        qloop.until(lambda p=p, png=png: p.files.find(png.id).state is TransferState.COMPLETE)

    # Alice sees both as her own file messages, the image with its thumbnail, and in
    # the group's files panel.
    model = view.model
    qloop.until(lambda: model.rowCount() == 2, what="two file messages")
    shown = [model.transfer_of(model.index(i, 0).data(model.MessageRole)) for i in range(2)]
    assert [t.name for t in shown] == ["minutes.txt", shown[1].name]
    assert shown[1].mime == "image/png" and all(t.outgoing for t in shown)
    qloop.until(lambda: model.thumbnail(shown[1]) is not None, what="the thumbnail")
    qloop.until(lambda: len(view.transfers.rows) == 2, what="the files panel")
    text = model.index(0, 0).data(Qt.ItemDataRole.AccessibleTextRole)
    assert "file minutes.txt" in text and "delivered to" in text


def test_the_file_bubble_downloads_on_click_and_shows_progress(
    qloop, qtbot, make_peer, open_window, tmp_path
):
    (alice, bob, _cai), group_id = _group(qloop, make_peer)
    source = tmp_path / "dataset.bin"
    source.write_bytes(os.urandom(12 << 20))
    window = open_window(bob)
    window.open_group(group_id)
    view = window.group_view
    model = view.model
    qloop.until(lambda: view.group_id == group_id, what="the group open")

    sent = qloop.run(alice.files.send_to_group(group_id, source))
    qloop.until(lambda: model.rowCount() == 1, what="the offer in Bob's group")
    message = model.index(0, 0).data(model.MessageRole)
    assert message.file_id == sent.id
    offer = model.transfer_of(message)
    assert offer is not None and offer.state is TransferState.OFFERED
    offered_height = view.messages.sizeHintForRow(0)

    qloop.run(bob.files.configure(rate_limit=3 << 20))
    with qtbot.waitSignal(view.messages.transferActionRequested) as clicked:
        qtbot.mouseClick(
            view.messages.viewport(), Qt.MouseButton.LeftButton, pos=_bubble_center(view, 0)
        )
    assert clicked.args == ["accept", sent.id]

    def state():
        return model.transfer_of(model.index(0, 0).data(model.MessageRole))

    qloop.until(lambda: state().state is TransferState.DOWNLOADING and state().speed > 0)
    # The progress bar makes the bubble taller; the panel row moves too.
    assert view.messages.sizeHintForRow(0) > offered_height
    row = view.transfers.rows[sent.id]
    qloop.until(lambda: 0 < row.progress.value() < 1000, what="the panel's bar moving")
    qloop.run(bob.files.configure(rate_limit=0))
    qloop.until(lambda: state().state is TransferState.COMPLETE, timeout=60, what="done")
    assert bob.files.find(sent.id).sources == (alice.contact_id,)

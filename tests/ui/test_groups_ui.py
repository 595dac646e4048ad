"""Groups in the desktop app, over real peers on 127.0.0.1: create, write, read, manage."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QStyleOptionViewItem

from tests.ui.conftest import befriend
from ui.models.history import day_label, local_time
from ui.views.group_dialogs import CreateGroupDialog, ManageGroupDialog


class Notes:
    """Stands in for the tray: records what would be notified."""

    def __init__(self) -> None:
        self.shown: list[tuple[str, str, str]] = []

    def notify_message(self, message, name: str) -> None:
        self.shown.append((message.contact_id, name, message.body))


def _three(qloop, make_peer):
    alice, bob, cai = make_peer("alice"), make_peer("bob"), make_peer("cai")
    befriend(qloop, alice, bob)
    befriend(qloop, alice, cai)
    return alice, bob, cai


def _dialog(window, kind):
    qloop_widgets = [w for w in QApplication.topLevelWidgets() if isinstance(w, kind)]
    return qloop_widgets[-1] if qloop_widgets else None


def test_create_a_group_write_and_see_it_delivered(qloop, qtbot, make_peer, open_window):
    alice, bob, cai = _three(qloop, make_peer)
    window = open_window(alice)
    window.new_group()
    qloop.until(lambda: _dialog(window, CreateGroupDialog) is not None, what="the dialog")
    dialog = _dialog(window, CreateGroupDialog)
    assert not dialog.create_button.isEnabled()  # no name, no members yet
    qtbot.keyClicks(dialog.name, "Lab")
    for row in range(dialog.members.count()):
        dialog.members.item(row).setCheckState(Qt.CheckState.Checked)
    assert dialog.create_button.isEnabled()
    dialog.create_button.click()
    qloop.until(lambda: window.groups.rowCount() == 1, what="the group in the sidebar")
    group_id = window.groups.index(0, 0).data(window.groups.GroupIdRole)
    qloop.until(lambda: window.current_group() == group_id, what="the new group opened")
    view = window.group_view
    assert view.title.text() == "Lab"
    assert view.member_list.count() == 3

    qtbot.keyClicks(view.composer, "hello lab")
    qtbot.keyClick(view.composer, Qt.Key.Key_Return)
    assert view.composer.toPlainText() == ""

    async def both_have() -> bool:
        for p in (bob, cai):
            if p.groups.get(group_id) is None or await p.groups.repo_count(group_id) != 1:
                return False
        return True

    qloop.until(both_have, what="the message at bob and cai")
    model = view.model
    qloop.until(lambda: model.rowCount() == 1, what="the message in the view")
    mine = model.index(0, 0).data(model.MessageRole)
    qloop.until(lambda: model.delivered(mine) == 2, what="delivered to 2 of 2")
    assert "delivered to 2 of 2" in model.index(0, 0).data(Qt.ItemDataRole.AccessibleTextRole)


def test_arrivals_count_as_unread_and_notify_until_opened(qloop, make_peer, open_window):
    alice, bob, cai = _three(qloop, make_peer)
    record = qloop.run(alice.groups.create_group("Lab", [bob.contact_id, cai.contact_id]))
    gid = record.id
    window = open_window(alice)
    notes = Notes()
    window.notifier = notes
    qloop.until(lambda: bob.groups.get(gid) is not None, what="bob has the group")
    qloop.run(bob.groups.send_text(gid, "anyone there?"))
    qloop.until(lambda: window.groups.unread_total() == 1, what="one unread")
    assert "(1)" in window.windowTitle()
    qloop.until(lambda: bool(notes.shown), what="a notification")
    assert notes.shown[-1] == ("group:" + record.id, "Lab", "Bob: anyone there?")
    item = window.groups.item(record.id)
    assert item is not None and item.preview() == "Bob: anyone there?"

    window.open_group(record.id)
    assert window.groups.unread_total() == 0
    view = window.group_view
    qloop.until(lambda: view.model.rowCount() == 1, what="the message shown")
    shown = view.model.index(0, 0).data(view.model.MessageRole)
    assert (shown.author_name, shown.body, shown.outgoing) == ("Bob", "anyone there?", False)

    async def stored_as_read() -> bool:
        return (await alice.groups.groups())[0].unread == 0

    qloop.until(stored_as_read, what="marked read in storage")
    # Clicking the notification opens the group too.
    window.open_conversation("group:" + record.id)
    assert window.current_group() == record.id


def test_manage_rename_and_remove(qloop, make_peer, open_window):
    alice, bob, cai = _three(qloop, make_peer)
    record = qloop.run(alice.groups.create_group("Lab", [bob.contact_id, cai.contact_id]))
    window = open_window(alice)
    window.open_group(record.id)
    window.manage_group(record.id)
    qloop.until(lambda: _dialog(window, ManageGroupDialog) is not None, what="the dialog")
    dialog = _dialog(window, ManageGroupDialog)
    dialog.name.setText("Lab 2")
    dialog.rename_button.click()
    qloop.until(lambda: window.group_view.title.text() == "Lab 2", what="renamed in the view")
    qloop.until(lambda: bob.groups.get(record.id).roster.name == "Lab 2")

    window.manage_group(record.id)
    qloop.until(
        lambda: (d := _dialog(window, ManageGroupDialog)) is not None and d.isVisible(),
        what="the dialog again",
    )
    dialog = _dialog(window, ManageGroupDialog)
    for row in range(dialog.members.count()):
        item = dialog.members.item(row)
        if item.text().startswith("Cai"):
            item.setCheckState(Qt.CheckState.Checked)
    dialog.remove_button.click()
    qloop.until(lambda: window.group_view.member_list.count() == 2, what="cai gone from panel")
    qloop.until(
        lambda: cai.groups.get(record.id).state.name == "REMOVED",
        what="cai told",
    )


def test_join_request_for_an_open_group_is_approved_in_the_app(qloop, make_peer, open_window):
    alice, bob = make_peer("alice"), make_peer("bob")
    cai = make_peer("cai")
    befriend(qloop, alice, cai)
    befriend(qloop, alice, bob)  # as after a nearby pairing
    record = qloop.run(alice.groups.create_group("Lab", [cai.contact_id]))
    window = open_window(alice)
    window.open_group(record.id)
    view = window.group_view
    qloop.run(window.bridge.set_group_open(record.id, True))
    assert window.bridge.group_is_open(record.id)
    assert not view.requests_button.isVisible()
    qloop.run(bob.groups.request_join(alice.contact_id, "lab"))  # names match case-insensitively
    qloop.until(view.requests_button.isVisible, what="the join request shown")
    assert view.requests_button.text() == "1 asking to join"
    view.requests_button.click()
    qloop.until(lambda: _dialog(window, ManageGroupDialog) is not None, what="the dialog")
    dialog = _dialog(window, ManageGroupDialog)
    assert dialog.requests.item(0).text() == "Bob asks to join"
    dialog.approve_button.click()
    gid = record.id
    qloop.until(lambda: bob.groups.get(gid) is not None, what="bob is in")
    qloop.until(lambda: not view.requests_button.isVisible(), what="request answered")
    assert view.member_list.count() == 3


def test_group_history_pages_older_messages_in(qloop, make_peer, open_window):
    alice, bob = make_peer("alice"), make_peer("bob")
    befriend(qloop, alice, bob)
    record = qloop.run(alice.groups.create_group("Lab", [bob.contact_id]))
    gid = record.id

    async def write() -> None:
        for i in range(120):
            await alice.groups.send_text(gid, f"note {i:03d}")

    qloop.run(write())
    window = open_window(alice)
    window.open_group(record.id)
    model = window.group_view.model
    qloop.until(lambda: model.rowCount() >= 50, what="the newest page")
    assert model.index(model.rowCount() - 1, 0).data() == "note 119"
    # Opened at the newest message: nothing older is loaded until the user scrolls up (Qt's
    # own paging, which asks whenever the last row shows, is off).
    view = window.group_view.messages
    qloop.until(lambda: view.verticalScrollBar().maximum() > 0, what="a scrollable history")
    assert not model.loading and model.rowCount() == 50
    assert not model.canFetchMore()
    # Scrolled to the top: the older page comes in above, the message on top stays put.
    view.verticalScrollBar().setValue(0)
    anchor = model.data(model.index(0, 0), model.MessageRole).msg_id  # "note 070", on top
    assert view.visualRect(model.index(0, 0)).top() == 0
    qloop.until(lambda: model.rowCount() == 100 and not model.loading, what="the older page")
    assert model.index(0, 0).data() == "note 020"
    assert abs(view.visualRect(model.index(model.row_of(anchor), 0)).top()) <= 3
    # The rest, page by page (a fetch the view started itself is awaited, not repeated).
    while model.has_older:
        assert model.fetch_older() or model.loading
        qloop.until(lambda: not model.loading, what="a page")
    bodies = [model.index(r, 0).data() for r in range(model.rowCount())]
    assert bodies == [f"note {i:03d}" for i in range(120)]


def test_search_everywhere_finds_group_messages_and_opens_the_group_at_one(
    qloop, qtbot, make_peer, open_window
):
    from ui.models.groups import PAGE
    from ui.views.search_dialog import SearchDialog

    alice, bob, cai = make_peer("alice"), make_peer("bob"), make_peer("cai")
    _bob_at_alice, alice_at_bob = befriend(qloop, alice, bob)
    befriend(qloop, alice, cai)
    record = qloop.run(alice.groups.create_group("Lab", [bob.contact_id, cai.contact_id]))
    gid = record.id
    for p in (bob, cai):
        qloop.until(lambda p=p: p.groups.get(gid) is not None, what="the group everywhere")
    # The hit is far back in the group: more than two pages of newer messages follow it.
    qloop.run(cai.groups.send_text(gid, "the kiwi harvest is in"))
    for i in range(2 * PAGE + 10):
        qloop.run(bob.groups.send_text(gid, f"filler {i}"))
    qloop.run(bob.chat.send_text(alice_at_bob, "kiwis, just between us"))
    total = 2 * PAGE + 11

    async def all_there() -> bool:
        return await alice.groups.repo_count(gid) == total

    qloop.until(all_there, timeout=30, what="every group message at alice")
    window = open_window(alice)
    window.show_search()
    dialog = next(d for d in window._dialogs if isinstance(d, SearchDialog))
    dialog.field.setText("kiwi")
    dialog.run_search()
    qloop.until(lambda: dialog.model.rowCount() == 2, what="a 1:1 and a group result")
    texts = [dialog.model.index(i, 0).data() for i in range(2)]
    assert texts[0].startswith("Bob, ") and texts[0].endswith("kiwis, just between us")
    assert texts[1].startswith("Cai in Lab, ") and texts[1].endswith("the kiwi harvest is in")

    dialog.list.setCurrentIndex(dialog.model.index(1, 0))
    qtbot.keyClick(dialog.field, Qt.Key.Key_Return)
    view = window.group_view
    qloop.until(lambda: view.group_id == record.id, what="the group open")
    model = view.model
    qloop.until(lambda: model.highlight is not None, what="the message outlined")
    row = model.row_of(model.highlight)
    assert model.index(row, 0).data(model.MessageRole).body == "the kiwi harvest is in"
    # Older pages were loaded to reach it, and it is on screen.
    assert model.rowCount() == total
    view.messages.executeDelayedItemsLayout()
    shown = view.messages.visualRect(model.index(row, 0))
    assert shown.height() > 0 and view.messages.viewport().rect().intersects(shown)
    # Writing in the group moves on from it: the outline goes.
    view.composer.setPlainText("found it")
    view.send()
    assert model.highlight is None
    # A hit that is gone (say, the group was emptied meanwhile) is said so.
    qloop.run(view.jump_to(b"\x00" * 16))
    assert view.notice.text() == "That message is no longer in this group."


def test_a_message_sent_while_the_group_opens_stays_in_view(
    qloop, make_peer, open_window, monkeypatch
):
    """The group's first page is read while the message is stored: the message, shown
    at once, is not wiped by the page that arrives after it (nor shown twice)."""
    alice, bob, cai = _three(qloop, make_peer)
    record = qloop.run(alice.groups.create_group("Lab", [bob.contact_id, cai.contact_id]))
    window = open_window(alice)
    qloop.until(lambda: window.groups.rowCount() == 1, what="the group in the sidebar")
    gate, returned = asyncio.Event(), []
    read_page = window.bridge.group_history

    async def slow_page(group_id, **kwargs):
        page = await read_page(group_id, **kwargs)  # read before the message is stored
        await gate.wait()
        returned.append(page)
        return page

    monkeypatch.setattr(window.bridge, "group_history", slow_page)
    window.open_group(record.id)
    model = window.group_view.model
    qloop.until(lambda: model.group_id == record.id, what="the group opening")
    qloop.run(alice.groups.send_text(record.id, "sent while it opens"))
    qloop.until(lambda: model.rowCount() == 1, what="the message shown at once")
    gate.set()
    qloop.until(lambda: bool(returned), what="the first page")
    assert returned[0] == []  # read before the message was stored
    assert model.rowCount() == 1
    assert model.index(0, 0).data() == "sent while it opens"


def test_days_are_marked_in_the_group_history(qloop, make_peer, open_window):
    """A pill with the day above the first message of each day, as in a 1:1 chat: the
    rows it tops are taller by it and their bubbles start under it."""
    alice, bob = make_peer("alice"), make_peer("bob")
    befriend(qloop, alice, bob)
    record = qloop.run(alice.groups.create_group("Lab", [bob.contact_id]))
    today = qloop.run(alice.groups.send_text(record.id, "same words"))
    window = open_window(alice)
    window.resize(900, 640)
    window.open_group(record.id)
    view, model = window.group_view.messages, window.group_view.model
    qloop.until(lambda: model.rowCount() == 1, what="today's message")
    assert model.day_of(0) == "Today"

    # Two messages of three days ago arrive (Lamport times before today's message).
    earlier = today.sent_at_ms - 3 * 86_400_000
    for i in (1, 2):
        window.bridge.groupMessageAdded.emit(
            replace(
                today,
                msg_id=os.urandom(16),
                seq=i,
                lamport=today.lamport - 1,
                sent_at_ms=earlier + i,
            )
        )
    qloop.until(lambda: model.rowCount() == 3, what="the older two")
    three_days_ago = day_label(local_time(earlier).date())
    assert [model.day_of(row) for row in range(3)] == [three_days_ago, None, "Today"]

    view.executeDelayedItemsLayout()
    rects = [view.visualRect(model.index(row, 0)) for row in range(3)]
    # The same words, the same bubble: only the pill makes the first and last rows taller.
    assert rects[0].height() == rects[2].height() > rects[1].height() + 20
    delegate = view.itemDelegate()
    option = QStyleOptionViewItem()
    option.initFrom(view)
    for row, rect in enumerate(rects):
        option.rect = rect
        bubble = delegate.bubble_rect(option, model.index(row, 0))
        gap = bubble.top() - rect.top()
        assert (gap > 20) if row != 1 else (gap < 10), (row, gap)

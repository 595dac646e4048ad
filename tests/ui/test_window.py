"""The main window over real peers on 127.0.0.1: one window, one headless PeerService."""

from __future__ import annotations

import contextlib

from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, QUrl
from PySide6.QtWidgets import QApplication

from messenger import MessageState
from tests.ui.conftest import befriend
from ui import theme
from ui.tray import Tray


async def _history_bodies(service, contact_id: str) -> list[str]:
    return [m.body for m in await service.chat.history(contact_id, limit=200)]


def _has_body(service, contact_id: str, body: str):
    async def check() -> bool:
        return body in await _history_bodies(service, contact_id)

    return check


def test_send_from_composer_reaches_peer_and_is_delivered(qloop, qtbot, make_peer, open_window):
    alice, bob = make_peer("alice"), make_peer("bob")
    bob_at_alice, alice_at_bob = befriend(qloop, alice, bob)
    window = open_window(alice)
    window.open_conversation(bob_at_alice)
    chat = window.chat
    assert chat.contact_id == bob_at_alice
    assert chat.composer.edit.isEnabled()
    assert "Bob" in chat.composer.edit.placeholderText()

    edit = chat.composer.edit
    qtbot.keyClicks(edit, "Hello Bob")
    qtbot.keyClick(edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(edit, "second line")
    assert edit.toPlainText() == "Hello Bob\nsecond line"  # Shift+Enter: a new line
    qtbot.keyClick(edit, Qt.Key.Key_Return)  # Enter: send
    assert edit.toPlainText() == ""

    qloop.until(_has_body(bob, alice_at_bob, "Hello Bob\nsecond line"), what="the message at Bob")
    model = chat.history
    assert model is not None

    def delivered() -> bool:
        rows = [model.record(r) for r in range(model.rowCount())]
        return any(
            m.body == "Hello Bob\nsecond line" and m.state is MessageState.DELIVERED for m in rows
        )

    qloop.until(delivered, what="delivered state in the sender's model")
    item = window.conversations.item(bob_at_alice)
    assert item is not None and item.last is not None and item.last.outgoing
    qloop.until(
        lambda: window.conversations.item(bob_at_alice).last.state >= MessageState.DELIVERED
    )


def test_incoming_message_counts_unread_then_clears(qloop, qtbot, make_peer, open_window):
    alice, bob = make_peer("alice"), make_peer("bob")
    bob_at_alice, alice_at_bob = befriend(qloop, alice, bob)
    window = open_window(alice)
    tray = Tray(window.bridge, window)
    window.notifier = tray
    window.unreadChanged.connect(tray.set_unread)
    assert window.current_contact() is None

    qloop.run(bob.chat.send_text(alice_at_bob, "Are you there?"))
    qloop.run(bob.chat.send_text(alice_at_bob, "Ping"))
    qloop.until(lambda: window.conversations.item(bob_at_alice).unread == 2, what="2 unread")
    assert window.conversations.unread_total() == 2
    # The title and the tray follow within a moment (updates are coalesced per burst).
    qloop.until(lambda: window.windowTitle() == "Chinwag (2)", what="the title's count")
    assert tray.unread == 2
    # The list's top row is Bob's, with his last message.
    top = window.conversations.item(bob_at_alice)
    assert top.last.body == "Ping"
    qloop.until(lambda: bool(tray.shown), what="a notification")
    assert tray.shown[-1].title == "Bob" and "Ping" in tray.shown[-1].body

    window.open_conversation(bob_at_alice)
    qloop.until(lambda: window.chat.history.loaded)
    bodies = [m.body for m in window.chat.history.records()]
    assert bodies[-2:] == ["Are you there?", "Ping"]
    qloop.until(lambda: window.conversations.unread_total() == 0, what="badge cleared")
    assert window.windowTitle() == "Chinwag"

    async def no_unread() -> bool:
        return await alice.chat.unread_counts() == {}

    qloop.until(no_unread, what="marked read in storage")

    # While the conversation is open and the window active, arrivals are read at once.
    qloop.run(bob.chat.send_text(alice_at_bob, "Welcome back"))
    qloop.until(lambda: "Welcome back" in [m.body for m in window.chat.history.records()])
    qloop.until(
        lambda: window.conversations.item(bob_at_alice).last.body == "Welcome back",
        what="the arrival in the list",
    )
    assert window.conversations.unread_total() == 0  # counted as read when it came
    qloop.until(no_unread, what="marked read in storage")


def test_notification_preview_setting_and_click(qloop, qtbot, make_peer, open_window):
    alice, bob = make_peer("alice"), make_peer("bob")
    bob_at_alice, alice_at_bob = befriend(qloop, alice, bob)
    window = open_window(alice)
    tray = Tray(window.bridge, window)
    window.notifier = tray
    opened: list[str] = []
    tray.conversationRequested.connect(opened.append)
    qloop.run(window.bridge.set_setting("notification_previews", False))
    qloop.run(bob.chat.send_text(alice_at_bob, "secret plans"))
    qloop.until(lambda: bool(tray.shown))
    assert tray.shown[-1].body == "New message"
    assert "secret" not in tray.shown[-1].body
    tray.click_last()
    assert opened == [bob_at_alice]

    qloop.run(window.bridge.set_setting("notifications", False))
    count = len(tray.shown)
    qloop.run(bob.chat.send_text(alice_at_bob, "again"))
    qloop.until(lambda: window.conversations.item(bob_at_alice).unread == 2)
    # The window has handled the arrival (the unread count moved in the same signal): with
    # notifications off nothing was queued for the tray, so nothing can show later either.
    assert tray.pending == 0
    assert len(tray.shown) == count


def test_typing_indicator_both_ways(qloop, qtbot, make_peer, open_window):
    alice, bob = make_peer("alice"), make_peer("bob")
    bob_at_alice, alice_at_bob = befriend(qloop, alice, bob)
    window = open_window(alice)
    window.open_conversation(bob_at_alice)
    chat = window.chat

    bob.chat.set_typing(alice_at_bob, True)
    qloop.until(lambda: chat.typing.isVisible(), what="typing indicator")
    assert chat.typing.text() == "Bob is typing…"
    assert chat.header.status.text() == "typing…"
    bob.chat.set_typing(alice_at_bob, False)
    qloop.until(lambda: not chat.typing.isVisible())

    from messenger import TypingChanged
    from tests.net.conftest import Recorder

    recorder = Recorder(bob)
    qtbot.keyClicks(chat.composer.edit, "hel")
    qloop.until(lambda: any(e.active for e in recorder.of(TypingChanged)), what="typing at Bob")
    chat.composer.edit.clear()
    qloop.until(lambda: not recorder.of(TypingChanged)[-1].active, what="stopped typing")
    # Debounced: three keys made one notice.
    assert sum(1 for e in recorder.of(TypingChanged) if e.active) == 1


def test_composer_disabled_with_reason_and_length_limit(qloop, qtbot, make_peer, open_window):
    alice, bob = make_peer("alice"), make_peer("bob")
    bob_at_alice, _ = befriend(qloop, alice, bob)
    window = open_window(alice)
    composer = window.chat.composer
    assert not composer.edit.isEnabled()
    assert composer.edit.placeholderText() == "Choose a conversation to start chatting"
    assert not composer.send_button.isEnabled()

    window.open_conversation(bob_at_alice)
    assert composer.edit.isEnabled()
    composer.set_text("x" * (composer.max_bytes + 10))
    assert composer.counter.isVisible()
    assert "too long" in composer.counter.text()
    assert composer.counter.property("over") is True
    assert not composer.send_button.isEnabled()
    qtbot.keyClick(composer.edit, Qt.Key.Key_Return)
    assert composer.error.isVisible()  # says why, keeps the text
    assert len(composer.text()) == composer.max_bytes + 10
    composer.set_text("x" * (composer.max_bytes - 5))
    assert composer.counter.text() == "5 left" and composer.send_button.isEnabled()
    composer.set_text("")
    assert not composer.counter.isVisible()

    composer.show_emoji_picker()
    picker = composer._picker
    assert picker is not None and picker.isVisible()
    picker.buttons[0].click()
    assert composer.text() == picker.buttons[0].text()
    assert not picker.isVisible()


def test_links_open_on_click(qloop, qtbot, make_peer, open_window):
    alice, bob = make_peer("alice"), make_peer("bob")
    bob_at_alice, alice_at_bob = befriend(qloop, alice, bob)
    qloop.run(bob.chat.send_text(alice_at_bob, "docs at https://example.org/guide now"))
    window = open_window(alice)
    window.open_conversation(bob_at_alice)
    view = window.chat.view
    qloop.until(lambda: window.chat.history.loaded and window.chat.history.rowCount() == 1)
    opened: list[QUrl] = []
    view.open_url = opened.append
    index = view.model().index(0, 0)
    rect = view.visualRect(index)
    spot = None
    for y in range(rect.top(), rect.bottom(), 3):
        for x in range(rect.left(), rect.right(), 4):
            if view.delegate.anchor_at(index, QRectF(rect), QPointF(x, y)):
                spot = QPoint(x, y)
                break
        if spot:
            break
    assert spot is not None, "no link drawn in the bubble"
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=spot)
    assert [u.toString() for u in opened] == ["https://example.org/guide"]
    # Plain text is not a link.
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.topLeft() + QPoint(30, 8))
    assert len(opened) == 1


def test_search_in_conversation_and_everywhere(qloop, qtbot, make_peer, open_window):
    alice, bob = make_peer("alice"), make_peer("bob")
    bob_at_alice, alice_at_bob = befriend(qloop, alice, bob)
    carol = make_peer("carol")
    carol_at_alice, alice_at_carol = befriend(qloop, alice, carol)
    qloop.run(bob.chat.send_text(alice_at_bob, "the pineapple pizza debate"))
    for i in range(120):
        qloop.run(bob.chat.send_text(alice_at_bob, f"filler {i}"))
    qloop.run(carol.chat.send_text(alice_at_carol, "pineapple is fine"))
    qloop.until(_has_body(alice, bob_at_alice, "filler 119"))
    qloop.until(_has_body(alice, carol_at_alice, "pineapple is fine"))
    window = open_window(alice)
    window.open_conversation(bob_at_alice)
    chat = window.chat
    qloop.until(lambda: chat.history.loaded)

    # Ctrl+F: the search bar; the hit is far back, so a window is loaded around it.
    qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert chat.search_bar.isVisible()
    chat.search_bar.field.setText("pineapple")
    chat.search_bar.queryChanged.emit("pineapple")
    qloop.until(lambda: chat.history.highlight is not None, what="jump to the hit")
    row = chat.history.row_of(chat.history.highlight)
    assert chat.history.record(row).body == "the pineapple pizza debate"
    assert chat.search_bar.count.text() == "1 of 1"
    assert chat.history.search_terms == ("pineapple",)
    qtbot.keyClick(chat.search_bar.field, Qt.Key.Key_Escape)
    assert not chat.search_bar.isVisible() and chat.history.highlight is None

    # Everywhere: results from both conversations; choosing one opens it at the message.
    window.show_search()
    from ui.views.search_dialog import SearchDialog

    dialog = next(d for d in window._dialogs if isinstance(d, SearchDialog))
    # Typing on cancels the search for the shorter text (its results would be stale).
    dialog.field.setText("pine")
    dialog.run_search()
    superseded = dialog._running
    assert superseded is not None
    dialog.field.setText("pineapple")
    dialog.run_search()
    qloop.until(superseded.done, what="the superseded search ends")
    assert superseded.cancelled()
    qloop.until(lambda: dialog.model.rowCount() == 2, what="two results")
    assert dialog.model.words == ["pineapple"]
    names = {dialog.model.name_of(m) for m in dialog.model.results}
    assert names == {"Bob", "Carol"}
    carol_row = next(
        i for i, m in enumerate(dialog.model.results) if m.contact_id == carol_at_alice
    )
    dialog.list.setCurrentIndex(dialog.model.index(carol_row, 0))
    qtbot.keyClick(dialog.field, Qt.Key.Key_Return)
    assert window.chat.contact_id == carol_at_alice
    qloop.until(lambda: chat.history.loaded and chat.history.highlight is not None)
    assert chat.history.record(chat.history.row_of(chat.history.highlight)).body == (
        "pineapple is fine"
    )


def test_a_filter_that_names_no_conversation_offers_the_message_search(
    qloop, qtbot, make_peer, open_window
):
    alice, bob = make_peer("alice"), make_peer("bob")
    bob_at_alice, alice_at_bob = befriend(qloop, alice, bob)
    qloop.run(bob.chat.send_text(alice_at_bob, "meet at the trailhead"))
    qloop.until(_has_body(alice, bob_at_alice, "meet at the trailhead"))
    window = open_window(alice)
    from ui.views.search_dialog import SearchDialog

    qtbot.keyClicks(window.filter, "<b>trail")
    # No name matches: the sidebar says so and links to the message search; the typed
    # text is shown as text, never as markup.
    assert window.empty_list.isVisible() and not window.list.isVisible()
    label = window.empty_list.text()
    assert "&lt;b&gt;trail" in label and "<b>trail" not in label
    assert '<a href="search">' in label
    window.empty_list.linkActivated.emit("search")
    dialog = next(d for d in window._dialogs if isinstance(d, SearchDialog))
    assert dialog.field.text() == "<b>trail"
    qloop.until(lambda: dialog.status.text().startswith("No messages match"))
    dialog.reject()

    # Enter in the filter does the same; the search finds the message.
    window.filter.setText("trailhead")
    qtbot.keyClick(window.filter, Qt.Key.Key_Return)
    dialogs = [d for d in window._dialogs if isinstance(d, SearchDialog) and d.isVisible()]
    assert len(dialogs) == 1 and dialogs[0].field.text() == "trailhead"
    qloop.until(lambda: dialogs[0].model.rowCount() == 1, what="the message found")
    assert dialogs[0].model.results[0].body == "meet at the trailhead"

    # A filter that names a conversation opens it on Enter, as before.
    dialogs[0].reject()
    window.filter.setText("bo")
    assert not window.empty_list.isVisible()
    qtbot.keyClick(window.filter, Qt.Key.Key_Return)
    assert window.chat.contact_id == bob_at_alice


def test_keyboard_quick_switcher_and_shortcuts(qloop, qtbot, make_peer, open_window):
    alice, bob = make_peer("alice"), make_peer("bob")
    bob_at_alice, _ = befriend(qloop, alice, bob)
    window = open_window(alice)
    from ui.views.quick_switcher import QuickSwitcher

    qtbot.keyClick(window, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    switcher = next(d for d in window._dialogs if isinstance(d, QuickSwitcher))
    assert switcher.isVisible()
    qtbot.keyClicks(switcher.field, "bo")
    qtbot.keyClick(switcher.field, Qt.Key.Key_Return)
    assert window.chat.contact_id == bob_at_alice
    assert window.chat.composer.edit.hasFocus() or QApplication.focusWidget() is not None

    # Esc closes dialogs; Ctrl+F with no conversation opens the global search.
    window.chat.clear()
    window.stack.setCurrentWidget(window.empty)
    qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    from ui.views.search_dialog import SearchDialog

    search = next(d for d in window._dialogs if isinstance(d, SearchDialog))
    qtbot.keyClick(search.field, Qt.Key.Key_Escape)
    assert not search.isVisible()

    # Ctrl+N opens "Add contact".
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    names = [type(d).__name__ for d in window._dialogs]
    assert "AddContactDialog" in names
    for d in list(window._dialogs):
        d.reject()

    # Accessible names on the controls a screen reader meets first.
    for widget in (
        window.filter,
        window.list,
        window.add_button,
        window.chat.composer.edit,
        window.chat.composer.send_button,
        window.chat.view,
    ):
        assert widget.accessibleName()


def test_theme_follows_setting(qloop, qtbot, make_peer, open_window, app_theme):
    alice = make_peer("alice")
    window = open_window(alice)
    qloop.run(window.bridge.set_setting("theme", "dark"))
    assert theme.current().dark
    assert QApplication.instance().palette().window().color().name() == theme.DARK.window
    qloop.run(window.bridge.set_setting("theme", "light"))
    assert not theme.current().dark
    assert app_theme.mode == "light"


def test_presence_and_verified_in_header(qloop, qtbot, make_peer, open_window):
    alice, bob = make_peer("alice"), make_peer("bob")
    bob_at_alice, _ = befriend(qloop, alice, bob)
    window = open_window(alice)
    window.open_conversation(bob_at_alice)
    header = window.chat.header
    assert header.status.text() == "online · on your network"  # loopback: a direct link
    assert not header.verified.isVisible()
    qloop.run(window.bridge.set_verified(bob_at_alice, True))
    qloop.until(lambda: header.verified.isVisible())
    qloop.run(bob.aclose())
    qloop.until(lambda: header.status.text().startswith("last seen"), what="offline")
    assert not window.conversations.item(bob_at_alice).online


def test_disk_full_banner_shows_and_goes_when_there_is_room(
    qloop, qtbot, make_peer, open_window, tmp_path
):
    """Bob's profile on a real 20 MiB tmpfs, filled: the window says "Disk full" while
    Alice's messages cannot be stored, and the banner goes once there is room again."""
    from messenger import DiskSpace
    from tests.net.test_disk_full import fill, small_tmpfs

    with small_tmpfs(tmp_path / "bob"):
        alice, bob = make_peer("alice"), make_peer("bob")
        bob_at_alice, alice_at_bob = befriend(qloop, alice, bob)
        window = open_window(bob)
        seen: list[DiskSpace] = []
        bob.subscribe(lambda e: seen.append(e) if isinstance(e, DiskSpace) else None)
        filler = fill(tmp_path / "bob")
        assert window.disk_banner.isHidden()
        sent = 0
        while not seen and sent < 500:  # until a write needs room SQLite cannot get
            for _ in range(10):
                qloop.run(alice.chat.send_text(bob_at_alice, "x" * 2000))
                sent += 1
            with contextlib.suppress(AssertionError):
                qloop.until(lambda: bool(seen), timeout=1.0)
        qloop.until(window.disk_banner.isVisible, what="the disk-full banner")
        assert "Disk full" in window.disk_banner_text.text()
        assert str(tmp_path / "bob") in window.disk_banner_text.text()
        filler.unlink()
        qloop.until(window.disk_banner.isHidden, what="the banner to go")

        async def all_there() -> bool:
            return len(await bob.chat.history(alice_at_bob, limit=sent + 10)) == sent

        qloop.until(all_there, timeout=30, what="every message stored once")

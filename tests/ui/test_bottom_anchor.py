"""A short conversation sits at the bottom of its pane, next to the composer (1:1 and
group), and a long one fills the pane and scrolls as before."""

from __future__ import annotations

from PySide6.QtWidgets import QListView

from tests.ui.conftest import befriend
from tests.ui.test_paging import _store_history

# The rows' own spacing below the last bubble, at most.
NEAR = 24


def _last_row_bottom(view: QListView) -> int:
    model = view.model()
    return view.visualRect(model.index(model.rowCount() - 1, 0)).bottom()


def _first_row_top(view: QListView) -> int:
    return view.visualRect(view.model().index(0, 0)).top()


def _sits_at_bottom(view: QListView) -> bool:
    view.executeDelayedItemsLayout()
    bottom = view.viewport().height() - 1
    return view.model().rowCount() > 0 and 0 <= bottom - _last_row_bottom(view) <= NEAR


def test_a_short_chat_sits_by_the_composer_and_a_long_one_scrolls(qloop, make_peer, open_window):
    alice, bob = make_peer("alice"), make_peer("bob")
    bob_at_alice, _ = befriend(qloop, alice, bob)
    qloop.run(alice.chat.send_text(bob_at_alice, "first"))
    qloop.run(alice.chat.send_text(bob_at_alice, "second"))
    window = open_window(alice)
    window.resize(900, 640)
    window.open_conversation(bob_at_alice)
    chat = window.chat
    view = chat.view
    qloop.until(lambda: chat.history.loaded and chat.history.rowCount() == 2, what="the two")
    qloop.until(lambda: _sits_at_bottom(view), what="the messages at the bottom")
    # Pushed down by a margin above the rows, not drawn at the top with room below.
    assert view.viewportMargins().top() > 200
    assert _first_row_top(view) >= 0

    # A third message still ends at the bottom; the margin shrinks by its height.
    margin = view.viewportMargins().top()
    qloop.run(alice.chat.send_text(bob_at_alice, "third"))
    qloop.until(lambda: chat.history.rowCount() == 3, what="the third message")
    qloop.until(lambda: _sits_at_bottom(view), what="still at the bottom")
    assert view.viewportMargins().top() < margin

    # A taller window: the rows follow the bottom edge down.
    window.resize(900, 780)
    qloop.until(lambda: view.viewportMargins().top() > margin, what="a taller margin")
    assert _sits_at_bottom(view)

    # A history taller than the pane: no margin, the newest message in view.
    cai = make_peer("cai")
    cai_at_alice, _ = befriend(qloop, alice, cai)
    qloop.run(cai.aclose())
    _store_history(alice, cai_at_alice, total=200)
    window.open_conversation(cai_at_alice)
    qloop.until(lambda: chat.history.rowCount() >= 50 and view.is_at_bottom(), what="long")
    qloop.until(lambda: view.viewportMargins().top() == 0, what="no margin")
    assert _sits_at_bottom(view)
    assert view.verticalScrollBar().maximum() > 0


def test_a_short_group_sits_by_the_composer(qloop, make_peer, open_window):
    alice, bob = make_peer("alice"), make_peer("bob")
    befriend(qloop, alice, bob)
    record = qloop.run(alice.groups.create_group("Lab", [bob.contact_id]))
    qloop.run(alice.groups.send_text(record.id, "hello lab"))
    window = open_window(alice)
    window.resize(900, 640)
    window.open_group(record.id)
    view = window.group_view.messages
    model = window.group_view.model
    qloop.until(lambda: model.rowCount() == 1, what="the message in the view")
    qloop.until(lambda: _sits_at_bottom(view), what="the message at the bottom")
    assert view.viewportMargins().top() > 200

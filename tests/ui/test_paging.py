"""History paging over a real profile with 100,000 stored messages, and a 5,000-message
burst arriving while the window is open."""

from __future__ import annotations

import asyncio
import os
import time

from PySide6.QtCore import QPoint

from messenger.storage.repository import IncomingMessage
from tests.ui.conftest import befriend

TOTAL = 100_000
BATCH = 5_000


def _store_history(service, contact_id: str, total: int = TOTAL) -> None:
    """Fast: straight into the repository in batches (the service is idle meanwhile)."""
    now_ms = int(time.time() * 1000)
    base = now_ms - total * 60_000  # one message a minute: many days, many separators
    for start in range(0, total, BATCH):
        batch = [
            IncomingMessage(os.urandom(16), i + 1, i + 1, base + i * 60_000, f"message {i}")
            for i in range(start, min(total, start + BATCH))
        ]
        service.repo.store_incoming([(contact_id, batch)], now_ms)


def test_history_pages_keep_position_with_100k_messages(qloop, qtbot, make_peer, open_window):
    alice, bob = make_peer("alice"), make_peer("bob")
    bob_at_alice, _ = befriend(qloop, alice, bob)
    qloop.run(bob.aclose())
    _store_history(alice, bob_at_alice)
    alice.repo.mark_seen(bob_at_alice)

    window = open_window(alice)
    window.resize(900, 640)
    window.open_conversation(bob_at_alice)
    chat = window.chat
    model, view = chat.history, chat.view
    qloop.until(lambda: model.loaded and not model.busy, what="first page")
    qloop.until(view.is_at_bottom, what="the view at the newest message")
    assert model.rowCount() <= 2 * model.page_size  # a page or two, not 100,000 rows
    assert model.record(model.rowCount() - 1).body == f"message {TOTAL - 1}"

    sb = view.verticalScrollBar()
    for _ in range(8):
        first = model.record(0).lamport
        sb.setValue(sb.minimum())  # scrolled to the top: the view asks for the older page
        top = view.indexAt(QPoint(view.viewport().width() // 2, 2))
        assert top.isValid()
        anchor = model.record(top.row()).msg_id
        y_before = view.visualRect(top).top()
        qloop.until(
            lambda first=first: model.record(0).lamport < first and not model.busy,
            what="older page",
        )
        row = model.row_of(anchor)
        assert row >= 0
        y_after = view.visualRect(view.model().index(row, 0)).top()
        assert abs(y_after - y_before) <= 3, (y_before, y_after)
        assert model.rowCount() <= model.max_rows

    assert model.rowCount() == model.max_rows  # a window of a few pages, newest ones dropped
    assert not model.at_end and not model.at_start
    qloop.until(lambda: chat.jump_button.isVisible(), what="jump-to-newest button")

    # Scrolling down brings newer pages back (and drops old ones), position kept likewise.
    last = model.record(model.rowCount() - 1).lamport
    sb.setValue(sb.maximum())
    qloop.until(lambda: model.record(model.rowCount() - 1).lamport > last and not model.busy)
    assert model.rowCount() <= model.max_rows

    chat.jump_button.click()
    qloop.until(lambda: model.at_end and not model.busy, what="back at the newest")
    assert model.record(model.rowCount() - 1).body == f"message {TOTAL - 1}"
    assert model.rowCount() <= 2 * model.page_size


def test_a_burst_keeps_the_open_history_bounded_and_read(qloop, qtbot, make_peer, open_window):
    """1,000 messages (four times the model's window) arrive while the conversation is open:
    the model keeps a bounded window, the list shows the last one, nothing is left unread.
    How long the loop stalls meanwhile is a benchmark (bench/bench_ui.py, part 3), not a
    test: a wall-clock bound here would fail on a busy machine."""
    alice, bob = make_peer("alice"), make_peer("bob")
    bob_at_alice, alice_at_bob = befriend(qloop, alice, bob)
    window = open_window(alice)
    window.open_conversation(bob_at_alice)
    model = window.chat.history
    qloop.until(lambda: model.loaded)
    count = 1_000
    assert count > 2 * (model.max_rows + model.page_size)

    async def burst() -> None:
        for chunk in range(0, count, 250):
            await asyncio.gather(
                *(bob.chat.send_text(alice_at_bob, f"burst {i}") for i in range(chunk, chunk + 250))
            )

    qloop.run(burst(), timeout=110)
    final = f"burst {count - 1}"
    qloop.until(
        lambda: model.rowCount() > 0 and model.record(model.rowCount() - 1).body == final,
        timeout=60,
        what="the last message in the open history",
    )
    assert model.rowCount() <= model.max_rows + model.page_size
    qloop.until(
        lambda: window.conversations.item(bob_at_alice).last.body == final,
        what="the last message in the list",
    )
    # Open and active: read as it arrives. Every message is in, so the count settles.
    qloop.until(lambda: window.conversations.unread_total() == 0, what="nothing unread")

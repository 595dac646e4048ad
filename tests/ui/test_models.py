"""The conversation list and history models, and the views' text helpers, over a fake bridge."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from PySide6.QtCore import QModelIndex, Qt

from messenger import MessageState
from tests.ui.fakes import FakeBridge, contact, message
from ui.models.conversations import ConversationFilterModel, ConversationListModel
from ui.models.history import HistoryModel, day_label
from ui.views.chat.header import presence_text
from ui.views.chat.text import jumbo_emoji, link_spans
from ui.views.conversation_list import list_time
from ui.views.quick_switcher import match_score
from ui.views.search_dialog import highlight_html, snippet


@pytest.fixture
def bridge(qapp: object) -> FakeBridge:
    return FakeBridge()


# -- conversation list ---------------------------------------------------------------------


def test_conversations_sorted_by_activity_and_live(qloop, bridge: FakeBridge) -> None:
    alice, bob, carol = contact("Alice"), contact("Bob"), contact("Carol")
    bridge.add(alice, [message(alice.id, 1)])
    bridge.add(bob, [message(bob.id, 5)])
    bridge.add(carol, [])
    model = ConversationListModel(bridge)
    qloop.run(model.load())
    names = [model.data(model.index(r)) for r in range(model.rowCount())]
    assert names[:2] == ["Bob", "Alice"]

    totals: list[int] = []
    model.unreadTotalChanged.connect(totals.append)
    moved: list[int] = []
    model.rowsMoved.connect(lambda *_a: moved.append(1))
    new = message(alice.id, 9, "hi", state=MessageState.RECEIVED)
    new = new.__class__(**{**_fields(new), "received_at_ms": int(time.time() * 1000)})
    bridge.deliver(new)
    # Re-sorting and recounting are coalesced (one pass per burst); flush() applies now.
    assert not moved
    model.flush()
    assert model.data(model.index(0)) == "Alice"
    assert moved
    item = model.item(alice.id)
    assert item is not None and item.unread == 1 and item.last == new
    assert totals == [1]
    assert "1 unread" in model.data(model.index(0), Qt.ItemDataRole.AccessibleTextRole)

    # Our own message: no unread, still the newest.
    mine = message(alice.id, 10, "yo", outgoing=True, state=MessageState.QUEUED)
    bridge.deliver(mine)
    model.flush()
    assert model.item(alice.id).unread == 1  # type: ignore[union-attr]
    bridge.messageStatesChanged.emit(alice.id, (mine.msg_id,), int(MessageState.DELIVERED))
    assert model.item(alice.id).last.state is MessageState.DELIVERED  # type: ignore[union-attr]
    # States never move backwards (a late "sent" after "delivered").
    bridge.messageStatesChanged.emit(alice.id, (mine.msg_id,), int(MessageState.SENT))
    assert model.item(alice.id).last.state is MessageState.DELIVERED  # type: ignore[union-attr]

    model.clear_unread(alice.id)
    assert model.unread_total() == 0 and totals[-1] == 0

    bridge.presenceChanged.emit(bob.id, True)
    assert model.item(bob.id).online  # type: ignore[union-attr]

    dave = contact("Dave")
    bridge.contactAdded.emit(dave)
    assert model.row_of(dave.id) >= 0
    renamed = dave.__class__(**{**_fields(dave), "display_name": "David", "verified": True})
    bridge.contactChanged.emit(renamed)
    assert model.item(dave.id).name == "David"  # type: ignore[union-attr]
    assert model.item(dave.id).contact.verified  # type: ignore[union-attr]


def _fields(record: object) -> dict[str, object]:
    return {name: getattr(record, name) for name in record.__slots__}  # type: ignore[attr-defined]


def test_typing_expires_and_clears_on_message(qloop, bridge: FakeBridge) -> None:
    alice = contact("Alice")
    bridge.add(alice)
    model = ConversationListModel(bridge)
    qloop.run(model.load())
    events: list[tuple[str, bool]] = []
    model.typingChanged.connect(lambda cid, on: events.append((cid, on)))
    bridge.typingChanged.emit(alice.id, True)
    assert model.is_typing(alice.id) and model.item(alice.id).typing  # type: ignore[union-attr]
    model._typing_until[alice.id] = 0.0  # as if TYPING_TTL passed without a renewal
    model._expire_typing()
    assert not model.is_typing(alice.id)
    bridge.typingChanged.emit(alice.id, True)
    bridge.deliver(message(alice.id, 3, state=MessageState.RECEIVED))
    assert not model.item(alice.id).typing  # type: ignore[union-attr]
    assert events == [(alice.id, True), (alice.id, False), (alice.id, True), (alice.id, False)]


def test_filter_matches_names(qloop, bridge: FakeBridge) -> None:
    for name in ("Alice Moreau", "Bob", "Carola"):
        bridge.add(contact(name))
    model = ConversationListModel(bridge)
    qloop.run(model.load())
    proxy = ConversationFilterModel()
    proxy.setSourceModel(model)
    proxy.set_filter("  mor ")
    assert [proxy.index(r, 0).data() for r in range(proxy.rowCount())] == ["Alice Moreau"]
    proxy.set_filter("CAR")
    assert proxy.rowCount() == 1
    proxy.set_filter("")
    assert proxy.rowCount() == 3


# -- history paging ------------------------------------------------------------------------


def _history(bridge: FakeBridge, n: int, **kw: int) -> tuple[HistoryModel, str]:
    c = contact("Alice")
    bridge.add(c, [message(c.id, i) for i in range(1, n + 1)])
    return HistoryModel(bridge, c.id, **kw), c.id


def test_history_pages_and_caps(qloop, bridge: FakeBridge) -> None:
    model, _ = _history(bridge, 1000, page_size=50, max_rows=150)
    qloop.run(model.load_latest())
    assert model.rowCount() == 50
    assert model.at_end and not model.at_start
    assert model.record(0).lamport == 951 and model.record(49).lamport == 1000
    assert model.canFetchMore(QModelIndex())

    inserted: list[tuple[int, int]] = []
    model.rowsInserted.connect(lambda _p, a, b: inserted.append((a, b)))
    model.fetchMore(QModelIndex())
    assert not model.canFetchMore(QModelIndex())  # one fetch at a time
    qloop.until(lambda: model.rowCount() == 100)
    assert inserted == [(0, 49)]  # prepended
    assert model.record(0).lamport == 901

    for _ in range(3):
        qloop.run(model.fetch_older())
    # Never more than max_rows: the newest pages were dropped on the other side.
    assert model.rowCount() == 150
    assert not model.at_end
    assert model.record(0).lamport == 751 and model.record(149).lamport == 900

    qloop.run(model.fetch_newer())
    assert model.rowCount() == 150 and model.record(149).lamport == 950
    assert not model.at_start

    qloop.run(model.load_latest())
    assert model.at_end and model.rowCount() == 50


def test_history_reaches_the_start(qloop, bridge: FakeBridge) -> None:
    model, _ = _history(bridge, 70, page_size=50)
    qloop.run(model.load_latest())
    qloop.run(model.fetch_older())
    assert model.rowCount() == 70 and model.at_start
    assert not model.canFetchMore(QModelIndex())


def test_history_load_around_and_rows(qloop, bridge: FakeBridge) -> None:
    model, cid = _history(bridge, 1000, page_size=50)
    target = bridge.messages[cid][499]
    row = qloop.run(model.load_around(target))
    assert model.record(row) == target
    assert model.highlight == target.msg_id
    assert 40 <= model.rowCount() <= 60
    assert not model.at_start and not model.at_end
    record, _day, _prev, _next, highlighted = model.row_view(row)
    assert record == target and highlighted
    assert model.row_view(0)[1] is not None  # the first row always shows its day
    assert model.row_of(target.msg_id) == row
    assert model.row_of(b"nope") == -1


def test_history_live_messages(qloop, bridge: FakeBridge) -> None:
    model, cid = _history(bridge, 120, page_size=50, max_rows=100)
    qloop.run(model.load_latest())
    appended: list[int] = []
    model.appended.connect(appended.append)
    # A burst becomes one insert.
    for i in range(121, 141):
        bridge.deliver(message(cid, i))
    qloop.until(lambda: model.rowCount() == 70)
    assert appended == [20]
    # Following the live end: old rows make room.
    for i in range(141, 181):
        bridge.deliver(message(cid, i))
    qloop.until(lambda: model.record(model.rowCount() - 1).lamport == 180)
    # Following the live end the window keeps about two pages; old ones leave a page at a
    # time.
    assert model.live_rows <= model.rowCount() <= model.live_rows + model.page_size
    assert not model.at_start

    # A peer whose clock was behind: inserted in order, not appended.
    late = message(cid, 175, "late")
    late = late.__class__(**{**_fields(late), "msg_id": (175).to_bytes(8, "big") + b"\x00" * 8})
    bridge.deliver(late)
    qloop.until(lambda: model.row_of(late.msg_id) >= 0)
    assert model.record(model.row_of(late.msg_id) - 1).lamport <= 175

    # Not following (scrolled up) and full: live rows are left for later.
    model.follow_live = False
    beyond: list[int] = []
    model.beyondWindow.connect(beyond.append)
    extra = model.max_rows - model.rowCount() + 5
    for i in range(181, 181 + extra):
        bridge.deliver(message(cid, i))
    qloop.until(lambda: bool(beyond))
    assert beyond == [5]
    assert not model.at_end
    assert model.rowCount() == model.max_rows


def test_history_states_only_move_forward(qloop, bridge: FakeBridge) -> None:
    c = contact("Alice")
    mine = message(c.id, 1, outgoing=True, state=MessageState.QUEUED)
    bridge.add(c, [mine])
    model = HistoryModel(bridge, c.id)
    qloop.run(model.load_latest())
    changed: list[int] = []
    model.dataChanged.connect(lambda a, _b, _r=(): changed.append(a.row()))
    bridge.messageStatesChanged.emit(c.id, (mine.msg_id,), int(MessageState.DELIVERED))
    assert model.record(0).state is MessageState.DELIVERED and changed == [0]
    bridge.messageStatesChanged.emit(c.id, (mine.msg_id,), int(MessageState.SENT))
    assert model.record(0).state is MessageState.DELIVERED and changed == [0]
    bridge.messageStatesChanged.emit("someone else", (mine.msg_id,), int(MessageState.READ))
    assert model.record(0).state is MessageState.DELIVERED


def test_history_groups_and_days(qloop, bridge: FakeBridge) -> None:
    c = contact("Alice")
    base = int(dt.datetime(2024, 5, 1, 10, 0).timestamp() * 1000)
    msgs = [
        message(c.id, 1, sent_at_ms=base),
        message(c.id, 2, sent_at_ms=base + 30_000),  # same author, 30 s later: grouped
        message(c.id, 3, sent_at_ms=base + 60_000, outgoing=True),
        message(c.id, 4, sent_at_ms=base + 86_400_000),  # next day
    ]
    bridge.add(c, msgs)
    model = HistoryModel(bridge, c.id)
    qloop.run(model.load_latest())
    views = [model.row_view(r) for r in range(4)]
    assert views[0][1] is not None and views[1][1] is None and views[3][1] is not None
    assert views[0][3] and views[1][2]  # 0 joins 1
    assert not views[1][3] and not views[2][2]  # different authors
    assert not views[3][2]  # a new day starts a new group


# -- text helpers ---------------------------------------------------------------------------


def test_link_spans() -> None:
    text = "see https://example.org/a_(b), www.test.dev. and (http://x.io/path)"
    spans = [(text[a:b], href) for a, b, href in link_spans(text)]
    assert spans == [
        ("https://example.org/a_(b)", "https://example.org/a_(b)"),
        ("www.test.dev", "https://www.test.dev"),
        ("http://x.io/path", "http://x.io/path"),
    ]
    assert link_spans("no links here, just www.") == []


def test_jumbo_emoji() -> None:
    assert jumbo_emoji("🎉")
    assert jumbo_emoji(" 🎉🎉 ")
    assert jumbo_emoji("👍🏽")
    assert jumbo_emoji("👨‍👩‍👧")  # one family (ZWJ sequence)
    assert jumbo_emoji("❤️")
    assert not jumbo_emoji("🎉🎉🎉🎉")
    assert not jumbo_emoji("ok 🎉")
    assert not jumbo_emoji("")


def test_labels() -> None:
    today = dt.date(2024, 5, 10)
    assert day_label(today, today) == "Today"
    assert day_label(dt.date(2024, 5, 9), today) == "Yesterday"
    assert "2023" in day_label(dt.date(2023, 1, 2), today)
    now = dt.datetime(2024, 5, 10, 12, 0)
    ms = int(dt.datetime(2024, 5, 10, 9, 5).timestamp() * 1000)
    assert "9" in list_time(ms, now)
    old = int(dt.datetime(2022, 3, 4, 9, 5).timestamp() * 1000)
    assert list_time(old, now) == "04/03/2022"


def test_presence_text() -> None:
    from ui.models.conversations import ConversationItem

    item = ConversationItem(contact("Alice"), None, 0, online=True)
    assert presence_text(item) == "online"
    item.online = False
    item.last_seen = None
    assert presence_text(item) == "offline"
    item.last_seen = 1000.0
    assert presence_text(item, now=1030.0) == "last seen just now"
    assert presence_text(item, now=1000.0 + 600) == "last seen 10 min ago"


def test_switcher_and_search_helpers() -> None:
    assert match_score("Alice Moreau", "al") == 0
    assert match_score("Alice Moreau", "mor") == 1
    assert match_score("Alice Moreau", "ice") == 2
    assert match_score("Alice Moreau", "amr") == 4
    assert match_score("Alice Moreau", "xyz") is None
    body = "lorem ipsum " * 20 + "the needle is here " + "dolor sit " * 20
    cut = snippet(body, ["needle"])
    assert "needle" in cut and cut.startswith("…") and len(cut) < 100
    marked = highlight_html("a <b> NEEDLE", ["needle"], "#123456")
    assert "&lt;b&gt;" in marked and '<b style="color:#123456">NEEDLE</b>' in marked

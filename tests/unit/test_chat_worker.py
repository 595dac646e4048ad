"""1:1 chat (messenger/chat.py) with two Chat workers built alone from small fakes of their
ports: real SQLCipher repositories and keyrings, a fake links worker, and a pipe that
encodes and decodes every wire message between the two (no PeerService, no MagicMock).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from messenger.chat import MAX_COUNTER, Chat
from messenger.core.settings import DEFAULT_SETTINGS, SETTING_READ_RECEIPTS, SETTING_TYPING
from messenger.errors import ContactKeyChanged, ContactNotFound, DiskFull, ServiceError
from messenger.events import MessageAdded, MessageStatesChanged, TypingChanged
from messenger.protocol import wire
from messenger.records import MessageRecord, MessageState

from .fake_ports import (
    Events,
    FakeConn,
    FakeLinks,
    InlineDb,
    Person,
    Tasks,
    befriend,
    make_person,
    pipe,
    until,
)

NOW = 1_700_000_000.0


@dataclasses.dataclass
class Side:
    person: Person
    chat: Chat
    links: FakeLinks
    events: Events
    tasks: Tasks
    settings: dict[str, Any]
    offers: list[MessageRecord]  # outbox entries handed to the files port on a resend
    full: list[DiskFull]  # writes that failed for lack of space
    db: DiskDb

    @property
    def id(self) -> str:
        return self.person.id


class DiskDb(InlineDb):
    """The Db port on a disk that can be made full: every write then fails. `busy` stands
    for a database thread at work (no write may run on the loop thread now); a write
    through the thread waits for `gate` when one is set."""

    def __init__(self) -> None:
        self.disk_full = False
        self.busy = False
        self.gate: asyncio.Event | None = None
        self.at_gate = asyncio.Event()  # a write is waiting there
        self.writes: list[tuple[str, int]] = []  # ("task" or "now", items) per write

    async def write(self, bodies: Any, fn: Any, *args: Any) -> Any:
        self.writes.append(("task", len(bodies)))
        if self.gate is not None:
            self.at_gate.set()
            await self.gate.wait()
        if self.disk_full:
            raise DiskFull(Path("/profile"))
        return await super().write(bodies, fn, *args)

    def can_write_now(self, bodies: Any) -> bool:
        return not self.busy

    def write_now(self, fn: Any, *args: Any) -> Any:
        assert not self.busy, "write_now while the database thread is busy"
        self.writes.append(("now", len(args[0])))
        if self.disk_full:
            raise DiskFull(Path("/profile"))
        return super().write_now(fn, *args)


def make_side(folder: Path, name: str) -> Side:
    person = make_person(folder, name)
    links, events, tasks = FakeLinks(), Events(), Tasks()
    settings = dict(DEFAULT_SETTINGS)
    offers: list[MessageRecord] = []
    full: list[DiskFull] = []

    def send_offer_for(conn: Any, record: MessageRecord) -> bool:
        offers.append(record)
        return False  # none of these is a file offer

    db = DiskDb()
    chat = Chat(
        db=db,
        repo=person.repo,
        emit=events,
        tasks=tasks,
        clock=lambda: NOW,
        links=links,  # type: ignore[arg-type]
        contacts=person.contacts,
        settings=settings,
        send_offer_for=send_offer_for,
        not_stored=lambda exc, ids: full.append(exc),
        note_disk_full=full.append,
        space_back=lambda: None,
        batch_max=100,
    )
    return Side(person, chat, links, events, tasks, settings, offers, full, db)


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Side, Side]]:
    a, b = make_side(tmp_path / "a", "Ann"), make_side(tmp_path / "b", "Bob")
    befriend(a.person, b.person)
    a.chat.start()
    b.chat.start()
    try:
        yield a, b
    finally:
        for side in (a, b):
            for conn in side.links.conns.values():
                await conn.aclose()
            await side.tasks.aclose()
            await side.chat.aclose()
            side.person.repo.close()


def connect(a: Side, b: Side) -> tuple[FakeConn, FakeConn]:
    """A live session between the two: each end handed to its side's chat worker."""
    a_end, b_end = pipe(a.id, b.id)
    for side, end in ((a, a_end), (b, b_end)):

        async def handle(conn: FakeConn, message: wire.WireMessage, chat: Chat = side.chat) -> None:
            assert conn.contact_id is not None
            assert chat.on_message(conn.contact_id, conn, message)  # type: ignore[arg-type]

        end.handler = handle
        side.links.conns[end.contact_id or ""] = end
    return a_end, b_end


def states(side: Side, contact_id: str) -> list[MessageState]:
    return [
        state
        for e in side.events.of(MessageStatesChanged)
        if e.contact_id == contact_id
        for state in [e.state] * len(e.msg_ids)
    ]


# -- sending ------------------------------------------------------------------------------


async def test_a_text_to_a_contact_online_is_stored_delivered_and_acknowledged(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    connect(a, b)
    sent = await a.chat.send_text(b.id, "hello Bob")

    assert sent.outgoing and sent.body == "hello Bob" and sent.contact_id == b.id
    assert [e.message for e in a.events.of(MessageAdded)] == [sent]
    await until(lambda: MessageState.DELIVERED in states(a, b.id))
    arrived = [e.message for e in b.events.of(MessageAdded)]
    assert [(r.msg_id, r.body, r.outgoing, r.contact_id) for r in arrived] == [
        (sent.msg_id, "hello Bob", False, a.id)
    ]
    page = await a.chat.history(b.id)
    assert [(r.msg_id, r.state) for r in page] == [(sent.msg_id, MessageState.DELIVERED)]
    assert await a.chat.outbox_counts() == {}
    assert a.links.poked == []


async def test_a_text_to_a_contact_offline_waits_in_the_outbox_and_goes_on_connect(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    first = await a.chat.send_text(b.id, "one")
    second = await a.chat.send_text(b.id, "two")

    assert a.links.poked == [b.id, b.id]  # the dialler is asked to try now
    assert await a.chat.outbox_counts() == {b.id: 2}
    assert b.events.of(MessageAdded) == []

    a_end, _ = connect(a, b)
    await a.chat.flush_outbox(b.id, a_end)  # type: ignore[arg-type]
    assert [r.msg_id for r in a.offers] == [first.msg_id, second.msg_id]  # asked files first
    assert states(a, b.id)[:2] == [MessageState.SENT, MessageState.SENT]
    await until(lambda: states(a, b.id).count(MessageState.DELIVERED) == 2)
    assert [e.message.body for e in b.events.of(MessageAdded)] == ["one", "two"]
    assert await a.chat.outbox_counts() == {}


async def test_a_message_resent_on_a_new_session_is_stored_once_and_acknowledged_again(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    a_end, _ = connect(a, b)
    sent = await a.chat.send_text(b.id, "once")
    await until(lambda: MessageState.DELIVERED in states(a, b.id))
    a.person.repo.record_states([(b.id, [sent.msg_id], MessageState.SENT)])  # ack "lost"

    await a.chat.flush_outbox(b.id, a_end)  # type: ignore[arg-type]
    await until(lambda: states(a, b.id).count(MessageState.DELIVERED) == 2)
    assert [e.message.msg_id for e in b.events.of(MessageAdded)] == [sent.msg_id]
    assert b.person.repo.message_count(a.id) == 1


async def test_what_is_not_sent(pair: tuple[Side, Side]) -> None:
    a, b = pair
    with pytest.raises(ContactNotFound):
        await a.chat.send_text("0" * 64, "to nobody")
    with pytest.raises(ServiceError, match="empty"):
        await a.chat.send_text(b.id, "  \n ")
    with pytest.raises(ServiceError, match="bytes"):
        await a.chat.send_text(b.id, "x" * (wire.MAX_BODY_BYTES + 1))
    a.person.contacts.hold(b.id)  # its safety number changed
    with pytest.raises(ContactKeyChanged) as caught:
        await a.chat.send_text(b.id, "held")
    assert caught.value.contact_id == b.id
    assert a.person.repo.message_count() == 0 and a.events.of(MessageAdded) == []


async def test_sends_gathered_by_the_hundred_are_futures_stored_announced_and_sent_in_order(
    pair: tuple[Side, Side],
) -> None:
    """send_text hands back its batch's future, not a coroutine, so gathering many makes
    no Task per message; each is stored, numbered in call order, announced once before
    the awaits return, and delivered."""
    a, b = pair
    connect(a, b)
    bodies = [f"burst {i}" for i in range(120)]
    pending = [a.chat.send_text(b.id, body) for body in bodies]

    assert all(asyncio.isfuture(p) for p in pending)
    assert a.events.of(MessageAdded) == []  # stored in one batch, not yet
    records = await asyncio.gather(*pending)
    assert [r.body for r in records] == bodies
    assert [r.seq for r in records] == list(range(records[0].seq, records[0].seq + 120))
    assert [e.message for e in a.events.of(MessageAdded)] == records
    await until(lambda: states(a, b.id).count(MessageState.DELIVERED) == 120)
    assert [e.message.body for e in b.events.of(MessageAdded)] == bodies


async def test_a_lone_send_is_written_at_the_end_of_its_loop_pass_not_by_a_task(
    pair: tuple[Side, Side],
) -> None:
    """No batcher task is woken for a message typed alone (a task switch less on the
    send -> delivered path); a burst in one pass is still one write."""
    a, b = pair
    connect(a, b)
    record = await a.chat.send_text(b.id, "alone")
    assert a.db.writes == [("now", 1)]
    assert [e.message for e in a.events.of(MessageAdded)] == [record]
    records = await asyncio.gather(*(a.chat.send_text(b.id, f"b{i}") for i in range(30)))
    assert a.db.writes == [("now", 1), ("now", 30)]
    assert [r.seq for r in records] == list(range(record.seq + 1, record.seq + 31))
    await until(lambda: states(a, b.id).count(MessageState.DELIVERED) == 31)


async def test_a_send_while_a_batch_is_being_written_is_written_after_it(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    connect(a, b)
    a.db.busy, a.db.gate = True, asyncio.Event()  # the thread at work: the batcher writes
    first = asyncio.gather(*(a.chat.send_text(b.id, f"first {i}") for i in range(3)))
    await a.db.at_gate.wait()
    a.db.busy = False  # the thread is free, but the batcher is still writing
    later = a.chat.send_text(b.id, "later")
    a.db.gate.set()
    records = [*await first, await later]
    assert [r.body for r in records] == ["first 0", "first 1", "first 2", "later"]
    assert [r.seq for r in records] == list(range(records[0].seq, records[0].seq + 4))
    assert a.db.writes == [("task", 3), ("task", 1)]
    assert [e.message.body for e in a.events.of(MessageAdded)] == [r.body for r in records]


# -- what arrives -------------------------------------------------------------------------


async def test_a_message_for_another_conversation_closes_the_session(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    a_end, b_end = connect(a, b)
    a_end.send(wire.ChatMessage(os.urandom(16), os.urandom(16), 1, 1, 0, "stray"))
    await a_end.drain()
    assert b_end.close_reason == "message for an unknown conversation"
    assert b.person.repo.message_count() == 0


async def test_an_implausible_lamport_time_closes_the_session(pair: tuple[Side, Side]) -> None:
    a, b = pair
    a_end, b_end = connect(a, b)
    conv = a.person.contacts.conversation(b.id)
    a_end.send(wire.ChatMessage(os.urandom(16), conv, 1, MAX_COUNTER, 0, "late"))
    await a_end.drain()
    assert b_end.close_reason == "implausible Lamport time or sequence number"
    assert b.person.repo.message_count() == 0


async def test_an_unknown_message_is_left_to_the_other_workers(pair: tuple[Side, Side]) -> None:
    a, b = pair
    a_end, _ = connect(a, b)
    assert not a.chat.on_message(b.id, a_end, wire.Ping(7))  # type: ignore[arg-type]


async def test_arrivals_not_stored_for_lack_of_space_are_not_acknowledged(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    a_end, b_end = connect(a, b)

    b.db.disk_full = True
    await a.chat.send_text(b.id, "lost for now")
    await until(lambda: len(b.full) == 1)
    await a_end.drain()
    assert not [m for m in b_end.sent if isinstance(m, wire.Receipt)]
    assert states(a, b.id) == [] and await a.chat.outbox_counts() == {b.id: 1}


# -- receipts -----------------------------------------------------------------------------


async def test_reading_sends_a_read_receipt_when_the_user_allows_it(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    connect(a, b)
    b.settings[SETTING_READ_RECEIPTS] = True
    sent = await a.chat.send_text(b.id, "read me")
    await until(lambda: len(b.events.of(MessageAdded)) == 1)
    assert await b.chat.unread_counts() == {a.id: 1}

    assert await b.chat.mark_read(a.id) == 1
    await until(lambda: MessageState.READ in states(a, b.id))
    assert await b.chat.unread_counts() == {}
    assert [r.state for r in await a.chat.history(b.id)] == [MessageState.READ]
    assert await b.chat.mark_read(a.id) == 0  # nothing new
    assert sent.msg_id in {i for e in a.events.of(MessageStatesChanged) for i in e.msg_ids}


async def test_no_read_receipt_unless_the_user_allows_it(pair: tuple[Side, Side]) -> None:
    a, b = pair
    _, b_end = connect(a, b)
    await a.chat.send_text(b.id, "read quietly")
    await until(lambda: len(b.events.of(MessageAdded)) == 1)

    assert await b.chat.mark_read(a.id) == 1  # read here all the same
    await b_end.drain()
    kinds = [m.kind for m in b_end.sent if isinstance(m, wire.Receipt)]
    assert kinds == [wire.ReceiptKind.DELIVERED]
    assert MessageState.READ not in states(a, b.id)


async def test_a_held_contact_gets_acknowledgements_but_no_read_receipt_or_typing(
    pair: tuple[Side, Side],
) -> None:
    """Threat-model §4.14: what a contact with a changed safety number sends is stored
    and acknowledged (else it is resent for ever), but nothing of ours reaches it: not
    when we read, not while we type."""
    a, b = pair
    _, b_end = connect(a, b)
    b.settings[SETTING_READ_RECEIPTS] = True
    b.person.contacts.hold(a.id)
    await a.chat.send_text(b.id, "from the new key")
    await until(lambda: MessageState.DELIVERED in states(a, b.id))  # acknowledged

    assert await b.chat.mark_read(a.id) == 1  # read here
    b.chat.set_typing(a.id, True)
    await b_end.drain()
    assert [type(m) for m in b_end.sent] == [wire.Receipt]
    assert [m.kind for m in b_end.sent if isinstance(m, wire.Receipt)] == [
        wire.ReceiptKind.DELIVERED
    ]
    assert MessageState.READ not in states(a, b.id) and a.events.of(TypingChanged) == []


async def test_a_burst_of_acknowledgements_is_split_into_receipts_of_the_allowed_size(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    count = wire.MAX_RECEIPT_IDS + 3
    for i in range(count):  # queued while offline, then sent in one resend
        await a.chat.send_text(b.id, f"m{i}")
    a_end, b_end = connect(a, b)
    await a.chat.flush_outbox(b.id, a_end)  # type: ignore[arg-type]
    await until(lambda: states(a, b.id).count(MessageState.DELIVERED) == count)
    sizes = [len(m.msg_ids) for m in b_end.sent if isinstance(m, wire.Receipt)]
    assert sum(sizes) == count and max(sizes) <= wire.MAX_RECEIPT_IDS


# -- typing -------------------------------------------------------------------------------


async def test_typing_is_shown_to_the_contact(pair: tuple[Side, Side]) -> None:
    a, b = pair
    a_end, _ = connect(a, b)
    a.chat.set_typing(b.id, True)
    a.chat.set_typing(b.id, False)
    await a_end.drain()
    assert b.events.of(TypingChanged) == [TypingChanged(a.id, True), TypingChanged(a.id, False)]


async def test_typing_is_neither_sent_nor_shown_when_switched_off(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    a_end, _ = connect(a, b)
    a.settings[SETTING_TYPING] = False
    a.chat.set_typing(b.id, True)
    assert not [m for m in a_end.sent if isinstance(m, wire.Typing)]

    a.settings[SETTING_TYPING] = True
    b.settings[SETTING_TYPING] = False  # the receiver does not want to see it
    a.chat.set_typing(b.id, True)
    await a_end.drain()
    assert [m for m in a_end.sent if isinstance(m, wire.Typing)] != []
    assert b.events.of(TypingChanged) == []


async def test_typing_to_someone_offline_or_unknown_sends_nothing(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    a.chat.set_typing(b.id, True)  # offline: no connection
    a.chat.set_typing("0" * 64, True)  # not a contact
    assert a.links.conns == {}


# -- history, search, conversations -------------------------------------------------------


async def test_history_pages_backwards_and_forwards(pair: tuple[Side, Side]) -> None:
    a, b = pair
    sent = [await a.chat.send_text(b.id, f"message {i}") for i in range(7)]

    newest = await a.chat.history(b.id, limit=3)
    assert [r.body for r in newest] == ["message 4", "message 5", "message 6"]
    cursor = (newest[0].lamport, newest[0].msg_id)
    older = await a.chat.history(b.id, limit=3, before=cursor)
    assert [r.body for r in older] == ["message 1", "message 2", "message 3"]
    oldest = await a.chat.history(b.id, limit=3, before=(older[0].lamport, older[0].msg_id))
    assert [r.body for r in oldest] == ["message 0"]
    after = await a.chat.history(b.id, limit=2, after=(sent[2].lamport, sent[2].msg_id))
    assert [r.body for r in after] == ["message 3", "message 4"]
    assert await a.chat.history(a.id) == []  # a conversation nobody had


async def test_search_finds_words_newest_first_in_pages(pair: tuple[Side, Side]) -> None:
    a, b = pair
    for i in range(5):
        await a.chat.send_text(b.id, f"apple number {i}")
    await a.chat.send_text(b.id, "pear")

    first = await a.chat.search("apple", limit=2)
    assert [r.body for r in first] == ["apple number 4", "apple number 3"]
    rest = await a.chat.search("apple", limit=10, before=first[-1].row_id)
    assert [r.body for r in rest] == ["apple number 2", "apple number 1", "apple number 0"]
    assert [r.body for r in await a.chat.search("pea")] == ["pear"]  # prefix of the last word
    assert await a.chat.search("apple", contact_id=a.id) == []  # another conversation
    assert await a.chat.search("   ") == []


async def test_conversations_summarise_each_contact(pair: tuple[Side, Side]) -> None:
    a, b = pair
    [summary] = await a.chat.conversations()
    assert summary.contact.id == b.id and summary.last_message is None
    assert not summary.online and summary.queued == 0

    await a.chat.send_text(b.id, "queued")
    connect(a, b)
    [summary] = await a.chat.conversations()
    assert summary.online and summary.queued == 1
    assert summary.last_message is not None and summary.last_message.body == "queued"
    assert summary.last_activity == summary.last_message.sent_at_ms / 1000

"""Arrivals stored in the read that brought them (messenger/arrivals.py):
the chat worker built alone from fakes of its ports (test_chat_worker's), its messages
handed over as the transport's fast path does: `on_message` for each message of a read,
then `arrivals_done`. Everything asserted right after `arrivals_done` happened inside
that synchronous call."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from messenger.events import MessageAdded
from messenger.protocol import wire

from .fake_ports import FakeConn, befriend, until
from .test_chat_worker import Side, make_side


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Side, Side]]:
    a, b = make_side(tmp_path / "a", "Ann"), make_side(tmp_path / "b", "Bob")
    befriend(a.person, b.person)
    b.chat.start()
    try:
        yield a, b
    finally:
        await b.tasks.aclose()
        await b.chat.aclose()
        for side in (a, b):
            side.person.repo.close()


def from_ann(a: Side, b: Side, seq: int, body: str) -> wire.ChatMessage:
    """A message Ann sends Bob (her conversation id with him, her counters)."""
    conv = b.person.contacts.conversation(a.id)
    return wire.ChatMessage(os.urandom(16), conv, seq, seq, 0, body)


def acks(conn: FakeConn) -> list[tuple[bytes, ...]]:
    return [m.msg_ids for m in conn.sent if isinstance(m, wire.Receipt)]


def added(b: Side) -> list[str]:
    return [e.message.body for e in b.events.of(MessageAdded)]


def arrive(b: Side, a: Side, conn: FakeConn, *messages: wire.ChatMessage) -> None:
    for message in messages:
        assert b.chat.on_message(a.id, conn, message)  # type: ignore[arg-type]


async def test_a_read_s_messages_are_stored_and_acknowledged_in_the_read_itself(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    conn = FakeConn(a.id)
    one, two = from_ann(a, b, 1, "one"), from_ann(a, b, 2, "two")
    arrive(b, a, conn, one, two)
    assert b.person.repo.message_count(a.id) == 0  # handed over, not yet written

    b.chat.arrivals_done()
    assert b.person.repo.message_count(a.id) == 2
    assert acks(conn) == [(one.msg_id, two.msg_id)]  # one write, one receipt, in order
    assert added(b) == ["one", "two"]


async def test_a_duplicate_is_acknowledged_again_and_not_added_twice(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    conn = FakeConn(a.id)
    once = from_ann(a, b, 1, "once")
    arrive(b, a, conn, once)
    b.chat.arrivals_done()
    arrive(b, a, conn, once)  # resent: our first receipt was lost
    b.chat.arrivals_done()
    assert acks(conn) == [(once.msg_id,), (once.msg_id,)]
    assert added(b) == ["once"] and b.person.repo.message_count(a.id) == 1


async def test_on_a_full_disk_nothing_is_acknowledged(pair: tuple[Side, Side]) -> None:
    a, b = pair
    conn = FakeConn(a.id)
    b.db.disk_full = True
    arrive(b, a, conn, from_ann(a, b, 1, "lost for now"))
    b.chat.arrivals_done()
    assert len(b.full) == 1
    assert acks(conn) == [] and added(b) == [] and b.person.repo.message_count(a.id) == 0


async def test_with_the_database_thread_busy_the_batcher_writes_them_in_order(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    conn = FakeConn(a.id)
    b.db.busy = True
    first = from_ann(a, b, 1, "first")
    arrive(b, a, conn, first)
    b.chat.arrivals_done()
    assert acks(conn) == [] and b.person.repo.message_count(a.id) == 0  # left to the task

    b.db.busy = False  # the next read comes before the batcher's turn: behind the first
    second = from_ann(a, b, 2, "second")
    arrive(b, a, conn, second)
    b.chat.arrivals_done()
    assert acks(conn) == [] and b.person.repo.message_count(a.id) == 0
    await until(lambda: bool(acks(conn)))
    assert acks(conn) == [(first.msg_id, second.msg_id)]  # one batch, in order
    assert added(b) == ["first", "second"]


async def test_arrivals_nobody_flushes_are_written_all_the_same(
    pair: tuple[Side, Side],
) -> None:
    """A caller that never says the read is over (the chat worker's own tests): the
    callback scheduled with the first arrival writes them."""
    a, b = pair
    conn = FakeConn(a.id)
    one = from_ann(a, b, 1, "one")
    arrive(b, a, conn, one)
    await until(lambda: bool(acks(conn)))
    assert acks(conn) == [(one.msg_id,)] and added(b) == ["one"]


async def test_a_read_during_a_write_waits_for_it(pair: tuple[Side, Side]) -> None:
    """Nothing overtakes a batch being written: stores and acknowledgements keep the order
    the messages came in."""
    a, b = pair
    conn = FakeConn(a.id)
    b.db.busy = True  # the first goes to the batcher's task, which waits at the gate
    b.db.gate = gate = asyncio.Event()
    first = from_ann(a, b, 1, "first")
    arrive(b, a, conn, first)
    b.chat.arrivals_done()
    await b.db.at_gate.wait()  # the batcher's task is writing it
    b.db.busy = False
    second = from_ann(a, b, 2, "second")
    arrive(b, a, conn, second)
    b.chat.arrivals_done()  # a write is under way: not now
    assert acks(conn) == [] and b.person.repo.message_count(a.id) == 0

    gate.set()
    await until(lambda: len(acks(conn)) == 2)
    assert acks(conn) == [(first.msg_id,), (second.msg_id,)]
    assert added(b) == ["first", "second"]

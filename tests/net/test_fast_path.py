"""The transport's fast path (messenger/net/transport.py): bytes go from the socket to the
session in the read callback; messages the fast handler takes are handled there, anything
else (and everything after it) by the connection's task, in the order it came. Real
sockets (a socketpair) and real Noise sessions; the handlers record what they saw."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from messenger.net.transport import Connection, Timing, send_to_all
from messenger.protocol import wire
from messenger.protocol.session import Received, Session, SessionEvent
from tests.unit.test_session import reconnected

from .conftest import wait_for

Seen = tuple[str, wire.WireMessage | None]


@dataclass
class Recorder:
    """The FastPath and the event handler: Typing is left to the task (and, with a gate,
    held there until the gate opens); anything else is taken in the callback."""

    seen: list[Seen] = field(default_factory=list)
    gate: asyncio.Event | None = None
    fail: bool = False

    def received_now(self, conn: Connection, message: wire.WireMessage) -> bool:
        if self.fail:
            raise RuntimeError("a handler's bug")
        if isinstance(message, wire.Typing):
            return False
        self.seen.append(("now", message))
        return True

    def delivered(self, conn: Connection) -> None:
        self.seen.append(("delivered", None))

    async def on_event(self, conn: Connection, event: SessionEvent) -> None:
        if isinstance(event, Received):
            self.seen.append(("task", event.message))
            if self.gate is not None:
                await self.gate.wait()

    def messages(self, how: str) -> list[wire.WireMessage | None]:
        return [m for kind, m in self.seen if kind == how]


@dataclass
class Link:
    conn: Connection
    ours: Session
    peer: Session  # the other end's session, driven by the test
    peer_writer: asyncio.StreamWriter
    reader: asyncio.StreamReader
    recorder: Recorder
    peer_reader: asyncio.StreamReader | None = None  # what our end writes, at the peer

    def send(self, *messages: wire.WireMessage) -> None:
        """The peer sends these in one write."""
        self.peer.send_many(list(messages))
        self.peer_writer.write(self.peer.data_to_send())


TYPING = wire.Typing(b"\x01" * 16, True)


@pytest.fixture
async def link() -> AsyncIterator[Link]:
    pair = reconnected()  # established in memory; the responder is ours
    ours_sock, peer_sock = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours_sock)
    peer_reader, peer_writer = await asyncio.open_connection(sock=peer_sock)
    recorder = Recorder()
    conn = Connection(reader, writer, pair.responder, recorder.on_event, Timing())
    conn.fast = recorder
    made = Link(conn, pair.responder, pair.initiator, peer_writer, reader, recorder, peer_reader)
    try:
        yield made
    finally:
        if recorder.gate is not None:
            recorder.gate.set()
        conn.close("test over")
        peer_writer.close()
        await conn.closed.wait()


async def run(link: Link) -> asyncio.Task[None]:
    """Start the connection; returns once the transport is fed to it directly (bytes
    that came before went through the StreamReader and the task: a Ping shows when)."""
    task = asyncio.create_task(link.conn.run())
    link.send(wire.Ping(0))
    await wait_for(lambda: bool(link.recorder.seen))
    assert [m for _, m in link.recorder.seen if m is not None] == [wire.Ping(0)]
    link.recorder.seen.clear()
    return task


async def test_the_messages_of_a_read_are_handled_in_the_callback_then_delivered(
    link: Link,
) -> None:
    task = await run(link)
    link.send(wire.Ping(1), wire.Ping(2))
    await wait_for(lambda: len(link.recorder.messages("now")) == 2)
    assert link.recorder.messages("now") == [wire.Ping(1), wire.Ping(2)]
    assert link.recorder.messages("task") == []
    await wait_for(lambda: link.recorder.seen[-1] == ("delivered", None))
    link.conn.close("done")
    await task


async def test_a_message_left_to_the_task_takes_the_rest_of_its_read_with_it(
    link: Link,
) -> None:
    task = await run(link)
    link.send(wire.Ping(1), TYPING, wire.Ping(2))
    await wait_for(lambda: len(link.recorder.messages("task")) == 2)
    assert link.recorder.messages("now") == [wire.Ping(1)]
    assert link.recorder.messages("task") == [TYPING, wire.Ping(2)]
    await wait_for(lambda: link.recorder.seen[-1] == ("delivered", None))
    link.conn.close("done")
    await task


async def test_a_read_while_the_task_is_busy_waits_behind_it(link: Link) -> None:
    task = await run(link)
    link.recorder.gate = gate = asyncio.Event()
    link.send(TYPING)
    await wait_for(lambda: link.recorder.messages("task") == [TYPING])  # held at the gate
    heard = link.conn.last_heard
    link.send(wire.Ping(5))
    await wait_for(lambda: link.conn.last_heard != heard)  # it arrived ...
    assert wire.Ping(5) not in link.recorder.messages("now")  # ... and was not handled
    assert wire.Ping(5) not in link.recorder.messages("task")

    gate.set()
    await wait_for(lambda: wire.Ping(5) in link.recorder.messages("task"))
    assert link.recorder.messages("task") == [TYPING, wire.Ping(5)]
    assert link.recorder.messages("now") == []
    link.conn.close("done")
    await task


async def test_what_the_stream_reader_held_goes_first(link: Link) -> None:
    """A caller may read the first bytes itself (the links worker peeks at them): the
    rest of that read, still in the StreamReader, comes before anything later."""
    link.send(wire.Ping(1))
    head = await link.reader.readexactly(3)  # part of the first frame
    assert link.ours.receive_data(head) == []
    task = asyncio.create_task(link.conn.run())
    link.send(wire.Ping(2))
    await wait_for(lambda: len(link.recorder.seen) >= 3)
    assert [m for _, m in link.recorder.seen if m is not None] == [wire.Ping(1), wire.Ping(2)]
    link.conn.close("done")
    await task


async def test_a_failing_fast_handler_closes_the_connection(link: Link) -> None:
    task = await run(link)
    link.recorder.fail = True
    link.send(wire.Ping(1))
    await asyncio.wait_for(task, timeout=10)
    assert link.conn.closed.is_set()
    assert link.ours.close_reason == "internal error"


async def test_encoded_chat_messages_leave_in_order_with_what_was_sent_around_them() -> None:
    """Connection.send_encoded (a stored batch of ours, issue 15) queues its records
    where `send` would have: in order with the messages sent before and after it, in the
    same flush; nothing is queued on a closed connection."""
    pair = reconnected()
    ours_sock, peer_sock = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours_sock)
    peer_reader, peer_writer = await asyncio.open_connection(sock=peer_sock)
    conn = Connection(reader, writer, pair.responder, Recorder().on_event, Timing())
    try:
        chats = [wire.ChatMessage(bytes([i]) * 16, b"c" * 16, i, i, 5, f"m{i}") for i in (1, 2, 3)]
        receipt = wire.Receipt(wire.ReceiptKind.DELIVERED, (b"r" * 16,))
        conn.send(receipt)
        conn.send_encoded([wire.encode_message(m) for m in chats[:2]])
        conn.send(chats[2])
        conn.flush()
        got: list[wire.WireMessage] = []
        while len(got) < 4:
            data = await asyncio.wait_for(peer_reader.read(65536), 5)
            assert data, "the connection closed"
            got += [e.message for e in pair.initiator.receive_data(data) if isinstance(e, Received)]
        assert got == [receipt, *chats]
        conn.close("done")
        conn.send_encoded([wire.encode_message(chats[0])])
        assert conn._pending == []
    finally:
        conn.close("test over")
        peer_writer.close()
        writer.close()


async def test_one_message_to_many_connections_schedules_one_flush_for_all() -> None:
    """transport.send_to_all (a group message to every member, issue 15): each session
    gets the message once, in order with what it was sent before and after it in the same
    loop pass, in one write; the loop gets one callback for all of their flushes, where
    one `send` per connection scheduled one each. A closed connection gets nothing."""
    loop = asyncio.get_running_loop()
    links = []
    for _ in range(4):
        pair = reconnected()
        ours_sock, peer_sock = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=ours_sock)
        peer_reader, peer_writer = await asyncio.open_connection(sock=peer_sock)
        conn = Connection(reader, writer, pair.responder, Recorder().on_event, Timing())
        links.append((conn, pair.initiator, peer_reader, peer_writer))
    gone, *live = [conn for conn, *_ in links]
    gone.close("gone")
    message = wire.GroupAck(b"g" * 16, (wire.GroupMark(b"a" * 32, 7),))
    before, after = wire.Ping(1), wire.Ping(2)
    scheduled: list[object] = []
    call_soon = loop.call_soon

    def counting(callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
        scheduled.append(callback)
        return call_soon(callback, *args, context=context)

    loop.call_soon = counting  # type: ignore[method-assign]
    try:
        live[0].send(before)  # its flush is due already: the group send joins it
        send_to_all([conn for conn, *_ in links], message, wire.encode_message(message))
        for conn in live:
            conn.send(after)
    finally:
        loop.call_soon = call_soon  # type: ignore[method-assign]
    try:
        assert len(scheduled) == 2  # live[0]'s own flush, and one for the other two
        assert gone._pending == []
        for i, (_, peer, peer_reader, _) in enumerate(links[1:]):
            expected = [before, message, after] if i == 0 else [message, after]
            got: list[wire.WireMessage] = []
            while len(got) < len(expected):
                data = await asyncio.wait_for(peer_reader.read(65536), 5)
                assert data, "the connection closed"
                got += [e.message for e in peer.receive_data(data) if isinstance(e, Received)]
            assert got == expected
    finally:
        for conn, _, _, peer_writer in links:
            conn.close("test over")
            peer_writer.close()


async def test_one_message_to_many_connections_is_encrypted_for_all_then_written() -> None:
    """transport.send_to_all builds every session's frame before the first write, so a
    member woken by its write cannot delay the frames of the members after it."""
    log: list[tuple[str, int]] = []
    conns, peers = [], []
    for i in range(3):
        pair = reconnected()
        ours_sock, peer_sock = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=ours_sock)
        peers.append(await asyncio.open_connection(sock=peer_sock))
        conn = Connection(reader, writer, pair.responder, Recorder().on_event, Timing())
        session_send, write = conn.session.send_records, writer.write

        def sending(
            records: list[tuple[bytes, bool]], i: int = i, send: Any = session_send
        ) -> None:
            log.append(("frame", i))
            send(records)

        def writing(data: bytes, i: int = i, write: Any = write) -> None:
            log.append(("write", i))
            write(data)

        conn.session.send_records = sending  # type: ignore[method-assign]
        writer.write = writing  # type: ignore[method-assign]
        conns.append(conn)
    try:
        message = wire.Ping(5)
        send_to_all(conns, message, wire.encode_message(message))
        await wait_for(lambda: len(log) == 6)
        assert log == [
            ("frame", 0),
            ("frame", 1),
            ("frame", 2),
            ("write", 0),
            ("write", 1),
            ("write", 2),
        ]
    finally:
        for conn in conns:
            conn.close("test over")
        for _, peer_writer in peers:
            peer_writer.close()


async def test_a_session_that_fails_in_send_to_all_is_closed_and_the_others_still_send() -> None:
    """One flush callback serves every connection of a send_to_all: a session whose
    frame cannot be built is closed, and the others' frames still leave."""
    conns, peers, sessions = [], [], []
    for _ in range(3):
        pair = reconnected()
        ours_sock, peer_sock = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=ours_sock)
        peers.append(await asyncio.open_connection(sock=peer_sock))
        conns.append(Connection(reader, writer, pair.responder, Recorder().on_event, Timing()))
        sessions.append(pair.initiator)

    def broken(records: list[tuple[bytes, bool]]) -> None:
        raise RuntimeError("a session's bug")

    conns[1].session.send_records = broken  # type: ignore[method-assign]
    try:
        message = wire.Ping(9)
        send_to_all(conns, message, wire.encode_message(message))
        await conns[1].closed.wait()
        for i in (0, 2):
            got: list[wire.WireMessage] = []
            while not got:
                data = await asyncio.wait_for(peers[i][0].read(65536), 5)
                assert data, "the connection closed"
                got += [
                    e.message for e in sessions[i].receive_data(data) if isinstance(e, Received)
                ]
            assert got == [message]
    finally:
        for conn in conns:
            conn.close("test over")
        for _, peer_writer in peers:
            peer_writer.close()


async def test_a_read_costs_no_push_when_nothing_is_queued_and_an_answer_no_more_calls(
    link: Link,
) -> None:
    """The member's Python per message (issue 15): a live session's frame goes straight
    to its transport-frame handler; a read whose messages are taken and answer nothing
    does not push an empty queue; an answer of one record is sealed
    alone without the batching steps, and the transport is asked directly whether it
    is closing (not through the StreamWriter). Counted on the real parts."""
    task = await run(link)
    conn = link.conn
    calls: list[str] = []

    def counted(name: str, fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return fn(*args, **kwargs)

        return call

    conn._push = counted("push", conn._push)  # type: ignore[method-assign]
    conn.writer.is_closing = counted("writer.is_closing", conn.writer.is_closing)  # type: ignore[method-assign]
    link.ours._send_group = counted("send_group", link.ours._send_group)  # type: ignore[method-assign]
    link.ours._on_frame = counted("on_frame", link.ours._on_frame)  # type: ignore[method-assign]
    link.send(wire.Ping(1))
    await wait_for(lambda: link.recorder.seen[-1:] == [("delivered", None)])
    assert calls == []

    received_now = link.recorder.received_now

    def answering(c: Connection, message: wire.WireMessage) -> bool:
        if isinstance(message, wire.Ping):
            c.send(wire.Pong(message.nonce))
        return received_now(c, message)

    link.recorder.received_now = answering  # type: ignore[method-assign]
    link.send(wire.Ping(2))
    assert link.peer_reader is not None
    answers: list[wire.WireMessage] = []
    while not answers:  # a frame may come in parts
        data = await asyncio.wait_for(link.peer_reader.read(65536), 10)
        answers += [e.message for e in link.peer.receive_data(data) if isinstance(e, Received)]
    assert answers == [wire.Pong(2)]
    assert calls == ["push"]
    conn.close("done")
    await task

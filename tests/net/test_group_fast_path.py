"""Group messages on the transport's fast path (messenger/net/transport.py FastPath):
a member stores a live group message and queues its ack inside the read callback that
brought it, and the author takes the ack there too; whatever came after a frame left to
the connection's task waits behind it. Real peers on 127.0.0.1 (real sockets, real
SQLCipher files); the read callback of one connection is watched by wrapping its
FastPath, and the store and the sends by wrapping those calls: each only records, then
does what it did."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from messenger import GroupId
from messenger.events import GroupDeliveryChanged, GroupMessageAdded, ServiceEvent
from messenger.groups import NO_SIGNATURE, group_key, sign_message
from messenger.net.transport import Connection, FastPath
from messenger.protocol import wire
from messenger.service import PeerService

from .conftest import befriend, wait_for

pytestmark = pytest.mark.timeout(120)

Log = list[tuple[Any, ...]]


class Watch:
    """A connection's FastPath, recording what the read callback was given, what the
    callback took ("now") or left to the task ("left"), around the real handler."""

    def __init__(self, conn: Connection, log: Log) -> None:
        assert conn.fast is not None
        self._inner: FastPath = conn.fast
        self._log = log
        conn.fast = self

    def received_now(self, conn: Connection, message: wire.WireMessage) -> bool:
        name = type(message).__name__
        self._log.append(("read", name))
        taken = self._inner.received_now(conn, message)
        self._log.append(("now" if taken else "left", name))
        return taken

    def delivered(self, conn: Connection) -> None:
        self._inner.delivered(conn)


def record_sends(conn: Connection, log: Log) -> None:
    """Log the acks and pongs `conn` is asked to send (when they are queued)."""
    send, send_encoded = conn.send, conn.send_encoded

    def note(message: wire.WireMessage) -> None:
        if isinstance(message, wire.GroupAck):
            log.append(("ack", tuple(m.seq for m in message.marks)))
        elif isinstance(message, wire.Pong):
            log.append(("pong",))

    def recording(message: wire.WireMessage, encoded: bytes | None = None) -> None:
        note(message)
        send(message, encoded)

    def recording_encoded(records: Sequence[bytes], *, batchable: bool = True) -> None:
        for record in records:  # an ack encoded without a GroupAck (the inline store)
            note(wire.decode_message(record))
        send_encoded(records, batchable=batchable)

    conn.send = recording  # type: ignore[method-assign]
    conn.send_encoded = recording_encoded  # type: ignore[method-assign]


def record_writes(conn: Connection, log: Log) -> None:
    """Log each write of `conn`'s bytes to its socket."""
    writer = conn.writer
    write = writer.write

    def recording(data: Any) -> None:
        log.append(("written",))
        write(data)

    writer.write = recording  # type: ignore[method-assign]


def record_stores(peer: PeerService, log: Log) -> None:
    repo = peer.groups.repo
    store = repo.store_messages

    def recording(messages: Any, now_ms: int) -> Any:
        stored = store(messages, now_ms)
        log.append(("stored", tuple(m.body for m in messages)))
        return stored

    repo.store_messages = recording  # type: ignore[method-assign]


async def _pair(make_peer) -> tuple[PeerService, PeerService, GroupId]:
    """An admin and a member with a group of two, one message already delivered (the
    sessions are settled)."""
    admin, bea = await make_peer("admin"), await make_peer("bea")
    await befriend(admin, bea)
    group_id = (await admin.groups.create_group("Lab", [bea.contact_id])).id
    await wait_for(lambda: bea.groups.get(group_id) is not None, what="bea has the group")
    await admin.groups.send_text(group_id, "first")
    await wait_for(lambda: admin.groups.delivery(group_id).get(bea.contact_id) == 1)
    return admin, bea, group_id


async def _bodies(peer: PeerService, group_id: GroupId) -> list[str]:
    return [m.body for m in await peer.groups.history(group_id)]


async def test_a_live_group_message_is_stored_and_acked_in_the_read_that_brought_it(
    make_peer,
) -> None:
    admin, bea, group_id = await _pair(make_peer)
    at_bea: Log = []
    at_admin: Log = []
    from_admin = bea.links.connection(admin.contact_id)
    to_bea = admin.links.connection(bea.contact_id)
    assert from_admin is not None and to_bea is not None
    Watch(from_admin, at_bea)
    record_sends(from_admin, at_bea)
    record_writes(from_admin, at_bea)
    record_stores(bea, at_bea)
    Watch(to_bea, at_admin)

    def on_event(event: ServiceEvent) -> None:
        if isinstance(event, GroupDeliveryChanged):
            at_admin.append(("delivered", event.seq))

    def at_bea_event(event: ServiceEvent) -> None:
        if isinstance(event, GroupMessageAdded):
            at_bea.append(("added", event.message.body))

    admin.subscribe(on_event)
    bea.subscribe(at_bea_event)
    await admin.groups.send_text(group_id, "live")
    await wait_for(lambda: ("now", "GroupAck") in at_admin, what="the ack at the admin")

    # The member: stored, then acknowledged (the ack written before the event's
    # handlers run), all inside the read callback.
    assert [e for e in at_bea if e[0] != "pong"] == [
        ("read", "GroupMessage"),
        ("stored", ("live",)),
        ("ack", (2,)),
        ("written",),
        ("added", "live"),
        ("now", "GroupMessage"),
    ]
    # The author: the ack taken in its read callback, the delivery noted there.
    assert [e for e in at_admin if "Ping" not in e and "Pong" not in e] == [
        ("read", "GroupAck"),
        ("delivered", 2),
        ("now", "GroupAck"),
    ]
    assert await _bodies(bea, group_id) == ["first", "live"]


async def test_a_group_message_after_a_frame_left_to_the_task_waits_behind_it(
    make_peer,
) -> None:
    admin, bea, group_id = await _pair(make_peer)
    log: Log = []
    from_admin = bea.links.connection(admin.contact_id)
    to_bea = admin.links.connection(bea.contact_id)
    assert from_admin is not None and to_bea is not None
    Watch(from_admin, log)
    record_sends(from_admin, log)
    record_stores(bea, log)

    me = admin.identity.ed25519_public
    group = admin.groups.get(group_id)
    assert group is not None

    def signed(seq: int, body: str) -> wire.GroupMessage:
        return sign_message(
            admin.identity,
            wire.GroupMessage(
                group_key(group_id), me, group.epoch, seq, 10 + seq, 0, body, NO_SIGNATURE
            ),
        )

    # Queued in one loop pass: they leave in one write. The Ping is the service's task's
    # to answer; the message after it must not be handled before it.
    to_bea.send(signed(2, "before the ping"))
    to_bea.send(wire.Ping(77))
    to_bea.send(signed(3, "after the ping"))
    await wait_for(lambda: ("ack", (3,)) in log, what="the second message acknowledged")

    assert log[:4] == [
        ("read", "GroupMessage"),
        ("stored", ("before the ping",)),
        ("ack", (2,)),
        ("now", "GroupMessage"),
    ]
    pong = log.index(("pong",))
    stored = log.index(("stored", ("after the ping",)))
    assert log.index(("left", "Ping")) < pong < stored < log.index(("ack", (3,)))
    assert await _bodies(bea, group_id) == ["first", "before the ping", "after the ping"]


async def test_the_first_session_of_an_accepted_invite_has_the_fast_path(make_peer) -> None:
    """The invitee's session is opened with the invite's own handler; once adopted as
    the contact's live session it takes the fast path like any other."""
    alice, bob = await make_peer("alice"), await make_peer("bob")
    await befriend(alice, bob)
    for peer, other in ((alice, bob), (bob, alice)):
        conn = peer.links.connection(other.contact_id)
        assert conn is not None
        assert conn.fast is peer.links


async def test_a_subscriber_may_unsubscribe_while_an_event_is_handed_round(make_peer) -> None:
    """The service walks its subscribers without copying them for each event (each
    group message is one); one that unsubscribes as it runs still leaves the others
    theirs, and hears nothing after."""
    peer = await make_peer("ada")
    heard: list[tuple[str, ServiceEvent]] = []

    def once(event: ServiceEvent) -> None:
        heard.append(("once", event))
        unsubscribe_once()

    unsubscribe_once = peer.subscribe(once)
    unsubscribe_all = peer.subscribe(lambda e: heard.append(("all", e)))
    first, second = GroupDeliveryChanged("g", "c", 1), GroupDeliveryChanged("g", "c", 2)
    peer._emit(first)
    peer._emit(second)
    assert heard == [("once", first), ("all", first), ("all", second)]
    unsubscribe_all()
    with pytest.raises(ValueError):
        unsubscribe_all()  # as list.remove: once only

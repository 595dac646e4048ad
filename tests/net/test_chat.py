"""Invite, accept and chat between real peers on loopback."""

from __future__ import annotations

import asyncio

import pytest

from messenger import InviteFailed, MessageTooLong
from messenger.events import MessageAdded, MessageStatesChanged
from messenger.protocol.wire import MAX_BODY_BYTES
from messenger.records import MessageState

from .conftest import Clock, befriend, wait_for


async def _bodies(service, contact_id):
    return [(m.outgoing, m.body) for m in await service.chat.history(contact_id, limit=1000)]


async def _conversation(service, contact_id):
    return [
        (m.msg_id, m.lamport, m.body) for m in await service.chat.history(contact_id, limit=1000)
    ]


async def test_two_peers_chat_both_ways(make_peer):
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    bob_at_alice, alice_at_bob = await befriend(alice, bob)

    contacts_a = await alice.contacts.all()
    contacts_b = await bob.contacts.all()
    assert [c.display_name for c in contacts_a] == ["Bob"]
    assert [c.display_name for c in contacts_b] == ["Alice"]
    assert alice.contacts.safety_number(contacts_a[0]) == bob.contacts.safety_number(contacts_b[0])

    for i in range(5):
        await alice.chat.send_text(bob_at_alice, f"hello {i} from alice")
        await bob.chat.send_text(alice_at_bob, f"hello {i} from bob")

    async def everything_delivered() -> bool:
        return not await alice.chat.outbox_counts() and not await bob.chat.outbox_counts()

    await wait_for(everything_delivered)
    await wait_for(lambda: True)
    history_a = await _conversation(alice, bob_at_alice)
    history_b = await _conversation(bob, alice_at_bob)
    assert len(history_a) == 10
    assert history_a == history_b  # same messages, same order on both sides
    states = {m.state for m in await alice.chat.history(bob_at_alice) if m.outgoing}
    assert states == {MessageState.DELIVERED}


async def test_three_peers_pairwise(make_peer):
    a, b, c = [await make_peer(n) for n in ("ann", "ben", "cat")]
    ab = await befriend(a, b)
    bc = await befriend(b, c)
    ca = await befriend(c, a)
    await a.chat.send_text(ab[0], "a->b")
    await b.chat.send_text(bc[0], "b->c")
    await c.chat.send_text(ca[0], "c->a")
    await b.chat.send_text(ab[1], "b->a")

    async def settled() -> bool:
        return all([not await s.chat.outbox_counts() for s in (a, b, c)])

    await wait_for(settled)
    assert await _conversation(a, ab[0]) == await _conversation(b, ab[1])
    assert await _conversation(b, bc[0]) == await _conversation(c, bc[1])
    assert await _conversation(c, ca[0]) == await _conversation(a, ca[1])
    assert [body for _, body in await _bodies(a, ab[0])] == ["a->b", "b->a"]
    assert len(await a.contacts.all()) == 2


async def test_receipts_and_events(make_peer):
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    bob_at_alice, alice_at_bob = await befriend(alice, bob)
    seen_by_bob: list = []
    states_at_alice: list = []
    bob.subscribe(lambda e: seen_by_bob.append(e) if isinstance(e, MessageAdded) else None)
    alice.subscribe(
        lambda e: states_at_alice.append(e) if isinstance(e, MessageStatesChanged) else None
    )
    await bob.set_setting("read_receipts", True)
    record = await alice.chat.send_text(bob_at_alice, "read me")
    await wait_for(lambda: any(e.message.msg_id == record.msg_id for e in seen_by_bob))
    await wait_for(
        lambda: any(e.state is MessageState.DELIVERED for e in states_at_alice), what="delivered"
    )
    assert await bob.chat.unread_counts() == {alice_at_bob: 1}
    assert await bob.chat.mark_read(alice_at_bob) == 1
    await wait_for(lambda: any(e.state is MessageState.READ for e in states_at_alice))
    assert (await alice.chat.history(bob_at_alice))[-1].state is MessageState.READ
    assert await bob.chat.unread_counts() == {}


async def test_message_size_limit(make_peer):
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    bob_at_alice, _ = await befriend(alice, bob)
    await alice.chat.send_text(bob_at_alice, "é" * (MAX_BODY_BYTES // 2))  # exactly at the limit
    with pytest.raises(MessageTooLong, match="limit"):
        await alice.chat.send_text(bob_at_alice, "x" * (MAX_BODY_BYTES + 1))
    await wait_for(lambda: _outbox_empty(alice))
    assert len(await bob.chat.history(_id_at(bob, alice))) == 1


async def _outbox_empty(service) -> bool:
    return not await service.chat.outbox_counts()


def _id_at(service, other) -> str:
    return other.contact_id


async def test_offline_peer_gets_queue_in_order(make_peer):
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    bob_at_alice, alice_at_bob = await befriend(alice, bob)
    port = bob.listen_port
    await bob.aclose()
    await wait_for(lambda: not alice.contacts.is_online(bob_at_alice))
    for i in range(20):
        await alice.chat.send_text(bob_at_alice, f"queued {i}")
    assert (await alice.chat.outbox_counts())[bob_at_alice] == 20
    bob = await make_peer("bob", reopen=True, listen_port=port)
    await wait_for(lambda: _outbox_empty(alice), timeout=20)
    got = [m.body for m in await bob.chat.history(alice_at_bob, limit=100)]
    assert got == [f"queued {i}" for i in range(20)]


async def test_long_offline_queue_is_resent_in_order(make_peer):
    # More than one Batch and more than one outbox drain step (chat.OUTBOX_DRAIN_EVERY).
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    bob_at_alice, alice_at_bob = await befriend(alice, bob)
    port = bob.listen_port
    await bob.aclose()
    await wait_for(lambda: not alice.contacts.is_online(bob_at_alice))
    count = 700
    for start in range(0, count, 100):
        await asyncio.gather(
            *(alice.chat.send_text(bob_at_alice, f"queued {i}") for i in range(start, start + 100))
        )
    sent = [m.body for m in await alice.chat.history(bob_at_alice, limit=count)]
    bob = await make_peer("bob", reopen=True, listen_port=port)
    await wait_for(lambda: _outbox_empty(alice), timeout=30)
    got = [m.body for m in await bob.chat.history(alice_at_bob, limit=count)]
    assert got == sent
    assert sorted(got) == sorted(f"queued {i}" for i in range(count))


async def test_invite_is_single_use_and_checked(make_peer):
    alice_clock, carol_clock = Clock(), Clock()
    alice = await make_peer("alice", clock=alice_clock)
    bob = await make_peer("bob")
    carol = await make_peer("carol", clock=carol_clock)
    code, _ = await alice.invites.create_invite()
    await bob.invites.accept_invite(code)
    with pytest.raises(InviteFailed, match="already been used"):
        await carol.invites.accept_invite(code)
    assert await carol.contacts.all() == []

    # Expired as far as the acceptor can tell: refused before any connection.
    late, _ = await alice.invites.create_invite(ttl=60)
    carol_clock.offset = 120
    with pytest.raises(InviteFailed, match="expired"):
        await carol.invites.accept_invite(late)
    # The acceptor's clock is behind, but the inviter knows it expired and says so.
    carol_clock.offset = 0
    alice_clock.offset = 120
    with pytest.raises(InviteFailed, match="expired"):
        await carol.invites.accept_invite(late)
    alice_clock.offset = 0
    with pytest.raises(InviteFailed, match="mistyped or truncated"):
        await carol.invites.accept_invite(code[:-5])
    with pytest.raises(InviteFailed, match="own invite"):
        await alice.invites.accept_invite((await alice.invites.create_invite())[0])
    assert await carol.contacts.all() == []
    assert len(await alice.contacts.all()) == 1


async def test_a_typed_message_leaves_only_after_its_outbox_commit(make_peer):
    """DESIGN: a message is kept in the outbox until acknowledged, so it is stored before
    it leaves: no frame goes out while its row is written and committed; it leaves in the
    same loop pass as the commit, and the receipt is recorded against the stored row."""
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    bob_at_alice, alice_at_bob = await befriend(alice, bob)
    await wait_for(lambda: alice.links.ready(bob_at_alice) is not None, what="online")
    conn = alice.links.ready(bob_at_alice)
    assert conn is not None
    during_write: list[int] = []
    real = alice.repo.queue_outgoing_many

    def watched(items, now_ms):  # type: ignore[no-untyped-def]
        before = conn.session.frames_sent
        records = real(items, now_ms)  # written and committed
        during_write.append(conn.session.frames_sent - before)
        return records

    alice.repo.queue_outgoing_many = watched  # type: ignore[method-assign]
    added = []
    alice.subscribe(lambda e: added.append(e) if isinstance(e, MessageAdded) else None)
    for i in range(5):
        before = conn.session.frames_sent
        record = await alice.chat.send_text(bob_at_alice, f"stored, then sent {i}")
        assert during_write[-1] == 0  # nothing left before the commit
        assert conn.session.frames_sent - before == 1  # and it left right after
        assert added[-1].message.msg_id == record.msg_id
        assert (await alice.chat.history(bob_at_alice))[-1].msg_id == record.msg_id
    assert len(during_write) == 5

    async def delivered() -> bool:
        history = await alice.chat.history(bob_at_alice)
        return all(m.state is MessageState.DELIVERED for m in history)

    await wait_for(delivered, what="delivered, recorded")
    bodies = [m.body for m in await bob.chat.history(alice_at_bob)]
    assert bodies == [f"stored, then sent {i}" for i in range(5)]

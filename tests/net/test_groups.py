"""LAN group chat between real peers on 127.0.0.1 (real sockets, real SQLCipher files)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from messenger import GroupId
from messenger.groups import NO_SIGNATURE, group_key, sign_message, sign_roster
from messenger.protocol import wire
from messenger.service import PeerService

from .conftest import befriend, wait_for

pytestmark = pytest.mark.timeout(120)

NAMES = ("admin", "bea", "cai", "dov", "eli")


async def _star(make_peer) -> list[PeerService]:
    """Five peers; only the admin knows everyone (the others are not contacts)."""
    peers = [await make_peer(name) for name in NAMES]
    for other in peers[1:]:
        await befriend(peers[0], other)
    return peers


async def _group(peers: list[PeerService], name: str = "Lab") -> GroupId:
    admin = peers[0]
    record = await admin.groups.create_group(name, [p.contact_id for p in peers[1:]])
    group_id = record.id
    for p in peers:
        await wait_for(lambda p=p: _knows(p, group_id), what=f"{p.display_name} has the group")
    return group_id


def _knows(peer: PeerService, group_id: GroupId) -> bool:
    group = peer.groups.get(group_id)
    return group is not None and group.state.name == "ACTIVE"


async def _bodies(peer: PeerService, group_id: GroupId) -> list[str]:
    return [m.body for m in await peer.groups.history(group_id, limit=100_000)]


def _catching_up() -> bool:
    """A member is still streaming catch-up to another (the task the service names so)."""
    return any(
        t.get_name() == "chinwag-group-catch-up" and not t.done() for t in asyncio.all_tasks()
    )


async def _all_have(peers, group_id: GroupId, count: int) -> None:
    for p in peers:

        async def enough(p=p) -> bool:
            return await p.groups.repo_count(group_id) >= count

        await wait_for(enough, timeout=60, what=f"{p.display_name} has {count}")


async def test_message_reaches_all_in_the_same_order(make_peer):
    peers = await _star(make_peer)
    group_id = await _group(peers)
    # Members that are not contacts reach each other through the roster's introduction.
    for p in peers:
        for q in peers:
            if p is not q:
                await wait_for(lambda p=p, q=q: p.contacts.is_online(q.contact_id), what="mesh")
    sends = [
        peers[i % 5].groups.send_text(group_id, f"m{i} from {NAMES[i % 5]}") for i in range(40)
    ]
    await asyncio.gather(*sends)
    await _all_have(peers, group_id, 40)
    orders = [await _bodies(p, group_id) for p in peers]
    assert all(order == orders[0] for order in orders)
    assert sorted(orders[0]) == sorted(f"m{i} from {NAMES[i % 5]}" for i in range(40))
    # Nobody lists a group-only member as a contact.
    assert [c.display_name for c in await peers[1].contacts.all()] == ["Admin"]


async def _reopen(make_peer, name: str) -> PeerService:
    # The remembered port: the others dial the address they know.
    return await make_peer(name, reopen=True, listen_port=None)


async def test_catch_up_from_a_member_that_is_not_the_author(make_peer):
    peers = await _star(make_peer)
    group_id = await _group(peers)
    admin, author, cai, dov, eli = peers
    await dov.aclose()  # dov is away
    for i in range(50):
        await author.groups.send_text(group_id, f"while dov was away {i}")
    await _all_have([admin, author, cai, eli], group_id, 50)
    await author.aclose()  # the author leaves too: dov can only get them from the others
    dov = await _reopen(make_peer, "dov")
    await _all_have([dov], group_id, 50)
    assert await _bodies(dov, group_id) == [f"while dov was away {i}" for i in range(50)]
    assert not dov.contacts.is_online(author.contact_id)
    # Nothing twice, whoever passed it on. Awaited, not slept on: once no catch-up stream
    # is left to send (every peer runs in this loop), a later message from each member
    # linked to dov arrives after every copy that member sent on that link (a member not
    # linked now sent nothing, and one linked later streams only what dov's marks lack).
    # And dov linked to a member: it caught up from someone (the author is gone), but with
    # the tests' 3 s keepalive a loop stalled by a busy machine can end every link at
    # once; they are dialled again at once, and the check is of a moment they are up.
    others = (admin, cai, eli)

    def settled() -> bool:
        return not _catching_up() and any(p.contacts.is_online(dov.contact_id) for p in others)

    await wait_for(settled, what="every catch-up stream sent, dov linked")
    linked = [p for p in others if p.contacts.is_online(dov.contact_id)]
    for p in linked:
        await p.groups.send_text(group_id, f"after the catch-up, from {p.display_name}")
    await _all_have([dov], group_id, 50 + len(linked))
    assert await dov.groups.repo_count(group_id) == 50 + len(linked)
    assert dov.groups.marks(group_id)[author.contact_id] == 50


async def test_removed_member_gets_nothing_and_cannot_post(make_peer):
    peers = await _star(make_peer)
    group_id = await _group(peers)
    admin, bea, cai, dov, eli = peers
    await eli.groups.send_text(group_id, "eli before removal")
    await _all_have(peers, group_id, 1)
    await admin.groups.remove_members(group_id, [eli.contact_id])
    for p in peers:
        await wait_for(
            lambda p=p: p.groups.get(group_id).epoch == 2, what=f"epoch 2 at {p.display_name}"
        )
    assert eli.groups.get(group_id).state.name == "REMOVED"
    (removal,) = admin.groups.get(group_id).roster.removed
    assert (removal.last_seq, removal.epoch) == (1, 2) and removal.lamport >= 1
    with pytest.raises(Exception, match="no longer a member"):
        await eli.groups.send_text(group_id, "let me in")
    await bea.groups.send_text(group_id, "after eli left")
    await _all_have([admin, bea, cai, dov], group_id, 2)
    # Awaited, not slept on: the group-only members let eli go (their sessions with eli
    # close, so nothing more can come that way), and a 1:1 message from the admin reaches
    # eli after anything the admin sent before it.
    for p in (bea, cai, dov):
        await wait_for(
            lambda p=p: not eli.contacts.is_online(p.contact_id), what=f"{p.display_name} gone"
        )
    await wait_for(lambda: not _catching_up(), what="every catch-up stream sent")
    eli_at_admin = next(c.id for c in await admin.contacts.all() if c.display_name == "Eli")
    barrier = await admin.chat.send_text(eli_at_admin, "still friends")
    admin_at_eli = next(c.id for c in await eli.contacts.all() if c.display_name == "Admin")

    async def barrier_arrived() -> bool:
        history = await eli.chat.history(admin_at_eli, limit=10)
        return any(m.msg_id == barrier.msg_id for m in history)

    await wait_for(barrier_arrived, what="the admin's message at eli")
    assert await _bodies(eli, group_id) == ["eli before removal"]
    # A message eli signs anyway (claiming the old epoch, a fresh seq) is refused.
    forged = sign_message(
        eli.identity,
        wire.GroupMessage(
            group_key(group_id), eli.identity.ed25519_public, 1, 2, 99, 0, "x", NO_SIGNATURE
        ),
    )
    rejected = admin.groups.rejected
    eli.links.connection(admin.contact_id).send(forged)
    await wait_for(lambda: admin.groups.rejected == rejected + 1, what="refused")
    assert await _bodies(admin, group_id) == ["eli before removal", "after eli left"]
    # Group-only members let eli go: no session between eli and bea any more.
    await wait_for(lambda: eli.contact_id not in bea.contact_keys, what="bea forgot eli")


async def test_forged_messages_are_rejected_and_nothing_stored(make_peer):
    peers = await _star(make_peer)
    group_id = await _group(peers)
    admin, bea, cai = peers[:3]
    outsider = await make_peer("xavier")
    await befriend(bea, outsider)
    conn = bea.links.connection(admin.contact_id)
    me = bea.identity.ed25519_public
    key = group_key(group_id)  # the group id on the wire
    good = sign_message(
        bea.identity, wire.GroupMessage(key, me, 1, 1, 1, 0, "genuine", NO_SIGNATURE)
    )
    bad_signature = dataclasses.replace(good, body="tampered")
    not_a_member = sign_message(
        outsider.identity,
        wire.GroupMessage(
            key, outsider.identity.ed25519_public, 1, 1, 1, 0, "outsider", NO_SIGNATURE
        ),
    )
    unsigned = dataclasses.replace(good, seq=2, signature=NO_SIGNATURE)
    future_epoch = sign_message(bea.identity, dataclasses.replace(good, seq=3, epoch=7))
    rejected = admin.groups.rejected
    # Passed on by another member (cai): a signature that does not check is refused.
    # (Over bea's own session the session itself shows that bea sent it: §16.4.)
    relay = cai.links.connection(admin.contact_id)
    for forged in (bad_signature, not_a_member, unsigned, future_epoch):
        relay.send(forged)
    await wait_for(lambda: admin.groups.rejected == rejected + 4, what="four refusals")
    # A stale roster (epoch 1 again, after a rename made epoch 2) changes nothing.
    old_roster = admin.groups.get(group_id).roster
    await admin.groups.rename(group_id, "Renamed")
    for p in peers:
        await wait_for(
            lambda p=p: p.groups.get(group_id).epoch == 2, what=f"epoch 2 at {p.display_name}"
        )
    bea.links.connection(cai.contact_id).send(old_roster)
    # A roster signed by a member that is no admin is refused.
    usurp = sign_roster(bea.identity, dataclasses.replace(old_roster, epoch=3, admins=(me,)))
    rejected_cai = cai.groups.rejected
    bea.links.connection(cai.contact_id).send(usurp)
    await wait_for(lambda: cai.groups.rejected == rejected_cai + 1, what="usurper refused")
    for p in peers:
        group = p.groups.get(group_id)
        assert (group.epoch, group.roster.name) == (2, "Renamed")
        assert await p.groups.repo_count(group_id) == 0
    # The genuine one still goes through.
    conn.send(good)
    await _all_have([admin], group_id, 1)


async def test_concurrent_roster_changes_converge_after_a_partition(make_peer):
    peers = await _star(make_peer)
    group_id = await _group(peers)
    admin, bea, cai, dov, eli = peers
    await admin.groups.set_admins(group_id, [admin.contact_id, bea.contact_id])
    for p in peers:
        await wait_for(
            lambda p=p: p.groups.get(group_id).epoch == 2, what=f"epoch 2 at {p.display_name}"
        )
    # Partition: {admin, cai, dov} | {bea, eli}; each side changes the roster.
    await bea.aclose()
    await eli.aclose()
    await admin.groups.rename(group_id, "North")
    await admin.groups.send_text(group_id, "from the north")
    for p in (admin, cai, dov):
        await wait_for(lambda p=p: p.groups.get(group_id).roster.name == "North")
    for p in (admin, cai, dov):
        await p.aclose()
    bea = await _reopen(make_peer, "bea")
    eli = await _reopen(make_peer, "eli")
    await wait_for(lambda: bea.contacts.is_online(eli.contact_id), what="bea and eli meet")
    await bea.groups.rename(group_id, "South")
    await bea.groups.remove_members(group_id, [dov.contact_id])
    await bea.groups.send_text(group_id, "from the south")
    await wait_for(lambda: eli.groups.get(group_id).epoch == 4)
    # Heal.
    healed = [
        await _reopen(make_peer, "admin"),
        bea,
        await _reopen(make_peer, "cai"),
        await _reopen(make_peer, "dov"),
        eli,
    ]
    members = [healed[0], bea, healed[2], eli]

    def converged() -> bool:
        versions = {p.groups.get(group_id).version for p in members}
        return len(versions) == 1

    await wait_for(converged, timeout=30, what="one roster everywhere")
    winner = bea.groups.get(group_id).roster
    assert (winner.epoch, winner.name) == (4, "South")  # the longer history wins
    await _all_have(members, group_id, 2)
    orders = [await _bodies(p, group_id) for p in members]
    assert all(order == orders[0] for order in orders)
    dov = healed[3]
    await wait_for(lambda: dov.groups.get(group_id).state.name == "REMOVED", what="dov told")
    assert dov.groups.get(group_id).version == winner_version(bea)


def winner_version(peer: PeerService) -> tuple[int, bytes]:
    return peer.groups.held()[0].version


async def test_a_group_only_member_cannot_chat_one_to_one(make_peer):
    admin, bea, cai = [await make_peer(n) for n in ("admin", "bea", "cai")]
    await befriend(admin, bea)
    await befriend(admin, cai)
    group_id = await _group([admin, bea, cai])
    await wait_for(lambda: bea.contacts.is_online(cai.contact_id), what="bea and cai meet")
    assert cai.contact_id not in {c.id for c in await bea.contacts.all()}
    with pytest.raises(Exception, match="no contact"):
        await bea.contacts.resolve(cai.contact_id)
    # A hand-made 1:1 message over the group session is dropped, nothing stored.
    bea.links.connection(cai.contact_id).send(
        wire.ChatMessage(b"m" * 16, bea.contact_keys.conversation(cai.contact_id), 1, 1, 0, "psst")
    )
    await bea.groups.send_text(group_id, "in the group")
    await _all_have([cai], group_id, 1)  # sent after the 1:1 attempt, on the same session
    assert await cai.db.run(cai.repo.message_count) == 0


async def test_group_messages_are_found_by_search_and_forgotten_with_the_group(make_peer):
    peers = (await _star(make_peer))[:3]
    admin, bea, cai = peers
    group_id = await _group(peers)
    other_id = await _group(peers, "Book club")
    await admin.groups.send_text(group_id, "the café opens at nine")
    await bea.groups.send_text(group_id, "Cafe au lait for everyone?")
    # "Newest first" is the order each peer stored them in: cai's comes after the others
    # only once everyone has those (sent at once, they are concurrent, in any order).
    await _all_have(peers, group_id, 2)
    await cai.groups.send_text(other_id, "chapter nine, then the café")
    await admin.chat.send_text(bea.contact_id, "café, one to one")
    await _all_have(peers, other_id, 1)
    for p in peers:
        # Every word must occur, the last as a prefix; accents do not matter.
        found = await p.groups.search("cafe")
        assert sorted(m.body for m in found) == [
            "Cafe au lait for everyone?",
            "chapter nine, then the café",
            "the café opens at nine",
        ]
        assert [m.body for m in await p.groups.search("nine caf")] == [
            "chapter nine, then the café",
            "the café opens at nine",
        ]  # newest first
        assert [m.body for m in await p.groups.search("caf", group_id=other_id)] == [
            "chapter nine, then the café"
        ]
        assert await p.groups.search("breakfast") == []
        assert await p.groups.search("   ") == []
        # Quotes and FTS syntax in the text are words, not query syntax.
        assert await p.groups.search('"café" OR NEAR(') == []

    # 1:1 messages stay in their own search, group messages in theirs.
    async def arrived() -> bool:
        return [m.body for m in await bea.chat.search("café")] == ["café, one to one"]

    await wait_for(arrived, what="the 1:1 message at bea")
    found = await bea.groups.search("everyone")
    assert [(m.author_name, m.outgoing) for m in found] == [("Bea", True)]
    # A deleted group's messages leave the index with it.
    await cai.groups.delete(other_id)
    assert [m.body for m in await cai.groups.search("chapter")] == []
    assert len(await cai.groups.search("cafe")) == 2

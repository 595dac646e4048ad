"""A contact re-creates its profile (a new identity key) and pairs again under the same
name: the new identity is held (a "safety number changed" state) until the user verifies
or accepts it; nothing of ours reaches it before, and nothing queued is lost.

Real peers on 127.0.0.1 with real SQLCipher profiles; Bob's folder is deleted and made
again with the same name, as a user who reinstalled would.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from messenger.errors import ContactKeyChanged, GroupError, ServiceError
from messenger.events import ContactAdded, ContactChanged, SafetyNumberChanged
from messenger.records import MessageState
from messenger.service import PeerService

from .conftest import PeerFactory, Recorder, befriend, wait_for


async def _outbox(service: PeerService, contact_id: str) -> list[str]:
    return [m.body for m in await service.db.run(service.repo.outbox, contact_id)]


async def _bodies(service: PeerService, contact_id: str) -> list[str]:
    return [m.body for m in await service.chat.history(contact_id, limit=100)]


async def _recreate_bob(
    tmp_path: Path, make_peer: PeerFactory, alice: PeerService, bob: PeerService, via: str
) -> tuple[PeerService, str]:
    """Bob's profile is deleted and made again under the same name; the two pair again
    (Alice invites the new Bob, or the new Bob invites Alice). Returns the new Bob and
    his contact id at Alice."""
    await bob.aclose()
    shutil.rmtree(tmp_path / "bob")
    new_bob = await make_peer("bob")
    assert new_bob.display_name == bob.display_name == "Bob"
    assert new_bob.identity.ed25519_public != bob.identity.ed25519_public
    if via == "alice-invites":
        new_id, _ = await befriend(alice, new_bob)
    else:
        _, new_id = await befriend(new_bob, alice)
    assert new_id == new_bob.contact_id != bob.contact_id
    return new_bob, new_id


@pytest.mark.parametrize("via", ["alice-invites", "bob-invites"])
async def test_a_recreated_profile_is_held_until_accepted(
    tmp_path: Path, make_peer: PeerFactory, via: str
) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    old_id, _ = await befriend(alice, bob)
    await alice.chat.send_text(old_id, "before")
    await wait_for(lambda: _outbox_is(alice, old_id, []), what="the first message delivered")
    events = Recorder(alice)

    # Bob is gone (his laptop died); Alice writes to him anyway.
    new_bob, new_id = await _recreate_bob(tmp_path, make_peer, alice, bob, via)
    await alice.chat.send_text(old_id, "written while Bob was away")

    # The new identity under Bob's name is stored as held, and said so.
    new = await alice.db.run(alice.repo.contact, new_id)
    assert new is not None and new.key_changed and new.replaces == old_id
    assert not new.verified
    changed = events.of(SafetyNumberChanged)
    assert [e.contact.id for e in changed] == [new_id]
    assert [e.contact.id for e in events.of(ContactAdded)] == [new_id]

    # Nothing of Alice's goes to the new key: a send is refused, a file too, and both
    # conversations are as they were (the text for the earlier Bob still waits for him).
    with pytest.raises(ContactKeyChanged) as refused:
        await alice.chat.send_text(new_id, "are you really Bob?")
    assert "Bob's safety number has changed" in str(refused.value)
    assert refused.value.exit_code == 7
    attachment = tmp_path / "note.txt"
    attachment.write_text("a file")
    with pytest.raises(ContactKeyChanged):
        await alice.files.send_file(new_id, attachment)
    with pytest.raises(GroupError, match="safety number has changed"):
        await alice.groups.create_group("Lab", [new_id])
    assert await alice.groups.groups() == []
    assert await _bodies(alice, new_id) == []
    assert await _outbox(alice, old_id) == ["written while Bob was away"]
    assert await _bodies(new_bob, alice.contact_id) == []

    # What the new Bob writes still arrives (it is shown under the banner).
    await new_bob.chat.send_text(alice.contact_id, "it's me, I reinstalled")
    await wait_for(lambda: _bodies_equal(alice, new_id, ["it's me, I reinstalled"]))

    # Alice accepts, choosing to send the waiting text to the new Bob too.
    accepted = await alice.contacts.accept_new_key(new_id, send_queued=True)
    assert not accepted.key_changed and not accepted.verified
    assert any(isinstance(e, ContactChanged) and e.contact.id == new_id for e in events.events)
    await wait_for(
        lambda: _bodies_equal(
            new_bob, alice.contact_id, ["it's me, I reinstalled", "written while Bob was away"]
        ),
        what="the waiting message reached the new Bob after acceptance",
    )
    assert await _outbox(alice, old_id) == []
    sent = await alice.chat.send_text(new_id, "welcome back")
    await wait_for(
        lambda: _state_is(alice, new_id, sent.msg_id, MessageState.DELIVERED), what="delivered"
    )
    with pytest.raises(ServiceError, match="has not changed"):
        await alice.contacts.accept_new_key(new_id)


async def _outbox_is(service: PeerService, contact_id: str, expected: list[str]) -> bool:
    return await _outbox(service, contact_id) == expected


async def _bodies_equal(service: PeerService, contact_id: str, expected: list[str]) -> bool:
    return await _bodies(service, contact_id) == expected


async def _state_is(
    service: PeerService, contact_id: str, msg_id: bytes, state: MessageState
) -> bool:
    return any(
        m.msg_id == msg_id and m.state is state
        for m in await service.chat.history(contact_id, limit=100)
    )


async def test_the_hold_survives_a_restart_and_accepting_leaves_the_queue_alone(
    tmp_path: Path, make_peer: PeerFactory
) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    old_id, _ = await befriend(alice, bob)
    new_bob, new_id = await _recreate_bob(tmp_path, make_peer, alice, bob, "bob-invites")
    await alice.chat.send_text(old_id, "for the Bob I knew")

    # Alice restarts: the hold is read back from the database.
    await alice.aclose()
    alice = await make_peer("alice", reopen=True)
    record = await alice.db.run(alice.repo.contact, new_id)
    assert record is not None and record.key_changed and record.replaces == old_id
    listed = {c.id: c for c in await alice.contacts.all()}
    assert listed[new_id].key_changed and not listed[old_id].key_changed
    summaries = {s.contact.id: s for s in await alice.chat.conversations()}
    assert summaries[new_id].contact.key_changed
    with pytest.raises(ContactKeyChanged):
        await alice.chat.send_text(new_id, "still held?")
    assert await alice.contacts.waiting_for_replaced(new_id) == 1

    # Accepted without moving the queue: the text stays for the earlier Bob.
    await alice.contacts.accept_new_key(new_id, send_queued=False)
    assert await _outbox(alice, old_id) == ["for the Bob I knew"]
    await wait_for(lambda: alice.contacts.is_online(new_id), what="the new Bob reconnects")
    await alice.chat.send_text(new_id, "hello again")
    await wait_for(lambda: _bodies_equal(new_bob, alice.contact_id, ["hello again"]))

    # And that answer is kept across a restart too.
    await alice.aclose()
    alice = await make_peer("alice", reopen=True)
    record = await alice.db.run(alice.repo.contact, new_id)
    assert record is not None and not record.key_changed
    assert await _outbox(alice, old_id) == ["for the Bob I knew"]


async def test_verifying_lifts_the_hold(tmp_path: Path, make_peer: PeerFactory) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    await befriend(alice, bob)
    new_bob, new_id = await _recreate_bob(tmp_path, make_peer, alice, bob, "alice-invites")
    events = Recorder(alice)
    await alice.contacts.set_verified(new_id, True)
    record = await alice.db.run(alice.repo.contact, new_id)
    assert record is not None and record.verified and not record.key_changed
    assert [e.contact.key_changed for e in events.of(ContactChanged)] == [False]
    await alice.chat.send_text(new_id, "verified, hi")
    await wait_for(lambda: _bodies_equal(new_bob, alice.contact_id, ["verified, hi"]))


async def test_someone_else_with_a_new_name_is_not_held(
    tmp_path: Path, make_peer: PeerFactory
) -> None:
    """The hold is for a name we know under another key; a new name is a new contact."""
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    carol = await make_peer("carol")
    await befriend(alice, bob)
    carol_id, _ = await befriend(alice, carol)
    record = await alice.db.run(alice.repo.contact, carol_id)
    assert record is not None and not record.key_changed and record.replaces is None
    await alice.chat.send_text(carol_id, "hi Carol")
    await wait_for(lambda: _bodies_equal(carol, alice.contact_id, ["hi Carol"]))

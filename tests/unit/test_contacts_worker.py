"""The contacts worker (messenger/contacts.py Contacts) built alone from small fakes of its
ports: a real SQLCipher repository and keyring, fake links and LAN presence (no
PeerService, no MagicMock)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from messenger.contacts import Contacts
from messenger.errors import ContactNotFound, ServiceError
from messenger.events import ContactAdded, ContactChanged, ContactRemoved, SafetyNumberChanged
from messenger.identity import Identity, conversation_id, safety_number
from messenger.identity import contact_id as make_contact_id
from messenger.storage.repository import NewContact

from .fake_ports import Events, FakeLan, FakeLinks, InlineDb, Person, befriend, make_person

NOW = 1_700_000_000.0


@dataclasses.dataclass
class World:
    me: Person
    contacts: Contacts
    events: Events
    links: FakeLinks
    lan: FakeLan
    groups: list[Any]
    sent_waiting: list[str]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    me = make_person(tmp_path / "me", "Me")
    events, links, lan = Events(), FakeLinks(), FakeLan()
    groups: list[Any] = []
    sent_waiting: list[str] = []

    async def list_groups() -> list[Any]:
        return groups

    contacts = Contacts(
        own_ed25519=me.identity.ed25519_public,
        db=InlineDb(),
        repo=me.repo,
        emit=events,
        keyring=me.contacts,
        links=links,
        lan=lan,
        groups=list_groups,
        send_waiting=sent_waiting.append,
    )
    try:
        yield World(me, contacts, events, links, lan, groups, sent_waiting)
    finally:
        me.repo.close()


def newcomer(world: World, name: str, *, verified: bool = False) -> NewContact:
    """A contact met through an invite, stored as the invites worker stores one."""
    them = Identity.generate()
    new = NewContact(
        id=make_contact_id(them.ed25519_public),
        display_name=name,
        ed25519_public=them.ed25519_public,
        x25519_public=them.static_public,
        static_certificate=them.static_certificate,
        psk=os.urandom(32),
        discovery_key=os.urandom(32),
        conversation_id=conversation_id(world.me.identity.ed25519_public, them.ed25519_public),
        verified=verified,
        addresses=(),
    )
    world.me.repo.add_contact(new, NOW)
    return new


async def test_a_new_contact_is_known_and_shown(world: World) -> None:
    new = newcomer(world, "Bob")
    record = await world.contacts.added(new)
    assert record.display_name == "Bob" and not record.key_changed
    assert new.id in world.me.contacts and not world.me.contacts.is_held(new.id)
    assert world.events == [ContactAdded(record)]
    assert await world.contacts.all() == [record]
    assert await world.contacts.get(new.id) == record
    assert await world.contacts.get("f" * 32) is None


async def test_a_known_name_with_another_key_is_held_until_the_user_answers(
    world: World,
) -> None:
    old = newcomer(world, "Bob")
    await world.contacts.added(old)
    again = newcomer(world, "bob")  # the same name, another identity key
    record = await world.contacts.added(again)

    assert record.key_changed and record.replaces == old.id
    assert world.me.contacts.is_held(again.id)
    assert world.events.of(SafetyNumberChanged) == [SafetyNumberChanged(record)]

    await world.contacts.set_verified(again.id)
    assert not world.me.contacts.is_held(again.id)
    [changed] = world.events.of(ContactChanged)
    assert changed.contact.verified


async def test_accepting_a_new_key_moves_waiting_texts_only_when_asked(world: World) -> None:
    old = newcomer(world, "Bob")
    await world.contacts.added(old)
    world.me.repo.queue_outgoing_many([(old.id, "one"), (old.id, "two")], int(NOW * 1000))
    again = newcomer(world, "Bob")
    await world.contacts.added(again)
    assert await world.contacts.waiting_for_replaced(again.id) == 2
    assert await world.contacts.waiting_for_replaced(old.id) == 0  # replaces nobody

    record = await world.contacts.accept_new_key(again.id, send_queued=True)

    assert not record.key_changed and not world.me.contacts.is_held(again.id)
    assert world.sent_waiting == [again.id]  # sent now (or dialled)
    assert world.me.repo.outbox_counts() == {again.id: 2}
    changed = [e.contact.id for e in world.events.of(ContactChanged)]
    assert changed == [again.id, old.id]  # the earlier contact's queue changed too
    with pytest.raises(ServiceError, match="has not changed"):
        await world.contacts.accept_new_key(again.id)


async def test_accepting_without_moving_leaves_the_queue_where_it_was(world: World) -> None:
    old = newcomer(world, "Bob")
    await world.contacts.added(old)
    world.me.repo.queue_outgoing_many([(old.id, "one")], int(NOW * 1000))
    again = newcomer(world, "Bob")
    await world.contacts.added(again)

    await world.contacts.accept_new_key(again.id)

    assert world.sent_waiting == []
    assert world.me.repo.outbox_counts() == {old.id: 1}
    with pytest.raises(ContactNotFound):
        await world.contacts.accept_new_key("0" * 32)


async def test_resolve_by_name_or_id_prefix(world: World) -> None:
    bob = await world.contacts.added(newcomer(world, "Bob"))
    bea = await world.contacts.added(newcomer(world, "Bea"))
    assert await world.contacts.resolve("bob") == bob
    assert await world.contacts.resolve(bea.id[:10]) == bea
    with pytest.raises(ContactNotFound, match="no contact named 'Carl'"):
        await world.contacts.resolve("Carl")
    twin = await world.contacts.added(newcomer(world, "Bob"))  # held: same name, new key
    with pytest.raises(ContactNotFound, match="matches several contacts") as caught:
        await world.contacts.resolve("Bob")
    assert bob.id[:8] in str(caught.value) and twin.id[:8] in str(caught.value)


async def test_display_names_cover_groups_and_their_members(world: World) -> None:
    bob = await world.contacts.added(newcomer(world, "Bob"))
    member = SimpleNamespace(contact_id="m" * 32, name="Mo")
    world.groups.append(SimpleNamespace(id="g" * 32, name="Friends", members=[member]))
    assert await world.contacts.display_names() == {
        "g" * 32: "Friends",
        "m" * 32: "Mo",
        bob.id: "Bob",
    }


async def test_a_renamed_contact_is_stored_safe_and_shown(world: World) -> None:
    bob = await world.contacts.added(newcomer(world, "Bob"))
    await world.contacts.renamed(bob.id, " Ro\u202ebert\x07 ")
    [changed] = world.events.of(ContactChanged)
    assert changed.contact.display_name == "Robert"
    assert (await world.contacts.resolve("robert")).id == bob.id


async def test_online_route_and_safety_number(world: World) -> None:
    bob = await world.contacts.added(newcomer(world, "Bob"))
    assert not world.contacts.is_online(bob.id) and world.contacts.route(bob.id) is None
    world.links.conns[bob.id] = SimpleNamespace()  # type: ignore[assignment]
    assert world.contacts.is_online(bob.id) and world.contacts.route(bob.id) == "lan"
    expected = safety_number(world.me.identity.ed25519_public, bob.ed25519_public)
    assert world.contacts.safety_number(bob) == expected


async def test_removing_forgets_everywhere_and_rotates_the_advertising_key(
    world: World, tmp_path: Path
) -> None:
    friend = make_person(tmp_path / "friend", "Friend")
    try:
        befriend(world.me, friend)
        world.me.repo.queue_outgoing_many([(friend.id, "bye")], int(NOW * 1000))
        world.lan.keys[friend.id] = b"k" * 32

        await world.contacts.remove(friend.id)

        assert friend.id not in world.me.contacts
        assert world.links.forgotten == [friend.id]
        assert friend.id not in world.lan.keys and world.lan.rotations == 1
        assert await world.contacts.all() == []
        assert world.me.repo.message_count(friend.id) == 0
        assert world.events == [ContactRemoved(friend.id)]
        with pytest.raises(ContactNotFound):
            await world.contacts.remove(friend.id)
        assert world.lan.rotations == 1
    finally:
        friend.repo.close()


async def test_load_fills_the_keyring_and_holds_changed_keys(world: World) -> None:
    old = newcomer(world, "Bob")
    again = newcomer(world, "Bob")  # stored held, as after a restart
    assert world.me.contacts.keys(old.id) is None
    await world.contacts.load()
    assert old.id in world.me.contacts and again.id in world.me.contacts
    assert world.me.contacts.is_held(again.id) and not world.me.contacts.is_held(old.id)

"""Group sync with GroupManager built alone, wired to small fakes of its ports: members
that were away catch up from whoever was there, acks come back, forgeries are refused."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from messenger.events import GroupMessageAdded
from messenger.groups import GroupManager, group_key
from messenger.protocol import wire
from messenger.records import GroupId
from messenger.storage.group_rows import StoredGroupMessage

from .fake_ports import (
    Events,
    FakeConn,
    FakeLan,
    FakeLinks,
    InlineDb,
    Person,
    Tasks,
    befriend,
    make_person,
    pipe,
    until,
)


@dataclasses.dataclass
class Member:
    person: Person
    groups: GroupManager
    links: FakeLinks
    events: Events
    tasks: Tasks
    removed: list[str]
    offers: list[StoredGroupMessage]

    async def bodies(self, group_id: GroupId) -> list[str]:
        return [m.body for m in await self.groups.history(group_id)]


async def build(person: Person) -> Member:
    links, events, tasks = FakeLinks(), Events(), Tasks()
    removed: list[str] = []
    offers: list[StoredGroupMessage] = []

    async def remove_contact(contact_id: str) -> None:
        removed.append(contact_id)

    async def on_offers(messages: list[StoredGroupMessage]) -> None:
        offers.extend(messages)

    groups = GroupManager(
        me=person.me,
        db=InlineDb(),
        repo=person.repo,
        emit=events,
        tasks=tasks,
        clock=lambda: 1_700_000_000.0,
        links=links,
        contacts=person.contacts,
        lan=FakeLan(),
        remove_contact=remove_contact,
        on_offers=on_offers,
        batch_max=100,
        not_stored=lambda exc, contact_ids: None,  # a full disk is tested in tests/net
    )
    await groups.load()
    return Member(person, groups, links, events, tasks, removed, offers)


@pytest.fixture
async def trio(tmp_path: Path) -> AsyncIterator[tuple[Member, Member, Member]]:
    people = [make_person(tmp_path / n, n) for n in ("ada", "bo", "cy")]
    for i, a in enumerate(people):
        for b in people[i + 1 :]:
            befriend(a, b)
    members = [await build(p) for p in people]
    conns: list[FakeConn] = []
    for m in members:
        m.conns = conns  # type: ignore[attr-defined]
    yield members[0], members[1], members[2]
    for c in conns:
        await c.aclose()
    for m in members:
        await m.groups.aclose()
        await m.tasks.aclose()
        m.person.repo.close()


def connect(a: Member, b: Member) -> tuple[FakeConn, FakeConn]:
    """A live session between two members: both hear that it is up (on_adopted)."""
    a_end, b_end = pipe(a.person.id, b.person.id)
    a_end.handler = a.groups.on_message  # type: ignore[assignment]
    b_end.handler = b.groups.on_message  # type: ignore[assignment]
    a.links.conns[b.person.id] = a_end
    b.links.conns[a.person.id] = b_end
    a.conns.extend((a_end, b_end))  # type: ignore[attr-defined]
    a.groups.on_adopted(a_end, b.person.id)  # type: ignore[arg-type]
    b.groups.on_adopted(b_end, a.person.id)  # type: ignore[arg-type]
    return a_end, b_end


def added(member: Member) -> Callable[[], int]:
    return lambda: len(member.events.of(GroupMessageAdded))


async def test_a_member_that_was_away_catches_up_and_acknowledges(trio) -> None:
    ada, bo, _ = trio
    group = await ada.groups.create_group("Lab", [bo.person.id])
    gid = group.id
    for body in ("one", "two", "three"):
        await ada.groups.send_text(gid, body)
    assert bo.groups.get(gid) is None  # bo was away: nothing reached it
    connect(ada, bo)
    await until(lambda: added(bo)() == 3)
    assert await bo.bodies(gid) == ["one", "two", "three"]
    assert bo.groups.get(gid).epoch == 1
    # bo's acks come back: ada knows bo holds all three of hers.
    await until(lambda: ada.groups.delivery(gid).get(bo.person.id) == 3)


async def test_whoever_was_there_passes_messages_on(trio) -> None:
    ada, bo, cy = trio
    group = await ada.groups.create_group("Lab", [bo.person.id, cy.person.id])
    gid = group.id
    connect(ada, bo)
    await until(lambda: bo.groups.get(gid) is not None)
    await ada.groups.send_text(gid, "while cy was away")
    await until(lambda: added(bo)() == 1)
    # ada goes away; cy meets only bo, and gets the group and ada's message from bo.
    connect(bo, cy)
    await until(lambda: added(cy)() == 1)
    assert await cy.bodies(gid) == ["while cy was away"]
    assert cy.groups.get(gid).roster.signer == ada.person.identity.ed25519_public
    # cy's ack to bo names ada's message: bo does not send it again at the next session.
    assert cy.groups.marks(gid) == {ada.person.id: 1}


async def test_a_forged_message_is_refused_and_not_stored(trio) -> None:
    ada, bo, _ = trio
    group = await ada.groups.create_group("Lab", [bo.person.id])
    gid = group.id
    a_end, _ = connect(ada, bo)
    await until(lambda: bo.groups.get(gid) is not None)
    real = await ada.groups.send_text(gid, "real")
    await until(lambda: added(bo)() == 1)
    forged = wire.GroupMessage(
        group_key(gid),
        ada.person.identity.ed25519_public,
        1,
        real.seq + 1,
        real.lamport + 1,
        0,
        "forged",
        bytes(64),  # not ada's signature
    )
    a_end.send(forged)
    await ada.groups.send_text(gid, "after")  # seq real+1 as well: the genuine one
    await until(lambda: added(bo)() == 2)
    assert bo.groups.rejected == 1
    assert await bo.bodies(gid) == ["real", "after"]


async def test_a_removed_member_hears_it_and_is_let_go(trio) -> None:
    ada, bo, cy = trio
    group = await ada.groups.create_group("Lab", [bo.person.id, cy.person.id])
    gid = group.id
    connect(ada, bo)
    connect(ada, cy)
    await until(lambda: bo.groups.get(gid) is not None and cy.groups.get(gid) is not None)
    await ada.groups.remove_members(gid, [cy.person.id])
    await until(lambda: cy.groups.get(gid).state.name == "REMOVED")
    await until(lambda: bo.groups.get(gid).epoch == 2)
    assert [m.contact_id for m in (await bo.groups.group(gid)).members if not m.is_me] == [
        ada.person.id
    ]

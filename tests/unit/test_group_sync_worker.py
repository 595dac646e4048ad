"""Group sync with GroupManager built alone, wired to small fakes of its ports: members
that were away catch up from whoever was there, acks come back, forgeries are refused."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from messenger.errors import DiskFull
from messenger.events import GroupDeliveryChanged, GroupMessageAdded
from messenger.groups import GroupManager, group_key
from messenger.groups.signing import NO_SIGNATURE, sign_message, verify_messages
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

T = TypeVar("T")


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


class GatedDb(InlineDb):
    """The Db port as the database thread runs hot-path writes: at once when it is idle,
    else one at a time in the order they came (its queue); `gate`, while clear, holds
    the thread busy."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.held = 0  # writes that had to wait
        self._thread = asyncio.Lock()  # first come, first served

    async def write(self, bodies: Any, fn: Callable[..., T], *args: Any) -> T:
        if not self.can_write_now(bodies):
            self.held += 1
        async with self._thread:
            await self.gate.wait()
            return fn(*args)

    def can_write_now(self, bodies: Any) -> bool:
        return not self._thread.locked() and self.gate.is_set()

    def write_now(self, fn: Callable[..., T], *args: Any) -> T:
        if not self.can_write_now(()):
            raise RuntimeError("the database thread is busy")
        return fn(*args)


class FullDb(InlineDb):
    """The Db port on a full disk: every write fails as SQLite's SQLITE_FULL does."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def write(self, bodies: Any, fn: Callable[..., T], *args: Any) -> T:
        raise DiskFull(self.folder)

    def write_now(self, fn: Callable[..., T], *args: Any) -> T:
        raise DiskFull(self.folder)


class CountedVerify:
    """The verify port: the real signature check, recording the messages it was given."""

    def __init__(self) -> None:
        self.checked: list[wire.GroupMessage] = []

    def __call__(self, messages: Sequence[wire.GroupMessage]) -> list[bool]:
        self.checked.extend(messages)
        return verify_messages(messages)


async def build(
    person: Person,
    db: InlineDb | None = None,
    batch_max: int = 100,
    not_stored: Callable[[DiskFull, set[str]], None] = lambda exc, contact_ids: None,
    verify: CountedVerify | None = None,
) -> Member:
    links, events, tasks = FakeLinks(), Events(), Tasks()
    removed: list[str] = []
    offers: list[StoredGroupMessage] = []

    async def remove_contact(contact_id: str) -> None:
        removed.append(contact_id)

    async def on_offers(messages: list[StoredGroupMessage]) -> None:
        offers.extend(messages)

    groups = GroupManager(
        me=person.me,
        db=db or InlineDb(),
        repo=person.repo,
        emit=events,
        tasks=tasks,
        clock=lambda: 1_700_000_000.0,
        links=links,
        contacts=person.contacts,
        lan=FakeLan(),
        remove_contact=remove_contact,
        on_offers=on_offers,
        batch_max=batch_max,
        not_stored=not_stored,  # a whole service on a full disk: tests/net/test_disk_full.py
        verify=verify or verify_messages,
    )
    await groups.load()
    return Member(person, groups, links, events, tasks, removed, offers)


@contextlib.asynccontextmanager
async def members(
    tmp_path: Path, names: tuple[str, ...], **options: dict[str, Any]
) -> AsyncIterator[list[Member]]:
    """Members who are all each other's contacts, built with `options[name]` (build's
    keywords); closed with their connections afterwards."""
    people = [make_person(tmp_path / n, n) for n in names]
    for i, a in enumerate(people):
        for b in people[i + 1 :]:
            befriend(a, b)
    built = [await build(p, **options.get(n, {})) for n, p in zip(names, people, strict=True)]
    conns: list[FakeConn] = []
    for m in built:
        m.conns = conns  # type: ignore[attr-defined]
    try:
        yield built
    finally:
        for c in conns:
            await c.aclose()
        for m in built:
            await m.groups.aclose()
            await m.tasks.aclose()
            m.person.repo.close()


@pytest.fixture
async def trio(tmp_path: Path) -> AsyncIterator[tuple[Member, Member, Member]]:
    async with members(tmp_path, ("ada", "bo", "cy")) as (ada, bo, cy):
        yield ada, bo, cy


def connect(a: Member, b: Member) -> tuple[FakeConn, FakeConn]:
    """A live session between two members: both hear that it is up (on_adopted)."""
    a_end, b_end = pipe(a.person.id, b.person.id)
    a_end.handler = a.groups.on_message  # type: ignore[assignment]
    b_end.handler = b.groups.on_message  # type: ignore[assignment]
    a_end.done, b_end.done = a.groups.arrivals_done, b.groups.arrivals_done
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
    """A member that passes on a message of another author with a bad signature (a
    forgery, or a relay's corruption): refused, and the genuine one is stored."""
    ada, bo, cy = trio
    group = await ada.groups.create_group("Lab", [bo.person.id, cy.person.id])
    gid = group.id
    connect(ada, bo)
    c_end, _ = connect(cy, bo)
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
    c_end.send(forged)  # cy passes it on as ada's
    await until(lambda: bo.groups.rejected == 1)
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


def signed(author: Person, gid: GroupId, seq: int, body: str) -> wire.GroupMessage:
    return sign_message(
        author.identity,
        wire.GroupMessage(
            group_key(gid), author.identity.ed25519_public, 1, seq, seq + 1, 0, body, NO_SIGNATURE
        ),
    )


async def test_a_live_message_is_stored_and_acknowledged_in_its_read(trio) -> None:
    """Nothing queued before it: the message is stored and its ack sent before the
    handler returns (no turn of the committer's task in between)."""
    ada, bo, cy = trio
    group = await ada.groups.create_group("Lab", [bo.person.id, cy.person.id])
    gid = group.id
    connect(ada, bo)
    await until(lambda: bo.groups.get(gid) is not None)
    b_end = bo.links.conns[ada.person.id]
    b_end.sent.clear()
    await bo.groups.on_message(b_end, signed(ada.person, gid, 1, "live"))  # type: ignore[arg-type]
    assert await bo.bodies(gid) == ["live"]
    assert added(bo)() == 1
    acks = [m for m in b_end.sent if isinstance(m, wire.GroupAck)]
    assert [(a.author, a.seq) for a in acks[0].marks] == [(ada.person.identity.ed25519_public, 1)]
    # A bad signature on that path from a member passing ada's message on is refused:
    # not stored, not acknowledged, not shown.
    _, from_cy = connect(cy, bo)
    bo.groups.arrivals_done()  # the transport's end of that read: the next read's first too
    from_cy.sent.clear()
    forged = dataclasses.replace(signed(ada.person, gid, 2, "forged"), signature=bytes(64))
    await bo.groups.on_message(from_cy, forged)  # type: ignore[arg-type]
    assert bo.groups.rejected == 1
    assert await bo.bodies(gid) == ["live"]
    assert added(bo)() == 1
    assert not [m for m in from_cy.sent if isinstance(m, wire.GroupAck)]


async def test_only_a_message_from_its_author_over_its_own_session_skips_the_check(
    tmp_path: Path,
) -> None:
    """The author's own session proves who sent a live message: its signature is not
    checked; the same author's message passed on by another member is."""
    verify = CountedVerify()
    async with members(tmp_path, ("ada", "bo", "cy"), bo={"verify": verify}) as (ada, bo, cy):
        group = await ada.groups.create_group("Lab", [bo.person.id, cy.person.id])
        gid = group.id
        connect(ada, bo)
        connect(ada, cy)
        await until(lambda: bo.groups.get(gid) is not None and cy.groups.get(gid) is not None)
        await ada.groups.send_text(gid, "direct")
        await until(lambda: added(bo)() == 1 and added(cy)() == 1)
        assert verify.checked == []
        # ada goes away; cy passes on what it has of ada's that bo lacks.
        relayed = signed(ada.person, gid, 2, "relayed")
        await cy.groups.on_message(cy.links.conns[ada.person.id], relayed)  # type: ignore[arg-type]
        assert await cy.bodies(gid) == ["direct", "relayed"]
        del ada.links.conns[bo.person.id]
        del bo.links.conns[ada.person.id]
        connect(cy, bo)
        await until(lambda: added(bo)() == 2)
        assert [m.body for m in verify.checked] == ["relayed"]
        assert await bo.bodies(gid) == ["direct", "relayed"]


async def test_a_bad_signature_from_its_author_is_stored_but_refused_when_passed_on(
    trio,
) -> None:
    """An author that signs badly over its own session harms only itself: the member
    stores it (as it was received), and a member it is passed on to refuses it (every
    catch-up message is checked), as if the author had left a gap."""
    ada, bo, cy = trio
    group = await ada.groups.create_group("Lab", [bo.person.id, cy.person.id])
    gid = group.id
    a_end, _ = connect(ada, bo)
    await until(lambda: bo.groups.get(gid) is not None)
    bad = dataclasses.replace(signed(ada.person, gid, 1, "badly signed"), signature=bytes(64))
    a_end.send(bad)
    await until(lambda: added(bo)() == 1)
    assert bo.groups.rejected == 0
    stored = await bo.groups.history(gid)
    assert [m.body for m in stored] == ["badly signed"]
    # cy was away: it meets only bo, gets the roster, and refuses the message.
    connect(bo, cy)
    await until(lambda: cy.groups.rejected == 1)
    assert cy.groups.get(gid) is not None
    assert await cy.bodies(gid) == []
    assert cy.groups.marks(gid).get(ada.person.id, 0) == 0


async def test_the_next_read_is_stored_on_arrival_without_a_loop_pass(trio) -> None:
    """The end of a read (the transport's FastPath.delivered) lets the next read's first
    message be checked and stored on arrival, with no loop callback in between; the
    second message of one read waits to be checked with the rest of it."""
    ada, bo, _ = trio
    group = await ada.groups.create_group("Lab", [bo.person.id])
    gid = group.id
    connect(ada, bo)
    await until(lambda: bo.groups.get(gid) is not None)
    b_end = bo.links.conns[ada.person.id]
    for seq in (1, 2):
        await bo.groups.on_message(b_end, signed(ada.person, gid, seq, f"read {seq}"))  # type: ignore[arg-type]
        bo.groups.arrivals_done()
    assert await bo.bodies(gid) == ["read 1", "read 2"]  # no await let a task run between
    # Two in one read: the second is queued; the end of the read does not let the
    # next one in ahead of it.
    await bo.groups.on_message(b_end, signed(ada.person, gid, 3, "read 3, first"))  # type: ignore[arg-type]
    await bo.groups.on_message(b_end, signed(ada.person, gid, 4, "read 3, second"))  # type: ignore[arg-type]
    bo.groups.arrivals_done()
    await bo.groups.on_message(b_end, signed(ada.person, gid, 5, "read 4"))  # type: ignore[arg-type]
    assert added(bo)() == 3
    await until(lambda: added(bo)() == 5)
    assert await bo.bodies(gid) == ["read 1", "read 2", "read 3, first", "read 3, second", "read 4"]


async def test_an_arrival_is_stored_after_what_waits_for_the_committer(tmp_path: Path) -> None:
    """A live message that arrives while a catch-up waits to be stored (the database
    busy, more queued than one batch) is stored after it, not in between."""
    db = GatedDb()
    bo_options = {"db": db, "batch_max": 2}
    async with members(tmp_path, ("ada", "bo", "cy"), bo=bo_options) as (ada, bo, cy):
        group = await ada.groups.create_group("Lab", [bo.person.id, cy.person.id])
        gid = group.id
        connect(ada, bo)
        connect(ada, cy)
        _, c_end = connect(cy, bo)
        await until(lambda: bo.groups.get(gid) is not None and cy.groups.get(gid) is not None)
        b_end = bo.links.conns[ada.person.id]
        db.gate.clear()
        # One read of six of ada's: the first is checked at once and, the database being
        # busy, queued for the committer (whose write is held at the gate); the other
        # five are checked together and queued behind it.
        burst = [
            asyncio.ensure_future(bo.groups.on_message(b_end, signed(ada.person, gid, i, f"a{i}")))  # type: ignore[arg-type]
            for i in range(1, 7)
        ]
        await until(lambda: db.held == 1)  # the committer's first batch
        live = asyncio.ensure_future(
            bo.groups.on_message(c_end, signed(cy.person, gid, 1, "cy"))  # type: ignore[arg-type]
        )
        await asyncio.sleep(0)
        db.gate.set()
        await asyncio.gather(*burst, live)
        await until(lambda: added(bo)() == 7)
        rows = sorted(await bo.groups.history(gid), key=lambda m: m.row_id)
        assert [m.body for m in rows] == ["a1", "a2", "a3", "a4", "a5", "a6", "cy"]


async def test_a_message_record_counts_the_others_and_who_holds_ours(trio) -> None:
    ada, bo, cy = trio
    group = await ada.groups.create_group("Lab", [bo.person.id, cy.person.id])
    gid = group.id
    connect(ada, bo)
    await until(lambda: bo.groups.get(gid) is not None)
    sent = await ada.groups.send_text(gid, "hello")
    assert (sent.member_count, sent.delivered_to, sent.author_name) == (2, 0, "ada")
    await until(lambda: ada.groups.delivery(gid).get(bo.person.id) == 1)
    (mine,) = await ada.groups.history(gid)
    assert (mine.member_count, mine.delivered_to) == (2, 1)  # bo holds it, cy was away
    (theirs,) = await bo.groups.history(gid)
    assert (theirs.member_count, theirs.delivered_to, theirs.outgoing) == (2, 0, False)
    assert theirs.author_name == "ada"


def log_stores_and_acks(member: Member, conn: FakeConn, log: list[tuple[Any, ...]]) -> None:
    """Record, in order, each store of `member`'s messages and each ack sent on `conn`."""
    repo = member.groups.repo
    store, send, send_encoded = repo.store_messages, conn.send, conn.send_encoded

    def storing(messages: Any, now_ms: int) -> Any:
        stored = store(messages, now_ms)
        log.append(("stored", *(m.body for m in messages)))
        return stored

    def sending(message: wire.WireMessage, encoded: bytes | None = None) -> None:
        if isinstance(message, wire.GroupAck):
            log.append(("ack", *(m.seq for m in message.marks)))
        send(message, encoded)

    def sending_encoded(records: Sequence[bytes], *, batchable: bool = True) -> None:
        for record in records:  # an ack encoded without a GroupAck (the inline store)
            message = wire.decode_message(record)
            if isinstance(message, wire.GroupAck):
                log.append(("ack", *(m.seq for m in message.marks)))
        send_encoded(records, batchable=batchable)

    repo.store_messages = storing  # type: ignore[method-assign]
    conn.send = sending  # type: ignore[method-assign]
    conn.send_encoded = sending_encoded  # type: ignore[method-assign]


async def test_the_fast_path_stores_a_live_message_then_acks_it_before_returning(
    trio,
) -> None:
    """`received_now` (the transport's read callback) takes a live group message and,
    the database being free, stores it and queues its ack before it returns; the
    author takes the ack the same way. Other group matters are left to the task."""
    ada, bo, _ = trio
    group = await ada.groups.create_group("Lab", [bo.person.id])
    gid = group.id
    a_end, b_end = connect(ada, bo)
    await until(lambda: bo.groups.get(gid) is not None)
    a_end.handler = b_end.handler = None  # what each sends is handed over below, by hand
    await ada.groups.send_text(gid, "live")
    (live,) = [m for m in a_end.sent if isinstance(m, wire.GroupMessage)]
    log: list[tuple[Any, ...]] = []
    log_stores_and_acks(bo, b_end, log)  # type: ignore[arg-type]

    assert bo.groups.received_now(b_end, live)  # type: ignore[arg-type]
    assert log == [("stored", "live"), ("ack", 1)]
    assert added(bo)() == 1

    ack = next(m for m in b_end.sent if isinstance(m, wire.GroupAck))
    assert ada.groups.received_now(a_end, ack)  # type: ignore[arg-type]
    assert [e.seq for e in ada.events.of(GroupDeliveryChanged)] == [1]
    assert ada.groups.delivery(gid) == {bo.person.id: 1}

    have = wire.GroupHave(group_key(gid), 1, bytes(32), ())
    assert not bo.groups.received_now(b_end, have)  # type: ignore[arg-type]


async def test_the_inline_store_acks_with_the_mark_and_builds_no_group_ack(trio) -> None:
    """A message stored in the read callback is acknowledged with our contiguous mark of
    its author (0 while an earlier one is missing), encoded straight from those values:
    no GroupAck is built and sent through `send` (issue 15, the member's Python)."""
    ada, bo, _ = trio
    group = await ada.groups.create_group("Lab", [bo.person.id])
    gid = group.id
    _, b_end = connect(ada, bo)
    await until(lambda: bo.groups.get(gid) is not None)
    built: list[wire.WireMessage] = []
    acks: list[wire.WireMessage] = []
    send, send_encoded = b_end.send, b_end.send_encoded

    def counting(message: wire.WireMessage, encoded: bytes | None = None) -> None:
        built.append(message)
        send(message, encoded)

    def decoding(records: Sequence[bytes], *, batchable: bool = True) -> None:
        acks.extend(wire.decode_message(r) for r in records)
        send_encoded(records, batchable=batchable)

    b_end.send = counting  # type: ignore[method-assign]
    b_end.send_encoded = decoding  # type: ignore[method-assign]
    for seq in (2, 1):  # the second first: a gap until the first comes
        assert bo.groups.received_now(b_end, signed(ada.person, gid, seq, f"m{seq}"))  # type: ignore[arg-type]
        bo.groups.arrivals_done()
    key, author = group_key(gid), ada.person.identity.ed25519_public
    assert acks == [
        wire.GroupAck(key, (wire.GroupMark(author, 0),)),
        wire.GroupAck(key, (wire.GroupMark(author, 2),)),
    ]
    assert [m for m in built if isinstance(m, wire.GroupAck)] == []
    assert sorted(await bo.bodies(gid)) == ["m1", "m2"]


async def test_on_a_busy_database_a_live_message_waits_and_is_acked_once_stored(
    tmp_path: Path,
) -> None:
    db = GatedDb()
    async with members(tmp_path, ("ada", "bo"), bo={"db": db}) as (ada, bo):
        group = await ada.groups.create_group("Lab", [bo.person.id])
        gid = group.id
        _, b_end = connect(ada, bo)
        await until(lambda: bo.groups.get(gid) is not None)
        log: list[tuple[Any, ...]] = []
        log_stores_and_acks(bo, b_end, log)
        db.gate.clear()  # the database thread is busy
        assert bo.groups.received_now(b_end, signed(ada.person, gid, 1, "one"))  # type: ignore[arg-type]
        assert bo.groups.received_now(b_end, signed(ada.person, gid, 2, "two"))  # type: ignore[arg-type]
        await until(lambda: db.held == 1)  # the committer waits for the database
        assert log == []  # neither stored nor acknowledged yet
        db.gate.set()
        await until(lambda: len([e for e in log if e[0] == "ack"]) == 2)
        assert [e[0] for e in log] == ["stored", "ack", "stored", "ack"]
        assert [e[1] for e in log if e[0] == "stored"] == ["one", "two"]
        assert await bo.bodies(gid) == ["one", "two"]


async def test_on_a_full_disk_the_fast_path_acks_nothing_and_names_the_sender(
    tmp_path: Path,
) -> None:
    told: list[set[str]] = []

    def not_stored(exc: DiskFull, contact_ids: set[str]) -> None:
        told.append(contact_ids)

    async with members(tmp_path, ("ada", "bo"), bo={"not_stored": not_stored}) as (ada, bo):
        group = await ada.groups.create_group("Lab", [bo.person.id])
        gid = group.id
        _, b_end = connect(ada, bo)
        await until(lambda: bo.groups.get(gid) is not None)
        bo.groups._db = FullDb(tmp_path)  # the disk fills up now
        b_end.sent.clear()
        assert bo.groups.received_now(b_end, signed(ada.person, gid, 1, "lost?"))  # type: ignore[arg-type]
        assert told == [{ada.person.id}]  # its sender is to send it again, later
        assert not [m for m in b_end.sent if isinstance(m, wire.GroupAck)]
        assert bo.groups.marks(gid) == {}  # not marked as held
        assert added(bo)() == 0

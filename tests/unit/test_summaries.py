"""Conversation and group summaries (migration 0008): kept by triggers, they must always
equal what a recount of the stored messages gives, whatever sequence of writes led there.
On a real SQLCipher file, through the repositories' own write paths."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import event, text

from messenger.records import MessageState
from messenger.storage.database import (
    alembic_config,
    create_db_engine,
    migrate,
    open_database,
)
from messenger.storage.group_repository import GroupRepository, NewGroupMessage
from messenger.storage.repository import (
    _INSERT_MESSAGE_HEAD,
    _MESSAGE_VALUES,
    IncomingMessage,
    NewContact,
    Repository,
)
from tests.contacts import random_contact

NOW = 1_700_000_000.0
NOW_MS = int(NOW * 1000)
RECEIVED, SEEN = int(MessageState.RECEIVED), int(MessageState.SEEN)
PENDING = (int(MessageState.QUEUED), int(MessageState.SENT))


def add_contact_0007(repo: Repository, c: NewContact) -> None:
    """A contact as a 0007 schema holds it (today's model has columns 0008 adds)."""
    with repo.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO contacts (id, display_name, ed25519_public, x25519_public, "
            "static_certificate, psk, discovery_key, conversation_id, verified, addresses, "
            "created_at, last_seen, lamport, next_seq, group_only) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, '[]', 0, NULL, 0, 1, 0)",
            (
                c.id,
                c.display_name,
                c.ed25519_public,
                c.x25519_public,
                c.static_certificate,
                c.psk,
                c.discovery_key,
                c.conversation_id,
            ),
        )


def _rows(repo: Repository, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with repo.engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql, params).all()]


# -- recounts, in Python from the raw rows (independent of the triggers' SQL) --------------


def recount_conversation(repo: Repository, contact_id: str) -> tuple[int, int, bytes | None]:
    """(unread, queued, msg_id of the newest message in (lamport, msg_id) order)."""
    rows = _rows(
        repo, "SELECT state, lamport, msg_id FROM messages WHERE contact_id = ?", contact_id
    )
    unread = sum(1 for state, _, _ in rows if state == RECEIVED)
    queued = sum(1 for state, _, _ in rows if state in PENDING)
    newest = max(((lamport, msg_id) for _, lamport, msg_id in rows), default=None)
    return unread, queued, newest[1] if newest else None


def kept_conversation(repo: Repository, contact_id: str) -> tuple[int, int, bytes | None]:
    """The same, as conversations() reports it."""
    (row,) = [r for r in repo.conversations() if r.contact.id == contact_id]
    last = row.last_message.msg_id if row.last_message else None
    return row.unread, row.queued, last


def recount_group(repo: Repository, group_id: bytes) -> tuple[int, tuple[Any, ...] | None]:
    rows = _rows(
        repo, "SELECT seen, lamport, author, seq FROM group_messages WHERE group_id = ?", group_id
    )
    unread = sum(1 for seen, *_ in rows if not seen)
    newest = max((tuple(r[1:]) for r in rows), default=None)
    return unread, newest


def kept_group(repo: Repository, group_id: bytes) -> tuple[int, tuple[Any, ...] | None]:
    rows = _rows(
        repo,
        "SELECT s.unread, m.lamport, m.author, m.seq FROM chat_groups s "
        "LEFT JOIN group_messages m ON m.id = s.last_id WHERE s.id = ?",
        group_id,
    )
    if not rows:
        return 0, None
    unread, *last = rows[0]
    return unread, (tuple(last) if last[0] is not None else None)


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repository]:
    """One database for every example (migrating a fresh one each time is slow); each
    example uses contacts and groups of its own."""
    path = tmp_path_factory.mktemp("summaries") / "chinwag.db"
    eng = open_database(path, os.urandom(32), create=True)

    @event.listens_for(eng, "connect")
    def _fast(dbapi_conn: Any, _record: object) -> None:
        dbapi_conn.execute("PRAGMA synchronous=OFF")  # durability is not the point here

    eng.dispose()
    repo = Repository(eng)
    yield repo
    repo.close()


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    r = Repository(open_database(tmp_path / "chinwag.db", os.urandom(32), create=True))
    yield r
    r.close()


_example = itertools.count()


# -- the state machine ------------------------------------------------------------------------


class Writes(RuleBasedStateMachine):
    """Random sequences of every write the repositories make; the test sets `repo`."""

    repo: Repository
    groups: GroupRepository
    contacts = Bundle("contacts")
    group_ids = Bundle("groups")

    def __init__(self) -> None:
        super().__init__()
        self.prefix = next(_example).to_bytes(4, "big")
        self.mine: list[str] = []  # contacts made by this example (deleted ones too)
        self.my_groups: list[bytes] = []
        self.outgoing: dict[str, list[bytes]] = {}
        self.group_seq = itertools.count(1)

    def msg_id(self, which: int) -> bytes:
        # A small pool per example: the same id arriving twice is common.
        return self.prefix + which.to_bytes(12, "big")

    @rule(target=contacts)
    def add_contact(self) -> str:
        c = random_contact(f"C{len(self.mine)}")
        self.repo.add_contact(c, NOW)
        self.mine.append(c.id)
        return c.id

    @rule(
        contact=contacts,
        batch=st.lists(st.tuples(st.integers(0, 30), st.integers(1, 6)), max_size=6),
    )
    def receive(self, contact: str, batch: list[tuple[int, int]]) -> None:
        if not self._alive(contact):
            return
        messages = [
            IncomingMessage(self.msg_id(which), 1, lamport, NOW_MS, f"m{which}")
            for which, lamport in batch
        ]
        self.repo.store_incoming([(contact, messages)], NOW_MS)

    @rule(contact=contacts, count=st.integers(1, 4))
    def send(self, contact: str, count: int) -> None:
        if not self._alive(contact):
            return
        sent = self.repo.queue_outgoing_many([(contact, "out")] * count, NOW_MS)
        self.outgoing.setdefault(contact, []).extend(r.msg_id for r in sent)

    @rule(
        picks=st.lists(st.integers(0, 50), min_size=1, max_size=5),
        state=st.sampled_from([MessageState.SENT, MessageState.DELIVERED, MessageState.READ]),
        returning=st.booleans(),
    )
    def receipt(self, picks: list[int], state: MessageState, returning: bool) -> None:
        """A receipt for some of our messages to one contact (any of this example's)."""
        if not self.outgoing:
            return
        contact, ours = sorted(self.outgoing.items())[picks[0] % len(self.outgoing)]
        ids = [ours[p % len(ours)] for p in picks]
        self.repo.advance_states_many([(contact, ids, state)], returning=returning)

    @rule(contact=contacts)
    def read(self, contact: str) -> None:
        self.repo.mark_seen(contact)

    @rule(contact=consumes(contacts))
    def delete(self, contact: str) -> None:
        self.repo.delete_contact(contact)

    @rule(target=group_ids)
    def add_group(self) -> bytes:
        group_id = self.prefix + os.urandom(12)
        self.groups.save_roster(
            group_id,
            epoch=1,
            name="G",
            roster=b"r",
            roster_hash=b"h",
            state=0,
            now=NOW,
        )
        self.my_groups.append(group_id)
        return group_id

    @rule(
        group=group_ids,
        batch=st.lists(
            st.tuples(st.integers(0, 2), st.integers(1, 5), st.integers(1, 6), st.booleans()),
            max_size=6,
        ),
    )
    def group_messages(self, group: bytes, batch: list[tuple[int, int, int, bool]]) -> None:
        messages = [
            NewGroupMessage(
                msg_id=os.urandom(16),
                group_id=group,
                author=bytes([author]) * 32,
                seq=seq,  # (group, author, seq) repeats: a duplicate, dropped
                epoch=1,
                lamport=lamport,
                sent_at_ms=NOW_MS,
                body="g",
                signature=b"s",
                outgoing=outgoing,
            )
            for author, seq, lamport, outgoing in batch
        ]
        self.groups.store_messages(messages, NOW_MS)

    @rule(group=group_ids)
    def group_read(self, group: bytes) -> None:
        self.groups.mark_seen(group)

    @rule(group=group_ids)
    def forget_group(self, group: bytes) -> None:
        self.groups.forget_group(group, 3)

    def _alive(self, contact: str) -> bool:
        return bool(_rows(self.repo, "SELECT 1 FROM contacts WHERE id = ?", contact))

    @invariant()
    def conversations_match_a_recount(self) -> None:
        listed = {r.contact.id for r in self.repo.conversations()}
        for contact in self.mine:
            if contact in listed:
                assert kept_conversation(self.repo, contact) == recount_conversation(
                    self.repo, contact
                )
            else:  # deleted, with its messages
                assert recount_conversation(self.repo, contact) == (0, 0, None)
        unread = self.repo.unread_counts()
        queued = self.repo.outbox_counts()
        for contact in self.mine:
            u, q, _ = recount_conversation(self.repo, contact)
            assert unread.get(contact, 0) == u
            assert queued.get(contact, 0) == q

    @invariant()
    def groups_match_a_recount(self) -> None:
        unread = self.groups.unread_counts()
        for group in self.my_groups:
            assert kept_group(self.repo, group) == recount_group(self.repo, group)
            assert unread.get(group, 0) == recount_group(self.repo, group)[0]


def test_summaries_equal_a_recount_after_any_sequence_of_writes(shared: Repository) -> None:
    Writes.repo = shared
    Writes.groups = GroupRepository(shared)
    run_state_machine_as_test(
        Writes,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        ),
    )


# -- specific paths ---------------------------------------------------------------------------


def test_newest_message_is_by_lamport_then_id_not_by_arrival(repo: Repository) -> None:
    c = random_contact("Ana")
    repo.add_contact(c, NOW)
    late_but_old = IncomingMessage(b"\x01" * 16, 1, 2, NOW_MS, "older")
    newest = IncomingMessage(b"\x00" * 16, 2, 5, NOW_MS, "newest")
    tie_bigger_id = IncomingMessage(b"\x02" * 16, 3, 5, NOW_MS, "tie, larger id")
    repo.store_incoming([(c.id, [newest])], NOW_MS)
    repo.store_incoming([(c.id, [late_but_old])], NOW_MS)
    assert kept_conversation(repo, c.id) == (2, 0, newest.msg_id)
    repo.store_incoming([(c.id, [tie_bigger_id])], NOW_MS)
    assert kept_conversation(repo, c.id) == (3, 0, tie_bigger_id.msg_id)
    (row,) = repo.conversations()
    assert row.last_message is not None and row.last_message.body == "tie, larger id"


def test_a_contact_without_messages_is_listed_with_an_empty_summary(repo: Repository) -> None:
    c = random_contact("Ana")
    repo.add_contact(c, NOW)
    (row,) = repo.conversations()
    assert (row.contact.id, row.last_message, row.unread, row.queued) == (c.id, None, 0, 0)


def test_deleting_the_newest_message_falls_back_to_the_one_before(repo: Repository) -> None:
    # Nothing in the app deletes single messages yet; the trigger must still be right.
    c = random_contact("Ana")
    repo.add_contact(c, NOW)
    first, second = repo.queue_outgoing_many([(c.id, "one"), (c.id, "two")], NOW_MS)
    assert kept_conversation(repo, c.id) == (0, 2, second.msg_id)
    with repo.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM messages WHERE msg_id = ?", (second.msg_id,))
    assert kept_conversation(repo, c.id) == (0, 1, first.msg_id)
    with repo.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM messages WHERE msg_id = ?", (first.msg_id,))
    assert kept_conversation(repo, c.id) == (0, 0, None)


def test_moving_a_message_to_another_conversation_recounts_both(repo: Repository) -> None:
    a, b = random_contact("Ana"), random_contact("Bo")
    repo.add_contact(a, NOW)
    repo.add_contact(b, NOW)
    (m,) = repo.store_incoming([(a.id, [IncomingMessage(os.urandom(16), 1, 3, 0, "x")])], 0)
    with repo.engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE messages SET contact_id = ?, state = ? WHERE id = ?", (b.id, SEEN, m.row_id)
        )
    assert kept_conversation(repo, a.id) == recount_conversation(repo, a.id) == (0, 0, None)
    assert kept_conversation(repo, b.id) == recount_conversation(repo, b.id) == (0, 0, m.msg_id)


# -- the migration builds the summaries of a profile made before it ---------------------------


def test_upgrade_to_0008_builds_summaries_of_what_is_stored(tmp_path: Path) -> None:
    eng = create_db_engine(tmp_path / "old.db", os.urandom(32))
    try:
        migrate(eng, "0007")
        old = Repository(eng)
        a, b, quiet = random_contact("Ana"), random_contact("Bo"), random_contact("Quiet")
        for c in (a, b, quiet):
            add_contact_0007(old, c)
        old.store_incoming(
            [(a.id, [IncomingMessage(os.urandom(16), i, i, 0, "in") for i in range(1, 6)])], 0
        )
        sent = old.queue_outgoing_many([(a.id, "x"), (b.id, "y"), (b.id, "z")], NOW_MS)
        old.advance_states_many([(b.id, [sent[1].msg_id], MessageState.DELIVERED)])
        old.mark_seen(b.id)
        group = b"g" * 16
        with eng.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO chat_groups (id, name, epoch, roster_hash, roster, state, "
                    "lamport, next_seq, created_at) VALUES (:g, 'Lab', 1, x'00', x'00', 0, 0, 1, 0)"
                ),
                {"g": group},
            )
            for seq in (1, 2, 3):
                conn.execute(
                    text(
                        "INSERT INTO group_messages (msg_id, group_id, author, seq, epoch, "
                        "lamport, sent_at_ms, body, signature, outgoing, seen) VALUES "
                        "(:m, :g, x'01', :s, 1, :s, 0, 'b', x'00', 0, :seen)"
                    ),
                    {"m": os.urandom(16), "g": group, "s": seq, "seen": int(seq == 1)},
                )
        expected = {c.id: recount_conversation(old, c.id) for c in (a, b, quiet)}
        assert expected[a.id][:2] == (5, 1) and expected[b.id][:2] == (0, 1)

        migrate(eng)

        repo = Repository(eng)
        assert {c.id: kept_conversation(repo, c.id) for c in (a, b, quiet)} == expected
        assert kept_group(repo, group) == recount_group(repo, group) == (2, (3, b"\x01", 3))
    finally:
        eng.dispose()


# -- 0011: the insert trigger moves the Lamport clock --------------------------------------


def _lamport(repo: Repository, contact_id: str) -> int:
    ((lamport,),) = _rows(repo, "SELECT lamport FROM contacts WHERE id = ?", contact_id)
    return int(lamport)


def test_upgrade_to_0011_lets_lone_messages_move_the_counters_and_downgrade_undoes_it(
    tmp_path: Path,
) -> None:
    eng = create_db_engine(tmp_path / "old.db", os.urandom(32))
    try:
        migrate(eng, "0010")
        a = random_contact("Ana")
        Repository(eng).add_contact(a, 0)
        migrate(eng)  # to the head
        repo = Repository(eng)
        repo.store_incoming([(a.id, [IncomingMessage(os.urandom(16), 1, 41, 0, "in")])], 0)
        assert _lamport(repo, a.id) == 41
        repo.store_incoming([(a.id, [IncomingMessage(os.urandom(16), 2, 7, 0, "old")])], 0)
        assert _lamport(repo, a.id) == 41  # never backwards
        # Ours, one at a time (one statement each: the trigger moves both counters), then
        # a batch (the counters read and written around it).
        one, two = (repo.queue_outgoing(a.id, body, NOW_MS) for body in ("one", "two"))
        three, four = repo.queue_outgoing_many([(a.id, "three"), (a.id, "four")], NOW_MS)
        assert [(r.seq, r.lamport) for r in (one, two, three, four)] == [
            (1, 42),
            (2, 43),
            (3, 44),
            (4, 45),
        ]
        assert kept_conversation(repo, a.id) == recount_conversation(repo, a.id)

        cfg = alembic_config()
        with eng.begin() as conn:  # back to 0010: the trigger leaves the clock alone
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0010")
        old = Repository(eng)
        with eng.begin() as conn:
            conn.exec_driver_sql(
                _INSERT_MESSAGE_HEAD + _MESSAGE_VALUES,
                (os.urandom(16), a.id, 0, 3, 99, 0, 0, "raw", int(MessageState.RECEIVED)),
            )
        assert _lamport(old, a.id) == 45
        assert kept_conversation(old, a.id) == recount_conversation(old, a.id)
    finally:
        eng.dispose()


# -- 0012: the group message insert trigger moves the group's counters -----------------------


def _group_counters(repo: Repository, group_id: bytes) -> tuple[int, int]:
    ((lamport, next_seq),) = _rows(
        repo, "SELECT lamport, next_seq FROM chat_groups WHERE id = ?", group_id
    )
    return int(lamport), int(next_seq)


def _group_message(group_id: bytes, seq: int, lamport: int, *, outgoing: bool) -> NewGroupMessage:
    author = b"\x01" * 32 if outgoing else b"\x02" * 32
    return NewGroupMessage(
        os.urandom(16), group_id, author, seq, 1, lamport, NOW_MS, "g", b"s", outgoing
    )


def test_upgrade_to_0012_lets_lone_group_messages_move_the_counters_and_downgrade_undoes_it(
    tmp_path: Path,
) -> None:
    eng = create_db_engine(tmp_path / "old.db", os.urandom(32))
    try:
        migrate(eng, "0011")
        group_id = os.urandom(16)
        GroupRepository(Repository(eng)).save_roster(
            group_id, epoch=1, name="G", roster=b"r", roster_hash=b"h", state=0, now=NOW
        )
        migrate(eng)  # to the head
        repo = Repository(eng)
        groups = GroupRepository(repo)
        # One at a time (one statement each: the trigger moves the counters) ...
        driver = repo._raw_cursor().connection  # the connection the hot paths write on
        statements: list[str] = []
        driver.set_trace_callback(statements.append)
        try:
            assert groups.store_messages([_group_message(group_id, 1, 41, outgoing=False)], NOW_MS)
        finally:
            driver.set_trace_callback(None)
        # (the legacy trace repeats a statement as each trigger of it starts)
        ours = {s for s in statements if not s.startswith("--")}
        assert len(ours) == 1 and ours.pop().startswith("INSERT INTO group_messages")
        assert _group_counters(repo, group_id) == (41, 1)
        assert groups.store_messages([_group_message(group_id, 2, 7, outgoing=False)], NOW_MS)
        assert _group_counters(repo, group_id) == (41, 1)  # never backwards
        assert groups.store_messages([_group_message(group_id, 1, 42, outgoing=True)], NOW_MS)
        assert _group_counters(repo, group_id) == (42, 2)
        # ... a duplicate (same author and seq) is dropped and moves nothing ...
        assert not groups.store_messages([_group_message(group_id, 1, 90, outgoing=True)], NOW_MS)
        assert _group_counters(repo, group_id) == (42, 2)
        # ... and a batch (no UPDATE after its INSERTs any more).
        batch = [
            _group_message(group_id, 2, 43, outgoing=True),
            _group_message(group_id, 3, 44, outgoing=False),
        ]
        assert len(groups.store_messages(batch, NOW_MS)) == 2
        assert _group_counters(repo, group_id) == (44, 3)
        assert kept_group(repo, group_id) == recount_group(repo, group_id)

        cfg = alembic_config()
        with eng.begin() as conn:  # back to 0011: the trigger leaves the counters alone
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0011")
        old = Repository(eng)
        with eng.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO group_messages (msg_id, group_id, author, seq, epoch, lamport, "
                "sent_at_ms, received_at_ms, body, signature, outgoing, seen) "
                "VALUES (?, ?, ?, 9, 1, 99, 0, 0, 'raw', x'00', 1, 1)",
                (os.urandom(16), group_id, b"\x01" * 32),
            )
        assert _group_counters(old, group_id) == (44, 3)
        assert kept_group(old, group_id) == recount_group(old, group_id)
    finally:
        eng.dispose()

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
        # Per contact: the Lamport clock and next seq the messages stored so far make
        # (the largest Lamport time stored, one past the largest seq of ours).
        self.clocks: dict[str, list[int]] = {}

    def msg_id(self, which: int) -> bytes:
        # A small pool per example: the same id arriving twice is common.
        return self.prefix + which.to_bytes(12, "big")

    @rule(target=contacts)
    def add_contact(self) -> str:
        c = random_contact(f"C{len(self.mine)}")
        self.repo.add_contact(c, NOW)
        self.mine.append(c.id)
        self.clocks[c.id] = [0, 1]
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
        # One message goes the lone path (one statement, no transaction around it).
        for r in self.repo.store_incoming([(contact, messages)], NOW_MS):
            self._took(contact, r.lamport)

    @rule(contact=contacts, count=st.integers(1, 4))
    def send(self, contact: str, count: int) -> None:
        if not self._alive(contact):
            return
        # One message goes the lone path (numbered from the counters the repository keeps).
        sent = self.repo.queue_outgoing_many([(contact, "out")] * count, NOW_MS)
        for r in sent:
            assert (r.lamport, r.seq) == (self.clocks[contact][0] + 1, self.clocks[contact][1])
            self.clocks[contact] = [r.lamport, r.seq + 1]
        self.outgoing.setdefault(contact, []).extend(r.msg_id for r in sent)

    def _took(self, contact: str, lamport: int) -> None:
        self.clocks[contact][0] = max(self.clocks[contact][0], lamport)

    @rule(limit=st.integers(1, 8))
    def index(self, limit: int) -> None:
        """The background indexer takes a chunk in, folding it into the kept summaries."""
        self.repo.index_pending(limit)

    @rule(pick=st.integers(0, 200))
    def delete_message(self, pick: int) -> None:
        """One message goes (nothing in the app deletes single messages yet; the triggers
        must still be right), indexed or not: a clock it moved stays moved."""
        mine = [c for c in self.mine if self._alive(c)]
        rows = _rows(
            self.repo,
            f"SELECT id FROM messages WHERE contact_id IN ({','.join('?' * len(mine))}) "
            "ORDER BY id",
            *mine,
        )
        if rows:
            with self.repo.engine.begin() as conn:
                conn.exec_driver_sql("DELETE FROM messages WHERE id = ?", rows[pick % len(rows)])

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
        """Marking read finds every unread message (by the kept count, migration 0014)."""
        unread = _rows(
            self.repo,
            "SELECT msg_id FROM messages WHERE contact_id = ? AND state = ? "
            "ORDER BY lamport, msg_id",
            contact,
            RECEIVED,
        )
        assert self.repo.mark_seen(contact) == [r[0] for r in unread]
        assert recount_conversation(self.repo, contact)[0] == 0

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
    def counters_never_go_back(self) -> None:
        """The kept counters, and what a repository that keeps none reads from the
        database, are the clock and seq of every message stored so far."""
        fresh = Repository(self.repo.engine)
        for contact in self.mine:
            if self._alive(contact):
                expected = tuple(self.clocks[contact])
                assert self.repo.counters(contact) == expected
                assert fresh.counters(contact) == expected

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
        with eng.begin() as conn:  # as 0007's mark_seen did (today's reads the summary)
            conn.exec_driver_sql(
                "UPDATE messages SET state = ? WHERE contact_id = ? AND state = ?",
                (SEEN, b.id, RECEIVED),
            )
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


def _counter_columns(eng: Any, contact_id: str) -> tuple[int, int]:
    with eng.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT lamport, next_seq FROM contacts WHERE id = ?", (contact_id,)
        ).one()
    return int(row[0]), int(row[1])


def _raw_message(eng: Any, contact_id: str, *, outgoing: bool, seq: int, lamport: int) -> bytes:
    msg_id = os.urandom(16)
    state = MessageState.QUEUED if outgoing else MessageState.RECEIVED
    with eng.begin() as conn:
        conn.exec_driver_sql(
            _INSERT_MESSAGE_HEAD + _MESSAGE_VALUES,
            (msg_id, contact_id, int(outgoing), seq, lamport, 0, 0, "raw", int(state)),
        )
    return msg_id


def _to(eng: Any, revision: str) -> None:
    cfg = alembic_config()
    with eng.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def test_upgrade_to_0011_lets_an_insert_move_the_counters_and_downgrade_undoes_it(
    tmp_path: Path,
) -> None:
    eng = create_db_engine(tmp_path / "old.db", os.urandom(32))
    try:
        migrate(eng, "0010")
        a = random_contact("Ana")
        Repository(eng).add_contact(a, 0)
        migrate(eng, "0011")
        _raw_message(eng, a.id, outgoing=False, seq=1, lamport=41)
        assert _counter_columns(eng, a.id) == (41, 1)
        _raw_message(eng, a.id, outgoing=False, seq=2, lamport=7)
        assert _counter_columns(eng, a.id) == (41, 1)  # never backwards
        _raw_message(eng, a.id, outgoing=True, seq=1, lamport=42)
        assert _counter_columns(eng, a.id) == (42, 2)
        _to(eng, "0010")  # the trigger leaves the counters alone
        _raw_message(eng, a.id, outgoing=False, seq=3, lamport=99)
        assert _counter_columns(eng, a.id) == (42, 2)
    finally:
        eng.dispose()


# -- 0013: the indexer folds messages into the summaries; an insert writes no other row ------


def test_storing_a_message_changes_no_other_row(repo: Repository) -> None:
    """The summary and counters no longer move in the message's statement (a second
    page to encrypt and write per lone commit, migration 0013); they are still right."""
    a = random_contact("Ana")
    repo.add_contact(a, NOW)
    with repo.engine.connect() as conn:  # the one connection (StaticPool)
        driver = conn.connection.driver_connection
    assert driver is not None
    before = driver.total_changes  # rows changed, by triggers too
    (mine,) = repo.queue_outgoing_many([(a.id, "one")], NOW_MS)
    repo.store_incoming([(a.id, [IncomingMessage(os.urandom(16), 1, 9, 0, "in")])], NOW_MS)
    assert driver.total_changes - before == 2
    assert (mine.seq, mine.lamport) == (1, 1)
    assert kept_conversation(repo, a.id) == recount_conversation(repo, a.id)
    assert repo.counters(a.id) == (9, 2)
    assert _counter_columns(repo.engine, a.id) == (0, 1)  # not folded yet
    assert repo.index_pending() == 2
    assert _counter_columns(repo.engine, a.id) == (9, 2)
    assert kept_conversation(repo, a.id) == recount_conversation(repo, a.id)


@pytest.mark.parametrize("indexed", [False, True])
def test_deleting_a_message_keeps_the_clocks_it_moved(repo: Repository, indexed: bool) -> None:
    a = random_contact("Ana")
    repo.add_contact(a, NOW)
    repo.queue_outgoing_many([(a.id, "one"), (a.id, "two")], NOW_MS)
    repo.store_incoming([(a.id, [IncomingMessage(os.urandom(16), 1, 50, 0, "in")])], NOW_MS)
    if indexed:
        repo.index_pending()
    with repo.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM messages WHERE id >= 2")  # "two" and theirs
    assert Repository(repo.engine).counters(a.id) == (50, 3)  # read afresh
    assert kept_conversation(repo, a.id) == recount_conversation(repo, a.id)
    assert repo.index_pending() == (0 if indexed else 1)  # "one" is left
    assert kept_conversation(repo, a.id) == recount_conversation(repo, a.id)
    assert _counter_columns(repo.engine, a.id) == (50, 3)


def test_upgrade_to_0013_keeps_summaries_and_counters_and_downgrade_restores_0012(
    tmp_path: Path,
) -> None:
    eng = create_db_engine(tmp_path / "old.db", os.urandom(32))
    try:
        migrate(eng, "0012")
        a, b = random_contact("Ana"), random_contact("Bo")
        Repository(eng).add_contact(a, 0)
        Repository(eng).add_contact(b, 0)
        # Stored by 0011's triggers, some not yet indexed.
        _raw_message(eng, a.id, outgoing=False, seq=1, lamport=5)
        with eng.begin() as conn:
            conn.exec_driver_sql("UPDATE search_progress SET last_id = 1")
        _raw_message(eng, a.id, outgoing=True, seq=1, lamport=6)
        _raw_message(eng, b.id, outgoing=False, seq=1, lamport=3)
        expected = {c.id: recount_conversation(Repository(eng), c.id) for c in (a, b)}
        assert expected[a.id][:2] == (1, 1)

        migrate(eng)

        repo = Repository(eng)
        assert {c.id: kept_conversation(repo, c.id) for c in (a, b)} == expected
        assert repo.counters(a.id) == (6, 2) and repo.counters(b.id) == (3, 1)
        ((mark,),) = _rows(repo, "SELECT last_id FROM search_progress")
        assert mark == 3  # everything indexed, so the kept columns mean what 0013 says
        # Written under 0013 and not folded: downgrading folds them.
        repo.queue_outgoing(b.id, "new", NOW_MS)
        repo.store_incoming([(a.id, [IncomingMessage(os.urandom(16), 2, 20, 0, "in")])], NOW_MS)
        expected = {c.id: recount_conversation(repo, c.id) for c in (a, b)}
        assert {c.id: kept_conversation(repo, c.id) for c in (a, b)} == expected

        _to(eng, "0012")
        old = Repository(eng)
        assert _counter_columns(eng, a.id) == (20, 2) and _counter_columns(eng, b.id) == (4, 2)
        _raw_message(eng, b.id, outgoing=False, seq=2, lamport=30)  # 0011's trigger again
        assert _counter_columns(eng, b.id) == (30, 2)
        with eng.connect() as conn:
            kept = {
                r[0]: (r[1], r[2], r[3])
                for r in conn.exec_driver_sql(
                    "SELECT c.id, c.unread, c.queued, m.msg_id FROM contacts c "
                    "LEFT JOIN messages m ON m.id = c.last_id"
                )
            }
        assert kept == {c.id: recount_conversation(old, c.id) for c in (a, b)}
    finally:
        eng.dispose()


# -- 0014: only the outbox is indexed by contact and state -----------------------------------


def _plan(repo: Repository, sql: str, *params: Any) -> str:
    return " ".join(str(r[3]) for r in _rows(repo, "EXPLAIN QUERY PLAN " + sql, *params))


def test_the_outbox_is_read_from_its_own_index_and_arrivals_are_not_in_it(
    repo: Repository,
) -> None:
    a = random_contact("Ana")
    repo.add_contact(a, NOW)
    ours = repo.queue_outgoing_many([(a.id, "one"), (a.id, "two")], NOW_MS)
    repo.store_incoming([(a.id, [IncomingMessage(os.urandom(16), 1, 1, 0, "in")])], NOW_MS)
    repo.advance_states_many([(a.id, [ours[0].msg_id], MessageState.DELIVERED)])
    assert [r.msg_id for r in repo.outbox(a.id)] == [ours[1].msg_id]
    assert "ix_messages_outbox" in _plan(
        repo, "SELECT id FROM messages WHERE contact_id = ? AND state IN (0, 1)", a.id
    )
    with repo.engine.connect() as conn:  # entries: only "two", still waiting
        (entries,) = conn.exec_driver_sql(
            "SELECT count(*) FROM messages INDEXED BY ix_messages_outbox "
            "WHERE contact_id = ? AND state IN (0, 1)",
            (a.id,),
        ).one()
    assert entries == 1


def test_marking_read_finds_unread_messages_among_many_read_ones(repo: Repository) -> None:
    a = random_contact("Ana")
    repo.add_contact(a, NOW)
    first = [IncomingMessage(os.urandom(16), i, 10 * i, 0, f"m{i}") for i in range(1, 60)]
    repo.store_incoming([(a.id, first)], NOW_MS)
    repo.index_pending()
    assert len(repo.mark_seen(a.id)) == 59
    late = IncomingMessage(os.urandom(16), 60, 15, 0, "late, old Lamport time")  # mid-history
    new = IncomingMessage(os.urandom(16), 61, 700, 0, "new")
    repo.store_incoming([(a.id, [late])], NOW_MS)
    repo.index_pending()  # one folded, one not
    repo.store_incoming([(a.id, [new])], NOW_MS)
    assert repo.mark_seen(a.id) == [late.msg_id, new.msg_id]
    assert repo.mark_seen(a.id) == []
    assert kept_conversation(repo, a.id) == recount_conversation(repo, a.id)


def test_upgrade_to_0014_keeps_the_outbox_and_downgrade_restores_the_state_index(
    tmp_path: Path,
) -> None:
    eng = create_db_engine(tmp_path / "old.db", os.urandom(32))
    try:
        migrate(eng, "0013")
        a = random_contact("Ana")
        Repository(eng).add_contact(a, 0)
        waiting = _raw_message(eng, a.id, outgoing=True, seq=1, lamport=1)
        _raw_message(eng, a.id, outgoing=False, seq=1, lamport=2)
        migrate(eng)
        repo = Repository(eng)
        assert [r.msg_id for r in repo.outbox(a.id)] == [waiting]
        indexes = {r[1] for r in _rows(repo, "PRAGMA index_list(messages)")}
        assert "ix_messages_outbox" in indexes and "ix_messages_contact_state" not in indexes
        _to(eng, "0013")
        indexes = {r[1] for r in _rows(repo, "PRAGMA index_list(messages)")}
        assert "ix_messages_contact_state" in indexes and "ix_messages_outbox" not in indexes
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


# -- 0015: the search indexes merge their segments 8 at a time ------------------------------


def _automerge(eng: Any) -> dict[str, int | None]:
    found: dict[str, int | None] = {}
    with eng.connect() as conn:
        for fts in ("messages_fts", "group_messages_fts"):
            row = conn.exec_driver_sql(f"SELECT v FROM {fts}_config WHERE k = 'automerge'").first()
            found[fts] = None if row is None else int(row[0])
    return found


def test_upgrade_to_0015_sets_automerge_8_on_both_indexes_and_downgrade_restores_4(
    tmp_path: Path,
) -> None:
    """Fewer, larger segment merges: each indexed row costs less (issue 15, eighth round)."""
    eng = create_db_engine(tmp_path / "old.db", os.urandom(32))
    try:
        migrate(eng, "0014")
        a = random_contact("Ana")
        repo = Repository(eng)
        repo.add_contact(a, 0)
        repo.store_incoming([(a.id, [IncomingMessage(os.urandom(16), 1, 1, 0, "rhubarb")])], 0)
        repo.index_pending()
        assert _automerge(eng) == {"messages_fts": None, "group_messages_fts": None}
        migrate(eng)
        assert _automerge(eng) == {"messages_fts": 8, "group_messages_fts": 8}
        # The index is the same index: what was found before still is, and new rows join it.
        repo.store_incoming([(a.id, [IncomingMessage(os.urandom(16), 2, 2, 0, "rhubarb pie")])], 0)
        assert [m.body for m in repo.search("rhubarb")] == ["rhubarb pie", "rhubarb"]
        _to(eng, "0014")
        assert _automerge(eng) == {"messages_fts": 4, "group_messages_fts": 4}
        assert len(repo.search("rhubarb")) == 2
    finally:
        eng.dispose()


# -- 0016: the search indexes keep no per-row size table ------------------------------------


def _tables(eng: Any) -> set[str]:
    with eng.connect() as conn:
        return {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master")}


def test_upgrade_to_0016_drops_the_size_tables_and_keeps_the_indexes_whole(
    tmp_path: Path,
) -> None:
    """The indexes are made again without `_docsize` (issue 15, ninth round): they hold
    what they held, the rows above each indexer's mark stay the indexer's (indexed once,
    folded into the summaries once), a search in one conversation still filters inside
    the index, and downgrade makes them as 0015 had them."""
    from tests.unit.test_search import fts_matches_content, fts_rows

    eng = create_db_engine(tmp_path / "old.db", os.urandom(32))
    try:
        migrate(eng, "0015")
        a, b = random_contact("Ana"), random_contact("Bo")
        repo = Repository(eng)
        repo.add_contact(a, 0)
        repo.add_contact(b, 0)
        groups = GroupRepository(repo)
        gid = b"g" * 16
        groups.save_roster(gid, epoch=1, name="G", roster=b"r", roster_hash=b"h", state=0, now=0)
        repo.store_incoming([(a.id, [IncomingMessage(os.urandom(16), 1, 1, 0, "quince")])], 0)
        repo.queue_outgoing(b.id, "quince paste", NOW_MS)
        groups.store_messages([_group_message(gid, 1, 1, outgoing=False)], NOW_MS)
        assert repo.index_pending() == 2 and groups.index_pending() == 1
        # Stored and not yet indexed (nor folded) when the upgrade runs.
        repo.store_incoming([(a.id, [IncomingMessage(os.urandom(16), 2, 2, 0, "quince jam")])], 0)
        groups.store_messages([_group_message(gid, 2, 2, outgoing=False)], NOW_MS)
        assert {"messages_fts_docsize", "group_messages_fts_docsize"} <= _tables(eng)
        expected = {c.id: recount_conversation(repo, c.id) for c in (a, b)}

        migrate(eng)

        assert not {"messages_fts_docsize", "group_messages_fts_docsize"} & _tables(eng)
        assert _automerge(eng) == {"messages_fts": 8, "group_messages_fts": 8}
        repo = Repository(eng)
        groups = GroupRepository(repo)
        assert fts_rows(eng, "messages_fts") == 2 and fts_rows(eng) == 1  # up to the marks
        assert repo.index_pending() == 1 and groups.index_pending() == 1
        fts_matches_content(eng, "messages_fts")  # each row once, as stored
        fts_matches_content(eng)
        assert {c.id: kept_conversation(repo, c.id) for c in (a, b)} == expected
        assert [m.body for m in repo.search("quin")] == ["quince jam", "quince paste", "quince"]
        assert [m.body for m in repo.search("quince", contact_id=a.id)] == ["quince jam", "quince"]
        assert (
            "contact_id"
            in _rows(repo, "SELECT sql FROM sqlite_master WHERE name = 'messages_fts'")[0][0]
        )
        assert len(groups.search("g")) == 2

        _to(eng, "0015")
        assert {"messages_fts_docsize", "group_messages_fts_docsize"} <= _tables(eng)
        assert _automerge(eng) == {"messages_fts": 8, "group_messages_fts": 8}
        fts_matches_content(eng, "messages_fts")
        fts_matches_content(eng)
        assert len(Repository(eng).search("quince", contact_id=b.id)) == 1
    finally:
        eng.dispose()


@pytest.mark.parametrize("threshold", [2, 3])
def test_the_upgrade_to_0016_says_so_first_when_the_index_is_big(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    threshold: int,
) -> None:
    """Made again, the indexes take seconds on a big profile: the start says why, before
    (at REBUILD_NOTICE_ROWS messages, lowered here), and stays quiet below it."""
    from messenger.storage import database

    monkeypatch.setattr(database, "REBUILD_NOTICE_ROWS", threshold)
    eng = create_db_engine(tmp_path / "old.db", os.urandom(32))
    try:
        migrate(eng, "0015")
        a = random_contact("Ana")
        repo = Repository(eng)
        repo.add_contact(a, 0)
        repo.store_incoming([(a.id, [IncomingMessage(os.urandom(16), 1, 1, 0, "fig")])], 0)
        repo.queue_outgoing(a.id, "fig roll", NOW_MS)
        with caplog.at_level("WARNING", logger="messenger.storage.database"):
            migrate(eng)
        notices = [r.getMessage() for r in caplog.records if "search index" in r.getMessage()]
        assert notices == (
            [
                "updating the database: the search index of about 2 messages "
                "is made again, once (a few seconds a million messages)"
            ]
            if threshold == 2
            else []
        )
        caplog.clear()
        with caplog.at_level("WARNING", logger="messenger.storage.database"):
            migrate(eng)  # at the head: nothing to say
        assert caplog.records == []
    finally:
        eng.dispose()

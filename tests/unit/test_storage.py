"""Storage: SQLCipher at rest, Alembic migrations, and the repository's contracts."""

from __future__ import annotations

import inspect
import itertools
import os
import random
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, MetaData, Table, event, insert, text

from messenger.records import MessageState
from messenger.storage.database import (
    SCHEMA_HEAD,
    alembic_config,
    create_db_engine,
    current_revision,
    migrate,
    open_database,
)
from messenger.storage.models import Base
from messenger.storage.repository import (
    ContactExists,
    IncomingMessage,
    InviteUnusable,
    NewContact,
    Repository,
    StorageError,
    advance_runs_sql,
    advance_states_sql,
    split_runs,
)

FTS_PREFIX = "messages_fts"  # the FTS5 table and its shadow tables: built by 0002, not models
GROUP_FTS = "group_messages_fts"  # the same for group messages, built by 0007
# As excluded in migrations/env.py.
RAW_SQL_TABLES = (FTS_PREFIX, "search_progress", GROUP_FTS, "group_search_progress")
NOW = 1_700_000_000.0
NOW_MS = int(NOW * 1000)


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _contact(name: str = "Alice", *, cid: str | None = None, ed: bytes | None = None) -> NewContact:
    return NewContact(
        id=cid or os.urandom(16).hex(),
        display_name=name,
        ed25519_public=ed or os.urandom(32),
        x25519_public=os.urandom(32),
        static_certificate=os.urandom(64),
        psk=os.urandom(32),
        discovery_key=os.urandom(32),
        conversation_id=os.urandom(16),
        verified=False,
        addresses=("192.0.2.1:4000",),
    )


def _incoming(
    body: str = "hi", *, lamport: int = 1, seq: int = 1, msg_id: bytes | None = None
) -> IncomingMessage:
    return IncomingMessage(
        msg_id=msg_id or os.urandom(16), seq=seq, lamport=lamport, sent_at_ms=NOW_MS, body=body
    )


def _schema(engine: Engine) -> list[tuple[str, str, str, str | None]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT type, name, tbl_name, sql FROM sqlite_master").all()
    return sorted((r[0], r[1], r[2], " ".join(r[3].split()) if r[3] else None) for r in rows)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = open_database(tmp_path / "chinwag.db", os.urandom(32), create=True)
    yield eng
    eng.dispose()


@pytest.fixture
def repo(engine: Engine) -> Repository:
    return Repository(engine)


# -- migrations -------------------------------------------------------------------------


def _modelled(name: str | None, type_: str, _parents: object) -> bool:
    return not (type_ == "table" and name is not None and name.startswith(RAW_SQL_TABLES))


def test_schema_head_constant_names_alembics_newest_migration() -> None:
    # migrate() skips Alembic when the database is at SCHEMA_HEAD; a stale constant would
    # leave an old profile unmigrated.
    assert _head() == SCHEMA_HEAD


def test_fresh_database_is_at_head_with_the_models_schema(engine: Engine) -> None:
    assert current_revision(engine) == _head()
    with engine.connect() as conn:
        everything = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        ctx = MigrationContext.configure(
            conn,
            opts={"compare_type": True, "include_name": _modelled, "render_as_batch": True},
        )
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []
    # What the filter hides is exactly the search index, nothing else: a new table that is
    # not a model must be added to the models, or to this list and to migrations/env.py.
    assert {d[0] for d in everything} == {"remove_table"}
    assert {d[1].name for d in everything} == {
        "search_progress",
        "group_search_progress",
        *(
            name
            for fts in (FTS_PREFIX, GROUP_FTS)
            for name in (fts, *(f"{fts}_{s}" for s in ("data", "idx", "config")))
        ),
    }


def test_alembic_check_finds_no_pending_changes(engine: Engine) -> None:
    from alembic import command

    cfg = alembic_config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.check(cfg)


def test_alembic_output_does_not_go_to_the_stdout_bound_at_import(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alembic binds ``sys.stdout`` as a default argument when it is first imported; in
    a whole-suite run that was a test's capture, closed long before (CI failed so)."""
    import io

    from alembic import command
    from alembic.config import Config

    closed = io.StringIO()
    closed.close()
    defaults = list(Config.__init__.__defaults__ or ())
    with_defaults = [
        name
        for name, parameter in inspect.signature(Config.__init__).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    ]
    defaults[with_defaults.index("stdout")] = closed
    monkeypatch.setattr(Config.__init__, "__defaults__", tuple(defaults))
    cfg = alembic_config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.check(cfg)


def test_reopening_does_not_migrate_again(tmp_path: Path) -> None:
    key = os.urandom(32)
    path = tmp_path / "chinwag.db"
    open_database(path, key, create=True).dispose()
    eng = open_database(path, key)
    try:
        assert current_revision(eng) == _head()
    finally:
        eng.dispose()
    with pytest.raises(FileNotFoundError):
        open_database(tmp_path / "absent.db", key)


def test_upgrade_from_0001_keeps_data_and_matches_a_fresh_schema(
    tmp_path: Path, engine: Engine
) -> None:
    old = create_db_engine(tmp_path / "old.db", os.urandom(32))
    try:
        migrate(old, "0001")
        assert current_revision(old) == "0001"
        assert not any(name.startswith(FTS_PREFIX) for _, name, _, _ in _schema(old))
        contact = _contact("Old Friend")
        with old.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO contacts (id, display_name, ed25519_public, x25519_public, "
                    "static_certificate, psk, discovery_key, conversation_id, verified, "
                    "addresses, created_at, last_seen, lamport, next_seq) VALUES (:id, :name, "
                    ":ed, :x, :cert, :psk, :dk, :conv, 0, '[]', :now, NULL, 3, 4)"
                ),
                {
                    "id": contact.id,
                    "name": contact.display_name,
                    "ed": contact.ed25519_public,
                    "x": contact.x25519_public,
                    "cert": contact.static_certificate,
                    "psk": contact.psk,
                    "dk": contact.discovery_key,
                    "conv": contact.conversation_id,
                    "now": NOW,
                },
            )
            bodies = ["the old café on the corner", "pineapple upside down", "third message"]
            ids = [os.urandom(16) for _ in bodies]
            # Core on the table as 0001 built it (reflected), not on today's models.
            messages = Table("messages", MetaData(), autoload_with=conn)
            rows = [
                {
                    "msg_id": m,
                    "contact_id": contact.id,
                    "outgoing": bool(i % 2),
                    "seq": i + 1,
                    "lamport": i + 1,
                    "sent_at_ms": NOW_MS,
                    "received_at_ms": None,
                    "body": b,
                    "state": int(MessageState.DELIVERED if i % 2 else MessageState.SEEN),
                    "read_receipt_pending": False,
                }
                for i, (m, b) in enumerate(zip(ids, bodies, strict=True))
            ]
            conn.execute(
                insert(messages),
                [{k: v for k, v in r.items() if k in messages.c} for r in rows],
            )

        # A message stored while at 0002 (indexed by 0002's trigger) must survive 0003 too.
        migrate(old, "0002")
        kumquat = os.urandom(16)
        later = {**rows[0], "msg_id": kumquat, "body": "kumquat", "seq": 4, "lamport": 4}
        with old.begin() as conn:
            conn.execute(insert(messages), [{k: v for k, v in later.items() if k in messages.c}])
        ids.append(kumquat)
        bodies.append("kumquat")

        migrate(old)

        assert current_revision(old) == _head()
        assert _schema(old) == _schema(engine)
        repo = Repository(old)
        assert [m.msg_id for m in repo.history(contact.id)] == ids
        assert {m.body for m in repo.history(contact.id)} == set(bodies)
        record = repo.contact(contact.id)
        assert record is not None and record.display_name == "Old Friend"

        def match(query: str) -> list[bytes]:
            """The FTS index as the migrations left it (no lazy indexing has run yet)."""
            with old.connect() as conn:
                return list(
                    conn.execute(
                        text(
                            "SELECT m.msg_id FROM messages_fts JOIN messages m "
                            "ON m.id = messages_fts.rowid WHERE messages_fts MATCH :q "
                            "ORDER BY m.id"
                        ),
                        {"q": query},
                    ).scalars()
                )

        assert match("pineapple") == [ids[1]]
        assert match("cafe") == [ids[0]]  # remove_diacritics 2
        assert match("kumquat") == [kumquat]
        assert match("messag") == []  # whole tokens, not substrings

        (new,) = repo.store_incoming([(contact.id, [_incoming("pineapple juice", lamport=9)])], 0)
        found = repo.search("pineapple")
        assert {m.msg_id for m in found} == {ids[1], new.msg_id}
        assert {m.msg_id for m in repo.search("café")} == {ids[0]}
        # Lamport/sequence counters written before the upgrade are honoured.
        (mine,) = repo.queue_outgoing_many([(contact.id, "after")], NOW_MS)
        assert (mine.seq, mine.lamport) == (4, 10)
    finally:
        old.dispose()


# -- at rest ----------------------------------------------------------------------------

SECRET_BODY = "ultraviolet-marmalade-quokka-8841"
SECRET_NAME = "Zanzibar Quillfeather"


def _plaintext_leaks(folder: Path, needles: list[bytes]) -> list[tuple[str, bytes]]:
    leaks = []
    for name in ("chinwag.db", "chinwag.db-wal", "chinwag.db-shm"):
        path = folder / name
        if path.exists():
            data = path.read_bytes()
            leaks += [(name, n) for n in needles if n in data]
    return leaks


def test_database_file_holds_no_plaintext(tmp_path: Path) -> None:
    key = os.urandom(32)
    eng = open_database(tmp_path / "chinwag.db", key, create=True)
    repo = Repository(eng)
    new = _contact(SECRET_NAME)
    repo.add_contact(new, NOW)
    repo.store_incoming([(new.id, [_incoming(f"{SECRET_BODY} #{i}") for i in range(50)])], NOW_MS)
    repo.queue_outgoing_many([(new.id, f"re: {SECRET_BODY}")] * 50, NOW_MS)
    needles = [
        SECRET_BODY.encode(),
        SECRET_BODY.encode("utf-16-le"),
        b"marmalade",
        SECRET_NAME.encode(),
        b"Quillfeather",
        new.psk,
        new.id.encode(),
        b"SQLite format 3",
    ]
    # While open, the committed pages sit in the -wal file: that is encrypted too.
    assert (tmp_path / "chinwag.db-wal").exists()
    assert _plaintext_leaks(tmp_path, needles) == []
    eng.dispose()
    assert _plaintext_leaks(tmp_path, needles) == []

    eng = open_database(tmp_path / "chinwag.db", key)
    try:
        repo = Repository(eng)
        assert [c.display_name for c in repo.contacts()] == [SECRET_NAME]
        bodies = [m.body for m in repo.history(new.id, limit=200)]
        assert len(bodies) == 100
        assert all(SECRET_BODY in b for b in bodies)
    finally:
        eng.dispose()


def test_plain_sqlite_cannot_read_the_database(tmp_path: Path) -> None:
    open_database(tmp_path / "chinwag.db", os.urandom(32), create=True).dispose()
    conn = sqlite3.connect(tmp_path / "chinwag.db")
    try:
        with pytest.raises(sqlite3.DatabaseError, match="file is not a database"):
            conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
    finally:
        conn.close()


# -- incoming ---------------------------------------------------------------------------


def test_store_incoming_drops_duplicates_and_returns_only_new(repo: Repository) -> None:
    alice, bob = _contact("Alice"), _contact("Bob")
    repo.add_contact(alice, NOW)
    repo.add_contact(bob, NOW)
    m1, m2, m3 = (_incoming(f"m{i}", lamport=i, seq=i) for i in (1, 2, 3))
    m1_again = IncomingMessage(m1.msg_id, 1, 1, NOW_MS, "a forged second copy")

    first = repo.store_incoming([(alice.id, [m1, m2, m1_again, m2])], NOW_MS + 5)
    assert [r.msg_id for r in first] == [m1.msg_id, m2.msg_id]
    assert [r.body for r in first] == ["m1", "m2"]
    assert all(r.state is MessageState.RECEIVED and not r.outgoing for r in first)
    assert all(r.received_at_ms == NOW_MS + 5 for r in first)
    for r in first:
        stored = repo.message(r.msg_id)
        assert stored == r  # the returned record is what the database holds, row_id too

    # Across calls, and across batches of one call (even for another contact).
    second = repo.store_incoming([(alice.id, [m2, m3]), (bob.id, [m3, m1]), (bob.id, [])], NOW_MS)
    assert [r.msg_id for r in second] == [m3.msg_id]
    assert repo.store_incoming([(alice.id, [m1, m2, m3])], NOW_MS) == []

    assert repo.message_count(alice.id) == 3
    assert repo.message_count(bob.id) == 0
    assert repo.message(m1.msg_id).body == "m1"  # type: ignore[union-attr]


def test_a_lone_incoming_message_is_stored_once(repo: Repository) -> None:
    """One message alone takes a shorter path (the INSERT itself drops a duplicate): the
    same results as a batch, summary and clock included."""
    alice, bob = _contact("Alice"), _contact("Bob")
    repo.add_contact(alice, NOW)
    repo.add_contact(bob, NOW)
    m = _incoming("alone", lamport=9, seq=4)
    (record,) = repo.store_incoming([(alice.id, [m])], NOW_MS + 7)
    assert (record.body, record.seq, record.lamport, record.received_at_ms) == (
        "alone",
        4,
        9,
        NOW_MS + 7,
    )
    assert repo.message(m.msg_id) == record  # row_id too
    again = IncomingMessage(m.msg_id, 5, 10, NOW_MS, "a forged second copy")
    assert repo.store_incoming([(alice.id, [again])], NOW_MS) == []
    assert repo.store_incoming([(bob.id, []), (bob.id, [again])], NOW_MS) == []
    assert repo.message(m.msg_id) == record
    assert repo.unread_counts() == {alice.id: 1}
    assert repo.message_count(bob.id) == 0
    (mine,) = repo.queue_outgoing_many([(alice.id, "answer")], NOW_MS)
    assert mine.lamport == 10  # past the stored one's 9, not the dropped copy's 10


def test_incoming_lamport_moves_our_clock_forward(repo: Repository) -> None:
    alice = _contact()
    repo.add_contact(alice, NOW)
    repo.store_incoming([(alice.id, [_incoming(lamport=41), _incoming(lamport=7)])], NOW_MS)
    (mine,) = repo.queue_outgoing_many([(alice.id, "answer")], NOW_MS)
    assert mine.lamport == 42
    assert mine.seq == 1  # the sequence counts our own messages only
    repo.store_incoming([(alice.id, [_incoming(lamport=3)])], NOW_MS)  # an old one: no change
    (later,) = repo.queue_outgoing_many([(alice.id, "again")], NOW_MS)
    assert (later.lamport, later.seq) == (43, 2)


# -- outgoing ---------------------------------------------------------------------------


def test_queue_outgoing_many_assigns_seq_lamport_and_row_ids(repo: Repository) -> None:
    alice, bob = _contact("Alice"), _contact("Bob")
    repo.add_contact(alice, NOW)
    repo.add_contact(bob, NOW)
    repo.store_incoming([(bob.id, [_incoming(lamport=5)])], NOW_MS)  # a row before ours

    items = [(alice.id, "a1"), (bob.id, "b1"), (alice.id, "a2"), (alice.id, "a3"), (bob.id, "b2")]
    records = repo.queue_outgoing_many(items, NOW_MS)
    assert [(r.contact_id, r.body) for r in records] == items
    by = {cid: [r for r in records if r.contact_id == cid] for cid in (alice.id, bob.id)}
    assert [(r.seq, r.lamport) for r in by[alice.id]] == [(1, 1), (2, 2), (3, 3)]
    assert [(r.seq, r.lamport) for r in by[bob.id]] == [(1, 6), (2, 7)]
    assert len({r.msg_id for r in records}) == len(records)
    assert all(len(r.msg_id) == 16 for r in records)
    for r in records:
        assert r.outgoing and r.state is MessageState.QUEUED
        assert repo.message(r.msg_id) == r  # row_id, seq, lamport as stored

    more = repo.queue_outgoing_many([(alice.id, "a4"), (bob.id, "b3")], NOW_MS)
    assert [(r.seq, r.lamport) for r in more] == [(4, 4), (3, 8)]
    assert [m.body for m in repo.outbox(alice.id)] == ["a1", "a2", "a3", "a4"]
    assert repo.outbox_counts() == {alice.id: 4, bob.id: 3}
    single = repo.queue_outgoing(alice.id, "a5", NOW_MS)
    assert repo.message(single.msg_id) == single


def test_queue_outgoing_to_an_unknown_contact_stores_nothing(repo: Repository) -> None:
    alice = _contact()
    repo.add_contact(alice, NOW)
    with pytest.raises(StorageError, match="no contact"):
        repo.queue_outgoing_many([(alice.id, "fine"), ("0" * 32, "nobody")], NOW_MS)
    assert repo.message_count() == 0
    (first,) = repo.queue_outgoing_many([(alice.id, "now")], NOW_MS)
    assert (first.seq, first.lamport) == (1, 1)  # counters were rolled back too


def test_queue_outgoing_many_of_nothing(repo: Repository) -> None:
    assert repo.queue_outgoing_many([], NOW_MS) == []


def test_advance_states_never_goes_backwards(repo: Repository) -> None:
    alice, bob = _contact("Alice"), _contact("Bob")
    repo.add_contact(alice, NOW)
    repo.add_contact(bob, NOW)
    m1, m2, m3 = repo.queue_outgoing_many([(alice.id, "1"), (alice.id, "2"), (alice.id, "3")], 0)
    (theirs,) = repo.store_incoming([(alice.id, [_incoming()])], NOW_MS)

    def state(msg_id: bytes) -> MessageState:
        record = repo.message(msg_id)
        assert record is not None
        return record.state

    assert set(repo.advance_states(alice.id, [m1.msg_id, m2.msg_id], MessageState.SENT)) == {
        m1.msg_id,
        m2.msg_id,
    }
    assert repo.advance_states(alice.id, [m1.msg_id], MessageState.READ) == [m1.msg_id]
    # A late delivery receipt after the read receipt: m1 stays READ, m2 moves on.
    assert repo.advance_states(alice.id, [m1.msg_id, m2.msg_id], MessageState.DELIVERED) == [
        m2.msg_id
    ]
    assert repo.advance_states(alice.id, [m1.msg_id], MessageState.SENT) == []
    assert repo.advance_states(alice.id, [m1.msg_id, m2.msg_id], MessageState.DELIVERED) == []
    assert (state(m1.msg_id), state(m2.msg_id), state(m3.msg_id)) == (
        MessageState.READ,
        MessageState.DELIVERED,
        MessageState.QUEUED,
    )
    # Only our own messages, only in that conversation.
    assert repo.advance_states(bob.id, [m3.msg_id], MessageState.READ) == []
    assert repo.advance_states(alice.id, [theirs.msg_id], MessageState.READ) == []
    assert state(theirs.msg_id) is MessageState.RECEIVED
    assert state(m3.msg_id) is MessageState.QUEUED
    assert repo.advance_states(alice.id, [], MessageState.READ) == []
    assert [m.msg_id for m in repo.outbox(alice.id)] == [m3.msg_id]


def test_advance_states_in_large_batches(repo: Repository) -> None:
    alice = _contact()
    repo.add_contact(alice, NOW)
    records = repo.queue_outgoing_many([(alice.id, str(i)) for i in range(1200)], NOW_MS)
    ids = [r.msg_id for r in records]
    changed = repo.advance_states(alice.id, [*ids, os.urandom(16)], MessageState.DELIVERED)
    assert sorted(changed) == sorted(ids)
    assert repo.outbox(alice.id) == []


@pytest.mark.parametrize("returning", [True, False])
def test_a_receipt_finds_its_messages_by_id_not_by_walking_the_outbox(
    repo: Repository, returning: bool
) -> None:
    """Each id of a receipt is looked up in the unique msg_id index; the planner must not
    pick the (contact_id, state) index, which walks every message still in the outbox."""
    alice = _contact()
    repo.add_contact(alice, NOW)
    repo.queue_outgoing_many([(alice.id, str(i)) for i in range(300)], NOW_MS)
    with repo.engine.connect() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + advance_states_sql(3, returning=returning),
            (2, os.urandom(16), os.urandom(16), os.urandom(16), alice.id, 2),
        ).all()
    steps = " / ".join(str(row[-1]) for row in plan)
    assert "(msg_id=?)" in steps, steps
    assert "ix_messages_contact_state" not in steps, steps


@pytest.mark.parametrize("returning", [True, False])
def test_a_run_of_row_ids_is_one_walk_of_the_table(repo: Repository, returning: bool) -> None:
    """The range statement reads the table's own b-tree between the two ids, not an index
    of the contact's messages or of the outbox."""
    alice = _contact()
    repo.add_contact(alice, NOW)
    repo.queue_outgoing_many([(alice.id, str(i)) for i in range(300)], NOW_MS)
    with repo.engine.connect() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + advance_runs_sql(returning=returning),
            (2, 10, 200, alice.id, 2),
        ).all()
    steps = " / ".join(str(row[-1]) for row in plan)
    assert "INTEGER PRIMARY KEY (rowid>? AND rowid<?)" in steps, steps


def _traced_updates(repo: Repository, record: Callable[[], object]) -> list[str]:
    """The UPDATE statements `record` runs on the connection the hot paths write on."""
    driver = repo._raw_cursor().connection
    statements: list[str] = []
    driver.set_trace_callback(statements.append)
    try:
        record()
    finally:
        driver.set_trace_callback(None)
    # (the legacy trace repeats a statement as each trigger of it starts)
    return list(dict.fromkeys(s for s in statements if s.startswith("UPDATE messages")))


def test_a_receipt_for_messages_stored_here_updates_them_by_row_id(repo: Repository) -> None:
    """Our messages committed by this repository are recorded delivered by their row ids
    (no msg_id index read, issue 15); ids it does not know still go by msg_id."""
    alice = _contact()
    repo.add_contact(alice, NOW)
    ours = repo.queue_outgoing_many([(alice.id, str(i)) for i in range(3)], NOW_MS)
    lone = repo.queue_outgoing_many([(alice.id, "lone")], NOW_MS)  # the one-statement path
    stranger = os.urandom(16)
    ids = [r.msg_id for r in [*ours, *lone]]
    updates = _traced_updates(
        repo, lambda: repo.record_states([(alice.id, [*ids, stranger], MessageState.DELIVERED)])
    )
    row_ids = ",".join(str(r.row_id) for r in [*ours, *lone])
    assert len(updates) == 2, updates
    assert f"WHERE id IN ({row_ids}) AND" in updates[0], updates
    assert f"WHERE msg_id IN (x'{stranger.hex()}') AND" in updates[1], updates
    assert repo.outbox(alice.id) == []
    states = {repo.message(i).state for i in ids}  # type: ignore[union-attr]
    assert states == {MessageState.DELIVERED}
    # A second receipt (READ) for the same messages finds them by msg_id, and moves them.
    changed = repo.advance_states(alice.id, ids, MessageState.READ)
    assert sorted(changed) == sorted(ids)


def test_a_receipt_never_moves_a_message_that_took_a_deleted_messages_row_id(
    repo: Repository,
) -> None:
    """A message deleted (here behind the repository's back) frees the largest row id,
    and SQLite gives it to the next message: a late receipt for the deleted one must not
    mark the new one delivered."""
    alice, bob = _contact("Alice"), _contact("Bob")
    repo.add_contact(alice, NOW)
    repo.add_contact(bob, NOW)
    (gone,) = repo.queue_outgoing_many([(alice.id, "deleted")], NOW_MS)
    with repo.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM messages WHERE msg_id = ?", (gone.msg_id,))
    (new,) = repo.queue_outgoing_many([(alice.id, "new")], NOW_MS)
    assert new.row_id == gone.row_id  # the case at hand
    repo.record_states([(alice.id, [gone.msg_id], MessageState.DELIVERED)])
    assert [r.msg_id for r in repo.outbox(alice.id)] == [new.msg_id]
    # Nor does a receipt from another contact move ours, by row id or not.
    repo.record_states([(bob.id, [new.msg_id], MessageState.DELIVERED)])
    assert [r.msg_id for r in repo.outbox(alice.id)] == [new.msg_id]
    repo.record_states([(alice.id, [new.msg_id], MessageState.DELIVERED)])
    assert repo.outbox(alice.id) == []


def test_a_receipt_records_a_run_of_consecutive_row_ids_with_one_range(
    repo: Repository,
) -> None:
    """A receipt naming a run of our consecutive rows updates it with one BETWEEN (one
    walk of the table, issue 15, eighth round); a short run and lone ids stay in the IN
    list, ids this repository does not know go by msg_id, and our row inside the run's
    span that the receipt does not name is untouched."""
    alice = _contact()
    repo.add_contact(alice, NOW)
    ours = repo.queue_outgoing_many([(alice.id, str(i)) for i in range(40)], NOW_MS)
    named = [*ours[0:20], *ours[21:24], ours[30]]  # a run of 20, one of 3, a lone one
    stranger = os.urandom(16)
    updates = _traced_updates(
        repo,
        lambda: repo.record_states(
            [(alice.id, [stranger, *(r.msg_id for r in reversed(named))], MessageState.DELIVERED)]
        ),
    )
    first, last = ours[0].row_id, ours[19].row_id
    short = ",".join(str(r.row_id) for r in [*ours[21:24], ours[30]])
    assert len(updates) == 3, updates
    assert f"WHERE id BETWEEN {first} AND {last} AND" in updates[0], updates
    assert f"WHERE id IN ({short}) AND" in updates[1], updates
    assert f"WHERE msg_id IN (x'{stranger.hex()}') AND" in updates[2], updates
    left = {r.msg_id for r in ours} - {r.msg_id for r in named}
    assert {r.msg_id for r in repo.outbox(alice.id)} == left


@pytest.mark.parametrize(
    ("ids", "runs", "rest"),
    [
        ([], [], []),
        ([5], [], [5]),
        (list(range(10, 18)), [(10, 17)], []),
        (list(range(10, 17)), [], list(range(10, 17))),
        ([*range(30, 40), 7, *range(10, 20), 25, 20], [(10, 20), (30, 39)], [7, 25]),
        ([3, 3, 4, 4, 5, 6, 7, 8, 9, 10], [(3, 10)], []),  # repeated ids count once
    ],
)
def test_split_runs(ids: list[int], runs: list[tuple[int, int]], rest: list[int]) -> None:
    assert split_runs(ids) == (runs, rest)


@given(st.lists(st.integers(0, 60)), st.integers(1, 10))
def test_split_runs_covers_exactly_the_ids_given(ids: list[int], min_run: int) -> None:
    runs, rest = split_runs(ids, min_run)
    covered = [i for first, last in runs for i in range(first, last + 1)]
    assert sorted(covered + rest) == sorted(set(ids))
    assert all(last - first + 1 >= min_run for first, last in runs)


# -- history ----------------------------------------------------------------------------


def test_history_pages_back_without_gaps_or_overlaps(repo: Repository) -> None:
    rnd = random.Random(20240501)
    alice, bob = _contact("Alice"), _contact("Bob")
    repo.add_contact(alice, NOW)
    repo.add_contact(bob, NOW)
    # Many Lamport ties, so the msg_id tiebreak matters; bob's messages interleave.
    for start in range(0, 950, 190):
        batch = [
            _incoming(f"a{i}", lamport=rnd.randint(1, 250), msg_id=rnd.randbytes(16))
            for i in range(start, start + 190)
        ]
        noise = [_incoming(f"b{i}", lamport=rnd.randint(1, 250)) for i in range(20)]
        repo.store_incoming([(alice.id, batch), (bob.id, noise)], NOW_MS)
    repo.queue_outgoing_many([(alice.id, f"o{i}") for i in range(50)], NOW_MS)

    everything = repo.history(alice.id, limit=10_000)
    assert len(everything) == 1000
    keys = [(m.lamport, m.msg_id) for m in everything]
    assert keys == sorted(keys)
    assert {m.contact_id for m in everything} == {alice.id}

    pages = []
    page = repo.history(alice.id, limit=37)
    assert page == everything[-37:]  # the newest, oldest first
    for _ in range(100):  # bounded: a `before` that is not strict would page forever
        if not page:
            break
        pages.append(page)
        oldest = page[0]
        page = repo.history(alice.id, limit=37, before=(oldest.lamport, oldest.msg_id))
    assert page == []
    stitched = [m for p in reversed(pages) for m in p]
    assert stitched == everything
    assert len(pages) == -(-1000 // 37)
    assert all(len(p) == 37 for p in pages[:-1])

    # And forwards from the oldest with `after`, the same way.
    forward = repo.history(alice.id, limit=41, after=(0, b""))
    assert forward == everything[:41]
    collected = []
    for _ in range(100):
        if not forward:
            break
        collected += forward
        newest = forward[-1]
        forward = repo.history(alice.id, limit=41, after=(newest.lamport, newest.msg_id))
    assert collected == everything


def test_history_of_an_empty_conversation(repo: Repository) -> None:
    alice = _contact()
    repo.add_contact(alice, NOW)
    assert repo.history(alice.id) == []
    assert repo.history(alice.id, before=(1, b"\x00" * 16)) == []


# -- invites ----------------------------------------------------------------------------


def test_redeem_invite_once(repo: Repository) -> None:
    invite_id = os.urandom(16)
    repo.add_invite(invite_id, os.urandom(32), int(NOW) + 3600, NOW)
    assert [i.id for i in repo.pending_invites(NOW)] == [invite_id]
    first, second = _contact("First"), _contact("Second")

    repo.redeem_invite(invite_id, first, NOW + 1)
    used = repo.invite(invite_id)
    assert used is not None
    assert (used.used_at, used.used_by) == (NOW + 1, first.id)
    assert repo.contact(first.id) is not None
    assert repo.pending_invites(NOW + 2) == []

    with pytest.raises(InviteUnusable):
        repo.redeem_invite(invite_id, second, NOW + 2)
    assert repo.contact(second.id) is None
    assert repo.invite(invite_id).used_by == first.id  # type: ignore[union-attr]
    with pytest.raises(InviteUnusable) as info:
        repo.usable_invite(invite_id, NOW + 2)
    assert info.value.reason == "used"


def test_redeem_invite_stays_unused_when_the_contact_exists(repo: Repository) -> None:
    known = _contact("Known")
    repo.add_contact(known, NOW)
    invite_id = os.urandom(16)
    repo.add_invite(invite_id, os.urandom(32), int(NOW) + 3600, NOW)

    for clash in (known, _contact("Same key", ed=known.ed25519_public)):
        with pytest.raises(ContactExists):
            repo.redeem_invite(invite_id, clash, NOW + 1)
        record = repo.invite(invite_id)
        assert record is not None
        assert (record.used_at, record.used_by) == (None, None)
    assert [c.display_name for c in repo.contacts()] == ["Known"]
    assert repo.usable_invite(invite_id, NOW + 1).id == invite_id

    newcomer = _contact("Newcomer")
    repo.redeem_invite(invite_id, newcomer, NOW + 2)  # still usable once
    assert repo.invite(invite_id).used_by == newcomer.id  # type: ignore[union-attr]


def test_expired_and_unknown_invites_cannot_be_redeemed(repo: Repository) -> None:
    invite_id = os.urandom(16)
    repo.add_invite(invite_id, os.urandom(32), int(NOW) + 60, NOW)
    late = _contact("Late")
    with pytest.raises(InviteUnusable):
        repo.redeem_invite(invite_id, late, NOW + 60)
    with pytest.raises(InviteUnusable):
        repo.redeem_invite(os.urandom(16), late, NOW)
    assert repo.contact(late.id) is None
    assert repo.invite(invite_id).used_at is None  # type: ignore[union-attr]
    with pytest.raises(InviteUnusable) as info:
        repo.usable_invite(invite_id, NOW + 60)
    assert info.value.reason == "expired"
    with pytest.raises(InviteUnusable) as info:
        repo.usable_invite(os.urandom(16), NOW)
    assert info.value.reason == "unknown"


def test_redeem_invite_says_why(repo: Repository) -> None:
    invite_id = os.urandom(16)
    repo.add_invite(invite_id, os.urandom(32), int(NOW) + 60, NOW)
    with pytest.raises(InviteUnusable) as info:
        repo.redeem_invite(invite_id, _contact(), NOW + 60)
    assert info.value.reason == "expired"
    with pytest.raises(InviteUnusable) as info:
        repo.redeem_invite(os.urandom(16), _contact(), NOW)
    assert info.value.reason == "unknown"


# -- finding contacts -------------------------------------------------------------------


@pytest.fixture
def people(repo: Repository) -> dict[str, NewContact]:
    found = {
        "alice": _contact("Alice", cid="ab12" + "0" * 28),
        "alice2": _contact("Alice Smith", cid="ab99" + "1" * 28),
        "bob": _contact("bob", cid="cd34" + "2" * 28),
        "carol": _contact("Carol_1", cid="ef56" + "3" * 28),
    }
    for c in found.values():
        repo.add_contact(c, NOW)
    return found


def _names(repo: Repository, query: str) -> list[str]:
    return [c.display_name for c in repo.find_contacts(query)]


def test_find_contacts_by_name_case_insensitive(
    repo: Repository, people: dict[str, NewContact]
) -> None:
    assert _names(repo, "alice") == ["Alice"]
    assert _names(repo, "ALICE") == ["Alice"]
    assert _names(repo, "  Alice Smith ") == ["Alice Smith"]
    assert _names(repo, "BOB") == ["bob"]
    assert _names(repo, "carol_1") == ["Carol_1"]
    assert _names(repo, "Ali") == []  # a name must match whole
    assert _names(repo, "dave") == []


def test_find_contacts_by_id_prefix(repo: Repository, people: dict[str, NewContact]) -> None:
    assert _names(repo, "ab") == ["Alice", "Alice Smith"]
    assert _names(repo, "ab12") == ["Alice"]
    assert _names(repo, "AB12") == ["Alice"]
    assert _names(repo, people["bob"].id) == ["bob"]
    assert _names(repo, "12") == []  # a prefix, not a substring


@pytest.mark.parametrize("query", ["%", "_", "%%", "a%", "ab%", "a_", "__", "*", "\\", "/"])
def test_find_contacts_wildcards_are_literal(
    repo: Repository, people: dict[str, NewContact], query: str
) -> None:
    assert repo.find_contacts(query) == []


def test_find_contacts_a_name_with_wildcards(repo: Repository) -> None:
    odd = _contact("100%_sure")
    repo.add_contact(odd, NOW)
    repo.add_contact(_contact("100xxsure"), NOW)
    assert _names(repo, "100%_SURE") == ["100%_sure"]


@pytest.mark.parametrize("query", ["", "   "])
def test_find_contacts_blank_matches_nothing(
    repo: Repository, people: dict[str, NewContact], query: str
) -> None:
    assert repo.find_contacts(query) == []


@pytest.mark.parametrize("name", ["Émile", "Ørjan", "Анна"])
def test_find_contacts_non_ascii_names(repo: Repository, name: str) -> None:
    repo.add_contact(_contact(name), NOW)
    assert _names(repo, name) == [name]
    assert _names(repo, name.upper()) == [name]
    assert _names(repo, name.lower()) == [name]


# -- read state -------------------------------------------------------------------------


def test_mark_seen_and_unread_counts(repo: Repository) -> None:
    alice, bob, carol = _contact("Alice"), _contact("Bob"), _contact("Carol")
    for c in (alice, bob, carol):
        repo.add_contact(c, NOW)
    assert repo.unread_counts() == {}
    a = repo.store_incoming([(alice.id, [_incoming(str(i)) for i in range(3)])], NOW_MS)
    repo.store_incoming([(bob.id, [_incoming(), _incoming()])], NOW_MS)
    (ours,) = repo.queue_outgoing_many([(alice.id, "mine")], NOW_MS)
    assert repo.unread_counts() == {alice.id: 3, bob.id: 2}

    assert sorted(repo.mark_seen(alice.id)) == sorted(r.msg_id for r in a)
    assert repo.unread_counts() == {bob.id: 2}
    assert repo.mark_seen(alice.id) == []
    assert repo.mark_seen(carol.id) == []
    states = {m.msg_id: m.state for m in repo.history(alice.id)}
    assert states.pop(ours.msg_id) is MessageState.QUEUED  # our own message is not touched
    assert set(states.values()) == {MessageState.SEEN}

    (late,) = repo.store_incoming([(alice.id, [_incoming("late")])], NOW_MS)
    assert repo.unread_counts() == {alice.id: 1, bob.id: 2}
    assert repo.mark_seen(alice.id) == [late.msg_id]


# -- property: duplicates and order -----------------------------------------------------

_example = itertools.count()


@pytest.fixture(scope="module")
def shared_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repository]:
    path = tmp_path_factory.mktemp("hypothesis") / "chinwag.db"
    eng = open_database(path, os.urandom(32), create=True)

    # Durability is not what this property is about: skip the fsyncs, so that shrinking
    # a failure takes seconds rather than minutes.
    @event.listens_for(eng, "connect")
    def _fast(dbapi_conn: Any, _record: object) -> None:
        dbapi_conn.execute("PRAGMA synchronous=OFF")

    eng.dispose()  # reconnect with the pragma
    repo = Repository(eng)
    yield repo
    repo.close()


_message = st.tuples(
    st.integers(0, 1),  # which contact it arrives from
    st.integers(0, 24),  # which id, from a small pool: duplicates are common
    st.integers(1, 8),  # Lamport time: ties are common
)


@settings(
    max_examples=60,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    suffixes=st.lists(st.binary(min_size=12, max_size=12), min_size=25, max_size=25, unique=True),
    calls=st.lists(st.lists(st.lists(_message, max_size=8), max_size=3), min_size=1, max_size=5),
)
def test_incoming_batches_store_each_id_once_in_conversation_order(
    shared_repo: Repository, suffixes: list[bytes], calls: list[list[list[tuple[int, int, int]]]]
) -> None:
    repo = shared_repo
    # Hypothesis reuses values between examples: a per-example prefix keeps ids apart.
    prefix = next(_example).to_bytes(4, "big")
    contacts = [_contact("P"), _contact("Q")]
    for c in contacts:
        repo.add_contact(c, NOW)
    first_seen: dict[bytes, tuple[str, int]] = {}

    for call in calls:
        batches = []
        expected_new = []
        for batch in call:
            # One batch is one contact's; let the batch's first message choose it.
            who = contacts[batch[0][0]].id if batch else contacts[0].id
            msgs = []
            for _, which, lamport in batch:
                msg_id = prefix + suffixes[which]
                msgs.append(_incoming(f"{which}@{lamport}", lamport=lamport, msg_id=msg_id))
                if msg_id not in first_seen:
                    first_seen[msg_id] = (who, lamport)
                    expected_new.append(msg_id)
            batches.append((who, msgs))
        stored = repo.store_incoming(batches, NOW_MS)
        assert sorted(r.msg_id for r in stored) == sorted(expected_new)

    for contact in contacts:
        history = repo.history(contact.id, limit=1000)
        mine = {m: lamport for m, (who, lamport) in first_seen.items() if who == contact.id}
        assert {m.msg_id for m in history} == set(mine)
        assert [(m.lamport, m.msg_id) for m in history] == sorted(
            (lamport, m) for m, lamport in mine.items()
        )
        assert repo.message_count(contact.id) == len(mine)


@settings(
    max_examples=20,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    picks=st.lists(
        st.lists(st.integers(0, 179), min_size=120, max_size=260), min_size=2, max_size=4
    ),
)
def test_big_incoming_batches_return_exactly_the_new_rows_with_their_row_ids(
    shared_repo: Repository, picks: list[list[int]]
) -> None:
    """Batches larger than one multi-row INSERT (100 rows), with ids stored before and
    repeated inside the batch at any position: the records returned are the new ones,
    first copy first, in arrival order, each with the row id the database gave it."""
    repo = shared_repo
    prefix = next(_example).to_bytes(4, "big")
    contact = _contact("R")
    repo.add_contact(contact, NOW)
    stored_before: set[bytes] = set()
    for call in picks:
        msgs = [
            _incoming(f"{which}", msg_id=prefix + which.to_bytes(12, "big"), lamport=which + 1)
            for which in call
        ]
        expected = []
        for m in msgs:
            if m.msg_id not in stored_before:
                stored_before.add(m.msg_id)
                expected.append(m.msg_id)
        stored = repo.store_incoming([(contact.id, msgs)], NOW_MS)
        assert [r.msg_id for r in stored] == expected
        for record in stored:
            assert repo.message(record.msg_id) == record  # row id and all
    assert repo.message_count(contact.id) == len(stored_before)


_stored_batch = st.tuples(
    st.sampled_from(["ours", "ours to another", "theirs"]), st.integers(1, 30)
)
_span = st.tuples(st.integers(0, 400), st.integers(1, 40))  # (start, length), wrapped
_state = st.sampled_from([MessageState.SENT, MessageState.DELIVERED, MessageState.READ])


def _pick(spans: list[tuple[int, int]], ids: list[bytes]) -> list[bytes]:
    return [ids[(start + i) % len(ids)] for start, length in spans for i in range(length)]


@settings(
    max_examples=100,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    batches=st.lists(_stored_batch, min_size=1, max_size=8),
    earlier=st.tuples(st.lists(_span, max_size=3), _state),
    receipt=st.lists(_span, min_size=1, max_size=5),
    holes=st.lists(st.integers(0, 400), max_size=6),
    unknown=st.integers(0, 3),
    state=_state,
    returning=st.booleans(),
)
def test_a_receipt_moves_exactly_the_rows_a_per_row_update_would(  # noqa: PLR0913
    shared_repo: Repository,
    batches: list[tuple[str, int]],
    earlier: tuple[list[tuple[int, int]], MessageState],
    receipt: list[tuple[int, int]],
    holes: list[int],
    unknown: int,
    state: MessageState,
    returning: bool,
) -> None:
    """Whatever ids a receipt names (runs with gaps of any size, repeats, in any order, ids of other
    conversations, of arrivals, unknown ones; some moved on by an earlier receipt), the
    rows after it are those of a per-row `UPDATE .. WHERE msg_id = ?` with the same
    guards: only our messages to that contact, only forward."""
    repo = shared_repo
    alice, bob = _contact("A"), _contact("B")
    repo.add_contact(alice, NOW)
    repo.add_contact(bob, NOW)
    ids: list[bytes] = []
    for kind, count in batches:
        if kind == "theirs":
            stored = repo.store_incoming([(alice.id, [_incoming() for _ in range(count)])], NOW_MS)
        else:
            who = alice.id if kind == "ours" else bob.id
            stored = repo.queue_outgoing_many([(who, "x")] * count, NOW_MS)
        ids += [r.msg_id for r in stored]
    spans, earlier_state = earlier
    repo.advance_states(alice.id, _pick(spans, ids), earlier_state)  # some leave the map

    def rows() -> dict[bytes, tuple[str, bool, MessageState]]:
        with repo.engine.connect() as conn:
            found = conn.exec_driver_sql(
                "SELECT msg_id, contact_id, outgoing, state FROM messages "
                "WHERE contact_id IN (?, ?)",
                (alice.id, bob.id),
            ).all()
        return {r[0]: (r[1], bool(r[2]), MessageState(r[3])) for r in found}

    before = rows()
    gaps = {ids[i % len(ids)] for i in holes}  # ids left out of the spans: short gaps
    named = [i for i in _pick(receipt, ids) if i not in gaps]
    named += [os.urandom(16) for _ in range(unknown)]
    random.Random(len(named)).shuffle(named)
    expected = dict(before)
    moved = set()
    for msg_id in named:  # the per-row update, in Python
        if msg_id in expected:
            cid, outgoing, old = expected[msg_id]
            if cid == alice.id and outgoing and old < state:
                expected[msg_id] = (cid, outgoing, state)
                moved.add(msg_id)
    changed = repo.advance_states_many([(alice.id, named, state)], returning=returning)
    assert rows() == expected
    assert sorted(changed) == (sorted(moved) if returning else [])


def test_upgrade_to_0007_indexes_the_group_messages_already_stored(tmp_path: Path) -> None:
    from messenger.storage.group_repository import GroupRepository

    old = create_db_engine(tmp_path / "old.db", os.urandom(32))
    try:
        migrate(old, "0006")
        with old.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO chat_groups (id, name, epoch, roster_hash, roster, state, "
                    "lamport, next_seq, created_at) VALUES (:g, 'Lab', 1, x'00', x'00', 0, 0, "
                    "1, 0)"
                ),
                {"g": b"g" * 16},
            )
            for seq, body in enumerate(["rhubarb crumble", "plain custard"], 1):
                conn.execute(
                    text(
                        "INSERT INTO group_messages (msg_id, group_id, author, seq, epoch, "
                        "lamport, sent_at_ms, body, signature, outgoing, seen) VALUES "
                        "(:m, :g, x'01', :s, 1, :s, :s, :b, x'00', 0, 0)"
                    ),
                    {"m": bytes([seq]) * 16, "g": b"g" * 16, "s": seq, "b": body},
                )
        migrate(old)
        assert current_revision(old) == SCHEMA_HEAD
        found = GroupRepository(Repository(old)).search("rhubarb")
        assert [m.body for m in found] == ["rhubarb crumble"]
    finally:
        old.dispose()

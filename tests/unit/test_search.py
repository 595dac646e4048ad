"""Full-text search: newest first straight from the FTS5 index, paged with `before`, and
an index that stays complete when row ids are given out again (real SQLCipher files)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messenger.storage.database import create_db_engine, migrate, open_database
from messenger.storage.group_repository import _SEARCH_SQL as GROUP_SEARCH_SQL
from messenger.storage.group_repository import GroupRepository, NewGroupMessage
from messenger.storage.repository import (
    _SEARCH_SQL,
    IncomingMessage,
    Repository,
)
from tests.contacts import random_contact
from tests.unit.test_summaries import add_contact_0007

NOW_MS = 1_700_000_000_000


def _incoming(body: str, lamport: int = 1, sent_at_ms: int = NOW_MS) -> IncomingMessage:
    return IncomingMessage(os.urandom(16), lamport, lamport, sent_at_ms, body)


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    r = Repository(open_database(tmp_path / "chinwag.db", os.urandom(32), create=True))
    yield r
    r.close()


def _all_pages(repo: Repository, query: str, size: int, contact_id: str | None = None) -> list[int]:
    found: list[int] = []
    before: int | None = None
    while True:
        page = repo.search(query, contact_id=contact_id, limit=size, before=before)
        assert len(page) <= size
        if not page:
            return found
        found += [m.row_id for m in page]
        before = page[-1].row_id


def test_the_plan_reads_the_index_newest_first_without_sorting(repo: Repository) -> None:
    # The point of the query's shape: FTS5 walks its rowids backwards and stops at the
    # LIMIT. A temp B-tree would mean every match is collected and sorted first.
    for sql in (_SEARCH_SQL, GROUP_SEARCH_SQL):
        with repo.engine.connect() as conn:
            plan = conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {sql}", ('"word"*', None, None, 50)
            ).all()
        steps = " / ".join(str(row[-1]) for row in plan)
        assert "TEMP B-TREE" not in steps, steps
        assert steps.startswith("SCAN f VIRTUAL TABLE"), steps


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    words=st.lists(st.sampled_from(["plum", "pear", "plum pear", "fig"]), min_size=1, max_size=30),
    who=st.lists(st.integers(0, 2), min_size=30, max_size=30),
    size=st.integers(1, 7),
)
def test_pages_are_newest_stored_first_without_gaps_or_overlaps(
    tmp_path_factory: pytest.TempPathFactory, words: list[str], who: list[int], size: int
) -> None:
    path = tmp_path_factory.mktemp("search") / "chinwag.db"
    repo = Repository(open_database(path, os.urandom(32), create=True))
    try:
        people = [random_contact(n) for n in ("Ana", "Bo", "Cy")]
        for c in people:
            repo.add_contact(c, 0)
        stored = []  # (row_id, contact, body), in the order they were stored
        for i, body in enumerate(words):
            contact = people[who[i]].id
            # Lamport and sent time run against storage order: the search order is the
            # order of storing, not what a sender claims.
            if i % 3 == 0:
                (record,) = repo.queue_outgoing_many([(contact, body)], NOW_MS - i)
            else:
                (record,) = repo.store_incoming(
                    [(contact, [_incoming(body, 100 - i, NOW_MS - i)])], NOW_MS
                )
            stored.append((record.row_id, contact, body))
        for query in ("plum", "pe", "plum pear", "fig"):
            expected = [
                row
                for row, _, body in reversed(stored)
                if all(any(w.startswith(q) for w in body.split()) for q in query.split())
            ]
            assert _all_pages(repo, query, size) == expected
            one = people[1].id
            assert _all_pages(repo, query, size, one) == [
                row for row, contact, _ in reversed(stored) if contact == one and row in expected
            ]
    finally:
        repo.close()


def test_group_search_pages_newest_stored_first(repo: Repository) -> None:
    groups = GroupRepository(repo)
    gid, other = b"g" * 16, b"h" * 16
    for g in (gid, other):
        groups.save_roster(g, epoch=1, name="G", roster=b"r", roster_hash=b"h", state=0, now=0)
    for seq in range(1, 12):
        groups.store_messages(
            [
                NewGroupMessage(
                    os.urandom(16),
                    gid if seq % 4 else other,
                    b"a" * 32,
                    seq,
                    1,
                    100 - seq,
                    NOW_MS,
                    f"quince {seq}",
                    b"s",
                    False,
                )
            ],
            NOW_MS,
        )
    pages, before = [], None
    while page := groups.search("quin", group_id=gid, limit=3, before=before):
        pages.append([int(m.body.split()[1]) for m in page])
        before = page[-1].row_id
    assert pages == [[11, 10, 9], [7, 6, 5], [3, 2, 1]]
    assert [int(m.body.split()[1]) for m in groups.search("quince", limit=2)] == [11, 10]
    assert groups.search("quince", limit=0) == []


def test_a_reused_row_id_is_still_indexed(repo: Repository) -> None:
    """Deleting the newest rows (a contact removed) hands their ids out again; the
    deferred indexer must not take such an id for one it already indexed."""
    keep, drop = random_contact("Keep"), random_contact("Drop")
    repo.add_contact(keep, 0)
    repo.add_contact(drop, 0)
    repo.store_incoming([(keep.id, [_incoming("apple")])], NOW_MS)
    (gone,) = repo.store_incoming([(drop.id, [_incoming("banana")])], NOW_MS)
    assert [m.body for m in repo.search("banana")] == ["banana"]  # indexes up to here
    repo.delete_contact(drop.id)
    (new,) = repo.store_incoming([(keep.id, [_incoming("cherry", 2)])], NOW_MS)
    assert new.row_id == gone.row_id  # the id was given out again
    assert [m.body for m in repo.search("cherry")] == ["cherry"]
    assert repo.search("banana") == []
    assert [m.body for m in repo.search("apple")] == ["apple"]


def _gm(group_id: bytes, seq: int, body: str, msg_id: bytes | None = None) -> NewGroupMessage:
    return NewGroupMessage(
        msg_id or os.urandom(16), group_id, b"a" * 32, seq, 1, seq, NOW_MS, body, b"s", False
    )


def fts_rows(engine: Any, fts: str = "group_messages_fts") -> int:
    """How many rows the index holds: the distinct row ids of its entries (it keeps no
    per-row table since migration 0016)."""
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{fts}_rows "
            f"USING fts5vocab(main, {fts}, 'instance')"
        )
        return int(conn.exec_driver_sql(f"SELECT count(DISTINCT doc) FROM {fts}_rows").one()[0])


def fts_matches_content(engine: Any, fts: str = "group_messages_fts") -> None:
    """FTS5's own check of the index against its content table: each stored row is
    indexed once, with what it holds (raises if not)."""
    with engine.begin() as conn:
        conn.exec_driver_sql(f"INSERT INTO {fts}({fts}, rank) VALUES ('integrity-check', 1)")


def _group_fts_rows(repo: Repository) -> int:
    return fts_rows(repo.engine)


def test_group_messages_are_indexed_after_their_commit_and_before_a_search(
    repo: Repository,
) -> None:
    """Migration 0010: storing a group message leaves the search index alone (the FTS5
    insert was a third of a lone message's commit); index_pending, and every search,
    catch up."""
    groups = GroupRepository(repo)
    gid = b"g" * 16
    groups.save_roster(gid, epoch=1, name="G", roster=b"r", roster_hash=b"h", state=0, now=0)
    (one,) = groups.store_messages([_gm(gid, 1, "damson jam")], NOW_MS)
    groups.store_messages([_gm(gid, 2, "greengage"), _gm(gid, 3, "damson tart")], NOW_MS)
    assert _group_fts_rows(repo) == 0
    assert groups.index_pending(limit=2) == 2
    assert _group_fts_rows(repo) == 2
    assert [m.body for m in groups.search("damson")] == ["damson tart", "damson jam"]
    assert groups.index_pending() == 0
    # A lone message again: a duplicate (same id, or same author and seq) is dropped and
    # not reported as stored; a new one gets the next row id.
    assert groups.store_messages([_gm(gid, 1, "damson jam", one.msg_id)], NOW_MS) == []
    assert groups.store_messages([_gm(gid, 1, "other id, same seq")], NOW_MS) == []
    (four,) = groups.store_messages([_gm(gid, 4, "sloe gin")], NOW_MS)
    assert four.row_id == one.row_id + 3
    assert [m.body for m in groups.search("sloe")] == ["sloe gin"]
    assert groups.message_count(gid) == 4


def test_a_reused_group_row_id_is_still_indexed(repo: Repository) -> None:
    """As for 1:1 messages: deleting a group's messages hands their ids out again, and
    the deferred indexer must not take such an id for one it already indexed."""
    groups = GroupRepository(repo)
    keep, drop = b"k" * 16, b"d" * 16
    for g in (keep, drop):
        groups.save_roster(g, epoch=1, name="G", roster=b"r", roster_hash=b"h", state=0, now=0)
    groups.store_messages([_gm(keep, 1, "apple")], NOW_MS)
    (gone,) = groups.store_messages([_gm(drop, 1, "banana")], NOW_MS)
    assert [m.body for m in groups.search("banana")] == ["banana"]  # indexes up to here
    groups.forget_group(drop, 3)
    (new,) = groups.store_messages([_gm(keep, 2, "cherry")], NOW_MS)
    assert new.row_id == gone.row_id  # the id was given out again
    assert [m.body for m in groups.search("cherry")] == ["cherry"]
    assert groups.search("banana") == []
    assert [m.body for m in groups.search("apple")] == ["apple"]


def test_upgrade_to_0010_keeps_group_messages_searchable(tmp_path: Path) -> None:
    eng = create_db_engine(tmp_path / "old.db", os.urandom(32))
    try:
        migrate(eng, "0009")
        groups = GroupRepository(Repository(eng))
        gid = b"g" * 16
        groups.save_roster(gid, epoch=1, name="G", roster=b"r", roster_hash=b"h", state=0, now=0)
        groups.store_messages([_gm(gid, 1, "medlar")], NOW_MS)  # indexed by 0008's trigger
        migrate(eng)
        groups.store_messages([_gm(gid, 2, "medlar jelly")], NOW_MS)  # indexed later
        assert [m.body for m in groups.search("medlar")] == ["medlar jelly", "medlar"]
        assert fts_rows(eng) == 2  # and the index holds each once
        fts_matches_content(eng)
    finally:
        eng.dispose()


def index_as_0007(repo: Repository) -> None:
    """The deferred indexer as it ran on a 0007 schema (the index had only the body)."""
    with repo.engine.begin() as conn:
        (last,) = conn.exec_driver_sql("SELECT last_id FROM search_progress").one()
        conn.exec_driver_sql(
            "INSERT INTO messages_fts(rowid, body) SELECT id, body FROM messages WHERE id > ?",
            (last,),
        )
        conn.exec_driver_sql(
            "UPDATE search_progress SET last_id = (SELECT max(id) FROM messages) "
            "WHERE (SELECT max(id) FROM messages) > last_id"
        )


def test_upgrade_to_0008_repairs_an_index_that_missed_a_reused_id(tmp_path: Path) -> None:
    eng = create_db_engine(tmp_path / "old.db", os.urandom(32))
    try:
        migrate(eng, "0007")
        old = Repository(eng)
        keep, drop = random_contact("Keep"), random_contact("Drop")
        add_contact_0007(old, keep)
        add_contact_0007(old, drop)
        old.store_incoming([(keep.id, [_incoming("apple")])], NOW_MS)
        old.store_incoming([(drop.id, [_incoming("banana")])], NOW_MS)
        index_as_0007(old)
        old.delete_contact(drop.id)
        old.store_incoming([(keep.id, [_incoming("cherry", 2)])], NOW_MS)
        index_as_0007(old)
        with eng.connect() as conn:  # the 0007 bug, as a profile may hold it
            missed = conn.exec_driver_sql(
                "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'cherry'"
            ).scalar_one()
        assert missed == 0

        migrate(eng)

        repo = Repository(eng)
        assert [m.body for m in repo.search("cherry")] == ["cherry"]
        assert [m.body for m in repo.search("apple")] == ["apple"]
        assert repo.search("banana") == []
    finally:
        eng.dispose()


def test_a_one_letter_last_word_is_a_whole_word_not_a_prefix(repo: Repository) -> None:
    c = random_contact("Ana")
    repo.add_contact(c, 0)
    repo.store_incoming([(c.id, [_incoming("plum"), _incoming("p is for pear")])], NOW_MS)
    assert [m.body for m in repo.search("p")] == ["p is for pear"]
    assert [m.body for m in repo.search("pl")] == ["plum"]
    assert [m.body for m in repo.search("is p")] == ["p is for pear"]


def test_words_that_look_like_fts_syntax_or_a_column_are_text(repo: Repository) -> None:
    c = random_contact("Ana")
    repo.add_contact(c, 0)
    repo.store_incoming([(c.id, [_incoming(f"about {c.id}"), _incoming("contact_id : x")])], 0)
    # The contact id column is not searched by what the user types, only the body.
    assert [m.body for m in repo.search(c.id)] == [f"about {c.id}"]
    assert repo.search("contact_id") != [] and repo.search('") OR ("') == []
    assert repo.search("about", contact_id='x" OR "') == []
    assert len(repo.search("about", contact_id=c.id)) == 1

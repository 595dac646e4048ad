"""The repository's "safety number changed" hold: who is held, the migration's columns,
and what accept_new_key moves. A real SQLCipher file."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from messenger.records import MessageState
from messenger.storage.database import create_db_engine, current_revision, migrate, open_database
from messenger.storage.group_repository import GroupRepository
from messenger.storage.repository import Repository, StorageError
from tests.unit.test_storage import NOW, NOW_MS, _contact


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = open_database(tmp_path / "chinwag.db", os.urandom(32), create=True)
    yield eng
    eng.dispose()


@pytest.fixture
def repo(engine: Engine) -> Repository:
    return Repository(engine)


def test_a_known_name_under_another_key_is_held(repo: Repository) -> None:
    bob = _contact("Bob")
    repo.add_contact(bob, NOW)
    carol = _contact("Carol")
    repo.add_contact(carol, NOW + 1)
    again = _contact("  bOB ")  # compared case-folded and trimmed, as the CLI finds names
    repo.add_contact(again, NOW + 2)
    held = repo.contact(again.id)
    assert held is not None and held.key_changed and held.replaces == bob.id
    for other in (bob, carol):
        record = repo.contact(other.id)
        assert record is not None and not record.key_changed and record.replaces is None
    assert repo.key_changed_contacts() == {again.id}
    # The conversation list reads the same columns.
    listed = {row.contact.id: row.contact for row in repo.conversations()}
    assert listed[again.id].key_changed and listed[again.id].replaces == bob.id


def test_verified_or_group_only_is_not_held(repo: Repository) -> None:
    bob = _contact("Bob")
    repo.add_contact(bob, NOW)
    scanned = dataclasses.replace(_contact("Bob"), verified=True)
    repo.add_contact(scanned, NOW + 1)
    record = repo.contact(scanned.id)
    assert record is not None and not record.key_changed and record.replaces == bob.id
    member = _contact("Bob")
    GroupRepository(repo).add_group_contact(member, NOW + 2)
    record = repo.contact(member.id)
    assert record is not None and not record.key_changed and record.replaces is None
    assert repo.key_changed_contacts() == set()


def test_verifying_lifts_the_hold_and_unverifying_does_not_restore_it(repo: Repository) -> None:
    repo.add_contact(_contact("Bob"), NOW)
    new = _contact("Bob")
    repo.add_contact(new, NOW + 1)
    repo.set_verified(new.id, False)
    assert repo.key_changed_contacts() == {new.id}
    repo.set_verified(new.id, True)
    assert repo.key_changed_contacts() == set()
    repo.set_verified(new.id, False)
    assert repo.key_changed_contacts() == set()


def test_accept_moves_only_waiting_texts_only_when_asked(repo: Repository) -> None:
    old = _contact("Bob")
    repo.add_contact(old, NOW)
    first, second, third = repo.queue_outgoing_many(
        [(old.id, "one"), (old.id, "two"), (old.id, "three")], NOW_MS
    )
    repo.advance_states(old.id, [first.msg_id], MessageState.DELIVERED)
    new = _contact("Bob")
    repo.add_contact(new, NOW + 1)
    assert repo.waiting_texts(old.id) == 2

    # Accepting without moving: the queue stays with the earlier contact.
    twin = _contact("Bob")
    repo.add_contact(twin, NOW + 2)
    assert repo.accept_new_key(twin.id, move_queued=False) == []
    assert [m.body for m in repo.outbox(old.id)] == ["two", "three"]

    moved = repo.accept_new_key(new.id, move_queued=True)
    assert moved == [second.msg_id, third.msg_id]
    assert repo.outbox(old.id) == []
    out = repo.outbox(new.id)
    assert [(m.body, m.seq, m.state) for m in out] == [
        ("two", 1, MessageState.QUEUED),
        ("three", 2, MessageState.QUEUED),
    ]
    assert [m.msg_id for m in out] == moved
    # The summaries the triggers keep follow the move; the next message follows the moved.
    assert repo.outbox_counts().get(old.id, 0) == 0 and repo.outbox_counts()[new.id] == 2
    (after,) = repo.queue_outgoing_many([(new.id, "four")], NOW_MS + 1)
    assert after.seq == 3 and after.lamport > max(m.lamport for m in out)
    assert [m.body for m in repo.history(old.id)] == ["one"]
    assert repo.key_changed_contacts() == set()
    with pytest.raises(StorageError):
        repo.accept_new_key("0" * 32, move_queued=True)


def test_migration_0009_adds_the_columns_to_an_old_profile(tmp_path: Path) -> None:
    engine = create_db_engine(tmp_path / "old.db", os.urandom(32))
    migrate(engine, "0008")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO contacts (id, display_name, ed25519_public, x25519_public, "
                "static_certificate, psk, discovery_key, conversation_id, verified, addresses, "
                "created_at, lamport, next_seq, group_only, unread, queued) VALUES "
                "('a', 'Bob', x'01', x'02', x'03', x'04', x'05', x'06', 0, '[]', 1.0, 0, 1, 0, "
                "0, 0)"
            )
        )
    migrate(engine, "0009")
    assert current_revision(engine) == "0009"
    repo = Repository(engine)
    record = repo.contact("a")
    assert record is not None and not record.key_changed and record.replaces is None
    engine.dispose()

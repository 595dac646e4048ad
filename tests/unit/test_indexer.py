"""The background search indexer: a burst is indexed a moment later in few, large
transactions (real SQLCipher; the Db port runs inline)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from messenger.core import indexer
from messenger.core.indexer import SearchIndexer
from messenger.errors import DiskFull
from messenger.storage.database import open_database
from messenger.storage.repository import IncomingMessage, Repository
from tests.contacts import random_contact
from tests.unit.fake_ports import InlineDb

NOW_MS = 1_700_000_000_000


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    r = Repository(open_database(tmp_path / "chinwag.db", os.urandom(32), create=True))
    yield r
    r.close()


async def test_a_burst_is_indexed_in_transactions_of_five_thousand_rows(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each indexing transaction adds an FTS5 segment and a summaries fold: a sustained
    burst's 12,000 rows go in three (2.9-3.0 us a row; six of 2,000 rows cost 3.3-3.9 us,
    issue 15, eighth round), and then every one of them is found."""
    monkeypatch.setattr(indexer, "SEARCH_INDEX_DELAY", 0)
    contact = random_contact("Bob")
    repo.add_contact(contact, 0.0)
    burst = [
        IncomingMessage(os.urandom(16), i, i, NOW_MS, f"m{i:05d} burst") for i in range(1, 12_001)
    ]
    repo.store_incoming([(contact.id, burst)], NOW_MS)
    chunks: list[int] = []
    caught_up = asyncio.Event()

    def index_pending(limit: int) -> int:
        done = repo.index_pending(limit)
        if done:
            chunks.append(done)
        else:
            caught_up.set()
        return done

    def disk_full(exc: DiskFull) -> None:
        raise AssertionError(exc)

    worker = SearchIndexer(InlineDb(), index_pending, disk_full)
    task = asyncio.create_task(worker.run())
    try:
        worker.soon()
        async with asyncio.timeout(30):
            await caught_up.wait()
    finally:
        task.cancel()
    assert chunks == [5_000, 5_000, 2_000]
    # Indexed (the search would otherwise index them itself first): all found.
    assert repo.index_pending() == 0
    assert len(repo.search("burst", limit=20_000)) == 12_000
    assert [m.body for m in repo.search("m11999")] == ["m11999 burst"]

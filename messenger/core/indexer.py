"""The background search indexer of the 1:1 chat and of the groups.

Stored messages are added to their FTS5 index a moment after the writes that asked for
it, in chunks, never inside a message's commit (the FTS5 insert was a third of a lone
arriving message's storing, issue 15); a killed process's unindexed rows are picked up at
the next start (the repositories keep how far they got).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import DiskFull

if TYPE_CHECKING:
    from .ports import Db

# Seconds after a write before its messages are indexed: a burst finishes first.
SEARCH_INDEX_DELAY = 0.5
# Rows per indexing transaction, so other work gets the database in between. Each
# transaction adds an FTS5 segment (merged later with others) and folds its chunk into
# the summaries, so larger chunks cost less a row: measured alone (SQLCipher, the
# benchmarks' bodies, 15,000 rows pending per pass) 3.3-3.9 us a row in chunks of 2,000,
# 2.9-3.0 in 5,000, 2.8 in 10,000; a 5,000-row transaction holds the database thread
# ~30 ms at load 13, one of 10,000 up to ~45 (issue 15, eighth round). A search indexes
# whatever is pending first, so the chunk delays no result.
INDEX_CHUNK = 5_000


class SearchIndexer:
    def __init__(
        self,
        db: Db,
        index_pending: Callable[[int], int],
        on_disk_full: Callable[[DiskFull], None],
    ) -> None:
        self._db = db
        self._index_pending = index_pending  # indexes up to N rows; returns how many
        self._on_disk_full = on_disk_full  # indexed again once there is room
        self._wanted = asyncio.Event()

    def soon(self) -> None:
        """Index what is stored and not yet indexed, a moment from now."""
        self._wanted.set()

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            await asyncio.sleep(SEARCH_INDEX_DELAY)
            self._wanted.clear()
            try:
                while await self._db.run(self._index_pending, INDEX_CHUNK):
                    pass
            except DiskFull as exc:
                self._on_disk_full(exc)

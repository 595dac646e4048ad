"""A full disk: tell the user once, watch for room, and then have what was not stored
sent again.

Arriving messages that could not be stored were not acknowledged, so their senders keep
them; they resend only on a new session, so once there is room again the sessions of
those senders are closed (the dialers redial at once). PeerService builds one DiskWatch
and hands its three callbacks to the workers that write (chat, groups).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DiskFull
from ..events import DiskSpace

if TYPE_CHECKING:
    from .ports import Emit, LinkRegistry, Tasks

log = logging.getLogger(__name__)

# While the disk is full, its free space is looked at this often; once this much more is
# free than when the write failed, the sessions whose messages were not stored are closed
# so their senders resend (more than "some": a write too big for a sliver would fail again).
DISK_POLL_INTERVAL = 0.5
DISK_ROOM_NEEDED = 1 << 20


class DiskWatch:
    def __init__(
        self,
        *,
        folder: Path,
        emit: Emit,
        tasks: Tasks,
        links: LinkRegistry,
        index_soon: Callable[[], None],
        closing: Callable[[], bool],
        free_space: Callable[[Path], int] = lambda path: shutil.disk_usage(path).free,
    ) -> None:
        self._folder = folder  # the profile folder: the disk the database is on
        self._emit = emit
        self._tasks = tasks
        self._links = links
        self._index_soon = index_soon  # the search index waits for room too
        self._closing = closing
        self._free_space = free_space
        # Contacts whose arriving messages were not stored because the disk was full (they
        # were not acknowledged; their sessions are closed once there is room again).
        self._unstored: set[str] = set()
        self._full = False
        self._free_when_full = 0

    @property
    def full(self) -> bool:
        return self._full

    def not_stored(self, exc: DiskFull, contact_ids: set[str]) -> None:
        """Arrivals from these contacts could not be stored: resent once there is room."""
        self._unstored.update(contact_ids)
        self.note_full(exc)

    def note_full(self, exc: DiskFull) -> None:
        """A write failed for lack of space: tell the user once, and watch for room."""
        if self._full:
            log.debug("still full: %s", exc)
            return
        log.warning("%s", exc)
        if self._closing():
            return
        self._full = True
        self._free_when_full = self._free_space(self._folder)
        self._emit(DiskSpace(full=True, message=str(exc)))
        self._tasks.spawn(self._await_space(), "chinwag-disk-watch")

    async def _await_space(self) -> None:
        """Poll the free space while the disk is full (there is no portable "space freed"
        notification); a cheap statvfs, no write, every DISK_POLL_INTERVAL seconds."""
        while self._full:
            free = await asyncio.to_thread(self._free_space, self._folder)
            if free >= self._free_when_full + DISK_ROOM_NEEDED:
                self.space_back()
                return
            await asyncio.sleep(DISK_POLL_INTERVAL)

    def space_back(self) -> None:
        """Room again: close the sessions whose messages were not stored, so each sender
        resends its outbox on the new session (stored once: dedupe by id, protocol.md
        9.3); the dialers redial at once. If the disk fills again, we come back here."""
        if not self._full:
            return
        self._full = False
        unstored, self._unstored = self._unstored, set()
        for contact_id in unstored:
            conn = self._links.connection(contact_id)
            if conn is not None and not conn.closed.is_set():
                conn.close("messages were not stored (disk full); send them again")
            else:
                self._links.poke(contact_id)
        self._index_soon()
        self._emit(DiskSpace(full=False, message="there is room on the disk again"))

"""The disk-full watcher (messenger/core/disk.py) built alone from small fakes of its
ports: a free-space reading the test sets, fake links and connections (no PeerService,
no MagicMock). The real full disk (a small tmpfs) is tests/net/test_disk_full.py's."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from messenger.core.disk import DISK_ROOM_NEEDED, DiskWatch
from messenger.errors import DiskFull
from messenger.events import DiskSpace

from .fake_ports import Events, FakeConn, FakeLinks, Tasks, until


@dataclasses.dataclass
class World:
    watch: DiskWatch
    events: Events
    links: FakeLinks
    tasks: Tasks
    free: list[int]  # the free space the watcher reads
    indexed: list[int]  # times the search index was woken
    closing: list[bool]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    events, links, tasks = Events(), FakeLinks(), Tasks()
    free, indexed, closing = [1000], [], [False]
    watch = DiskWatch(
        folder=tmp_path,
        emit=events,
        tasks=tasks,
        links=links,  # type: ignore[arg-type]
        index_soon=lambda: indexed.append(1),
        closing=lambda: closing[0],
        free_space=lambda path: free[0],
    )
    try:
        yield World(watch, events, links, tasks, free, indexed, closing)
    finally:
        await tasks.aclose()


async def test_a_full_disk_is_told_once_and_watched_until_there_is_room(world: World) -> None:
    online, away = FakeConn("online"), FakeConn("away")
    world.links.conns["online"] = online
    full = DiskFull(Path("/profile"))
    world.watch.not_stored(full, {"online", "away"})
    world.watch.note_full(DiskFull(Path("/profile")))

    assert world.watch.full
    assert world.events == [DiskSpace(full=True, message=str(full))]
    assert len(world.tasks.tasks) == 1  # one watcher

    world.free[0] += DISK_ROOM_NEEDED - 1  # some room, not enough
    world.watch.note_full(DiskFull(Path("/profile")))  # nothing new while full
    assert world.watch.full and len(world.events) == 1
    world.free[0] += 1
    await until(lambda: not world.watch.full)

    assert world.events[-1] == DiskSpace(full=False, message="there is room on the disk again")
    assert online.close_reason == "messages were not stored (disk full); send them again"
    assert world.links.poked == ["away"]  # offline: dialled at once instead
    assert away.close_reason is None and world.indexed == [1]
    await until(lambda: not world.tasks.tasks)  # the watcher ended


async def test_a_write_that_succeeds_ends_the_wait_at_once(world: World) -> None:
    world.watch.not_stored(DiskFull(Path("/profile")), {"someone"})
    world.watch.space_back()
    assert not world.watch.full and world.links.poked == ["someone"]
    world.watch.space_back()  # not full: nothing more
    assert world.links.poked == ["someone"] and world.indexed == [1]
    assert [e.full for e in world.events.of(DiskSpace)] == [True, False]

    world.watch.not_stored(DiskFull(Path("/profile")), set())  # full again: told again
    assert [e.full for e in world.events.of(DiskSpace)] == [True, False, True]


async def test_nothing_is_watched_while_closing(world: World) -> None:
    world.closing[0] = True
    world.watch.note_full(DiskFull(Path("/profile")))
    assert not world.watch.full and world.events == [] and not world.tasks.tasks

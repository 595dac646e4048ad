"""The group-commit Batcher's loop-pass submissions (`submit_soon`): written at the end of
the pass by `write_now` when nothing else is, else by the batcher's task behind what it
has; every item's future gets its own result or the write's error."""

from __future__ import annotations

import asyncio

import pytest

from messenger.core.batch import Batcher
from messenger.errors import ServiceError


class Writes:
    """Both write paths, recorded: ("now" | "task", items). `gate`, when set, holds the
    task's write until it is opened; `refuse_now` makes write_now decline."""

    def __init__(self) -> None:
        self.log: list[tuple[str, list[int]]] = []
        self.gate: asyncio.Event | None = None
        self.at_gate = asyncio.Event()
        self.refuse_now = False
        self.fail: Exception | None = None

    async def task(self, items: list[int]) -> list[int]:
        self.log.append(("task", items))
        if self.gate is not None:
            self.at_gate.set()
            await self.gate.wait()
        return [i * 10 for i in items]

    def now(self, items: list[int]) -> list[int] | None:
        if self.refuse_now:
            return None
        self.log.append(("now", items))
        if self.fail is not None:
            raise self.fail
        return [i * 10 for i in items]


@pytest.fixture
async def writes() -> Writes:
    return Writes()


def batcher(writes: Writes) -> Batcher[int, int]:
    return Batcher(writes.task, 100, "test-batcher", write_now=writes.now)


async def test_the_items_of_one_pass_are_written_together_at_its_end(writes: Writes) -> None:
    b = batcher(writes)
    try:
        futures = [b.submit_soon(i) for i in range(3)]
        assert writes.log == []  # not during the pass
        assert await asyncio.gather(*futures) == [0, 10, 20]
        assert writes.log == [("now", [0, 1, 2])]
        assert await b.submit_soon(7) == 70
        assert writes.log == [("now", [0, 1, 2]), ("now", [7])]
    finally:
        await b.aclose()


async def test_items_submitted_while_a_batch_is_written_come_after_it(writes: Writes) -> None:
    b = batcher(writes)
    try:
        writes.gate = asyncio.Event()
        first = b.submit_nowait(1)
        await writes.at_gate.wait()
        later = b.submit_soon(2)
        writes.gate.set()
        assert (await first, await later) == (10, 20)
        assert writes.log == [("task", [1]), ("task", [2])]
    finally:
        await b.aclose()


async def test_what_write_now_declines_goes_to_the_task(writes: Writes) -> None:
    b = batcher(writes)
    try:
        writes.refuse_now = True
        assert await asyncio.gather(b.submit_soon(1), b.submit_soon(2)) == [10, 20]
        assert writes.log == [("task", [1, 2])]
    finally:
        await b.aclose()


async def test_a_failed_write_now_fails_each_of_its_items(writes: Writes) -> None:
    b = batcher(writes)
    try:
        writes.fail = OSError("disk")
        futures = [b.submit_soon(i) for i in range(2)]
        for future in futures:
            with pytest.raises(OSError, match="disk"):
                await future
    finally:
        await b.aclose()


async def test_closing_writes_what_the_pass_held_and_fails_what_waits_for_the_task(
    writes: Writes,
) -> None:
    b = batcher(writes)
    written = b.submit_soon(1)
    await b.aclose()  # the pass ends first: held items are written, not lost
    assert await written == 10
    b = batcher(writes)
    writes.refuse_now = True
    queued = b.submit_soon(2)  # handed to the task, which is closed before it writes
    await b.aclose()
    with pytest.raises(ServiceError, match="shutting down"):
        await queued
    assert writes.log == [("now", [1])]

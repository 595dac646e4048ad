"""Group commit: items submitted concurrently are written in one batch.

Arriving messages, our own sends and receipts each go through one Batcher, so a burst of
a thousand messages costs a handful of transactions, not a thousand.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from ..errors import ServiceError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Collects items submitted concurrently and writes them in one batch (group commit).

    `submit` waits until its item is durably written and returns that item's result;
    `post` queues an item whose result nobody waits for; `submit_soon` holds its item
    until the end of the loop pass, then writes what the pass submitted with `write_now`
    right there if nothing is queued or being written, else queues it (see there).
    """

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[list[R]]],
        max_batch: int,
        name: str,
        gather_delay: float = 0.0,
        write_now: Callable[[list[T]], list[R] | None] | None = None,
    ) -> None:
        self._write = write
        # Writes a pass's items synchronously, or returns None when it cannot now.
        self._write_now = write_now
        self._held: list[tuple[T, asyncio.Future[R]]] = []
        self._max_batch = max_batch
        self._gather_delay = gather_delay  # wait this long after the first item for more
        # A deque and one Event: asyncio.Queue costs several times more per item.
        self._items: collections.deque[tuple[T, asyncio.Future[R] | None]] = collections.deque()
        self._ready = asyncio.Event()
        self._writing = False
        self._wake = asyncio.Event()  # cuts the gather delay short (settle)
        self._settlers: list[asyncio.Future[None]] = []
        self._task = asyncio.create_task(self._run(), name=name)

    def _put(self, item: T, future: asyncio.Future[R] | None) -> None:
        self._items.append((item, future))
        if not self._ready.is_set():
            self._ready.set()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._put(item, future)
        return await future

    def submit_nowait(self, item: T) -> asyncio.Future[R]:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._put(item, future)
        return future

    def post(self, item: T) -> None:
        self._put(item, None)

    def submit_soon(self, item: T) -> asyncio.Future[R]:
        """`submit_nowait`, woken by a loop callback at the end of this loop pass instead
        of the batcher's task: a lone item (a message typed) is written there with
        `write_now`, without a task switch (issue 15); the items of a burst, submitted in
        one pass, are still one batch."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        if not self._held:
            loop.call_soon(self._flush_held)
        self._held.append((item, future))
        return future

    def _flush_held(self) -> None:
        held, self._held = self._held, []
        if not held:
            return
        if self._write_now is not None and self.idle:  # else behind what is queued
            try:
                results = self._write_now([item for item, _ in held])
            except Exception as exc:
                log.exception("batch write failed")
                for _, future in held:
                    if not future.done():
                        future.set_exception(exc)
                return
            if results is not None:
                for (_, future), result in zip(held, results, strict=True):
                    if not future.done():
                        future.set_result(result)
                return
        self._items.extend(held)  # one call for a burst's items (issue 15)
        if not self._ready.is_set():
            self._ready.set()

    async def _run(self) -> None:
        items = self._items
        while True:
            if not items:
                self._release_settlers()
                self._ready.clear()
                await self._ready.wait()
            if self._gather_delay and not self._settlers:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._gather_delay):
                        await self._wake.wait()
            self._wake.clear()
            batch = [items.popleft() for _ in range(min(len(items), self._max_batch))]
            settlers, self._settlers = self._settlers, []
            await self._write_batch(batch)
            for settler in settlers:
                if not settler.done():
                    settler.set_result(None)

    @property
    def idle(self) -> bool:
        """Nothing is queued or being written: a write made elsewhere now keeps the order."""
        return not self._items and not self._writing

    async def settle(self) -> None:
        """Write what was submitted so far without waiting out the gather delay, and
        return once it is written (reads see what the events already told)."""
        if not self._items and not self._writing:
            return
        settler: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._settlers.append(settler)
        self._wake.set()
        await settler

    def _release_settlers(self) -> None:
        settlers, self._settlers = self._settlers, []
        for settler in settlers:
            if not settler.done():
                settler.set_result(None)

    async def _write_batch(self, batch: list[tuple[T, asyncio.Future[R] | None]]) -> None:
        self._writing = True
        try:
            results = await self._write([item for item, _ in batch])
        except Exception as exc:
            log.exception("batch write failed")
            for _, future in batch:
                if future is not None and not future.done():
                    future.set_exception(exc)
            return
        finally:
            self._writing = False
        for (_, future), result in zip(batch, results, strict=True):
            if future is not None and not future.done():
                future.set_result(result)

    async def aclose(self, *, flush: bool = False) -> None:
        """Stop. With `flush`, items not yet being written are written first (receipts:
        their batch may be waiting out the gather delay); else they fail."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        left: list[tuple[T, asyncio.Future[R] | None]] = [*self._held, *self._items]
        self._held.clear()
        self._items.clear()
        if flush and left:
            await self._write_batch(left)
        for _, future in left:
            if future is None:
                continue
            if not future.done():
                future.set_exception(ServiceError("the service is shutting down"))
            if not future.cancelled():
                future.exception()  # retrieved: nobody awaits a submit_nowait future
        self._release_settlers()

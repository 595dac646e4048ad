"""Owned background tasks for widgets and models: nothing is fire-and-forget.

Every task a widget starts goes through its `TaskSet`; closing the widget cancels them, so
no task outlives the object it updates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("chinwag.ui")

T = TypeVar("T")


class TaskSet:
    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False

    def spawn(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> asyncio.Task[T]:
        if self.closed:
            coro.close()
            raise RuntimeError(f"{self._name} is closed")
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                return
            exc = t.exception()
            if exc is None:
                return
            if on_error is not None:
                on_error(exc)
            else:
                log.error("%s: background task failed", self._name, exc_info=exc)

        task.add_done_callback(done)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    def cancel(self) -> None:
        """Cancel everything still running; the set stays usable."""
        for task in list(self._tasks):
            task.cancel()

    def close(self) -> None:
        self.closed = True
        self.cancel()

    async def wait(self) -> None:
        """Wait for (or after close, the cancellation of) every task in the set."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

"""The two shared services every worker is handed: the database thread and a task owner.

PeerService builds one of each and passes them to the workers through the `Db` and `Tasks`
ports (ports.py); tests hand a worker fakes of those ports instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# Hot-path writes of at most this many messages, and this many characters of text, may
# run on the loop thread (DbThread.write): a few hundred microseconds of blocking at most.
INLINE_WRITE_MAX = 16
INLINE_WRITE_MAX_CHARS = 16 * 1024


class DbThread:
    """All database work runs on one dedicated thread, so the event loop never waits on
    disk and the SQLite connection is used by one thread at a time."""

    def __init__(self, name: str = "chinwag-db") -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._jobs = 0  # jobs handed to the thread and not yet finished
        self._jobs_lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Jobs handed to the thread and not finished (cancelled waiters included)."""
        return self._jobs

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._jobs_lock:
            self._jobs += 1
        try:
            job = self._executor.submit(fn, *args, **kwargs)
        except BaseException:
            self._job_done(None)
            raise
        # Counted down when the job has really finished (or was cancelled before it ran),
        # not when an awaiting task is cancelled: until then the thread may be using the
        # connection, and `write` must not run beside it.
        job.add_done_callback(self._job_done)
        return await asyncio.wrap_future(job)

    def _job_done(self, _job: object) -> None:
        with self._jobs_lock:
            self._jobs -= 1

    async def write(self, bodies: Sequence[str], fn: Callable[..., T], *args: Any) -> T:
        """A hot-path write: a small one runs right here on the loop thread when the
        database thread is idle (a ~200 us commit beats two thread hand-offs, which cost
        ~150-600 us each under load); a big batch goes to the database thread so the loop
        keeps serving the network while SQLite (which drops the GIL) works. Running inline
        only when no job is queued or running keeps every write in submission order and
        the connection used by one thread at a time."""
        if self.can_write_now(bodies):
            return fn(*args)
        return await self.run(fn, *args)

    def can_write_now(self, bodies: Sequence[str]) -> bool:
        """May a write of these bodies run right now on the loop thread (`write_now`)?"""
        return (
            self._jobs == 0
            and len(bodies) <= INLINE_WRITE_MAX
            and sum(map(len, bodies)) <= INLINE_WRITE_MAX_CHARS
        )

    def write_now(self, fn: Callable[..., T], *args: Any) -> T:
        """`write` from synchronous code (a read callback), once `can_write_now` said
        yes in the same loop pass: runs here."""
        if self._jobs:
            raise RuntimeError("the database thread is busy: use write()")
        return fn(*args)

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Hand a call to the thread from synchronous code (the demo-data writer of
        ui/screenshots.py); prefer `run` on the loop."""
        return self._executor.submit(fn, *args)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)


class TaskOwner:
    """Owns background tasks: each is kept until done, and `aclose` cancels the rest."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def cancel_all(self) -> list[asyncio.Task[Any]]:
        """Cancel every task still running; returns them (to be awaited)."""
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        return tasks

    async def aclose(self) -> None:
        await asyncio.gather(*self.cancel_all(), return_exceptions=True)

"""Lookups of services announced without their records: a few at a time, queued, retried.

A lookup that gets no answer is queued again after a backoff, and one that finds every
slot busy waits its turn: a service never looked up again would stay unseen until its TXT
record changes, which on a busy LAN was most of them. New names go before retries, so
names that never answer cannot starve the ones that do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from .directory import MAX_ENTRIES

log = logging.getLogger(__name__)

RESOLVE_ATTEMPTS: Final = 4  # lookups of a service that does not answer: after 0, 1, 2, 4 s
RESOLVE_BACKOFF: Final = 1.0
MAX_WAITING: Final = MAX_ENTRIES  # lookups waiting for a slot at once


@dataclass(slots=True)
class LookupStats:
    resolves: int = 0
    resolves_dropped: int = 0
    resolve_retries: int = 0
    lookups_unanswered: int = 0
    errors: int = 0


class Lookups:
    """At most `max_at_once` lookups run; the rest wait, fresh names before retries.

    `new_info(name)` makes an empty AsyncServiceInfo for a name; `ingest(name, info)` gets
    every answer; `current()` is the zeroconf instance now in use (None once stopped): a
    lookup queued under another one is dropped; `is_own(key)` tells our own (lowercased)
    service names, never looked up."""

    def __init__(
        self,
        *,
        max_at_once: int,
        timeout_ms: int,
        new_info: Callable[[str], Any],
        ingest: Callable[[str, Any], None],
        current: Callable[[], Any],
        is_own: Callable[[str], bool],
        backoff: float = RESOLVE_BACKOFF,
    ) -> None:
        self.stats = LookupStats()
        self._max_at_once = max_at_once
        self._timeout_ms = timeout_ms
        self._new_info = new_info
        self._backoff = backoff
        self._ingest = ingest
        self._current = current
        self._is_own = is_own
        self._running: dict[str, asyncio.Task[None]] = {}
        # Lookups waiting for a free slot, in arrival order: (zeroconf, name, attempt).
        self._fresh: dict[str, tuple[Any, str, int]] = {}
        self._retries: dict[str, tuple[Any, str, int]] = {}

    def waiting(self) -> int:
        return len(self._fresh) + len(self._retries)

    def resolve(self, zeroconf: Any, name: str, info: Any, attempt: int = 0) -> None:
        """Ask for the records of a service announced without them (or queue the ask)."""
        key = name.lower()
        if key in self._running or self._is_own(key):
            return
        if len(self._running) >= self._max_at_once:
            queue = self._retries if attempt else self._fresh
            if key not in queue:
                if self.waiting() >= MAX_WAITING:
                    self.stats.resolves_dropped += 1
                    return
                queue[key] = (zeroconf, name, attempt)
            return
        self.stats.resolves += 1
        if attempt:
            self.stats.resolve_retries += 1
        self._running[key] = asyncio.create_task(
            self._lookup(zeroconf, name, info, attempt), name="chinwag-mdns-resolve"
        )

    async def cancel(self) -> None:
        """Stop every lookup and forget the queue (zeroconf is being closed)."""
        for task in list(self._running.values()):
            task.cancel()
        self._fresh.clear()
        self._retries.clear()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        self._running.clear()

    async def _lookup(self, zeroconf: Any, name: str, info: Any, attempt: int) -> None:
        key = name.lower()
        try:
            if await info.async_request(zeroconf, self._timeout_ms):
                self._ingest(name, info)
                return
            self.stats.lookups_unanswered += 1
            if attempt + 1 < RESOLVE_ATTEMPTS and self._current() is not None:
                later = self._backoff * 2**attempt
                loop = asyncio.get_running_loop()
                loop.call_later(later, self._retry, zeroconf, name, attempt + 1)
        except Exception:
            self.stats.errors += 1
            log.debug("resolving %r failed", name, exc_info=True)
        finally:
            self._running.pop(key, None)
            self._next()

    def _retry(self, zeroconf: Any, name: str, attempt: int) -> None:
        if zeroconf is self._current():
            self._resolve_or_ingest(zeroconf, name, attempt)

    def _resolve_or_ingest(self, zeroconf: Any, name: str, attempt: int) -> None:
        info = self._new_info(name)
        if info.load_from_cache(zeroconf):  # answered meanwhile (or announced again)
            self._ingest(name, info)
        else:
            self.resolve(zeroconf, name, info, attempt)

    def _next(self) -> None:
        while len(self._running) < self._max_at_once:
            queue = self._fresh or self._retries
            if not queue:
                return
            zeroconf, name, attempt = queue.pop(next(iter(queue)))
            if zeroconf is self._current():
                self._resolve_or_ingest(zeroconf, name, attempt)

"""The lookup queue of LAN discovery (net/discovery/lookups.py), from a fake service info.

python-zeroconf's AsyncServiceInfo is compiled and asks a real Zeroconf for its cache, so
these tests hand `Lookups` a small fake of the two calls it makes (`load_from_cache`,
`async_request`); tests/lan runs the real thing between network namespaces.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from messenger.net.discovery import MAX_WAITING, RESOLVE_ATTEMPTS, SERVICE_TYPE, Lookups

ZC = object()  # the zeroconf instance in use (the fake info never looks inside)


def name(label: str) -> str:
    return f"{label}.{SERVICE_TYPE}"


class World:
    """What the lookups touched: requests sent, answers ingested, the cache."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.ingested: list[str] = []
        self.cached: set[str] = set()
        self.current: object | None = ZC
        self.own: set[str] = set()
        self._pending: dict[str, asyncio.Future[bool]] = {}
        self._changed = asyncio.Event()

    def lookups(self, max_at_once: int, backoff: float = 1.0) -> Lookups:
        return Lookups(
            max_at_once=max_at_once,
            timeout_ms=1500,
            new_info=lambda n: FakeInfo(self, n),
            ingest=self._ingest,
            current=lambda: self.current,
            is_own=lambda key: key in self.own,
            backoff=backoff,
        )

    def _ingest(self, service: str, info: object) -> None:
        assert isinstance(info, FakeInfo) and info.name == service
        self.ingested.append(service)
        self._changed.set()

    async def request(self, service: str) -> bool:
        answer = asyncio.get_running_loop().create_future()
        self._pending[service] = answer
        self.requests.append(service)
        self._changed.set()
        found: bool = await answer
        self._changed.set()  # the lookup goes on with the answer in this same step
        return found

    def answer(self, service: str, found: bool) -> None:
        self._pending.pop(service).set_result(found)

    async def until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not done():
                self._changed.clear()
                await self._changed.wait()


class FakeInfo:
    def __init__(self, world: World, service: str) -> None:
        self.world = world
        self.name = service

    def load_from_cache(self, zeroconf: object) -> bool:
        assert zeroconf is ZC
        return self.name in self.world.cached

    async def async_request(self, zeroconf: object, timeout_ms: int) -> bool:
        assert zeroconf is ZC and timeout_ms == 1500
        return await self.world.request(self.name)


def resolve(world: World, lookups: Lookups, label: str, attempt: int = 0) -> str:
    service = name(label)
    lookups.resolve(ZC, service, FakeInfo(world, service), attempt)
    return service


async def test_a_few_lookups_run_at_once_and_the_rest_wait_their_turn() -> None:
    world = World()
    lookups = world.lookups(max_at_once=2)
    a, b, c, d = (resolve(world, lookups, x) for x in "abcd")
    await world.until(lambda: len(world.requests) == 2)
    assert world.requests == [a, b]
    assert lookups.waiting() == 2
    world.answer(a, True)
    await world.until(lambda: len(world.requests) == 3)
    assert world.ingested == [a]
    assert world.requests == [a, b, c]
    world.answer(b, True)
    world.answer(c, True)
    await world.until(lambda: len(world.requests) == 4)
    assert world.requests == [a, b, c, d]
    assert lookups.waiting() == 0
    assert lookups.stats.resolves == 4


async def test_new_names_go_before_retries() -> None:
    world = World()
    lookups = world.lookups(max_at_once=1)
    first = resolve(world, lookups, "first")
    retry = resolve(world, lookups, "retry", attempt=1)
    fresh = resolve(world, lookups, "fresh")
    await world.until(lambda: len(world.requests) == 1)
    world.answer(first, True)
    await world.until(lambda: len(world.requests) == 2)
    assert world.requests == [first, fresh]
    world.answer(fresh, True)
    await world.until(lambda: len(world.requests) == 3)
    assert world.requests == [first, fresh, retry]
    assert lookups.stats.resolve_retries == 1


async def test_a_waiting_name_answered_meanwhile_is_taken_from_the_cache() -> None:
    world = World()
    lookups = world.lookups(max_at_once=1)
    first = resolve(world, lookups, "first")
    cached = resolve(world, lookups, "cached")
    world.cached.add(cached)
    await world.until(lambda: len(world.requests) == 1)
    world.answer(first, True)
    await world.until(lambda: len(world.ingested) == 2)
    assert world.ingested == [first, cached]
    assert world.requests == [first]  # never asked on the network
    assert lookups.stats.resolves == 1


async def test_an_unanswered_lookup_is_tried_again_up_to_the_limit() -> None:
    world = World()
    lookups = world.lookups(max_at_once=1, backoff=0.001)
    silent = resolve(world, lookups, "silent")
    for tries in range(1, RESOLVE_ATTEMPTS + 1):
        await world.until(lambda n=tries: len(world.requests) == n)  # type: ignore[misc]
        world.answer(silent, False)
    await world.until(lambda: lookups.stats.lookups_unanswered == RESOLVE_ATTEMPTS)
    assert world.requests == [silent] * RESOLVE_ATTEMPTS
    assert lookups.stats.resolve_retries == RESOLVE_ATTEMPTS - 1
    assert world.ingested == []


async def test_a_lookup_queued_under_a_closed_zeroconf_is_dropped() -> None:
    world = World()
    lookups = world.lookups(max_at_once=1)
    first = resolve(world, lookups, "first")
    resolve(world, lookups, "stale")
    await world.until(lambda: len(world.requests) == 1)
    world.current = object()  # a network change: another zeroconf instance
    world.answer(first, True)
    await world.until(lambda: world.ingested == [first])
    assert lookups.waiting() == 0
    assert lookups.stats.resolves == 1  # the stale name was not asked for
    assert world.requests == [first]


async def test_own_names_and_names_already_running_are_not_looked_up() -> None:
    world = World()
    world.own.add(name("me").lower())
    lookups = world.lookups(max_at_once=4)
    resolve(world, lookups, "ME")
    other = resolve(world, lookups, "other")
    resolve(world, lookups, "OTHER")
    await world.until(lambda: len(world.requests) == 1)
    assert world.requests == [other]
    assert lookups.stats.resolves == 1
    assert lookups.waiting() == 0


async def test_the_waiting_queue_is_bounded() -> None:
    world = World()
    lookups = world.lookups(max_at_once=1)
    resolve(world, lookups, "running")
    for i in range(MAX_WAITING + 5):
        resolve(world, lookups, f"flood{i}")
    assert lookups.waiting() == MAX_WAITING
    assert lookups.stats.resolves_dropped == 5
    await lookups.cancel()


async def test_cancel_stops_the_running_lookups_and_empties_the_queue() -> None:
    world = World()
    lookups = world.lookups(max_at_once=1)
    first = resolve(world, lookups, "first")
    resolve(world, lookups, "queued")
    await world.until(lambda: len(world.requests) == 1)
    await lookups.cancel()
    assert lookups.waiting() == 0
    assert world.requests == [first]
    assert world.ingested == []
    assert lookups.stats.errors == 0

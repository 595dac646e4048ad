"""Real peers on 127.0.0.1: real sockets, real SQLCipher files, no mocks."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from messenger.events import ServiceEvent
from messenger.net.transport import Timing
from messenger.service import PeerService, ServiceConfig

FAST = Timing(
    handshake_timeout=3.0,
    keepalive_interval=1.0,
    dead_after=3.0,
    connect_timeout=2.0,
)


def config(**overrides: object) -> ServiceConfig:
    values: dict[str, object] = {
        "listen_host": "127.0.0.1",
        "listen_port": 0,
        "timing": FAST,
        "dial_base": 0.05,
        "dial_cap": 0.5,
    }
    values.update(overrides)
    return ServiceConfig(**values)  # type: ignore[arg-type]


class Recorder:
    """Collects a service's events so a test can wait for one."""

    def __init__(self, service: PeerService) -> None:
        self.events: list[ServiceEvent] = []
        self._changed = asyncio.Event()
        service.subscribe(self._on_event)

    def _on_event(self, event: ServiceEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


async def wait_for(
    predicate: Callable[[], Awaitable[bool] | bool], timeout: float = 15.0, what: str = ""
) -> None:
    async with asyncio.timeout(timeout):
        while True:
            result = predicate()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(0.02)


class Clock:
    """Wall clock with an adjustable offset, injected into a service (never patched)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


PeerFactory = Callable[..., Awaitable[PeerService]]


@pytest.fixture
async def make_peer(tmp_path: Path) -> AsyncIterator[PeerFactory]:
    """make_peer("alice") creates a profile and starts its service; reopen with reopen=True."""
    services: list[PeerService] = []

    async def factory(
        name: str,
        *,
        reopen: bool = False,
        clock: Callable[[], float] = time.time,
        **overrides: object,
    ) -> PeerService:
        path = tmp_path / name
        cfg = config(**overrides)
        if reopen:
            service = await PeerService.open(
                path, None, config=cfg, rng=random.Random(1), clock=clock
            )
        else:
            service, _ = await PeerService.create_profile(
                path, name.capitalize(), None, config=cfg, rng=random.Random(1), clock=clock
            )
        services.append(service)
        return service

    yield factory
    for service in services:
        await service.aclose()


async def befriend(a: PeerService, b: PeerService) -> tuple[str, str]:
    """a invites b; returns (b's contact id at a, a's contact id at b)."""
    code, _ = await a.invites.create_invite()
    contact_at_b = await b.invites.accept_invite(code)
    await wait_for(lambda: b.contact_id in a.contact_keys, what="inviter stored contact")
    await wait_for(
        lambda: a.contacts.is_online(b.contact_id) and b.contacts.is_online(a.contact_id)
    )
    return b.contact_id, contact_at_b.id


@pytest.fixture
def runners():
    started: list = []

    def start(profile: Path, env: dict[str, str] | None = None):
        from .test_cli import Runner

        runner = Runner(profile, env)
        started.append(runner)
        return runner

    yield start
    for runner in started:
        if runner.proc.poll() is None:
            runner.proc.kill()
            runner.proc.wait(timeout=10)

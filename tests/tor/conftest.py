"""Fixtures of the Tor tests: one private Tor network for the session (network.py) and
TorManagers ("peers") configured to use it the way a user would configure theirs: a file
of torrc lines named by CHINWAG_TOR_CONFIG.

The network is built in a temporary folder (cold: ~20-30 s on 2 cores). Set
CHINWAG_TOR_NETWORK_DIR to a folder to keep it between runs (~1-3 s when reused), and
CHINWAG_TOR_DEBUG=1 to have each peer's tor write its info-level log beside tor.log.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from messenger.net.tor import TOR_CONFIG_ENV, TorEvent, TorManager, TorSettings, TorTiming

from .network import PrivateTorNetwork, tor_unavailable

# stem logs every closed control connection at INFO; a failing test's log stays readable.
logging.getLogger("stem").setLevel(logging.WARNING)

# Tight enough that a test fails in time, loose enough for a loaded 2-core machine.
TIMING = TorTiming(
    launch=30.0,
    bootstrap=90.0,
    publish=60.0,
    dial=60.0,
    dial_attempt=20.0,
    restart_base=0.2,
    restart_cap=2.0,
    stop=3.0,
)


@pytest.fixture(scope="session")
def tor_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateTorNetwork]:
    reason = tor_unavailable()
    if reason is not None:
        pytest.skip(reason)
    kept = os.environ.get("CHINWAG_TOR_NETWORK_DIR")
    folder = Path(kept) if kept else tmp_path_factory.mktemp("tor-network")
    net = PrivateTorNetwork(folder)
    net.start()  # stops every node itself if it fails
    print(f"\nprivate Tor network usable after {net.ready_after:.1f} s (reused: {net.reused})")
    try:
        yield net
    finally:
        net.stop()
        assert not net.pids(), "tor nodes left running"


@pytest.fixture(scope="session")
def tor_settings(tor_network: PrivateTorNetwork) -> TorSettings:
    config = tor_network.write_client_config()
    return TorSettings.from_env({TOR_CONFIG_ENV: str(config)}, timing=TIMING)


class Peer:
    """A TorManager and the events it reported."""

    def __init__(self, manager: TorManager) -> None:
        self.tor = manager
        self.events: list[TorEvent] = []
        self._changed = asyncio.Event()

    def record(self, event: TorEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, kind: type) -> list[TorEvent]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_event(self, kind: type, count: int = 1, within: float = 60.0) -> TorEvent:
        """The count-th event of this kind, awaited (not slept for)."""
        async with asyncio.timeout(within):
            while len(self.of(kind)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.of(kind)[count - 1]


PeerFactory = Callable[..., Awaitable[Peer]]


@pytest.fixture
async def make_peer(tmp_path: Path, tor_settings: TorSettings) -> AsyncIterator[PeerFactory]:
    """Start a TorManager (a peer's tor) in tmp_path/<name>; every one is closed after the
    test, and the test fails if its tor process outlives aclose()."""
    peers: list[Peer] = []

    async def make(name: str, settings: TorSettings | None = None, start: bool = True) -> Peer:
        holder: list[Peer] = []
        settings = settings or tor_settings
        if os.environ.get("CHINWAG_TOR_DEBUG") and not settings.control:
            # tor's info log beside its notice log, to see why a circuit failed
            info = f"Log info file {tmp_path / name / 'tor-info.log'}"
            settings = dataclasses.replace(settings, extra_lines=(*settings.extra_lines, info))
        manager = TorManager(tmp_path / name, settings, on_event=lambda e: holder[0].record(e))
        peer = Peer(manager)
        holder.append(peer)
        peers.append(peer)
        if start:
            await manager.start()
        return peer

    try:
        yield make
    finally:
        pids = [p.tor.pid for p in peers if p.tor.pid is not None]
        for peer in reversed(peers):
            await peer.tor.aclose()
        for pid in pids:
            assert not pid_alive(pid), f"tor {pid} still running after aclose()"


def pid_alive(pid: int) -> bool:
    """Whether a process of ours is still running (our tors are asyncio children: a
    finished one has been reaped, so it is gone, not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    """A plain asyncio echo server on loopback (what an onion service forwards to); yields
    its port. On exit its connection handlers are closed and awaited."""
    handlers: set[asyncio.Task[None]] = set()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            handlers.discard(task)
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def elapsed(start: float) -> float:
    return time.monotonic() - start

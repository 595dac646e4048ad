"""TorConnection alone, against a real tor that can reach nothing: launching and attaching,
bootstrap progress that never goes backwards, a tor that dies under us, and letting go.
No private network is needed, and nothing leaves loopback: the tor's only way in is a
bridge on a closed loopback port (`DisableNetwork 1` would also close its SOCKS port)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest

from messenger.net.tor import TorSettings, TorTiming
from messenger.net.tor.connection import TorConnection
from messenger.net.tor.errors import TorStartFailed, TorTimeout
from messenger.net.tor.events import TorBootstrap

from .conftest import pid_alive
from .network import tor_unavailable

pytestmark = [pytest.mark.tor, pytest.mark.slow, pytest.mark.timeout(120)]

# tor starts, answers its control and SOCKS ports, and dials only 127.0.0.1:9 (discard,
# closed here): never a public directory authority.
OFFLINE = ("UseBridges 1", "Bridge 127.0.0.1:9")
TIMING = TorTiming(launch=30.0, bootstrap=1.0, stop=3.0)


@pytest.fixture(autouse=True)
def _needs_tor() -> None:
    reason = tor_unavailable()
    if reason is not None:
        pytest.skip(reason)


class Owner:
    """What the manager gives a TorConnection: its events, its loss hook, its tasks."""

    def __init__(self) -> None:
        self.progress: list[TorBootstrap] = []
        self.lost_calls = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def connection(self, folder: Path, settings: TorSettings) -> TorConnection:
        def on_lost() -> None:
            self.lost_calls += 1

        return TorConnection(
            folder,
            settings,
            emit=self.progress.append,
            on_lost=on_lost,
            spawn=self.spawn,
            is_closed=lambda: self.closed,
        )

    async def aclose(self) -> None:
        for task in list(self.tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def launched(tmp_path: Path) -> AsyncIterator[tuple[TorConnection, Owner]]:
    owner = Owner()
    conn = owner.connection(tmp_path / "tor", TorSettings(extra_lines=OFFLINE, timing=TIMING))
    try:
        await conn.connect()
        yield conn, owner
    finally:
        await conn.disconnect()
        await owner.aclose()


async def test_a_launched_tor_answers_and_is_gone_after_disconnect(tmp_path: Path) -> None:
    async with launched(tmp_path) as (conn, owner):
        assert conn.proc is not None and conn.proc.returncode is None
        pid = conn.proc.pid
        assert conn.control_address is not None and conn.control_address[0] == "127.0.0.1"
        assert conn.socks_address is not None and conn.socks_address[1] > 0
        assert conn.require_controller().is_authenticated()
        # The torrc and the log are the owner's alone (the log names onions).
        for path in (conn.data_dir / "torrc", conn.log_file):
            assert path.stat().st_mode & 0o077 == 0, path
        await conn.disconnect()
        assert conn.proc is None and conn.controller is None
        assert not pid_alive(pid)
        # Letting go on purpose is not a loss.
        assert owner.lost_calls == 0 and not conn.lost.is_set()


async def test_bootstrap_stuck_off_the_network_times_out_saying_where(tmp_path: Path) -> None:
    async with launched(tmp_path) as (conn, _owner):
        with pytest.raises(TorTimeout, match=r"did not bootstrap within 1 s \(stuck at \d+ %"):
            await conn.wait_bootstrapped()


async def test_a_tor_that_dies_is_a_loss_reported_once(tmp_path: Path) -> None:
    async with launched(tmp_path) as (conn, owner):
        assert conn.proc is not None
        os.kill(conn.proc.pid, signal.SIGKILL)  # our own child, by its pid
        async with asyncio.timeout(30):
            await conn.lost.wait()
        assert conn.lost_reason in {"tor exited with -9", "control connection closed"}
        # Both watchers see it (the process and the control connection): one loss.
        async with asyncio.timeout(30):
            while owner.tasks:
                await asyncio.sleep(0.05)
        assert owner.lost_calls == 1
        with pytest.raises(TorStartFailed, match="went away while bootstrapping"):
            await conn.wait_bootstrapped()


async def test_progress_never_goes_backwards(tmp_path: Path) -> None:
    owner = Owner()
    conn = owner.connection(tmp_path / "tor", TorSettings(extra_lines=OFFLINE, timing=TIMING))
    steps = [
        TorBootstrap(30, "loading_status", "Loading networkstatus consensus"),
        TorBootstrap(25, "loading_status", "Loading networkstatus consensus"),  # a refetch
        TorBootstrap(30, "loading_status", "Loading networkstatus consensus"),  # the same
        TorBootstrap(100, "done", "Done"),
    ]
    for step in steps:
        conn.on_bootstrap(step)
    assert owner.progress == [steps[0], steps[3]]
    await conn.wait_bootstrapped()  # done: returns at once


async def test_attaching_to_a_running_tor_leaves_it_running(tmp_path: Path) -> None:
    async with launched(tmp_path / "first") as (first, _):
        assert first.control_address is not None
        host, port = first.control_address
        owner = Owner()
        # The first tor's cookie authenticates a second controller, as a user's would.
        attached = owner.connection(
            tmp_path / "attached",
            TorSettings(control=f"{host}:{port}", timing=TIMING),
        )
        await attached.connect()
        try:
            assert attached.proc is None and attached.control_address is None
            assert attached.socks_address == first.socks_address
        finally:
            await attached.disconnect()
            await owner.aclose()
        assert first.proc is not None and first.proc.returncode is None
        assert first.require_controller().get_info("version")
        assert owner.lost_calls == 0

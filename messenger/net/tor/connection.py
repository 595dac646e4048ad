"""One tor, launched or attached, and our control connection to it: connecting,
following its bootstrap, its descriptor uploads and its loss, and letting it go.

stem calls back on its own thread; every callback is handed to the event loop and dropped
there if it comes from an earlier connection (`generation` bumps on every connect and
disconnect) or after the manager closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import stem
from stem.control import Controller

from .control import open_attached, open_launched, parse_bootstrap_phase, socks_listener, subscribe
from .errors import TorClosed, TorError, TorStartFailed, TorTimeout
from .events import TorBootstrap
from .process import log_tail, spawn_tor, wait_for_control_port
from .settings import TorSettings


class TorConnection:
    """`emit` gets bootstrap progress; `on_lost` hears first of a loss (before `lost` is
    set); `spawn` runs a watcher task the manager owns; `is_closed` is the manager's."""

    def __init__(
        self,
        folder: Path,
        settings: TorSettings,
        *,
        emit: Callable[[TorBootstrap], None],
        on_lost: Callable[[], None],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        is_closed: Callable[[], bool],
    ) -> None:
        self.folder = folder
        self.settings = settings
        self.timing = settings.timing
        self._emit = emit
        self._on_lost_hook = on_lost
        self._spawn = spawn
        self._is_closed = is_closed
        self._loop: asyncio.AbstractEventLoop | None = None
        self.controller: Controller | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self._generation = 0  # bumps on every (re)connect; stale stem callbacks are ignored
        self.lost = asyncio.Event()
        self.lost_reason = ""
        self._bootstrapped = asyncio.Event()
        self._uploaded: set[str] = set()  # service ids with an HS_DESC UPLOADED
        self._upload_seen = asyncio.Event()
        self.socks_address: tuple[str, int] | None = None
        self.control_address: tuple[str, int] | None = None
        self.bootstrap = TorBootstrap(0, "", "")

    @property
    def data_dir(self) -> Path:
        return self.folder / "tor-data"

    @property
    def log_file(self) -> Path:
        return self.folder / "tor.log"

    def require_controller(self) -> Controller:
        if self.controller is None:
            raise TorClosed("no control connection to tor")
        return self.controller

    async def connect(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._generation += 1
        generation = self._generation
        self.lost.clear()
        self._bootstrapped.clear()
        self._uploaded.clear()
        self.bootstrap = TorBootstrap(0, "", "")
        if self.settings.control is not None:
            controller = await asyncio.to_thread(
                open_attached, self.settings.control, self.settings.control_password
            )
            self.control_address = None
        else:
            controller = await self._launch()
        self.controller = controller
        try:
            await asyncio.to_thread(self._watch, controller, generation)
            socks_port = await asyncio.to_thread(socks_listener, controller)
            self.socks_address = socks_port
            phase = await asyncio.to_thread(controller.get_info, "status/bootstrap-phase")
        except (stem.ControllerError, stem.SocketError) as exc:
            raise TorStartFailed(f"tor control connection failed: {exc}") from exc
        state = parse_bootstrap_phase(str(phase))
        if state is not None:
            self.on_bootstrap(state)

    async def _launch(self) -> Controller:
        proc = await spawn_tor(self.settings, self.folder, self.data_dir, self.log_file)
        self.proc = proc
        try:
            async with asyncio.timeout(self.timing.launch):
                port_file = self.data_dir / "control.port"
                port = await wait_for_control_port(proc, port_file, self.log_file)
                password = self.settings.control_password
                controller = await asyncio.to_thread(open_launched, port, password)
        except TimeoutError as exc:
            raise TorStartFailed(
                f"tor opened no control port within {self.timing.launch:.0f} s"
                f"{log_tail(self.log_file)}"
            ) from exc
        self.control_address = port
        self._spawn(self._watch_process(proc, self._generation))
        return controller

    def _from_thread(self, generation: int, callback: Callable[[], None]) -> None:
        """Run callback on the loop, if this stem callback is from the live connection."""
        loop = self._loop
        if loop is None:
            return

        def run() -> None:
            if generation == self._generation and not self._is_closed():
                callback()

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            loop.call_soon_threadsafe(run)

    def _watch(self, controller: Controller, generation: int) -> None:
        """Subscribe to what we need (runs in a worker thread: stem is synchronous)."""

        def later(callback: Callable[[], None]) -> None:
            self._from_thread(generation, callback)

        subscribe(
            controller,
            on_bootstrap=lambda state: later(lambda: self.on_bootstrap(state)),
            on_uploaded=lambda address: later(lambda: self._on_uploaded(address)),
            on_closed=lambda: later(lambda: self.on_lost("control connection closed")),
        )

    async def _watch_process(self, proc: asyncio.subprocess.Process, generation: int) -> None:
        code = await proc.wait()
        if generation == self._generation and not self._is_closed():
            self.on_lost(f"tor exited with {code}")

    def on_bootstrap(self, state: TorBootstrap) -> None:
        """A bootstrap report from tor (stem's callback hands it to the loop here)."""
        if state.percent < self.bootstrap.percent:
            # tor steps back a phase at times (seen: 30 % then 25 %, a consensus fetched
            # again); progress as shown never goes backwards. Reset on every (re)connect.
            return
        if state != self.bootstrap:
            self.bootstrap = state
            self._emit(state)
        if state.percent >= 100:
            self._bootstrapped.set()

    def _on_uploaded(self, address: str) -> None:
        self._uploaded.add(address)
        self._upload_seen.set()

    def on_lost(self, reason: str) -> None:
        if not self.lost.is_set():
            self.lost_reason = reason
            self._on_lost_hook()
            self.lost.set()

    async def _until(self, event: asyncio.Event) -> None:
        """Until `event` is set or tor is lost, whichever comes first."""
        lost = asyncio.ensure_future(self.lost.wait())
        done = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({lost, done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            done.cancel()

    async def wait_bootstrapped(self) -> None:
        try:
            async with asyncio.timeout(self.timing.bootstrap):
                while not self._bootstrapped.is_set():
                    await self._until(self._bootstrapped)
                    if self.lost.is_set() and not self._bootstrapped.is_set():
                        raise TorStartFailed(
                            f"tor went away while bootstrapping: "
                            f"{self.lost_reason}{log_tail(self.log_file)}"
                        )
        except TimeoutError as exc:
            raise TorTimeout(
                f"tor did not bootstrap within {self.timing.bootstrap:.0f} s (stuck at "
                f"{self.bootstrap.percent} %: {self.bootstrap.summary}){log_tail(self.log_file)}"
            ) from exc

    async def wait_uploaded(self, service_id: str) -> None:
        """Until tor reports the service's descriptor uploaded (TorManager.publish)."""
        try:
            async with asyncio.timeout(self.timing.publish):
                while service_id not in self._uploaded:
                    self._upload_seen.clear()
                    if self.lost.is_set():
                        raise TorError(f"tor went away while publishing: {self.lost_reason}")
                    await self._until(self._upload_seen)
        except TimeoutError as exc:
            raise TorTimeout(
                f"the onion service's descriptor was not uploaded within "
                f"{self.timing.publish:.0f} s"
            ) from exc

    async def disconnect(self) -> None:
        """Close the control connection and make sure a tor we launched is gone."""
        self._generation += 1  # whatever stem reports from now on is stale
        controller, self.controller = self.controller, None
        if controller is not None:
            await asyncio.to_thread(controller.close)
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        # Owning controller gone: tor exits by itself; signals only if it lingers.
        for stop in (None, proc.terminate, proc.kill):  # (kill: SIGKILL where there is one)
            if stop is not None:
                with contextlib.suppress(ProcessLookupError):
                    stop()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timing.stop):
                    await proc.wait()
                return

"""Tor reach: the tor process, the profile's onion service and the SOCKS5 dialer.

    tor = TorManager(profile_folder, TorSettings.from_env(), on_event=...)
    await tor.start()                  # launch the system tor (or attach to one), bootstrap
    svc = await tor.publish(PORT, ("127.0.0.1", listener_port), key=stored_key_or_None)
    store(svc.key)                     # first time: a new key, the caller keeps it encrypted
    reader, writer = await tor.dial(onion, PORT, isolation=contact_key)
    await tor.aclose()

The control port (stem) is control.py, the tor we launch process.py, dialing dialer.py.

Attached tor (CHINWAG_TOR_CONTROL=host:port or a unix socket path): we only add and remove
our onion service; the tor is the user's and is never stopped.

The onion service is ephemeral (ADD_ONION without Detach): it exists only while our
control connection lives, and its key never touches disk here; the caller stores the key
(in the encrypted database) and hands it back on every start. When tor dies or the control
connection breaks, a supervisor restarts (or reconnects), re-adds the onion from the stored
key and reports TorLost / TorRecovered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import stem
import stem.connection
import stem.response
from stem.control import Controller

from .control import (
    add_onion,
    circuit_counts,
    open_attached,
    open_launched,
    parse_bootstrap_phase,
    socks_listener,
    subscribe,
)
from .dialer import OnionDialer
from .errors import TorClosed, TorError, TorStartFailed, TorTimeout
from .events import (
    OnionPublished,
    TorBootstrap,
    TorEvent,
    TorLost,
    TorRecovered,
    TorRestartFailed,
)
from .onion import OnionService, check_onion_key, onion_address_from_key
from .process import log_tail, spawn_tor, wait_for_control_port
from .settings import TorSettings

log = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024

# What tor's SOCKS reply codes mean for an onion (RFC 1928 codes; see the module doc for
# why not tor's extended ones).
SOCKS_MEANINGS: dict[int, str] = {
    0x01: "tor failed to build the connection (a circuit or the rendezvous failed)",
    0x04: "not reachable: no descriptor, or its introduction points failed "
    "(the contact is offline, or tor holds stale state)",
    0x05: "the onion service is up but nothing listens on that port",
    0x06: "a circuit timed out",
}

# Worth another attempt on fresh circuits, after NEWNYM has cleared tor's cached state.
RETRIED_SOCKS_CODES = frozenset({0x01, 0x04, 0x06})
# tor delays a NEWNYM that comes sooner than this after the previous one.
NEWNYM_INTERVAL = 10.0


class TorManager:
    def __init__(
        self,
        folder: Path,
        settings: TorSettings | None = None,
        on_event: Callable[[TorEvent], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.folder = folder
        self.settings = settings or TorSettings()
        self.timing = self.settings.timing
        self._on_event = on_event
        self._rng = rng or random.Random()  # noqa: S311 (restart jitter, not a secret)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._controller: Controller | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._generation = 0  # bumps on every (re)connect; stale stem callbacks are ignored
        self._lost = asyncio.Event()
        self._lost_reason = ""
        self._ready = asyncio.Event()  # bootstrapped and, if published, onion re-added
        self._bootstrapped = asyncio.Event()
        self._uploaded: set[str] = set()  # service ids with an HS_DESC UPLOADED
        self._upload_seen = asyncio.Event()
        self._closed = False
        self._started = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._service: OnionService | None = None
        self.socks_address: tuple[str, int] | None = None
        self.control_address: tuple[str, int] | None = None
        self.bootstrap = TorBootstrap(0, "", "")
        self.restarts = 0
        self._dialer = OnionDialer(
            self.timing,
            wait_ready=lambda within: self.wait_ready(within=within),
            socks_address=lambda: self.socks_address,
            controller=self._require_controller,
        )

    # -- public ---------------------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        """Using a tor someone else runs (CHINWAG_TOR_CONTROL)."""
        return self.settings.control is not None

    @property
    def pid(self) -> int | None:
        """PID of the tor we launched (None when attached or not running)."""
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def service(self) -> OnionService | None:
        return self._service

    @property
    def data_dir(self) -> Path:
        return self.folder / "tor-data"

    @property
    def log_file(self) -> Path:
        return self.folder / "tor.log"

    async def start(self) -> None:
        """Launch (or attach to) tor and wait until it has bootstrapped; bounded by the
        launch and bootstrap timeouts. Progress arrives as TorBootstrap events."""
        if self._started:
            raise TorError("already started")
        self._started = True
        self._loop = asyncio.get_running_loop()
        try:
            await self._connect()
            await self._wait_bootstrapped()
        except BaseException:
            await self.aclose()
            raise
        self._ready.set()
        self._spawn(self._supervise())

    async def wait_ready(self, within: float | None = None) -> None:
        """Until tor is usable (bootstrapped; after a restart, the onion re-added), at
        most `within` seconds (default TorTiming.bootstrap)."""
        self._check_open()
        try:
            async with asyncio.timeout(self.timing.bootstrap if within is None else within):
                while not self._ready.is_set():
                    await self._ready.wait()
                    self._check_open()
        except TimeoutError as exc:
            raise TorTimeout(
                f"tor is not ready (bootstrap {self.bootstrap.percent} %: "
                f"{self.bootstrap.summary or 'starting'})"
            ) from exc

    async def publish(
        self, virtual_port: int, target: tuple[str, int], key: bytes | None = None
    ) -> OnionService:
        """Add the profile's onion service (mapping virtual_port to target) and wait until
        its descriptor is uploaded. With key=None tor makes a new key; the returned
        OnionService carries it for the caller to store. Replaces an earlier service."""
        if key is not None:
            check_onion_key(key)
        await self.wait_ready()
        if self._service is not None:
            await self._remove_onion(self._service)
            self._service = None
        service = await self._add_onion(virtual_port, target, key)
        self._service = service
        return service

    async def dial(
        self,
        address: str,
        port: int,
        *,
        isolation: str,
        within: float | None = None,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """As dial_socket, as asyncio streams."""
        sock = await self.dial_socket(address, port, isolation=isolation, within=within)
        try:
            return await asyncio.open_connection(sock=sock, limit=READ_CHUNK)
        except BaseException:
            sock.close()
            raise

    async def dial_socket(
        self,
        address: str,
        port: int,
        *,
        isolation: str,
        within: float | None = None,
    ) -> socket.socket:
        """Open a stream to address:port through tor's SOCKS port, one circuit per
        `isolation` (one per contact), retried on fresh circuits (dialer.py says how);
        the connected socket (non-blocking; TCP_NODELAY set), for the caller to own.
        Bounded by `within` seconds (default TorTiming.dial)."""
        return await self._dialer.dial(address, port, isolation=isolation, within=within)

    async def aclose(self) -> None:
        """Stop supervising, remove the onion, close the control connection; a tor we
        launched exits with it (SIGTERM, then SIGKILL, if it lingers)."""
        if self._closed:
            return
        self._closed = True
        self._ready.set()  # wake waiters: they see the manager closed
        self._lost.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.attached and self._service is not None:
            with contextlib.suppress(TorError, stem.ControllerError, stem.SocketError):
                await self._remove_onion(self._service)
        await self._disconnect()

    # -- connecting -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed or not self._started:
            raise TorClosed("tor manager is closed" if self._closed else "tor manager not started")

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _emit(self, event: TorEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            log.exception("tor event handler failed on %r", event)

    def _from_thread(self, generation: int, callback: Callable[[], None]) -> None:
        """Run callback on the loop, if this stem callback is from the live connection."""
        loop = self._loop
        if loop is None:
            return

        def run() -> None:
            if generation == self._generation and not self._closed:
                callback()

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            loop.call_soon_threadsafe(run)

    async def _connect(self) -> None:
        self._generation += 1
        generation = self._generation
        self._lost.clear()
        self._bootstrapped.clear()
        self._uploaded.clear()
        self.bootstrap = TorBootstrap(0, "", "")
        if self.attached:
            controller = await asyncio.to_thread(
                open_attached, self.settings.control or "", self.settings.control_password
            )
            self.control_address = None
        else:
            controller = await self._launch()
        self._controller = controller
        try:
            await asyncio.to_thread(self._watch, controller, generation)
            socks_port = await asyncio.to_thread(socks_listener, controller)
            self.socks_address = socks_port
            phase = await asyncio.to_thread(controller.get_info, "status/bootstrap-phase")
        except (stem.ControllerError, stem.SocketError) as exc:
            raise TorStartFailed(f"tor control connection failed: {exc}") from exc
        state = parse_bootstrap_phase(str(phase))
        if state is not None:
            self._on_bootstrap(state)

    async def _launch(self) -> Controller:
        proc = await spawn_tor(self.settings, self.folder, self.data_dir, self.log_file)
        self._proc = proc
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

    def _watch(self, controller: Controller, generation: int) -> None:
        """Subscribe to what we need (runs in a worker thread: stem is synchronous)."""

        def later(callback: Callable[[], None]) -> None:
            self._from_thread(generation, callback)

        subscribe(
            controller,
            on_bootstrap=lambda state: later(lambda: self._on_bootstrap(state)),
            on_uploaded=lambda address: later(lambda: self._on_uploaded(address)),
            on_closed=lambda: later(lambda: self._on_lost("control connection closed")),
        )

    async def _watch_process(self, proc: asyncio.subprocess.Process, generation: int) -> None:
        code = await proc.wait()
        if generation == self._generation and not self._closed:
            self._on_lost(f"tor exited with {code}")

    def _on_bootstrap(self, state: TorBootstrap) -> None:
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

    def _on_lost(self, reason: str) -> None:
        if not self._lost.is_set():
            self._lost_reason = reason
            self._ready.clear()
            self._lost.set()

    async def _wait_bootstrapped(self) -> None:
        try:
            async with asyncio.timeout(self.timing.bootstrap):
                while not self._bootstrapped.is_set():
                    lost = asyncio.ensure_future(self._lost.wait())
                    done = asyncio.ensure_future(self._bootstrapped.wait())
                    try:
                        await asyncio.wait({lost, done}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        lost.cancel()
                        done.cancel()
                    if self._lost.is_set() and not self._bootstrapped.is_set():
                        raise TorStartFailed(
                            f"tor went away while bootstrapping: "
                            f"{self._lost_reason}{log_tail(self.log_file)}"
                        )
        except TimeoutError as exc:
            raise TorTimeout(
                f"tor did not bootstrap within {self.timing.bootstrap:.0f} s (stuck at "
                f"{self.bootstrap.percent} %: {self.bootstrap.summary}){log_tail(self.log_file)}"
            ) from exc

    async def _disconnect(self) -> None:
        """Close the control connection and make sure a tor we launched is gone."""
        self._generation += 1  # whatever stem reports from now on is stale
        controller, self._controller = self._controller, None
        if controller is not None:
            await asyncio.to_thread(controller.close)
        proc, self._proc = self._proc, None
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

    # -- the onion service ----------------------------------------------------------------------

    def _require_controller(self) -> Controller:
        if self._controller is None:
            raise TorClosed("no control connection to tor")
        return self._controller

    async def _add_onion(
        self, virtual_port: int, target: tuple[str, int], key: bytes | None
    ) -> OnionService:
        controller = self._require_controller()
        service_id, made = await asyncio.to_thread(add_onion, controller, virtual_port, target, key)
        address = service_id + ".onion"
        if onion_address_from_key(made) != address:
            raise TorError("tor's onion address does not match the key")  # never expected
        await self._wait_uploaded(service_id)
        self._emit(OnionPublished(address))
        return OnionService(address, made, virtual_port, target)

    async def circuits(self) -> dict[str, int]:
        """Circuits tor has built now, by what they are for: "to contacts" (rendezvous
        circuits we opened to their onions), "from contacts" (rendezvous circuits to our
        onion service), "introduction" (our service's introduction points) and "other"
        (directory fetches, preemptive circuits). Empty when tor is not running."""
        controller = self._controller
        if controller is None:
            return {}
        try:
            circuits = await asyncio.to_thread(controller.get_circuits)
        except (stem.ControllerError, stem.SocketError):
            return {}
        return circuit_counts(circuits)

    async def _wait_uploaded(self, service_id: str) -> None:
        try:
            async with asyncio.timeout(self.timing.publish):
                while service_id not in self._uploaded:
                    self._upload_seen.clear()
                    if self._lost.is_set():
                        raise TorError(f"tor went away while publishing: {self._lost_reason}")
                    lost = asyncio.ensure_future(self._lost.wait())
                    seen = asyncio.ensure_future(self._upload_seen.wait())
                    try:
                        await asyncio.wait({lost, seen}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        lost.cancel()
                        seen.cancel()
        except TimeoutError as exc:
            raise TorTimeout(
                f"the onion service's descriptor was not uploaded within "
                f"{self.timing.publish:.0f} s"
            ) from exc

    async def _remove_onion(self, service: OnionService) -> None:
        controller = self._controller
        if controller is None:
            return
        service_id = service.address.removesuffix(".onion")
        with contextlib.suppress(stem.ControllerError, stem.SocketError):
            await asyncio.to_thread(controller.remove_ephemeral_hidden_service, service_id)

    # -- recovery ----------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        backoff_attempt = 0
        while not self._closed:
            await self._lost.wait()
            if self._closed:
                return
            reason = self._lost_reason
            log.warning("tor lost: %s", reason)
            self._emit(TorLost(reason))
            self._ready.clear()
            while not self._closed:
                await self._disconnect()
                try:
                    await self._connect()
                    await self._wait_bootstrapped()
                    if self._service is not None:
                        s = self._service
                        self._service = await self._add_onion(s.virtual_port, s.target, s.key)
                except (TorError, OSError, stem.ControllerError, stem.SocketError) as exc:
                    ceiling = min(
                        self.timing.restart_cap, self.timing.restart_base * 2**backoff_attempt
                    )
                    backoff_attempt = min(backoff_attempt + 1, 16)
                    delay = self._rng.uniform(ceiling / 2, ceiling)
                    log.warning("tor restart failed: %s; retrying in %.1f s", exc, delay)
                    self._emit(TorRestartFailed(str(exc), delay))
                    await asyncio.sleep(delay)
                    continue
                break
            else:
                return
            backoff_attempt = 0
            self.restarts += 1
            self._ready.set()
            self._emit(TorRecovered(self.restarts))

"""Tor reach: the tor process, the profile's onion service and the SOCKS5 dialer.

    tor = TorManager(profile_folder, TorSettings.from_env(), on_event=...)
    await tor.start()                  # launch the system tor (or attach to one), bootstrap
    svc = await tor.publish(PORT, ("127.0.0.1", listener_port), key=stored_key_or_None)
    store(svc.key)                     # first time: a new key, the caller keeps it encrypted
    reader, writer = await tor.dial(onion, PORT, isolation=contact_key)
    await tor.aclose()

The parts: connection.py (one tor and our control connection to it), control.py (stem's
calls), process.py (the tor we launch), dialer.py (streams through tor's SOCKS port).

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

from .connection import TorConnection
from .control import add_onion, circuit_counts
from .dialer import OnionDialer
from .errors import TorClosed, TorError, TorTimeout
from .events import (
    OnionPublished,
    TorBootstrap,
    TorEvent,
    TorLost,
    TorRecovered,
    TorRestartFailed,
)
from .onion import OnionService, check_onion_key, onion_address_from_key
from .settings import TorSettings

log = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024


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
        self._ready = asyncio.Event()  # bootstrapped and, if published, onion re-added
        self._closed = False
        self._started = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._service: OnionService | None = None
        self.restarts = 0
        self._tor = TorConnection(
            folder,
            self.settings,
            emit=self._emit,
            on_lost=self._ready.clear,
            spawn=self._spawn,
            is_closed=lambda: self._closed,
        )
        self._dialer = OnionDialer(
            self.timing,
            wait_ready=lambda within: self.wait_ready(within=within),
            socks_address=lambda: self._tor.socks_address,
            controller=self._tor.require_controller,
        )

    # -- public ---------------------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        """Using a tor someone else runs (CHINWAG_TOR_CONTROL)."""
        return self.settings.control is not None

    @property
    def pid(self) -> int | None:
        """PID of the tor we launched (None when attached or not running)."""
        proc = self._tor.proc
        return proc.pid if proc is not None and proc.returncode is None else None

    @property
    def socks_address(self) -> tuple[str, int] | None:
        return self._tor.socks_address

    @property
    def control_address(self) -> tuple[str, int] | None:
        """The control port of the tor we launched (None when attached)."""
        return self._tor.control_address

    @property
    def bootstrap(self) -> TorBootstrap:
        return self._tor.bootstrap

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def service(self) -> OnionService | None:
        return self._service

    @property
    def data_dir(self) -> Path:
        return self._tor.data_dir

    @property
    def log_file(self) -> Path:
        return self._tor.log_file

    async def start(self) -> None:
        """Launch (or attach to) tor and wait until it has bootstrapped; bounded by the
        launch and bootstrap timeouts. Progress arrives as TorBootstrap events."""
        if self._started:
            raise TorError("already started")
        self._started = True
        try:
            await self._tor.connect()
            await self._tor.wait_bootstrapped()
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
        self._tor.lost.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.attached and self._service is not None:
            with contextlib.suppress(TorError, stem.ControllerError, stem.SocketError):
                await self._remove_onion(self._service)
        await self._tor.disconnect()

    # -- internals --------------------------------------------------------------------------------

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

    # -- the onion service ----------------------------------------------------------------------

    async def _add_onion(
        self, virtual_port: int, target: tuple[str, int], key: bytes | None
    ) -> OnionService:
        controller = self._tor.require_controller()
        service_id, made, pow_defence = await asyncio.to_thread(
            add_onion, controller, virtual_port, target, key
        )
        address = service_id + ".onion"
        if onion_address_from_key(made) != address:
            raise TorError("tor's onion address does not match the key")  # never expected
        await self._tor.wait_uploaded(service_id)
        self._emit(OnionPublished(address))
        return OnionService(address, made, virtual_port, target, pow_defence)

    async def circuits(self) -> dict[str, int]:
        """Circuits tor has built now, by what they are for: "to contacts" (rendezvous
        circuits we opened to their onions), "from contacts" (rendezvous circuits to our
        onion service), "introduction" (our service's introduction points) and "other"
        (directory fetches, preemptive circuits). Empty when tor is not running."""
        controller = self._tor.controller
        if controller is None:
            return {}
        try:
            circuits = await asyncio.to_thread(controller.get_circuits)
        except (stem.ControllerError, stem.SocketError):
            return {}
        return circuit_counts(circuits)

    async def _remove_onion(self, service: OnionService) -> None:
        controller = self._tor.controller
        if controller is None:
            return
        service_id = service.address.removesuffix(".onion")
        with contextlib.suppress(stem.ControllerError, stem.SocketError):
            await asyncio.to_thread(controller.remove_ephemeral_hidden_service, service_id)

    # -- recovery ----------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        backoff_attempt = 0
        while not self._closed:
            await self._tor.lost.wait()
            if self._closed:
                return
            reason = self._tor.lost_reason
            log.warning("tor lost: %s", reason)
            self._emit(TorLost(reason))
            self._ready.clear()
            while not self._closed:
                await self._tor.disconnect()
                try:
                    await self._tor.connect()
                    await self._tor.wait_bootstrapped()
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

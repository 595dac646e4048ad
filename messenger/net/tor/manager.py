"""Tor reach: the tor process, the profile's onion service and the SOCKS5 dialer.

    tor = TorManager(profile_folder, TorSettings.from_env(), on_event=...)
    await tor.start()                  # launch the system tor (or attach to one), bootstrap
    svc = await tor.publish(PORT, ("127.0.0.1", listener_port), key=stored_key_or_None)
    store(svc.key)                     # first time: a new key, the caller keeps it encrypted
    reader, writer = await tor.dial(onion, PORT, isolation=contact_key)
    await tor.aclose()

Control library: stem (the Tor Project's own). txtorcon is the asyncio-unfriendly choice
here: it needs a Twisted reactor beside asyncio. stem is synchronous, so every control
command runs in a worker thread (`asyncio.to_thread`) and stem's event listeners, which run
on stem's own thread, hand their (already converted, plain-data) events to the loop with
`call_soon_threadsafe`. Nothing here parses tor's log output: the control port's listeners
(GETINFO net/listeners/socks), bootstrap status (STATUS_CLIENT BOOTSTRAP events, GETINFO
status/bootstrap-phase) and descriptor uploads (HS_DESC events) say all that is needed. The
one file read is the control port tor writes for its controller (ControlPortWriteToFile).

Launched tor: the system binary with its own data directory `<folder>/tor-data`, no system
torrc, `ControlPort auto` + cookie authentication, `SocksPort auto`, `__OwningControllerProcess`
= us. stem answers
that with TAKEOWNERSHIP, so tor exits as soon as our control connection closes, including
when this process dies. Extra torrc lines (CHINWAG_TOR_CONFIG names a file of them) come
first so ours win; lines naming an option we own are refused.

Attached tor (CHINWAG_TOR_CONTROL=host:port or a unix socket path): we only add and remove
our onion service; the tor is the user's and is never stopped.

The onion service is ephemeral (ADD_ONION without Detach): it exists only while our
control connection lives, and its key never touches disk here; the caller stores the key
(in the encrypted database) and hands it back on every start. When tor dies or the control
connection breaks, a supervisor restarts (or reconnects), re-adds the onion from the stored
key and reports TorLost / TorRecovered.

Dialing uses python-socks over tor's SOCKS port. Not the SocksPort flag `ExtendedErrors`:
tor 0.4.9 flags waiting streams "descriptor not found" (0xF0) when one directory answers
404, and still sends that code when another directory had the descriptor and the stream
then connects (connection_ap_handshake_socks_reply prefers the flagged code), so a working
stream is reported as failed. The standard codes are enough to decide what to retry.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import random
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import stem
import stem.connection
import stem.response
from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
from python_socks.async_.asyncio import Proxy
from stem.control import Controller, EventType, Listener, State

from .errors import OnionUnreachable, TorClosed, TorError, TorStartFailed, TorTimeout
from .events import (
    OnionPublished,
    TorBootstrap,
    TorEvent,
    TorLost,
    TorRecovered,
    TorRestartFailed,
    _bootstrap_from,
    _parse_bootstrap_phase,
)
from .onion import OnionService, check_onion_address, check_onion_key, onion_address_from_key
from .settings import TOR_CONTROL_ENV, TorSettings, find_tor

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
# What a built circuit is for, by tor's purpose (control-spec CIRC_PURPOSE).
_CIRCUIT_USE = {
    "HS_CLIENT_REND": "to contacts",
    "HS_SERVICE_REND": "from contacts",
    "HS_SERVICE_INTRO": "introduction",
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
        self._failed_at: dict[str, float] = {}  # onion -> loop time its last dial failed
        self._newnym_at = -NEWNYM_INTERVAL  # loop time of our last NEWNYM
        self._newnym_lock = asyncio.Lock()

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
        """Open a stream to address:port through tor's SOCKS port; the connected socket
        (non-blocking; TCP_NODELAY set), for the caller to own.

        `isolation` (one per contact) is the SOCKS username; the password is fresh for
        every attempt. tor (IsolateSOCKSAuth, on by default) never shares a circuit between
        streams with different credentials, so contacts never share circuits, and every
        connection gets its own circuits and rendezvous point: a rendezvous circuit left
        from an earlier connection, dead if the contact went away, is never reused (a
        stream attached to it stalls until tor's own timeout).

        Bounded by `within` seconds (default TorTiming.dial), each attempt by
        TorTiming.dial_attempt. A failed or stalled attempt is retried after NEWNYM: once
        a contact's introduction points failed, tor answers at once from its cache
        ("unreachable") and queries no directory it asked in the last 15 minutes, so
        without NEWNYM a contact who comes back stays unreachable that long. The same holds
        across calls: the first attempt to an onion whose last dial failed is preceded by
        NEWNYM."""
        onion = check_onion_address(address)
        if not isolation:
            raise ValueError("an isolation key is needed (one per contact)")
        budget = self.timing.dial if within is None else within
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        last: Exception | None = None
        try:
            async with asyncio.timeout_at(deadline):
                await self.wait_ready(within=budget)
                for attempt in range(self.timing.dial_attempts):
                    if onion in self._failed_at:
                        await self._newnym(after=self._failed_at[onion])
                    password = secrets.token_hex(8)
                    try:
                        attempt_budget = min(self.timing.dial_attempt, deadline - loop.time())
                        stream = await self._dial_once(
                            onion, port, isolation, password, attempt_budget
                        )
                    except OnionUnreachable as exc:
                        self._failed_at[onion] = loop.time()
                        if exc.code not in RETRIED_SOCKS_CODES:
                            raise
                        last = exc
                    except TorTimeout as exc:
                        self._failed_at[onion] = loop.time()
                        last = exc
                    else:
                        self._failed_at.pop(onion, None)
                        return stream
                    log.info("dial %s attempt %d failed: %s", onion, attempt + 1, last)
        except TimeoutError as exc:
            if isinstance(exc, TorTimeout):
                raise
            raise TorTimeout(f"no stream to {onion} within {budget:.0f} s") from exc
        assert last is not None
        raise last

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
            controller = await asyncio.to_thread(self._open_attached)
        else:
            controller = await self._launch()
        self._controller = controller
        try:
            await asyncio.to_thread(self._watch, controller, generation)
            socks_port = await asyncio.to_thread(self._socks_listener, controller)
            self.socks_address = socks_port
            phase = await asyncio.to_thread(controller.get_info, "status/bootstrap-phase")
        except (stem.ControllerError, stem.SocketError) as exc:
            raise TorStartFailed(f"tor control connection failed: {exc}") from exc
        state = _parse_bootstrap_phase(str(phase))
        if state is not None:
            self._on_bootstrap(state)

    def _open_attached(self) -> Controller:
        target = self.settings.control or ""
        try:
            if "/" in target:
                controller = Controller.from_socket_file(path=target)
            else:
                host, _, port = target.rpartition(":")
                controller = Controller.from_port(address=host or "127.0.0.1", port=int(port))
        except ValueError as exc:
            raise TorStartFailed(f"{TOR_CONTROL_ENV}={target!r}: not host:port or a path") from exc
        except stem.SocketError as exc:
            raise TorStartFailed(f"cannot reach tor's control port {target}: {exc}") from exc
        self._authenticate(controller)
        self.control_address = None
        return controller

    def _authenticate(self, controller: Controller) -> None:
        try:
            controller.authenticate(password=self.settings.control_password)
        except stem.connection.AuthenticationFailure as exc:
            controller.close()
            raise TorStartFailed(f"tor refused our control authentication: {exc}") from exc

    def _torrc(self) -> str:
        data = self.data_dir
        ours = [
            f"DataDirectory {data}",
            "ControlPort auto",
            f"ControlPortWriteToFile {data / 'control.port'}",
            "CookieAuthentication 1",
            f"CookieAuthFile {data / 'control_auth_cookie'}",
            "SocksPort auto",
            "ClientOnly 1",
            "RunAsDaemon 0",
            f"__OwningControllerProcess {os.getpid()}",
            f"Log notice file {self.log_file}",
            "AvoidDiskWrites 1",
        ]
        return "\n".join([*self.settings.extra_lines, *ours]) + "\n"

    async def _launch(self) -> Controller:
        binary = find_tor(self.settings.tor_binary)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data_dir.mkdir(exist_ok=True, mode=0o700)
        os.chmod(self.data_dir, 0o700)  # tor refuses a data directory others can read
        port_file = self.data_dir / "control.port"
        port_file.unlink(missing_ok=True)
        torrc = self.data_dir / "torrc"
        # Owner-only from the start (the profile's files are 0600; the log names onions).
        _private_file(torrc).write_text(self._torrc())
        with _private_file(self.log_file).open("ab") as out:
            self._proc = await asyncio.create_subprocess_exec(
                binary,
                "-f",
                str(torrc),
                "--defaults-torrc",
                os.devnull,
                "--ignore-missing-torrc",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C is for us; tor follows us
            )
        proc = self._proc
        try:
            async with asyncio.timeout(self.timing.launch):
                port = await self._wait_for_control_port(proc, port_file)
                controller = await asyncio.to_thread(self._open_launched, port)
        except TimeoutError as exc:
            raise TorStartFailed(
                f"tor opened no control port within {self.timing.launch:.0f} s{self._log_tail()}"
            ) from exc
        self._spawn(self._watch_process(proc, self._generation))
        return controller

    async def _wait_for_control_port(
        self, proc: asyncio.subprocess.Process, port_file: Path
    ) -> tuple[str, int]:
        while True:
            if proc.returncode is not None:
                raise TorStartFailed(f"tor exited with {proc.returncode}{self._log_tail()}")
            # tor writes "PORT=127.0.0.1:NNNN" there once the port is open.
            with contextlib.suppress(OSError):
                text = port_file.read_text().strip()  # noqa: ASYNC240 (a few bytes)
                if text.startswith("PORT=") and text.endswith(tuple("0123456789")):
                    host, _, port = text[len("PORT=") :].rpartition(":")
                    return host, int(port)
            await asyncio.sleep(0.05)

    def _open_launched(self, address: tuple[str, int]) -> Controller:
        try:
            controller = Controller.from_port(address=address[0], port=address[1])
        except stem.SocketError as exc:
            raise TorStartFailed(f"cannot connect to tor's control port: {exc}") from exc
        # stem sends TAKEOWNERSHIP here (our PID is tor's __OwningControllerProcess).
        self._authenticate(controller)
        self.control_address = address
        return controller

    def _log_tail(self, lines: int = 6) -> str:
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\ntor's last log lines:\n" + "\n".join(tail) if tail else ""

    def _watch(self, controller: Controller, generation: int) -> None:
        """Subscribe to what we need (runs in a worker thread: stem is synchronous)."""

        def on_status(event: Any) -> None:
            if event.action == "BOOTSTRAP":
                state = _bootstrap_from({k: str(v) for k, v in event.arguments.items()})
                if state is not None:
                    self._from_thread(generation, lambda: self._on_bootstrap(state))

        def on_hs_desc(event: Any) -> None:
            if event.action == stem.HSDescAction.UPLOADED:
                address = str(event.address)
                self._from_thread(generation, lambda: self._on_uploaded(address))

        def on_state(_controller: Any, state: Any, _timestamp: float) -> None:
            if state == State.CLOSED:
                self._from_thread(generation, lambda: self._on_lost("control connection closed"))

        controller.add_status_listener(on_state)
        controller.add_event_listener(on_status, EventType.STATUS_CLIENT)
        controller.add_event_listener(on_hs_desc, EventType.HS_DESC)

    @staticmethod
    def _socks_listener(controller: Controller) -> tuple[str, int]:
        listeners = controller.get_listeners(Listener.SOCKS)
        if not listeners:
            raise TorStartFailed("tor has no SOCKS port")
        host, port = listeners[0]
        return str(host), int(port)

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
                            f"{self._lost_reason}{self._log_tail()}"
                        )
        except TimeoutError as exc:
            raise TorTimeout(
                f"tor did not bootstrap within {self.timing.bootstrap:.0f} s (stuck at "
                f"{self.bootstrap.percent} %: {self.bootstrap.summary}){self._log_tail()}"
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
        mapping = {virtual_port: f"{target[0]}:{target[1]}"}
        if key is None:
            key_type, key_content = "NEW", "ED25519-V3"
        else:
            key_type, key_content = "ED25519-V3", base64.b64encode(key).decode()
        try:
            response = await asyncio.to_thread(
                controller.create_ephemeral_hidden_service,
                mapping,
                key_type=key_type,
                key_content=key_content,
                detached=False,
                await_publication=False,
            )
        except (stem.ControllerError, stem.SocketError) as exc:
            raise TorError(f"ADD_ONION failed: {exc}") from exc
        service_id = str(response.service_id)
        if key is None:
            if response.private_key_type != "ED25519-V3":
                raise TorError(f"tor made a {response.private_key_type} key, not ED25519-V3")
            key = base64.b64decode(response.private_key)
        address = service_id + ".onion"
        if onion_address_from_key(key) != address:
            raise TorError("tor's onion address does not match the key")  # never expected
        await self._wait_uploaded(service_id)
        self._emit(OnionPublished(address))
        return OnionService(address, key, virtual_port, target)

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
        counts = dict.fromkeys(("to contacts", "from contacts", "introduction", "other"), 0)
        for circuit in circuits:
            if circuit.status != "BUILT":
                continue
            counts[_CIRCUIT_USE.get(circuit.purpose, "other")] += 1
        return counts

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

    # -- dialing -----------------------------------------------------------------------------------

    async def _dial_once(
        self, onion: str, port: int, username: str, password: str, within: float
    ) -> socket.socket:
        if self.socks_address is None:
            raise TorClosed("tor has no SOCKS port")
        host, socks_port = self.socks_address
        # rdns: the name goes to tor as is; nothing about a contact is resolved locally.
        proxy = Proxy(ProxyType.SOCKS5, host, socks_port, username, password, rdns=True)
        try:
            sock = await proxy.connect(onion, port, timeout=within)
        except ProxyTimeoutError as exc:
            raise TorTimeout(f"no stream to {onion} within {within:.0f} s") from exc
        except ProxyConnectionError as exc:
            raise TorError(f"cannot reach tor's SOCKS port: {exc}") from exc
        except ProxyError as exc:
            code = exc.error_code if isinstance(exc.error_code, int) else 0x01
            meaning = SOCKS_MEANINGS.get(code, str(exc))
            raise OnionUnreachable(onion, code, meaning) from exc
        # tor sets no TCP_NODELAY; our side must, or small frames wait for delayed ACKs.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    async def _newnym(self, after: float) -> None:
        """Make sure a NEWNYM reached tor later than `after` (loop time). NEWNYM drops
        tor's cached onion descriptors, introduction-point failures and the record of
        which directories were asked, and puts new streams on new circuits. tor delays one
        that comes within 10 s of the previous, so we wait that out (the retry must see
        it); concurrent dials share one."""
        async with self._newnym_lock:
            if self._newnym_at > after:
                return
            loop = asyncio.get_running_loop()
            wait = self._newnym_at + NEWNYM_INTERVAL - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            controller = self._require_controller()
            try:
                await asyncio.to_thread(controller.signal, stem.Signal.NEWNYM)
            except (stem.ControllerError, stem.SocketError) as exc:
                raise TorError(f"NEWNYM failed: {exc}") from exc
            self._newnym_at = loop.time()

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


def _private_file(path: Path) -> Path:
    """Create `path` if needed and make it readable by its owner only."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)
    return path

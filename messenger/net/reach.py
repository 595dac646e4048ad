"""Tor reach, as a worker of the service: the profile's onion service and the onion dialer.

    reach = TorReach(folder=..., settings=TorSettings.from_env(), db=..., repo=..., ...)
    await reach.load()                 # the stored onion key, if any: the address is known
    reach.start(("127.0.0.1", port))   # in the background: start tor, publish, store the key
    links.dialers.append(reach)        # after the LAN and stored-address dialers
    await reach.aclose()

The service never waits for Tor: bootstrap can take minutes (or never end, offline), and the
LAN and direct addresses work meanwhile. Progress and the outcome are TorStatusChanged
events. The onion service maps a fixed virtual port (ONION_PORT) to the listener, so the
address contacts store stays valid when the listener's port changes between runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from ..core.ports import Db, Emit, Tasks
from ..events import TorStatusChanged
from ..protocol.invite import InviteError, parse_address
from ..storage.repository import Repository
from .links import Route, Streams
from .tor import (
    TOR_CONTROL_ENV,
    OnionKeyInvalid,
    OnionPublished,
    TorBootstrap,
    TorError,
    TorEvent,
    TorLost,
    TorManager,
    TorNotFound,
    TorRecovered,
    TorRestartFailed,
    TorSettings,
    TorTimeout,
    check_onion_key,
    find_tor,
    onion_address_from_key,
)
from .transport import Connection

log = logging.getLogger(__name__)

BLOB_ONION_KEY = "onion_key"  # the onion service's ed25519 key, in the encrypted database
ONION_PORT = 9878  # the virtual port contacts dial (protocol.md §19)
# A first circuit to an onion takes 10-30 s on the public network; a LAN connect gets 5 s.
ONION_CONNECT_TIMEOUT = 60.0


def tor_missing(env: dict[str, str] | None = None) -> str | None:
    """Why Tor reach cannot run on this machine (no tor binary, and no running Tor's
    control port named in CHINWAG_TOR_CONTROL), for the user; None when it can."""
    if (os.environ if env is None else env).get(TOR_CONTROL_ENV):
        return None
    try:
        find_tor()
    except TorNotFound as exc:
        return str(exc)
    return None


def is_onion_address(text: str) -> bool:
    """Whether "host:port" names an onion service (plain TCP cannot reach those)."""
    host = text.rpartition(":")[0].lower()
    return host.endswith(".onion")


class TorReach:
    # Keyword-only ports, wired by PeerService._build_workers (one per collaborator).
    def __init__(  # noqa: PLR0913  (the ports PeerService wires in, keyword-only)
        self,
        *,
        folder: Path,
        settings: TorSettings,
        db: Db,
        repo: Repository,
        emit: Emit,
        tasks: Tasks,
        addresses: Callable[[str], Awaitable[Iterable[str]]],
        on_ready: Callable[[], None],
        via_tor: Callable[[Connection], bool],
    ) -> None:
        self._folder = folder
        self._settings = settings
        self._db = db
        self._repo = repo
        self._emit = emit
        self._tasks = tasks
        self._addresses = addresses
        self._on_ready = on_ready
        self._via_tor = via_tor
        self._key: bytes | None = None
        self._bad_key: str | None = None
        self._manager: TorManager | None = None
        self._task: asyncio.Task[None] | None = None
        self._up = asyncio.Event()  # the onion service was published (once is enough)
        self.address: str | None = None  # "<onion>.onion:<ONION_PORT>"
        self.status = TorStatusChanged("off")

    @property
    def manager(self) -> TorManager | None:
        return self._manager

    @property
    def ready(self) -> bool:
        return self._up.is_set() and self._manager is not None and self._manager.ready

    async def load(self) -> None:
        """The stored key, if any (then our onion address is known before tor runs)."""
        key = await self._db.run(self._repo.get_blob, BLOB_ONION_KEY)
        if key is None:
            return
        try:
            check_onion_key(key)
        except OnionKeyInvalid as exc:
            # Not silently replaced: contacts know the address it made. Tor stays off
            # (start() reports it); the rest of the service runs.
            self._bad_key = f"the stored onion key is damaged: {exc}"
            return
        self._key = key
        self.address = f"{onion_address_from_key(key)}:{ONION_PORT}"

    def start(self, target: tuple[str, int]) -> None:
        """Start tor and publish the onion service mapped to `target`, in the background."""
        if self._bad_key is not None:
            log.error("Tor reach off: %s", self._bad_key)
            self._set("failed", error=self._bad_key)
            return
        self._manager = TorManager(self._folder, self._settings, on_event=self._on_tor_event)
        self._set("starting")
        self._task = self._tasks.spawn(self._run(self._manager, target), "chinwag-tor")

    async def _run(self, manager: TorManager, target: tuple[str, int]) -> None:
        try:
            await manager.start()
            service = await manager.publish(ONION_PORT, target, key=self._key)
            if self._key is None:
                await self._db.run(self._repo.set_blob, BLOB_ONION_KEY, service.key)
                self._key = service.key
        except TorError as exc:
            log.warning("Tor reach unavailable: %s", exc)
            self._set("failed", error=str(exc))
            return
        self.address = f"{service.address}:{ONION_PORT}"
        self._up.set()
        self._set("ready")
        self._on_ready()

    def _on_tor_event(self, event: TorEvent) -> None:
        match event:
            case TorBootstrap(percent=percent, summary=summary) if not self._up.is_set():
                self._set("starting", percent=percent, summary=summary)
            case TorLost(reason=reason):
                self._set("lost", error=reason)
            case TorRestartFailed(reason=reason):
                self._set("lost", error=reason)
            case TorRecovered():
                self._set("ready")
                self._on_ready()
            case OnionPublished() | TorBootstrap():
                pass

    def _set(
        self, state: str, *, percent: int | None = None, summary: str = "", error: str | None = None
    ) -> None:
        if percent is None:
            percent = 100 if state == "ready" else self.status.percent
        self.status = TorStatusChanged(state, percent, summary, self.address, error)
        self._emit(self.status)

    # -- dialing ---------------------------------------------------------------------------

    async def dial(
        self, host: str, port: int, *, isolation: str, within: float = ONION_CONNECT_TIMEOUT
    ) -> Streams:
        """A stream to host.onion:port through tor, waiting (within the bound) for tor to be
        up. Raises TorError (OnionUnreachable is also a ConnectionError)."""
        manager = self._manager
        if manager is None:
            raise TorError(f"cannot reach {host}: Tor is off")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        try:
            async with asyncio.timeout_at(deadline):
                await self._up.wait()
        except TimeoutError:
            raise TorTimeout(
                f"cannot reach {host}: Tor is not ready ({self.status.state})"
            ) from None
        return await manager.dial(
            host, port, isolation=isolation, within=max(1.0, deadline - loop.time())
        )

    async def routes(self, contact_id: str) -> list[Route]:
        """The Dialer port: the contact's stored onion addresses, dialled with the contact
        id as isolation key (its own circuits). None until our onion is up: the service
        pokes every contact's dial loop then."""
        if self._manager is None or not self._up.is_set():
            return []
        found = []
        for text in await self._addresses(contact_id):
            if is_onion_address(text):
                found.append(self._route(text, contact_id))
        return found

    def _route(self, text: str, contact_id: str) -> Route:
        async def connect(connect_timeout: float) -> Streams:
            try:
                address = parse_address(text)
            except InviteError as exc:
                raise TorError(str(exc)) from exc
            try:
                return await self.dial(
                    address.host,
                    address.port,
                    isolation=contact_id,
                    within=max(connect_timeout, ONION_CONNECT_TIMEOUT),
                )
            except TorError as exc:
                raise ConnectionError(str(exc)) from exc

        return Route(text, connect, tor=True)

    # -- the files worker's Tunnel port: bulk connections follow the session through Tor --

    def wanted(self, contact_id: str, conn: Connection) -> bool:
        """A session through Tor (dialled to an onion, or accepted from ours): a bulk
        connection must go through Tor too."""
        return self._manager is not None and self._via_tor(conn)

    async def open(self, contact_id: str) -> socket.socket:
        for text in await self._addresses(contact_id):
            if not is_onion_address(text):
                continue
            try:
                address = parse_address(text)
                sock = await self._dial_socket(address.host, address.port, contact_id)
            except (TorError, InviteError) as exc:
                raise ConnectionError(str(exc)) from exc
            sock.setblocking(True)  # the files worker's channels are blocking, on threads
            return sock
        raise ConnectionError("no onion address known for this contact")

    async def _dial_socket(self, host: str, port: int, contact_id: str) -> socket.socket:
        manager = self._manager
        if manager is None:
            raise TorError("Tor is off")
        async with asyncio.timeout(ONION_CONNECT_TIMEOUT):
            await self._up.wait()
        return await manager.dial_socket(
            host, port, isolation=contact_id, within=ONION_CONNECT_TIMEOUT
        )

    async def aclose(self) -> None:
        """Stop tor (turned off, or the service closes); the status becomes "off"."""
        if self._task is not None and not self._task.done():
            self._task.cancel()  # mid-bootstrap: its outcome no longer matters
            await asyncio.gather(self._task, return_exceptions=True)
        if self._manager is not None:
            await self._manager.aclose()
        self._up.clear()
        if self.status.state != "off":
            self._set("off")

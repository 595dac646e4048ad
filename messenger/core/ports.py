"""The ports: what each worker is handed instead of the whole service.

PeerService (service.py) builds every worker and wires it only to the ports it uses, as
magic-wormhole's Boss does with the interfaces in `_interfaces.py`. A worker never imports
`service` and never touches another object's `_private` attributes; a test builds one
worker with small fakes of these ports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from ..events import ServiceEvent
    from ..identity import Identity
    from ..net.links import Route
    from ..net.transport import Connection, Timing
    from ..protocol import wire
    from ..protocol.invite import Address
    from ..protocol.noise import KeyPair
    from ..protocol.session import Session, SessionEvent
    from ..storage.repository import ContactKeys

T = TypeVar("T")

Clock = Callable[[], float]
"""Seconds since the epoch (time.time in production, a controllable clock in tests)."""


class Emit(Protocol):
    """Tell the front ends something happened (PeerService.subscribe's callbacks)."""

    def __call__(self, event: ServiceEvent, /) -> None: ...


class Db(Protocol):
    """Run a call on the database thread (core.runtime.DbThread)."""

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...

    async def write(self, bodies: Sequence[str], fn: Callable[..., T], *args: Any) -> T: ...

    def can_write_now(self, bodies: Sequence[str]) -> bool: ...

    def write_now(self, fn: Callable[..., T], *args: Any) -> T: ...


class Tasks(Protocol):
    """Spawn a background task that has an owner (cancelled when the service closes)."""

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]: ...


class Me(Protocol):
    """Who we are, read live (the display name and addresses change while running)."""

    @property
    def identity(self) -> Identity: ...

    @property
    def display_name(self) -> str: ...

    @property
    def listen_port(self) -> int | None: ...

    @property
    def own_discovery_key(self) -> bytes: ...

    def addresses(self) -> list[Address]: ...


class ContactKeyring(Protocol):
    """The keys of every contact (group-only ones too), kept in memory."""

    def keys(self, contact_id: str) -> ContactKeys | None: ...

    def by_ed25519(self, ed25519_public: bytes) -> str | None: ...

    def __contains__(self, contact_id: object, /) -> bool: ...

    def __iter__(self) -> Iterator[str]:
        """Every contact id (LAN presence dials the ones offline after a network change)."""
        ...

    def conversation(self, contact_id: str) -> bytes: ...

    def remember(self, keys: ContactKeys) -> None: ...

    def is_held(self, contact_id: str) -> bool: ...


class LinkRegistry(Protocol):
    """Which contact has a live session, and how to reach one (net/links.py)."""

    def connection(self, contact_id: str) -> Connection | None:
        """The contact's live session, if any (it may be closing)."""
        ...

    def ready(self, contact_id: str) -> Connection | None:
        """The contact's live session if it is open and established."""
        ...

    def is_online(self, contact_id: str) -> bool: ...

    def via_tor(self, conn: Connection) -> bool:
        """Whether `conn` runs through Tor (its far end is our own tor, not the contact)."""
        ...

    def live_connections(self) -> list[Connection]: ...

    def poke(self, contact_id: str) -> None:
        """Try to reach the contact now rather than at the next backoff tick."""
        ...

    def dial_now(self, contact_id: str) -> None:
        """Start dialling a contact (new to us) now."""
        ...


class SessionOpener(Protocol):
    """Open a session over a fresh outgoing connection (invites, nearby pairing)."""

    async def open(
        self,
        host: str,
        port: int,
        session: Session,
        handler: Callable[[Connection, SessionEvent], Coroutine[Any, Any, None]] | None = None,
    ) -> Connection: ...

    async def open_route(
        self,
        route: Route,
        session: Session,
        handler: Callable[[Connection, SessionEvent], Coroutine[Any, Any, None]] | None = None,
    ) -> Connection:
        """Open a session over a route of its own (an invite's onion address)."""
        ...

    async def dispatch(self, conn: Connection, event: SessionEvent) -> None:
        """Handle a session event the ordinary way (as for any contact's session)."""
        ...

    def adopt(self, conn: Connection, contact_id: str) -> None:
        """Make `conn` the contact's live session."""
        ...

    def hello(self) -> wire.Hello:
        """Our hello for a new session."""
        ...

    def static_keypair(self) -> KeyPair: ...

    def dial_now(self, contact_id: str) -> None: ...

    @property
    def timing(self) -> Timing: ...


class LanKeys(Protocol):
    """What LAN discovery needs to hear from the other workers."""

    def contact_key_known(self, contact_id: str, key: bytes) -> None:
        """A contact's advertising key is known (stored already): recognise it."""
        ...

    def set_open_group(self, name: str | None) -> None:
        """The open group we announce (None: none)."""
        ...

    def nearby_offered(self) -> bool:
        """Do we answer NEARBY handshakes now (visible on this network)?"""
        ...

"""Small fakes of the workers' ports (messenger/core/ports.py), so that one worker can be
built and tested alone: no PeerService, no MagicMock.

The database is real (SQLCipher in a temporary folder) and wire messages between fake
connections are really encoded and decoded; only the session layer is replaced by a
pipe that hands each message to the other side's handler, in order.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from messenger.contacts import ContactBook
from messenger.events import ServiceEvent
from messenger.identity import Identity, conversation_id
from messenger.identity import contact_id as make_contact_id
from messenger.protocol import wire
from messenger.protocol.invite import Address
from messenger.storage.database import open_database
from messenger.storage.repository import ContactKeys, NewContact, Repository

T = TypeVar("T")
Handler = Callable[["FakeConn", wire.WireMessage], Awaitable[None]]


class InlineDb:
    """The Db port, running each call right away (one thread: the test's)."""

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(*args, **kwargs)

    async def write(self, bodies: Any, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    def can_write_now(self, bodies: Any) -> bool:
        return True

    def write_now(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)


class Events(list[ServiceEvent]):
    """The Emit port: every event, in order."""

    def __call__(self, event: ServiceEvent, /) -> None:
        self.append(event)

    def of(self, kind: type[T]) -> list[T]:
        return [e for e in self if isinstance(e, kind)]


class Tasks:
    """The Tasks port: owns what it spawns; `aclose` cancels the rest."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def aclose(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@dataclass
class Me:
    """The Me port."""

    identity: Identity
    display_name: str
    listen_port: int | None = None
    own_discovery_key: bytes = field(default_factory=lambda: os.urandom(32))
    reach: list[Address] = field(default_factory=list)  # where contacts can reach us

    def addresses(self) -> list[Address]:
        return list(self.reach)


class FakeSession:
    established = True

    def __init__(self, listen_port: int) -> None:
        self.peer = _Peer(_Hello(listen_port))


@dataclass
class _Hello:
    listen_port: int


@dataclass
class _Peer:
    hello: _Hello


class FakeConn:
    """One end of a pipe standing in for a session: what is sent is encoded, decoded and
    handed to the other end's handler, in order; `drain` waits until it was handled."""

    def __init__(
        self,
        contact_id: str,
        *,
        initiator: bool = True,
        peer_address: tuple[str, int] | None = ("127.0.0.1", 9),
    ) -> None:
        self.contact_id: str | None = contact_id
        self.initiator = initiator
        self.peer_address = peer_address
        self.session = FakeSession(peer_address[1] if peer_address else 0)
        self.closed = asyncio.Event()
        self.adopted = asyncio.Event()
        self.sent: list[wire.WireMessage] = []
        self.close_reason: str | None = None
        self.other: FakeConn | None = None
        self.handler: Handler | None = None
        # Called once what arrived is all handled, as the transport calls
        # FastPath.delivered at the end of a read.
        self.done: Callable[[], None] | None = None
        self._queue: asyncio.Queue[wire.WireMessage] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None

    def send(self, message: wire.WireMessage, encoded: bytes | None = None) -> None:
        if self.closed.is_set():
            return
        self.sent.append(message)
        record = wire.encode_message(message)
        # A sender that passes the encoding along must pass this message's own.
        assert encoded is None or encoded == record, "encoded is not this message"
        if self.other is not None:
            decoded = wire.decode_message(record)
            self.other.deliver(decoded)

    def queue(self, message: wire.WireMessage, encoded: bytes) -> bool:
        """Connection.queue (transport.send_to_all): sent at once, no flush to schedule."""
        self.send(message, encoded)
        return False

    def send_encoded(self, records: Sequence[bytes], *, batchable: bool = True) -> None:
        """Connection.send_encoded: messages already encoded (each must decode), chat
        messages (batchable) or not batchable ones (a group ack)."""
        if self.closed.is_set():
            return
        for record in records:
            decoded = wire.decode_message(record)
            assert isinstance(decoded, wire.BATCHABLE) == batchable, "batchable is not right"
            self.sent.append(decoded)
            if self.other is not None:
                self.other.deliver(decoded)

    def deliver(self, message: wire.WireMessage) -> None:
        self._queue.put_nowait(message)
        if self._pump is None:
            self._pump = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            message = await self._queue.get()
            try:
                if self.handler is not None and not self.closed.is_set():
                    await self.handler(self, message)
            finally:
                self._queue.task_done()
            if self.done is not None and self._queue.empty():
                self.done()

    async def drain(self) -> None:
        if self.other is not None:
            await self.other._queue.join()

    def flush(self) -> None:
        """Nothing is buffered here: `send` hands each message over at once."""

    def close(self, reason: str) -> None:
        self.close_reason = reason
        self.closed.set()

    async def aclose(self) -> None:
        self.closed.set()
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)


def pipe(a_id_at_b: str, b_id_at_a: str) -> tuple[FakeConn, FakeConn]:
    """(a's end, naming b; b's end, naming a). a's end is the dialler."""
    a_end, b_end = FakeConn(b_id_at_a, initiator=True), FakeConn(a_id_at_b, initiator=False)
    a_end.other, b_end.other = b_end, a_end
    return a_end, b_end


class FakeLinks:
    """The LinkRegistry port over fake connections the test plugs in."""

    def __init__(self) -> None:
        self.conns: dict[str, FakeConn] = {}
        self.poked: list[str] = []
        self.dialled: list[str] = []
        self.forgotten: list[str] = []

    def connection(self, contact_id: str) -> Any:
        return self.conns.get(contact_id)

    def ready(self, contact_id: str) -> Any:
        conn = self.conns.get(contact_id)
        return None if conn is None or conn.closed.is_set() else conn

    def is_online(self, contact_id: str) -> bool:
        return contact_id in self.conns

    def live_connections(self) -> list[Any]:
        return list(self.conns.values())

    def poke(self, contact_id: str) -> None:
        self.poked.append(contact_id)

    def dial_now(self, contact_id: str) -> None:
        self.dialled.append(contact_id)

    def route(self, contact_id: str) -> str | None:
        return "lan" if contact_id in self.conns else None

    def forget(self, contact_id: str) -> None:
        self.forgotten.append(contact_id)
        self.conns.pop(contact_id, None)


class FakeLan:
    """The LanKeys port: records what it was told."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}
        self.open_group: str | None = None
        self.rotations = 0  # advertising keys rotated

    def contact_key_known(self, contact_id: str, key: bytes) -> None:
        self.keys[contact_id] = key

    def set_open_group(self, name: str | None) -> None:
        self.open_group = name

    def nearby_offered(self) -> bool:
        return False

    def forget_contact(self, contact_id: str) -> None:
        self.keys.pop(contact_id, None)

    async def rotate_key(self) -> None:
        self.rotations += 1


@dataclass
class Person:
    """One peer's identity, database and keyring, for wiring a worker."""

    name: str
    identity: Identity
    repo: Repository
    contacts: ContactBook
    me: Me

    @property
    def id(self) -> str:
        return make_contact_id(self.identity.ed25519_public)


def make_person(folder: Path, name: str) -> Person:
    folder.mkdir(parents=True, exist_ok=True)
    identity = Identity.generate()
    repo = Repository(open_database(folder / "chinwag.db", os.urandom(32), create=True))
    return Person(name, identity, repo, ContactBook(identity.ed25519_public), Me(identity, name))


def befriend(a: Person, b: Person) -> None:
    """Store each as the other's contact (as an invite would), with a shared psk."""
    psk = os.urandom(32)
    for me, other in ((a, b), (b, a)):
        new = NewContact(
            id=other.id,
            display_name=other.name,
            ed25519_public=other.identity.ed25519_public,
            x25519_public=other.identity.static_public,
            static_certificate=other.identity.static_certificate,
            psk=psk,
            discovery_key=os.urandom(32),
            conversation_id=conversation_id(
                me.identity.ed25519_public, other.identity.ed25519_public
            ),
            verified=False,
            addresses=(),
        )
        me.repo.add_contact(new, 0.0)
        me.contacts.remember(
            ContactKeys(other.id, other.identity.ed25519_public, other.identity.static_public, psk)
        )


async def until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait (polling the loop) until predicate() is true; fails after `timeout`."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)

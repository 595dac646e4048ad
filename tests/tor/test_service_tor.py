"""Two PeerServices that reach each other only through the private Tor network.

No direct path is known to either side: each listens on its own loopback address
(127.0.0.2, 127.0.0.3) with `tor_only`, so its Hello and its invites carry only its onion
address, and LAN discovery is off. The invite names only the inviter's onion; what each
stores of the other is only the other's onion, so every dial goes through Tor (asserted:
the dialing side's live connection is to its own tor's SOCKS port).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from messenger.events import MessageAdded, MessageStatesChanged, ServiceEvent, TorStatusChanged
from messenger.identity import Identity
from messenger.net.reach import ONION_PORT, is_onion_address
from messenger.net.tor import TorSettings
from messenger.net.transport import Timing
from messenger.protocol import wire
from messenger.protocol.noise import KeyPair
from messenger.protocol.session import ContactTarget, Session
from messenger.records import MessageState, TransferRecord, TransferState
from messenger.service import PeerService, ServiceConfig

from .conftest import PeerFactory

pytestmark = [pytest.mark.tor, pytest.mark.timeout(420)]

# Tor is slower than a LAN: a first circuit takes seconds, so the handshake gets longer.
TOR_TIMING = Timing(
    handshake_timeout=30.0, keepalive_interval=5.0, dead_after=30.0, connect_timeout=5.0
)
MiB = 1024 * 1024
HOSTS = {"alice": "127.0.0.2", "bob": "127.0.0.3"}


class Watched:
    """A service and the events it emitted (awaited, never slept for)."""

    def __init__(self, service: PeerService) -> None:
        self.service = service
        self.events: list[ServiceEvent] = []
        self._changed = asyncio.Event()
        service.subscribe(self._record)

    def _record(self, event: ServiceEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def until(self, check: Callable[[], bool], within: float = 120.0) -> None:
        async with asyncio.timeout(within):
            while not check():
                self._changed.clear()
                await self._changed.wait()

    def tor_states(self) -> list[str]:
        return [e.state for e in self.events if isinstance(e, TorStatusChanged)]

    def delivered(self, msg_id: bytes) -> bool:
        return any(
            isinstance(e, MessageStatesChanged)
            and msg_id in e.msg_ids
            and e.state >= MessageState.DELIVERED
            for e in self.events
        )

    def received(self) -> list[str]:
        return [
            e.message.body
            for e in self.events
            if isinstance(e, MessageAdded) and not e.message.outgoing
        ]


ServiceFactory = Callable[..., Awaitable[Watched]]


@pytest.fixture
async def make_service(tmp_path: Path, tor_settings: TorSettings) -> AsyncIterator[ServiceFactory]:
    services: list[PeerService] = []

    async def make(name: str, *, reopen: bool = False) -> Watched:
        config = ServiceConfig(
            listen_host=HOSTS[name],
            listen_port=0,
            discovery=False,
            timing=TOR_TIMING,
            dial_base=0.5,
            dial_cap=5.0,
            tor=True,
            tor_settings=tor_settings,
            tor_only=True,
        )
        path = tmp_path / name
        if reopen:
            service = await PeerService.open(path, None, config=config, rng=random.Random(1))
        else:
            service, _ = await PeerService.create_profile(
                path, name.capitalize(), None, config=config, rng=random.Random(1)
            )
        services.append(service)
        watched = Watched(service)
        # Subscribed after open(): the state so far is in service.tor.status.
        await watched.until(lambda: _tor_state(service) in ("ready", "failed"))
        assert _tor_state(service) == "ready", service.tor and service.tor.status
        return watched

    try:
        yield make
    finally:
        for service in services:
            await service.aclose()


def _tor_state(service: PeerService) -> str:
    return service.tor.status.state if service.tor is not None else "off"


def _onion(service: PeerService) -> str:
    assert service.tor is not None and service.tor.address is not None
    return service.tor.address


async def test_invite_chat_and_files_over_tor_only_and_onion_survives_restart(
    make_service: ServiceFactory, make_peer: PeerFactory, tmp_path: Path
) -> None:
    alice = await make_service("alice")
    bob = await make_service("bob")
    a, b = alice.service, bob.service
    alice_onion = _onion(a)
    assert is_onion_address(alice_onion) and alice_onion.endswith(f".onion:{ONION_PORT}")
    # The key was created and stored in the encrypted database, never in a plain file.
    assert a.tor is not None and a.tor.manager is not None
    key = await a.db.run(a.repo.get_blob, "onion_key")
    assert key is not None and len(key) == 64
    files = [p for p in a.profile.path.rglob("*") if p.is_file() and not p.is_socket()]
    assert files and not any(key in p.read_bytes() for p in files)

    # The invite and the Hello carry only the onion address.
    code, invite = await a.invites.create_invite()
    assert [str(x) for x in invite.addresses] == [alice_onion]
    assert list(a.reach.hello().addresses) == [alice_onion] and a.reach.hello().listen_port == 0

    contact = await b.invites.accept_invite(code)
    await alice.until(lambda: b.contact_id in a.contact_keys)
    await alice.until(lambda: a.contacts.is_online(b.contact_id))
    await bob.until(lambda: b.contacts.is_online(a.contact_id))
    # Each knows the other only by onion address: no direct route exists to try.
    at_alice = await a.db.run(a.repo.contact, b.contact_id)
    assert at_alice is not None and at_alice.addresses == (_onion(b),)
    assert contact.addresses == (alice_onion,)
    # Bob dialled: his live session runs through his own tor's SOCKS port, and Alice's
    # side sees tor's loopback connection, not Bob's listening address.
    bob_conn = b.links.connection(a.contact_id)
    assert b.tor is not None and b.tor.manager is not None
    assert bob_conn is not None and bob_conn.peer_address == b.tor.manager.socks_address
    alice_conn = a.links.connection(b.contact_id)
    assert alice_conn is not None and alice_conn.peer_address is not None
    assert alice_conn.peer_address[0] != HOSTS["bob"]

    # Chat both ways; each message is delivered (the recipient stored it).
    to_alice = await b.chat.send_text(a.contact_id, "hello alice, over tor")
    to_bob = await a.chat.send_text(b.contact_id, "hello bob, over tor")
    await alice.until(lambda: "hello alice, over tor" in alice.received())
    await bob.until(lambda: "hello bob, over tor" in bob.received())
    await bob.until(lambda: bob.delivered(to_alice.msg_id), within=60)
    await alice.until(lambda: alice.delivered(to_bob.msg_id), within=60)

    # Files go through Tor too: 10 MiB from Alice to Bob (Bob dialled: his bulk connection
    # leaves through his SOCKS port), 1 MiB back (Alice's session came in through her onion
    # service: she dials Bob's onion for it).
    await _send_file(alice, bob, 10 * MiB, tmp_path)
    await _send_file(bob, alice, MiB, tmp_path)

    # A stranger who knows Alice's onion address but no psk gets silence, nothing else.
    mallory = await make_peer("mallory")
    reader, writer = await mallory.tor.dial(
        alice_onion.rpartition(":")[0], ONION_PORT, isolation="mallory"
    )
    stranger = _stranger_session(a)
    writer.write(stranger.data_to_send())
    await writer.drain()
    async with asyncio.timeout(60):
        assert await reader.read() == b""  # closed without a word
    writer.close()
    assert [c.id for c in await a.contacts.all()] == [b.contact_id]

    # Alice restarts: the same onion address (key from the database), and the two find
    # each other again by themselves, through Tor.
    await a.aclose()
    await bob.until(lambda: not b.contacts.is_online(a.contact_id))
    alice = await make_service("alice", reopen=True)
    a = alice.service
    assert _onion(a) == alice_onion
    await alice.until(lambda: a.contacts.is_online(b.contact_id), within=180)
    await bob.until(lambda: b.contacts.is_online(a.contact_id), within=60)
    await a.chat.send_text(b.contact_id, "back again")
    await bob.until(lambda: "back again" in bob.received(), within=60)


async def _send_file(sender: Watched, receiver: Watched, size: int, folder: Path) -> None:
    """sender offers `size` random bytes, receiver accepts; the copy must be identical."""
    source = folder / f"from-{sender.service.display_name}.bin"
    source.write_bytes(os.urandom(size))
    offer = await sender.service.files.send_file(receiver.service.contact_id, source)
    files = receiver.service.files
    await receiver.until(lambda: any(t.id == offer.id for t in files.transfers()), within=60)
    await files.accept(offer.id)
    await receiver.until(lambda: _finished(files.find(offer.id)), within=180)
    record = files.find(offer.id)
    assert record.state is TransferState.COMPLETE, record.error
    saved = await files.save_as(offer.id, folder / f"saved-{size}.bin")
    assert saved.read_bytes() == source.read_bytes()


def _finished(record: TransferRecord) -> bool:
    return record.state in (TransferState.COMPLETE, TransferState.FAILED, TransferState.CANCELLED)


def _stranger_session(target: PeerService) -> Session:
    """A RECONNECT initiator that knows the target's real keys but not a contact's psk."""
    ident = Identity.generate()
    hello = wire.Hello(ident.ed25519_public, ident.static_certificate, "Mallory", 0, ())
    return Session(
        initiator=True,
        static=KeyPair(ident.static_private, ident.static_public),
        hello=hello,
        target=ContactTarget(
            target.contact_id,
            target.identity.ed25519_public,
            target.identity.static_public,
            os.urandom(32),
        ),
    )

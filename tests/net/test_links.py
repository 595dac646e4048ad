"""Connection management: simultaneous dials, dead peers, re-handshakes."""

from __future__ import annotations

import asyncio
import contextlib

from messenger.events import PresenceChanged
from messenger.net.transport import Timing

from .conftest import Recorder, befriend, wait_for


def _ends(conn) -> tuple:
    sock = conn.writer.get_extra_info("socket")
    return sock.getsockname(), sock.getpeername()


async def _settled_on_one_connection(alice, bob, bob_id, alice_id) -> None:
    async def agreed() -> bool:
        a, b = alice.links.connection(bob_id), bob.links.connection(alice_id)
        if a is None or b is None or a.closed.is_set() or b.closed.is_set():
            return False
        a_local, a_peer = _ends(a)
        b_local, b_peer = _ends(b)
        return a_local == b_peer and a_peer == b_local

    await wait_for(agreed, what="both ends keep the same connection")


async def test_simultaneous_dials_resolve_to_one_connection(make_peer):
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    bob_id, alice_id = await befriend(alice, bob)
    for _ in range(5):
        # Drop the link on both ends at once: both dialers fire at the same moment.
        alice.links.connection(bob_id).close("test: drop")
        bob.links.connection(alice_id).close("test: drop")
        await _settled_on_one_connection(alice, bob, bob_id, alice_id)
    record = await alice.chat.send_text(bob_id, "still talking")
    await wait_for(lambda: _has(bob, alice_id, record.msg_id))


async def _has(service, contact_id, msg_id) -> bool:
    return any(m.msg_id == msg_id for m in await service.chat.history(contact_id))


class FreezableProxy:
    """Forwards TCP between a client and a target until frozen, then swallows everything
    without closing: a peer that vanished without a FIN (cable pulled, laptop lid shut)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = False
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self.tasks.add(task)

    async def _pump(self, src, dst) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(65536):
                if not self.frozen:
                    dst.write(data)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server:
            self.server.close()


async def test_dead_peer_detected_by_keepalive(make_peer):
    timing = Timing(handshake_timeout=2, keepalive_interval=0.5, dead_after=2, connect_timeout=1)
    bob = await make_peer("bob", timing=timing)
    proxy = FreezableProxy(bob.listen_port)
    proxy_port = await proxy.start()
    try:
        # Alice knows bob only through the proxy, and bob cannot dial alice back.
        alice = await make_peer("alice", timing=timing, listen_port=0)
        code, _ = await bob.invites.create_invite(addresses=[f"127.0.0.1:{proxy_port}"])
        contact = await alice.invites.accept_invite(code)
        await wait_for(lambda: alice.contacts.is_online(contact.id))
        alice.links.listener.close()  # bob cannot dial around the frozen link
        link = alice.links.connection(contact.id)
        events = Recorder(alice)
        proxy.frozen = True
        await wait_for(lambda: link.closed.is_set(), timeout=10)
        # The keepalive timer is what noticed (the reason says so; TCP alone would wait for
        # minutes): the reason is asserted, not a wall-clock bound.
        assert link.session.close_reason == "peer unresponsive"
        assert PresenceChanged(contact.id, online=False) in events.events
    finally:
        await proxy.close()


async def test_session_age_triggers_rehandshake(make_peer):
    timing = Timing(keepalive_interval=0.2, dead_after=5, max_session_age=0.6)
    alice = await make_peer("alice", timing=timing)
    bob = await make_peer("bob", timing=timing)
    bob_id, alice_id = await befriend(alice, bob)
    first = alice.links.connection(bob_id)
    hash_before = first.session.handshake_hash
    await wait_for(lambda: first.closed.is_set(), timeout=5)
    await wait_for(
        lambda: alice.contacts.is_online(bob_id) and alice.links.connection(bob_id) is not first
    )
    assert alice.links.connection(bob_id).session.handshake_hash != hash_before  # fresh keys
    record = await alice.chat.send_text(bob_id, "after rehandshake")
    await wait_for(lambda: _has(bob, alice_id, record.msg_id))

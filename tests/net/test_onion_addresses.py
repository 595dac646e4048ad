"""Onion addresses in a service with Tor off (tests/tor has the real Tor path): the direct
dialers never try them, and an invite naming only an onion fails with a plain reason."""

from __future__ import annotations

import pytest

from messenger.errors import InviteFailed
from messenger.events import ContactChanged
from messenger.net.reach import ONION_PORT
from messenger.protocol.wire import Ping, ReachUpdate

from .conftest import PeerFactory, Recorder, befriend, wait_for

pytestmark = pytest.mark.timeout(30)

ONION = "b" * 56 + ".onion"


async def test_direct_dialers_skip_onion_addresses(make_peer: PeerFactory) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    bob_id, _ = await befriend(alice, bob)
    direct = f"127.0.0.1:{bob.listen_port}"
    await alice.db.run(alice.repo.set_addresses, bob_id, [f"{ONION}:{ONION_PORT}", direct])
    assert alice.tor is None
    keys = [route.key for route in await alice.links.routes(bob_id)]
    assert keys == [direct]


async def test_invite_with_only_an_onion_needs_tor(make_peer: PeerFactory) -> None:
    alice = await make_peer("alice", tor_only=True)  # announces no direct address
    bob = await make_peer("bob")
    code, invite = await alice.invites.create_invite(addresses=[f"{ONION}:{ONION_PORT}"])
    assert [str(a) for a in invite.addresses] == [f"{ONION}:{ONION_PORT}"]
    with pytest.raises(InviteFailed, match="Tor is off"):
        await bob.invites.accept_invite(code)
    assert await bob.contacts.all() == []


async def test_reach_update_is_stored(
    make_peer: PeerFactory,
) -> None:
    """A contact's ReachUpdate over a live session (protocol.md §19.8) is stored in front of
    the addresses known, and announced as ContactChanged; the next dial offers it."""
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    bob_id, alice_id = await befriend(alice, bob)
    changed = Recorder(alice)
    onion = f"{ONION}:{ONION_PORT}"
    conn = bob.links.connection(alice_id)
    assert conn is not None
    conn.send(ReachUpdate((onion, f"127.0.0.1:{bob.listen_port}")))
    await wait_for(lambda: any(c.contact.id == bob_id for c in changed.of(ContactChanged)))
    record = await alice.db.run(alice.repo.contact, bob_id)
    assert record is not None and record.addresses[0] == onion
    assert f"127.0.0.1:{bob.listen_port}" in record.addresses
    # The same addresses again change nothing (no write, no event).
    before = len(changed.of(ContactChanged))
    conn.send(ReachUpdate((onion,)))
    conn.send(Ping(7))  # answered after the update was handled: then nothing came of it
    heard = conn.last_heard
    await wait_for(lambda: conn.last_heard > heard)
    assert len(changed.of(ContactChanged)) == before
    assert alice.contacts.is_online(bob_id)

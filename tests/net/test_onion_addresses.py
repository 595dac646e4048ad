"""Onion addresses in a service with Tor off (tests/tor has the real Tor path): the direct
dialers never try them, and an invite naming only an onion fails with a plain reason."""

from __future__ import annotations

import pytest

from messenger.errors import InviteFailed
from messenger.net.reach import ONION_PORT

from .conftest import PeerFactory, befriend

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
    code, invite = await alice.create_invite(addresses=[f"{ONION}:{ONION_PORT}"])
    assert [str(a) for a in invite.addresses] == [f"{ONION}:{ONION_PORT}"]
    with pytest.raises(InviteFailed, match="Tor is off"):
        await bob.accept_invite(code)
    assert await bob.contacts() == []

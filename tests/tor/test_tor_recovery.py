"""A peer whose tor process dies (killed by PID) recovers when its tor comes back: the
onion is published again from the stored key, and the contact reconnects through Tor.
Two real services reachable only through the private Tor network (tor_only)."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from .test_service_tor import ServiceFactory, Watched, _onion, make_service  # noqa: F401

pytestmark = [pytest.mark.tor, pytest.mark.timeout(420)]


async def test_killed_tor_comes_back_and_the_contact_reconnects_over_tor(
    make_service: ServiceFactory,  # noqa: F811
) -> None:
    alice = await make_service("alice")
    bob = await make_service("bob")
    a, b = alice.service, bob.service
    code, _ = await a.invites.create_invite()
    await b.invites.accept_invite(code)
    await alice.until(lambda: a.contacts.is_online(b.contact_id))
    await bob.until(lambda: b.contacts.is_online(a.contact_id))
    onion = _onion(a)
    # What tor writes in the profile folder is the owner's only, as the profile's files are.
    for path in (a.profile.path / "tor.log", a.profile.path / "tor-data" / "torrc"):
        assert path.stat().st_mode & 0o077 == 0, oct(path.stat().st_mode)
    assert a.tor is not None and a.tor.manager is not None
    pid = a.tor.manager.pid
    assert pid is not None
    bob_session = b.links.connection(a.contact_id)
    assert bob_session is not None

    os.kill(pid, signal.SIGKILL)  # not asked to stop: gone, as after a crash or an OOM kill

    # Alice notices, starts tor again on the same data directory and republishes the same
    # onion; the session that ran through the dead tor ended on both sides.
    await alice.until(lambda: "lost" in alice.tor_states(), within=60)
    await alice.until(lambda: alice.tor_states()[-1] == "ready", within=180)
    assert a.tor.manager.pid not in (None, pid)
    assert _onion(a) == onion
    # The session through the dead tor ends at Bob's side too: by EOF from his tor, by
    # his keepalive, or replaced when Alice's new session arrives first (a replacement on
    # the same route is not announced, so no "offline" event need come).
    async with asyncio.timeout(180):
        await bob_session.closed.wait()

    # They find each other again by themselves, through Tor (no other path exists).
    await alice.until(lambda: a.contacts.is_online(b.contact_id), within=240)
    await bob.until(lambda: b.contacts.is_online(a.contact_id), within=60)
    for side, other in ((a, b), (b, a)):
        conn = side.links.connection(other.contact_id)
        assert conn is not None and side.links.via_tor(conn)
    await b.chat.send_text(a.contact_id, "you are back")
    await a.chat.send_text(b.contact_id, "tor is back")
    await alice.until(lambda: "you are back" in alice.received(), within=60)
    await bob.until(lambda: "tor is back" in bob.received(), within=60)

"""TorManager against the real tor on a private Tor network (no internet, no public Tor).

Each test starts its peers' own tor processes (clients of the session's network), so they
pass alone and in any order. The session fixture may build the network inside the first
test's time, hence the longer timeout."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket

import pytest
from nacl.bindings import crypto_sign_keypair

from messenger.net.tor import (
    RETRIED_SOCKS_CODES,
    OnionAddressInvalid,
    OnionKeyInvalid,
    OnionPublished,
    OnionUnreachable,
    TorBootstrap,
    TorLost,
    TorRecovered,
    TorSettings,
    TorStartFailed,
    TorTimeout,
    onion_address_from_key,
    onion_address_from_public_key,
)

from .conftest import TIMING, PeerFactory, echo_server

pytestmark = [pytest.mark.tor, pytest.mark.timeout(300)]

PORT = 7777


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes
) -> bytes:
    """Send payload and read as many bytes back, concurrently (the echo streams it)."""
    writer.write(payload)
    drained = asyncio.ensure_future(writer.drain())
    try:
        return await reader.readexactly(len(payload))
    finally:
        await drained


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except ConnectionError:
        pass


async def test_two_peers_talk_through_an_onion_both_ways(make_peer: PeerFactory) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    # Bootstrap was reported as it went, up to 100 %, never backwards.
    percents = [e.percent for e in alice.of(TorBootstrap)]  # type: ignore[attr-defined]
    assert percents and percents[-1] == 100 and percents == sorted(percents)
    assert alice.tor.socks_address is not None and alice.tor.pid is not None

    async with echo_server() as port:
        service = await alice.tor.publish(PORT, ("127.0.0.1", port))
        # A new key, returned for the caller to store; it is the address's key.
        assert len(service.key) == 64
        assert onion_address_from_key(service.key) == service.address
        assert alice.of(OnionPublished) == [OnionPublished(service.address)]

        reader, writer = await bob.tor.dial(service.address, PORT, isolation="contact-alice")
        try:
            sock = writer.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            small = b"hello over tor"
            assert await exchange(reader, writer, small) == small
            # Larger than a Tor cell window's worth in each direction.
            big = secrets.token_bytes(700_000)
            assert await exchange(reader, writer, big) == big
            # The stream rides a rendezvous circuit on each side; `chinwag-cli tor` counts them.
            assert (await bob.tor.circuits())["to contacts"] >= 1
            assert (await alice.tor.circuits())["from contacts"] >= 1
        finally:
            await close(writer)


async def test_onion_address_survives_a_restart_with_the_stored_key(
    make_peer: PeerFactory,
) -> None:
    bob = await make_peer("bob")
    async with echo_server() as port:
        first = await make_peer("alice")
        service = await first.tor.publish(PORT, ("127.0.0.1", port))
        reader, writer = await bob.tor.dial(service.address, PORT, isolation="alice")
        assert await exchange(reader, writer, b"before") == b"before"
        await close(writer)
        await first.tor.aclose()
        # Alice is offline: her descriptor is still out there, her introduction points
        # are gone. Bob gets a clear error within the bound: tor's "unreachable" or, when
        # its circuits stall on this small network, the attempts' timeout.
        with pytest.raises((OnionUnreachable, TorTimeout)) as caught:
            await bob.tor.dial(service.address, PORT, isolation="alice", within=50)
        if isinstance(caught.value, OnionUnreachable):
            assert caught.value.code in RETRIED_SOCKS_CODES

        # The same profile folder, a new tor process, the key from "the database".
        second = await make_peer("alice")
        again = await second.tor.publish(PORT, ("127.0.0.1", port), key=service.key)
        assert again.address == service.address
        assert again.key == service.key
        # Bob's tor remembers the failure and the directories it asked (it would answer
        # "unreachable" from its cache for 15 minutes); dial() clears that with NEWNYM.
        reader, writer = await bob.tor.dial(service.address, PORT, isolation="alice")
        try:
            assert await exchange(reader, writer, b"after") == b"after"
        finally:
            await close(writer)


async def test_killed_tor_is_restarted_and_the_onion_comes_back(make_peer: PeerFactory) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    async with echo_server() as port:
        service = await alice.tor.publish(PORT, ("127.0.0.1", port))
        old_pid = alice.tor.pid
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)

        lost = await alice.wait_event(TorLost)
        assert "exited" in lost.reason or "closed" in lost.reason  # type: ignore[attr-defined]
        recovered = await alice.wait_event(TorRecovered, within=120)
        assert recovered == TorRecovered(restarts=1)
        assert alice.tor.ready
        assert alice.tor.pid not in (None, old_pid)
        # Re-added from the stored key and published again.
        assert alice.tor.service is not None and alice.tor.service.address == service.address
        assert alice.of(OnionPublished) == [OnionPublished(service.address)] * 2

        reader, writer = await bob.tor.dial(service.address, PORT, isolation="alice")
        try:
            assert await exchange(reader, writer, b"still here") == b"still here"
        finally:
            await close(writer)


async def test_unreachable_onion_is_a_clear_error_not_a_hang(make_peer: PeerFactory) -> None:
    bob = await make_peer("bob")
    # A well-formed address nobody publishes.
    nobody = onion_address_from_public_key(crypto_sign_keypair()[0])
    with pytest.raises(OnionUnreachable) as caught:
        await bob.tor.dial(nobody, PORT, isolation="nobody", within=50)
    assert caught.value.code == 0x04, caught.value  # no descriptor: host unreachable
    assert nobody in str(caught.value) and "offline" in str(caught.value)

    # A malformed address or key never reaches tor.
    with pytest.raises(OnionAddressInvalid):
        await bob.tor.dial("x" * 56 + ".onion", PORT, isolation="nobody")
    with pytest.raises(OnionKeyInvalid):
        await bob.tor.publish(PORT, ("127.0.0.1", 1), key=b"\x00" * 63)
    with pytest.raises(OnionKeyInvalid):
        await bob.tor.publish(PORT, ("127.0.0.1", 1), key=b"\xff" * 64)
    assert bob.tor.service is None and bob.tor.ready


async def test_bad_torrc_line_fails_start_with_tors_reason(make_peer: PeerFactory) -> None:
    settings = TorSettings(extra_lines=("NoSuchTorOption 1",), timing=TIMING)
    peer = await make_peer("broken", settings=settings, start=False)
    with pytest.raises(TorStartFailed) as caught:
        await peer.tor.start()
    assert "NoSuchTorOption" in str(caught.value)
    assert peer.tor.pid is None


async def test_attach_to_a_running_tor_leaves_it_running(make_peer: PeerFactory) -> None:
    """CHINWAG_TOR_CONTROL: use someone else's tor; add and remove only our onion."""
    host = await make_peer("host")
    bob = await make_peer("bob")
    assert host.tor.control_address is not None
    control = "{}:{}".format(*host.tor.control_address)
    guest = await make_peer(
        "guest", settings=TorSettings.from_env({"CHINWAG_TOR_CONTROL": control}, timing=TIMING)
    )
    assert guest.tor.attached and guest.tor.pid is None
    async with echo_server() as port:
        service = await guest.tor.publish(PORT, ("127.0.0.1", port))
        reader, writer = await bob.tor.dial(service.address, PORT, isolation="guest")
        try:
            assert await exchange(reader, writer, b"via a shared tor") == b"via a shared tor"
        finally:
            await close(writer)
    await guest.tor.aclose()
    # The host's tor is still there and still usable.
    assert host.tor.pid is not None and host.tor.ready
    assert not host.of(TorLost)

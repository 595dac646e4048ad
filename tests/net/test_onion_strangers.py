"""Strangers through our onion count in a bucket of their own (threat-model §4.13).

tor hands every onion connection to our onion listener from 127.0.0.1, so under the
per-host cap alone all onion strangers shared the 16 slots of 127.0.0.1 with local
processes. Here silent connections to the onion listener (what tor would forward) fill
the onion bucket: one more through the onion is refused, and a stranger on the ordinary
listener, from the same 127.0.0.1, is still let in.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from messenger.net.links import MAX_PENDING_PER_HOST, MAX_PENDING_VIA_TOR

from .conftest import PeerFactory, wait_for

pytestmark = pytest.mark.timeout(60)


async def test_onion_strangers_have_a_bucket_of_their_own(make_peer: PeerFactory) -> None:
    assert MAX_PENDING_VIA_TOR > MAX_PENDING_PER_HOST  # else this proves nothing new
    alice = await make_peer("alice")
    assert alice.listen_port is not None
    onion = await alice.links.listen_onion()
    opened: list[asyncio.StreamWriter] = []
    try:
        for _ in range(MAX_PENDING_VIA_TOR):
            opened.append((await asyncio.open_connection(*onion))[1])
        await wait_for(
            lambda: alice.links.pending_handshakes() == MAX_PENDING_VIA_TOR,
            what="every onion stranger counted",
        )
        refused = alice.links.refused_inbound
        reader, writer = await asyncio.open_connection(*onion)
        opened.append(writer)
        with contextlib.suppress(ConnectionResetError):  # refused: reset or closed at once
            assert await asyncio.wait_for(reader.read(), 10) == b""
        assert alice.links.refused_inbound == refused + 1

        opened.append((await asyncio.open_connection("127.0.0.1", alice.listen_port))[1])
        await wait_for(
            lambda: alice.links.pending_handshakes() == MAX_PENDING_VIA_TOR + 1,
            what="a stranger on the ordinary listener let in",
        )
        assert alice.links.refused_inbound == refused + 1
    finally:
        for writer in opened:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

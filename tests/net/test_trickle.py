"""threat-model §4.4: a stranger trickling bytes cannot hold a connection open. The
first bytes are read under one handshake deadline (telling a file transfer from a chat),
the handshake under another; a connection that never completes one is closed."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from messenger.files.serving import BULK_PEEK
from messenger.service import PeerService


async def _trickle(writer: asyncio.StreamWriter, first: bytes, every: float) -> None:
    """`first` a byte at a time, then more bytes, one each `every` seconds, forever."""
    with contextlib.suppress(ConnectionError):
        for i in range(1_000_000):
            writer.write(first[i : i + 1] if i < len(first) else b"\x01")
            await writer.drain()
            await asyncio.sleep(every)


@pytest.mark.parametrize(
    "first",
    [b"\x00\x40CW\x01", BULK_PEEK],
    ids=["chat-frame-prefix", "file-transfer-prefix"],
)
async def test_a_trickling_stranger_is_closed(make_peer, first: bytes) -> None:
    alice: PeerService = await make_peer("alice")
    deadline = alice.config.timing.handshake_timeout
    assert alice.listen_port
    reader, writer = await asyncio.open_connection("127.0.0.1", alice.listen_port)
    trickler = asyncio.create_task(_trickle(writer, first, deadline / 6))
    try:
        # At most the first-bytes deadline plus the handshake deadline (+ slack for a
        # loaded machine); the trickle never pauses long enough for a per-read timeout.
        async with asyncio.timeout(2 * deadline + 5):
            with contextlib.suppress(ConnectionResetError):
                while await reader.read(65536):
                    pass
        assert not trickler.done() or trickler.exception() is None
    finally:
        trickler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await trickler
        writer.close()

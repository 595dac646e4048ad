"""The onion dialer (net/tor/dialer.py) against a small SOCKS5 server on a real socket.

tor is not running here (tests/tor dials through a real one): the server below speaks the
SOCKS5 handshake python-socks sends (username/password auth, a domain name) and answers
each attempt with the reply code the test scripted, then echoes what it is sent; the
control connection is a fake that records the NEWNYM signals it gets.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from stem.control import Controller

from messenger.net.tor import (
    OnionDialer,
    OnionUnreachable,
    TorClosed,
    TorTiming,
    onion_address_from_public_key,
)

ONION = onion_address_from_public_key(bytes(range(32)))
TIMING = TorTiming(dial=10.0, dial_attempt=5.0, dial_attempts=2)


@dataclasses.dataclass
class Attempt:
    username: str
    password: str
    host: str
    port: int


class Socks:
    """A SOCKS5 server whose replies are scripted, one code per attempt (0 = success)."""

    def __init__(self, replies: list[int]) -> None:
        self.replies = replies
        self.attempts: list[Attempt] = []
        self.server: asyncio.Server | None = None

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            version, count = await reader.readexactly(2)
            methods = await reader.readexactly(count)
            assert version == 5 and 2 in methods  # username/password offered
            writer.write(b"\x05\x02")
            _, ulen = await reader.readexactly(2)
            username = (await reader.readexactly(ulen)).decode()
            (plen,) = await reader.readexactly(1)
            password = (await reader.readexactly(plen)).decode()
            writer.write(b"\x01\x00")
            version, command, _, kind = await reader.readexactly(4)
            assert (version, command, kind) == (5, 1, 3)  # CONNECT to a name (rdns)
            (hlen,) = await reader.readexactly(1)
            host = (await reader.readexactly(hlen)).decode()
            port = int.from_bytes(await reader.readexactly(2), "big")
            self.attempts.append(Attempt(username, password, host, port))
            code = self.replies.pop(0)
            writer.write(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))
            await writer.drain()
            if code == 0:
                writer.write(await reader.readexactly(4))  # echo one small message
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()


class FakeController:
    def __init__(self) -> None:
        self.signals: list[Any] = []

    def signal(self, sig: Any) -> None:
        self.signals.append(sig)


@pytest.fixture
async def socks() -> AsyncIterator[Socks]:
    server = Socks([])
    server.server = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    try:
        yield server
    finally:
        server.server.close()
        await server.server.wait_closed()


def dialer(socks: Socks | None, controller: FakeController) -> OnionDialer:
    async def ready(within: float) -> None:
        assert within > 0

    return OnionDialer(
        TIMING,
        wait_ready=ready,
        socks_address=lambda: socks.address if socks is not None else None,
        controller=lambda: cast(Controller, controller),
    )


async def echo(sock: Any) -> bytes:
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        writer.write(b"ping")
        return await reader.readexactly(4)
    finally:
        writer.close()


async def test_a_dial_is_one_socks_connect_to_the_onion_name(socks: Socks) -> None:
    socks.replies = [0]
    control = FakeController()
    sock = await dialer(socks, control).dial(ONION.upper(), 7000, isolation="contact-a")
    assert await echo(sock) == b"ping"
    [attempt] = socks.attempts
    assert (attempt.host, attempt.port, attempt.username) == (ONION, 7000, "contact-a")
    assert control.signals == []  # nothing failed: no NEWNYM


async def test_an_unreachable_onion_is_tried_again_after_newnym_with_fresh_credentials(
    socks: Socks,
) -> None:
    socks.replies = [0x04, 0]
    control = FakeController()
    sock = await dialer(socks, control).dial(ONION, 7000, isolation="contact-a")
    assert await echo(sock) == b"ping"
    first, second = socks.attempts
    assert first.username == second.username == "contact-a"  # the contact's own circuits
    assert first.password != second.password  # but never the same circuit again
    assert [str(s) for s in control.signals] == ["NEWNYM"]


async def test_a_refused_port_is_not_retried(socks: Socks) -> None:
    socks.replies = [0x05]
    control = FakeController()
    with pytest.raises(OnionUnreachable) as caught:
        await dialer(socks, control).dial(ONION, 7000, isolation="contact-a")
    assert caught.value.code == 0x05
    assert "nothing listens" in str(caught.value)
    assert len(socks.attempts) == 1
    assert control.signals == []


async def test_the_last_failure_is_raised_once_the_attempts_are_spent(socks: Socks) -> None:
    socks.replies = [0x01, 0x06]
    control = FakeController()
    with pytest.raises(OnionUnreachable) as caught:
        await dialer(socks, control).dial(ONION, 7000, isolation="contact-a")
    assert caught.value.code == 0x06
    assert len(socks.attempts) == TIMING.dial_attempts


async def test_the_next_dial_to_an_onion_that_failed_starts_with_newnym(socks: Socks) -> None:
    socks.replies = [0x05, 0]
    control = FakeController()
    onions = dialer(socks, control)
    with pytest.raises(OnionUnreachable):
        await onions.dial(ONION, 7000, isolation="contact-a")
    assert control.signals == []
    sock = await onions.dial(ONION, 7000, isolation="contact-a")
    assert await echo(sock) == b"ping"
    assert [str(s) for s in control.signals] == ["NEWNYM"]


async def test_bad_input_is_refused_before_any_connection(socks: Socks) -> None:
    onions = dialer(socks, FakeController())
    with pytest.raises(ValueError, match="onion"):
        await onions.dial("example.com", 7000, isolation="contact-a")
    with pytest.raises(ValueError, match="isolation"):
        await onions.dial(ONION, 7000, isolation="")
    assert socks.attempts == []


async def test_no_socks_port_is_a_closed_tor() -> None:
    with pytest.raises(TorClosed):
        await dialer(None, FakeController()).dial(ONION, 7000, isolation="contact-a")

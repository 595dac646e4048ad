"""Streams to onions through tor's SOCKS port, retried on fresh circuits.

Dialing uses python-socks over tor's SOCKS port. Not the SocksPort flag `ExtendedErrors`:
tor 0.4.9 flags waiting streams "descriptor not found" (0xF0) when one directory answers
404, and still sends that code when another directory had the descriptor and the stream
then connects (connection_ap_handshake_socks_reply prefers the flagged code), so a working
stream is reported as failed. The standard codes are enough to decide what to retry.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import Awaitable, Callable

import stem
from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
from python_socks.async_.asyncio import Proxy
from stem.control import Controller

from .errors import OnionUnreachable, TorClosed, TorError, TorTimeout
from .onion import check_onion_address
from .settings import TorTiming

log = logging.getLogger(__name__)

# What tor's SOCKS reply codes mean for an onion (RFC 1928 codes; see the module doc for
# why not tor's extended ones).
SOCKS_MEANINGS: dict[int, str] = {
    0x01: "tor failed to build the connection (a circuit or the rendezvous failed)",
    0x04: "not reachable: no descriptor, or its introduction points failed "
    "(the contact is offline, or tor holds stale state)",
    0x05: "the onion service is up but nothing listens on that port",
    0x06: "a circuit timed out",
}

# Worth another attempt on fresh circuits, after NEWNYM has cleared tor's cached state.
RETRIED_SOCKS_CODES = frozenset({0x01, 0x04, 0x06})
# tor delays a NEWNYM that comes sooner than this after the previous one.
NEWNYM_INTERVAL = 10.0


class OnionDialer:
    """Opens streams to onions for the manager. `wait_ready(within)` waits until tor is
    usable, `socks_address()` is tor's SOCKS port now, `controller()` the live control
    connection (for NEWNYM)."""

    def __init__(
        self,
        timing: TorTiming,
        *,
        wait_ready: Callable[[float], Awaitable[None]],
        socks_address: Callable[[], tuple[str, int] | None],
        controller: Callable[[], Controller],
    ) -> None:
        self.timing = timing
        self._wait_ready = wait_ready
        self._socks_address = socks_address
        self._controller = controller
        self._failed_at: dict[str, float] = {}  # onion -> loop time its last dial failed
        self._newnym_at = -NEWNYM_INTERVAL  # loop time of our last NEWNYM
        self._newnym_lock = asyncio.Lock()

    async def dial(
        self,
        address: str,
        port: int,
        *,
        isolation: str,
        within: float | None = None,
    ) -> socket.socket:
        """Open a stream to address:port through tor's SOCKS port; the connected socket
        (non-blocking; TCP_NODELAY set), for the caller to own.

        `isolation` (one per contact) is the SOCKS username; the password is fresh for
        every attempt. tor (IsolateSOCKSAuth, on by default) never shares a circuit between
        streams with different credentials, so contacts never share circuits, and every
        connection gets its own circuits and rendezvous point: a rendezvous circuit left
        from an earlier connection, dead if the contact went away, is never reused (a
        stream attached to it stalls until tor's own timeout).

        Bounded by `within` seconds (default TorTiming.dial), each attempt by
        TorTiming.dial_attempt. A failed or stalled attempt is retried after NEWNYM: once
        a contact's introduction points failed, tor answers at once from its cache
        ("unreachable") and queries no directory it asked in the last 15 minutes, so
        without NEWNYM a contact who comes back stays unreachable that long. The same holds
        across calls: the first attempt to an onion whose last dial failed is preceded by
        NEWNYM."""
        onion = check_onion_address(address)
        if not isolation:
            raise ValueError("an isolation key is needed (one per contact)")
        budget = self.timing.dial if within is None else within
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        last: Exception | None = None
        try:
            async with asyncio.timeout_at(deadline):
                await self._wait_ready(budget)
                for attempt in range(self.timing.dial_attempts):
                    if onion in self._failed_at:
                        await self._newnym(after=self._failed_at[onion])
                    password = secrets.token_hex(8)
                    try:
                        attempt_budget = min(self.timing.dial_attempt, deadline - loop.time())
                        stream = await self._dial_once(
                            onion, port, isolation, password, attempt_budget
                        )
                    except OnionUnreachable as exc:
                        self._failed_at[onion] = loop.time()
                        if exc.code not in RETRIED_SOCKS_CODES:
                            raise
                        last = exc
                    except TorTimeout as exc:
                        self._failed_at[onion] = loop.time()
                        last = exc
                    else:
                        self._failed_at.pop(onion, None)
                        return stream
                    log.info("dial %s attempt %d failed: %s", onion, attempt + 1, last)
        except TimeoutError as exc:
            if isinstance(exc, TorTimeout):
                raise
            raise TorTimeout(f"no stream to {onion} within {budget:.0f} s") from exc
        assert last is not None
        raise last

    async def _dial_once(
        self, onion: str, port: int, username: str, password: str, within: float
    ) -> socket.socket:
        socks = self._socks_address()
        if socks is None:
            raise TorClosed("tor has no SOCKS port")
        host, socks_port = socks
        # rdns: the name goes to tor as is; nothing about a contact is resolved locally.
        proxy = Proxy(ProxyType.SOCKS5, host, socks_port, username, password, rdns=True)
        try:
            sock = await proxy.connect(onion, port, timeout=within)
        except ProxyTimeoutError as exc:
            raise TorTimeout(f"no stream to {onion} within {within:.0f} s") from exc
        except ProxyConnectionError as exc:
            raise TorError(f"cannot reach tor's SOCKS port: {exc}") from exc
        except ProxyError as exc:
            code = exc.error_code if isinstance(exc.error_code, int) else 0x01
            meaning = SOCKS_MEANINGS.get(code, str(exc))
            raise OnionUnreachable(onion, code, meaning) from exc
        # tor sets no TCP_NODELAY; our side must, or small frames wait for delayed ACKs.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    async def _newnym(self, after: float) -> None:
        """Make sure a NEWNYM reached tor later than `after` (loop time). NEWNYM drops
        tor's cached onion descriptors, introduction-point failures and the record of
        which directories were asked, and puts new streams on new circuits. tor delays one
        that comes within 10 s of the previous, so we wait that out (the retry must see
        it); concurrent dials share one."""
        async with self._newnym_lock:
            if self._newnym_at > after:
                return
            loop = asyncio.get_running_loop()
            wait = self._newnym_at + NEWNYM_INTERVAL - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            controller = self._controller()
            try:
                await asyncio.to_thread(controller.signal, stem.Signal.NEWNYM)
            except (stem.ControllerError, stem.SocketError) as exc:
                raise TorError(f"NEWNYM failed: {exc}") from exc
            self._newnym_at = loop.time()

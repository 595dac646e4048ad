"""A "cable": a real TCP relay standing for a LAN path in tests on one machine.

Peers announce the cable's address (ServiceConfig.advertise) instead of their listener's;
unplugging it closes its listening socket and makes the connections it carries silent,
as a LAN link that goes down does (nothing is reset: the sessions must notice by
themselves); plugging it back listens on the same address again.
"""

from __future__ import annotations

import asyncio
import contextlib


class Cable:
    """A TCP relay at `host` (a port of its own) to a target set later; unplug() makes it
    refuse new connections and drop, silently, everything on the ones it carries."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = 0
        self.target: tuple[str, int] | None = None
        self._server: asyncio.Server | None = None
        self._links: list[_Link] = []
        self.carried = 0  # connections relayed so far

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def plug(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def unplug(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        for link in self._links:
            link.dead = True

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self._links:
            link.close()
        await asyncio.gather(
            *(t for link in self._links for t in link.tasks), return_exceptions=True
        )

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.target is None:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.carried += 1
        link = _Link(writer, up_writer)
        self._links.append(link)
        link.tasks = [
            asyncio.ensure_future(link.pump(reader, up_writer)),
            asyncio.ensure_future(link.pump(up_reader, writer)),
        ]


class _Link:
    def __init__(self, a: asyncio.StreamWriter, b: asyncio.StreamWriter) -> None:
        self.writers = (a, b)
        self.dead = False
        self.tasks: list[asyncio.Future[None]] = []

    async def pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if not self.dead:  # unplugged: bytes vanish, nothing is reset
                    writer.write(data)
                    await writer.drain()
        self.close()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()

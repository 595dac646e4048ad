"""Shared helpers: quiet logging, temporary befriended peers on loopback, raw asyncio TCP
baselines, percentiles and the result table.

Everything here is measured in the same process and the same run as the thing it is
compared with, because the machines these run on are shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import platform
import random
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Benchmarks never touch the user's keyring: a profile without a passphrase keeps its key
# in a file inside the temporary profile folder, which is deleted afterwards.
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
# Every `chinwag-cli run` started from here stays off Tor (it would try the public
# network); Tor tests and benchmarks configure their peers' tor explicitly.
os.environ["CHINWAG_NO_TOR"] = "1"

from messenger.net.transport import Timing
from messenger.service import PeerService, ServiceConfig

BODY_SIZE = 200
_LEN = struct.Struct("!H")

# The service's own timers (keepalive every 15 s: no pings during a measurement).
TIMING = Timing(connect_timeout=2.0)


def quiet_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("messenger", "alembic", "sqlalchemy", "asyncio"):
        logging.getLogger(name).setLevel(logging.WARNING)


def body(size: int = BODY_SIZE, i: int = 0) -> str:
    """A printable ASCII body of exactly `size` bytes, different for each i."""
    head = f"m{i:08d} "
    return (head + "x" * size)[:size]


def config(**overrides: object) -> ServiceConfig:
    values: dict[str, object] = {
        "listen_host": "127.0.0.1",
        "listen_port": 0,
        "timing": TIMING,
        "dial_base": 0.05,
        "dial_cap": 0.5,
    }
    values.update(overrides)
    return ServiceConfig(**values)  # type: ignore[arg-type]


@dataclass(slots=True)
class Pair:
    a: PeerService
    b: PeerService
    b_at_a: str  # B's contact id in A's book
    a_at_b: str  # A's contact id in B's book
    root: Path


async def wait_for(
    predicate: Callable[[], Awaitable[bool] | bool], within: float = 20.0, poll: float = 0.01
) -> None:
    async with asyncio.timeout(within):
        while True:
            result = predicate()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(poll)


async def befriend(a: PeerService, b: PeerService) -> tuple[str, str]:
    """a invites b; returns (b's contact id at a, a's contact id at b), once both are online."""
    code, _ = await a.invites.create_invite()
    contact_at_b = await b.invites.accept_invite(code)
    await wait_for(
        lambda: a.contacts.is_online(b.contact_id) and b.contacts.is_online(a.contact_id)
    )
    return b.contact_id, contact_at_b.id


@contextlib.asynccontextmanager
async def two_peers(**overrides: object) -> AsyncIterator[Pair]:
    """Two fresh profiles in a temporary folder, befriended and online on 127.0.0.1."""
    with tempfile.TemporaryDirectory(prefix="chinwag-bench-") as tmp:
        root = Path(tmp)
        services: list[PeerService] = []
        try:
            for name in ("alice", "bob"):
                service, _ = await PeerService.create_profile(
                    root / name,
                    name.capitalize(),
                    None,
                    config=config(**overrides),
                    rng=random.Random(1),
                )
                services.append(service)
            a, b = services
            b_at_a, a_at_b = await befriend(a, b)
            yield Pair(a, b, b_at_a, a_at_b, root)
        finally:
            for service in reversed(services):
                await service.aclose()


# -- statistics -----------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100.0
    low, high = math.floor(k), math.ceil(k)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def fmt_rate(per_second: float, unit: str) -> str:
    return f"{per_second:,.0f} {unit}/s" if per_second >= 100 else f"{per_second:,.1f} {unit}/s"


def fmt_time(seconds: float) -> str:
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} µs"


# -- results --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Result:
    """One row of the table. `ratio` is result / baseline as the row explains it."""

    name: str
    result: str
    baseline: str
    ratio: float | None
    ratio_text: str = ""
    target: str = "—"
    met: bool | None = None  # None: no target

    @property
    def ratio_cell(self) -> str:
        if self.ratio_text:
            return self.ratio_text
        if self.ratio is None:
            return "—"
        return f"{self.ratio:.3g}"

    @property
    def met_cell(self) -> str:
        if self.met is None:
            return "—"
        return "yes" if self.met else "**no**"


def markdown_table(results: Sequence[Result]) -> str:
    header = ("benchmark", "result", "raw baseline", "ratio", "target", "met?")
    rows = [header, tuple("---" for _ in header)]
    rows += [(r.name, r.result, r.baseline, r.ratio_cell, r.target, r.met_cell) for r in results]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def machine_line() -> str:
    return (
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    )


def print_table(title: str, results: Sequence[Result]) -> None:
    print()
    print(f"## {title}")
    print()
    print(markdown_table(results))
    print()
    print(f"_{machine_line()}; raw baselines measured in the same run._")


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    return parser.parse_args(argv)


# -- raw asyncio TCP baselines ----------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    return _LEN.pack(len(payload)) + payload


async def _echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo length-prefixed messages back, one at a time, as a plain asyncio server would."""
    try:
        while True:
            header = await reader.readexactly(_LEN.size)
            (size,) = _LEN.unpack(header)
            payload = await reader.readexactly(size)
            writer.write(header + payload)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def tcp_server(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    """A loopback asyncio server; on exit, its connection handlers are awaited too."""
    handlers: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        finally:
            handlers.discard(task)

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        with contextlib.suppress(asyncio.TimeoutError):
            async with asyncio.timeout(2.0):
                await asyncio.gather(*handlers, return_exceptions=True)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        with contextlib.suppress(Exception):
            await server.wait_closed()


def echo_server() -> contextlib.AbstractAsyncContextManager[int]:
    return tcp_server(_echo_handler)


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    import socket

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


async def raw_echo_throughput(count: int, size: int = BODY_SIZE, window: int = 500) -> float:
    """Messages/s through an echo server in this process (see echo_throughput)."""
    async with echo_server() as port:
        return await echo_throughput(port, count, size, window)


async def echo_throughput(port: int, count: int, size: int = BODY_SIZE, window: int = 500) -> float:
    """Messages/s: a client pipelines `count` framed messages to the echo server on `port`
    (in windows, with drain) and counts the echoes that come back."""
    payload = frame(b"x" * size)
    reader, writer = await _open(port)
    try:

        async def count_echoes() -> None:
            for _ in range(count):
                header = await reader.readexactly(_LEN.size)
                await reader.readexactly(_LEN.unpack(header)[0])

        start = time.perf_counter()
        counter = asyncio.create_task(count_echoes())
        try:
            for sent in range(0, count, window):
                writer.write(payload * min(window, count - sent))
                await writer.drain()
            await counter
        finally:
            counter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await counter
        return count / (time.perf_counter() - start)
    finally:
        await _close(writer)


async def raw_ping_pong(
    count: int, size: int = BODY_SIZE, warmup: int = 20, durable: Path | None = None
) -> list[float]:
    """Round-trip times (s) of one framed message at a time through an echo server.

    With `durable`, the server first stores each message in a plain sqlite3 database at that
    path (WAL, synchronous=FULL: one fsync'd commit per message) and echoes after the commit.
    """
    payload = frame(b"x" * size)
    samples: list[float] = []
    handler = _echo_handler
    db: sqlite3.Connection | None = None
    if durable is not None:
        db = sqlite3.connect(durable, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS m (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        store = db

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    header = await reader.readexactly(_LEN.size)
                    data = await reader.readexactly(_LEN.unpack(header)[0])
                    store.execute("BEGIN IMMEDIATE")
                    store.execute("INSERT INTO m (body) VALUES (?)", (data,))
                    store.execute("COMMIT")
                    writer.write(header + data)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                await _close(writer)

    try:
        async with tcp_server(handler) as port:
            reader, writer = await _open(port)
            try:
                for i in range(warmup + count):
                    start = time.perf_counter()
                    writer.write(payload)
                    header = await reader.readexactly(_LEN.size)
                    await reader.readexactly(_LEN.unpack(header)[0])
                    if i >= warmup:
                        samples.append(time.perf_counter() - start)
            finally:
                await _close(writer)
    finally:
        if db is not None:
            db.close()
    return samples


async def raw_connect_close(count: int) -> float:
    """Plain TCP connections/s: connect to an asyncio server on loopback, then close."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.read()  # until the client closes
        await _close(writer)

    async with tcp_server(handler) as port:
        start = time.perf_counter()
        for _ in range(count):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            await _close(writer)
        elapsed = time.perf_counter() - start
    return count / elapsed


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_env() -> dict[str, str]:
    """The environment for a child Python process that imports this checkout."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


@contextlib.asynccontextmanager
async def raw_peer_process(*args: str, pids: list[int] | None = None) -> AsyncIterator[int]:
    """`bench.raw_peer` in its own process; yields its port (its pid goes to `pids`)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.raw_peer",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=child_env(),
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            port = int(await proc.stdout.readline())
        if pids is not None:
            pids.append(proc.pid)
        yield port
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


# -- profiling ------------------------------------------------------------------------------


class ThreadProfiles:
    """cProfile of the event loop thread and of each service's database thread.

    Each PeerService runs its database work on a one-thread executor; a profiler is switched
    on inside that thread by a job submitted to it.
    """

    def __init__(self, services: dict[str, PeerService]) -> None:
        import cProfile

        self._services = services
        self.loop = cProfile.Profile()
        self.db = {name: cProfile.Profile() for name in services}

    async def __aenter__(self) -> ThreadProfiles:
        for name, service in self._services.items():
            await service.db.run(self.db[name].enable)
        self.loop.enable()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.loop.disable()
        for name, service in self._services.items():
            await service.db.run(self.db[name].disable)

    def report(self, top: int = 25) -> str:
        import io
        import pstats

        out = io.StringIO()
        sections = [("event loop thread (both services + bench driver)", self.loop)]
        sections += [(f"database thread of {name}", prof) for name, prof in self.db.items()]
        for title, prof in sections:
            out.write(f"\n### cProfile: {title}\n")
            for key in ("tottime", "cumulative"):
                stats = pstats.Stats(prof, stream=out)
                stats.strip_dirs().sort_stats(key).print_stats(top)
        return out.getvalue()

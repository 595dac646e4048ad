"""Tor reach on a private Tor network on 127.0.0.1 (3 authorities, 4 relays; see
tests/tor/network.py): how long until a peer is reachable, and what an onion circuit costs.

Measured in one run:
- the private network: start to a consensus listing every relay (cold, or with the data
  directories of an earlier run when --keep names a folder that holds one);
- a peer's tor (TorManager): start to bootstrapped; ADD_ONION to the descriptor uploaded;
  and start to reachable: the other peer's first echo through the onion;
- echo round trips of one 200-byte framed message at a time through the onion circuit, a
  raw stream (no Chinwag on it yet). This raw stream through the same circuit is the
  baseline the Chinwag-over-Tor figures will be divided by once the service uses Tor. For
  context only, the same ping-pong over plain loopback TCP;
- a one-way bulk copy through the circuit (raw), for the same reason, vs loopback TCP;
- memory (RSS) of the tor processes.

    python -m bench.bench_tor [--quick] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from messenger.net.tor import TorManager, TorSettings

from .common import (
    BODY_SIZE,
    Result,
    echo_server,
    fmt_rate,
    fmt_time,
    frame,
    percentile,
    print_table,
    quiet_logging,
    raw_ping_pong,
    tcp_server,
)

ROOT = Path(__file__).resolve().parents[1]
PORT = 7777
MiB = 1 << 20


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


async def ping_pong(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: int, warmup: int = 20
) -> list[float]:
    payload = frame(b"x" * BODY_SIZE)
    samples = []
    for i in range(warmup + count):
        start = time.perf_counter()
        writer.write(payload)
        await reader.readexactly(len(payload))
        if i >= warmup:
            samples.append(time.perf_counter() - start)
    return samples


async def _sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads a size, then that many bytes, then answers one byte: the copy has arrived.
    (Sized rather than until EOF: a Tor stream has no half-close.)"""
    size = int.from_bytes(await reader.readexactly(8), "big")
    while size:
        size -= len(await reader.read(min(size, 1 << 20)))
    writer.write(b"!")
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()


async def bulk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, size: int) -> float:
    """Seconds to push `size` bytes and hear that all arrived."""
    block = os.urandom(256 * 1024)
    start = time.perf_counter()
    writer.write(size.to_bytes(8, "big"))
    for _ in range(size // len(block)):
        writer.write(block)
        await writer.drain()
    await reader.readexactly(1)
    return time.perf_counter() - start


@contextlib.asynccontextmanager
async def managers(root: Path, settings: TorSettings) -> AsyncIterator[list[TorManager]]:
    made = [TorManager(root / name, settings) for name in ("alice", "bob")]
    try:
        yield made
    finally:
        for manager in made:
            await manager.aclose()


async def measure(root: Path, settings: TorSettings, count: int, bulk_size: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with managers(root, settings) as (alice, bob), echo_server() as echo_port:
        start = time.perf_counter()
        await asyncio.gather(alice.start(), bob.start())
        out["bootstrap"] = time.perf_counter() - start
        published = time.perf_counter()
        service = await alice.publish(PORT, ("127.0.0.1", echo_port))
        out["publish"] = time.perf_counter() - published
        reader, writer = await bob.dial(service.address, PORT, isolation="alice")
        await ping_pong(reader, writer, 1, warmup=0)
        out["reachable"] = time.perf_counter() - start
        out["after_publish"] = time.perf_counter() - published
        out["onion_rtt"] = await ping_pong(reader, writer, count)
        writer.close()

        async with tcp_server(_sink) as sink_port:
            sink = await alice.publish(PORT, ("127.0.0.1", sink_port))
            reader, writer = await bob.dial(sink.address, PORT, isolation="alice-bulk")
            out["onion_bulk"] = await bulk(reader, writer, bulk_size)
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", sink_port)
            out["tcp_bulk"] = await bulk(reader, writer, bulk_size)
            writer.close()
        out["client_rss"] = rss_mib([p for p in (alice.pid, bob.pid) if p])
    out["tcp_rtt"] = await raw_ping_pong(count)
    return out


async def run(quick: bool, keep: Path | None = None) -> list[Result]:
    sys.path.insert(0, str(ROOT))
    from tests.tor.network import PrivateTorNetwork, tor_unavailable

    reason = tor_unavailable()
    if reason is not None:
        print(f"skipped: {reason}", file=sys.stderr)
        return []
    count = 100 if quick else 500
    bulk_size = (4 if quick else 16) * MiB
    with tempfile.TemporaryDirectory(prefix="chinwag-bench-tor-") as tmp:
        folder = keep or Path(tmp) / "network"
        net = PrivateTorNetwork(folder)
        await asyncio.to_thread(net.start)
        try:
            tors = len(net.pids())
            network_rss = rss_mib(net.pids())
            config = net.write_client_config(Path(tmp) / "client.torrc")
            settings = TorSettings.from_env({"CHINWAG_TOR_CONFIG": str(config)})
            m = await measure(Path(tmp) / "peers", settings, count, bulk_size)
        finally:
            await asyncio.to_thread(net.stop)
    onion: list[float] = m["onion_rtt"]
    tcp: list[float] = m["tcp_rtt"]
    kind = "reused folder" if net.reused else "cold"
    rows = [
        Result(f"private network usable ({kind})", fmt_time(net.ready_after), "—", None),
        Result("peer tor: start → bootstrapped", fmt_time(m["bootstrap"]), "—", None),
        Result("ADD_ONION → descriptor uploaded", fmt_time(m["publish"]), "—", None),
        Result(
            "start → reachable (first echo through the onion)",
            fmt_time(m["reachable"]),
            f"after publish: {fmt_time(m['after_publish'])}",
            None,
        ),
    ]
    for p in (50, 99):
        rows.append(
            Result(
                f"echo p{p} through an onion circuit (raw stream, {BODY_SIZE} B)",
                fmt_time(percentile(onion, p)),
                f"loopback TCP {fmt_time(percentile(tcp, p))}",
                percentile(onion, p) / percentile(tcp, p),
            )
        )
    rows.append(
        Result(
            f"bulk copy through an onion circuit (raw, {bulk_size // MiB} MiB)",
            fmt_rate(bulk_size / MiB / m["onion_bulk"], "MiB"),
            f"loopback TCP {fmt_rate(bulk_size / MiB / m['tcp_bulk'], 'MiB')}",
            m["tcp_bulk"] / m["onion_bulk"],
        )
    )
    print(
        f"memory: private network {network_rss:.0f} MiB RSS ({tors} tors), "
        f"two peers' tors {m['client_rss']:.0f} MiB",
        file=sys.stderr,
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--keep", type=Path, help="build the private network here, reuse it if one is there"
    )
    args = parser.parse_args()
    quiet_logging()
    results = asyncio.run(run(args.quick, args.keep))
    print_table("Tor reach (private Tor network on 127.0.0.1)", results)
    print(
        "_Onion rows are a raw stream through the circuit (the baseline for Chinwag over "
        "Tor); the loopback TCP ratio is context, not a target._"
    )


if __name__ == "__main__":
    main()

"""Send -> delivered-receipt latency, one message at a time (200-byte bodies).

Each sample is timed from the `send_text` call until the sender's service emits
MessageStatesChanged(DELIVERED) for that message: the sender stored it in its outbox,
sent it, the receiver stored it and acknowledged it, and the sender recorded the receipt.

Raw baseline, same process and run: ping-pong of one 200-byte length-prefixed message
through a plain asyncio TCP echo server. Target: p50 <= 5x raw p50.

For context (no target) a second, durable raw baseline: the same ping-pong where the
echo side commits each message to a plain sqlite3 file (WAL, synchronous=FULL) before
echoing, i.e. one fsync per round trip. The service has three durable commits on this
path (sender's outbox, receiver's store, sender's DELIVERED state).

And the floor those commits set: one bare SQLCipher transaction inserting one 200-byte
message row into a table with three indexes (sqlcipher3, the service's WAL and
synchronous=NORMAL, no Python layers), p50. The first two commits are in series on the
path (the outbox before the message may leave, the receiver's store before it may be
acknowledged), so twice this is the least any design that keeps both can reach.

    python -m bench.bench_latency [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import sqlcipher3

from messenger.events import MessageStatesChanged, ServiceEvent
from messenger.records import MessageState

from .common import (
    BODY_SIZE,
    Pair,
    Result,
    ThreadProfiles,
    body,
    fmt_time,
    percentile,
    print_table,
    quiet_logging,
    raw_ping_pong,
    two_peers,
)

TARGET = 5.0


async def service_latencies(
    pair: Pair, count: int, warmup: int = 10
) -> tuple[list[float], list[float]]:
    """(send -> DELIVERED seconds, send_text call -> return seconds) per message."""
    a = pair.a
    delivered_at: dict[bytes, float] = {}
    arrived = asyncio.Event()

    def on_event(event: ServiceEvent) -> None:
        if isinstance(event, MessageStatesChanged) and event.state is MessageState.DELIVERED:
            now = time.perf_counter()
            for msg_id in event.msg_ids:
                delivered_at.setdefault(msg_id, now)
            arrived.set()

    unsubscribe = a.subscribe(on_event)
    round_trips: list[float] = []
    queued: list[float] = []
    try:
        for i in range(warmup + count):
            start = time.perf_counter()
            record = await a.chat.send_text(pair.b_at_a, body(BODY_SIZE, i))
            returned = time.perf_counter()
            async with asyncio.timeout(10):
                while record.msg_id not in delivered_at:
                    arrived.clear()
                    await arrived.wait()
            if i >= warmup:
                round_trips.append(delivered_at[record.msg_id] - start)
                queued.append(returned - start)
    finally:
        unsubscribe()
    return round_trips, queued


def sqlcipher_commit_times(path: Path, count: int, warmup: int = 200) -> list[float]:
    """Seconds per bare SQLCipher commit of one message-shaped row (see the docstring)."""
    conn = sqlcipher3.connect(str(path), isolation_level=None)
    try:
        conn.execute(f"PRAGMA key = \"x'{os.urandom(32).hex()}'\"")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE m (id BLOB PRIMARY KEY, conv BLOB, seq INT, at INT, body TEXT, st INT)"
        )
        for i, columns in enumerate(("conv, seq", "conv, at", "st")):
            conn.execute(f"CREATE INDEX m{i} ON m ({columns})")
        conv, text = os.urandom(16), body(BODY_SIZE)
        times: list[float] = []
        for i in range(warmup + count):
            start = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO m VALUES (?, ?, ?, ?, ?, 0)", (os.urandom(16), conv, i, i, text)
            )
            conn.execute("COMMIT")
            times.append(time.perf_counter() - start)
        return times[warmup:]
    finally:
        conn.close()


async def run(quick: bool = False, profile: bool = False) -> list[Result]:
    count = 40 if quick else 500
    raw_count = 300 if quick else 3000
    durable_count = 40 if quick else 500
    with tempfile.TemporaryDirectory(prefix="chinwag-bench-raw-") as tmp:
        async with two_peers() as pair:
            raw = await raw_ping_pong(raw_count)
            durable = await raw_ping_pong(durable_count, durable=Path(tmp) / "raw.db")
            if profile:
                async with ThreadProfiles({"A (sender)": pair.a, "B (receiver)": pair.b}) as prof:
                    service, queued = await service_latencies(pair, count)
                print(prof.report())
            else:
                service, queued = await service_latencies(pair, count)
            raw += await raw_ping_pong(raw_count)  # before and after: the machine is noisy
            commits = sqlcipher_commit_times(Path(tmp) / "floor.db", raw_count)
    raw_p50, raw_p99 = percentile(raw, 50), percentile(raw, 99)
    durable_p50 = percentile(durable, 50)
    p50, p99 = percentile(service, 50), percentile(service, 99)
    q50 = percentile(queued, 50)
    commit_p50 = percentile(commits, 50)
    return [
        Result(
            name=f"send -> delivered p50, both peers in one process ({count} msgs, one at a time)",
            result=f"{fmt_time(p50)} (send_text returns after {fmt_time(q50)})",
            baseline=f"{fmt_time(raw_p50)} (asyncio TCP ping-pong p50)",
            ratio=p50 / raw_p50,
            ratio_text=f"{p50 / raw_p50:.1f}x",
            target=f"<= {TARGET:g}x raw",
            met=p50 / raw_p50 <= TARGET,
        ),
        Result(
            name="send -> delivered p99, both peers in one process",
            result=fmt_time(p99),
            baseline=f"{fmt_time(raw_p99)} (ping-pong p99)",
            ratio=p99 / raw_p99,
            ratio_text=f"{p99 / raw_p99:.1f}x",
        ),
        Result(
            name="send -> delivered p50 vs a durable raw round trip, both peers in one process",
            result=fmt_time(p50),
            baseline=(
                f"{fmt_time(durable_p50)} (ping-pong, echo side commits each message "
                "to plain sqlite3, WAL, synchronous=FULL)"
            ),
            ratio=p50 / durable_p50,
            ratio_text=f"{p50 / durable_p50:.1f}x",
        ),
        Result(
            name="floor: two bare SQLCipher commits of one message row (in series on the path)",
            result=f"2 x {fmt_time(commit_p50)} = {fmt_time(2 * commit_p50)}",
            baseline=f"{fmt_time(raw_p50)} (asyncio TCP ping-pong p50)",
            ratio=2 * commit_p50 / raw_p50,
            ratio_text=f"{2 * commit_p50 / raw_p50:.1f}x",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the loop and both database threads"
    )
    args = parser.parse_args()
    quiet_logging()
    results = asyncio.run(run(quick=args.quick, profile=args.profile))
    print_table("Latency", results)
    first = results[0]
    print(f"target p50 {first.target}: {'met' if first.met else 'NOT met'} ({first.ratio_cell})")


if __name__ == "__main__":
    main()

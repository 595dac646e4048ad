"""1:1 throughput: messages/s from A to B, 200-byte bodies.

A message counts once it is stored on both sides and acknowledged: the sender has seen
DELIVERED for every message and its outbox is empty, and the receiver has stored every
one. The sender keeps many `send_text` calls in flight (windows of 500 via
asyncio.gather) so that both group committers batch their writes.

Raw baseline, same process and run: a plain asyncio TCP echo server for 200-byte
length-prefixed messages; the client pipelines messages in the same windows of 500 (20,000
of them, so that the timed span is long enough) and counts the echoes. Each of the rounds
measures raw first, then the service; the medians are compared. Target: at least 20% of raw.

    python -m bench.bench_throughput [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from messenger.events import MessageAdded, MessageStatesChanged, ServiceEvent
from messenger.records import MessageState

from .common import (
    BODY_SIZE,
    Pair,
    Result,
    ThreadProfiles,
    body,
    fmt_rate,
    median,
    print_table,
    quiet_logging,
    raw_echo_throughput,
    two_peers,
    wait_for,
)

TARGET = 0.20
WINDOW = 500


async def service_throughput(pair: Pair, count: int, round_no: int, window: int = WINDOW) -> float:
    """Messages/s for `count` messages A -> B, stored on both sides and acknowledged."""
    a, b = pair.a, pair.b
    delivered = 0
    received = 0
    all_delivered = asyncio.Event()

    def at_a(event: ServiceEvent) -> None:
        nonlocal delivered
        if (
            isinstance(event, MessageStatesChanged)
            and event.state is MessageState.DELIVERED
            and event.contact_id == pair.b_at_a
        ):
            delivered += len(event.msg_ids)
            if delivered >= count:
                all_delivered.set()

    def at_b(event: ServiceEvent) -> None:
        nonlocal received
        if isinstance(event, MessageAdded) and not event.message.outgoing:
            received += 1

    unsubscribe_a = a.subscribe(at_a)
    unsubscribe_b = b.subscribe(at_b)
    try:
        start = time.perf_counter()
        for first in range(0, count, window):
            await asyncio.gather(
                *(
                    a.chat.send_text(pair.b_at_a, body(BODY_SIZE, round_no * count + i))
                    for i in range(first, min(first + window, count))
                )
            )
        async with asyncio.timeout(120):
            await all_delivered.wait()

        async def outbox_empty() -> bool:
            return not await a.chat.outbox_counts()

        await wait_for(outbox_empty, within=30)
        elapsed = time.perf_counter() - start
    finally:
        unsubscribe_a()
        unsubscribe_b()
    if received != count:
        raise RuntimeError(f"B stored {received} new messages, expected {count}")
    return count / elapsed


async def run(quick: bool = False, profile: bool = False) -> list[Result]:
    count = 1000 if quick else 5000
    rounds = 1 if quick else 5
    raw_count = 20000 if not quick else 5000
    raw_rates: list[float] = []
    service_rates: list[float] = []
    async with two_peers() as pair:
        # Warm-up: code paths, SQLite pages, the connection's buffers.
        await service_throughput(pair, min(500, count), round_no=9999)
        await raw_echo_throughput(2000)
        for round_no in range(rounds):
            raw_rates.append(await raw_echo_throughput(raw_count, BODY_SIZE, WINDOW))
            if profile:
                async with ThreadProfiles({"A (sender)": pair.a, "B (receiver)": pair.b}) as prof:
                    service_rates.append(await service_throughput(pair, count, round_no))
                print(prof.report())
            else:
                service_rates.append(await service_throughput(pair, count, round_no))
    raw = median(raw_rates)
    got = median(service_rates)
    ratio = got / raw
    spread = f" (rounds: {', '.join(f'{r:,.0f}' for r in service_rates)})" if rounds > 1 else ""
    return [
        Result(
            name=(
                f"1:1 throughput, both peers in one process, {BODY_SIZE} B bodies, {count} msgs, "
                "stored both sides + acked"
            ),
            result=fmt_rate(got, "msg") + spread,
            baseline=f"{fmt_rate(raw, 'msg')} (asyncio TCP echo, pipelined)",
            ratio=ratio,
            ratio_text=f"{ratio:.1%}",
            target=f">= {TARGET:.0%} of raw",
            met=ratio >= TARGET,
        )
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
    print_table("Throughput", results)
    for r in results:
        print(f"target {r.target}: {'met' if r.met else 'NOT met'} ({r.ratio_cell})")


if __name__ == "__main__":
    main()

"""LAN group chat on loopback (docs/protocol.md §16).

1. A 20-member group, every member a separate PeerService (own SQLCipher profile, own
   database thread) in this process, fully meshed over 127.0.0.1. The admin sends one
   200-byte message at a time; each sample is timed from the `send_text` call until the
   admin has heard, by GroupAck, that all 19 others stored it ("delivered to 19 of 19").
   Raw baseline, same process and run: asyncio TCP ping-pong of one 200-byte message.
2. Catch-up: a member that was offline while another sent 10,000 messages comes back;
   timed from its restart (the profile open) until it stored all 10,000 (each signature
   checked). Raw baseline: pipelined asyncio TCP echo of 200-byte messages.

    python -m bench.bench_group [--quick]
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path

from messenger.events import GroupDeliveryChanged, ServiceEvent
from messenger.service import PeerService

from .common import (
    Result,
    befriend,
    body,
    config,
    fmt_rate,
    fmt_time,
    parse_args,
    percentile,
    print_table,
    quiet_logging,
    raw_echo_throughput,
    raw_ping_pong,
    wait_for,
)


async def _peer(root: Path, name: str, *, reopen: bool = False) -> PeerService:
    if reopen:
        return await PeerService.open(
            root / name, None, config=config(listen_port=None), rng=random.Random(1)
        )
    service, _ = await PeerService.create_profile(
        root / name, name.capitalize(), None, config=config(), rng=random.Random(1)
    )
    return service


async def fan_out_latencies(root: Path, members: int, count: int) -> list[float]:
    peers = [await _peer(root, f"m{i:02d}") for i in range(members)]
    try:
        admin = peers[0]
        for other in peers[1:]:
            await befriend(admin, other)
        record = await admin.groups.create_group("Bench", [p.contact_id for p in peers[1:]])
        group_id = bytes.fromhex(record.id)

        def meshed() -> bool:
            return all(p.is_online(q.contact_id) for p in peers for q in peers if p is not q)

        await wait_for(meshed, within=120)
        holders: dict[str, int] = {}
        progressed = asyncio.Event()

        def on_event(event: ServiceEvent) -> None:
            if isinstance(event, GroupDeliveryChanged):
                holders[event.contact_id] = max(holders.get(event.contact_id, 0), event.seq)
                progressed.set()

        admin.subscribe(on_event)
        samples: list[float] = []
        for i in range(count + 5):
            started = time.perf_counter()
            sent = await admin.groups.send_text(group_id, body(i=i))
            while sum(1 for s in holders.values() if s >= sent.seq) < members - 1:
                progressed.clear()
                await progressed.wait()
            if i >= 5:  # warm-up
                samples.append(time.perf_counter() - started)
        return samples
    finally:
        for p in reversed(peers):
            await p.aclose()


async def catch_up_seconds(root: Path, count: int) -> float:
    author, away = await _peer(root, "author"), await _peer(root, "away")
    try:
        await befriend(author, away)
        record = await author.groups.create_group("Catch-up", [away.contact_id])
        group_id = bytes.fromhex(record.id)
        await wait_for(lambda: group_id in away.groups._groups)
        await away.aclose()
        for start in range(0, count, 500):  # concurrent sends share commits
            await asyncio.gather(
                *(author.groups.send_text(group_id, body(i=i)) for i in range(start, start + 500))
            )
        started = time.perf_counter()
        away = await _peer(root, "away", reopen=True)

        async def caught_up() -> bool:
            return await away.groups.repo_count(group_id) >= count

        await wait_for(caught_up, within=600, poll=0.05)
        return time.perf_counter() - started
    finally:
        await away.aclose()
        await author.aclose()


async def run(quick: bool = False) -> list[Result]:
    members = 5 if quick else 20
    count = 20 if quick else 200
    backlog = 1000 if quick else 10_000
    with tempfile.TemporaryDirectory(prefix="chinwag-bench-group-") as tmp:
        raw = await raw_ping_pong(2000)
        fan_out = await fan_out_latencies(Path(tmp) / "fan", members, count)
        raw += await raw_ping_pong(2000)
        raw_rate = await raw_echo_throughput(backlog)
        seconds = await catch_up_seconds(Path(tmp) / "catch", backlog)
        raw_rate = max(raw_rate, await raw_echo_throughput(backlog))
    p50, p99 = percentile(fan_out, 50), percentile(fan_out, 99)
    raw50, raw99 = percentile(raw, 50), percentile(raw, 99)
    rate = backlog / seconds
    return [
        Result(
            name=f"group of {members}: send -> delivered to all p50 ({count} msgs)",
            result=fmt_time(p50),
            baseline=f"{fmt_time(raw50)} (asyncio TCP ping-pong p50)",
            ratio=p50 / raw50,
            ratio_text=f"{p50 / raw50:.1f}x",
        ),
        Result(
            name=f"group of {members}: send -> delivered to all p99",
            result=fmt_time(p99),
            baseline=f"{fmt_time(raw99)} (ping-pong p99)",
            ratio=p99 / raw99,
            ratio_text=f"{p99 / raw99:.1f}x",
        ),
        Result(
            name=f"group catch-up of {backlog:,} missed messages from one member",
            result=f"{seconds:.2f} s ({fmt_rate(rate, 'msg')}, signatures checked, stored)",
            baseline=f"{fmt_rate(raw_rate, 'msg')} (asyncio TCP echo, pipelined)",
            ratio=rate / raw_rate,
            ratio_text=f"{100 * rate / raw_rate:.1f}%",
        ),
    ]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    quiet_logging()
    print_table("Groups", asyncio.run(run(quick=args.quick)))


if __name__ == "__main__":
    main()

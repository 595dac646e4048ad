"""LAN group chat on loopback (docs/protocol.md §16).

1. A 20-member group over 127.0.0.1. The admin sends one 200-byte message at a time; each
   sample is timed from the `send_text` call until the admin has heard, by GroupAck, that
   all 19 others stored it ("delivered to 19 of 19"). Measured twice: every member a
   PeerService in this one process (one event loop and one GIL for all 20: pessimistic),
   and the 19 members as separate `chinwag-cli run` processes (as on a LAN, but all on
   this 2-core machine). Raw baseline, same run: asyncio TCP ping-pong of one 200-byte
   message.
2. Catch-up: a member that was offline while another sent 10,000 messages comes back;
   timed from its restart (the profile open) until it stored all 10,000 (each signature
   checked). Raw baseline: pipelined asyncio TCP echo of 200-byte messages.

    python -m bench.bench_group [--quick] [--fan-out [--rounds N] [--floor] [--profile DIR]]

`--fan-out` measures the separate-process fan-out row alone (raw, service, raw), `--rounds`
times, with `--members` and `--count`; `--floor` adds the encrypted fan-out floor
(bench/group_floor.py: the least a secure group message needs, in raw asyncio);
`--profile DIR` records one member and the admin with py-spy meanwhile;
CHINWAG_BENCH_WRAP="-m bench.loop_cpu FILE" writes member 1's event-loop CPU per callback
to FILE (bench/loop_cpu.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from messenger import GroupId
from messenger.cli.main import settle_heap
from messenger.events import GroupDeliveryChanged, ServiceEvent
from messenger.groups.signing import NO_SIGNATURE, sign_message, verify_messages
from messenger.groups.sync import VERIFY_THREADS
from messenger.identity import Identity
from messenger.protocol import wire
from messenger.service import PeerService

from .bench_processes import Spy
from .common import (
    _LEN,
    Result,
    _close,
    _open,
    befriend,
    body,
    child_env,
    config,
    cpu_seconds,
    fmt_rate,
    fmt_time,
    frame,
    percentile,
    print_table,
    quiet_logging,
    raw_echo_throughput,
    raw_peer_process,
    raw_ping_pong,
    wait_for,
)
from .group_floor import FloorGroup, group_store, member_keys
from .raw_peer import commit_one, raw_store


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
        group_id = record.id

        def meshed() -> bool:
            return all(
                p.contacts.is_online(q.contact_id) for p in peers for q in peers if p is not q
            )

        await wait_for(meshed, within=120)
        return await _delivered_to_all(admin, group_id, members - 1, count)
    finally:
        for p in reversed(peers):
            await p.aclose()


async def _delivered_to_all(
    admin: PeerService, group_id: GroupId, others: int, count: int, warmup: int = 5
) -> list[float]:
    holders: dict[str, int] = {}
    # The message waited for, how many members hold it, and the wake-up once all do: the
    # waiting task wakes once per message, not once per member's ack (the raw fan-out's
    # waiter wakes once per answer at ~4 us; this one's sum over the members was ~20 us).
    target, holding = 0, 0
    all_hold = asyncio.Event()

    def on_event(event: ServiceEvent) -> None:
        nonlocal holding
        if isinstance(event, GroupDeliveryChanged):
            before = holders.get(event.contact_id, 0)
            holders[event.contact_id] = max(before, event.seq)
            if before < target <= event.seq:
                holding += 1
                if holding >= others:
                    all_hold.set()

    unsubscribe = admin.subscribe(on_event)
    samples: list[float] = []
    try:
        for i in range(count + warmup):
            started = time.perf_counter()
            all_hold.clear()
            sent = await admin.groups.send_text(group_id, body(i=i))
            target = sent.seq
            holding = sum(1 for s in holders.values() if s >= target)  # acks before now
            if holding < others:
                async with asyncio.timeout(60):
                    await all_hold.wait()
            if i >= warmup:
                samples.append(time.perf_counter() - started)
    finally:
        unsubscribe()
    return samples


async def fan_out_processes(
    root: Path,
    members: int,
    count: int,
    cpu: list[float] | None = None,
    spy: Spy | None = None,
    sender_cpu: list[float] | None = None,
) -> list[float]:
    """The admin in this process, the other members as `chinwag-cli run` processes;
    `cpu` receives the CPU seconds per message of the members together, `sender_cpu`
    this process's (the admin's); `spy` records the first member and this process (the
    admin) with py-spy while the samples run."""
    admin = await _peer(root, "admin")
    procs: list[asyncio.subprocess.Process] = []
    try:
        ids = []
        for i in range(1, members):
            member = await _peer(root, f"p{i:02d}")
            await befriend(admin, member)
            ids.append(member.contact_id)
            await member.aclose()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        for i in range(1, members):
            profile = str(root / f"p{i:02d}")
            # Member 1 under a wrapper (CHINWAG_BENCH_WRAP), e.g. "-m bench.loop_cpu FILE".
            wrap = os.environ.get("CHINWAG_BENCH_WRAP", "").split() if i == 1 else []
            procs.append(
                await asyncio.create_subprocess_exec(
                    *(sys.executable, *wrap, "-m", "messenger.cli", "--profile", profile, "run"),
                    *("--listen", "127.0.0.1:0", "--no-discovery"),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                    env=env,
                )
            )
        await wait_for(lambda: all(admin.contacts.is_online(c) for c in ids), within=120)
        record = await admin.groups.create_group("Processes", ids)
        group_id = record.id
        await _delivered_to_all(admin, group_id, members - 1, 5, warmup=0)  # all have it
        # The admin runs as a user's does: `chinwag-cli run` and the window freeze their
        # heap once started, so the cyclic collector's full passes skip what start-up
        # made (here also the bench's own set-up). Without it, full collections cost the
        # admin 0.4-0.5 ms a message in some runs (docs/performance.md, ninth round).
        settle_heap()
        used = -sum(cpu_seconds(p.pid) for p in procs)
        mine = -_own_cpu()
        watched = {"member": procs[0].pid, "admin": os.getpid()}
        async with (spy or Spy(None)).recording(watched, "fan-out"):
            samples = await _delivered_to_all(admin, group_id, members - 1, count, warmup=0)
        if cpu is not None:
            cpu.append((used + sum(cpu_seconds(p.pid) for p in procs)) / count)
        if sender_cpu is not None:
            sender_cpu.append((mine + _own_cpu()) / count)
        return samples
    finally:
        await admin.aclose()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                async with asyncio.timeout(20):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _own_cpu() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    times = os.times()
    return times.user + times.system


async def _sampled(
    send: Callable[[int], Awaitable[None]],
    pids: list[int],
    count: int,
    warmup: int,
    cpu: list[float] | None,
    sender_cpu: list[float] | None,
) -> list[float]:
    """`send(i)` for `warmup` + `count` messages, one at a time: the seconds of each after
    the warm-up; `cpu` receives the CPU seconds per message of the processes `pids`
    together, `sender_cpu` this process's."""
    samples: list[float] = []
    used = mine = 0.0
    for i in range(count + warmup):
        if i == warmup:
            used = -sum(cpu_seconds(pid) for pid in pids)
            mine = -_own_cpu()
        started = time.perf_counter()
        await send(i)
        if i >= warmup:
            samples.append(time.perf_counter() - started)
    if cpu is not None:
        cpu.append((used + sum(cpu_seconds(pid) for pid in pids)) / count)
    if sender_cpu is not None:
        sender_cpu.append((mine + _own_cpu()) / count)
    return samples


async def raw_fan_out(
    base: Path,
    others: int,
    count: int,
    warmup: int = 5,
    cpu: list[float] | None = None,
    sender_cpu: list[float] | None = None,
) -> list[float]:
    """The raw fan-out baseline: `others` raw asyncio peers in their own processes, each
    committing every message as one row to SQLCipher (the service's settings) before it
    answers; this side commits the message once, writes it to all of them and waits for
    every answer. Seconds per message; `cpu` receives the CPU seconds per message of all
    the receiving processes together, `sender_cpu` this process's."""
    conv = os.urandom(16)
    root = Path(tempfile.mkdtemp(prefix="raw-fan-", dir=base))  # new files, new keys
    store = raw_store(root / "sender.db")
    async with contextlib.AsyncExitStack() as stack:
        pids: list[int] = []
        ports = [
            await stack.enter_async_context(
                raw_peer_process("durable", str(root / f"raw{i}.db"), pids=pids)
            )
            for i in range(others)
        ]
        links = [await _open(port) for port in ports]
        settle_heap()  # as the admin's (fan_out_processes): both senders alike

        async def send(i: int) -> None:
            data = body(i=i).encode()
            commit_one(store, conv, i, data)
            for _, writer in links:
                writer.write(frame(data))

            async def answer(reader: asyncio.StreamReader) -> None:
                header = await reader.readexactly(_LEN.size)
                await reader.readexactly(_LEN.unpack(header)[0])

            await asyncio.gather(*(answer(reader) for reader, _ in links))

        try:
            return await _sampled(send, pids, count, warmup, cpu, sender_cpu)
        finally:
            for _, writer in links:
                await _close(writer)
            store.close()


async def floor_fan_out(
    base: Path,
    others: int,
    count: int,
    warmup: int = 5,
    cpu: list[float] | None = None,
    sender_cpu: list[float] | None = None,
) -> list[float]:
    """The encrypted fan-out floor (bench/group_floor.py): the raw fan-out's processes
    doing the least a secure group message needs (sign once, seal per member, each member
    opens, decodes, commits and seals an ack). Seconds per message; `cpu` and
    `sender_cpu` as in `raw_fan_out`."""
    root = Path(tempfile.mkdtemp(prefix="floor-fan-", dir=base))  # new files, new keys
    group = FloorGroup(group_store(root / "sender.db"))
    async with contextlib.AsyncExitStack() as stack:
        pids: list[int] = []
        for i in range(others):
            keys = member_keys()
            db = str(root / f"floor{i}.db")
            port = await stack.enter_async_context(
                raw_peer_process("group-floor", db, keys[0].hex(), keys[1].hex(), pids=pids)
            )
            await group.connect(port, keys)
        settle_heap()  # as the other two senders

        async def send(i: int) -> None:
            await group.send(body(i=i))

        try:
            return await _sampled(send, pids, count, warmup, cpu, sender_cpu)
        finally:
            await group.aclose()
            group.store.close()


async def _start_run(profile: Path) -> asyncio.subprocess.Process:
    """`chinwag-cli run` for a profile, once it says it is online."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "messenger.cli", "--profile", str(profile), "run"),
        *("--listen", "127.0.0.1:0", "--no-discovery"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=child_env(),
    )
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        while b"is online on port" not in await proc.stdout.readline():
            if proc.returncode is not None:
                raise RuntimeError(f"chinwag-cli run for {profile} ended")
    return proc


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
    try:
        async with asyncio.timeout(20):
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def catch_up_seconds(
    root: Path, count: int, *, author_process: bool = False, cpu: dict[str, float] | None = None
) -> float:
    """Seconds from the reopen of a member that was away until it stored `count` missed
    messages (signatures checked). With `author_process` the author (who holds them) is
    a separate `chinwag-cli run` process, as it is between two people. `cpu` receives the
    CPU seconds each process spent meanwhile (the away member's includes this process's
    polling)."""
    author, away = await _peer(root, "author"), await _peer(root, "away")
    proc: asyncio.subprocess.Process | None = None
    try:
        await befriend(author, away)
        record = await author.groups.create_group("Catch-up", [away.contact_id])
        group_id = record.id
        await wait_for(lambda: away.groups.get(group_id) is not None)
        await away.aclose()
        for start in range(0, count, 500):  # concurrent sends share commits
            await asyncio.gather(
                *(author.groups.send_text(group_id, body(i=i)) for i in range(start, start + 500))
            )
        if author_process:
            await author.aclose()
            proc = await _start_run(root / "author")
        cpu_before = (os.times(), cpu_seconds(proc.pid) if proc is not None else 0.0)
        started = time.perf_counter()
        away = await _peer(root, "away", reopen=True)
        settle_heap()  # as `chinwag-cli run` and the window do once started (timed)

        async def caught_up() -> bool:
            return await away.groups.repo_count(group_id) >= count

        await wait_for(caught_up, within=600, poll=0.01)
        elapsed = time.perf_counter() - started
        if cpu is not None:
            mine = os.times()
            cpu["away"] = mine.user + mine.system - cpu_before[0].user - cpu_before[0].system
            if proc is not None:
                cpu["author"] = cpu_seconds(proc.pid) - cpu_before[1]
        return elapsed
    finally:
        await away.aclose()
        if proc is None:
            await author.aclose()
        if proc is not None:
            await _stop(proc)


def signature_floor(count: int) -> float:
    """The floor of a catch-up: checking `count` group-message signatures alone, as the
    member does (verify_messages, split over the same VERIFY_THREADS threads), nothing
    read, decoded or stored. Messages per second."""
    identity = Identity.generate()
    group_id = os.urandom(16)
    messages = [
        sign_message(
            identity,
            wire.GroupMessage(
                group_id, identity.ed25519_public, 1, i + 1, i + 1, 0, body(i=i), NO_SIGNATURE
            ),
        )
        for i in range(count)
    ]
    size = -(-count // VERIFY_THREADS)
    with ThreadPoolExecutor(VERIFY_THREADS) as pool:
        started = time.perf_counter()
        parts = list(
            pool.map(verify_messages, [messages[i : i + size] for i in range(0, count, size)])
        )
        elapsed = time.perf_counter() - started
    if not all(ok for part in parts for ok in part):
        raise RuntimeError("a signature did not check")
    return count / elapsed


FAN_OUT_TARGET = 2.0
CATCH_UP_TARGET = 10_000  # messages/s


async def run(quick: bool = False) -> list[Result]:
    members = 5 if quick else 20
    count = 20 if quick else 200
    backlog = 1000 if quick else 10_000
    with tempfile.TemporaryDirectory(prefix="chinwag-bench-group-") as tmp:
        root = Path(tmp)
        raw = await raw_ping_pong(2000)
        fan_out = await fan_out_latencies(root / "fan", members, count)
        raw_cpu: list[float] = []
        member_cpu: list[float] = []
        raw_fan = await raw_fan_out(root, members - 1, count // 2, cpu=raw_cpu)
        procs = await fan_out_processes(root / "procs", members, count, cpu=member_cpu)
        raw_fan += await raw_fan_out(root, members - 1, count // 2, cpu=raw_cpu)
        raw += await raw_ping_pong(2000)
        raw_rate = await raw_echo_throughput(backlog)
        seconds = await catch_up_seconds(root / "catch", backlog)
        cpu: dict[str, float] = {}
        apart = await catch_up_seconds(root / "catch-apart", backlog, author_process=True, cpu=cpu)
        floor = signature_floor(backlog)
        raw_rate = max(raw_rate, await raw_echo_throughput(backlog))
    p50, p99 = percentile(fan_out, 50), percentile(fan_out, 99)
    q50, q99 = percentile(procs, 50), percentile(procs, 99)
    raw50, raw99 = percentile(raw, 50), percentile(raw, 99)
    fan50 = percentile(raw_fan, 50)
    rate, rate_apart = backlog / seconds, backlog / apart
    return [
        Result(
            name=f"group of {members}, members in separate processes: delivered to all p50",
            result=(
                f"{fmt_time(q50)} (p99 {fmt_time(q99)}; {count} msgs; CPU of the "
                f"{members - 1} members per msg {fmt_time(member_cpu[0])})"
            ),
            baseline=(
                f"{fmt_time(fan50)} (raw fan-out to {members - 1} asyncio processes, each "
                "commits one row to SQLCipher before answering; the sender commits once; "
                f"their CPU per msg {fmt_time(statistics.mean(raw_cpu))})"
            ),
            ratio=q50 / fan50,
            ratio_text=f"{q50 / fan50:.2f}x",
            target=f"<= {FAN_OUT_TARGET:g}x raw fan-out",
            met=q50 / fan50 <= FAN_OUT_TARGET,
        ),
        Result(
            name=f"group catch-up of {backlog:,} missed messages, the author in its own process",
            result=(
                f"{apart:.2f} s ({fmt_rate(rate_apart, 'msg')}, signatures checked, stored; "
                f"CPU per msg: author {fmt_time(cpu['author'] / backlog)}, "
                f"member {fmt_time(cpu['away'] / backlog)})"
            ),
            baseline=f"{fmt_rate(raw_rate, 'msg')} (asyncio TCP echo, pipelined)",
            ratio=rate_apart / raw_rate,
            ratio_text=f"{100 * rate_apart / raw_rate:.1f}%",
            target=f">= {CATCH_UP_TARGET:,} msg/s",
            met=rate_apart >= CATCH_UP_TARGET,
        ),
        Result(
            name=f"floor of the catch-up: {backlog:,} signatures checked alone",
            result=(
                f"{fmt_rate(floor, 'msg')} (Ed25519, {VERIFY_THREADS} threads as the member "
                f"uses; the catch-up above is {100 * rate_apart / floor:.0f}% of it)"
            ),
            baseline=f"{fmt_rate(raw_rate, 'msg')} (asyncio TCP echo, pipelined)",
            ratio=floor / raw_rate,
            ratio_text=f"{100 * floor / raw_rate:.1f}%",
        ),
        Result(
            name=f"group catch-up of {backlog:,}, both members in one process",
            result=f"{seconds:.2f} s ({fmt_rate(rate, 'msg')}, signatures checked, stored)",
            baseline=f"{fmt_rate(raw_rate, 'msg')} (asyncio TCP echo, pipelined)",
            ratio=rate / raw_rate,
            ratio_text=f"{100 * rate / raw_rate:.1f}%",
        ),
        Result(
            name=f"group of {members}, one process: send -> delivered to all p50 ({count} msgs)",
            result=f"{fmt_time(p50)} (p99 {fmt_time(p99)})",
            baseline=f"{fmt_time(raw50)} (asyncio TCP ping-pong p50; p99 {fmt_time(raw99)})",
            ratio=p50 / raw50,
            ratio_text=f"{p50 / raw50:.1f}x",
        ),
    ]


async def fan_out_only(
    rounds: int, spy: Spy, members: int = 20, count: int = 200, *, floor: bool = False
) -> None:
    """The separate-process fan-out row alone, `rounds` times: raw, service, raw; with
    `floor`, the encrypted floor too (raw, floor, service, floor, raw)."""
    for r in range(rounds):
        with tempfile.TemporaryDirectory(prefix="chinwag-bench-fan-") as tmp:
            root = Path(tmp)
            raw_cpu: list[float] = []
            member_cpu: list[float] = []
            raw_sender: list[float] = []
            admin_cpu: list[float] = []
            floor_cpu: list[float] = []
            floor_sender: list[float] = []
            floor_fan: list[float] = []
            raw_fan = await raw_fan_out(
                root, members - 1, count // 2, cpu=raw_cpu, sender_cpu=raw_sender
            )
            if floor:
                floor_fan += await floor_fan_out(
                    root, members - 1, count // 2, cpu=floor_cpu, sender_cpu=floor_sender
                )
            procs = await fan_out_processes(
                root / "procs",
                members,
                count,
                cpu=member_cpu,
                spy=spy if r == 0 else None,
                sender_cpu=admin_cpu,
            )
            if floor:
                floor_fan += await floor_fan_out(
                    root, members - 1, count // 2, cpu=floor_cpu, sender_cpu=floor_sender
                )
            raw_fan += await raw_fan_out(
                root, members - 1, count // 2, cpu=raw_cpu, sender_cpu=raw_sender
            )
        q50, fan50 = percentile(procs, 50), percentile(raw_fan, 50)
        if floor:
            f50 = percentile(floor_fan, 50)
            print(
                f"round {r + 1} floor: encrypted fan-out p50 {fmt_time(f50)}: "
                f"{f50 / fan50:.2f}x raw, the group {q50 / f50:.2f}x the floor; CPU per msg, "
                f"floor members {fmt_time(statistics.mean(floor_cpu))}, floor sender "
                f"{fmt_time(statistics.mean(floor_sender))}",
                flush=True,
            )
        print(
            f"round {r + 1}: load {os.getloadavg()[0]:.1f}; group p50 {fmt_time(q50)} "
            f"(p99 {fmt_time(percentile(procs, 99))}), raw fan-out p50 {fmt_time(fan50)}: "
            f"{q50 / fan50:.2f}x; CPU per msg, members {fmt_time(member_cpu[0])}, "
            f"raw {fmt_time(statistics.mean(raw_cpu))}; sender: admin "
            f"{fmt_time(admin_cpu[0])}, raw {fmt_time(statistics.mean(raw_sender))}",
            flush=True,
        )
    spy.report()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--fan-out", action="store_true", help="the process fan-out row alone")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of --fan-out")
    parser.add_argument("--profile", type=Path, help="py-spy a member and the admin (--fan-out)")
    parser.add_argument("--members", type=int, default=20, help="group size (--fan-out)")
    parser.add_argument("--count", type=int, default=200, help="messages (--fan-out)")
    parser.add_argument(
        "--floor", action="store_true", help="the encrypted fan-out floor too (--fan-out)"
    )
    args = parser.parse_args()
    quiet_logging()
    if args.fan_out:
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
        asyncio.run(
            fan_out_only(args.rounds, Spy(args.profile), args.members, args.count, floor=args.floor)
        )
        return
    print_table("Groups", asyncio.run(run(quick=args.quick)))


if __name__ == "__main__":
    main()

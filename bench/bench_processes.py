"""1:1 messaging with each peer in its own process, as people run it (issue 15).

Alice is a PeerService in this process (the benchmark drives her API); Bob is a separate
`chinwag-cli run` process on 127.0.0.1. Both profiles are fresh, befriended first.

1. Throughput: Alice keeps windows of 500 `send_text` calls in flight (200-byte bodies); a
   message counts once Alice has seen DELIVERED for it (Bob stored it and said so) and her
   outbox is empty. At the end Bob's profile is opened and his unread count must equal
   what was sent. Baseline, same run: a raw asyncio echo server in its own process
   (`bench.raw_peer echo`); this process pipelines 200-byte length-prefixed messages to it
   in the same windows and counts the echoes. Target: >= 30 % of raw. Also in the same
   run, the durable throughput floor (bench.durable_floor: two raw asyncio processes doing
   the least per-message work the product must, same SQLCipher settings): the service is
   printed as a share of it too, and the floor as a share of the raw echo.
2. Send -> delivered, one message at a time, p50. Baseline, same run: the durable floor, a
   raw ping-pong whose two sides each commit one row to SQLCipher with the service's
   settings before answering (this process commits, then sends; `bench.raw_peer durable`
   commits, then echoes). Target: <= 1.5x the floor. A plain ping-pong (no commits) is
   shown for context.

Rounds alternate raw and service; medians are compared.

    python -m bench.bench_processes [--quick] [--profile DIR]

`--profile DIR` records both processes with py-spy (if installed) during the service's
measurements: DIR/alice-*.txt and DIR/bob-*.txt (collapsed stacks, all threads), and
prints the top functions by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from messenger.events import MessageStatesChanged, ServiceEvent
from messenger.records import MessageState
from messenger.service import PeerService

from .common import (
    _LEN,
    BODY_SIZE,
    Result,
    ThreadProfiles,
    _close,
    _open,
    befriend,
    body,
    child_env,
    config,
    echo_throughput,
    fmt_rate,
    fmt_time,
    frame,
    median,
    percentile,
    print_table,
    quiet_logging,
    raw_peer_process,
    wait_for,
)
from .durable_floor import FloorSender, floor_store, undelivered
from .raw_peer import commit_one, raw_store

THROUGHPUT_TARGET = 0.30
LATENCY_TARGET = 1.5
WINDOW = 500


async def raw_throughput(port: int, count: int, window: int = WINDOW) -> float:
    return await echo_throughput(port, count, window=window)


async def raw_round_trips(
    port: int,
    count: int,
    store_path: Path | None = None,
    cpu: tuple[list[int], list[float]] | None = None,
) -> list[float]:
    """One message at a time; with `store_path` this side commits a row before sending.
    `cpu` (pids, out): the CPU seconds per round trip of those processes go to out."""
    store = raw_store(store_path) if store_path is not None else None
    conv = os.urandom(16)
    reader, writer = await _open(port)
    samples: list[float] = []
    try:
        used = 0.0
        for i in range(count + 20):
            if cpu is not None and i == 20:
                used = -_cpu_of(cpu[0])
            data = body(BODY_SIZE, i).encode()
            start = time.perf_counter()
            if store is not None:
                commit_one(store, conv, i, data)
            writer.write(frame(data))
            header = await reader.readexactly(_LEN.size)
            await reader.readexactly(_LEN.unpack(header)[0])
            if i >= 20:
                samples.append(time.perf_counter() - start)
        if cpu is not None:
            cpu[1].append((used + _cpu_of(cpu[0])) / count)
    finally:
        await _close(writer)
        if store is not None:
            store.close()
    return samples


class Bob:
    """Bob's `chinwag-cli run` process."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "messenger.cli", "--profile", str(self.profile), "run"),
            *("--listen", "127.0.0.1:0", "--no-discovery"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=child_env(),
        )

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.terminate()
        try:
            async with asyncio.timeout(20):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        self.proc = None


class Spy:
    """py-spy recording a process while a measurement runs (collapsed stacks, all threads)."""

    def __init__(self, out_dir: Path | None) -> None:
        self.out_dir = out_dir
        self.exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.files: list[Path] = []
        self.available = out_dir is not None and Path(self.exe).exists()

    @contextlib.asynccontextmanager
    async def recording(self, pids: dict[str, int], label: str) -> AsyncIterator[None]:
        if self.out_dir is None or not self.available:
            yield
            return
        procs = []
        for name, pid in pids.items():
            out = self.out_dir / f"{name}-{label}.txt"
            self.files.append(out)
            procs.append(
                await asyncio.create_subprocess_exec(
                    *(self.exe, "record", "--pid", str(pid), "--format", "raw", "--threads"),
                    *("--rate", "500", "--nonblocking", "-o", str(out)),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            )
        await asyncio.sleep(0.5)  # py-spy attaches
        try:
            yield
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGINT)
            for proc in procs:
                await proc.wait()

    def report(self, top: int = 30) -> None:
        for path in self.files:
            if not path.exists():
                continue
            own: Counter[str] = Counter()
            total = 0
            for line in path.read_text().splitlines():
                stack, _, n = line.rpartition(" ")
                frames = stack.split(";")
                leaf = frames[-1] if frames else "?"
                own[leaf] += int(n)
                total += int(n)
            print(f"\n### py-spy {path.name}: {total} samples, top own time")
            for name, n in own.most_common(top):
                print(f"{100 * n / total:5.1f}%  {name}")


async def service_throughput(alice: PeerService, bob_id: str, count: int, offset: int) -> float:
    delivered = 0
    done = asyncio.Event()

    def on_event(event: ServiceEvent) -> None:
        nonlocal delivered
        if isinstance(event, MessageStatesChanged) and event.state is MessageState.DELIVERED:
            delivered += len(event.msg_ids)
            if delivered >= count:
                done.set()

    unsubscribe = alice.subscribe(on_event)
    try:
        start = time.perf_counter()
        for first in range(0, count, WINDOW):
            await asyncio.gather(
                *(
                    alice.chat.send_text(bob_id, body(BODY_SIZE, offset + i))
                    for i in range(first, min(first + WINDOW, count))
                )
            )
        async with asyncio.timeout(120):
            await done.wait()

        async def outbox_empty() -> bool:
            return not await alice.chat.outbox_counts()

        await wait_for(outbox_empty, within=30, poll=0.002)
        return count / (time.perf_counter() - start)
    finally:
        unsubscribe()


async def service_round_trips(
    alice: PeerService,
    bob_id: str,
    count: int,
    cpu: tuple[list[int], list[float]] | None = None,
) -> list[float]:
    delivered_at: dict[bytes, float] = {}
    arrived = asyncio.Event()

    def on_event(event: ServiceEvent) -> None:
        if isinstance(event, MessageStatesChanged) and event.state is MessageState.DELIVERED:
            now = time.perf_counter()
            for msg_id in event.msg_ids:
                delivered_at.setdefault(msg_id, now)
            arrived.set()

    unsubscribe = alice.subscribe(on_event)
    samples: list[float] = []
    try:
        used = 0.0
        for i in range(count + 10):
            if cpu is not None and i == 10:
                used = -_cpu_of(cpu[0])
            start = time.perf_counter()
            record = await alice.chat.send_text(bob_id, body(BODY_SIZE, i))
            async with asyncio.timeout(10):
                while record.msg_id not in delivered_at:
                    arrived.clear()
                    await arrived.wait()
            if i >= 10:
                samples.append(delivered_at[record.msg_id] - start)
        if cpu is not None:
            cpu[1].append((used + _cpu_of(cpu[0])) / count)
    finally:
        unsubscribe()
    return samples


@dataclass(slots=True)
class Samples:
    raw_rates: list[float] = field(default_factory=list)
    floor_rates: list[float] = field(default_factory=list)
    # CPU seconds per message of the floor's sender (this process) and receiver.
    floor_cpu_msg: dict[str, list[float]] = field(
        default_factory=lambda: {"sender": [], "receiver": []}
    )
    rates: list[float] = field(default_factory=list)
    plain: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    service: list[float] = field(default_factory=list)
    cpu: dict[str, list[float]] = field(default_factory=lambda: {"alice": [], "bob": []})
    # CPU seconds per round trip, both processes together, per round.
    floor_cpu: list[float] = field(default_factory=list)
    # CPU seconds per message of each process's threads by kind ("alice loop", "bob db").
    thread_cpu: dict[str, list[float]] = field(default_factory=dict)
    service_cpu: list[float] = field(default_factory=list)
    sent: int = 0


async def measure(
    alice: PeerService,
    bob_id: str,
    pids: dict[str, int],
    root: Path,
    spy: Spy,
    *,
    quick: bool,
    cprofile: bool,
) -> Samples:
    """Rounds of raw, then service measurements, alternating."""
    rounds = 1 if quick else 5
    count = 1000 if quick else 5000
    raw_count = 5000 if quick else 20000
    rtt_count = 50 if quick else 300
    got = Samples()
    # Warm-up: code paths, pages, buffers.
    await service_throughput(alice, bob_id, 500, offset=10**6)
    got.sent += 500
    keys = os.urandom(32), os.urandom(32)  # sender -> receiver, receiver -> sender
    floor_pids: list[int] = []
    floor_args = ("floor", str(root / "floor-recv.db"), keys[0].hex(), keys[1].hex())
    floor_db = floor_store(root / "floor-send.db")
    floor = FloorSender(floor_db, *keys)
    floor_sent = 0

    async def floor_round(n: int) -> float:
        nonlocal floor_sent
        bodies = [body(BODY_SIZE, floor_sent + i) for i in range(n)]
        floor_sent += n
        return await floor.throughput(bodies, WINDOW)

    async with (
        raw_peer_process("echo") as echo_port,
        raw_peer_process(*floor_args, pids=floor_pids) as floor_port,
        contextlib.aclosing(floor),
    ):
        await raw_throughput(echo_port, 2000)
        await floor.connect(floor_port)
        await floor_round(500)
        for r in range(rounds):
            got.raw_rates.append(await raw_throughput(echo_port, raw_count))
            # Nanosecond schedstat figures: /proc's clock ticks (10 ms) came out in 2 us steps
            # per message, coarser than the changes measured (issue 15, sixth round).
            before = {"sender": _cpu_of([os.getpid()]), "receiver": _cpu_of(floor_pids[:1])}
            got.floor_rates.append(await floor_round(count))
            got.floor_cpu_msg["sender"].append((_cpu_of([os.getpid()]) - before["sender"]) / count)
            got.floor_cpu_msg["receiver"].append(
                (_cpu_of(floor_pids[:1]) - before["receiver"]) / count
            )
            before = {name: _cpu_of([pid]) for name, pid in pids.items()}
            threads_before = {name: _threads_cpu(pid) for name, pid in pids.items()}
            async with spy.recording(pids, f"throughput{r}"):
                if cprofile and r == 0:
                    async with ThreadProfiles({"alice": alice}) as prof:
                        got.rates.append(await service_throughput(alice, bob_id, count, r * count))
                    print(prof.report())
                else:
                    got.rates.append(await service_throughput(alice, bob_id, count, r * count))
            for name, pid in pids.items():
                got.cpu[name].append((_cpu_of([pid]) - before[name]) / count)
                for thread, seconds in _threads_cpu(pid).items():
                    spent = seconds - threads_before[name].get(thread, 0.0)
                    got.thread_cpu.setdefault(f"{name} {thread}", []).append(spent / count)
            got.sent += count
            got.plain += await raw_round_trips(echo_port, rtt_count)
    if undelivered(floor_db):
        raise RuntimeError("the floor's sender has messages not marked delivered")
    floor_db.close()
    for r in range(rounds):
        floor_pids: list[int] = []
        async with raw_peer_process(
            "durable", str(root / f"floor-b{r}.db"), pids=floor_pids
        ) as port:
            got.floor += await raw_round_trips(
                port,
                rtt_count,
                root / f"floor-a{r}.db",
                cpu=([os.getpid(), *floor_pids], got.floor_cpu),
            )
        async with spy.recording(pids, f"latency{r}"):
            got.service += await service_round_trips(
                alice, bob_id, rtt_count, cpu=(list(pids.values()), got.service_cpu)
            )
        got.sent += rtt_count + 10
    return got


def _cpu_of(pids: list[int]) -> float:
    """CPU seconds of these processes, all threads, to the nanosecond (schedstat: the
    clock-tick figures of /proc/PID/stat are too coarse for a few hundred round trips)."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread that just ended
                total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def _threads_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process's loop (its main thread) and of its other threads (Python
    names no OS thread; in the throughput rounds they are the database thread's)."""
    kinds: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that just ended
            kind = "loop" if task.name == str(pid) else "threads"
            seconds = int((task / "schedstat").read_text().split()[0]) / 1e9
            kinds[kind] = kinds.get(kind, 0.0) + seconds
    return kinds


async def run(
    quick: bool = False, profile_dir: Path | None = None, cprofile: bool = False
) -> list[Result]:
    count = 1000 if quick else 5000
    spy = Spy(profile_dir)
    with tempfile.TemporaryDirectory(prefix="chinwag-bench-proc-") as tmp:
        root = Path(tmp)
        alice, _ = await PeerService.create_profile(
            root / "alice", "Alice", None, config=config(), rng=random.Random(1)
        )
        bob_proc = Bob(root / "bob")
        try:
            bob, _ = await PeerService.create_profile(
                root / "bob", "Bob", None, config=config(), rng=random.Random(2)
            )
            try:
                bob_id, _ = await befriend(alice, bob)
            finally:
                await bob.aclose()
            await bob_proc.start()
            await wait_for(lambda: alice.contacts.is_online(bob_id), within=60)
            assert bob_proc.proc is not None
            pids = {"alice": os.getpid(), "bob": bob_proc.proc.pid}
            got = await measure(alice, bob_id, pids, root, spy, quick=quick, cprofile=cprofile)
        finally:
            await alice.aclose()
            await bob_proc.stop()
        # Bob stored every message (his unread count for Alice).
        bob = await PeerService.open(root / "bob", None, config=config(listen_port=None))
        try:
            unread = sum(c.unread for c in await bob.chat.conversations())
        finally:
            await bob.aclose()
        if unread != got.sent:
            raise RuntimeError(f"Bob stored {unread} messages, Alice sent {got.sent}")
    spy.report()
    service = got.service
    raw_rate, rate = median(got.raw_rates), median(got.rates)
    p50, floor50 = percentile(service, 50), percentile(got.floor, 50)
    plain50 = percentile(got.plain, 50)
    rounds_text = ", ".join(f"{r:,.0f}" for r in got.rates)
    floor_rate = median(got.floor_rates)
    floor_rounds = ", ".join(f"{r:,.0f}" for r in got.floor_rates)
    floor_cpu = ", ".join(f"{name} {fmt_time(median(v))}" for name, v in got.floor_cpu_msg.items())
    cpu_text = ", ".join(f"{name} {median(v) * 1e6:.1f} µs" for name, v in got.cpu.items())
    cpu_text += (
        " ("
        + ", ".join(f"{name} {median(v) * 1e6:.1f}" for name, v in sorted(got.thread_cpu.items()))
        + ")"
    )
    return [
        Result(
            name=(
                f"1:1 throughput, two processes, {BODY_SIZE} B, {count} msgs, "
                "stored both sides + acked"
            ),
            result=f"{fmt_rate(rate, 'msg')} (rounds: {rounds_text}; CPU per msg: {cpu_text})",
            baseline=f"{fmt_rate(raw_rate, 'msg')} (asyncio TCP echo in another process)",
            ratio=rate / raw_rate,
            ratio_text=f"{rate / raw_rate:.1%}",
            target=f">= {THROUGHPUT_TARGET:.0%} of raw",
            met=rate / raw_rate >= THROUGHPUT_TARGET,
        ),
        Result(
            name="same service throughput, against the durable throughput floor",
            result=fmt_rate(rate, "msg"),
            baseline=(
                f"{fmt_rate(floor_rate, 'msg')} (durable floor: raw asyncio, two processes, "
                f"stores, encrypts, acks, marks delivered; rounds: {floor_rounds}; "
                f"CPU per msg: {floor_cpu})"
            ),
            ratio=rate / floor_rate,
            ratio_text=f"{rate / floor_rate:.1%}",
        ),
        Result(
            name="durable throughput floor, against the raw echo (what the work allows)",
            result=fmt_rate(floor_rate, "msg"),
            baseline=f"{fmt_rate(raw_rate, 'msg')} (asyncio TCP echo in another process)",
            ratio=floor_rate / raw_rate,
            ratio_text=f"{floor_rate / raw_rate:.1%}",
            target=f">= {THROUGHPUT_TARGET:.0%} of raw (the service's target)",
            met=floor_rate / raw_rate >= THROUGHPUT_TARGET,
        ),
        Result(
            name=f"1:1 send -> delivered p50, two processes ({len(service)} msgs)",
            result=f"{fmt_time(p50)} (p99 {fmt_time(percentile(service, 99))})",
            baseline=(
                f"{fmt_time(floor50)} (durable floor: raw ping-pong, each side commits "
                "one row to SQLCipher before answering)"
            ),
            ratio=p50 / floor50,
            ratio_text=f"{p50 / floor50:.2f}x",
            target=f"<= {LATENCY_TARGET:g}x floor",
            met=p50 / floor50 <= LATENCY_TARGET,
        ),
        Result(
            name="CPU per round trip, both processes together (same latency rounds)",
            result=f"{fmt_time(median(got.service_cpu))} (service)",
            baseline=f"{fmt_time(median(got.floor_cpu))} (durable floor)",
            ratio=median(got.service_cpu) / median(got.floor_cpu),
            ratio_text=f"{median(got.service_cpu) / median(got.floor_cpu):.2f}x",
        ),
        Result(
            name="same, against a plain raw ping-pong (no commits), two processes",
            result=fmt_time(p50),
            baseline=f"{fmt_time(plain50)} (asyncio TCP ping-pong p50)",
            ratio=p50 / plain50,
            ratio_text=f"{p50 / plain50:.1f}x",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--profile", type=Path, help="py-spy both processes into this folder")
    parser.add_argument("--cprofile", action="store_true", help="cProfile Alice's threads")
    args = parser.parse_args()
    quiet_logging()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    results = asyncio.run(run(quick=args.quick, profile_dir=args.profile, cprofile=args.cprofile))
    print_table("1:1, each peer its own process", results)


if __name__ == "__main__":
    main()

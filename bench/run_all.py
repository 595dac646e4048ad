"""Run every benchmark and print one Markdown table for README's performance table.

    python -m bench.run_all [--quick]        (``make bench`` runs this)

Each row compares with a raw baseline measured in the same run on the same machine.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

from . import (
    bench_group,
    bench_handshake,
    bench_latency,
    bench_processes,
    bench_throughput,
)
from .common import Result, machine_line, markdown_table, parse_args, quiet_logging

# What people run first (each peer its own process, a group of separate processes), then
# the single-process variants kept for comparison with earlier rounds.
BENCHMARKS: list[tuple[str, Callable[[bool], Awaitable[list[Result]]]]] = [
    ("1:1, two processes", bench_processes.run),
    ("group, separate processes", bench_group.run),
    ("throughput, one process", bench_throughput.run),
    ("latency, one process", bench_latency.run),
    ("handshake + unlock", bench_handshake.run),
]


async def run_all(quick: bool) -> list[Result]:
    results: list[Result] = []
    for name, run in BENCHMARKS:
        started = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results += await run(quick)
        print(f"  {name} took {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return results


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    quiet_logging()
    started = time.perf_counter()
    results = asyncio.run(run_all(args.quick))
    command = "python -m bench.run_all" + (" --quick" if args.quick else "")
    print()
    print(markdown_table(results))
    print()
    print(
        f"_`{command}` ({machine_line()}), {time.perf_counter() - started:.0f} s; "
        "raw baselines measured in the same run._"
    )
    missed = [r.name for r in results if r.met is False]
    print()
    print("targets met: " + ("all" if not missed else f"no ({len(missed)} missed)"))


if __name__ == "__main__":
    main()

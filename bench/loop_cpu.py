"""CPU time of a process's event loop, per callback: which task or callback spends it.

    python -m bench.loop_cpu OUT -m MODULE [ARGS...]

Runs MODULE as `python -m` would and, at exit, writes to OUT the thread CPU time
(`time.thread_time_ns`, so time spent waiting for a core is not counted, unlike py-spy's
or cProfile's wall-clock samples on a loaded machine) spent in each event-loop callback,
grouped by task coroutine or callback name, with calls and time per call. For one member
of the fan-out benchmark:

    CHINWAG_BENCH_WRAP="-m bench.loop_cpu /tmp/member.txt" \\
        python -m bench.bench_group --fan-out --members 2 --count 3000

With CHINWAG_LOOP_PROFILE set, the loop thread also runs under cProfile with the same
thread CPU clock, and OUT.prof receives its stats (functions, not callbacks; cProfile's
own overhead inflates the small ones, so compare shares, not absolute times).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import cProfile
import gc
import os
import runpy
import sys
import time
from typing import Any

_spent: collections.Counter[str] = collections.Counter()
_calls: collections.Counter[str] = collections.Counter()
# The cyclic collector's passes, per generation (in whichever thread ran them).
_gc_spent: collections.Counter[int] = collections.Counter()
_gc_runs: collections.Counter[int] = collections.Counter()
_gc_started = [0]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started[0] = time.thread_time_ns()
        return
    generation = int(info["generation"])
    _gc_spent[generation] += time.thread_time_ns() - _gc_started[0]
    _gc_runs[generation] += 1


def _name(handle: asyncio.Handle) -> str:
    callback: Any = handle._callback  # type: ignore[attr-defined]
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        name = getattr(coro, "__qualname__", None)
        return "task " + (name if name is not None else repr(coro))
    name = getattr(callback, "__qualname__", None)  # repr() only if there is none: a
    return name if name is not None else repr(callback)  # transport's costs ~10 us


def _install() -> None:
    original = asyncio.Handle._run

    def timed(self: asyncio.Handle) -> None:
        started = time.thread_time_ns()
        try:
            original(self)
        finally:
            spent = time.thread_time_ns() - started  # not counting the naming below
            name = _name(self)
            _spent[name] += spent
            _calls[name] += 1

    asyncio.Handle._run = timed  # type: ignore[method-assign]
    gc.callbacks.append(_on_gc)


def _report(path: str) -> None:
    total = sum(_spent.values())
    lines = [f"total {total / 1e6:.1f} ms of loop-thread CPU"]
    lines += [
        f"  gc generation {g}: {_gc_runs[g]} passes, {_gc_spent[g] / 1e6:.1f} ms"
        for g in sorted(_gc_runs)
    ]
    for name, ns in _spent.most_common(40):
        per_call = ns / max(_calls[name], 1) / 1e3
        lines.append(f"{ns / 1e6:9.1f} ms {_calls[name]:8d} calls {per_call:8.1f} us/call  {name}")
    with open(path, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "-m":
        raise SystemExit(__doc__)
    path, module = sys.argv[1], sys.argv[3]
    sys.argv = [module, *sys.argv[4:]]
    _install()
    atexit.register(_report, path)
    if os.environ.get("CHINWAG_LOOP_PROFILE"):
        # The thread's CPU clock: a wait for a core is not counted against a function.
        profiler = cProfile.Profile(time.thread_time_ns, 1e-9)
        atexit.register(profiler.dump_stats, path + ".prof")
        profiler.enable()
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

"""Start-up where a person waits for it (issue 15): one-shot CLI commands and the window, on
a profile of 1,000,000 messages in 200 conversations.

1. `chinwag-cli whoami` and `chinwag-cli contacts` (no passphrase, no running peer): the
   median wall time of N runs of the installed console script, interleaved with the raw
   baseline `python -c 'import sqlcipher3'` (the least any Python reading the database
   pays). Target: <= 3x the baseline. `--importtime` also prints the modules the command
   imports, heaviest first (`python -X importtime`).
2. The window (`python -m ui.app`, offscreen Qt, a key-file profile so no KDF): start ->
   window shown (first paint), and start -> conversation list filled, median of N; raw
   baseline a bare QApplication + QWidget shown, same measure, interleaved. Targets:
   shown < 0.35 s and <= 3x the bare window; listed < 0.5 s. Both come from a raw read
   (messenger.read_startup) before the service is imported; start -> service up (opened
   behind the window, the list then live) is printed too, with no target.

    python -m bench.bench_startup [--quick] [--keep DIR] [--messages N] [--importtime]

The profile is built with bench_storage's bulk builder (into --keep DIR once, reused).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import Result, fmt_time, print_table, quiet_logging

os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"

CLI_TARGET = 3.0
SHOWN_TARGET, SHOWN_RATIO, LISTED_TARGET = 0.35, 3.0, 0.5


def _wall(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def cli_startup(profile: Path, rounds: int) -> list[Result]:
    env = {**os.environ}
    env.pop("CHINWAG_PASSPHRASE", None)
    cli = str(Path(sys.executable).with_name("chinwag-cli"))
    base_argv = [sys.executable, "-c", "import sqlcipher3"]
    commands = ("whoami", "contacts")
    samples: dict[str, list[float]] = {"base": [], **{c: [] for c in commands}}
    for i in range(rounds + 1):  # the first round warms the page cache
        got = {"base": _wall(base_argv, env)}
        got |= {c: _wall([cli, "--profile", str(profile), c], env) for c in commands}
        if i:
            for key, value in got.items():
                samples[key].append(value)
    base = statistics.median(samples["base"])
    results = []
    for command in commands:
        t = statistics.median(samples[command])
        results.append(
            Result(
                f"`chinwag-cli {command}`, 1M-message profile, no passphrase ({rounds} runs)",
                fmt_time(t),
                f"{fmt_time(base)} (python -c 'import sqlcipher3')",
                t / base,
                f"{t / base:.1f}x",
                f"<= {CLI_TARGET:g}x",
                t / base <= CLI_TARGET,
            )
        )
    return results


def import_times(profile: Path, top: int = 15) -> str:
    """The modules `chinwag-cli whoami` imports, by cumulative import time."""
    cli = Path(sys.executable).with_name("chinwag-cli")
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(cli), "--profile", str(profile), "whoami"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, cumulative, name = line.split(":", 1)[1].split("|")
        rows.append((int(cumulative), int(own), name.strip()))
    rows.sort(reverse=True)
    lines = [f"{c / 1000:8.1f} ms cumulative {o / 1000:6.1f} ms own  {n}" for c, o, n in rows[:top]]
    return "\n".join(lines)


def window_startup(profile: Path, rounds: int) -> list[Result]:
    from .bench_ui import BARE, timed_start

    env = {
        **os.environ,
        "CHINWAG_PROFILE": str(profile),
        "CHINWAG_EXIT_AFTER_SHOWN": "1",
        "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
    }
    env.pop("CHINWAG_PASSPHRASE", None)
    app = [sys.executable, "-m", "ui.app", "--listen", "127.0.0.1:0"]
    bare = [sys.executable, "-c", BARE]
    markers = ("chinwag: window shown", "chinwag: conversations listed", "chinwag: service up")
    shown, listed, up, bare_shown = [], [], [], []
    for _ in range(rounds):
        a, b, c = timed_start(app, env, markers)
        shown.append(a)
        listed.append(b)
        up.append(c)
        bare_shown.append(timed_start(bare, env, ("bare: window shown",))[0])
    s, full, live, raw = (statistics.median(v) for v in (shown, listed, up, bare_shown))
    return [
        Result(
            f"start -> window shown, 1M-message profile, no unlock cost ({rounds} runs)",
            fmt_time(s),
            f"{fmt_time(raw)} (bare QApplication + QWidget shown)",
            s / raw,
            f"{s / raw:.1f}x",
            f"< {SHOWN_TARGET:g} s and <= {SHOWN_RATIO:g}x",
            s < SHOWN_TARGET and s / raw <= SHOWN_RATIO,
        ),
        Result(
            "start -> conversation list filled (same runs)",
            fmt_time(full),
            f"{fmt_time(raw)} (bare window)",
            full / raw,
            f"{full / raw:.1f}x",
            f"< {LISTED_TARGET:g} s",
            full < LISTED_TARGET,
        ),
        Result(
            "start -> service up behind the window (list live, sending on; same runs)",
            fmt_time(live),
            f"{fmt_time(raw)} (bare window)",
            live / raw,
            f"{live / raw:.1f}x",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    parser.add_argument("--keep", type=Path, help="build the profile here once and reuse it")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--importtime", action="store_true", help="what whoami imports")
    parser.add_argument("--no-window", action="store_true", help="the CLI rows only")
    args = parser.parse_args()
    quiet_logging()
    from messenger.profile import ProfileDir

    from .bench_storage import build_profile

    with tempfile.TemporaryDirectory(prefix="chinwag-bench-") as tmp:
        path = args.keep or Path(tmp) / "big"
        if not ProfileDir(path).exists():
            started = time.perf_counter()
            print(f"building a {args.messages:,}-message profile in {path} ...", file=sys.stderr)
            build_profile(path, args.messages)
            print(f"  built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        rounds = 3 if args.quick else 15
        results = cli_startup(path, rounds)
        if not args.no_window:
            results += window_startup(path, 3 if args.quick else 7)
        if args.importtime:
            print(import_times(path))
    print_table("Start-up", results)


if __name__ == "__main__":
    main()

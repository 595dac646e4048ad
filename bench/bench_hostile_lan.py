"""A hostile host on the LAN, timed (root: network namespaces, as tests/lan).

Alice and Bob, contacts, each `chinwag-cli run` on its own host of tests/lan/netns.py's
bridge; Mallory on a third (tests/lan/hostile.py). Two figures that
tests/lan/test_hostile_lan.py checks only as events:

  control latency  Bob's control socket asked for `lan` again and again (LoopProbe):
                   first with nobody attacking (the baseline, same peers, same run), then
                   while Mallory floods (flood 1000, ptr-only 500, garbage 400, flood 1000,
                   with `conflict` re-announcing every instance it hears). A stalled event
                   loop shows up as slow answers. Ratio: under attack / quiet.
  replay dials     Alice stops; Mallory keeps replaying her token under fresh instance
                   names (a round every 0.2 s), pointing at a sink that closes every
                   connection. Bob's dials to the sink are counted. Baseline: the replay
                   rounds Mallory sent in the same run. Ratio: dials per round.

    sudo python -m bench.bench_hostile_lan [--quiet-seconds 5] [--replay-seconds 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SINK_IP, SINK_PORT = "10.77.0.99", 4444


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    return (
        f"p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  max {ordered[-1] * 1000:6.1f} ms  n={len(ordered)}"
    )


def _hostile(host: Any, *args: str) -> subprocess.Popen[str]:
    return host.popen(  # type: ignore[no-any-return]
        sys.executable, "-m", "tests.lan.hostile", host.ip, *args, cwd=str(ROOT),
        stdout=subprocess.PIPE,
    )  # fmt: skip


def control_latency(lan: Any, root: Path, quiet_seconds: float) -> dict[str, Any]:
    from tests.lan.netns import make_profiles
    from tests.lan.probe import LoopProbe, mallory

    profiles = make_profiles(root / "flood", ["alice", "bob"], [("alice", "bob")])
    hosts = {name: lan.add_host(f"f{name}") for name in ("alice", "bob", "mallory")}
    runners = {name: hosts[name].run(profiles[name]) for name in profiles}
    runners["bob"].wait_line("* Alice is online", timeout=30)
    for profile in profiles.values():
        subprocess.run(
            [sys.executable, "-m", "messenger.cli", "--profile", str(profile), "set", "visible",
             "true"], check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    probe = LoopProbe(profiles["bob"])
    time.sleep(quiet_seconds)  # a benchmark: the quiet phase is a measured time
    quiet = list(probe.latencies)
    conflict = _hostile(hosts["mallory"], "conflict", "60")
    started = time.monotonic()
    for args in (("flood", "1000"), ("ptr-only", "500"), ("garbage", "400"), ("flood", "1000")):
        mallory(hosts["mallory"], *args)
    attack_seconds = time.monotonic() - started
    attacked = probe.latencies[len(quiet) :]
    probe.stop()
    conflict.kill()
    conflict.wait()
    for runner in runners.values():
        runner.stop()
    if probe.error is not None:
        raise RuntimeError(f"the control socket stopped answering: {probe.error}")
    return {"quiet": quiet, "attacked": attacked, "attack_seconds": attack_seconds}


def _timed_lines(proc: subprocess.Popen[str]) -> list[tuple[float, str]]:
    """Every line the process prints, with the monotonic time it arrived (a thread)."""
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.monotonic(), line.strip()))

    threading.Thread(target=read, daemon=True).start()
    return lines


def replay_dials(lan: Any, root: Path, replay_seconds: float) -> dict[str, Any]:
    from tests.lan.netns import make_profiles

    profiles = make_profiles(root / "replay", ["alice", "bob"], [("alice", "bob")])
    hosts = {name: lan.add_host(f"r{name}") for name in ("alice", "bob", "mallory")}
    host = hosts["mallory"]
    host.add_address(f"{SINK_IP}/24")
    sink = _hostile(host, "sink", "600", str(SINK_PORT))
    assert sink.stdout is not None and sink.stdout.readline().strip() == "listening"
    dials = _timed_lines(sink)
    replay = _hostile(host, "replay", "600", SINK_IP, str(SINK_PORT))  # hears Alice start
    rounds = _timed_lines(replay)
    runners = {name: hosts[name].run(profiles[name]) for name in profiles}
    runners["bob"].wait_line("* Alice is online", timeout=30)
    stopped = time.monotonic()
    runners["alice"].stop()
    offline_at = runners["bob"].wait_line("* Alice is offline", after=stopped, timeout=30)
    time.sleep(replay_seconds)  # a benchmark: the replay window is a measured time
    end = time.monotonic()
    for proc in (replay, sink):
        proc.kill()
        proc.wait()
    runners["bob"].stop()

    def between(lines: list[tuple[float, str]], prefix: str) -> int:
        return sum(1 for at, line in lines if offline_at <= at <= end and line.startswith(prefix))

    return {
        "attempts": between(dials, "connection "),
        "rounds": between(rounds, "round "),
        "window": end - offline_at,
        "came_back": [line for _, line in runners["bob"].lines if "Alice is online" in line][1:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quiet-seconds", type=float, default=5.0)
    parser.add_argument("--replay-seconds", type=float, default=15.0)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.lan.netns import Lan, namespaces_unavailable

    reason = namespaces_unavailable()
    if reason is not None:
        print(f"skipped: {reason}")
        return
    with tempfile.TemporaryDirectory(prefix="chinwag-bench-hostile-lan-") as tmp:
        root = Path(tmp)
        lan = Lan(root)
        try:
            latency = control_latency(lan, root, args.quiet_seconds)
            dials = replay_dials(lan, root, args.replay_seconds)
        except BaseException:
            lan.dump()
            raise
        finally:
            lan.cleanup()
    quiet, attacked = latency["quiet"], latency["attacked"]
    print("hostile LAN, network namespaces on one bridge")
    print(f"  control socket `lan`, quiet:          {_ms(quiet)}")
    print(
        f"  during the attack ({latency['attack_seconds']:.1f} s): {_ms(attacked)}"
        f"  x{statistics.median(attacked) / statistics.median(quiet):.1f} p50, "
        f"x{max(attacked) / max(quiet):.1f} max vs quiet"
    )
    window = dials["window"]
    print(
        f"  replayed token, {window:.1f} s after Alice left: {dials['attempts']} dials "
        f"({dials['attempts'] / window:.2f}/s) against {dials['rounds']} replay rounds "
        f"({dials['rounds'] / window:.2f}/s): {dials['attempts'] / max(1, dials['rounds']):.2f} "
        f"dials per round; Alice back online at Bob: {len(dials['came_back'])} times"
    )


if __name__ == "__main__":
    main()

"""Three sources against one for the same file, on a bridge of network namespaces (root).

Four `chinwag-cli run` peers, each on its own host of tests/lan/netns.py's bridge:
admin, bea, cai and dov, in one group. admin posts a file to the group, then:

  one source     bea downloads it while only admin holds it;
  (cai downloads it from admin and bea; not timed)
  three sources  dov downloads it while admin, bea and cai hold it.

Each download is timed from the `file accept` sent to its peer's control socket until
that peer prints that the file was received (every chunk verified and on disk). The
scenario runs twice with a new file each time: on the bare bridge (veth links, no limit:
the hosts share this machine's cores, so the receiver's CPU is the limit) and with each
holder's uplink shaped to RATE by `tc tbf` (the receiver's link is not shaped), as on a
LAN where a single peer's uplink is the limit. Raw baseline, same run and links: a
Python socket copy of the same bytes from admin's host to dov's, written to disk.

    python -m bench.bench_files_lan [--size-mib 256] [--rate-mbit 400]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from messenger.cli import control

from .bench_files import make_file

MiB = 1 << 20
ROOT = Path(__file__).resolve().parents[1]
NAMES = ["admin", "bea", "cai", "dov"]
HOLDERS = ["admin", "bea", "cai"]

RAW_RECEIVER = """
import os, socket, sys
server = socket.create_server((sys.argv[1], 0))
print(server.getsockname()[1], flush=True)
conn, _ = server.accept()
buf = bytearray(1 << 20)
view = memoryview(buf)
with conn, open(sys.argv[2], "wb") as out:
    while n := conn.recv_into(view):
        out.write(view[:n])
    out.flush()
    os.fsync(out.fileno())
print("done", flush=True)
"""

RAW_SENDER = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2]))) as s, open(sys.argv[3], "rb") as f:
    while block := f.read(1 << 20):
        s.sendall(block)
"""


def call(profile: Path, command: str, args: dict[str, Any]) -> Any:
    return asyncio.run(control.call(profile / "control.sock", command, args))


def show(profile: Path, transfer_id: str) -> dict[str, Any]:
    result = call(profile, "file", {"action": "show", "id": transfer_id})
    assert isinstance(result, dict)
    return result


def wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def timed_download(lan: Any, runners: dict[str, Any], name: str, tid: str) -> dict[str, Any]:
    """Accept `tid` at `name`; seconds until its peer prints that it has the file."""
    profile = runners[name].profile
    started = time.monotonic()
    call(profile, "file", {"action": "accept", "id": tid})
    done = runners[name].wait_line("* received", timeout=600, after=started)
    record = show(profile, tid)
    assert record["state"] == "complete", record
    return {"seconds": done - started, "by_source": record["chunks_by_source"]}


def raw_copy(lan: Any, path: Path, dest: Path) -> float:
    sender, receiver = lan.hosts["admin"], lan.hosts["dov"]
    server = receiver.popen(
        sys.executable, "-c", RAW_RECEIVER, receiver.ip, str(dest), stdout=subprocess.PIPE
    )
    assert server.stdout is not None
    port = server.stdout.readline().strip()
    started = time.monotonic()
    client = sender.popen(sys.executable, "-c", RAW_SENDER, receiver.ip, port, str(path))
    assert server.stdout.readline().strip() == "done"
    elapsed = time.monotonic() - started
    client.wait(timeout=30)
    server.wait(timeout=30)
    dest.unlink()
    return elapsed


def scenario(lan: Any, runners: dict[str, Any], root: Path, size: int, label: str) -> dict:
    path = root / f"{label}.bin"
    make_file(path, size)
    raw = raw_copy(lan, path, root / f"{label}.raw")
    profiles = {name: runner.profile for name, runner in runners.items()}
    posted = call(profiles["admin"], "group", {"action": "file", "group": "Lab",
                                                "names": [str(path)]})  # fmt: skip
    tid = posted["id"]
    for name in NAMES[1:]:
        wait(lambda n=name: _offered(profiles[n], tid), 60, f"{name} sees the offer")
    one = timed_download(lan, runners, "bea", tid)
    timed_download(lan, runners, "cai", tid)
    wait(lambda: len(show(profiles["dov"], tid)["sources"]) == 3, 60, "dov sees 3 sources")
    three = timed_download(lan, runners, "dov", tid)
    assert len(three["by_source"]) == 3, three
    return {"raw": raw, "one": one, "three": three}


def _offered(profile: Path, tid: str) -> bool:
    try:
        return bool(show(profile, tid))
    except control.ControlError:
        return False


def shape(lan: Any, rate_mbit: int) -> None:
    for name in HOLDERS:
        result = lan.hosts[name].exec(
            "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", f"{rate_mbit}mbit",
            "burst", "256kb", "latency", "50ms",
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"tc on {name}: {result.stderr.strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rate-mbit", type=int, default=400)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.lan.netns import Lan, make_profiles, namespaces_unavailable

    reason = namespaces_unavailable()
    if reason is not None:
        print(f"skipped: {reason}")
        return
    size = args.size_mib * MiB
    with tempfile.TemporaryDirectory(prefix="chinwag-bench-files-lan-") as tmp:
        root = Path(tmp)
        lan = Lan(root)
        try:
            profiles = make_profiles(root, NAMES, [("admin", n) for n in NAMES[1:]])
            runners = {name: lan.add_host(name).run(profiles[name]) for name in NAMES}
            for name in NAMES[1:]:
                runners["admin"].wait_line(f"* {name.capitalize()} is online", timeout=30)
            call(profiles["admin"], "group", {"action": "create", "group": "Lab",
                                              "names": NAMES[1:]})  # fmt: skip
            for name in NAMES:
                wait(lambda n=name: _mesh_online(profiles[n]), 60, f"{name} sees the group")
            results = {"bare bridge": scenario(lan, runners, root, size, "bare")}
            shape(lan, args.rate_mbit)
            results[f"holders' uplinks {args.rate_mbit} Mbit/s"] = scenario(
                lan, runners, root, size, "shaped"
            )
        except BaseException:
            lan.dump()
            raise
        finally:
            lan.cleanup()
    print(f"file transfer, {args.size_mib} MiB, network namespaces on one bridge (1 MiB chunks)")
    for label, r in results.items():
        rate = {k: args.size_mib / r[k]["seconds"] for k in ("one", "three")}
        raw_rate = args.size_mib / r["raw"]
        print(f"  {label}:")
        print(f"    raw socket copy admin -> dov  {raw_rate:8.1f} MiB/s")
        print(f"    one source (admin -> bea)     {rate['one']:8.1f} MiB/s  "
              f"({rate['one'] / raw_rate:.0%} of raw)")  # fmt: skip
        print(f"    three sources (-> dov)        {rate['three']:8.1f} MiB/s  "
              f"x{rate['three'] / rate['one']:.2f} one source; chunks by source "
              f"{sorted(r['three']['by_source'].values())}")  # fmt: skip


def _mesh_online(profile: Path) -> bool:
    groups = call(profile, "group", {"action": "list"})
    members = groups[0]["members"] if groups else []
    return len(members) == len(NAMES) and all(m["online"] or m["me"] for m in members)


if __name__ == "__main__":
    main()

"""LAN discovery on a bridge of network namespaces (needs root, like tests/lan).

1. Start to online: a contact's `chinwag-cli run` process is started on one host; we time
   from its start (just before the process is spawned) until the peer already running on
   another host prints that the contact is online. Nothing is configured and before every
   run both forget every stored address, so they can only find each other over mDNS
   (then they run IKpsk2).
   Raw baseline, same bridge and run: a bare python-zeroconf process that registers one
   service (AsyncZeroconf + AsyncServiceInfo, no probing, as Chinwag) started the same
   way, timed until a bare AsyncServiceBrowser on the other host reports it.
   Target: median under 1 s.
2. Idle cost of a peer with 50 contacts (none of them around): CPU seconds per hour of the
   `run` process (/proc/PID/stat) and the mDNS datagrams per minute it sends (counted by
   a listener on a third host), over a quiet window after a warm-up. Raw baseline: the
   bare register + browse process, measured the same way.

    python -m bench.bench_discovery [--quick]
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import Result, fmt_time, parse_args, percentile, print_table, quiet_logging

ROOT = Path(__file__).resolve().parents[1]

RAW_REGISTER = """
import asyncio, os, sys
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf
async def main():
    ip = sys.argv[1]
    zc = AsyncZeroconf(interfaces=[ip], ip_version=IPVersion.V4Only)
    name = os.urandom(8).hex() + "._rawbench._tcp.local."
    info = AsyncServiceInfo("_rawbench._tcp.local.", name, port=4000, server=os.urandom(8).hex()
        + ".local.", parsed_addresses=[ip], properties={b"v": b"1", b"t": os.urandom(16).hex()})
    await zc.async_register_service(info, cooperating_responders=True)
    print("registered", flush=True)
    if len(sys.argv) > 2:  # also browse, as a peer would (idle-cost baseline)
        from zeroconf.asyncio import AsyncServiceBrowser
        AsyncServiceBrowser(zc.zeroconf, "_rawbench._tcp.local.", handlers=[lambda **kw: None])
    await asyncio.Event().wait()
asyncio.run(main())
"""

RAW_BROWSER = """
import asyncio, sys
from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf
async def main():
    zc = AsyncZeroconf(interfaces=[sys.argv[1]], ip_version=IPVersion.V4Only)
    def seen(zeroconf, service_type, name, state_change):
        if state_change is ServiceStateChange.Added:
            info = AsyncServiceInfo(service_type, name)
            info.load_from_cache(zeroconf)  # what a peer does before it can dial
            print("added", name, flush=True)
    AsyncServiceBrowser(zc.zeroconf, "_rawbench._tcp.local.", handlers=[seen])
    print("browsing", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _profile_with_contacts(root: Path, count: int) -> Path:
    """A profile with `count` contacts (random identities, no addresses)."""
    from messenger.identity import Identity, contact_id, conversation_id, derive_contact_secrets
    from messenger.service import PeerService, ServiceConfig
    from messenger.storage.repository import NewContact

    async def build() -> Path:
        path = root / "idle"
        service, _ = await PeerService.create_profile(
            path, "Idle", None, config=ServiceConfig(network=False), rng=random.Random(1)
        )
        async with service:
            for i in range(count):
                other = Identity.generate()
                secrets = derive_contact_secrets(os.urandom(64))
                new = NewContact(
                    id=contact_id(other.ed25519_public),
                    display_name=f"Contact {i}",
                    ed25519_public=other.ed25519_public,
                    x25519_public=other.static_public,
                    static_certificate=other.static_certificate,
                    psk=secrets.psk,
                    discovery_key=os.urandom(32),
                    conversation_id=conversation_id(
                        service.identity.ed25519_public, other.ed25519_public
                    ),
                    verified=False,
                    addresses=(),
                )
                await service.db.run(service.repo.add_contact, new, time.time())
        return path

    return asyncio.run(build())


def _count_from(capture: Path, ip: str, start: float, end: float) -> int:
    count = 0
    for line in capture.read_text().splitlines():
        item = json.loads(line)
        if item["src"] == ip and start <= item["t"] <= end:
            count += 1
    return count


def _forget_addresses(profile: Path) -> None:
    """Erase every stored contact address: the next start must rely on discovery alone."""
    from messenger.service import PeerService, ServiceConfig

    async def forget() -> None:
        service = await PeerService.open(profile, None, config=ServiceConfig(network=False))
        async with service:
            for contact in await service.contacts.all():
                await service.db.run(service.repo.set_addresses, contact.id, [])

    asyncio.run(forget())


def start_to_online(root: Path, runs: int) -> tuple[list[float], list[float], list[float]]:
    """Returns (chinwag start-to-online, chinwag start-to-own-'online' line, raw) in s.

    Before every run both profiles forget all stored addresses and the watching peer is
    restarted too, so the two can only meet through mDNS."""
    from tests.lan.netns import Lan, make_profiles

    lan = Lan(root)
    try:
        profiles = make_profiles(root, ["alice", "bob"], [("alice", "bob")])
        alice, bob = lan.add_host("alice"), lan.add_host("bob")
        chinwag: list[float] = []
        own: list[float] = []
        for _ in range(runs + 1):  # the first run warms the file cache; not counted
            for name in profiles:
                _forget_addresses(profiles[name])
            watcher = alice.run(profiles["alice"])
            time.sleep(0.3)  # let it settle: announced, first browse queries sent
            started = time.monotonic()
            runner = bob.start(profiles["bob"])
            seen = watcher.wait_line("* Bob is online", timeout=30, after=started)
            ready = runner.wait_line("is online", timeout=30)
            chinwag.append(seen - started)
            own.append(ready - started)
            runner.stop()
            watcher.stop()
        raw: list[float] = []
        browser = alice.popen(
            sys.executable, "-c", RAW_BROWSER, alice.ip, stdout=subprocess.PIPE, cwd=str(ROOT)
        )
        assert browser.stdout is not None and browser.stdout.readline().startswith("browsing")
        for _ in range(runs + 1):
            started = time.monotonic()
            proc = bob.popen(sys.executable, "-c", RAW_REGISTER, bob.ip, stdout=subprocess.PIPE)
            line = browser.stdout.readline()
            raw.append(time.monotonic() - started)
            assert line.startswith("added"), line
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
            time.sleep(0.5)
        return chinwag[1:], own[1:], raw[1:]
    finally:
        lan.cleanup()


def idle_cost(root: Path, seconds: float, contacts: int) -> dict[str, tuple[float, float]]:
    """{"chinwag" | "raw": (CPU seconds per hour, mDNS datagrams per minute)}."""
    from tests.lan.netns import Lan

    profile = _profile_with_contacts(root, contacts)
    lan = Lan(root)
    results: dict[str, tuple[float, float]] = {}
    try:
        peer, observer = lan.add_host("peer"), lan.add_host("observer")
        warmup = 15.0
        for kind in ("chinwag", "raw"):
            capture_file = root / f"capture-{kind}.jsonl"
            capture = observer.popen(
                sys.executable,
                "-m",
                "tests.lan.capture",
                str(capture_file),
                str(warmup + seconds + 5),
                cwd=str(ROOT),
                stdout=subprocess.PIPE,
            )
            assert capture.stdout is not None and "capturing" in capture.stdout.readline()
            t0 = time.monotonic()
            if kind == "chinwag":
                runner = peer.run(profile)
                pid, stop = runner.proc.pid, runner.stop
            else:
                proc = peer.popen(
                    sys.executable, "-c", RAW_REGISTER, peer.ip, "browse", stdout=subprocess.PIPE
                )
                assert proc.stdout is not None and proc.stdout.readline().startswith("registered")
                pid = proc.pid

                def stop(proc: subprocess.Popen[str] = proc) -> None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=10)

            time.sleep(warmup)
            cpu_start, window_start = _cpu_seconds(pid), time.monotonic() - t0
            time.sleep(seconds)
            cpu_end, window_end = _cpu_seconds(pid), time.monotonic() - t0
            stop()
            capture.wait(timeout=seconds + warmup + 30)
            packets = _count_from(capture_file, peer.ip, window_start, window_end)
            span = window_end - window_start
            results[kind] = ((cpu_end - cpu_start) * 3600 / span, packets * 60 / span)
    finally:
        lan.cleanup()
    return results


async def run(quick: bool = False) -> list[Result]:
    from tests.lan.netns import namespaces_unavailable

    reason = namespaces_unavailable()
    if reason is not None:
        return [Result("LAN discovery (skipped)", reason, "—", None)]
    runs = 3 if quick else 12
    window = 30.0 if quick else 120.0
    with tempfile.TemporaryDirectory(prefix="chinwag-bench-lan-") as tmp:
        root = Path(tmp)
        chinwag, own, raw = await asyncio.to_thread(start_to_online, root / "online", runs)
        idle = await asyncio.to_thread(idle_cost, root / "idle", window, 50)
    med, p95 = statistics.median(chinwag), percentile(chinwag, 95)
    raw_med, raw_p95 = statistics.median(raw), percentile(raw, 95)
    own_med = statistics.median(own)
    cpu, packets = idle["chinwag"]
    raw_cpu, raw_packets = idle["raw"]
    return [
        Result(
            f"process start → online in a contact's view, median ({len(chinwag)} runs)",
            fmt_time(med),
            f"{fmt_time(raw_med)} bare zeroconf register → browse",
            med / raw_med,
            target="< 1 s",
            met=med < 1.0,
        ),
        Result(
            "process start → online in a contact's view, p95",
            fmt_time(p95),
            f"{fmt_time(raw_p95)} bare zeroconf",
            p95 / raw_p95,
        ),
        Result(
            "of which: process start → its own 'is online' (imports, unlock, listen)",
            fmt_time(own_med),
            "—",
            None,
        ),
        Result(
            "idle CPU, peer with 50 contacts",
            f"{cpu:.1f} CPU s/hour",
            f"{raw_cpu:.1f} CPU s/hour bare zeroconf register + browse",
            cpu / raw_cpu if raw_cpu else None,
        ),
        Result(
            "idle mDNS datagrams sent, peer with 50 contacts",
            f"{packets:.2f} /min",
            f"{raw_packets:.2f} /min bare zeroconf",
            packets / raw_packets if raw_packets else None,
            ratio_text="" if raw_packets else "— (baseline sends none)",
        ),
    ]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    quiet_logging()
    results = asyncio.run(run(quick=args.quick))
    print_table("LAN discovery", results)


if __name__ == "__main__":
    main()

"""Hosts in Linux network namespaces on one bridge, with real mDNS multicast between them
(used by the LAN tests in this folder and by bench/bench_discovery.py).

Layout (every name carries a random prefix, so parallel runs and leftovers never clash):

    <p>sw            a namespace holding the bridge "br0" (the LAN switch)
    <p>sw<seg>       more switches, one per extra LAN segment (`Lan.add_host(segment=...)`)
    <p>a, <p>b, ...  one namespace per host: "eth0" (a veth whose peer is a bridge port
                     in its switch), loopback up, 10.77.0.N/24 and a 224.0.0.0/4 route

Neighbour caches (ARP and IPv6 ndisc) are one table per kernel, shared by every
namespace, with room for 1,024 entries (`gc_thresh3`). Thirty IPv6 hosts on one bridge,
each learning the others' unicast and link-local addresses and its multicast groups,
fill it: the kernel then refuses sends with EINVAL ("neighbor table overflow" in dmesg)
and mDNS packets are lost. A home LAN never has that many hosts on one machine, so tests
that need many hosts give each group of them its own segment. `neighbour_table_fulls()`
counts the refusals, for failure messages.

Nothing is created in the caller's namespace: the veth pairs are made directly between the
host and switch namespaces and no address or route exists outside them, so no traffic can
leave. Cleanup, also when a test fails: every process started here is killed by PID (with
any other PID still inside our namespaces, from `ip netns pids`), then every namespace is
deleted, which destroys its links and the bridge.

Peers run as `ip netns exec NS python -m messenger.cli --profile P run`, one process per
host; tests talk to them with the CLI over each profile's control socket (a Unix socket
in the profile folder, reachable from any network namespace).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from messenger.service import PeerService, ServiceConfig

SUBNET = "10.77.0"
ULA_PREFIX = "fd77::"  # hosts get fd77::N/64 in the shapes with a ULA
ENV = {
    **os.environ,
    "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    "PYTHONUNBUFFERED": "1",
}
ENV.pop("CHINWAG_PASSPHRASE", None)
ENV.pop("CHINWAG_PROFILE", None)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def _sysctl(ns: str, setting: str) -> None:
    result = subprocess.run(
        ["ip", "netns", "exec", ns, "sysctl", "-qw", setting],
        capture_output=True,
        text=True,
        timeout=20,
    )
    if result.returncode != 0:
        raise RuntimeError(f"sysctl {setting} in {ns}: {result.stderr.strip()}")


def namespaces_unavailable() -> str | None:
    """Why this machine cannot run the LAN tests, or None if it can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"cwprobe{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class Runner:
    """One `chinwag-cli run` inside a host's namespace; its stdout lines are timestamped."""

    def __init__(self, host: Host, profile: Path, env: dict[str, str], args: list[str]) -> None:
        self.host = host
        self.profile = profile
        self.lines: list[tuple[float, str]] = []
        self.log_path = profile.parent / f"{profile.name}.stderr.log"
        self._log = self.log_path.open("a")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                host.ns,
                sys.executable,
                "-m",
                "messenger.cli",
                "--profile",
                str(profile),
                "-v",
                "run",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_line(self, text: str, timeout: float = 20.0, after: float = 0.0) -> float:
        """Wait for a stdout line containing `text` (printed after monotonic time `after`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if at >= after and text in line:
                    return at
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(
            f"{self.host.name}: no line {text!r} in {timeout} s; stdout: "
            f"{[line for _, line in self.lines]}; stderr tail: {self.stderr_tail()}"
        )

    def stderr_tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text().splitlines()[-n:])
        return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode


@dataclass
class Host:
    lan: Lan
    name: str
    ns: str
    port: str  # the bridge port (in the switch namespace) of this host's link
    ip: str
    switch: str  # the namespace of the switch this host's link is plugged into
    runners: list[Runner] = field(default_factory=list)

    def run(self, profile: Path, *args: str, env: dict[str, str] | None = None) -> Runner:
        """Start `chinwag-cli run` here and wait until it says it is online."""
        runner = self.start(profile, *args, env=env)
        runner.wait_line("is online", timeout=30)
        return runner

    def start(self, profile: Path, *args: str, env: dict[str, str] | None = None) -> Runner:
        runner = Runner(self, profile, {**self.lan.env, **(env or {})}, list(args))
        self.runners.append(runner)
        self.lan.processes.append(runner.proc)
        return runner

    def exec(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.ns, *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.lan.env,
        )

    def popen(self, *cmd: str, **kwargs: object) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, *cmd],
            text=True,
            env=self.lan.env,
            **kwargs,  # type: ignore[call-overload]
        )
        self.lan.processes.append(proc)
        return proc

    def listening_ports(self, pid: int) -> list[tuple[str, int]]:
        """(address, port) of every TCP socket process `pid` listens on in this host."""
        out = self.exec("ss", "-ltnpH").stdout
        found = []
        for line in out.splitlines():
            if f"pid={pid}," not in line:
                continue
            local = line.split()[3]  # e.g. 0.0.0.0:4711 or [::]:4711 or *:4711
            host, _, port = local.rpartition(":")
            found.append((host, int(port)))
        return found

    def link(self, up: bool) -> None:
        """Unplug / plug the host's cable: its bridge port goes down (carrier off inside)."""
        _ip("-n", self.switch, "link", "set", self.port, "up" if up else "down")

    def set_address(self, ip: str) -> None:
        """Renumber eth0 (a DHCP lease changing): the old address goes, the new one comes."""
        # (In this order: deleting a primary address also deletes its secondaries.)
        _ip("-n", self.ns, "addr", "del", f"{self.ip}/24", "dev", "eth0")
        _ip("-n", self.ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        self.ip = ip

    def add_address(self, ip: str) -> None:
        _ip("-n", self.ns, "addr", "add", ip, "dev", "eth0")


def neighbour_table_fulls() -> int:
    """How many times the kernel's ARP and ndisc tables were full (one count per refused
    entry, since boot; the tables are shared by every namespace)."""
    total = 0
    for table in ("arp_cache", "ndisc_cache"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            rows = Path("/proc/net/stat", table).read_text().splitlines()
            column = rows[0].split().index("table_fulls")
            total += sum(int(row.split()[column], 16) for row in rows[1:])
    return total


class Lan:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.prefix = f"cw{secrets.token_hex(3)}"
        self.switch = f"{self.prefix}sw"
        self.hosts: dict[str, Host] = {}
        self.processes: list[subprocess.Popen[str]] = []
        self.namespaces: list[str] = []
        self.env = dict(ENV)
        self.switches: dict[str, str] = {}  # segment -> its switch namespace
        self._add_switch("", self.switch)

    def _add_switch(self, segment: str, ns: str) -> str:
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        _ip("-n", ns, "link", "add", "br0", "type", "bridge")
        # No IGMP snooping: a switch that floods multicast, like most small ones.
        _ip("-n", ns, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
        _ip("-n", ns, "link", "set", "br0", "up")
        self.switches[segment] = ns
        return ns

    def add_host(
        self,
        name: str,
        *,
        ipv4: bool = True,
        ipv6: bool = True,
        ula: bool = False,
        segment: str = "",
    ) -> Host:
        """A host on the bridge. Network shapes: `ipv4` gives 10.77.0.N/24; `ipv6` leaves
        IPv6 on, so the link gets its fe80:: address as soon as it comes up (what a home
        router without an IPv6 prefix gives); `ula` adds fd77::N/64 as well. A `segment`
        other than "" puts the host on a switch of its own segment (a separate LAN,
        created on first use); addresses stay unique across segments."""
        switch = self.switches.get(segment) or self._add_switch(
            segment, f"{self.prefix}sw{segment}"
        )
        index = len(self.hosts) + 1
        ns = f"{self.prefix}{name}"
        port = f"p{index}"
        ip = f"{SUBNET}.{index}" if ipv4 else f"{ULA_PREFIX}{index}"
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        if not ipv6:
            # Before the link exists, so eth0 is born without IPv6 (as on an IPv4-only host).
            for scope in ("all", "default"):
                _sysctl(ns, f"net.ipv6.conf.{scope}.disable_ipv6=1")
        _ip(
            "-n",
            switch,
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns,
        )
        _ip("-n", switch, "link", "set", port, "master", "br0")
        _ip("-n", switch, "link", "set", port, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        if ipv4:
            _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        if ula:
            # nodad: usable at once (duplicate detection would hold it "tentative" ~1 s).
            _ip("-n", ns, "addr", "add", f"{ULA_PREFIX}{index}/64", "dev", "eth0", "nodad")
        _ip("-n", ns, "link", "set", "eth0", "up")
        if ipv4:
            _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
        host = Host(self, name, ns, port, ip, switch)
        self.hosts[name] = host
        return host

    def dump(self) -> None:
        """Print what every peer said (pytest shows it when a test fails)."""
        for host in self.hosts.values():
            for runner in host.runners:
                print(f"===== {host.name} ({runner.profile.name}) stdout:")
                for at, line in runner.lines:
                    print(f"  {at - runner.started_at:7.2f}  {line}")
                print(f"===== {host.name} stderr tail:\n{runner.stderr_tail(80)}")

    def cleanup(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
        for proc in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        for host in self.hosts.values():
            for runner in host.runners:
                runner.stop()
        for ns in self.namespaces:
            pids = _ip("netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for ns in reversed(self.namespaces):
            _ip("netns", "del", ns, check=False)
        self.namespaces.clear()


# -- profiles -----------------------------------------------------------------------------


async def _make_profiles(
    root: Path, names: list[str], pairs: list[tuple[str, str]]
) -> dict[str, Path]:
    """Profiles that are contacts as `pairs` says, paired over loopback, and then every
    stored contact address is erased: the LAN tests start with no address anywhere."""
    config = ServiceConfig(listen_host="127.0.0.1", listen_port=0, discovery=False)
    services: dict[str, PeerService] = {}
    try:
        for name in names:
            services[name], _ = await PeerService.create_profile(
                root / name, name.capitalize(), None, config=config, rng=random.Random(1)
            )
        for a, b in pairs:
            code, _ = await services[a].create_invite()
            await services[b].accept_invite(code)
            sa, sb = services[a], services[b]
            async with asyncio.timeout(15):
                # Paired, online, and each holds the other's LAN advertising key.
                while not (
                    sa.discovery_keys().get(sb.contact_id) == sb.own_discovery_key
                    and sb.discovery_keys().get(sa.contact_id) == sa.own_discovery_key
                ):
                    await asyncio.sleep(0.02)
    finally:
        for service in services.values():
            await service.aclose()
    for name in names:
        service = await PeerService.open(root / name, None, config=ServiceConfig(network=False))
        async with service:
            for contact in await service.contacts():
                await service.db.run(service.repo.set_addresses, contact.id, [])
            assert all(not c.addresses for c in await service.contacts())
    return {name: root / name for name in names}


def make_profiles(root: Path, names: list[str], pairs: list[tuple[str, str]]) -> dict[str, Path]:
    return asyncio.run(_make_profiles(root, names, pairs))


def make_strangers(root: Path, names: list[str]) -> dict[str, Path]:
    return make_profiles(root, names, [])

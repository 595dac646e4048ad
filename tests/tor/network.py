"""A private Tor network on 127.0.0.1 built from the real `tor`, as Tor's chutney does
(used by the tests in this folder and by bench/bench_tor.py).

    net = PrivateTorNetwork(folder)   # 3 authorities (keys from tor-gencert), 4 relays
    net.start()                       # returns once the consensus lists every relay
    net.client_torrc_lines()          # what a client tor needs to use this network
    net.stop()                        # by PID, also after a failed start

Every node runs with `TestingTorNetwork 1`, the three private `DirAuthority` lines only and
short voting intervals, so a first consensus appears within seconds; the options and why
each is needed are in /work/shared/DESIGN.md ("Reach"). Readiness is read through each
authority's control port with stem (the relays the consensus lists, with their flags), never
from tor's logs. The logs stay in each node's folder for a failure message.

Every tor is also told `__OwningControllerProcess <this pid>`: if the Python process dies
without running stop() (SIGKILL, a crash), the tors notice within seconds and exit.

A folder that holds a network from an earlier run is reused when its ports are still free:
keys and cached consensus make it usable in a couple of seconds instead of ~30.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from stem import ControllerError, SocketError
from stem.control import Controller

LOOPBACK = "127.0.0.1"
LAYOUT_VERSION = 1


def find_tor() -> str | None:
    """The tor binary (Debian puts it in /usr/sbin, which a user's PATH may lack)."""
    return shutil.which("tor") or shutil.which("tor", path="/usr/sbin:/usr/local/sbin")


def find_tor_gencert() -> str | None:
    return shutil.which("tor-gencert") or shutil.which(
        "tor-gencert", path="/usr/bin:/usr/local/bin"
    )


def tor_unavailable() -> str | None:
    """Why this machine cannot build a private Tor network, or None if it can."""
    if find_tor() is None:
        return "the `tor` binary is not installed (Debian: apt-get install tor)"
    if find_tor_gencert() is None:
        return "`tor-gencert` is not installed (it comes with Debian's tor package)"
    return None


# Options every tor of the network needs, clients included (DESIGN.md, "Reach").
def common_lines(folder: Path) -> list[str]:
    empty = folder / "empty-geoip"
    return [
        "TestingTorNetwork 1",
        "UseDefaultFallbackDirs 0",
        "ClientUseIPv6 0",
        "PathsNeededToBuildCircuits 0.67",
        "TestingDirAuthVoteHSDir *",
        "TestingDirAuthVoteGuard *",
        "TestingDirAuthVoteExit *",
        "TestingMinExitFlagThreshold 0",
        # ADD_ONION fails under the seccomp sandbox.
        "Sandbox 0",
        # The default 10 ms scheduler tick makes every onion echo ~16 ms.
        "KISTSchedRunInterval 1 msec",
        # An empty GeoIP file saves ~1.4 s of CPU and 40 MiB per tor.
        f"GeoIPFile {empty}",
        f"GeoIPv6File {empty}",
        # Idle CPU creeps up computing consensus diffs otherwise.
        "MaxConsensusAgeForDiffs 2 minutes",
    ]


@dataclass(slots=True)
class Node:
    nick: str
    role: str  # "authority" or "relay"
    or_port: int
    dir_port: int  # 0 for relays
    fingerprint: str = ""  # RSA identity, known after the first start
    v3ident: str = ""  # authorities: fingerprint of the tor-gencert identity key


class NetworkError(RuntimeError):
    """The private network did not form; the message holds the nodes' last log lines."""


class NodeExited(NetworkError):
    """A node exited while the network was forming."""


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _free_ports(count: int) -> list[int]:
    """Ports free on loopback now, below the kernel's ephemeral range: the tors' own
    `ControlPort auto` and every other program's port-0 binds take ports from that range,
    and one of them taking a relay's ORPort between our check and tor's bind would kill
    the relay. All are checked at once so they differ."""
    low = 10000
    high = _ephemeral_range()[0] - 1
    if high - low < 100:
        low, high = 1024, 65535
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randint(low, high)
        if port not in ports and _port_free(port):
            ports.append(port)
    return ports


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As tor binds: connections of a previous run in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


class PrivateTorNetwork:
    def __init__(
        self,
        folder: Path,
        *,
        relays: int = 4,
        authorities: int = 3,
        tor: str | None = None,
        gencert: str | None = None,
    ) -> None:
        self.folder = folder
        self.relays = relays
        self.authorities = authorities
        self.tor = tor or find_tor() or "tor"
        self.gencert = gencert or find_tor_gencert() or "tor-gencert"
        self.nodes: list[Node] = []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        # One controller per node, open while the network runs: stem takes ownership of a
        # tor whose __OwningControllerProcess is us, so each tor exits when its controller
        # closes (here, or because this process died).
        self.controllers: dict[str, Controller] = {}
        self.reused = False
        self.ready_after = 0.0  # seconds from start() to a consensus listing every relay

    # -- layout ------------------------------------------------------------------------------

    @property
    def _layout_file(self) -> Path:
        return self.folder / "network.json"

    def _node_dir(self, node: Node) -> Path:
        return self.folder / node.nick

    def _load_layout(self) -> bool:
        """Reuse a network an earlier run left here, if it is the same shape and its ports
        are free."""
        try:
            data = json.loads(self._layout_file.read_text())
        except (OSError, ValueError):
            return False
        if data.get("version") != LAYOUT_VERSION:
            return False
        nodes = [Node(**n) for n in data.get("nodes", [])]
        roles = [n.role for n in nodes]
        if roles.count("authority") != self.authorities or roles.count("relay") != self.relays:
            return False
        for node in nodes:
            if not node.fingerprint or not (self.folder / node.nick).is_dir():
                return False
            for port in (node.or_port, node.dir_port):
                if port and not _port_free(port):
                    return False
        self.nodes = nodes
        return True

    def _save_layout(self) -> None:
        data = {"version": LAYOUT_VERSION, "nodes": [asdict(n) for n in self.nodes]}
        self._layout_file.write_text(json.dumps(data, indent=1))

    def _create_layout(self) -> None:
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        ports = iter(_free_ports(2 * self.authorities + self.relays))
        self.nodes = [
            Node(f"auth{i}", "authority", next(ports), next(ports)) for i in range(self.authorities)
        ] + [Node(f"relay{i}", "relay", next(ports), 0) for i in range(self.relays)]
        for node in self.nodes:
            path = self._node_dir(node)
            path.mkdir(mode=0o700)
            if node.role == "authority":
                self._make_authority_keys(node, path)

    def _make_authority_keys(self, node: Node, path: Path) -> None:
        keys = path / "keys"
        keys.mkdir(mode=0o700)
        # The v3 identity + signing key and certificate, with an empty passphrase.
        subprocess.run(
            [
                self.gencert,
                "--create-identity-key",
                "--passphrase-fd",
                "0",
                "-i",
                str(keys / "authority_identity_key"),
                "-s",
                str(keys / "authority_signing_key"),
                "-c",
                str(keys / "authority_certificate"),
                "-m",
                "12",
                "-a",
                f"{LOOPBACK}:{node.dir_port}",
            ],
            input=b"\n",
            capture_output=True,
            check=True,
            timeout=60,
        )
        node.v3ident = _certificate_fingerprint(keys / "authority_certificate")
        # The relay identity key: tor makes it and writes its fingerprint to a file.
        subprocess.run(
            [
                self.tor,
                "--quiet",
                "--ignore-missing-torrc",
                "--defaults-torrc",
                os.devnull,
                "-f",
                os.devnull,
                "--list-fingerprint",
                "--DataDirectory",
                str(path),
                "--ORPort",
                str(node.or_port),
                "--Nickname",
                node.nick,
            ],
            capture_output=True,
            check=True,
            timeout=60,
        )
        node.fingerprint = _fingerprint_file(path)

    # -- configuration -----------------------------------------------------------------------

    def authority_lines(self) -> list[str]:
        return [
            f"DirAuthority {n.nick} orport={n.or_port} no-v2 v3ident={n.v3ident} "
            f"{LOOPBACK}:{n.dir_port} {n.fingerprint}"
            for n in self.nodes
            if n.role == "authority"
        ]

    def client_torrc_lines(self) -> list[str]:
        """Extra torrc lines a client tor (a Chinwag peer's) needs to use this network."""
        return common_lines(self.folder) + self.authority_lines()

    def write_client_config(self, path: Path | None = None) -> Path:
        """The client lines as a file, for CHINWAG_TOR_CONFIG."""
        path = path or self.folder / "client.torrc"
        path.write_text("\n".join(self.client_torrc_lines()) + "\n")
        return path

    def _torrc(self, node: Node) -> str:
        path = self._node_dir(node)
        lines = [
            *common_lines(self.folder),
            *self.authority_lines(),
            f"DataDirectory {path}",
            "RunAsDaemon 0",
            f"Nickname {node.nick}",
            f"ContactInfo {node.nick}@chinwag.invalid",
            "ShutdownWaitLength 0",
            "ConnLimit 60",
            f"Log notice file {path / 'notice.log'}",
            "ProtocolWarnings 1",
            "SafeLogging 0",
            f"__OwningControllerProcess {os.getpid()}",
            "ControlPort auto",
            f"ControlPortWriteToFile {path / 'control.port'}",
            "CookieAuthentication 1",
            "SocksPort 0",
            f"Address {LOOPBACK}",
            f"ORPort {LOOPBACK}:{node.or_port}",
            "AssumeReachable 1",
            # Exits resolve nothing through the system resolver and test no public names.
            f"ServerDNSResolvConfFile {self.folder / 'resolv.conf'}",
            "ServerDNSDetectHijacking 0",
            "ExitRelay 1",
            "ExitPolicy accept 127.0.0.0/8:*",
            "ExitPolicy reject *:*",
        ]
        if node.role == "authority":
            lines += [
                f"DirPort {LOOPBACK}:{node.dir_port}",
                "AuthoritativeDirectory 1",
                "V3AuthoritativeDirectory 1",
                # Vote Running for every relay without testing it: a relay restarted on a
                # reused folder was otherwise left out of the consensus for minutes.
                "AuthDirTestReachability 0",
                "V3AuthNIntervalsValid 2",
                # As fast as tor allows: a vote every 10 s, with 2 s to vote and distribute.
                "TestingV3AuthInitialVotingInterval 10",
                "TestingV3AuthInitialVoteDelay 2",
                "TestingV3AuthInitialDistDelay 2",
                "V3AuthVotingInterval 10",
                "V3AuthVoteDelay 2",
                "V3AuthDistDelay 2",
            ]
        return "\n".join(lines) + "\n"

    # -- running -------------------------------------------------------------------------------

    def start(self, timeout: float = 150.0) -> float:
        """Start every node; return the seconds until the consensus lists every relay.

        If a node exits while the network forms (a port taken by someone else in the
        meantime, a stale reused folder), the network is built once more from nothing on
        new ports. On any failure every node started is stopped before the error
        propagates."""
        started = time.monotonic()
        for attempt in (1, 2):
            try:
                self.reused = attempt == 1 and self._load_layout()
                if not self.reused:
                    self._create_layout()
                (self.folder / "empty-geoip").write_text("")
                (self.folder / "resolv.conf").write_text(f"nameserver {LOOPBACK}\n")
                for node in self.nodes:
                    self._launch(node)
                self._wait_for_consensus(started + timeout)
                self._save_layout()
                break
            except NodeExited:
                self.stop()
                if attempt == 2:
                    raise
            except BaseException:
                self.stop()
                raise
        self.ready_after = time.monotonic() - started
        return self.ready_after

    def _launch(self, node: Node) -> None:
        path = self._node_dir(node)
        (path / "torrc").write_text(self._torrc(node))
        with contextlib.suppress(FileNotFoundError):
            (path / "control.port").unlink()
        with (path / "stdout.log").open("ab") as out:
            self.procs[node.nick] = subprocess.Popen(
                [self.tor, "-f", str(path / "torrc"), "--defaults-torrc", os.devnull],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C at the terminal is ours to pass on
            )

    def _check_alive(self) -> None:
        for nick, proc in self.procs.items():
            if proc.poll() is not None:
                raise NodeExited(f"{nick} exited with {proc.returncode}\n{self.log_tail()}")

    def _controller(self, node: Node, deadline: float) -> Controller:
        port_file = self._node_dir(node) / "control.port"
        while True:
            self._check_alive()
            with contextlib.suppress(OSError, ValueError):
                # tor writes "PORT=127.0.0.1:NNNN" here for its controllers.
                text = port_file.read_text().strip()
                if text.startswith("PORT="):
                    host, _, port = text[len("PORT=") :].rpartition(":")
                    controller = Controller.from_port(address=host, port=int(port))
                    controller.authenticate()
                    return controller
            if time.monotonic() > deadline:
                raise NetworkError(f"{node.nick} opened no control port\n{self.log_tail()}")
            time.sleep(0.1)

    def _wait_for_consensus(self, deadline: float) -> None:
        """Until every authority's current consensus lists every node as Running."""
        for node in self.nodes:
            controller = self._controller(node, deadline)
            self.controllers[node.nick] = controller
            if not node.fingerprint:  # a relay's first start: ask it
                node.fingerprint = str(controller.get_info("fingerprint"))
        wanted = {n.fingerprint for n in self.nodes}
        authorities = [self.controllers[n.nick] for n in self.nodes if n.role == "authority"]
        while True:
            self._check_alive()
            missing: set[str] = set()
            for controller in authorities:
                missing |= wanted - _running_relays(controller)
            if not missing:
                return
            if time.monotonic() > deadline:
                nicks = sorted(n.nick for n in self.nodes if n.fingerprint in missing)
                raise NetworkError(
                    f"the consensus still lacks {nicks} after the timeout\n{self.log_tail()}"
                )
            time.sleep(0.25)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values() if p.poll() is None]

    def stop(self, patience: float = 3.0) -> None:
        """Stop every node by PID: its owning controller closes (tor exits at once), then
        SIGTERM, then SIGKILL after `patience` s. Relays of tor 0.4.9.11 now and then
        deadlock on the way out (two threads in futex waits), hence the SIGKILL."""
        for controller in self.controllers.values():
            controller.close()
        self.controllers.clear()
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=patience)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()

    def log_tail(self, lines: int = 8) -> str:
        out = []
        for node in self.nodes:
            log = self._node_dir(node) / "notice.log"
            with contextlib.suppress(OSError):
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {node.nick} ---\n" + "\n".join(tail))
        return "\n".join(out)

    def __enter__(self) -> PrivateTorNetwork:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _running_relays(controller: Controller) -> set[str]:
    """Fingerprints the authority's current consensus lists as Running (empty if it has
    none yet)."""
    try:
        return {
            entry.fingerprint
            for entry in controller.get_network_statuses()
            if "Running" in entry.flags
        }
    except (ControllerError, SocketError, ValueError):
        return set()


def _certificate_fingerprint(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("fingerprint "):
            return line.split()[1]
    raise NetworkError(f"no fingerprint line in {path}")


def _fingerprint_file(folder: Path) -> str:
    # tor writes "<nickname> <fingerprint>" here.
    return (folder / "fingerprint").read_text().split()[1]

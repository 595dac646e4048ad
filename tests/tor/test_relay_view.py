"""What the relays see: no plaintext and no address of the peers in any stream to or from
a relay's ORPort while two contacts pair, chat and send a file through Tor.

A packet tap (an AF_PACKET socket on lo, so root) records every TCP payload to or from
the private network's ORPorts; afterwards the streams are searched for the messages'
text, the file's contents and the direct addresses both peers announce in their Hellos
(distinctive, unroutable ones: ServiceConfig.advertise; the peers cannot reach each other
on them, so every session and the file go through Tor). A control connection that sends
a marker to a relay in clear shows that the tap does see those streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import struct
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from messenger.net.tor import TorSettings
from messenger.net.transport import Timing
from messenger.records import TransferState
from messenger.service import PeerService, ServiceConfig

from .network import PrivateTorNetwork
from .test_service_tor import Watched

pytestmark = [pytest.mark.tor, pytest.mark.timeout(420)]

ADVERTISED = {"alice": "192.0.2.77:41414", "bob": "192.0.2.78:41415"}  # TEST-NET-1
HOSTS = {"alice": "127.0.0.2", "bob": "127.0.0.3"}
# Long enough not to turn up by chance in megabytes of ciphertext.
NAMES = {"alice": "Alicia Tapwatcher", "bob": "Bartholomew Relayson"}
TIMING = Timing(
    handshake_timeout=30.0, keepalive_interval=5.0, dead_after=30.0, connect_timeout=2.0
)


class Tap:
    """Every TCP payload on lo to or from `ports`, per flow, in arrival order."""

    def __init__(self, ports: set[int]) -> None:
        self.ports = ports
        self.flows: dict[tuple[int, int], bytearray] = {}
        # The tap's thread adds flows while the test reads them (a dict may not change
        # size while it is iterated).
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0800))
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, name="relay-tap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                packet, meta = self._sock.recvfrom(1 << 16)
            except TimeoutError:
                continue
            if meta[2] == socket.PACKET_OUTGOING:
                continue  # lo shows each packet twice: keep the incoming copy
            self._take(packet[14:])  # lo's fake Ethernet header

    def _take(self, ip: bytes) -> None:
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_TCP:
            return
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        tcp = ip[ihl:total]
        if len(tcp) < 20:
            return
        sport, dport = struct.unpack("!HH", tcp[:4])
        if sport not in self.ports and dport not in self.ports:
            return
        payload = tcp[(tcp[12] >> 4) * 4 :]
        if payload:
            with self._lock:
                self.flows.setdefault((sport, dport), bytearray()).extend(payload)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()

    def seen(self) -> int:
        with self._lock:
            return sum(len(b) for b in self.flows.values())

    def find(self, needle: bytes) -> list[tuple[int, int]]:
        with self._lock:
            return [flow for flow, data in self.flows.items() if needle in data]


@pytest.fixture
def tap(tor_network: PrivateTorNetwork) -> Iterator[Tap]:
    try:
        tapped = Tap({n.or_port for n in tor_network.nodes})
    except PermissionError:
        pytest.skip("a packet tap on lo needs root (CAP_NET_RAW)")
    try:
        yield tapped
    finally:
        tapped.stop()


@pytest.fixture
async def services() -> AsyncIterator[list[PeerService]]:
    made: list[PeerService] = []
    try:
        yield made
    finally:
        for service in made:
            await service.aclose()


async def _service(name: str, settings: TorSettings, folder: Path) -> Watched:
    config = ServiceConfig(
        listen_host=HOSTS[name],
        listen_port=0,
        discovery=False,
        timing=TIMING,
        tor_timing=TIMING,
        dial_base=0.5,
        dial_cap=5.0,
        tor=True,
        tor_settings=settings,
        advertise=(ADVERTISED[name],),
    )
    service, _ = await PeerService.create_profile(
        folder / name, NAMES[name], None, config=config, rng=random.Random(1)
    )
    watched = Watched(service)
    await watched.until(lambda: service.tor is not None and service.tor.status.state == "ready")
    return watched


async def test_relays_see_no_plaintext_and_no_peer_address(
    tap: Tap,
    tor_network: PrivateTorNetwork,
    tor_settings: TorSettings,
    services: list[PeerService],
    tmp_path: Path,
) -> None:
    alice = await _service("alice", tor_settings, tmp_path)
    services.append(alice.service)
    bob = await _service("bob", tor_settings, tmp_path)
    services.append(bob.service)
    a, b = alice.service, bob.service
    code, invite = await a.invites.create_invite()
    assert ADVERTISED["alice"] in [str(x) for x in invite.addresses]
    await b.invites.accept_invite(code)
    await alice.until(lambda: a.contacts.is_online(b.contact_id))
    await bob.until(lambda: b.contacts.is_online(a.contact_id))
    conn = a.links.connection(b.contact_id)
    assert conn is not None and a.links.via_tor(conn)
    # Each side told the other its advertised address (in its Hello, through Tor).
    at_alice = await a.db.run(a.repo.contact, b.contact_id)
    assert at_alice is not None and ADVERTISED["bob"] in at_alice.addresses

    texts = ["the eagle lands at noon, platform nine", "bring the blue umbrella, not the red"]
    await a.chat.send_text(b.contact_id, texts[0])
    await b.chat.send_text(a.contact_id, texts[1])
    await bob.until(lambda: texts[0] in bob.received(), within=60)
    await alice.until(lambda: texts[1] in alice.received(), within=60)

    marker = b"RELAY-TAP-FILE-MARKER-0123456789:"
    source = tmp_path / "secret.txt"
    source.write_bytes(marker * (1024 * 1024 // len(marker)))
    offer = await a.files.send_file(b.contact_id, source)
    files = b.files
    await bob.until(lambda: any(t.id == offer.id for t in files.transfers()), within=60)
    await files.accept(offer.id)
    await bob.until(lambda: files.find(offer.id).state is TransferState.COMPLETE, within=180)

    # The control: bytes sent in clear to a relay's ORPort are seen by the tap.
    control = b"TAP-CONTROL-CLEARTEXT-7f3a"
    relay = tor_network.nodes[-1]
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.or_port)
    writer.write(control)
    await writer.drain()
    with contextlib.suppress(ConnectionError):
        await reader.read(1024)  # tor answers garbage with a TLS alert, a close or a reset
    writer.close()
    async with asyncio.timeout(10):
        while not tap.find(control):
            await asyncio.sleep(0.05)  # the tap thread catches up

    # The file (1 MiB) crossed the relays at least once per hop: the tap saw it go by.
    assert tap.seen() > 1024 * 1024
    needles = [
        *(t.encode() for t in texts),
        marker,
        *(addr.encode() for addr in ADVERTISED.values()),
        *(addr.rpartition(":")[0].encode() for addr in ADVERTISED.values()),
        a.display_name.encode(),
        b.display_name.encode(),
        os.fsencode(source.name),
    ]
    found = {needle: tap.find(needle) for needle in needles}
    assert not any(found.values()), {k: v for k, v in found.items() if v}

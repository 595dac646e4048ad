"""A hostile host on the LAN, for tests/lan/test_hostile_lan.py.

    python -m tests.lan.hostile MY_IP ACTION [ARGS...]

Actions (all multicast to 224.0.0.251:5353 from port 5353, as a real responder would):

    flood COUNT        COUNT fake `_chinwag._tcp` services, half of them "visible" with a
                       name, with well-formed random tokens and addresses nobody has
    ptr-only COUNT     COUNT services announced by PTR alone (receivers must ask for the rest)
    garbage COUNT      malformed datagrams: random bytes, lying section counts, compression
                       loops, over-long names, oversized TXT records, bad lengths
    conflict SECONDS   listen; re-announce every Chinwag instance name it hears with a
                       garbage TXT record and an unreachable address (cache-flush set)
    replay SECONDS SINK_IP SINK_PORT
                       listen; re-announce every Chinwag TXT record (a real token) under a
                       fresh instance name every 0.2 s (a round), pointing at
                       SINK_IP:SINK_PORT; print a line per round, then the tokens heard,
                       datagrams and rounds sent
    sink SECONDS PORT  accept TCP connections on PORT and close them at once; print how
                       many arrived (the dial attempts provoked by `replay`)
"""

from __future__ import annotations

import os
import random
import socket
import struct
import sys
import time

from zeroconf import DNSAddress, DNSIncoming, DNSOutgoing, DNSPointer, DNSService, DNSText
from zeroconf.const import (
    _CLASS_IN,
    _CLASS_UNIQUE,
    _FLAGS_AA,
    _FLAGS_QR_RESPONSE,
    _TYPE_A,
    _TYPE_PTR,
    _TYPE_SRV,
    _TYPE_TXT,
)

SERVICE = "_chinwag._tcp.local."
GROUP = ("224.0.0.251", 5353)
TTL = 4500


def _socket(my_ip: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(my_ip))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
    sock.bind(("", 5353))
    membership = struct.pack("4s4s", socket.inet_aton(GROUP[0]), socket.inet_aton(my_ip))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    return sock


def _txt(token: bytes, name: str | None = None) -> bytes:
    items = [b"v=1", b"t=" + token.hex().encode()]
    if name:
        items.append(b"n=" + name.encode())
    return b"".join(bytes([len(i)]) + i for i in items)


def _service(
    out: DNSOutgoing, instance: str, host: str, ip: str, port: int, txt: bytes, ttl: int = TTL
) -> None:
    name = f"{instance}.{SERVICE}"
    out.add_answer_at_time(DNSPointer(SERVICE, _TYPE_PTR, _CLASS_IN, ttl, name), 0)
    out.add_answer_at_time(
        DNSService(name, _TYPE_SRV, _CLASS_IN | _CLASS_UNIQUE, ttl, 0, 0, port, host), 0
    )
    out.add_answer_at_time(DNSText(name, _TYPE_TXT, _CLASS_IN | _CLASS_UNIQUE, ttl, txt), 0)
    out.add_answer_at_time(
        DNSAddress(host, _TYPE_A, _CLASS_IN | _CLASS_UNIQUE, ttl, socket.inet_aton(ip)), 0
    )


def _send(sock: socket.socket, out: DNSOutgoing) -> int:
    sent = 0
    for packet in out.packets():
        sock.sendto(packet, GROUP)
        sent += 1
    return sent


def flood(sock: socket.socket, count: int) -> None:
    rng = random.Random(1)
    packets = 0
    for start in range(0, count, 5):
        out = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA)
        for i in range(start, min(count, start + 5)):
            name = f"Fake person {i}" if i % 2 else None
            ip = f"10.77.{rng.randint(1, 250)}.{rng.randint(1, 250)}"  # nobody has these
            _service(
                out,
                os.urandom(8).hex(),
                f"{os.urandom(8).hex()}.local.",
                ip,
                rng.randint(1, 65535),
                _txt(os.urandom(16), name),
            )
        packets += _send(sock, out)
        time.sleep(0.002)
    print(f"flood: {count} services in {packets} datagrams", flush=True)


def ptr_only(sock: socket.socket, count: int) -> None:
    for start in range(0, count, 20):
        out = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA)
        for _ in range(start, min(count, start + 20)):
            name = f"{os.urandom(8).hex()}.{SERVICE}"
            out.add_answer_at_time(DNSPointer(SERVICE, _TYPE_PTR, _CLASS_IN, TTL, name), 0)
        _send(sock, out)
        time.sleep(0.002)
    print(f"ptr-only: {count} services", flush=True)


def _header(qd: int, an: int, ns: int = 0, ar: int = 0, flags: int = 0x8400) -> bytes:
    return struct.pack("!HHHHHH", 0, flags, qd, an, ns, ar)


def _label_name(text: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in text.split(".") if p) + b"\x00"


def garbage(sock: socket.socket, count: int) -> None:
    rng = random.Random(2)
    service = _label_name(SERVICE)
    kinds = []
    for i in range(count):
        kind = i % 8
        if kind == 0:  # random bytes
            data = os.urandom(rng.randint(0, 1400))
        elif kind == 1:  # counts that lie
            data = _header(0, 65535, 65535, 65535) + os.urandom(40)
        elif kind == 2:  # a compression pointer that points at itself
            data = _header(0, 1) + b"\xc0\x0c" + struct.pack("!HHIH", _TYPE_PTR, 1, 60, 2)
            data += b"\xc0\x0c"
        elif kind == 3:  # a name longer than DNS allows
            long_name = b"".join(b"\x3f" + b"a" * 63 for _ in range(8)) + b"\x00"
            data = _header(0, 1) + service + struct.pack("!HHIH", _TYPE_PTR, 1, 60, len(long_name))
            data += long_name
        elif kind == 4:  # an oversized TXT record (8 kB of strings) for a valid-looking service
            instance = _label_name(f"{os.urandom(8).hex()}.{SERVICE}")
            txt = b"".join(b"\xff" + os.urandom(255) for _ in range(32))
            data = _header(0, 2) + service + struct.pack("!HHIH", _TYPE_PTR, 1, 60, len(instance))
            data += instance + instance + struct.pack("!HHIH", _TYPE_TXT, 0x8001, 60, len(txt))
            data += txt
        elif kind == 5:  # rdlength beyond the end of the datagram
            data = _header(0, 1) + service + struct.pack("!HHIH", _TYPE_PTR, 1, 60, 5000) + b"\x00"
        elif kind == 6:  # a TXT with a truncated string and a wrong protocol version
            instance = _label_name(f"{os.urandom(8).hex()}.{SERVICE}")
            txt = b"\x03v=9\x22t=" + b"00" * 16 + b"\x50n=x"
            data = _header(0, 2) + service + struct.pack("!HHIH", _TYPE_PTR, 1, 60, len(instance))
            data += instance + instance + struct.pack("!HHIH", _TYPE_TXT, 0x8001, 60, len(txt))
            data += txt
        else:  # truncated header
            data = os.urandom(rng.randint(1, 11))
        kinds.append(kind)
        sock.sendto(data, GROUP)
        if i % 20 == 0:
            time.sleep(0.002)
    print(f"garbage: {count} datagrams", flush=True)


def _listen(sock: socket.socket, seconds: float):  # type: ignore[no-untyped-def]
    """Yield (instance name, TXT bytes) of Chinwag services heard for `seconds`."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            return
        try:
            records = DNSIncoming(data).answers()
        except Exception:
            continue
        for record in records:
            if isinstance(record, DNSText) and record.name.endswith(SERVICE) and record.ttl:
                yield record.name, record.text


def conflict(sock: socket.socket, seconds: float) -> None:
    sent = 0
    for name, _ in _listen(sock, seconds):
        instance = name[: -len(SERVICE) - 1]
        out = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA)
        _service(
            out,
            instance,
            f"{os.urandom(8).hex()}.local.",
            "10.77.9.9",
            9,
            b"\x03v=1\x05t=bad",
            ttl=120,
        )
        sent += _send(sock, out)
    print(f"conflict: {sent} datagrams", flush=True)


def replay(sock: socket.socket, seconds: float, sink_ip: str, sink_port: int) -> None:
    heard: dict[str, bytes] = {}
    mine: set[str] = set()  # our own replays come back over multicast loopback: not heard
    end = time.monotonic() + seconds
    sent = rounds = 0
    last = 0.0
    while time.monotonic() < end:
        for name, text in _listen(sock, 0.05):
            if b"t=" in text and name not in mine:
                heard[name] = text
        if heard and time.monotonic() - last >= 0.2:
            last = time.monotonic()
            rounds += 1
            out = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA)
            for text in heard.values():
                instance = os.urandom(8).hex()
                mine.add(f"{instance}.{SERVICE}")
                _service(
                    out,
                    instance,
                    f"{os.urandom(8).hex()}.local.",
                    sink_ip,
                    sink_port,
                    text,
                    ttl=120,
                )
            sent += _send(sock, out)
            print(f"round {rounds}", flush=True)  # timed by bench/bench_hostile_lan.py
    print(f"replay: {len(heard)} tokens, {sent} datagrams, {rounds} rounds", flush=True)


def sink(seconds: float, port: int) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("", port))
    server.listen(128)
    print("listening", flush=True)
    accepted = 0
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        server.settimeout(left)
        try:
            conn, _ = server.accept()
        except TimeoutError:
            break
        accepted += 1
        conn.close()
        print(f"connection {accepted}", flush=True)
    print(f"accepted {accepted}", flush=True)


def main(argv: list[str]) -> None:
    my_ip, action, *args = argv
    if action == "sink":
        sink(float(args[0]), int(args[1]))
        return
    sock = _socket(my_ip)
    if action == "flood":
        flood(sock, int(args[0]))
    elif action == "ptr-only":
        ptr_only(sock, int(args[0]))
    elif action == "garbage":
        garbage(sock, int(args[0]))
    elif action == "conflict":
        conflict(sock, float(args[0]))
    elif action == "replay":
        replay(sock, float(args[0]), args[1], int(args[2]))
    else:
        raise SystemExit(f"unknown action {action}")


if __name__ == "__main__":
    main(sys.argv[1:])

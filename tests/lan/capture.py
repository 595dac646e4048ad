"""Record every mDNS datagram a host receives: ``python -m tests.lan.capture OUT SECONDS``.

Run inside a host's namespace by the LAN tests (the non-contact observer, the hostile host).
Writes one JSON line per datagram: {"t": seconds since start, "src": ip, "data": hex}.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

MDNS_GROUP = "224.0.0.251"
MDNS_PORT = 5353


def capture(out_path: str, seconds: float) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("", MDNS_PORT))
    membership = struct.pack("4s4s", socket.inet_aton(MDNS_GROUP), socket.inet_aton("0.0.0.0"))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    start = time.monotonic()
    count = 0
    print("capturing", flush=True)
    with open(out_path, "w") as out:
        while (left := seconds - (time.monotonic() - start)) > 0:
            sock.settimeout(left)
            try:
                data, (src, _) = sock.recvfrom(65535)
            except TimeoutError:
                break
            out.write(json.dumps({"t": time.monotonic() - start, "src": src, "data": data.hex()}))
            out.write("\n")
            out.flush()  # a test may stop us by PID once it has seen enough
            count += 1
    return count


if __name__ == "__main__":
    print(capture(sys.argv[1], float(sys.argv[2])), "datagrams")

"""A LAN peer that announces its service name alone and answers lookups only when told.

Run inside a test host's namespace: `python -m tests.lan.late_responder ADDRESS NAME`. It
sends one mDNS response holding just the PTR record of a visible Chinwag-like service,
prints "announced", and starts answering queries for the service's records (without
announcing them) once a line arrives on stdin; then prints "answering" and waits for EOF.
This is what a peer looks like whose answers were lost while the LAN was busy.
"""

from __future__ import annotations

import secrets
import sys

from zeroconf import DNSOutgoing, DNSPointer, IPVersion, ServiceInfo, Zeroconf
from zeroconf.const import _CLASS_IN, _FLAGS_AA, _FLAGS_QR_RESPONSE, _TYPE_PTR

from messenger.net.discovery import SALT_LEN, SERVICE_TYPE, TOKEN_LEN, Advert, encode_txt
from messenger.protocol import wire


def main(address: str, visible_name: str) -> None:
    zc = Zeroconf(interfaces=[address], ip_version=IPVersion.V4Only)
    name = f"{secrets.token_hex(8)}.{SERVICE_TYPE}"
    advert = Advert(
        wire.PROTOCOL_VERSION,
        secrets.token_bytes(TOKEN_LEN),
        visible_name,
        salt=secrets.token_bytes(SALT_LEN),
    )
    info = ServiceInfo(
        SERVICE_TYPE,
        name,
        port=9,
        properties=encode_txt(advert),
        server=f"{secrets.token_hex(8)}.local.",
        parsed_addresses=[address],
    )
    out = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA)
    out.add_answer_at_time(DNSPointer(SERVICE_TYPE, _TYPE_PTR, _CLASS_IN, 120, name), 0)
    zc.send(out)
    print("announced", flush=True)
    sys.stdin.readline()
    # In the registry, the records answer queries; async_add sends no announcement.
    zc.loop.call_soon_threadsafe(zc.registry.async_add, info)
    print("answering", flush=True)
    sys.stdin.read()
    zc.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""A SOCKS5 CONNECT client (RFC 1928) with username/password authentication (RFC 1929),
made for Tor's SOCKS port.

Hand-written rather than python-socks because Chinwag needs what python-socks drops: Tor's
extended reply codes (SocksPort flag `ExtendedErrors`, 0xF0-0xF7, tor-spec socks-extensions)
say *why* an onion cannot be reached (no descriptor: the contact is offline; bad address;
introduction failed: a stale descriptor). python-socks 3.2 turns any code it does not know
into "Invalid reply code" with no code attached. The protocol is three small messages; the
encoding and decoding here are pure functions (tested with hypothesis) and `connect` runs
them over the caller's asyncio streams, so the stream handed back is the very one Noise
then runs over.

Host names are always sent as names (ATYP 3) for the proxy to resolve: a .onion has no
address, and nothing about a contact's address may be resolved by the local resolver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from dataclasses import dataclass

VERSION = 5
METHOD_USERPASS = 2
METHOD_NONE_ACCEPTABLE = 0xFF
USERPASS_VERSION = 1
CMD_CONNECT = 1
ATYP_IPV4, ATYP_DOMAIN, ATYP_IPV6 = 1, 3, 4

# RFC 1928 section 6, then Tor's extended errors (tor-spec, socks-extensions.txt).
REPLY_MESSAGES: dict[int, str] = {
    0x01: "general SOCKS server failure",
    0x02: "connection not allowed by ruleset",
    0x03: "network unreachable",
    0x04: "host unreachable",
    0x05: "connection refused",
    0x06: "TTL expired (the circuit or stream timed out)",
    0x07: "command not supported",
    0x08: "address type not supported",
    0xF0: "onion service descriptor can not be found (the service is offline or unknown)",
    0xF1: "onion service descriptor is invalid",
    0xF2: "onion service introduction failed",
    0xF3: "onion service rendezvous failed",
    0xF4: "onion service needs client authorization",
    0xF5: "onion service client authorization is wrong",
    0xF6: "invalid onion address",
    0xF7: "onion service introduction timed out",
}


class SocksError(Exception):
    """The proxy refused or broke the SOCKS5 exchange."""


class SocksProtocolError(SocksError):
    """The proxy's answer is not SOCKS5 as RFC 1928 writes it."""


class SocksAuthFailed(SocksError):
    """The proxy refused the username/password (or offered no method we speak)."""


class SocksReplyError(SocksError):
    """The proxy answered the CONNECT with a failure code."""

    def __init__(self, code: int) -> None:
        self.code = code
        message = REPLY_MESSAGES.get(code, "unknown reply code")
        super().__init__(f"SOCKS5 reply {code:#04x}: {message}")


@dataclass(frozen=True, slots=True)
class BoundAddress:
    host: str
    port: int


# -- encoding -------------------------------------------------------------------------------


def _field(value: str, what: str) -> bytes:
    raw = value.encode()
    if not 1 <= len(raw) <= 255:
        raise ValueError(f"SOCKS5 {what} must be 1..255 bytes, got {len(raw)}")
    return bytes([len(raw)]) + raw


def greeting() -> bytes:
    """We offer username/password only: Tor isolates streams by it (IsolateSOCKSAuth)."""
    return bytes([VERSION, 1, METHOD_USERPASS])


def userpass_request(username: str, password: str) -> bytes:
    return bytes([USERPASS_VERSION]) + _field(username, "username") + _field(password, "password")


def connect_request(host: str, port: int) -> bytes:
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    return bytes([VERSION, CMD_CONNECT, 0, ATYP_DOMAIN]) + _field(host, "host") + _port(port)


def _port(port: int) -> bytes:
    return struct.pack("!H", port)


# -- decoding -------------------------------------------------------------------------------


def parse_method_reply(data: bytes) -> int:
    """The method the proxy chose (2 bytes in)."""
    if len(data) != 2 or data[0] != VERSION:
        raise SocksProtocolError(f"not a SOCKS5 method reply: {data.hex()}")
    if data[1] != METHOD_USERPASS:
        raise SocksAuthFailed(
            "the proxy accepts no username/password authentication "
            f"(method {data[1]:#04x}); stream isolation needs it"
        )
    return data[1]


def parse_userpass_reply(data: bytes) -> None:
    if len(data) != 2 or data[0] != USERPASS_VERSION:
        raise SocksProtocolError(f"not a username/password reply: {data.hex()}")
    if data[1] != 0:
        raise SocksAuthFailed(f"the proxy refused the username/password (status {data[1]})")


def connect_reply_length(head: bytes) -> int:
    """Total length of a CONNECT reply, from its first 5 bytes."""
    if len(head) < 5:
        raise ValueError("need the first 5 bytes of the reply")
    if head[0] != VERSION:
        raise SocksProtocolError(f"not a SOCKS5 reply: {head.hex()}")
    if head[1] != 0:
        raise SocksReplyError(head[1])
    atyp = head[3]
    if atyp == ATYP_IPV4:
        return 4 + 4 + 2
    if atyp == ATYP_IPV6:
        return 4 + 16 + 2
    if atyp == ATYP_DOMAIN:
        return 4 + 1 + head[4] + 2
    raise SocksProtocolError(f"unknown address type {atyp} in the reply")


def parse_connect_reply(data: bytes) -> BoundAddress:
    """A whole CONNECT reply; raises SocksReplyError with the proxy's code on failure."""
    if len(data) < 5:
        raise SocksProtocolError(f"SOCKS5 reply too short: {data.hex()}")
    expected = connect_reply_length(data[:5])
    if len(data) != expected or data[2] != 0:
        raise SocksProtocolError(f"malformed SOCKS5 reply: {data.hex()}")
    atyp = data[3]
    port = struct.unpack("!H", data[-2:])[0]
    if atyp == ATYP_IPV4:
        host = str(ipaddress.IPv4Address(data[4:8]))
    elif atyp == ATYP_IPV6:
        host = str(ipaddress.IPv6Address(data[4:20]))
    else:
        host = data[5:-2].decode("ascii", errors="replace")
    return BoundAddress(host, port)


# -- over asyncio streams -------------------------------------------------------------------


async def connect(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    host: str,
    port: int,
    username: str,
    password: str,
) -> BoundAddress:
    """Run the SOCKS5 exchange on a fresh connection to the proxy; afterwards the streams
    carry the tunnelled connection. The caller bounds the time (Tor may take a minute)."""
    request = connect_request(host, port)  # bad input fails before any byte is sent
    auth = userpass_request(username, password)
    try:
        writer.write(greeting())
        parse_method_reply(await reader.readexactly(2))
        writer.write(auth)
        parse_userpass_reply(await reader.readexactly(2))
        writer.write(request)
        head = await reader.readexactly(5)
        rest = await reader.readexactly(connect_reply_length(head) - 5)
    except asyncio.IncompleteReadError as exc:
        raise SocksProtocolError("the proxy closed the connection mid-handshake") from exc
    return parse_connect_reply(head + rest)

"""The LAN advert, pure: tokens, the TXT record codec and advertised addresses.

A peer's TXT record holds only ``v=<protocol version>``, ``t=<token>`` and ``s=<salt>``,
where the token is a keyed BLAKE2b-128 of the current time epoch under the peer's own
*advertising key*. Every contact was given that key over an encrypted session
(wire.DiscoveryKey), so contacts, and only contacts, can tell whose service it is. With the
"visible on this network" switch on, the record also carries ``n=<display name>`` (and
perhaps ``o=<open group>``). docs/protocol.md §14 has the byte layout. Everything here
takes bytes and returns values, and is tested with hypothesis.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import nacl.encoding
import nacl.hash

from ...protocol import wire

SERVICE_TYPE: Final = "_chinwag._tcp.local."  # DNS-SD service type of every advert
TOKEN_LEN: Final = 16
SALT_LEN: Final = 8  # random bytes beside each token (§14.2)
DEFAULT_EPOCH_SECONDS: Final = 600.0
MAX_TXT_BYTES: Final = 255  # our own records are at most ~200 bytes; larger ones are ignored
MAX_NAME_BYTES: Final = 136  # a display name in TXT is cut to this many UTF-8 bytes
MAX_OPEN_GROUP_BYTES: Final = 40  # an open group's name in TXT (protocol.md §16.8)
MAX_ADDRESSES: Final = 4  # addresses kept per service
MAX_KNOWN_TOKENS: Final = 4096  # (token, salt) -> contact results cached per epoch

_TOKEN_PERSON: Final = b"chinwag-tok-v2"
_RAW: Final = nacl.encoding.RawEncoder


# --------------------------------------------------------------------------- tokens


def epoch_of(now: float, epoch_seconds: float) -> int:
    return int(now // epoch_seconds)


def advert_token(key: bytes, epoch: int, salt: bytes) -> bytes:
    """``BLAKE2b-16(u64 epoch || salt; key = advertising key, person = "chinwag-tok-v2")``.

    The salt is drawn afresh for every announcement and sent beside the token, so two
    announcements in the same epoch (a restart, a network change) cannot be linked by
    anyone who lacks the key; the epoch still limits how long a replayed token works."""
    if len(key) != 32:
        raise ValueError("an advertising key is 32 bytes")
    if len(salt) != SALT_LEN:
        raise ValueError(f"a token salt is {SALT_LEN} bytes")
    return nacl.hash.blake2b(
        (epoch % (1 << 64)).to_bytes(8, "big") + salt,
        digest_size=TOKEN_LEN,
        key=key,
        person=_TOKEN_PERSON,
        encoder=_RAW,
    )


class TokenBook:
    """Which contact a token belongs to: the tokens of every contact's advertising key for
    the previous, current and next epoch (clocks may differ by up to one epoch)."""

    def __init__(self, epoch_seconds: float = DEFAULT_EPOCH_SECONDS) -> None:
        if epoch_seconds <= 0:
            raise ValueError("the epoch must be positive")
        self.epoch_seconds = epoch_seconds
        self._keys: dict[str, bytes] = {}
        self._epoch: int | None = None
        # Every token is salted, so there is no table of expected tokens: each (token,
        # salt) is tried against every key, once per epoch and key set (then cached).
        self._known: dict[tuple[bytes, bytes], str | None] = {}

    def set_keys(self, keys: Mapping[str, bytes]) -> None:
        self._keys = {cid: key for cid, key in keys.items() if len(key) == 32}
        self._known.clear()

    def set_key(self, contact_id: str, key: bytes | None) -> None:
        if key is None:
            self._keys.pop(contact_id, None)
        elif len(key) == 32:
            self._keys[contact_id] = key
        self._known.clear()

    def match(self, token: bytes, salt: bytes, now: float) -> str | None:
        if len(salt) != SALT_LEN:
            return None
        epoch = epoch_of(now, self.epoch_seconds)
        if epoch != self._epoch:
            self._known.clear()
            self._epoch = epoch
        if (token, salt) in self._known:
            return self._known[(token, salt)]
        found = None
        for cid, key in self._keys.items():
            if any(advert_token(key, e, salt) == token for e in (epoch - 1, epoch, epoch + 1)):
                found = cid
                break
        if len(self._known) >= MAX_KNOWN_TOKENS:
            self._known.clear()  # bounded: a flood of fake tokens cannot grow it
        self._known[(token, salt)] = found
        return found


# --------------------------------------------------------------------------- TXT records


@dataclass(frozen=True, slots=True)
class Advert:
    """What a TXT record says: protocol version, token, and a name if the peer is visible."""

    version: int
    token: bytes
    name: str | None = None
    open_group: str | None = None  # a group the visible peer lets people ask to join
    salt: bytes = bytes(SALT_LEN)  # what the token was computed with (§14.2)


def clean_name(name: str) -> str:
    """A peer-chosen name made safe to show: no control, format or surrogate characters,
    whitespace collapsed, at most wire.MAX_NAME_CHARS characters."""
    kept = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    return " ".join(kept.split())[: wire.MAX_NAME_CHARS]


def _fit_name(name: str, limit: int = MAX_NAME_BYTES) -> bytes:
    data = clean_name(name).encode("utf-8")[:limit]
    return data.decode("utf-8", errors="ignore").encode("utf-8")  # no cut-off character


def encode_txt(advert: Advert) -> bytes:
    """The TXT record's RDATA: length-prefixed ``key=value`` strings, ``v``, ``t``, ``s``
    first."""
    if len(advert.token) != TOKEN_LEN:
        raise ValueError(f"a token is {TOKEN_LEN} bytes")
    if len(advert.salt) != SALT_LEN:
        raise ValueError(f"a token salt is {SALT_LEN} bytes")
    items = [
        b"v=%d" % advert.version,
        b"t=" + advert.token.hex().encode("ascii"),
        b"s=" + advert.salt.hex().encode("ascii"),
    ]
    if advert.name:
        name = _fit_name(advert.name)
        if name:
            items.append(b"n=" + name)
        group = _fit_name(advert.open_group or "", MAX_OPEN_GROUP_BYTES)
        if group:
            items.append(b"o=" + group)
    return b"".join(bytes([len(item)]) + item for item in items)


def parse_txt(raw: object) -> Advert | None:
    """Read a TXT record's RDATA; None for anything that is not a usable Chinwag advert.

    Never raises. Follows RFC 6763 §6: keys are case-insensitive, only the first
    occurrence of a key counts, unknown keys are ignored. Records over MAX_TXT_BYTES,
    truncated strings, another protocol version or a malformed token give None; a
    malformed name is dropped (the advert stays, without a name).
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        return None
    data = bytes(raw)
    if len(data) > MAX_TXT_BYTES:
        return None
    fields: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        size = data[pos]
        pos += 1
        if pos + size > len(data):
            return None
        item = data[pos : pos + size]
        pos += size
        key, sep, value = item.partition(b"=")
        if not sep or not key:
            continue  # a boolean attribute or an empty string: nothing of ours
        fields.setdefault(key.lower(), value)
    if fields.get(b"v") != str(wire.PROTOCOL_VERSION).encode("ascii"):
        return None
    token_hex = fields.get(b"t", b"")
    salt_hex = fields.get(b"s", b"")
    if not (_is_hex(token_hex, TOKEN_LEN) and _is_hex(salt_hex, SALT_LEN)):
        return None
    name = _text_field(fields, b"n")
    # An open group only means something from a visible peer (a name to ask).
    group = _text_field(fields, b"o") if name else None
    token, salt = bytes.fromhex(token_hex.decode("ascii")), bytes.fromhex(salt_hex.decode("ascii"))
    return Advert(wire.PROTOCOL_VERSION, token, name, group, salt)


def _is_hex(value: bytes, size: int) -> bool:
    """`size` bytes as lowercase hex digits."""
    return len(value) == 2 * size and all(c in b"0123456789abcdef" for c in value)


def _text_field(fields: dict[bytes, bytes], key: bytes) -> str | None:
    if key not in fields:
        return None
    try:
        return clean_name(fields[key].decode("utf-8")) or None
    except UnicodeDecodeError:
        return None


def format_address(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def host_of(address: str) -> str:
    """The host part of ``ip:port`` or ``[ip]:port``."""
    if address.startswith("["):
        return address[1 : address.find("]")]
    return address.rpartition(":")[0]


def usable_addresses(ips: Iterable[str], port: int | None) -> tuple[str, ...]:
    """Advertised addresses worth dialling: IPv4 (link-local included: zero-configuration
    LANs use it) and IPv6 that needs no scope; at most MAX_ADDRESSES."""
    if port is None or not 1 <= port <= 65535:
        return ()
    found: list[str] = []
    for text in ips:
        try:
            ip = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            continue
        if ip.is_loopback or ip.is_multicast or ip.is_unspecified:
            continue
        if ip.version == 6 and (ip.is_link_local or "%" in text):
            continue
        address = format_address(str(ip), port)
        if address not in found:
            found.append(address)
        if len(found) >= MAX_ADDRESSES:
            break
    return tuple(found)

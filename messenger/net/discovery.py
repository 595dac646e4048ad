"""LAN discovery over mDNS / DNS-SD, with python-zeroconf's asyncio API.

Every running peer registers one ``_chinwag._tcp.local.`` service. Its instance name and
host name are random and change at every start and every network change; its TXT record
holds only ``v=<protocol version>`` and ``t=<token>``, where the token is a keyed
BLAKE2b-128 of the current time epoch under the peer's own *advertising key*. Every
contact was given that key over an encrypted session (wire.DiscoveryKey), so contacts,
and only contacts, can tell whose service it is. With the "visible on this network"
switch on, the record also carries ``n=<display name>`` and the peer shows up in other
visible peers' Nearby lists. docs/protocol.md §14 has the byte layout.

The module has a pure part (token, TXT codec, the `LanDirectory` of what was seen) that
takes bytes and returns values, tested with hypothesis, and an I/O part (`Discovery`)
that owns the zeroconf instance, the registration, the browser and a network watcher.
The directory is bounded and ignores what it cannot use, so a hostile LAN (malformed,
oversized or conflicting records, floods of fake services) costs a bounded amount of
memory and time and produces no events.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
import sys
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import ifaddr
import nacl.encoding
import nacl.hash

from ..protocol import wire

log = logging.getLogger(__name__)

SERVICE_TYPE: Final = "_chinwag._tcp.local."
TOKEN_LEN: Final = 16
SALT_LEN: Final = 8  # random bytes beside each token (§14.2)
DEFAULT_EPOCH_SECONDS: Final = 600.0
# TTL of every record we publish. RFC 6762 suggests 75 minutes for PTR/TXT; we use two
# minutes for all, so a peer that vanished without a goodbye leaves the Nearby lists and
# address tables within about two minutes (presence itself is kept by session keepalives).
# python-zeroconf browsers refresh only PTR records (and hold PTRs at least 1125 s), so a
# peer keeps its SRV/TXT/A records alive in others' caches by re-announcing itself (one
# packet) every HEARTBEAT_FRACTION of the TTL; a directory entry whose SRV record left
# the cache is dropped by the next sweep.
RECORD_TTL: Final = 120
HEARTBEAT_FRACTION: Final = 0.75
SWEEP_INTERVAL: Final = 15.0

MAX_TXT_BYTES: Final = 255  # our own records are at most ~200 bytes; larger ones are ignored
MAX_NAME_BYTES: Final = 136  # a display name in TXT is cut to this many UTF-8 bytes
MAX_OPEN_GROUP_BYTES: Final = 40  # an open group's name in TXT (protocol.md §16.8)
MAX_ENTRIES: Final = 512  # services remembered at once (and lookups waiting at once)
RESOLVE_ATTEMPTS: Final = 4  # lookups of a service that does not answer: after 0, 1, 2, 4 s
RESOLVE_BACKOFF: Final = 1.0
MAX_PER_CONTACT: Final = 4  # services remembered per contact (a replayed token cannot add more)
MAX_NEARBY: Final = 32  # people in the Nearby list (visible strangers remembered at once)
MAX_ADDRESSES: Final = 4  # addresses kept per service
MAX_KNOWN_TOKENS: Final = 4096  # (token, salt) -> contact results cached per epoch

_TYPE_SRV: Final = 33
_CLASS_IN: Final = 1
_TOKEN_PERSON: Final = b"chinwag-tok-v2"
_NEARBY_ID_PERSON: Final = b"chinwag-nearby"
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


def nearby_id(instance: str) -> str:
    """A short id for a Nearby entry (8 hex digits of a hash of its random instance name)."""
    return nacl.hash.blake2b(
        instance.lower().encode("utf-8"), digest_size=4, person=_NEARBY_ID_PERSON, encoder=_RAW
    ).hex()


# --------------------------------------------------------------------------- the directory


@dataclass(slots=True)
class Sighting:
    """One service seen on the LAN that we may use: a contact's, or a visible stranger's."""

    instance: str  # DNS-SD instance name, lowercased
    addresses: tuple[str, ...]
    advert: Advert
    contact_id: str | None
    seen_at: float

    @property
    def nearby_id(self) -> str:
        return nearby_id(self.instance)


@dataclass(frozen=True, slots=True)
class LanChanges:
    seen: tuple[str, ...] = ()  # contacts newly seen, or seen at new addresses
    gone: tuple[str, ...] = ()  # contacts no longer seen anywhere
    nearby: bool = False  # the Nearby list changed

    def __bool__(self) -> bool:
        return bool(self.seen or self.gone or self.nearby)


@dataclass(slots=True)
class DirectoryStats:
    updates: int = 0
    ignored: int = 0  # unparseable, another version, or neither a contact nor visible
    evicted: int = 0


class LanDirectory:
    """What we currently see on the LAN, bounded. Sans-I/O: fed by `Discovery`."""

    def __init__(
        self,
        tokens: TokenBook,
        *,
        max_entries: int = MAX_ENTRIES,
        max_per_contact: int = MAX_PER_CONTACT,
        max_nearby: int = MAX_NEARBY,
    ) -> None:
        self.tokens = tokens
        self.own: set[str] = set()  # our own instance names (lowercased)
        self.max_entries = max_entries
        self.max_per_contact = max_per_contact
        self.max_nearby = max_nearby
        self.stats = DirectoryStats()
        self._entries: OrderedDict[str, Sighting] = OrderedDict()  # least recently seen first
        # Services we cannot use now (a token we do not know, no name; or the Nearby list
        # was full), remembered so a key that arrives later (pairing, rotation) finds them.
        self._unmatched: OrderedDict[str, Sighting] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def update(
        self, instance: str, addresses: Sequence[str], advert: Advert | None, now: float
    ) -> LanChanges:
        """A service appeared or changed. An unusable record replaces (removes) what we knew."""
        key = instance.lower()
        self.stats.updates += 1
        if key in self.own:
            return LanChanges()
        if advert is None or not addresses:
            self.stats.ignored += 1
            return self.remove(key)
        contact_id = self.tokens.match(advert.token, advert.salt, now)
        if contact_id is None and (
            advert.name is None
            or (key not in self._entries and self._strangers() >= self.max_nearby)
        ):
            # Not for us (yet); or the Nearby list is full and newcomers wait until someone
            # leaves (evicting the oldest would let a flood of fake services churn the list).
            self.stats.ignored += 1
            changes = self.remove(key)
            self._unmatched[key] = Sighting(key, tuple(addresses), advert, None, now)
            while len(self._unmatched) > self.max_entries:
                self._unmatched.popitem(last=False)
            return changes
        self._unmatched.pop(key, None)
        before = self._snapshot()
        old = self._entries.pop(key, None)
        self._entries[key] = Sighting(key, tuple(addresses), advert, contact_id, now)
        self._bound(key)
        seen: tuple[str, ...] = ()
        if contact_id is not None and (
            old is None or old.contact_id != contact_id or old.addresses != tuple(addresses)
        ):
            seen = (contact_id,)
        return self._changes(before, seen)

    def remove(self, instance: str) -> LanChanges:
        key = instance.lower()
        self._unmatched.pop(key, None)
        if key not in self._entries:
            return LanChanges()
        before = self._snapshot()
        del self._entries[key]
        return self._changes(before, ())

    def clear(self) -> LanChanges:
        before = self._snapshot()
        self._entries.clear()
        self._unmatched.clear()
        return self._changes(before, ())

    def rematch(self, now: float) -> LanChanges:
        """Contacts' keys changed (or a new epoch began): match every entry again."""
        before = self._snapshot()
        seen: list[str] = []
        for key, entry in list(self._entries.items()):
            contact_id = self.tokens.match(entry.advert.token, entry.advert.salt, now)
            if contact_id == entry.contact_id:
                continue
            if contact_id is None and entry.advert.name is None:
                self._unmatched[key] = self._entries.pop(key)
                continue
            entry.contact_id = contact_id
            if contact_id is not None:
                seen.append(contact_id)
        for key, entry in list(self._unmatched.items()):
            contact_id = self.tokens.match(entry.advert.token, entry.advert.salt, now)
            if contact_id is not None:
                entry.contact_id = contact_id
                self._entries[key] = self._unmatched.pop(key)
                self._bound(key)
                seen.append(contact_id)
        return self._changes(before, tuple(dict.fromkeys(seen)))

    def _strangers(self) -> int:
        return sum(1 for e in self._entries.values() if e.contact_id is None)

    def instances(self) -> list[str]:
        return [*self._entries, *self._unmatched]

    def contact_addresses(self, contact_id: str) -> list[str]:
        """Where a contact was seen, most recently seen first."""
        found: list[str] = []
        for entry in reversed(self._entries.values()):
            if entry.contact_id == contact_id:
                found += [a for a in entry.addresses if a not in found]
        return found[: 2 * MAX_ADDRESSES]

    def contacts_seen(self) -> set[str]:
        return {e.contact_id for e in self._entries.values() if e.contact_id is not None}

    def nearby(self) -> list[Sighting]:
        """Visible strangers (at most max_nearby), by name."""
        people = [e for e in self._entries.values() if e.contact_id is None and e.advert.name]
        people.sort(key=lambda e: ((e.advert.name or "").casefold(), e.instance))
        return people[: self.max_nearby]

    def find_nearby(self, nearby_id: str) -> Sighting | None:
        wanted = nearby_id.strip().lower()
        if not wanted:
            return None
        matches = [e for e in self.nearby() if e.nearby_id.startswith(wanted)]
        return matches[0] if len(matches) == 1 else None

    # -- internals

    def _snapshot(self) -> tuple[set[str], tuple[tuple[str, str | None], ...]]:
        nearby = tuple(
            (e.instance, f"{e.advert.name}\n{e.advert.open_group or ''}") for e in self.nearby()
        )
        return self.contacts_seen(), nearby

    def _changes(
        self, before: tuple[set[str], tuple[tuple[str, str | None], ...]], seen: tuple[str, ...]
    ) -> LanChanges:
        contacts_after, nearby_after = self._snapshot()
        gone = tuple(sorted(before[0] - contacts_after))
        return LanChanges(seen, gone, nearby_after != before[1])

    def _bound(self, newest: str) -> None:
        entry = self._entries[newest]
        if entry.contact_id is not None:
            # A replayed token re-announced from one address takes one slot, not all of
            # them: otherwise a replayer could push the contact's genuine record out.
            for key, other in list(self._entries.items()):
                if (
                    key != newest
                    and other.contact_id == entry.contact_id
                    and set(other.addresses) == set(entry.addresses)
                ):
                    del self._entries[key]
            same = [k for k, e in self._entries.items() if e.contact_id == entry.contact_id]
            for key in same[: max(0, len(same) - self.max_per_contact)]:
                del self._entries[key]
                self.stats.evicted += 1
        while len(self._entries) > self.max_entries:
            victim = next(
                (k for k, e in self._entries.items() if e.contact_id is None and k != newest),
                next(iter(self._entries)),
            )
            del self._entries[victim]
            self.stats.evicted += 1


# --------------------------------------------------------------------------- the network


@dataclass(frozen=True, slots=True)
class NetworkSnapshot:
    """The usable interface addresses of this host (no loopback, links that are up)."""

    v4: tuple[str, ...] = ()
    v6: tuple[str, ...] = ()  # global/unique-local IPv6 (advertised)
    v6_interfaces: tuple[int, ...] = ()  # interface indexes with IPv6 (for mDNS over IPv6)
    networks: tuple[str, ...] = ()  # the directly attached networks, e.g. "10.77.0.0/24"
    present: tuple[str, ...] = ()  # every non-loopback address, on links up or down

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.v4 + self.v6

    def on_link(self, ip: str) -> bool:
        """Is `ip` on one of our directly attached networks (IPv6 link-local included)?"""
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if addr.is_loopback:
            return False
        if addr.version == 6 and addr.is_link_local:
            return True
        return any(addr in ipaddress.ip_network(net) for net in self.networks)

    def __bool__(self) -> bool:
        return bool(self.v4 or self.v6)


def _link_up(name: str) -> bool:
    """False if the OS says the link is down (Linux: /sys/class/net/NAME/operstate)."""
    if not sys.platform.startswith("linux"):
        return True
    try:
        state = Path("/sys/class/net", name, "operstate").read_text().strip()
    except OSError:
        return True
    return state in ("up", "unknown")


def network_snapshot(only: str | None = None) -> NetworkSnapshot:
    """Read the interfaces now (ifaddr); `only` restricts to one configured address."""
    v4: list[str] = []
    v6: list[str] = []
    v6_if: list[int] = []
    networks: set[str] = set()
    present: set[str] = set()
    for adapter in ifaddr.get_adapters():
        up = _link_up(adapter.name)
        for ip in adapter.ips:
            raw = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            try:
                addr = ipaddress.ip_address(raw.split("%", 1)[0])
            except ValueError:
                continue
            if addr.is_loopback or addr.is_unspecified or addr.is_multicast:
                continue
            present.add(str(addr))
            if not up or (only is not None and str(addr) != only):
                continue
            with contextlib.suppress(ValueError):
                networks.add(str(ipaddress.ip_interface(f"{addr}/{ip.network_prefix}").network))
            if addr.version == 4:
                v4.append(str(addr))
            else:
                if adapter.index is not None and adapter.index not in v6_if:
                    v6_if.append(adapter.index)
                if not addr.is_link_local:
                    v6.append(str(addr))
    return NetworkSnapshot(
        tuple(sorted(set(v4))),
        tuple(sorted(set(v6))),
        tuple(sorted(v6_if)) if v6 else (),
        tuple(sorted(networks)),
        tuple(sorted(present)),
    )


class NetlinkWatcher:
    """Calls `on_change` when a link or an address changes (Linux rtnetlink; elsewhere
    `start` returns False and the caller polls)."""

    _GROUPS: Final = 0x1 | 0x10 | 0x100  # RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> bool:
        family = getattr(socket, "AF_NETLINK", None)
        if family is None or not sys.platform.startswith("linux"):
            return False
        try:
            sock = socket.socket(family, socket.SOCK_RAW | socket.SOCK_NONBLOCK, 0)
            sock.bind((0, self._GROUPS))
        except OSError as exc:
            log.info("no rtnetlink (%s): network changes are polled", exc)
            return False
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)
        return True

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass
        self._on_change()

    def close(self) -> None:
        if self._sock is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        self._sock = None


# --------------------------------------------------------------------------- I/O


class DiscoveryListener(Protocol):
    """What the service hears from discovery. Called on the event loop; must not block."""

    def lan_contact_seen(self, contact_id: str, addresses: list[str]) -> None: ...

    def lan_contact_gone(self, contact_id: str) -> None: ...

    def lan_nearby_changed(self) -> None: ...

    def lan_network_changed(self, addresses: tuple[str, ...]) -> None: ...

    async def lan_port_for_new_network(self) -> int:
        """The port to announce on a new network (the service may move to a fresh one)."""
        ...


@dataclass(frozen=True, slots=True)
class DiscoverySettings:
    epoch_seconds: float = DEFAULT_EPOCH_SECONDS
    ttl: int = RECORD_TTL
    only_address: str | None = None  # listen on one address: announce on that one only
    poll_interval: float = SWEEP_INTERVAL  # network re-check (the only one without rtnetlink)
    settle_delay: float = 0.3  # after a network change, before re-registering
    resolve_timeout_ms: int = 1500
    max_resolves: int = 8  # concurrent lookups of services announced without their records
    nearby_event_interval: float = 1.0  # at most one Nearby event per this many seconds


@dataclass(slots=True)
class DiscoveryStats:
    restarts: int = 0
    registered: str = ""
    resolves: int = 0
    resolves_dropped: int = 0
    resolve_retries: int = 0
    lookups_unanswered: int = 0
    handler_errors: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Discovery:
    """Advertise ourselves and browse for others; restart on every network change."""

    def __init__(
        self,
        listener: DiscoveryListener,
        *,
        port: int,
        own_key: bytes,
        contact_keys: Mapping[str, bytes],
        visible_name: str | None,
        clock: Callable[[], float],
        settings: DiscoverySettings | None = None,
    ) -> None:
        self.settings = settings or DiscoverySettings()
        self.tokens = TokenBook(self.settings.epoch_seconds)
        self.tokens.set_keys(contact_keys)
        self.directory = LanDirectory(self.tokens)
        self.stats = DiscoveryStats()
        self.snapshot = NetworkSnapshot()
        self._listener = listener
        self._port = port
        self._own_key = own_key
        self._visible_name = visible_name
        self._open_group: str | None = None
        self._clock = clock
        self._zc: Any = None  # AsyncZeroconf
        self._browser: Any = None  # AsyncServiceBrowser
        self._info: Any = None  # AsyncServiceInfo we registered
        self._published_epoch: int | None = None
        self._announced_at = 0.0  # loop time of our last announcement
        self._task: asyncio.Task[None] | None = None
        self._resolving: dict[str, asyncio.Task[None]] = {}
        # Lookups waiting for a free slot, in arrival order: (zeroconf, name, attempt).
        self._resolve_fresh: dict[str, tuple[Any, str, int]] = {}
        self._resolve_retries: dict[str, tuple[Any, str, int]] = {}
        self._network_dirty = asyncio.Event()
        self._republish = asyncio.Event()
        self._watcher = NetlinkWatcher(self._network_dirty.set)
        self._nearby_handle: asyncio.TimerHandle | None = None
        self._nearby_last = 0.0
        self._closed = False
        self.started = asyncio.Event()  # set once the first registration was attempted

    # -- control (from the service)

    async def start(self) -> None:
        self._watcher.start()
        self._task = asyncio.create_task(self._run(), name="chinwag-discovery")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._watcher.close()
        if self._nearby_handle is not None:
            self._nearby_handle.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._stop_zeroconf()

    def set_contact_keys(self, keys: Mapping[str, bytes]) -> None:
        self.tokens.set_keys(keys)
        self._dispatch(self.directory.rematch(self._clock()))

    def set_contact_key(self, contact_id: str, key: bytes | None) -> None:
        self.tokens.set_key(contact_id, key)
        self._dispatch(self.directory.rematch(self._clock()))

    def set_own_key(self, key: bytes) -> None:
        self._own_key = key
        self._republish.set()

    def set_visible(self, name: str | None) -> None:
        self._visible_name = name
        self._republish.set()

    def set_open_group(self, name: str | None) -> None:
        """Announce (while visible) one group people nearby may ask to join, by name only."""
        if name != self._open_group:
            self._open_group = name
            self._republish.set()

    def contact_addresses(self, contact_id: str) -> list[str]:
        return self.directory.contact_addresses(contact_id)

    def sees(self, contact_id: str) -> bool:
        return contact_id in self.directory.contacts_seen()

    def status(self) -> dict[str, Any]:
        d = self.directory.stats
        return {
            "running": self._zc is not None,
            "addresses": list(self.snapshot.addresses),
            "instance": self.stats.registered,
            "restarts": self.stats.restarts,
            "entries": len(self.directory),
            "contacts_seen": len(self.directory.contacts_seen()),
            "nearby": len(self.directory.nearby()),
            "updates": d.updates,
            "ignored": d.ignored,
            "evicted": d.evicted,
            "resolves": self.stats.resolves,
            "resolves_dropped": self.stats.resolves_dropped,
            "resolve_retries": self.stats.resolve_retries,
            "lookups_unanswered": self.stats.lookups_unanswered,
            "resolves_waiting": len(self._resolve_fresh) + len(self._resolve_retries),
            "handler_errors": self.stats.handler_errors,
            "epoch_seconds": self.settings.epoch_seconds,
        }

    # -- the advert

    def current_advert(self) -> Advert:
        """What we announce now, under a fresh salt: no two announcements share a token."""
        epoch = epoch_of(self._clock(), self.settings.epoch_seconds)
        group = self._open_group if self._visible_name else None
        salt = secrets.token_bytes(SALT_LEN)
        token = advert_token(self._own_key, epoch, salt)
        return Advert(wire.PROTOCOL_VERSION, token, self._visible_name, group, salt)

    # -- supervisor

    async def _run(self) -> None:
        while True:
            try:
                await self._supervise()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("LAN discovery failed; restarting it in 5 s")
                await self._stop_zeroconf()
                await asyncio.sleep(5.0)

    async def _supervise(self) -> None:
        first = True
        while True:
            self._network_dirty.clear()
            snapshot = network_snapshot(self.settings.only_address)
            self.snapshot = snapshot
            if not first:
                # New names on a new network, and a new port, so nothing links the two.
                self._port = await self._listener.lan_port_for_new_network()
            if snapshot:
                try:
                    await self._start_zeroconf(snapshot)
                except Exception as exc:  # no usable multicast socket: wait for a change
                    log.warning("LAN discovery could not start: %s", exc)
                    await self._stop_zeroconf()
            else:
                log.info("no usable network interface; discovery waits for one")
            self.started.set()
            if not first:
                self._listener.lan_network_changed(snapshot.present)
            first = False
            await self._serve(snapshot)
            await self._stop_zeroconf()
            self.stats.restarts += 1

    async def _serve(self, snapshot: NetworkSnapshot) -> None:
        """Keep the advert current until the network changes."""
        poll = self.settings.poll_interval
        while True:
            now = self._clock()
            epoch_len = self.settings.epoch_seconds
            until_epoch = (epoch_of(now, epoch_len) + 1) * epoch_len - now + 0.05
            until_beat = (
                self._announced_at
                + HEARTBEAT_FRACTION * self.settings.ttl
                - asyncio.get_running_loop().time()
            )
            waiters = {
                asyncio.ensure_future(self._network_dirty.wait()),
                asyncio.ensure_future(self._republish.wait()),
            }
            try:
                await asyncio.wait(
                    waiters,
                    timeout=max(0.0, min(until_epoch, poll, until_beat)),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if self._network_dirty.is_set():
                await asyncio.sleep(self.settings.settle_delay)
                self._network_dirty.clear()
            if network_snapshot(self.settings.only_address) != snapshot:
                return
            epoch = epoch_of(self._clock(), epoch_len)
            if self._republish.is_set() or epoch != self._published_epoch:
                self._republish.clear()
                await self._publish_update()
                self._dispatch(self.directory.rematch(self._clock()))
            loop_now = asyncio.get_running_loop().time()
            if loop_now - self._announced_at >= HEARTBEAT_FRACTION * self.settings.ttl:
                self._heartbeat()
            self._sweep()

    async def _start_zeroconf(self, snapshot: NetworkSnapshot) -> None:
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

        zc: AsyncZeroconf | None = None
        if snapshot.v6_interfaces:
            try:
                interfaces: list[str | int] = [*snapshot.v4, *snapshot.v6_interfaces]
                zc = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.All)
            except (OSError, ValueError) as exc:
                log.info("mDNS over IPv6 unavailable (%s); using IPv4", exc)
        if zc is None:
            if not snapshot.v4:
                raise OSError("no IPv4 interface for mDNS")
            zc = AsyncZeroconf(interfaces=list(snapshot.v4), ip_version=IPVersion.V4Only)
        self._zc = zc
        instance = secrets.token_hex(8)
        host = f"{secrets.token_hex(8)}.local."
        name = f"{instance}.{SERVICE_TYPE}"
        self.directory.own = {name.lower()}
        advert = self.current_advert()
        self._published_epoch = epoch_of(self._clock(), self.settings.epoch_seconds)
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            name,
            port=self._port,
            properties=encode_txt(advert),
            server=host,
            parsed_addresses=list(snapshot.addresses),
            host_ttl=self.settings.ttl,
            other_ttl=self.settings.ttl,
        )
        # Random 64-bit names cannot collide in practice: skip the 1.5 s of probing.
        await zc.async_register_service(self._info, cooperating_responders=True)
        self._announced_at = asyncio.get_running_loop().time()
        self.stats.registered = name
        self._browser = AsyncServiceBrowser(zc.zeroconf, SERVICE_TYPE, handlers=[self._on_change])
        log.info("announcing %s on %s", name, ", ".join(snapshot.addresses))

    async def _publish_update(self) -> None:
        from zeroconf.asyncio import AsyncServiceInfo

        zc, old = self._zc, self._info
        if zc is None or old is None:
            return
        self._published_epoch = epoch_of(self._clock(), self.settings.epoch_seconds)
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            old.name,
            port=self._port,
            properties=encode_txt(self.current_advert()),
            server=old.server,
            parsed_addresses=old.parsed_addresses(),
            host_ttl=self.settings.ttl,
            other_ttl=self.settings.ttl,
        )
        try:
            await zc.async_update_service(self._info)
            self._announced_at = asyncio.get_running_loop().time()
        except Exception as exc:
            log.warning("could not update the mDNS record: %s", exc)

    def _heartbeat(self) -> None:
        """One unsolicited announcement, so caches keep our records (see RECORD_TTL)."""
        zc, info = self._zc, self._info
        self._announced_at = asyncio.get_running_loop().time()
        if zc is None or info is None:
            return
        try:
            zc.zeroconf.async_send(zc.zeroconf.generate_service_broadcast(info, None))
        except Exception as exc:
            log.info("mDNS announcement failed: %s", exc)

    def _sweep(self) -> None:
        """Forget services whose records expired from the cache (gone without a goodbye)."""
        zc = self._zc
        if zc is None:
            return
        from zeroconf import current_time_millis

        now = current_time_millis()
        cache = zc.zeroconf.cache
        for instance in self.directory.instances():
            record = cache.get_by_details(instance, _TYPE_SRV, _CLASS_IN)
            if record is None or record.is_expired(now):
                self._dispatch(self.directory.remove(instance))

    async def _stop_zeroconf(self) -> None:
        for task in list(self._resolving.values()):
            task.cancel()
        self._resolve_fresh.clear()
        self._resolve_retries.clear()
        await asyncio.gather(*self._resolving.values(), return_exceptions=True)
        self._resolving.clear()
        zc, browser = self._zc, self._browser
        self._zc = self._browser = self._info = None
        if browser is not None:
            with contextlib.suppress(Exception):
                await browser.async_cancel()
        if zc is not None:
            try:
                async with asyncio.timeout(2.0):
                    await zc.async_close()  # goodbye packets for our service
            except Exception as exc:
                log.info("closing mDNS: %s", exc)
        self._dispatch(self.directory.clear())

    # -- browsing

    def _on_change(self, zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        try:
            self._handle_change(zeroconf, service_type, name, state_change)
        except Exception:
            self.stats.handler_errors += 1
            log.debug("ignoring an mDNS record for %r", name, exc_info=True)

    def _handle_change(
        self, zeroconf: Any, service_type: str, name: str, state_change: Any
    ) -> None:
        from zeroconf import ServiceStateChange
        from zeroconf.asyncio import AsyncServiceInfo

        if len(name) > 255:
            self.directory.stats.ignored += 1
            return
        if state_change is ServiceStateChange.Removed:
            self._dispatch(self.directory.remove(name))
            return
        info = AsyncServiceInfo(service_type, name)
        if info.load_from_cache(zeroconf):
            self._ingest(name, info)
        else:
            self._resolve(zeroconf, name, info)

    def _ingest(self, name: str, info: Any) -> None:
        advert = parse_txt(info.text)
        addresses = usable_addresses(info.parsed_scoped_addresses(), info.port)
        self._dispatch(self.directory.update(name, addresses, advert, self._clock()))

    def _resolve(self, zeroconf: Any, name: str, info: Any, attempt: int = 0) -> None:
        """Ask for the records of a service announced without them, a few at a time.

        A lookup that gets no answer is queued again after a backoff, and one that finds
        every slot busy waits its turn: a service never looked up again would stay unseen
        until its TXT record changes, which on a busy LAN was most of them. New names go
        before retries, so names that never answer cannot starve the ones that do.
        """
        key = name.lower()
        if key in self._resolving or key in self.directory.own:
            return
        if len(self._resolving) >= self.settings.max_resolves:
            queue = self._resolve_retries if attempt else self._resolve_fresh
            if key not in queue:
                if len(self._resolve_fresh) + len(self._resolve_retries) >= MAX_ENTRIES:
                    self.stats.resolves_dropped += 1
                    return
                queue[key] = (zeroconf, name, attempt)
            return
        self.stats.resolves += 1
        if attempt:
            self.stats.resolve_retries += 1
        self._resolving[key] = asyncio.create_task(
            self._lookup(zeroconf, name, info, attempt), name="chinwag-mdns-resolve"
        )

    async def _lookup(self, zeroconf: Any, name: str, info: Any, attempt: int) -> None:
        key = name.lower()
        try:
            if await info.async_request(zeroconf, self.settings.resolve_timeout_ms):
                self._ingest(name, info)
                return
            self.stats.lookups_unanswered += 1
            if attempt + 1 < RESOLVE_ATTEMPTS and not self._closed:
                later = RESOLVE_BACKOFF * 2**attempt
                loop = asyncio.get_running_loop()
                loop.call_later(later, self._retry_resolve, zeroconf, name, attempt + 1)
        except Exception:
            self.stats.handler_errors += 1
            log.debug("resolving %r failed", name, exc_info=True)
        finally:
            self._resolving.pop(key, None)
            self._resolve_next()

    def _retry_resolve(self, zeroconf: Any, name: str, attempt: int) -> None:
        if zeroconf is self._current_zeroconf():
            self._resolve_or_ingest(zeroconf, name, attempt)

    def _current_zeroconf(self) -> Any:
        return None if self._closed or self._zc is None else self._zc.zeroconf

    def _resolve_or_ingest(self, zeroconf: Any, name: str, attempt: int) -> None:
        from zeroconf.asyncio import AsyncServiceInfo

        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if info.load_from_cache(zeroconf):  # answered meanwhile (or announced again)
            self._ingest(name, info)
        else:
            self._resolve(zeroconf, name, info, attempt)

    def _resolve_next(self) -> None:
        while len(self._resolving) < self.settings.max_resolves:
            queue = self._resolve_fresh or self._resolve_retries
            if not queue:
                return
            zeroconf, name, attempt = queue.pop(next(iter(queue)))
            if zeroconf is self._current_zeroconf():
                self._resolve_or_ingest(zeroconf, name, attempt)

    def _dispatch(self, changes: LanChanges) -> None:
        if not changes:
            return
        for contact_id in changes.gone:
            self._listener.lan_contact_gone(contact_id)
        for contact_id in changes.seen:
            self._listener.lan_contact_seen(
                contact_id, self.directory.contact_addresses(contact_id)
            )
        if changes.nearby:
            self._nearby_soon()

    def _nearby_soon(self) -> None:
        """Coalesce Nearby changes: at most one event per nearby_event_interval."""
        if self._nearby_handle is not None or self._closed:
            return
        loop = asyncio.get_running_loop()
        wait = max(0.0, self._nearby_last + self.settings.nearby_event_interval - loop.time())
        self._nearby_handle = loop.call_later(wait, self._nearby_fire)

    def _nearby_fire(self) -> None:
        self._nearby_handle = None
        self._nearby_last = asyncio.get_running_loop().time()
        self._listener.lan_nearby_changed()

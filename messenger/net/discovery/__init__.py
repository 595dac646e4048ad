"""LAN discovery over mDNS / DNS-SD: the advert (tokens, TXT codec), the pure directory
of what was seen, and the python-zeroconf side. docs/protocol.md §14 has the layout.

advert.py     tokens, the TXT record codec, advertised addresses (pure)
directory.py  `LanDirectory`: contacts seen, the Nearby list (pure, bounded)
mdns.py       `Discovery`: registration, browsing, network changes (I/O)
announce.py   `Record`: our own service record, registered, updated, re-announced
lookups.py    `Lookups`: services announced without their records, queued and retried
netlink.py    `NetlinkWatcher`: link and address changes from rtnetlink
"""

from .advert import (
    DEFAULT_EPOCH_SECONDS,
    MAX_ADDRESSES,
    MAX_KNOWN_TOKENS,
    MAX_NAME_BYTES,
    MAX_OPEN_GROUP_BYTES,
    MAX_TXT_BYTES,
    SALT_LEN,
    SERVICE_TYPE,
    TOKEN_LEN,
    Advert,
    TokenBook,
    advert_token,
    clean_name,
    encode_txt,
    epoch_of,
    format_address,
    host_of,
    parse_txt,
    usable_addresses,
)
from .announce import HEARTBEAT_FRACTION, RECORD_TTL, Record
from .directory import (
    MAX_ENTRIES,
    MAX_NEARBY,
    MAX_PER_CONTACT,
    DirectoryStats,
    LanChanges,
    LanDirectory,
    Sighting,
    nearby_id,
)
from .lookups import MAX_WAITING, RESOLVE_ATTEMPTS, RESOLVE_BACKOFF, Lookups, LookupStats
from .mdns import (
    SWEEP_INTERVAL,
    Discovery,
    DiscoveryListener,
    DiscoverySettings,
    DiscoveryStats,
)
from .netlink import NetlinkWatcher

__all__ = [
    "DEFAULT_EPOCH_SECONDS",
    "HEARTBEAT_FRACTION",
    "MAX_ADDRESSES",
    "MAX_ENTRIES",
    "MAX_KNOWN_TOKENS",
    "MAX_NAME_BYTES",
    "MAX_NEARBY",
    "MAX_OPEN_GROUP_BYTES",
    "MAX_PER_CONTACT",
    "MAX_TXT_BYTES",
    "MAX_WAITING",
    "RECORD_TTL",
    "RESOLVE_ATTEMPTS",
    "RESOLVE_BACKOFF",
    "SALT_LEN",
    "SERVICE_TYPE",
    "SWEEP_INTERVAL",
    "TOKEN_LEN",
    "Advert",
    "DirectoryStats",
    "Discovery",
    "DiscoveryListener",
    "DiscoverySettings",
    "DiscoveryStats",
    "LanChanges",
    "LanDirectory",
    "LookupStats",
    "Lookups",
    "NetlinkWatcher",
    "Record",
    "Sighting",
    "TokenBook",
    "advert_token",
    "clean_name",
    "encode_txt",
    "epoch_of",
    "format_address",
    "host_of",
    "nearby_id",
    "parse_txt",
    "usable_addresses",
]

"""Tor reach: the tor process, the profile's onion service and the SOCKS5 dialer.

errors.py    TorError and what failed
events.py    what the manager reports; tor's bootstrap status
settings.py  TorSettings (from the environment), TorTiming, torrc lines, finding tor
onion.py     onion keys and addresses (pure)
manager.py   TorManager: launch or attach, publish the onion, dial, recover
"""

from .errors import (
    OnionAddressInvalid,
    OnionKeyInvalid,
    OnionUnreachable,
    TorClosed,
    TorError,
    TorNotFound,
    TorStartFailed,
    TorTimeout,
)
from .events import (
    OnionPublished,
    TorBootstrap,
    TorEvent,
    TorLost,
    TorRecovered,
    TorRestartFailed,
)
from .manager import (
    NEWNYM_INTERVAL,
    READ_CHUNK,
    RETRIED_SOCKS_CODES,
    SOCKS_MEANINGS,
    TorManager,
)
from .onion import (
    KEY_SIZE,
    ONION_RE,
    OnionService,
    check_onion_address,
    check_onion_key,
    onion_address_from_key,
    onion_address_from_public_key,
)
from .settings import (
    OWNED_OPTIONS,
    TOR_CONFIG_ENV,
    TOR_CONTROL_ENV,
    TOR_CONTROL_PASSWORD_ENV,
    TorSettings,
    TorTiming,
    find_tor,
    parse_torrc_lines,
)

__all__ = [
    "KEY_SIZE",
    "NEWNYM_INTERVAL",
    "ONION_RE",
    "OWNED_OPTIONS",
    "READ_CHUNK",
    "RETRIED_SOCKS_CODES",
    "SOCKS_MEANINGS",
    "TOR_CONFIG_ENV",
    "TOR_CONTROL_ENV",
    "TOR_CONTROL_PASSWORD_ENV",
    "OnionAddressInvalid",
    "OnionKeyInvalid",
    "OnionPublished",
    "OnionService",
    "OnionUnreachable",
    "TorBootstrap",
    "TorClosed",
    "TorError",
    "TorEvent",
    "TorLost",
    "TorManager",
    "TorNotFound",
    "TorRecovered",
    "TorRestartFailed",
    "TorSettings",
    "TorStartFailed",
    "TorTimeout",
    "TorTiming",
    "check_onion_address",
    "check_onion_key",
    "find_tor",
    "onion_address_from_key",
    "onion_address_from_public_key",
    "parse_torrc_lines",
]

"""Tor reach: the tor process, the profile's onion service and the SOCKS5 dialer.

errors.py      TorError and what failed
events.py      what the manager reports (bootstrap progress, onion published, lost, back)
settings.py    TorSettings (from the environment), TorTiming, torrc lines, finding tor
onion.py       onion keys and addresses (pure)
control.py     stem's control port: connect, authenticate, events, ADD_ONION (blocking)
process.py     the tor we launch: torrc, process, control port file, log
connection.py  TorConnection: one tor (launched or attached) and our control connection
dialer.py      OnionDialer: streams to onions through SOCKS, retried on fresh circuits
manager.py     TorManager: start, publish the onion, dial, recover (the public face)
"""

from .connection import TorConnection
from .dialer import NEWNYM_INTERVAL, RETRIED_SOCKS_CODES, SOCKS_MEANINGS, OnionDialer
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
from .manager import READ_CHUNK, TorManager
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
    "OnionDialer",
    "OnionKeyInvalid",
    "OnionPublished",
    "OnionService",
    "OnionUnreachable",
    "TorBootstrap",
    "TorClosed",
    "TorConnection",
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

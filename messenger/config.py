"""ServiceConfig: how a PeerService runs (listener, discovery, Tor, timers).

Apart from service.py so that the workers built from it (net/reachability.py) read it
without importing the service.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .net.links import DIRECT_RETRY
from .net.presence import LAN_TIMING
from .net.tor import TorSettings
from .net.transport import Timing

# Sessions through Tor (protocol.md §19.5): a first circuit takes 10-30 s on the public
# network and a circuit can stall for seconds, so the handshake gets longer and keepalives
# are rarer and more patient than on a LAN (they cost cells on every relay of the path).
TOR_TIMING = Timing(handshake_timeout=60.0, keepalive_interval=30.0, dead_after=120.0)


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    listen_host: str = ""
    listen_port: int | None = None  # None: the remembered port, or a free one
    extra_addresses: tuple[str, ...] = ()
    network: bool = True  # False: open the profile only (CLI reads, offline queueing)
    timing: Timing = field(default_factory=Timing)
    dial_base: float = 0.5
    dial_cap: float = 60.0
    batch_max: int = 2000
    # LAN discovery over mDNS. None: on when listening on all interfaces or on one
    # non-loopback address (a peer bound to 127.0.0.1 has no LAN to announce on).
    discovery: bool | None = None
    discovery_epoch: float = 600.0  # token lifetime in seconds (tests shorten it)
    lan_timing: Timing = LAN_TIMING
    # Tor reach (protocol.md §19): off here so library users and tests opt in;
    # `chinwag-cli run` turns it on when a tor binary is found. None: follow the profile's
    # "tor" setting (the desktop app), which `set_setting("tor", ...)` switches at once.
    tor: bool | None = False
    tor_settings: TorSettings | None = None  # None: TorSettings.from_env() (CHINWAG_TOR_*)
    # Tell contacts (Hello, invites) only the onion address, never a direct one: hides our
    # IP address from them, and makes every contact session go through Tor.
    tor_only: bool = False
    tor_timing: Timing = TOR_TIMING  # the timers of sessions through Tor
    # While a contact is reached through Tor, its direct routes are retried this often (at
    # once when it appears on the LAN): a direct session replaces the Tor one.
    direct_retry: float = DIRECT_RETRY
    # Direct addresses to announce (Hello, invites) instead of the listener's own: a port
    # forwarded on a router, a relay in front of us. None: the listener's addresses.
    advertise: tuple[str, ...] | None = None

"""This machine's network interfaces, read in one place (ifaddr): the addresses an invite
and a Hello name (`interface_addresses`) and the snapshot LAN discovery announces on and
watches for changes (`network_snapshot`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ifaddr

from ..protocol.invite import Address


def _walk() -> Iterator[
    tuple[ifaddr.Adapter, ifaddr.IP, ipaddress.IPv4Address | ipaddress.IPv6Address]
]:
    """Every address of every interface, in the order the system lists them (unparsable
    ones skipped; an IPv6 scope suffix dropped)."""
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            raw = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            try:
                addr = ipaddress.ip_address(raw.split("%", 1)[0])
            except ValueError:
                continue
            yield adapter, ip, addr


def interface_addresses(port: int) -> list[Address]:
    """Usable addresses of this machine (no loopback/link-local), IPv4 first."""
    v4: list[Address] = []
    v6: list[Address] = []
    seen: set[str] = set()
    for _, _, addr in _walk():
        if (
            addr.is_loopback
            or addr.is_link_local
            or addr.is_unspecified
            or addr.is_multicast
            or str(addr) in seen
        ):
            continue
        seen.add(str(addr))
        (v4 if addr.version == 4 else v6).append(Address(str(addr), port))
    return v4 + v6


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
    up: dict[str, bool] = {}
    for adapter, ip, addr in _walk():
        if addr.is_loopback or addr.is_unspecified or addr.is_multicast:
            continue
        present.add(str(addr))
        if adapter.name not in up:
            up[adapter.name] = _link_up(adapter.name)
        if not up[adapter.name] or (only is not None and str(addr) != only):
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

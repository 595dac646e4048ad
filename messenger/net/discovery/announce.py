"""Our one service record on a network: its zeroconf instance, registration, updates and
the heartbeat that keeps it in other peers' caches."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any, Final

from ..netif import NetworkSnapshot
from .advert import SERVICE_TYPE, Advert, encode_txt

log = logging.getLogger(__name__)

# TTL of every record we publish. RFC 6762 suggests 75 minutes for PTR/TXT; we use two
# minutes for all, so a peer that vanished without a goodbye leaves the Nearby lists and
# address tables within about two minutes (presence itself is kept by session keepalives).
# python-zeroconf browsers refresh only PTR records (and hold PTRs at least 1125 s), so a
# peer keeps its SRV/TXT/A records alive in others' caches by re-announcing itself (one
# packet) every HEARTBEAT_FRACTION of the TTL; a directory entry whose SRV record left
# the cache is dropped by the next sweep.
RECORD_TTL: Final = 120
HEARTBEAT_FRACTION: Final = 0.75


def open_zeroconf(snapshot: NetworkSnapshot) -> Any:
    """An AsyncZeroconf on the snapshot's interfaces: IPv4 and IPv6 if it can, else IPv4."""
    from zeroconf import IPVersion
    from zeroconf.asyncio import AsyncZeroconf

    if snapshot.v6_interfaces:
        try:
            interfaces: list[str | int] = [*snapshot.v4, *snapshot.v6_interfaces]
            return AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.All)
        except (OSError, ValueError) as exc:
            log.info("mDNS over IPv6 unavailable (%s); using IPv4", exc)
    if not snapshot.v4:
        raise OSError("no IPv4 interface for mDNS")
    return AsyncZeroconf(interfaces=list(snapshot.v4), ip_version=IPVersion.V4Only)


def fresh_names() -> tuple[str, str]:
    """A random service instance name and host name: nothing links two networks' records."""
    return f"{secrets.token_hex(8)}.{SERVICE_TYPE}", f"{secrets.token_hex(8)}.local."


class Record:
    """The record we registered (None between networks) and when we last announced it."""

    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        self.info: Any = None  # AsyncServiceInfo we registered
        self.epoch: int | None = None  # the epoch of the token we published
        self.announced_at = 0.0  # loop time of our last announcement

    def heartbeat_in(self) -> float:
        """Seconds until the next heartbeat is due (<= 0: due now)."""
        due = self.announced_at + HEARTBEAT_FRACTION * self.ttl
        return due - asyncio.get_running_loop().time()

    def _info(self, name: str, server: str, port: int, advert: Advert, addresses: list[str]) -> Any:
        from zeroconf.asyncio import AsyncServiceInfo

        return AsyncServiceInfo(
            SERVICE_TYPE,
            name,
            port=port,
            properties=encode_txt(advert),
            server=server,
            parsed_addresses=addresses,
            host_ttl=self.ttl,
            other_ttl=self.ttl,
        )

    async def register(
        self,
        zc: Any,
        names: tuple[str, str],
        port: int,
        advert: Advert,
        epoch: int,
        addresses: list[str],
    ) -> None:
        self.epoch = epoch
        self.info = self._info(*names, port, advert, addresses)
        # Random 64-bit names cannot collide in practice: skip the 1.5 s of probing.
        await zc.async_register_service(self.info, cooperating_responders=True)
        self.announced_at = asyncio.get_running_loop().time()

    async def update(self, zc: Any, port: int, advert: Advert, epoch: int) -> None:
        """Publish a new advert (new epoch, name, key or port) under the same names."""
        old = self.info
        if zc is None or old is None:
            return
        self.epoch = epoch
        self.info = self._info(old.name, old.server, port, advert, old.parsed_addresses())
        try:
            await zc.async_update_service(self.info)
            self.announced_at = asyncio.get_running_loop().time()
        except Exception as exc:
            log.warning("could not update the mDNS record: %s", exc)

    def heartbeat(self, zc: Any) -> None:
        """One unsolicited announcement, so caches keep our records (see RECORD_TTL)."""
        info = self.info
        self.announced_at = asyncio.get_running_loop().time()
        if zc is None or info is None:
            return
        try:
            zc.zeroconf.async_send(zc.zeroconf.generate_service_broadcast(info, None))
        except Exception as exc:
            log.info("mDNS announcement failed: %s", exc)

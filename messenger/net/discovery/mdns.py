"""LAN discovery over mDNS / DNS-SD, with python-zeroconf's asyncio API: the I/O part.

Every running peer registers one ``_chinwag._tcp.local.`` service. Its instance name and
host name are random and change at every start and every network change; its TXT record
is the advert (advert.py). `Discovery` owns the zeroconf instance, our record
(announce.py), the browser, the lookups of services announced without their records
(lookups.py) and a network watcher (netlink.py); what it sees goes into the pure
`LanDirectory` (directory.py). It restarts all of it on every network change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ...protocol import wire
from ..netif import NetworkSnapshot, network_snapshot
from .advert import (
    DEFAULT_EPOCH_SECONDS,
    SALT_LEN,
    SERVICE_TYPE,
    Advert,
    TokenBook,
    advert_token,
    epoch_of,
    parse_txt,
    usable_addresses,
)
from .announce import RECORD_TTL, Record, fresh_names, open_zeroconf
from .directory import LanChanges, LanDirectory
from .lookups import Lookups
from .netlink import NetlinkWatcher

log = logging.getLogger(__name__)

SWEEP_INTERVAL: Final = 15.0

_TYPE_SRV: Final = 33
_CLASS_IN: Final = 1


def _service_info(name: str) -> Any:
    from zeroconf.asyncio import AsyncServiceInfo

    return AsyncServiceInfo(SERVICE_TYPE, name)


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
    handler_errors: int = 0


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
        self._record = Record(self.settings.ttl)
        self._task: asyncio.Task[None] | None = None
        self._lookups = Lookups(
            max_at_once=self.settings.max_resolves,
            timeout_ms=self.settings.resolve_timeout_ms,
            new_info=_service_info,
            ingest=self._ingest,
            current=self._current_zeroconf,
            is_own=lambda key: key in self.directory.own,
        )
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
        d, lookups = self.directory.stats, self._lookups.stats
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
            "resolves": lookups.resolves,
            "resolves_dropped": lookups.resolves_dropped,
            "resolve_retries": lookups.resolve_retries,
            "lookups_unanswered": lookups.lookups_unanswered,
            "resolves_waiting": self._lookups.waiting(),
            "handler_errors": self.stats.handler_errors + lookups.errors,
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
            until_beat = self._record.heartbeat_in()
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
            if self._republish.is_set() or epoch != self._record.epoch:
                self._republish.clear()
                await self._record.update(self._zc, self._port, self.current_advert(), epoch)
                self._dispatch(self.directory.rematch(self._clock()))
            if self._record.heartbeat_in() <= 0:
                self._record.heartbeat(self._zc)
            self._sweep()

    async def _start_zeroconf(self, snapshot: NetworkSnapshot) -> None:
        from zeroconf.asyncio import AsyncServiceBrowser

        zc = self._zc = open_zeroconf(snapshot)
        names = fresh_names()
        self.directory.own = {names[0].lower()}
        advert = self.current_advert()
        epoch = epoch_of(self._clock(), self.settings.epoch_seconds)
        await self._record.register(zc, names, self._port, advert, epoch, [*snapshot.addresses])
        self.stats.registered = names[0]
        self._browser = AsyncServiceBrowser(zc.zeroconf, SERVICE_TYPE, handlers=[self._on_change])
        log.info("announcing %s on %s", names[0], ", ".join(snapshot.addresses))

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
        await self._lookups.cancel()
        zc, browser = self._zc, self._browser
        self._zc = self._browser = self._record.info = None
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
            self._lookups.resolve(zeroconf, name, info)

    def _ingest(self, name: str, info: Any) -> None:
        advert = parse_txt(info.text)
        addresses = usable_addresses(info.parsed_scoped_addresses(), info.port)
        self._dispatch(self.directory.update(name, addresses, advert, self._clock()))

    def _current_zeroconf(self) -> Any:
        return None if self._closed or self._zc is None else self._zc.zeroconf

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

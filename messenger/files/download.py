"""Downloading a file from every source that has it, and what sources tell us
(FileHave, FileControl); chunk work runs on worker threads (bulk.py, fetching.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import time
from dataclasses import replace

import nacl.utils

from ..events import FileOfferRejected
from ..protocol import wire
from ..records import TransferState
from .base import FileBase
from .bulk import (
    BulkError,
    Channel,
    SourceMisbehaved,
    SourceStopped,
    derive_keys,
    encode_preamble,
)
from .chunks import Bitmap
from .fetching import Download, RateLimit, fetch
from .names import human_size
from .store import StoreError
from .transfer import PERSIST_INTERVAL, SETTING_MAX_SIZE, SETTING_RATE_LIMIT, Transfer

log = logging.getLogger(__name__)

# A download starts only with room for what is still missing plus this much for the
# database (arriving messages, bitmaps, the search index): 64 MiB, or 5 % of a smaller file
# system, so that a file never fills the disk the messages need (issue 14).
DB_MARGIN = 64 << 20
DB_MARGIN_SHARE = 0.05
RETRY_DELAY = 2.0  # seconds before a source that failed is tried again
# FileHave for files we have not heard of yet (a member announces what it holds as soon as
# a session comes up, before catch-up brings the group message that offers it): kept for
# this many roots, oldest forgotten first.
MAX_EARLY_HAVES = 1024


class FileDownloads(FileBase):
    """Downloads: started, fed by sources, paused, cancelled, persisted."""

    def contact_online(self, contact_id: str) -> None:
        """Service hook: a contact's session went live; downloads it can serve go on, and
        it hears which of the files shared in its groups we can serve."""
        conn = self._links.connection(contact_id)
        for f in self._files.values():
            if contact_id in f.sources:
                if f.remote_paused.get(contact_id) == "does not have it":
                    del f.remote_paused[contact_id]  # it may have it by now
                f.wake.set()
            if (
                conn is not None
                and f.groups
                and f.state is TransferState.COMPLETE
                and f.row.serving
                and contact_id in self._members_of_groups(f)
            ):
                conn.send(wire.FileHave(f.root))

    def _start(self, f: Transfer) -> None:
        if self._closing or (f.task is not None and not f.task.done()):
            return
        f.task = self._spawn(self._download(f), f"chinwag-download-{f.root.hex()[:8]}")

    async def _download(self, f: Transfer) -> None:
        download = Download(
            f.root,
            self.store,
            self.settings[SETTING_MAX_SIZE],
            manifest=f.manifest,
            have=f.have,
            rate=RateLimit(self.settings[SETTING_RATE_LIMIT]),
        )
        download.expected = (f.row.size, f.row.chunk_size)
        f.download = download
        workers: dict[str, asyncio.Task[None]] = {}
        retry_at: dict[str, float] = {}
        last_bytes, last_time = self._have_bytes(f), time.monotonic()
        try:
            while f.state is TransferState.DOWNLOADING and not download.complete:
                self._spawn_fetchers(f, download, workers, retry_at)
                f.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PERSIST_INTERVAL):
                        await f.wake.wait()
                if download.error is not None:
                    await self._download_failed(f, download.error)
                    break
                await self._persist(f)
                last_bytes, last_time = self._measure_speed(f, last_bytes, last_time)
                self._changed(f)
            if download.complete and f.state is TransferState.DOWNLOADING:
                await self._download_complete(f, download)
        finally:
            await self._wind_down(f, download, workers)

    def _spawn_fetchers(
        self,
        f: Transfer,
        download: Download,
        workers: dict[str, asyncio.Task[None]],
        retry_at: dict[str, float],
    ) -> None:
        """One fetch worker per usable source that has none running: online, not paused
        by the source, and not tried in the last RETRY_DELAY seconds."""
        now = time.monotonic()
        for contact_id in sorted(self._other_sources(f)):
            task = workers.get(contact_id)
            if task is not None and not task.done():
                continue
            if contact_id in f.remote_paused or retry_at.get(contact_id, 0) > now:
                continue
            if not self._links.is_online(contact_id):
                continue
            retry_at[contact_id] = now + RETRY_DELAY
            workers[contact_id] = self._spawn(
                self._fetch_from(f, download, contact_id),
                f"chinwag-fetch-{f.root.hex()[:8]}-{contact_id[:8]}",
            )

    async def _download_failed(self, f: Transfer, error: Exception) -> None:
        await self._set_state(f, TransferState.FAILED, error=str(error))
        if "manifest" in str(error):
            self._tell_sources(f, wire.FileAction.REJECT, str(error)[:200])

    def _measure_speed(self, f: Transfer, last_bytes: int, last_time: float) -> tuple[int, float]:
        """Smooths f.speed with the bytes gained since the last look; returns this look."""
        now = time.monotonic()
        have = self._have_bytes(f)
        if now > last_time:
            f.speed = 0.5 * f.speed + 0.5 * max(0, have - last_bytes) / (now - last_time)
        return have, now

    async def _download_complete(self, f: Transfer, download: Download) -> None:
        download.stopped.set()
        await self._persist(f)
        await self._set_state(f, TransferState.COMPLETE, error=None)
        f.speed = 0.0
        # Our sources stop counting on us; group members gain a source.
        for contact_id in f.sources | self._members_of_groups(f):
            conn = self._links.connection(contact_id)
            if conn is not None:
                conn.send(wire.FileHave(f.root))

    async def _wind_down(
        self, f: Transfer, download: Download, workers: dict[str, asyncio.Task[None]]
    ) -> None:
        """Ends a download run however it ended: channels closed, workers awaited, state
        saved, the store's files closed."""
        download.stopped.set()
        for channel in [c for c in self._channels if c.download is download]:
            channel.close()
        await asyncio.gather(*workers.values(), return_exceptions=True)
        await self._persist(f)
        await asyncio.get_running_loop().run_in_executor(self._pool, download.close)
        f.download = None
        f.last_download = download
        self._changed(f)
        if f.state is TransferState.DOWNLOADING and not self._closing:
            # Resumed while this run was winding down: go again once it is done.
            asyncio.get_running_loop().call_soon(self._start, f)

    async def _fetch_from(self, f: Transfer, download: Download, contact_id: str) -> None:
        channel = await self._open_channel(f, contact_id)
        if channel is None:
            return
        channel.download, channel.source = download, contact_id
        self._channels.add(channel)
        if download.stopped.is_set():
            channel.close()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._pool, fetch, channel, download, contact_id)
        except SourceMisbehaved as exc:
            log.warning("dropping %s as a source of %s: %s", contact_id[:8], f.row.name, exc)
            if download.manifest is None or "manifest" in str(exc):
                if len(self._other_sources(f)) <= 1:
                    download.error = StoreError(f"the sender's manifest is bad: {exc}")
            f.bad_sources.add(contact_id)
        except SourceStopped as exc:
            f.remote_paused[contact_id] = str(exc)
        except StoreError as exc:
            download.error = exc
            download.stopped.set()
        except (BulkError, OSError) as exc:
            if not download.stopped.is_set():
                log.info("fetching %s from %s stopped: %s", f.row.name, contact_id[:8], exc)
        finally:
            self._channels.discard(channel)
            channel.close()
            f.wake.set()

    async def _open_channel(self, f: Transfer, contact_id: str) -> Channel | None:
        """Asks the source for the file over its session and opens the bulk channel to it
        (a direct TCP connection, or the tunnel); None when it cannot be reached."""
        conn = self._links.connection(contact_id)
        if conn is None or conn.peer_address is None or conn.session.peer is None:
            return None
        host = conn.peer_address[0]
        port = conn.peer_address[1] if conn.initiator else conn.session.peer.hello.listen_port
        tunnelled = self._tunnel is not None and self._tunnel.wanted(contact_id, conn)
        if not port and not tunnelled:
            return None
        ticket, secret = nacl.utils.random(16), nacl.utils.random(32)
        conn.send(wire.FileRequest(f.root, ticket, secret))
        await conn.drain()
        d2s, s2d = derive_keys(secret)
        timeout = self._timing.connect_timeout
        opened: socket.socket | None = None

        def dial() -> Channel:
            sock = opened or socket.create_connection((host, port), timeout=timeout)
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(encode_preamble(ticket))
            return Channel(sock, send_key=d2s, recv_key=s2d)

        try:
            if tunnelled:
                assert self._tunnel is not None
                opened = await self._tunnel.open(contact_id)
            return await asyncio.get_running_loop().run_in_executor(self._pool, dial)
        except OSError as exc:
            log.info("cannot reach %s for %s: %s", contact_id[:8], f.row.name, exc)
            return None

    async def _stop_source(self, f: Transfer, contact_id: str) -> None:
        # Closing the source's channel makes its worker return; the rest carry on.
        for channel in list(self._channels):
            if channel.download is f.download and channel.source == contact_id:
                channel.close()
        f.wake.set()

    async def _stop(self, f: Transfer) -> None:
        if f.download is not None:
            f.download.stopped.set()
        if f.task is not None and not f.task.done():
            f.row = replace(f.row, state=int(TransferState.PAUSED))
            f.wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                await f.task

    async def _cancel_download(self, f: Transfer, reason: str | None = None) -> None:
        await self._stop(f)
        await asyncio.get_running_loop().run_in_executor(self._pool, self.store.delete, f.root)
        f.have = Bitmap(f.manifest.count) if f.manifest else None
        await self._set_state(
            f, TransferState.CANCELLED, error=reason, have=f.have.to_bytes() if f.have else None
        )

    def _space_shortfall(self, missing: int) -> str | None:
        """Why `missing` more bytes do not fit beside the database's margin, or None."""
        where = self.store.root_dir if self.store.root_dir.exists() else self.store.root_dir.parent
        usage = shutil.disk_usage(where)
        margin = min(DB_MARGIN, int(usage.total * DB_MARGIN_SHARE))
        if usage.free >= missing + margin:
            return None
        return (
            f"it needs {human_size(missing)} more, plus {human_size(margin)} kept free for "
            f"messages, and only {human_size(usage.free)} is free; free some space and "
            "accept it again"
        )

    async def _persist(self, f: Transfer) -> None:
        download = f.download
        if download is None or download.manifest is None:
            return
        loop = asyncio.get_running_loop()
        try:
            snapshot = await loop.run_in_executor(self._pool, download.sync)
        except StoreError as exc:
            download.error = exc
            return
        if f.manifest is None:
            f.manifest = download.manifest
            f.row = replace(f.row, manifest=download.manifest.encode())
            await self._db.run(self._repo.update, f.root, manifest=f.row.manifest)
        f.have = download.have
        if snapshot is not None and snapshot != f.row.have:
            f.row = replace(f.row, have=snapshot)
            await self._db.run(self._repo.update, f.root, have=snapshot)

    # -- news from sources and receivers ------------------------------------------------------

    async def _on_have(self, contact_id: str, root: bytes) -> None:
        f = self._files.get(root)
        if f is None:
            if root not in self._early_haves and len(self._early_haves) >= MAX_EARLY_HAVES:
                del self._early_haves[next(iter(self._early_haves))]
            self._early_haves.setdefault(root, set()).add(contact_id)
            return
        if contact_id not in f.sources:
            f.sources.add(contact_id)
            await self._db.run(self._repo.add_source, f.root, contact_id)
        f.peers[contact_id] = "received" if contact_id in f.peers else "has it"
        f.wake.set()
        self._changed(f)

    async def _on_control(self, contact_id: str, control: wire.FileControl) -> None:
        f = self._files.get(control.root)
        action = control.action
        if action is wire.FileAction.REJECT:
            name = f.row.name if f is not None else control.root.hex()[:12]
            self._emit(FileOfferRejected(contact_id, name, control.reason, False))
            if f is not None:
                f.peers[contact_id] = f"refused: {control.reason}"
                self._changed(f)
            return
        if f is None:
            return
        if action is wire.FileAction.UNAVAILABLE:
            f.remote_paused[contact_id] = "does not have it"
        elif contact_id in f.sources and f.state is not TransferState.COMPLETE:
            # From a source: the sender paused, resumed or withdrew the file.
            if action is wire.FileAction.PAUSE:
                f.remote_paused[contact_id] = control.reason or "paused by the sender"
                await self._stop_source(f, contact_id)
            elif action is wire.FileAction.RESUME:
                f.remote_paused.pop(contact_id, None)
                f.wake.set()
            elif action is wire.FileAction.CANCEL:
                # The file is withdrawn by this source; with no other source, it is over.
                f.sources.discard(contact_id)
                await self._stop_source(f, contact_id)
                if not self._other_sources(f):
                    reason = control.reason or "cancelled by the sender"
                    await self._cancel_download(f, reason=reason)
        else:
            # From a receiver of ours.
            f.peers[contact_id] = {
                wire.FileAction.PAUSE: "paused by them",
                wire.FileAction.RESUME: "downloading",
                wire.FileAction.CANCEL: "cancelled by them",
            }.get(action, f.peers.get(contact_id, ""))
        self._changed(f)

    def _other_sources(self, f: Transfer) -> set[str]:
        return f.sources - f.bad_sources

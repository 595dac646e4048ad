"""FileManager: offers, downloads from every source that has a file, pause/resume/cancel
(assembled from offers.py, download.py and serving.py over base.py).

Constructed by PeerService, which calls it from a handful of one-line hooks (messages of
tags 40-59, a contact's session going live, an inbound bulk preamble, outbox resends,
shutdown). Chunk work runs on worker threads (bulk.py, fetching.py); the event loop only
coordinates: it persists the bitmap of verified chunks twice a second and emits
TransferChanged.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FileError
from ..protocol import wire
from ..records import TransferRecord, TransferState
from .chunks import Bitmap, ManifestError, chunk_hash, decode_manifest, decrypt_chunk
from .names import human_size, sanitise
from .offers import FileOffers
from .serving import FileServing
from .store import StoreError
from .transfer import DEFAULT_FILE_SETTINGS, SETTING_RATE_LIMIT, Transfer

if TYPE_CHECKING:
    from ..net.transport import Connection

# human_size is re-exported for callers of this module (its home is files/names.py).
__all__ = ["FileManager", "human_size"]

log = logging.getLogger(__name__)


class FileManager(FileOffers, FileServing):
    """Files offered, downloaded and served. Built and wired by PeerService; its hooks:
    `load`, `on_message`, `contact_online`, `peek_inbound`, `send_offer_for`,
    `on_group_offers`, `aclose`."""

    # -- lifecycle ----------------------------------------------------------------------------

    async def load(self) -> None:
        """Reads back what the database holds, then resumes the downloads that ran."""
        db = self._db.run
        for key, default in DEFAULT_FILE_SETTINGS.items():
            self.settings[key] = int(await db(self._settings_repo.get_setting, key, default))
        for row in await db(self._repo.all):
            manifest = decode_manifest(row.manifest) if row.manifest else None
            have = Bitmap(manifest.count, row.have) if manifest and row.have else None
            self._files[row.root] = Transfer(row, manifest, have)
        await asyncio.get_running_loop().run_in_executor(self._pool, self._upgrade_store)
        await self._load_links()
        await self._load_group_links()
        for f in self._files.values():
            if f.state is TransferState.DOWNLOADING:
                self._start(f)

    async def _load_links(self) -> None:
        """Which 1:1 messages offer each file, and which contacts are its sources."""
        db = self._db.run
        for link in await db(self._repo.links):
            f = self._files.get(link.root)
            if f is not None:
                f.contacts[link.msg_id] = (link.contact_id, link.outgoing)
                if link.outgoing:
                    self._offer_msgs[link.msg_id] = link.root
        for root, contact_id in await db(self._repo.sources):
            if root in self._files:
                self._files[root].sources.add(contact_id)

    async def _load_group_links(self) -> None:
        """Which group messages offer each file; offers stored but not yet noted are noted."""
        unregistered = []
        for msg_id, group_id, author, outgoing, encoded in await self._groups.attachment_links():
            root = wire.decode_group_attachment(encoded).root
            f = self._files.get(root)
            if f is not None:
                f.groups[msg_id] = (group_id, outgoing)
            elif not outgoing:
                unregistered.append((msg_id, group_id, author, encoded))
        if unregistered:  # stored, then killed before the file was noted: note it now
            await self._register_group_offers(unregistered)

    def _upgrade_store(self) -> None:
        """Move attachments kept in an earlier version's layout to the current one."""
        for root in self.store.legacy_roots():
            f = self._files.get(root)
            try:
                self.store.upgrade_legacy(root, f.manifest if f is not None else None)
            except StoreError as exc:
                log.warning("attachment %s stays in its old layout: %s", root.hex()[:12], exc)

    async def aclose(self) -> None:
        self._closing = True
        for f in self._files.values():
            if f.download is not None:
                f.download.stopped.set()
        for channel in list(self._channels):
            channel.close()
        tasks = [t for t in self._tasks if not t.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for f in self._files.values():
            if f.download is not None:
                await self._persist(f)
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def configure(self, **values: int) -> dict[str, int]:
        """Change files.max_size, files.auto_accept_images or files.rate_limit (bytes)."""
        for short, value in values.items():
            key = f"files.{short}"
            if key not in DEFAULT_FILE_SETTINGS:
                raise FileError(f"unknown file setting {short!r}")
            if type(value) is not int or value < 0:
                raise FileError(f"{short} is a number of bytes (0 or more)")
            await self._db.run(self._settings_repo.set_setting, key, value)
            self.settings[key] = value
            if key == SETTING_RATE_LIMIT:
                for f in self._files.values():
                    if f.download is not None:
                        f.download.rate.rate = value
        return {k.removeprefix("files."): v for k, v in self.settings.items()}

    # -- public API ---------------------------------------------------------------------------

    def transfers(self) -> list[TransferRecord]:
        rows = sorted(self._files.values(), key=lambda f: -f.row.created_at)
        return [self._record(f) for f in rows]

    def find(self, transfer_id: str) -> TransferRecord:
        return self._record(self._find(transfer_id))

    def for_message(self, msg_id: bytes) -> TransferRecord | None:
        for f in self._files.values():
            if msg_id in f.contacts or msg_id in f.groups:
                return self._record(f)
        return None

    def file_key(self, transfer_id: str) -> bytes:
        """The key a file we know is encrypted with (what an offer of it carries)."""
        return self._find(transfer_id).row.file_key

    async def save_as(self, transfer_id: str, dest: Path) -> Path:
        """Decrypt a complete file to `dest` (a folder: under its sanitised name)."""
        f = self._find(transfer_id)
        if f.state is not TransferState.COMPLETE or f.manifest is None:
            raise FileError(f"{f.row.name} is not complete yet")
        manifest, name = f.manifest, sanitise(f.row.name)

        def export() -> Path:
            target = Path(dest).expanduser()
            if target.is_dir():
                target = target / name
            return self.store.export(f.root, manifest, f.row.file_key, target)

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, export)
        except (StoreError, ManifestError, ValueError) as exc:
            raise FileError(str(exc)) from None
        except OSError as exc:
            raise FileError(f"cannot write {dest}: {exc.strerror or exc}") from None

    async def plaintext(self, transfer_id: str, *, limit: int = 64 << 20) -> bytes:
        """A complete small file decrypted in memory (for thumbnails and the image viewer:
        nothing is written in the clear)."""
        f = self._find(transfer_id)
        manifest = f.manifest
        if f.state is not TransferState.COMPLETE or manifest is None:
            raise FileError(f"{f.row.name} is not complete yet")
        if f.row.size > limit:
            raise FileError(f"{f.row.name} is too big to show")

        def read() -> bytes:
            fd = self.store.open_for_reading(f.root) if manifest.count else -1
            try:
                parts = []
                for i in range(manifest.count):
                    data = self.store.read_chunk(fd, manifest, i)
                    if chunk_hash(data) != manifest.hashes[i]:
                        raise FileError(f"stored chunk {i} of {f.row.name} is damaged")
                    parts.append(decrypt_chunk(f.row.file_key, manifest.size, i, data))
                return b"".join(parts)
            finally:
                if fd >= 0:
                    os.close(fd)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, read)
        except (StoreError, OSError, ValueError) as exc:
            raise FileError(str(exc)) from None

    async def thumbnail(self, transfer_id: str) -> bytes | None:
        f = self._find(transfer_id)
        return await self._db.run(self._repo.thumbnail, f.root)

    async def set_thumbnail(self, transfer_id: str, data: bytes | None) -> None:
        f = self._find(transfer_id)
        await self._db.run(self._repo.set_thumbnail, f.root, data)

    # User actions on one file run one at a time (f.lock): a pause still winding down
    # must not overwrite the resume clicked right after it.

    async def accept(self, transfer_id: str) -> TransferRecord:
        f = self._find(transfer_id)
        async with f.lock:
            await self._accept(f)
        return self._record(f)

    async def _accept(self, f: Transfer) -> None:
        if f.state in (TransferState.OFFERED, TransferState.FAILED, TransferState.PAUSED):
            shortfall = self._space_shortfall(f.row.size - self._have_bytes(f))
            if shortfall is not None:
                raise FileError(f"cannot download {f.row.name}: {shortfall}")
            await self._set_state(f, TransferState.DOWNLOADING, error=None)
            self._start(f)
        elif f.state is TransferState.CANCELLED:
            raise FileError("this transfer was cancelled")

    async def resume(self, transfer_id: str) -> TransferRecord:
        f = self._find(transfer_id)
        async with f.lock:
            if f.state is TransferState.COMPLETE:
                if not f.row.serving:
                    await self._set_serving(f, True)
                    self._tell_all(f, wire.FileAction.RESUME, "resumed by the sender")
                return self._record(f)
            if f.state is TransferState.PAUSED:
                self._tell_sources(f, wire.FileAction.RESUME, "resumed by the receiver")
            await self._accept(f)
        return self._record(f)

    async def pause(self, transfer_id: str) -> TransferRecord:
        f = self._find(transfer_id)
        async with f.lock:
            if f.state is TransferState.COMPLETE:
                if f.row.serving:
                    await self._set_serving(f, False)
                    self._tell_all(f, wire.FileAction.PAUSE, "paused by the sender")
            elif f.state in (TransferState.DOWNLOADING, TransferState.OFFERED):
                await self._stop(f)
                await self._set_state(f, TransferState.PAUSED)
                self._tell_sources(f, wire.FileAction.PAUSE, "paused by the receiver")
        return self._record(f)

    async def cancel(self, transfer_id: str) -> TransferRecord:
        f = self._find(transfer_id)
        async with f.lock:
            if f.state is TransferState.COMPLETE:
                await self._set_serving(f, False)
                self._tell_all(f, wire.FileAction.CANCEL, "cancelled by the sender")
                return self._record(f)
            await self._cancel_download(f)
            self._tell_sources(f, wire.FileAction.CANCEL, "cancelled by the receiver")
        return self._record(f)

    # -- messages from contacts (service hook) ------------------------------------------------

    async def on_message(
        self, contact_id: str, conn: Connection, message: wire.WireMessage
    ) -> None:
        match message:
            case wire.FileOffer():
                await self._on_offer(contact_id, conn, message)
            case wire.FileRequest():
                self._on_request(contact_id, conn, message)
            case wire.FileControl():
                await self._on_control(contact_id, message)
            case wire.FileHave(root=root):
                await self._on_have(contact_id, root)

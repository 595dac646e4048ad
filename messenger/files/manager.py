"""FileManager: offers, downloads from every source that has a file, pause/resume/cancel.

Constructed by PeerService, which calls it from a handful of one-line hooks (messages of
tags 40-59, a contact's session going live, an inbound bulk preamble, outbox resends,
shutdown). Chunk work runs on worker threads (bulk.py); the event loop only coordinates:
it persists the bitmap of verified chunks twice a second and emits TransferChanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import os
import shutil
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import nacl.utils

from ..errors import ContactKeyChanged, FileError, GroupError
from ..events import FileOfferRejected, MessageAdded, TransferChanged
from ..identity import contact_id as make_contact_id
from ..protocol import wire
from ..records import GroupMessageRecord, MessageRecord, TransferRecord, TransferState
from ..storage.attachments import AttachmentRepo, AttachmentRow
from ..storage.group_repository import StoredGroupMessage
from ..storage.repository import IncomingMessage
from .bulk import (
    PEEK_LEN,
    PREAMBLE_LEN,
    BulkError,
    Channel,
    Download,
    RateLimit,
    Served,
    SourceMisbehaved,
    SourceStopped,
    derive_keys,
    encode_preamble,
    fetch,
    serve,
)
from .bulk import (
    encode_preamble as _encode_bulk_preamble,
)
from .chunks import (
    DEFAULT_CHUNK_SIZE,
    KEY_LEN,
    Bitmap,
    Manifest,
    ManifestError,
    check_geometry,
    chunk_hash,
    decode_manifest,
    decrypt_chunk,
)
from .names import BadName, check_mime, check_name, is_image, sanitise
from .store import AttachmentStore, StoreError

if TYPE_CHECKING:
    from ..core.ports import Clock, ContactKeyring, Db, Emit, LinkRegistry
    from ..net.transport import Connection, Timing
    from ..storage.repository import Repository

log = logging.getLogger(__name__)

SETTING_MAX_SIZE = "files.max_size"
SETTING_AUTO_ACCEPT_IMAGES = "files.auto_accept_images"
SETTING_RATE_LIMIT = "files.rate_limit"
DEFAULT_FILE_SETTINGS: dict[str, int] = {
    SETTING_MAX_SIZE: 4 << 30,  # bytes; bigger offers are refused
    SETTING_AUTO_ACCEPT_IMAGES: 10 << 20,  # images up to this size download unasked
    SETTING_RATE_LIMIT: 0,  # bytes per second per download; 0 = as fast as it goes
}
BULK_PEEK = _encode_bulk_preamble(bytes(16))[:PEEK_LEN]  # what starts every bulk preamble
TICKET_TTL = 30.0  # seconds a FileRequest's ticket waits for its bulk connection
MAX_BULK_CONNECTIONS = 32
# A download starts only with room for what is still missing plus this much for the
# database (arriving messages, bitmaps, the search index): 64 MiB, or 5 % of a smaller file
# system, so that a file never fills the disk the messages need (issue 14).
DB_MARGIN = 64 << 20
DB_MARGIN_SHARE = 0.05
PERSIST_INTERVAL = 0.5  # seconds between bitmap saves (and progress events)
RETRY_DELAY = 2.0  # seconds before a source that failed is tried again
# FileHave for files we have not heard of yet (a member announces what it holds as soon as
# a session comes up, before catch-up brings the group message that offers it): kept for
# this many roots, oldest forgotten first.
MAX_EARLY_HAVES = 1024


@dataclass(slots=True)
class _File:
    row: AttachmentRow
    manifest: Manifest | None
    have: Bitmap | None
    contacts: dict[bytes, tuple[str, bool]] = field(default_factory=dict)  # msg -> (who, ours)
    groups: dict[bytes, tuple[bytes, bool]] = field(default_factory=dict)  # msg -> (group, ours)
    sources: set[str] = field(default_factory=set)
    bad_sources: set[str] = field(default_factory=set)  # sent a bad chunk: never again
    remote_paused: dict[str, str] = field(default_factory=dict)  # source -> reason
    peers: dict[str, str] = field(default_factory=dict)  # contact -> status (our offers)
    served_bytes: dict[str, int] = field(default_factory=dict)
    download: Download | None = None
    last_download: Download | None = None  # the finished one, for its statistics
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    speed: float = 0.0
    last_emit: float = 0.0

    @property
    def root(self) -> bytes:
        return self.row.root

    @property
    def state(self) -> TransferState:
        return TransferState(self.row.state)

    @property
    def outgoing(self) -> bool:
        """We sent it (imported it ourselves) and nobody offered it to us."""
        links = [*self.contacts.values(), *self.groups.values()]
        return bool(links) and all(ours for _, ours in links)


@dataclass(slots=True)
class _Ticket:
    root: bytes
    contact_id: str
    secret: bytes
    expires: float
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


def human_size(n: float) -> str:
    """Sizes as the user sees them everywhere (messages, transfer panel, CLI): binary units."""
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(n)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{int(n)} bytes"


def offer_summary(name: str, size: int) -> str:
    """The chat text of a file message (searchable, and what older front ends show)."""
    return f"\U0001f4ce {name} ({human_size(size)})"


class GroupsPort(Protocol):
    """What files need of the groups worker (groups.py)."""

    def is_active(self, group_id: bytes) -> bool: ...

    def member_contacts(self, group_id: bytes) -> set[str]: ...

    async def send_text(
        self, group_id: bytes, body: str, *, attachment: wire.GroupAttachment | None = None
    ) -> GroupMessageRecord: ...

    async def attachment_links(self) -> list[tuple[bytes, bytes, bytes, bool, bytes]]: ...


class Tunnel(Protocol):
    """How a bulk connection reaches a contact whose session does not run over a direct
    address (through Tor): the service's side."""

    def wanted(self, contact_id: str, conn: Connection) -> bool:
        """Whether `conn` runs through a tunnel, so a bulk connection must too."""
        ...

    async def open(self, contact_id: str) -> socket.socket:
        """A connected socket to the contact's listener; OSError if none."""
        ...


class FileManager:
    """Files offered, downloaded and served. Built and wired by PeerService; its hooks:
    `load`, `on_message`, `contact_online`, `peek_inbound`, `send_offer_for`,
    `on_group_offers`, `aclose`."""

    def __init__(
        self,
        *,
        folder: Path,
        db: Db,
        repo: Repository,
        emit: Emit,
        clock: Clock,
        links: LinkRegistry,
        contacts: ContactKeyring,
        groups: GroupsPort,
        timing: Timing,
        tunnel: Tunnel | None = None,
    ) -> None:
        self._tunnel = tunnel
        self._db = db
        self._settings_repo = repo
        self._emit = emit
        self._clock = clock
        self._links = links
        self._contacts = contacts
        self._groups = groups
        self._timing = timing
        self.store = AttachmentStore(folder)
        self._repo = AttachmentRepo(repo)
        self._files: dict[bytes, _File] = {}
        self._offer_msgs: dict[bytes, bytes] = {}  # our offer's msg id -> root
        self._early_haves: dict[bytes, set[str]] = {}  # root -> contacts (see MAX_EARLY_HAVES)
        self._tickets: dict[bytes, _Ticket] = {}
        self._bulk_open = 0
        self._channels: set[Channel] = set()
        self._pool = ThreadPoolExecutor(max_workers=48, thread_name_prefix="chinwag-files")
        self._tasks: set[asyncio.Task[Any]] = set()
        self.settings: dict[str, int] = dict(DEFAULT_FILE_SETTINGS)
        self._closing = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def load(self) -> None:
        db = self._db.run
        for key, default in DEFAULT_FILE_SETTINGS.items():
            self.settings[key] = int(await db(self._settings_repo.get_setting, key, default))
        for row in await db(self._repo.all):
            manifest = decode_manifest(row.manifest) if row.manifest else None
            have = Bitmap(manifest.count, row.have) if manifest and row.have else None
            self._files[row.root] = _File(row, manifest, have)
        await asyncio.get_running_loop().run_in_executor(self._pool, self._upgrade_store)
        for link in await db(self._repo.links):
            f = self._files.get(link.root)
            if f is not None:
                f.contacts[link.msg_id] = (link.contact_id, link.outgoing)
                if link.outgoing:
                    self._offer_msgs[link.msg_id] = link.root
        for root, contact_id in await db(self._repo.sources):
            if root in self._files:
                self._files[root].sources.add(contact_id)
        group_links = await self._groups.attachment_links()
        unregistered = []
        for msg_id, group_id, author, outgoing, encoded in group_links:
            root = wire.decode_group_attachment(encoded).root
            f = self._files.get(root)
            if f is not None:
                f.groups[msg_id] = (group_id, outgoing)
            elif not outgoing:
                unregistered.append((msg_id, group_id, author, encoded))
        if unregistered:  # stored, then killed before the file was noted: note it now
            await self._register_group_offers(unregistered)
        for f in self._files.values():
            if f.state is TransferState.DOWNLOADING:
                self._start(f)

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

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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

    # -- public API -------------------------------------------------------------------------

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

    def _find(self, transfer_id: str) -> _File:
        prefix = transfer_id.strip().lower()
        if len(prefix) < 4:
            raise FileError("give at least 4 hex digits of the transfer id")
        found = [f for root, f in self._files.items() if root.hex().startswith(prefix)]
        if not found:
            raise FileError(f"no transfer {transfer_id!r}; see `file list`")
        if len(found) > 1:
            raise FileError(f"{transfer_id!r} matches several transfers; give more digits")
        return found[0]

    async def send_file(self, contact_id: str, path: Path) -> TransferRecord:
        """Encrypt a file into the store once and offer it in a conversation."""
        if contact_id not in self._contacts:
            raise FileError(f"no contact {contact_id}")
        if self._contacts.is_held(contact_id):
            raise ContactKeyChanged(contact_id, None)  # a changed safety number: not yet
        f = await self._import(path)
        await self._offer(f, contact_id)
        return self._record(f)

    async def send_to_group(self, group_id: bytes, path: Path) -> TransferRecord:
        """Encrypt a file into the store once and offer it to a group in a signed group
        message; every member that downloads it becomes a source for the others."""
        if not self._groups.is_active(group_id):
            raise FileError("you can only share files in a group you are a member of")
        f = await self._import(path)
        await self._offer_to_group(f, group_id)
        return self._record(f)

    async def _offer_to_group(self, f: _File, group_id: bytes) -> None:
        row = replace(f.row, serving=True)
        f.row = row
        await self._db.run(self._repo.save, row)
        attachment = wire.GroupAttachment(
            row.root, row.name, row.mime, row.size, row.chunk_size, row.file_key
        )
        try:
            record = await self._groups.send_text(
                group_id, offer_summary(row.name, row.size), attachment=attachment
            )
        except GroupError as exc:
            raise FileError(str(exc)) from None
        f.groups[record.msg_id] = (group_id, True)
        self._changed(f)

    async def _import(self, path: Path) -> _File:
        """The file encrypted into the store with a fresh key: a complete transfer of ours."""
        path = Path(path)
        try:
            size = path.stat().st_size
            if not path.is_file():
                raise FileError(f"{path} is not a file")
        except OSError as exc:
            raise FileError(f"cannot read {path}: {exc.strerror or exc}") from None
        if size > self.settings[SETTING_MAX_SIZE]:
            raise FileError(
                f"{path.name} is {human_size(size)}; the limit is "
                f"{human_size(self.settings[SETTING_MAX_SIZE])} (files.max_size)"
            )
        name = sanitise(path.name)
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        key = nacl.utils.random(KEY_LEN)
        loop = asyncio.get_running_loop()
        try:
            manifest = await loop.run_in_executor(
                self._pool, lambda: self.store.import_file(path, key, chunk_size=DEFAULT_CHUNK_SIZE)
            )
        except StoreError as exc:
            raise FileError(str(exc)) from None
        except OSError as exc:
            raise FileError(f"cannot read {path}: {exc.strerror or exc}") from None
        have = Bitmap.full(manifest.count)
        row = AttachmentRow(
            root=manifest.root,
            name=name,
            mime=mime,
            size=size,
            chunk_size=manifest.chunk_size,
            file_key=key,
            manifest=manifest.encode(),
            have=have.to_bytes(),
            state=int(TransferState.COMPLETE),
            serving=True,
            error=None,
            created_at=self._clock(),
        )
        f = _File(row, manifest, have)
        self._files[row.root] = f
        return f

    async def forward(self, transfer_id: str, contact_id: str) -> TransferRecord:
        """Offer a file we hold (all of it) to another contact: we become one of its sources."""
        f = self._find(transfer_id)
        if f.state is not TransferState.COMPLETE:
            raise FileError("only a complete file can be passed on")
        if contact_id not in self._contacts:
            raise FileError(f"no contact {contact_id}")
        if self._contacts.is_held(contact_id):
            raise ContactKeyChanged(contact_id, None)  # a changed safety number: not yet
        await self._offer(f, contact_id)
        return self._record(f)

    async def forward_to_group(self, transfer_id: str, group_id: bytes) -> TransferRecord:
        """Share a file we hold (all of it) in a group: a signed group message offers it,
        and we serve it to the members, as for a file shared there first."""
        f = self._find(transfer_id)
        if f.state is not TransferState.COMPLETE:
            raise FileError("only a complete file can be passed on")
        if not self._groups.is_active(group_id):
            raise FileError("you can only share files in a group you are a member of")
        await self._offer_to_group(f, group_id)
        return self._record(f)

    async def _offer(self, f: _File, contact_id: str) -> None:
        now_ms = int(self._clock() * 1000)
        row = replace(f.row, serving=True)
        f.row = row
        record = await self._db.run(
            self._repo.queue_offer, row, contact_id, offer_summary(row.name, row.size), now_ms
        )
        f.contacts[record.msg_id] = (contact_id, True)
        f.peers[contact_id] = "offered"
        self._offer_msgs[record.msg_id] = row.root
        self._emit(MessageAdded(record))
        self._changed(f)
        conn = self._links.ready(contact_id)
        if conn is not None:
            self.send_offer_for(conn, record)
        else:
            self._links.poke(contact_id)

    def send_offer_for(self, conn: Connection, record: MessageRecord) -> bool:
        """Service hook (outbox flush): send our offer if `record` is one; True if it was."""
        root = self._offer_msgs.get(record.msg_id)
        if root is None:
            return False
        f = self._files.get(root)
        if f is None or conn.contact_id is None:
            return True  # cancelled and deleted: nothing to offer
        conn.send(
            wire.FileOffer(
                msg_id=record.msg_id,
                conversation=self._contacts.conversation(conn.contact_id),
                seq=record.seq,
                lamport=record.lamport,
                sent_at_ms=record.sent_at_ms,
                root=root,
                name=f.row.name,
                mime=f.row.mime,
                size=f.row.size,
                chunk_size=f.row.chunk_size,
                key=f.row.file_key,
            )
        )
        return True

    # User actions on one file run one at a time (f.lock): a pause still winding down
    # must not overwrite the resume clicked right after it.

    async def accept(self, transfer_id: str) -> TransferRecord:
        f = self._find(transfer_id)
        async with f.lock:
            await self._accept(f)
        return self._record(f)

    async def _accept(self, f: _File) -> None:
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

    # -- messages from contacts (service hook) ----------------------------------------------

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

    def _check_offer(self, contact_id: str, offer: wire.FileOffer) -> str | None:
        """Why a received offer is refused, or None. Every field came from the peer."""
        if offer.conversation != self._contacts.conversation(contact_id):
            return "the offer is for an unknown conversation"
        if offer.lamport >= 1 << 62 or offer.seq >= 1 << 62:
            return "implausible Lamport time or sequence number"
        return self._check_file(
            offer.root, offer.name, offer.mime, offer.size, offer.chunk_size, offer.key
        )

    def _check_file(
        self, root: bytes, name: str, mime: str, size: int, chunk_size: int, key: bytes
    ) -> str | None:
        """Why a file offered to us (1:1 or in a group) is refused, or None."""
        try:
            check_name(name)
            check_mime(mime)
            check_geometry(size, chunk_size, self.settings[SETTING_MAX_SIZE])
        except (BadName, ManifestError) as exc:
            return str(exc)
        known = self._files.get(root)
        if known is not None and (
            known.row.size != size
            or known.row.chunk_size != chunk_size
            or known.row.file_key != key
        ):
            return "the offer conflicts with a file we already know by that root hash"
        return None

    def _offered_row(
        self, root: bytes, name: str, mime: str, size: int, chunk_size: int, key: bytes
    ) -> AttachmentRow:
        """A file offered to us as it is first stored (images under the limit download
        unasked)."""
        auto = is_image(mime) and size <= self.settings[SETTING_AUTO_ACCEPT_IMAGES]
        auto = auto and self._space_shortfall(size) is None  # else the user decides
        return AttachmentRow(
            root=root,
            name=name,
            mime=mime,
            size=size,
            chunk_size=chunk_size,
            file_key=key,
            manifest=None,
            have=None,
            state=int(TransferState.DOWNLOADING if auto else TransferState.OFFERED),
            serving=True,
            error=None,
            created_at=self._clock(),
        )

    # -- files offered in groups (groups.py calls on_group_offers after storing them) --------

    async def on_group_offers(self, messages: list[StoredGroupMessage]) -> None:
        await self._register_group_offers(
            [(m.msg_id, m.group_id, m.author, m.attachment) for m in messages if m.attachment]
        )

    async def _register_group_offers(self, offers: list[tuple[bytes, bytes, bytes, bytes]]) -> None:
        """Note files offered in stored group messages (msg id, group, author key, attachment
        as stored). A refused one leaves its message as text; the author is a source."""
        for msg_id, group_id, author, encoded in offers:
            a = wire.decode_group_attachment(encoded)
            author_id = make_contact_id(author)
            reason = self._check_file(a.root, a.name, a.mime, a.size, a.chunk_size, a.key)
            if reason is not None:
                log.warning("refused a file offered in a group by %s: %s", author_id[:8], reason)
                self._emit(FileOfferRejected(author_id, sanitise(a.name), reason, True))
                continue
            row = self._offered_row(a.root, a.name, a.mime, a.size, a.chunk_size, a.key)
            await self._db.run(self._repo.store_group_offer, row, author_id)
            f = self._files.get(a.root)
            if f is None:
                f = _File(row, None, None)
                self._files[a.root] = f
            f.groups[msg_id] = (group_id, False)
            for source in {author_id} | self._early_haves.pop(a.root, set()):
                if source not in f.sources:
                    f.sources.add(source)
                    if source != author_id:
                        await self._db.run(self._repo.add_source, a.root, source)
            self._changed(f)
            f.wake.set()
            if f.state is TransferState.DOWNLOADING:
                self._start(f)

    def _members_of_groups(self, f: _File) -> set[str]:
        """Everyone in the groups the file was shared in (they may hold it or want it)."""
        members: set[str] = set()
        for group_id, _ in f.groups.values():
            members |= self._groups.member_contacts(group_id)
        return members

    async def _on_offer(self, contact_id: str, conn: Connection, offer: wire.FileOffer) -> None:
        reason = self._check_offer(contact_id, offer)
        if reason is not None:
            log.warning("refused a file offer from %s: %s", contact_id[:8], reason)
            conn.send(wire.FileControl(offer.root, wire.FileAction.REJECT, reason[:200]))
            conn.send(wire.Receipt(wire.ReceiptKind.DELIVERED, (offer.msg_id,)))
            self._emit(FileOfferRejected(contact_id, sanitise(offer.name), reason, True))
            return
        row = self._offered_row(
            offer.root, offer.name, offer.mime, offer.size, offer.chunk_size, offer.key
        )
        message = IncomingMessage(
            offer.msg_id,
            offer.seq,
            offer.lamport,
            offer.sent_at_ms,
            offer_summary(offer.name, offer.size),
        )
        now_ms = int(self._clock() * 1000)
        stored = await self._db.run(self._repo.store_offer, row, contact_id, message, now_ms)
        conn.send(wire.Receipt(wire.ReceiptKind.DELIVERED, (offer.msg_id,)))
        f = self._files.get(offer.root)
        if f is None:
            f = _File(row, None, None)
            self._files[offer.root] = f
        f.contacts[offer.msg_id] = (contact_id, False)
        f.sources.add(contact_id)
        if stored is not None:
            self._emit(MessageAdded(stored))
        self._changed(f)
        f.wake.set()
        if f.state is TransferState.DOWNLOADING:
            self._start(f)

    def _on_request(self, contact_id: str, conn: Connection, request: wire.FileRequest) -> None:
        f = self._files.get(request.root)
        if f is None or f.have is None or f.have.have == 0:
            conn.send(wire.FileControl(request.root, wire.FileAction.UNAVAILABLE, "not held here"))
            return
        if not f.row.serving:
            reason = "paused by the sender" if f.state is TransferState.COMPLETE else "not served"
            conn.send(wire.FileControl(request.root, wire.FileAction.PAUSE, reason))
            return
        now = time.monotonic()
        for ticket in [t for t, v in self._tickets.items() if v.expires < now]:
            del self._tickets[ticket]
        self._tickets[request.ticket] = _Ticket(
            request.root, contact_id, request.secret, now + TICKET_TTL
        )
        if contact_id not in f.peers or f.peers[contact_id] == "offered":
            f.peers[contact_id] = "downloading"

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

    def _other_sources(self, f: _File) -> set[str]:
        return f.sources - f.bad_sources

    # -- inbound bulk connections (service hook) --------------------------------------------

    async def peek_inbound(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        settled: Callable[[], None] = lambda: None,
    ) -> bytes | None:
        """The first bytes of an inbound connection: a bulk preamble is handled here (and
        None returned); anything else is returned as soon as it differs from one (or at
        EOF), for the chat session to start with. `settled()` is called once a whole bulk
        preamble arrived, before the (long) transfer: the connection no longer counts as
        a stranger's (a preamble with no valid ticket is closed at once)."""
        got = b""
        try:
            async with asyncio.timeout(self._timing.handshake_timeout):
                while len(got) < PEEK_LEN and got == BULK_PEEK[: len(got)]:
                    more = await reader.read(PEEK_LEN - len(got))
                    if not more:
                        return got  # EOF: the session reports it
                    got += more
                if got != BULK_PEEK:
                    return got
                ticket = await reader.readexactly(PREAMBLE_LEN - PEEK_LEN)
        except TimeoutError:
            log.info("closing an inbound connection: handshake timed out")
            writer.close()
            return None
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return None
        settled()
        await self._serve_inbound(writer, ticket)
        return None

    async def _serve_inbound(self, writer: asyncio.StreamWriter, ticket_id: bytes) -> None:
        ticket = self._tickets.pop(ticket_id, None)
        if ticket is None or self._closing or self._bulk_open >= MAX_BULK_CONNECTIONS:
            writer.close()
            return
        f = self._files.get(ticket.root)
        if f is None or f.manifest is None or f.have is None:
            writer.close()
            return
        raw = writer.get_extra_info("socket")
        sock = socket.socket(fileno=os.dup(raw.fileno()))
        writer.transport.abort()  # asyncio lets go; our duplicate keeps the connection
        sock.setblocking(True)
        d2s, s2d = derive_keys(ticket.secret)
        channel = Channel(sock, send_key=s2d, recv_key=d2s)
        contact_id = ticket.contact_id
        loop = asyncio.get_running_loop()

        def is_serving() -> str | None:
            if self._closing:
                return "the sender is shutting down"
            return None if f.row.serving else "paused by the sender"

        def on_served(n: int) -> None:
            loop.call_soon_threadsafe(self._served, f, contact_id, n)

        served = Served(f.root, f.manifest, f.have, is_serving, on_served)
        self._bulk_open += 1
        self._channels.add(channel)
        try:
            await loop.run_in_executor(self._pool, serve, channel, self.store, served)
        except (BulkError, OSError) as exc:
            log.info("serving %s to %s ended: %s", f.row.name, contact_id[:8], exc)
        finally:
            self._bulk_open -= 1
            self._channels.discard(channel)
            channel.close()

    def _served(self, f: _File, contact_id: str, n: int) -> None:
        f.served_bytes[contact_id] = f.served_bytes.get(contact_id, 0) + n
        now = time.monotonic()
        if now - f.last_emit >= PERSIST_INTERVAL:
            f.last_emit = now
            self._changed(f)

    # -- downloading --------------------------------------------------------------------------

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

    def _start(self, f: _File) -> None:
        if self._closing or (f.task is not None and not f.task.done()):
            return
        f.task = self._spawn(self._download(f), f"chinwag-download-{f.root.hex()[:8]}")

    async def _download(self, f: _File) -> None:
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
                now = time.monotonic()
                for contact_id in sorted(f.sources - f.bad_sources):
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
                f.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PERSIST_INTERVAL):
                        await f.wake.wait()
                if download.error is not None:
                    await self._set_state(f, TransferState.FAILED, error=str(download.error))
                    if "manifest" in str(download.error):
                        self._tell_sources(f, wire.FileAction.REJECT, str(download.error)[:200])
                    break
                await self._persist(f)
                now = time.monotonic()
                have = self._have_bytes(f)
                if now > last_time:
                    f.speed = 0.5 * f.speed + 0.5 * max(0, have - last_bytes) / (now - last_time)
                last_bytes, last_time = have, now
                self._changed(f)
            if download.complete and f.state is TransferState.DOWNLOADING:
                download.stopped.set()
                await self._persist(f)
                await self._set_state(f, TransferState.COMPLETE, error=None)
                f.speed = 0.0
                # Our sources stop counting on us; group members gain a source.
                for contact_id in f.sources | self._members_of_groups(f):
                    conn = self._links.connection(contact_id)
                    if conn is not None:
                        conn.send(wire.FileHave(f.root))
        finally:
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

    async def _fetch_from(self, f: _File, download: Download, contact_id: str) -> None:
        conn = self._links.connection(contact_id)
        if conn is None or conn.peer_address is None or conn.session.peer is None:
            return
        host = conn.peer_address[0]
        port = conn.peer_address[1] if conn.initiator else conn.session.peer.hello.listen_port
        tunnelled = self._tunnel is not None and self._tunnel.wanted(contact_id, conn)
        if not port and not tunnelled:
            return
        ticket, secret = nacl.utils.random(16), nacl.utils.random(32)
        conn.send(wire.FileRequest(f.root, ticket, secret))
        await conn.drain()
        d2s, s2d = derive_keys(secret)
        loop = asyncio.get_running_loop()
        timeout = self._timing.connect_timeout
        opened: socket.socket | None = None
        if tunnelled:
            assert self._tunnel is not None
            try:
                opened = await self._tunnel.open(contact_id)
            except OSError as exc:
                log.info("cannot reach %s for %s: %s", contact_id[:8], f.row.name, exc)
                return

        def dial() -> Channel:
            sock = opened or socket.create_connection((host, port), timeout=timeout)
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(encode_preamble(ticket))
            return Channel(sock, send_key=d2s, recv_key=s2d)

        try:
            channel = await loop.run_in_executor(self._pool, dial)
        except OSError as exc:
            log.info("cannot reach %s for %s: %s", contact_id[:8], f.row.name, exc)
            return
        channel.download, channel.source = download, contact_id
        self._channels.add(channel)
        if download.stopped.is_set():
            channel.close()
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

    async def _stop_source(self, f: _File, contact_id: str) -> None:
        # Closing the source's channel makes its worker return; the rest carry on.
        for channel in list(self._channels):
            if channel.download is f.download and channel.source == contact_id:
                channel.close()
        f.wake.set()

    async def _stop(self, f: _File) -> None:
        if f.download is not None:
            f.download.stopped.set()
        if f.task is not None and not f.task.done():
            f.row = replace(f.row, state=int(TransferState.PAUSED))
            f.wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                await f.task

    async def _cancel_download(self, f: _File, reason: str | None = None) -> None:
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

    def _have_bytes(self, f: _File) -> int:
        manifest, have = f.manifest, f.have
        if f.download is not None and f.download.manifest is not None:
            manifest, have = f.download.manifest, f.download.have
        if manifest is None or have is None:
            return f.row.size if f.state is TransferState.COMPLETE else 0
        if have.complete:
            return manifest.size
        return sum(manifest.stored_size(i) - 16 for i in range(manifest.count) if i in have)

    async def _persist(self, f: _File) -> None:
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

    async def _set_state(self, f: _File, state: TransferState, **values: Any) -> None:
        f.row = replace(f.row, state=int(state), **values)
        await self._db.run(self._repo.update, f.root, state=int(state), **values)
        self._changed(f)

    async def _set_serving(self, f: _File, serving: bool) -> None:
        f.row = replace(f.row, serving=serving)
        await self._db.run(self._repo.update, f.root, serving=serving)
        self._changed(f)

    def _tell_sources(self, f: _File, action: wire.FileAction, reason: str) -> None:
        for contact_id in f.sources:
            self._tell(contact_id, f.root, action, reason)

    def _tell_all(self, f: _File, action: wire.FileAction, reason: str) -> None:
        for contact_id in {c for c, _ in f.contacts.values()} | set(f.peers):
            self._tell(contact_id, f.root, action, reason)

    def _tell(self, contact_id: str, root: bytes, action: wire.FileAction, reason: str) -> None:
        conn = self._links.connection(contact_id)
        if conn is not None:
            conn.send(wire.FileControl(root, action, reason))

    # -- records and events -----------------------------------------------------------------

    def _changed(self, f: _File) -> None:
        self._emit(TransferChanged(self._record(f)))

    def _record(self, f: _File) -> TransferRecord:
        download = f.download or f.last_download
        error = f.row.error
        if error is None and f.state is TransferState.DOWNLOADING:
            usable = f.sources - f.bad_sources
            waiting = [f.remote_paused[c] for c in usable if c in f.remote_paused]
            if usable and len(waiting) == len(usable):
                error = waiting[0]
            elif not any(self._links.is_online(c) for c in usable):
                error = "waiting for a source to come online"
        peers = dict(f.peers)
        for contact_id, n in f.served_bytes.items():
            status = peers.get(contact_id, "downloading")
            peers[contact_id] = f"{status}, {human_size(n)} sent"
        return TransferRecord(
            id=f.root.hex(),
            name=f.row.name,
            mime=f.row.mime,
            size=f.row.size,
            state=f.state,
            have_bytes=self._have_bytes(f),
            outgoing=f.outgoing,
            serving=f.row.serving and f.state is TransferState.COMPLETE,
            contacts=tuple(dict.fromkeys(c for c, _ in f.contacts.values())),
            groups=tuple(dict.fromkeys(g.hex() for g, _ in f.groups.values())),
            sources=tuple(sorted(f.sources)),
            dropped_sources=tuple(sorted(f.bad_sources)),
            error=error,
            speed=f.speed,
            fetched_chunks=download.fetched if download else 0,
            chunks_by_source=tuple(sorted(download.per_source.items())) if download else (),
            msg_ids=(*f.contacts, *f.groups),
            peers=tuple(sorted(peers.items())),
        )

"""Offering files (1:1 and in groups) and taking in the offers of others."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import nacl.utils

from ..errors import ContactKeyChanged, FileError, GroupError
from ..events import FileOfferRejected, MessageAdded
from ..groups.model import group_key
from ..identity import contact_id as make_contact_id
from ..protocol import wire
from ..records import GroupId, MessageRecord, TransferRecord, TransferState
from ..storage.attachments import AttachmentRow
from ..storage.group_rows import StoredGroupMessage
from ..storage.repository import IncomingMessage
from .chunks import DEFAULT_CHUNK_SIZE, KEY_LEN, Bitmap, ManifestError, check_geometry
from .download import FileDownloads
from .names import BadName, check_mime, check_name, human_size, is_image, sanitise
from .store import StoreError
from .transfer import (
    SETTING_AUTO_ACCEPT_IMAGES,
    SETTING_MAX_SIZE,
    Transfer,
    offer_summary,
)

if TYPE_CHECKING:
    from ..net.transport import Connection

log = logging.getLogger(__name__)


class FileOffers(FileDownloads):
    """Our offers (a file imported once, offered to contacts and groups) and theirs."""

    async def send_file(self, contact_id: str, path: Path) -> TransferRecord:
        """Encrypt a file into the store once and offer it in a conversation."""
        if contact_id not in self._contacts:
            raise FileError(f"no contact {contact_id}")
        if self._contacts.is_held(contact_id):
            raise ContactKeyChanged(contact_id, None)  # a changed safety number: not yet
        f = await self._import(path)
        await self._offer(f, contact_id)
        return self._record(f)

    async def send_to_group(self, group_id: GroupId, path: Path) -> TransferRecord:
        """Encrypt a file into the store once and offer it to a group in a signed group
        message; every member that downloads it becomes a source for the others."""
        key = self._member_of(group_id)
        f = await self._import(path)
        await self._offer_to_group(f, group_id, key)
        return self._record(f)

    def _member_of(self, group_id: GroupId) -> bytes:
        """The group's id as files holds it (bytes, as storage does), if we are a member."""
        try:
            key = group_key(group_id)
        except GroupError as exc:
            raise FileError(str(exc)) from None
        if not self._groups.is_active(key):
            raise FileError("you can only share files in a group you are a member of")
        return key

    async def _offer_to_group(self, f: Transfer, group_id: GroupId, key: bytes) -> None:
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
        f.groups[record.msg_id] = (key, True)
        self._changed(f)

    async def _import(self, path: Path) -> Transfer:
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
        f = Transfer(row, manifest, have)
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

    async def forward_to_group(self, transfer_id: str, group_id: GroupId) -> TransferRecord:
        """Share a file we hold (all of it) in a group: a signed group message offers it,
        and we serve it to the members, as for a file shared there first."""
        f = self._find(transfer_id)
        if f.state is not TransferState.COMPLETE:
            raise FileError("only a complete file can be passed on")
        key = self._member_of(group_id)
        await self._offer_to_group(f, group_id, key)
        return self._record(f)

    async def _offer(self, f: Transfer, contact_id: str) -> None:
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

    # -- offers from contacts -----------------------------------------------------------------

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
            f = Transfer(row, None, None)
            self._files[offer.root] = f
        f.contacts[offer.msg_id] = (contact_id, False)
        f.sources.add(contact_id)
        if stored is not None:
            self._emit(MessageAdded(stored))
        self._changed(f)
        f.wake.set()
        if f.state is TransferState.DOWNLOADING:
            self._start(f)

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

    # -- files offered in groups (groups/sync.py calls on_group_offers after storing them) ---

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
                f = Transfer(row, None, None)
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

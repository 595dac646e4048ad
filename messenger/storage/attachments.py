"""Reads and writes of the attachment tables (the files worker runs them on the DB thread)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..records import MessageRecord
from .models import Attachment, AttachmentMessage, AttachmentSource
from .repository import IncomingMessage, Repository


@dataclass(frozen=True, slots=True)
class AttachmentRow:
    root: bytes
    name: str
    mime: str
    size: int
    chunk_size: int
    file_key: bytes
    manifest: bytes | None
    have: bytes | None
    state: int
    serving: bool
    error: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class AttachmentLink:
    msg_id: bytes
    root: bytes
    contact_id: str
    outgoing: bool


_COLUMNS = (
    Attachment.root,
    Attachment.name,
    Attachment.mime,
    Attachment.size,
    Attachment.chunk_size,
    Attachment.file_key,
    Attachment.manifest,
    Attachment.have,
    Attachment.state,
    Attachment.serving,
    Attachment.error,
    Attachment.created_at,
)


def _row(r: Sequence[Any]) -> AttachmentRow:
    return AttachmentRow(
        root=r[0],
        name=r[1],
        mime=r[2],
        size=r[3],
        chunk_size=r[4],
        file_key=r[5],
        manifest=r[6],
        have=r[7],
        state=r[8],
        serving=bool(r[9]),
        error=r[10],
        created_at=r[11],
    )


class AttachmentRepo:
    def __init__(self, repo: Repository) -> None:
        self._repo = repo

    @property
    def engine(self) -> Engine:
        return self._repo.engine

    def all(self) -> list[AttachmentRow]:
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(select(*_COLUMNS)).all()]

    def links(self) -> list[AttachmentLink]:
        cols = (
            AttachmentMessage.msg_id,
            AttachmentMessage.root,
            AttachmentMessage.contact_id,
            AttachmentMessage.outgoing,
        )
        with self.engine.connect() as conn:
            return [
                AttachmentLink(r[0], r[1], r[2], bool(r[3])) for r in conn.execute(select(*cols))
            ]

    def sources(self) -> list[tuple[bytes, str]]:
        cols = (AttachmentSource.root, AttachmentSource.contact_id)
        with self.engine.connect() as conn:
            return [(r[0], r[1]) for r in conn.execute(select(*cols))]

    def save(self, row: AttachmentRow) -> None:
        values = {c.key: getattr(row, c.key) for c in _COLUMNS}
        stmt = sqlite_insert(Attachment).values(**values)
        stmt = stmt.on_conflict_do_update(index_elements=[Attachment.root], set_=values)
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def update(self, root: bytes, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(Attachment).where(Attachment.root == root).values(**values))

    def add_source(self, root: bytes, contact_id: str) -> None:
        stmt = sqlite_insert(AttachmentSource).values(root=root, contact_id=contact_id)
        with self.engine.begin() as conn:
            conn.execute(stmt.on_conflict_do_nothing())

    def queue_offer(
        self, row: AttachmentRow, contact_id: str, summary: str, now_ms: int
    ) -> MessageRecord:
        """Our offer: the attachment, then its chat message in our outbox, then the link."""
        self.save(row)
        record = self._repo.queue_outgoing_many([(contact_id, summary)], now_ms)[0]
        self._link(record.msg_id, row.root, contact_id, outgoing=True)
        return record

    def store_offer(
        self, row: AttachmentRow, contact_id: str, message: IncomingMessage, now_ms: int
    ) -> MessageRecord | None:
        """Their offer: keep what we know of the file (a second offer of a known file only
        adds a source), store the message, link them. None if the message is a duplicate."""
        stmt = sqlite_insert(Attachment).values(**{c.key: getattr(row, c.key) for c in _COLUMNS})
        with self.engine.begin() as conn:
            conn.execute(stmt.on_conflict_do_nothing())
        self.add_source(row.root, contact_id)
        stored = self._repo.store_incoming([(contact_id, [message])], now_ms)
        self._link(message.msg_id, row.root, contact_id, outgoing=False)
        return stored[0] if stored else None

    def store_group_offer(self, row: AttachmentRow, author_id: str) -> None:
        """A file offered in a group: noted once (later offers of it add a source); its
        message is the group message, stored before this is called."""
        stmt = sqlite_insert(Attachment).values(**{c.key: getattr(row, c.key) for c in _COLUMNS})
        with self.engine.begin() as conn:
            conn.execute(stmt.on_conflict_do_nothing())
            conn.execute(
                sqlite_insert(AttachmentSource)
                .values(root=row.root, contact_id=author_id)
                .on_conflict_do_nothing()
            )

    def _link(self, msg_id: bytes, root: bytes, contact_id: str, *, outgoing: bool) -> None:
        stmt = sqlite_insert(AttachmentMessage).values(
            msg_id=msg_id, root=root, contact_id=contact_id, outgoing=outgoing
        )
        with self.engine.begin() as conn:
            conn.execute(stmt.on_conflict_do_nothing())

    def set_thumbnail(self, root: bytes, data: bytes | None) -> None:
        self.update(root, thumbnail=data)

    def thumbnail(self, root: bytes) -> bytes | None:
        with self.engine.connect() as conn:
            value = conn.execute(select(Attachment.thumbnail).where(Attachment.root == root))
            return value.scalar()

    def delete(self, root: bytes) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(Attachment).where(Attachment.root == root))

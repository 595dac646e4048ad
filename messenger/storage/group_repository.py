"""Reads and writes of group state (docs/protocol.md §16). Synchronous, like Repository: the
service runs it on its one database thread. It shares the Repository's engine (which a
re-key replaces), so it always asks the Repository for the current one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select, update

from .group_rows import (
    GROUP_MESSAGE_COLUMNS,
    StoredGroupMessage,
    delivery_marks,
    stored_group_message,
)
from .models import ChatGroup, Contact
from .repository import (
    NewContact,
    Repository,
    _cursor,
    fts_match,
    fts_params,
    fts_search_sql,
)


@dataclass(frozen=True, slots=True)
class GroupRow:
    id: bytes
    name: str
    epoch: int
    roster_hash: bytes
    roster: bytes
    state: int
    lamport: int
    next_seq: int
    created_at: float


@dataclass(frozen=True, slots=True)
class NewGroupMessage:
    msg_id: bytes
    group_id: bytes
    author: bytes
    seq: int
    epoch: int
    lamport: int
    sent_at_ms: int
    body: str
    signature: bytes
    outgoing: bool
    attachment: bytes | None = None


_INSERT_HEAD = (
    "INSERT INTO group_messages (msg_id, group_id, author, seq, epoch, lamport, sent_at_ms, "
    "received_at_ms, body, signature, outgoing, seen, attachment) VALUES "
)
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_TAIL = " ON CONFLICT DO NOTHING"
_INSERT_CHUNK = 70  # rows per INSERT: 13 parameters each, under SQLite's old limit of 999


def _row(m: NewGroupMessage, now_ms: int) -> tuple[Any, ...]:
    """A message's values in _INSERT_HEAD's order."""
    return (
        m.msg_id,
        m.group_id,
        m.author,
        m.seq,
        m.epoch,
        m.lamport,
        m.sent_at_ms,
        None if m.outgoing else now_ms,
        m.body,
        m.signature,
        int(m.outgoing),
        int(m.outgoing),
        m.attachment,
    )


def _stored(m: NewGroupMessage, row_id: int, now_ms: int) -> StoredGroupMessage:
    return StoredGroupMessage(
        row_id,
        m.msg_id,
        m.group_id,
        m.author,
        m.seq,
        m.epoch,
        m.lamport,
        m.sent_at_ms,
        None if m.outgoing else now_ms,
        m.body,
        m.signature,
        m.outgoing,
        m.outgoing,
        m.attachment,
    )


def _existing_group_msg_ids(cur: Any, msg_ids: Sequence[bytes]) -> set[bytes]:
    """Which of these group message ids are stored already (usually none)."""
    found: set[bytes] = set()
    for start in range(0, len(msg_ids), 500):
        chunk = msg_ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        # Only "?" placeholders are interpolated; every value is a parameter.
        sql = f"SELECT msg_id FROM group_messages WHERE msg_id IN ({marks})"  # noqa: S608
        found.update(row[0] for row in cur.execute(sql, chunk).fetchall())
    return found


def _insert_group_messages(cur: Any, rows: Sequence[tuple[Any, ...]]) -> list[int | None]:
    """Insert rows (new ids, usually none conflicting); each row's new row id, in order,
    or None for a row dropped as a duplicate of a stored (group, author, seq)."""
    row_ids: list[int | None] = []
    if not rows:
        return row_ids
    if len(rows) == 1:
        cur.execute(_INSERT_HEAD + _ROW + _INSERT_TAIL, rows[0])
        return [cur.lastrowid if cur.rowcount == 1 else None]
    (last,) = cur.execute("SELECT coalesce(max(id), 0) FROM group_messages").fetchone()
    for start in range(0, len(rows), _INSERT_CHUNK):
        chunk = rows[start : start + _INSERT_CHUNK]
        cur.execute(
            _INSERT_HEAD + ", ".join([_ROW] * len(chunk)) + _INSERT_TAIL,
            [value for row in chunk for value in row],
        )
        if cur.rowcount == len(chunk) and cur.lastrowid - last == len(chunk):
            # All inserted, each with max(rowid) + 1 (unless the largest rowid is taken).
            row_ids.extend(range(last + 1, cur.lastrowid + 1))
        else:
            for row in chunk:
                found = cur.execute(
                    "SELECT id FROM group_messages WHERE msg_id = ? AND id > ?", (row[0], last)
                ).fetchone()
                row_ids.append(found[0] if found else None)
        (last,) = cur.execute("SELECT coalesce(max(id), 0) FROM group_messages").fetchone()
    return row_ids


_SEARCH_SQL = fts_search_sql(
    "group_messages_fts",
    "group_messages",
    ", ".join(f"m.{c.strip()}" for c in GROUP_MESSAGE_COLUMNS.split(",")),
    "group_id",
)


class GroupRepository:
    def __init__(self, repo: Repository) -> None:
        self._repo = repo

    @property
    def engine(self) -> Engine:
        return self._repo.engine

    # -- groups and rosters -----------------------------------------------------------------

    def groups(self) -> list[GroupRow]:
        with self.engine.connect() as conn:
            rows = (
                _cursor(conn)
                .execute(
                    "SELECT id, name, epoch, roster_hash, roster, state, lamport, next_seq, "
                    "created_at FROM chat_groups ORDER BY created_at"
                )
                .fetchall()
            )
        return [GroupRow(*row) for row in rows]

    def save_roster(
        self,
        group_id: bytes,
        *,
        epoch: int,
        name: str,
        roster: bytes,
        roster_hash: bytes,
        state: int,
        now: float,
    ) -> None:
        """Make `roster` the group's current roster (creating the group if new), and keep
        it as the version of its epoch (a concurrent one it beat is replaced)."""
        with self.engine.begin() as conn:
            cur = _cursor(conn)
            cur.execute(
                "INSERT INTO chat_groups (id, name, epoch, roster_hash, roster, state, lamport, "
                "next_seq, created_at) VALUES (?, ?, ?, ?, ?, ?, 0, 1, ?) "
                "ON CONFLICT (id) DO UPDATE SET name = excluded.name, epoch = excluded.epoch, "
                "roster_hash = excluded.roster_hash, roster = excluded.roster, "
                "state = excluded.state",
                (group_id, name, epoch, roster_hash, roster, state, now),
            )
            cur.execute(
                "INSERT OR REPLACE INTO group_rosters (group_id, epoch, roster) VALUES (?, ?, ?)",
                (group_id, epoch, roster),
            )

    def roster_versions(self, group_id: bytes, after_epoch: int) -> list[bytes]:
        with self.engine.connect() as conn:
            cur = _cursor(conn)
            rows = cur.execute(
                "SELECT roster FROM group_rosters WHERE group_id = ? AND epoch > ? ORDER BY epoch",
                (group_id, after_epoch),
            ).fetchall()
        return [r[0] for r in rows]

    def roster_before(self, group_id: bytes, epoch: int) -> bytes | None:
        """The newest roster version older than `epoch` (what a new version must build on)."""
        with self.engine.connect() as conn:
            cur = _cursor(conn)
            row = cur.execute(
                "SELECT roster FROM group_rosters WHERE group_id = ? AND epoch < ? "
                "ORDER BY epoch DESC LIMIT 1",
                (group_id, epoch),
            ).fetchone()
        return row[0] if row else None

    def set_state(self, group_id: bytes, state: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(ChatGroup).where(ChatGroup.id == group_id).values(state=state))

    def forget_group(self, group_id: bytes, state: int) -> None:
        """Delete a group's messages and roster history; keep a tombstone row in `state`
        so a stale roster that still lists us does not bring the group back."""
        with self.engine.begin() as conn:
            cur = _cursor(conn)
            cur.execute("DELETE FROM group_messages WHERE group_id = ?", (group_id,))
            cur.execute("DELETE FROM group_rosters WHERE group_id = ?", (group_id,))
            cur.execute("DELETE FROM group_delivery WHERE group_id = ?", (group_id,))
            cur.execute("UPDATE chat_groups SET state = ? WHERE id = ?", (state, group_id))

    # -- members that are not contacts ------------------------------------------------------

    def add_group_contact(self, new: NewContact, now: float) -> None:
        with self.engine.begin() as conn:
            self._repo._add_contact(conn, new, now, compare_names=False)
            conn.execute(update(Contact).where(Contact.id == new.id).values(group_only=True))

    def group_only_ids(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(Contact.id).where(Contact.group_only)).scalars())

    def member_material(self, contact_id: str) -> tuple[bytes, bytes, bytes, bytes, str, str]:
        """(ed25519, static, certificate, discovery key, name, addresses JSON) of a contact."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    Contact.ed25519_public,
                    Contact.x25519_public,
                    Contact.static_certificate,
                    Contact.discovery_key,
                    Contact.display_name,
                    Contact.addresses,
                ).where(Contact.id == contact_id)
            ).one()
        return (row[0], row[1], row[2], row[3], row[4], row[5])

    # -- messages ---------------------------------------------------------------------------

    def store_messages(
        self, messages: Sequence[NewGroupMessage], now_ms: int
    ) -> list[StoredGroupMessage]:
        """Store in ONE transaction; duplicates (same group, author and seq) are dropped.
        Returns the messages that are new. Each group's Lamport clock (and, for our own
        messages, the next sequence number) moves past what was stored: the insert
        trigger does it (migration 0012)."""
        if len(messages) == 1:
            return self._store_one(messages[0], now_ms)
        # The raw write transaction of the 1:1 hot paths (engine.begin() cost ~150 us).
        with self._repo.write_transaction() as cur:
            # The transaction holds the write lock: what is not stored now is new. Then
            # multi-row INSERTs (a catch-up stores hundreds per batch): one statement per
            # row with RETURNING stepped SQLite, and handed the GIL over, once per row.
            seen = _existing_group_msg_ids(cur, [m.msg_id for m in messages])
            keys: set[tuple[bytes, bytes, int]] = set()
            new = []
            for m in messages:
                key = (m.group_id, m.author, m.seq)
                if m.msg_id not in seen and key not in keys:
                    seen.add(m.msg_id)
                    keys.add(key)
                    new.append(m)
            row_ids = _insert_group_messages(cur, [_row(m, now_ms) for m in new])
        return [
            _stored(m, row_id, now_ms)
            for m, row_id in zip(new, row_ids, strict=True)
            if row_id is not None
        ]

    def _store_one(self, m: NewGroupMessage, now_ms: int) -> list[StoredGroupMessage]:
        """A lone (live) message in one autocommitted statement (Repository.write_one):
        the INSERT's ON CONFLICT drops a duplicate, its row id is `lastrowid`, and the
        insert trigger moves the group's counters, so no query for stored ids, no UPDATE,
        no BEGIN and COMMIT (issue 15)."""
        cur, _ = self._repo.write_one(_INSERT_HEAD + _ROW + _INSERT_TAIL, _row(m, now_ms))
        if cur.rowcount != 1:
            return []  # stored before
        return [_stored(m, cur.lastrowid, now_ms)]

    def author_seqs(self, group_id: bytes) -> dict[bytes, list[int]]:
        """Every stored sequence number per author, ascending (for high-water marks)."""
        found: dict[bytes, list[int]] = {}
        with self.engine.connect() as conn:
            cur = _cursor(conn)
            for author, seq in cur.execute(
                "SELECT author, seq FROM group_messages WHERE group_id = ? ORDER BY author, seq",
                (group_id,),
            ):
                found.setdefault(author, []).append(seq)
        return found

    def messages_after(
        self, group_id: bytes, author: bytes, after_seq: int, limit: int
    ) -> list[StoredGroupMessage]:
        """An author's messages with seq > after_seq, ascending (a catch-up batch)."""
        with self.engine.connect() as conn:
            cur = _cursor(conn)
            rows = cur.execute(
                f"SELECT {GROUP_MESSAGE_COLUMNS} FROM group_messages "  # noqa: S608  (constant columns)
                "WHERE group_id = ? AND author = ? AND seq > ? ORDER BY seq LIMIT ?",
                (group_id, author, after_seq, limit),
            ).fetchall()
        return [stored_group_message(r) for r in rows]

    def history(
        self, group_id: bytes, *, limit: int = 50, before: tuple[int, bytes, int] | None = None
    ) -> list[StoredGroupMessage]:
        """A page of a group conversation, oldest first, in the order every member shares:
        (Lamport time, author, seq). The newest `limit`, or the `limit` older than `before`."""
        sql = f"SELECT {GROUP_MESSAGE_COLUMNS} FROM group_messages WHERE group_id = ?"  # noqa: S608
        params: list[Any] = [group_id]
        if before is not None:
            sql += " AND (lamport, author, seq) < (?, ?, ?)"
            params += list(before)
        sql += " ORDER BY lamport DESC, author DESC, seq DESC LIMIT ?"
        params.append(limit)
        with self.engine.connect() as conn:
            rows = _cursor(conn).execute(sql, params).fetchall()
        return [stored_group_message(r) for r in reversed(rows)]

    def index_pending(self, limit: int = 5000) -> int:
        """Add up to `limit` group messages not yet indexed to the search index; returns
        how many. Indexing runs after storing (migration 0010), never inside a message's
        commit: as Repository.index_pending does for 1:1 messages."""
        with self._repo.write_transaction() as cur:
            (last,) = cur.execute(
                "SELECT last_id FROM group_search_progress WHERE id = 1"
            ).fetchone()
            count, top = cur.execute(
                "SELECT count(*), max(id) FROM "
                "(SELECT id FROM group_messages WHERE id > ? ORDER BY id LIMIT ?)",
                (last, limit),
            ).fetchone()
            if not count:
                return 0
            # One statement inside SQLite: the bodies never travel through Python.
            cur.execute(
                "INSERT INTO group_messages_fts(rowid, body) "
                "SELECT id, body FROM group_messages WHERE id > ? AND id <= ? ORDER BY id",
                (last, top),
            )
            cur.execute("UPDATE group_search_progress SET last_id = ? WHERE id = 1", (top,))
        return int(count)

    def search(
        self,
        text: str,
        *,
        group_id: bytes | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> list[StoredGroupMessage]:
        """Full-text search of group messages (FTS5), newest stored first, paged back with
        `before` (a result's row_id); see Repository.search and fts_match."""
        match = fts_match(text)
        if match is None or limit <= 0:
            return []
        while self.index_pending():
            pass  # a search sees every stored message
        with self.engine.connect() as conn:
            rows = (
                _cursor(conn)
                .execute(_SEARCH_SQL, fts_params(match, group_id, limit, before))
                .fetchall()
            )
        return [stored_group_message(r) for r in rows]

    def attachment_links(self) -> list[tuple[bytes, bytes, bytes, bool, bytes]]:
        """(msg_id, group_id, author, outgoing, attachment) of every group message that
        offers a file (the partial index makes this cheap however long the history)."""
        with self.engine.connect() as conn:
            rows = _cursor(conn).execute(
                "SELECT msg_id, group_id, author, outgoing, attachment FROM group_messages "
                "INDEXED BY ix_group_messages_attachment WHERE attachment IS NOT NULL"
            )
            return [(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]

    def message_count(self, group_id: bytes) -> int:
        with self.engine.connect() as conn:
            (count,) = (
                _cursor(conn)
                .execute("SELECT count(*) FROM group_messages WHERE group_id = ?", (group_id,))
                .fetchone()
            )
        return int(count)

    def mark_seen(self, group_id: bytes) -> int:
        with self.engine.begin() as conn:
            cur = _cursor(conn)
            cur.execute(
                "UPDATE group_messages SET seen = 1 WHERE group_id = ? AND seen = 0", (group_id,)
            )
            return int(cur.rowcount)

    def unread_counts(self) -> dict[bytes, int]:
        with self.engine.connect() as conn:
            rows = (
                _cursor(conn)
                # The summaries the triggers keep (migration 0008), not a scan of messages.
                .execute("SELECT id, unread FROM chat_groups WHERE unread > 0")
                .fetchall()
            )
        return {r[0]: r[1] for r in rows}

    # -- delivery of our own messages -------------------------------------------------------

    def delivery_marks(self) -> dict[bytes, dict[bytes, int]]:
        with self.engine.connect() as conn:
            return delivery_marks(_cursor(conn))

    def set_delivery_marks(self, marks: Sequence[tuple[bytes, bytes, int]]) -> None:
        if not marks:
            return
        with self.engine.begin() as conn:
            _cursor(conn).executemany(
                "INSERT INTO group_delivery (group_id, member, seq) VALUES (?, ?, ?) "
                "ON CONFLICT (group_id, member) DO UPDATE SET seq = max(seq, excluded.seq)",
                marks,
            )

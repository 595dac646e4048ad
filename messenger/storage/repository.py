"""All reads and writes of the profile database. Synchronous: the service runs it on one
dedicated thread so the event loop (and the Qt window on it) never waits on disk."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import nacl.utils
import sqlcipher3
from sqlalchemy import Engine, and_, delete, func, or_, select, text, tuple_, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ..records import ContactRecord, InviteRecord, MessageRecord, MessageState
from .database import create_db_engine, plain_error
from .models import AttachmentMessage, Contact, Invite, Message, Setting
from .rows import MARK, QUEUED, SUMMARY_DELTA, UNREAD, ConversationRow, conversation_rows
from .rows import MESSAGE_SQL_COLUMNS as _MESSAGE_SQL_COLUMNS
from .rows import message_from_row as _message

MSG_ID_LEN = 16


class StorageError(Exception):
    pass


class ContactExists(StorageError):
    pass


class InviteUnusable(StorageError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "unknown", "used" or "expired"


@dataclass(frozen=True, slots=True)
class NewContact:
    id: str
    display_name: str
    ed25519_public: bytes
    x25519_public: bytes
    static_certificate: bytes
    psk: bytes
    discovery_key: bytes
    conversation_id: bytes
    verified: bool
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    msg_id: bytes
    seq: int
    lamport: int
    sent_at_ms: int
    body: str


class ArrivingMessage(Protocol):
    """What store_incoming reads of a message: an IncomingMessage, or the wire's
    ChatMessage itself (no copy per message on the hot path)."""

    @property
    def msg_id(self) -> bytes: ...
    @property
    def seq(self) -> int: ...
    @property
    def lamport(self) -> int: ...
    @property
    def sent_at_ms(self) -> int: ...
    @property
    def body(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ContactKeys:
    """What a session needs to authenticate a contact."""

    id: str
    ed25519_public: bytes
    x25519_public: bytes
    psk: bytes


_INSERT_MESSAGE_HEAD = (
    "INSERT INTO messages (msg_id, contact_id, outgoing, seq, lamport, sent_at_ms, "
    "received_at_ms, body, state) VALUES "
)
_MESSAGE_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
# A contact's Lamport clock and next seq as the stored messages make them (migration
# 0013): the kept columns, the conversation's largest Lamport time (one seek of its
# (contact_id, lamport) index) and the seq of our messages above the search index's mark
# (the indexer folds the rest into next_seq). Read once per contact; the repository then
# keeps them (Repository._counters).
_SELECT_COUNTERS = (
    "SELECT max(c.lamport, coalesce((SELECT max(lamport) FROM messages "  # noqa: S608
    "WHERE contact_id = ?1), 0)), max(c.next_seq, coalesce((SELECT max(seq) + 1 FROM "
    f"messages WHERE id > {MARK} AND +contact_id = ?1 AND outgoing), 0)) "
    "FROM contacts c WHERE c.id = ?1"
)
# Our messages not yet acknowledged. The state test in these words lets SQLite use the
# outbox index (a partial index, migration 0014).
_PENDING = "state IN (0, 1)"
_OUTBOX = (
    f"SELECT {_MESSAGE_SQL_COLUMNS} FROM messages m "  # noqa: S608
    f"WHERE m.contact_id = ? AND m.{_PENDING} ORDER BY m.id"
)
# A contact's unread count as readers see it (kept + not yet folded; migration 0013).
_UNREAD_OF = (
    "SELECT c.unread + coalesce((SELECT sum(state = 10) FROM messages "  # noqa: S608
    f"WHERE id > {MARK} AND +contact_id = ?1), 0) FROM contacts c WHERE c.id = ?1"
)
# Its newest `?2` unread messages: a walk back along the conversation's order index.
_NEWEST_UNREAD = (
    "SELECT id, msg_id FROM messages WHERE contact_id = ? AND state = 10 "
    "ORDER BY lamport DESC, msg_id DESC LIMIT ?"
)
# What the indexer folds into the kept summaries and counters for the rows (?1, ?2] it
# indexes (migration 0013): counts, the newest message up to ?2, the counters.
FOLD_SUMMARIES = (
    "UPDATE contacts SET unread = contacts.unread + d.unread, "
    "queued = contacts.queued + d.queued, lamport = max(contacts.lamport, d.lamport), "
    "next_seq = max(contacts.next_seq, coalesce(d.seq + 1, 0)), "
    "(last_id, last_lamport, last_msg_id) = (SELECT n.id, n.lamport, n.msg_id FROM messages n "
    "WHERE n.contact_id = contacts.id AND n.id <= ?2 "
    "ORDER BY n.lamport DESC, n.msg_id DESC LIMIT 1) "
    "FROM (SELECT contact_id AS cid, sum(state = 10) AS unread, sum(state IN (0, 1)) AS queued, "
    "max(lamport) AS lamport, max(CASE WHEN outgoing THEN seq END) AS seq FROM messages "
    "WHERE id > ?1 AND id <= ?2 GROUP BY +contact_id) AS d WHERE contacts.id = d.cid"
)


def _cursor(conn: Any) -> Any:
    """The DB-API cursor inside a SQLAlchemy transaction (same connection, same BEGIN)."""
    return conn.connection.dbapi_connection.cursor()


def new_msg_ids(count: int, now_ms: int) -> list[bytes]:
    """Fresh message ids: a 48-bit big-endian Unix-millisecond prefix and 80 random bits
    (the UUIDv7 layout). Time-ordered ids land at the end of the unique msg_id index on
    both sides instead of on a random leaf page each, so a batch dirties (and SQLCipher
    encrypts and writes) a few pages instead of hundreds; 80 random bits per millisecond
    keep them unique."""
    prefix = (now_ms & 0xFFFF_FFFF_FFFF).to_bytes(6, "big")
    tails = nacl.utils.random(10 * count)
    return [prefix + tails[i * 10 : i * 10 + 10] for i in range(count)]


# Rows per multi-row INSERT (9 parameters each). One statement is one sqlite3_step, so
# one release of the GIL, where a statement per row hands the GIL over once per message.
_INSERT_CHUNK = 100
# Past this many of our messages kept for their receipts (a contact that never
# acknowledges), the map starts over: receipts for the dropped ones go by msg_id.
_SENT_ROWS_MAX = 1 << 15


def _insert_messages(cur: Any, rows: Sequence[tuple[Any, ...]]) -> list[int]:
    """Insert message rows (the caller made sure none conflicts) with multi-row INSERTs;
    returns their row ids, in order."""
    row_ids: list[int] = []
    if not rows:
        return row_ids
    if len(rows) == 1:
        # One row (a message typed, or one arriving alone): its id is lastrowid, without
        # the max(id) query (~10-15 us on the send -> delivered path, once each side).
        cur.execute(_INSERT_MESSAGE_HEAD + _MESSAGE_VALUES, rows[0])
        return [cur.lastrowid]
    (last,) = cur.execute("SELECT coalesce(max(id), 0) FROM messages").fetchone()
    for start in range(0, len(rows), _INSERT_CHUNK):
        chunk = rows[start : start + _INSERT_CHUNK]
        cur.execute(
            _INSERT_MESSAGE_HEAD + ", ".join([_MESSAGE_VALUES] * len(chunk)),
            [value for row in chunk for value in row],
        )
        if cur.lastrowid - last == len(chunk):
            # SQLite gives each new row max(rowid) + 1 (unless the largest possible rowid
            # is taken), so the chunk holds exactly the ids after the previous maximum.
            row_ids.extend(range(last + 1, cur.lastrowid + 1))
        else:
            for row in chunk:
                (row_id,) = cur.execute(
                    "SELECT id FROM messages WHERE msg_id = ?", (row[0],)
                ).fetchone()
                row_ids.append(row_id)
        last = max(last, cur.lastrowid)
    return row_ids


def _insert_new_messages(
    cur: Any, rows: Sequence[tuple[Any, ...]]
) -> list[tuple[int, tuple[Any, ...]]]:
    """Insert arriving message rows, dropping each whose msg_id is stored already (or
    came earlier in `rows`): multi-row INSERTs that skip a conflicting row themselves, so
    a batch of new messages (the usual case) is not looked up first (that query cost
    ~1.6 us a message, a fifth of storing it). Returns (row id, row) of the rows stored,
    in order."""
    stored: list[tuple[int, tuple[Any, ...]]] = []
    (last,) = cur.execute("SELECT coalesce(max(id), 0) FROM messages").fetchone()
    for start in range(0, len(rows), _INSERT_CHUNK):
        chunk = rows[start : start + _INSERT_CHUNK]
        cur.execute(
            _INSERT_MESSAGE_HEAD
            + ", ".join([_MESSAGE_VALUES] * len(chunk))
            + " ON CONFLICT DO NOTHING",
            [value for row in chunk for value in row],
        )
        added = cur.rowcount
        if added == len(chunk) and cur.lastrowid - last == added:
            # All new, numbered after the previous maximum (see _insert_messages).
            stored.extend(zip(range(last + 1, cur.lastrowid + 1), chunk, strict=True))
            last = cur.lastrowid
        elif added:
            # Some were stored before: the rows this statement added are the ones with a
            # larger id than any before it (a repeated id is added once, the first time).
            marks = ",".join("?" * len(chunk))
            # Only "?" placeholders are interpolated; every value is a parameter.
            sql = f"SELECT msg_id, id FROM messages WHERE id > ? AND msg_id IN ({marks})"  # noqa: S608
            new = dict(cur.execute(sql, (last, *(row[0] for row in chunk))).fetchall())
            for row in chunk:
                row_id = new.pop(row[0], None)
                if row_id is not None:
                    stored.append((row_id, row))
                    last = max(last, row_id)
    return stored


_MESSAGE_COLUMNS = (
    Message.id,
    Message.msg_id,
    Message.contact_id,
    Message.outgoing,
    Message.seq,
    Message.lamport,
    Message.sent_at_ms,
    Message.received_at_ms,
    Message.body,
    Message.state,
)


def advance_states_sql(count: int, *, returning: bool, by_row_id: bool = False) -> str:
    """The UPDATE that moves `count` of a contact's messages forward to a state; parameters:
    state, the ids (msg_ids, or row ids with `by_row_id`), contact id, state. The unary +
    keeps contact_id and state out of the index choice, so each id is found by the unique
    msg_id index: on the contact's (contact_id, state) index SQLite walked every message
    still in the outbox once per receipt (with 10,000 in it, 7.2 us a message recorded
    instead of 5.7). By row id, each is a seek of the table itself and the msg_id index is
    not read (4.3 -> 2.8 us a message recorded, batches of 500, issue 15)."""
    marks = ",".join("?" * count)
    tail = " RETURNING msg_id" if returning else ""
    key = "id" if by_row_id else "msg_id"
    # Only "?" placeholders are interpolated; every value is a parameter.
    return (
        f"UPDATE messages SET state = ? WHERE {key} IN ({marks}) "  # noqa: S608
        f"AND +contact_id = ? AND outgoing = 1 AND +state < ?{tail}"
    )


# A run of at least this many consecutive row ids is recorded with one range statement
# (advance_runs_sql); shorter runs go in the IN list, so a scattered receipt does not
# become a statement per id.
_RUN_MIN = 8


def advance_runs_sql(*, returning: bool) -> str:
    """advance_states_sql for a run of consecutive row ids, all named by the receipt:
    parameters state, first id, last id, contact id, state. The range is one walk of the
    table's b-tree, where an IN list builds an ephemeral index of its values and seeks
    each (issue 15, eighth round); the guards are the same, and a row id in the range is
    one of the receipt's, so the rows it can change are exactly those of the IN list."""
    return _ADVANCE_RUN + " RETURNING msg_id" if returning else _ADVANCE_RUN


_ADVANCE_RUN = (
    "UPDATE messages SET state = ? WHERE id BETWEEN ? AND ? "
    "AND +contact_id = ? AND outgoing = 1 AND +state < ?"
)


def split_runs(
    row_ids: Iterable[int], min_run: int = _RUN_MIN
) -> tuple[list[tuple[int, int]], list[int]]:
    """The distinct row ids as (first, last) runs of at least `min_run` consecutive ids,
    and the ids of shorter runs, each in ascending order."""
    ordered = sorted(set(row_ids))
    runs: list[tuple[int, int]] = []
    rest: list[int] = []
    start = 0
    for i in range(1, len(ordered) + 1):
        if i == len(ordered) or ordered[i] != ordered[i - 1] + 1:
            if i - start >= min_run:
                runs.append((ordered[start], ordered[i - 1]))
            else:
                rest.extend(ordered[start:i])
            start = i
    return runs, rest


def _contact(c: Contact) -> ContactRecord:
    return ContactRecord(
        id=c.id,
        display_name=c.display_name,
        ed25519_public=c.ed25519_public,
        x25519_public=c.x25519_public,
        verified=c.verified,
        addresses=tuple(json.loads(c.addresses)),
        created_at=c.created_at,
        last_seen=c.last_seen,
        conversation_id=c.conversation_id,
        key_changed=c.key_changed,
        replaces=c.replaces,
    )


def fts_match(text: str) -> str | None:
    """An FTS5 query for what the user typed: every word must occur in the body, the last
    one as a prefix (search as you type) once it has two characters (the indexes keep
    2- and 3-character prefixes; a one-letter prefix would merge most of the index);
    each word quoted, so FTS syntax in it is just text. None when there is no word."""
    words = [w.replace('"', '""') for w in text.split()]
    if not words:
        return None
    last = f'"{words[-1]}"' + ("*" if len(words[-1]) > 1 else "")
    return "body : (" + " ".join([*(f'"{w}"' for w in words[:-1]), last]) + ")"


def in_conversation(match: str, contact_id: str | None) -> str:
    """Restrict an fts_match query to one conversation: the 1:1 index holds the contact id
    as a column (migration 0008), so FTS5 intersects two doclists itself."""
    if contact_id is None:
        return match
    if not contact_id.isalnum():  # ids are hex; anything else cannot match a contact
        return f'{match} AND contact_id : ""'
    return f'{match} AND contact_id : "{contact_id}"'


def fts_search_sql(fts: str, table: str, columns: str, owner: str) -> str:
    """The newest matches first, straight from the index. FTS5 walks its doclists in
    descending rowid when asked to ORDER BY rowid DESC, and stops after LIMIT; the CROSS
    JOIN keeps the index the outer loop (the planner may otherwise start from the
    conversation's messages and ask FTS5 about each one). `?2` restricts to one
    conversation when not NULL, `?3` is the rowid to page back from."""
    # Only constant table and column names are interpolated; every value is a parameter.
    return (
        f"SELECT {columns} FROM {fts} f CROSS JOIN {table} m ON m.id = f.rowid "  # noqa: S608
        f"WHERE {fts} MATCH ?1 AND (?2 IS NULL OR m.{owner} = ?2) "
        "AND f.rowid < coalesce(?3, 9223372036854775807) ORDER BY f.rowid DESC LIMIT ?4"
    )


def fts_params(match: str, owner: Any, limit: int, before: int | None) -> tuple[Any, ...]:
    return (match, owner, before, limit)


_SEARCH_SQL = fts_search_sql("messages_fts", "messages", _MESSAGE_SQL_COLUMNS, "contact_id")


class Repository:
    def __init__(self, engine: Engine, *, synchronous: str = "NORMAL") -> None:
        self.engine = engine
        self._synchronous = synchronous
        self._driver: Any = None  # the engine's DB-API connection, for the hot paths
        self._driver_engine: Engine | None = None
        # contact id -> [Lamport clock, next seq], as _SELECT_COUNTERS reads them, moved
        # after each commit that stores messages: storing a message then reads and
        # writes no contact row (migration 0013). This repository is the database's only
        # writer; what rewrites counters otherwise (accept_new_key, delete_contact)
        # drops the entry.
        self._counters: dict[str, list[int]] = {}
        # msg_id -> row id of our messages stored here and not yet acknowledged, so a
        # receipt updates them by row id (advance_states_sql). An entry is dropped when a
        # receipt names it; it can only be wrong if its row was deleted and the row id
        # reused, which gives a new message of ours a row id no larger than the largest
        # kept (SQLite numbers a new row max + 1): _keep_sent then drops them all. A
        # message not found here is updated by msg_id, as before.
        self._sent_rows: dict[bytes, int] = {}
        self._sent_top = 0  # the largest row id ever kept in _sent_rows

    def close(self) -> None:
        self._driver = self._driver_engine = None
        self.engine.dispose()

    def write_transaction(self) -> contextlib.AbstractContextManager[Any]:
        """The hot paths' raw cursor in BEGIN IMMEDIATE .. COMMIT (group_repository.py)."""
        return self._write_transaction()

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[Any]:
        """A raw DB-API cursor in BEGIN IMMEDIATE .. COMMIT, for the hot write paths:
        SQLAlchemy's engine.begin() plus a pool checkout cost ~150 us per transaction
        here, more than the SQL of a single message. The engine has one connection
        (StaticPool), so this is the same connection and page cache as everything else."""
        cur = self._raw_cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (a full disk) may leave the transaction open, or SQLite
                # may have rolled it back already.
                if self._driver.in_transaction:
                    cur.execute("ROLLBACK")
                raise
        except sqlcipher3.Error as exc:
            # The hot paths bypass the engine's handle_error hook: same plain errors here.
            plain = plain_error(exc, Path(str(self.engine.url.database)))
            if plain is None:
                raise
            raise plain from exc

    def _raw_cursor(self) -> Any:
        if self._driver is None or self._driver_engine is not self.engine:
            with self.engine.connect() as conn:
                self._driver = conn.connection.driver_connection
            self._driver_engine = self.engine
        return self._driver.cursor()

    def _write_one(self, sql: str, params: Sequence[Any]) -> tuple[Any, list[Any]]:
        """One statement in a transaction of its own (SQLite's implicit one: the driver
        runs in autocommit), as durable as _write_transaction's and without the BEGIN
        and COMMIT statements around it (~16 us of a lone message's store, issue 15).
        Errors as there; a failed statement leaves nothing written. Returns the cursor
        and the rows of a RETURNING clause, read to the end (which commits)."""
        cur = self._raw_cursor()
        try:
            rows = cur.execute(sql, params).fetchall()
        except sqlcipher3.Error as exc:
            if self._driver.in_transaction:  # not expected: SQLite ends a failed one
                cur.execute("ROLLBACK")
            plain = plain_error(exc, Path(str(self.engine.url.database)))
            if plain is None:
                raise
            raise plain from exc
        return cur, rows

    # The hot paths' one autocommitted statement (group_repository.py): the same method,
    # not a call that forwards to it (a group member stores every message through it).
    write_one = _write_one

    # -- settings -------------------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        with self.engine.connect() as conn:
            value = conn.execute(select(Setting.value).where(Setting.key == key)).scalar()
        return default if value is None else json.loads(value)

    def set_setting(self, key: str, value: Any) -> None:
        data = json.dumps(value).encode()
        stmt = sqlite_insert(Setting).values(key=key, value=data)
        stmt = stmt.on_conflict_do_update(index_elements=[Setting.key], set_={"value": data})
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def get_blob(self, key: str) -> bytes | None:
        with self.engine.connect() as conn:
            return conn.execute(select(Setting.value).where(Setting.key == key)).scalar()

    def set_blob(self, key: str, value: bytes) -> None:
        stmt = sqlite_insert(Setting).values(key=key, value=value)
        stmt = stmt.on_conflict_do_update(index_elements=[Setting.key], set_={"value": value})
        with self.engine.begin() as conn:
            conn.execute(stmt)

    # -- contacts -------------------------------------------------------------------------

    def _add_contact(
        self, conn: Any, new: NewContact, now: float, *, compare_names: bool = True
    ) -> None:
        exists = conn.execute(
            select(Contact.id).where(
                or_(Contact.id == new.id, Contact.ed25519_public == new.ed25519_public)
            )
        ).scalar()
        if exists is not None:
            raise ContactExists(f"{new.display_name} is already a contact")
        # A group-only member is never held: it is not listed and gets no 1:1 messages.
        earlier = self._same_name(conn, new.display_name) if compare_names else None
        conn.execute(
            sqlite_insert(Contact).values(
                id=new.id,
                display_name=new.display_name,
                ed25519_public=new.ed25519_public,
                x25519_public=new.x25519_public,
                static_certificate=new.static_certificate,
                psk=new.psk,
                discovery_key=new.discovery_key,
                conversation_id=new.conversation_id,
                verified=new.verified,
                addresses=json.dumps(list(new.addresses)),
                created_at=now,
                last_seen=now,
                lamport=0,
                next_seq=1,
                # A new identity under a name we know: held until the user verifies it,
                # unless it was verified as it was added (a code scanned in person).
                key_changed=earlier is not None and not new.verified,
                replaces=earlier,
            )
        )

    @staticmethod
    def _same_name(conn: Any, name: str) -> str | None:
        """The listed contact (the earliest) that calls itself `name`, compared as
        find_contacts does. Identity keys never change, so this is the only trace a
        re-created profile leaves: its name (docs/threat-model.md §4.14)."""
        folded = name.strip().casefold()
        rows = conn.execute(
            select(Contact.id, Contact.display_name)
            .where(Contact.group_only.is_(False))
            .order_by(Contact.created_at, Contact.id)
        ).all()
        return next((r[0] for r in rows if r[1].strip().casefold() == folded), None)

    def add_contact(self, new: NewContact, now: float) -> None:
        with self.engine.begin() as conn:
            self._add_contact(conn, new, now)

    def _contacts_where(self, *conditions: Any) -> list[ContactRecord]:
        with Session(self.engine) as session:
            found = session.scalars(
                select(Contact).where(*conditions).order_by(Contact.display_name, Contact.id)
            ).all()
            return [_contact(c) for c in found]

    def contacts(self) -> list[ContactRecord]:
        """Contacts the user added (members known only through a group are not listed)."""
        return self._contacts_where(Contact.group_only.is_(False))

    def contact(self, contact_id: str) -> ContactRecord | None:
        found = self._contacts_where(Contact.id == contact_id)
        return found[0] if found else None

    def contact_keys(self) -> list[ContactKeys]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    Contact.id,
                    Contact.ed25519_public,
                    Contact.x25519_public,
                    Contact.psk,
                )
            ).all()
        return [ContactKeys(r[0], r[1], r[2], r[3]) for r in rows]

    def find_contacts(self, query: str) -> list[ContactRecord]:
        """Contacts whose name equals `query` (case-insensitive) or whose id starts with it."""
        q = query.strip().casefold()
        if not q:
            return []
        # Compared in Python: SQLite's lower() only folds ASCII, and contacts are few.
        return [c for c in self.contacts() if c.display_name.casefold() == q or c.id.startswith(q)]

    def set_addresses(self, contact_id: str, addresses: Sequence[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(Contact)
                .where(Contact.id == contact_id)
                .values(addresses=json.dumps(list(dict.fromkeys(addresses))))
            )

    def set_display_name(self, contact_id: str, name: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(Contact).where(Contact.id == contact_id).values(display_name=name))

    def update_presence(
        self, contact_id: str, addresses: Sequence[str], now: float, display_name: str
    ) -> None:
        """A contact connected: remember where it was and what it calls itself now."""
        with self.engine.begin() as conn:
            known = conn.execute(select(Contact.addresses).where(Contact.id == contact_id)).scalar()
            merged = list(dict.fromkeys([*addresses, *json.loads(known or "[]")]))[:16]
            conn.execute(
                update(Contact)
                .where(Contact.id == contact_id)
                .values(addresses=json.dumps(merged), last_seen=now, display_name=display_name)
            )

    def remember_addresses(self, contact_id: str, addresses: Sequence[str]) -> bool:
        """Addresses a contact told us over a live session (a ReachUpdate): stored before
        the ones known, as update_presence does. False if nothing changed."""
        with self.engine.begin() as conn:
            known = conn.execute(select(Contact.addresses).where(Contact.id == contact_id)).scalar()
            before = json.loads(known or "[]")
            merged = list(dict.fromkeys([*addresses, *before]))[:16]
            if merged == before:
                return False
            conn.execute(
                update(Contact).where(Contact.id == contact_id).values(addresses=json.dumps(merged))
            )
            return True

    def update_static(self, contact_id: str, x25519_public: bytes, certificate: bytes) -> None:
        """The contact rotated its static key (certified by its unchanged identity key)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(Contact)
                .where(Contact.id == contact_id)
                .values(x25519_public=x25519_public, static_certificate=certificate)
            )

    def set_verified(self, contact_id: str, verified: bool = True) -> None:
        """Verifying a contact is also the user's answer to a changed safety number."""
        values: dict[str, Any] = {"verified": verified}
        if verified:
            values["key_changed"] = False
        with self.engine.begin() as conn:
            conn.execute(update(Contact).where(Contact.id == contact_id).values(**values))

    def key_changed_contacts(self) -> set[str]:
        """Contacts held because their safety number changed (nothing is sent to them)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(Contact.id).where(Contact.key_changed.is_(True))).all()
        return {r[0] for r in rows}

    @staticmethod
    def _waiting_texts(contact_id: str) -> Any:
        """Our texts (not file offers) to a contact not yet acknowledged, in order."""
        return (
            select(Message.id, Message.msg_id)
            .where(
                Message.contact_id == contact_id,
                text(f"messages.{_PENDING}"),  # the outbox index (migration 0014)
                Message.msg_id.not_in(select(AttachmentMessage.msg_id)),
            )
            .order_by(Message.id)
        )

    def waiting_texts(self, contact_id: str) -> int:
        with self.engine.connect() as conn:
            return len(conn.execute(self._waiting_texts(contact_id)).all())

    def accept_new_key(self, contact_id: str, *, move_queued: bool) -> list[bytes]:
        """The user accepted a contact's changed safety number: lift the hold. With
        `move_queued`, our messages still waiting for the earlier contact it replaces
        (text only: a file offer stays where it was) become messages to this one, in
        the order written, with its next sequence numbers and Lamport times; their ids
        are kept, so a copy that did reach the earlier contact is the same message.
        Returns the ids moved. One transaction."""
        with self.engine.begin() as conn:
            row = conn.execute(select(Contact.replaces).where(Contact.id == contact_id)).first()
            if row is None:
                raise StorageError(f"no contact {contact_id}")
            conn.execute(update(Contact).where(Contact.id == contact_id).values(key_changed=False))
            replaces = row[0]
            lamport, seq = _cursor(conn).execute(_SELECT_COUNTERS, (contact_id,)).fetchone()
            self._counters.pop(contact_id, None)  # read again after this transaction
            if replaces is not None:
                self._counters.pop(replaces, None)
            if not move_queued or replaces is None:
                return []
            waiting = conn.execute(self._waiting_texts(replaces)).all()
            for row_id, _ in waiting:
                lamport += 1
                conn.execute(
                    update(Message)
                    .where(Message.id == row_id)
                    .values(
                        contact_id=contact_id,
                        seq=seq,
                        lamport=lamport,
                        state=int(MessageState.QUEUED),
                    )
                )
                seq += 1
            conn.execute(
                update(Contact)
                .where(Contact.id == contact_id)
                .values(lamport=lamport, next_seq=seq)
            )
        return [r[1] for r in waiting]

    def discovery_keys(self) -> dict[str, bytes]:
        """Every contact's LAN advertising key (what its mDNS tokens are made with)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(Contact.id, Contact.discovery_key)).all()
        return {r[0]: r[1] for r in rows}

    def set_discovery_key(self, contact_id: str, key: bytes) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(Contact).where(Contact.id == contact_id).values(discovery_key=key))

    def delete_contact(self, contact_id: str) -> bool:
        """Remove a contact and its whole conversation, in one transaction."""
        self._counters.pop(contact_id, None)
        self._sent_rows.clear()  # its messages' rows go (their ids may be reused)
        with self.engine.begin() as conn:
            conn.execute(delete(Message).where(Message.contact_id == contact_id))
            gone = conn.execute(delete(Contact).where(Contact.id == contact_id))
        return bool(gone.rowcount)

    # -- invites --------------------------------------------------------------------------

    def add_invite(
        self, invite_id: bytes, secret: bytes, expires_at: int, now: float
    ) -> InviteRecord:
        with self.engine.begin() as conn:
            conn.execute(
                sqlite_insert(Invite).values(
                    id=invite_id, secret=secret, created_at=now, expires_at=expires_at
                )
            )
        return InviteRecord(invite_id, secret, now, expires_at, None, None)

    def invites(self) -> list[InviteRecord]:
        return self._invites_where()

    def invite(self, invite_id: bytes) -> InviteRecord | None:
        found = self._invites_where(Invite.id == invite_id)
        return found[0] if found else None

    def _invites_where(self, *conditions: Any) -> list[InviteRecord]:
        with Session(self.engine) as session:
            return [
                InviteRecord(i.id, i.secret, i.created_at, i.expires_at, i.used_at, i.used_by)
                for i in session.scalars(select(Invite).where(*conditions))
            ]

    def usable_invite(self, invite_id: bytes, now: float) -> InviteRecord:
        record = self.invite(invite_id)
        if record is None:
            raise InviteUnusable("unknown")
        if record.used_at is not None:
            raise InviteUnusable("used")
        if now >= record.expires_at:
            raise InviteUnusable("expired")
        return record

    def redeem_invite(self, invite_id: bytes, new: NewContact, now: float) -> None:
        """Mark the invite used and add the contact, atomically: both or neither."""
        with self.engine.begin() as conn:
            used = conn.execute(
                update(Invite)
                .where(
                    and_(Invite.id == invite_id, Invite.used_at.is_(None)),
                    Invite.expires_at > now,
                )
                .values(used_at=now, used_by=new.id)
            )
            if used.rowcount != 1:
                row = conn.execute(
                    select(Invite.used_at, Invite.expires_at).where(Invite.id == invite_id)
                ).first()
                if row is None:
                    raise InviteUnusable("unknown")
                raise InviteUnusable("used" if row[0] is not None else "expired")
            self._add_contact(conn, new, now)

    def pending_invites(self, now: float) -> list[InviteRecord]:
        return self._invites_where(Invite.used_at.is_(None), Invite.expires_at > now)

    # -- messages -------------------------------------------------------------------------

    def queue_outgoing(self, contact_id: str, body: str, now_ms: int) -> MessageRecord:
        return self.queue_outgoing_many([(contact_id, body)], now_ms)[0]

    def queue_outgoing_many(
        self, items: Sequence[tuple[str, str]], now_ms: int
    ) -> list[MessageRecord]:
        """Store messages of ours in the outbox, in one transaction, each with a fresh id,
        the next sequence number and Lamport time of its conversation.

        Hot path: plain SQL on the driver cursor (building SQLAlchemy statements cost more
        than SQLite's own work here), in the same transaction."""
        if not items:
            return []
        queued = int(MessageState.QUEUED)
        ids = new_msg_ids(len(items), now_ms)
        if len(items) == 1:
            return [self._queue_one(*items[0], ids[0], now_ms)]
        with self._write_transaction() as cur:
            counters: dict[str, list[int]] = {}
            for contact_id, _ in items:
                if contact_id not in counters:
                    counters[contact_id] = list(self._counters_of(cur, contact_id))
            rows: list[tuple[Any, ...]] = []
            for i, (contact_id, body) in enumerate(items):
                counter = counters[contact_id]
                counter[0] += 1
                lamport, seq = counter[0], counter[1]
                counter[1] += 1
                rows.append((ids[i], contact_id, 1, seq, lamport, now_ms, None, body, queued))
            row_ids = _insert_messages(cur, rows)
        self._counters.update(counters)  # committed
        self._keep_sent(ids, row_ids)
        return [
            MessageRecord(
                row_id, r[0], r[1], True, r[3], r[4], now_ms, None, r[7], MessageState.QUEUED
            )
            for row_id, r in zip(row_ids, rows, strict=True)
        ]

    def _queue_one(self, contact_id: str, body: str, msg_id: bytes, now_ms: int) -> MessageRecord:
        """queue_outgoing_many of one message (typed one at a time) in one autocommitted
        statement (_write_one), numbered from the counters kept here: no BEGIN and
        COMMIT, and no contact row read or written (migration 0013)."""
        clock, seq = self._counters_of(self._raw_cursor(), contact_id)
        lamport = clock + 1
        row = (msg_id, contact_id, 1, seq, lamport, now_ms, None, body, int(MessageState.QUEUED))
        cur, _ = self._write_one(_INSERT_MESSAGE_HEAD + _MESSAGE_VALUES, row)
        row_id = cur.lastrowid
        self._counters[contact_id] = [lamport, seq + 1]
        self._keep_sent([msg_id], [row_id])
        return MessageRecord(
            row_id, msg_id, contact_id, True, seq, lamport, now_ms, None, body, MessageState.QUEUED
        )

    def _keep_sent(self, msg_ids: Sequence[bytes], row_ids: Sequence[int]) -> None:
        """Our messages just committed, for their receipts (see _sent_rows)."""
        kept = self._sent_rows
        if min(row_ids) <= self._sent_top or len(kept) > _SENT_ROWS_MAX:
            kept.clear()  # a row id was reused (a row deleted), or too many unacknowledged
        kept.update(zip(msg_ids, row_ids, strict=True))
        self._sent_top = max(self._sent_top, max(row_ids))

    def _counters_of(self, cur: Any, contact_id: str) -> tuple[int, int]:
        """The contact's (Lamport clock, next seq): kept here, else read (and kept)."""
        kept = self._counters.get(contact_id)
        if kept is None:
            row = cur.execute(_SELECT_COUNTERS, (contact_id,)).fetchone()
            if row is None:
                raise StorageError(f"no contact {contact_id}")
            kept = self._counters[contact_id] = [row[0], row[1]]
        return kept[0], kept[1]

    def _took(self, contact_id: str, lamport: int) -> None:
        """A message of the contact's with this Lamport time was stored (receive rule)."""
        kept = self._counters.get(contact_id)
        if kept is not None and lamport > kept[0]:
            kept[0] = lamport

    def counters(self, contact_id: str) -> tuple[int, int]:
        """The contact's Lamport clock and the seq our next message to it gets."""
        return self._counters_of(self._raw_cursor(), contact_id)

    def outbox(self, contact_id: str) -> list[MessageRecord]:
        """Our messages to this contact not yet acknowledged, in the order they were written."""
        with self.engine.connect() as conn:
            rows = _cursor(conn).execute(_OUTBOX, (contact_id,)).fetchall()
        return [_message(r) for r in rows]

    def outbox_counts(self) -> dict[str, int]:
        """Messages of ours not yet acknowledged, per contact that has any (the summary)."""
        return self._summary_counts("queued")

    def _summary_counts(self, column: str) -> dict[str, int]:
        value = {"unread": UNREAD, "queued": QUEUED}[column]  # kept + not yet folded
        sql = (
            f"WITH d AS ({SUMMARY_DELTA}) SELECT c.id, {value} AS n "  # noqa: S608
            "FROM contacts c LEFT JOIN d ON d.cid = c.id WHERE n > 0"
        )
        with self.engine.connect() as conn:
            rows = _cursor(conn).execute(sql).fetchall()
        return {r[0]: r[1] for r in rows}

    def advance_states(
        self, contact_id: str, msg_ids: Iterable[bytes], state: MessageState
    ) -> list[bytes]:
        """Move our messages forward (never back) to `state`; returns the ids that changed."""
        return self.advance_states_many([(contact_id, list(msg_ids), state)])

    def record_states(self, updates: Sequence[tuple[str, Sequence[bytes], MessageState]]) -> None:
        """advance_states_many without the list of changed ids (the service's receipts):
        RETURNING makes SQLite step once per row, and every step is a GIL hand-off."""
        self.advance_states_many(updates, returning=False)

    def advance_states_many(
        self,
        updates: Sequence[tuple[str, Sequence[bytes], MessageState]],
        *,
        returning: bool = True,
    ) -> list[bytes]:
        """Several receipts in one transaction (receipts are group-committed too)."""
        changed: list[bytes] = []
        if not any(ids for _, ids, _ in updates):
            return changed
        kept = self._sent_rows
        with self._write_transaction() as cur:
            for contact_id, ids, state in updates:
                row_ids: list[int] = []
                msg_ids: list[bytes] = []
                for msg_id in ids:
                    row_id = kept.pop(msg_id, None)
                    if row_id is None:
                        msg_ids.append(msg_id)
                    else:
                        row_ids.append(row_id)
                runs, row_ids = split_runs(row_ids)
                tail = (contact_id, int(state))
                for first, last in runs:
                    sql = advance_runs_sql(returning=returning)
                    params = (int(state), first, last, *tail)
                    changed += [r[0] for r in cur.execute(sql, params).fetchall()]
                for keys, by_row_id in ((row_ids, True), (msg_ids, False)):
                    for start in range(0, len(keys), 500):
                        chunk = keys[start : start + 500]
                        sql = advance_states_sql(
                            len(chunk), returning=returning, by_row_id=by_row_id
                        )
                        params = (int(state), *chunk, contact_id, int(state))
                        changed += [r[0] for r in cur.execute(sql, params).fetchall()]
        return changed

    def store_incoming(
        self, batches: Sequence[tuple[str, Sequence[ArrivingMessage]]], now_ms: int
    ) -> list[MessageRecord]:
        """Store arriving messages of several contacts in ONE transaction (group commit).

        Duplicates (by id: stored before, or twice in this batch) are dropped. Returns the
        records that are new."""
        received = int(MessageState.RECEIVED)
        lone = [(cid, ms[0]) for cid, ms in batches if ms]
        if len(lone) == 1 and sum(len(ms) for _, ms in batches) == 1:
            return self._store_one_incoming(*lone[0], now_ms)
        with self._write_transaction() as cur:
            stored = _insert_new_messages(
                cur,
                [
                    (m.msg_id, cid, 0, m.seq, m.lamport, m.sent_at_ms, now_ms, m.body, received)
                    for cid, messages in batches
                    for m in messages
                ],
            )
        # The clock moves by what was stored (a dropped copy moves none); the rows carry
        # it, so only the kept counters are moved here (migration 0013).
        for _, r in stored:
            self._took(r[1], r[4])
        return [
            MessageRecord(
                row_id, r[0], r[1], False, r[3], r[4], r[5], now_ms, r[7], MessageState.RECEIVED
            )
            for row_id, r in stored
        ]

    def _store_one_incoming(
        self, contact_id: str, m: ArrivingMessage, now_ms: int
    ) -> list[MessageRecord]:
        """store_incoming of a lone message (one at a time, as a person writes), in one
        statement and so without BEGIN and COMMIT (_write_one): the unique msg_id drops a
        duplicate in the INSERT itself, without a query first; the row it stores is what
        moves our Lamport clock (migration 0013)."""
        received = int(MessageState.RECEIVED)
        row = (m.msg_id, contact_id, 0, m.seq, m.lamport, m.sent_at_ms, now_ms, m.body, received)
        cur, _ = self._write_one(
            _INSERT_MESSAGE_HEAD + _MESSAGE_VALUES + " ON CONFLICT DO NOTHING", row
        )
        if cur.rowcount != 1:
            return []  # stored before
        row_id = cur.lastrowid
        self._took(contact_id, m.lamport)
        return [
            MessageRecord(
                row_id,
                m.msg_id,
                contact_id,
                False,
                m.seq,
                m.lamport,
                m.sent_at_ms,
                now_ms,
                m.body,
                MessageState.RECEIVED,
            )
        ]

    def history(
        self,
        contact_id: str,
        *,
        limit: int = 50,
        before: tuple[int, bytes] | None = None,
        after: tuple[int, bytes] | None = None,
    ) -> list[MessageRecord]:
        """A page of a conversation, oldest first, in the order both sides share:
        (Lamport time, id). By default the newest `limit`; with `before` the `limit`
        just older than that (lamport, msg_id) position; with `after` the `limit` just newer.
        """
        query = select(*_MESSAGE_COLUMNS).where(Message.contact_id == contact_id)
        position = tuple_(Message.lamport, Message.msg_id)
        if before is not None:
            query = query.where(position < tuple_(*before))
        if after is not None:
            query = query.where(position > tuple_(*after))
            query = query.order_by(Message.lamport, Message.msg_id).limit(limit)
            with self.engine.connect() as conn:
                return [_message(r) for r in conn.execute(query).all()]
        query = query.order_by(Message.lamport.desc(), Message.msg_id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [_message(r) for r in reversed(rows)]

    def conversations(self) -> list[ConversationRow]:
        """Every listed contact with its newest message, unread and outbox counts, by name:
        one read of the summary columns the triggers keep (migration 0008), however long the
        conversations are."""
        with self.engine.connect() as conn:
            return conversation_rows(_cursor(conn))

    def last_messages(self) -> dict[str, MessageRecord]:
        """The newest message of every conversation (for the conversation list)."""
        return {
            r.contact.id: r.last_message for r in self.conversations() if r.last_message is not None
        }

    def index_pending(self, limit: int = 5000) -> int:
        """Add up to `limit` not yet indexed messages to the search index, and to the
        conversation summaries and counters the contacts' rows keep; returns how many.

        Runs after storing (see migrations 0003 and 0013), never inside a message's commit."""
        with self._write_transaction() as cur:
            (last,) = cur.execute("SELECT last_id FROM search_progress WHERE id = 1").fetchone()
            count, top = cur.execute(
                "SELECT count(*), max(id) FROM "
                "(SELECT id FROM messages WHERE id > ? ORDER BY id LIMIT ?)",
                (last, limit),
            ).fetchone()
            if not count:
                return 0
            # The chunk joins the kept summaries and counters (migration 0013).
            cur.execute(FOLD_SUMMARIES, (last, top))
            # One statement inside SQLite: the bodies never travel through Python (and
            # the database thread does not hand the GIL back and forth once per row).
            cur.execute(
                "INSERT INTO messages_fts(rowid, body, contact_id) "
                "SELECT id, body, contact_id FROM messages WHERE id > ? AND id <= ? ORDER BY id",
                (last, top),
            )
            cur.execute("UPDATE search_progress SET last_id = ? WHERE id = 1", (top,))
        return int(count)

    def search(
        self,
        text: str,
        *,
        contact_id: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> list[MessageRecord]:
        """Full-text search (FTS5, inside the encrypted database), newest first: in the
        order the messages were stored (ours when we wrote them, others' when they
        arrived), which is the index's own rowid order, so FTS5 hands over the newest
        `limit` matches without sorting every match. `before` (a result's row_id) asks
        for the page after that result.

        Every word of `text` must occur (prefix match on the last one, for search-as-you-type).
        """
        match = fts_match(text)
        if match is None or limit <= 0:
            return []
        while self.index_pending():
            pass  # a search sees every stored message
        return self._search(
            _SEARCH_SQL, in_conversation(match, contact_id), contact_id, limit, before
        )

    def _search(
        self, sql: str, match: str, owner: Any, limit: int, before: int | None
    ) -> list[MessageRecord]:
        with self.engine.connect() as conn:
            rows = _cursor(conn).execute(sql, fts_params(match, owner, limit, before)).fetchall()
        return [_message(r) for r in rows]

    def rekey(self, new_key: bytes) -> None:
        """Re-encrypt the whole database under a new key (SQLCipher PRAGMA rekey)."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql(f"PRAGMA rekey = \"x'{new_key.hex()}'\"")
        # Every later connection must use the new key: a new engine, the old one closed.
        path = Path(str(self.engine.url.database))
        self.engine.dispose()
        self.engine = create_db_engine(path, new_key, synchronous=self._synchronous)

    def message(self, msg_id: bytes) -> MessageRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*_MESSAGE_COLUMNS).where(Message.msg_id == msg_id)).first()
        return _message(row) if row else None

    def mark_seen(self, contact_id: str) -> list[bytes]:
        """Mark every received message of the conversation read; returns their ids, oldest
        first. No index holds the unread (migration 0014): the conversation's newest
        messages are walked until as many are found as the summary counts (usually the
        last few), never the whole conversation."""
        with self.engine.begin() as conn:
            cur = _cursor(conn)
            ((unread,),) = cur.execute(_UNREAD_OF, (contact_id,)).fetchall() or [(0,)]
            if not unread:
                return []
            rows = cur.execute(_NEWEST_UNREAD, (contact_id, unread)).fetchall()
            for start in range(0, len(rows), 500):
                chunk = [row_id for row_id, _ in rows[start : start + 500]]
                # Only "?" placeholders are interpolated; every value is a parameter.
                sql = f"UPDATE messages SET state = ? WHERE id IN ({','.join('?' * len(chunk))})"  # noqa: S608
                cur.execute(sql, (int(MessageState.SEEN), *chunk))
        return [msg_id for _, msg_id in reversed(rows)]

    def unread_counts(self) -> dict[str, int]:
        """Received messages not yet read, per contact that has any (the summary)."""
        return self._summary_counts("unread")

    def message_count(self, contact_id: str | None = None) -> int:
        query = select(func.count()).select_from(Message)
        if contact_id is not None:
            query = query.where(Message.contact_id == contact_id)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

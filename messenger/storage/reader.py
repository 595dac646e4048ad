"""One-shot reads on a raw sqlcipher3 connection: `chinwag-cli whoami` and `contacts` when
no peer is running, and the desktop window's first paint (read_startup).

Opening the whole service for them imported SQLAlchemy, Alembic, zeroconf and every
feature module (~0.4 s of a ~0.45 s command, issue 15). This path takes the same steps
as PeerService.open that matter to a read (the key, the profile lock with its wait, the
permission fix-up, the check at every unlock) and then reads the few rows these commands
show. It answers only for a database at the newest schema: anything else (a migration
due, no database yet) is left to the full service (None), which also reports errors in
its own words. tests/unit/test_reader.py checks that both give the same answer.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.settings import BLOB_IDENTITY, DEFAULT_SETTINGS, SETTING_NAME
from ..identity import Identity, contact_id, fingerprint
from ..profile import ProfileDir, ProfileLock
from .database import SCHEMA_HEAD, check_database, plain_error, read_only_connection

if TYPE_CHECKING:
    from ..records import ConversationSummary, GroupMessageRecord, GroupRecord

READ_COMMANDS = frozenset({"whoami", "contacts"})


def read_command(
    profile: ProfileDir,
    command: str,
    passphrase: str | None,
    *,
    purpose: str,
    lock_wait: float = 0.0,
    on_lock_wait: Callable[[str], None] | None = None,
    give_up_waiting: Callable[[], bool] | None = None,
) -> Any | None:
    """What LocalApi's `command` returns for a profile no peer is running, or None when
    the full service has to answer. Raises what PeerService.open raises (ProfileLocked,
    WrongPassphrase, DatabaseDamaged, DiskFull, ...)."""
    if command not in READ_COMMANDS:
        raise ValueError(f"not a raw read: {command}")
    with _reading(profile, passphrase, purpose, lock_wait, on_lock_wait, give_up_waiting) as conn:
        if conn is None:
            return None
        if command == "whoami":
            return _whoami(conn, profile)
        return _contacts(conn)


@dataclass(frozen=True, slots=True)
class StartupView:
    """What the desktop window shows before the service is up: who I am, my settings, the
    conversation list and the group list (nobody online yet), read in one short raw
    transaction."""

    display_name: str
    contact_id: str
    settings: dict[str, Any]
    conversations: list[ConversationSummary]
    groups: list[tuple[GroupRecord, GroupMessageRecord | None]]  # each with its newest


def read_startup(
    profile: ProfileDir, passphrase: str | None, *, purpose: str = "chinwag"
) -> StartupView | None:
    """The first paint of the window, read without the service (issue 15: importing and
    opening it takes most of a second); None when only the service can answer (no profile,
    a migration due). Takes and releases the profile lock as the one-shot commands do, so
    a profile another Chinwag holds raises ProfileLocked here, before any window shows.
    Raises what PeerService.open raises."""
    # Here: whoami and contacts do without them.
    from ..records import ConversationSummary
    from .rows import conversation_rows

    with _reading(profile, passphrase, purpose, 0.0, None, None) as conn:
        if conn is None:
            return None
        conn.execute("BEGIN")  # both lists from one snapshot
        try:
            me = _whoami(conn, profile)
            rows = conversation_rows(conn)
            groups = _groups(conn, me["name"])
        finally:
            conn.execute("COMMIT")
    summaries = [
        ConversationSummary(r.contact, r.last_message, r.unread, False, r.queued) for r in rows
    ]
    summaries.sort(key=lambda s: -s.last_activity)  # as Chat.conversations orders them
    return StartupView(me["name"], me["id"], me["settings"], summaries, groups)


def _groups(conn: Any, my_name: str) -> list[tuple[GroupRecord, GroupMessageRecord | None]]:
    """The group list, if there is any group: the roster decoder (the wire codec, ~20 ms
    to import) is loaded only then."""
    if not conn.execute("SELECT EXISTS (SELECT 1 FROM chat_groups)").fetchone()[0]:
        return []
    from .group_rows import Viewer, group_list

    return group_list(conn, Viewer(_identity(conn).ed25519_public, my_name))


@contextlib.contextmanager
def _reading(
    profile: ProfileDir,
    passphrase: str | None,
    purpose: str,
    lock_wait: float,
    on_lock_wait: Callable[[str], None] | None,
    give_up_waiting: Callable[[], bool] | None,
) -> Iterator[Any | None]:
    """A read-only connection to a profile at the newest schema, under the profile lock;
    None: the full service has to open it (missing profile, a migration due)."""
    if not profile.exists():
        yield None  # the service says what is missing
        return
    key, trusted = profile.unlock_key(passphrase)
    lock = ProfileLock(profile)
    lock.acquire_waiting_sync(purpose, lock_wait, on_wait=on_lock_wait, give_up=give_up_waiting)
    try:
        profile.secure()  # warns and narrows what is too wide, as an open does
        check_database(profile.db_path, key, key_trusted=trusted)
        conn = read_only_connection(profile.db_path, key)
        try:
            if _schema_revision(conn) != SCHEMA_HEAD:
                yield None  # a migration is due: the service runs it
                return
            profile.remember_key_check(key)
            yield conn
        except Exception as exc:
            plain = plain_error(exc, profile.db_path)
            if plain is None:
                raise
            raise plain from exc
        finally:
            conn.close()
    finally:
        lock.release()


def _schema_revision(conn: Any) -> str | None:
    import sqlcipher3

    try:
        rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlcipher3.OperationalError:  # no such table
        return None
    return rows[0][0] if len(rows) == 1 else None


def _setting(conn: Any, key: str, default: Any) -> Any:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return default if row is None or row[0] is None else json.loads(row[0])


def _identity(conn: Any) -> Identity:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (BLOB_IDENTITY,)).fetchone()
    if row is None:
        from ..errors import ProfileError

        raise ProfileError("the profile database holds no identity")
    return Identity.from_bytes(row[0])


def _whoami(conn: Any, profile: ProfileDir) -> dict[str, Any]:
    """LocalApi.cmd_whoami of a service that is not listening."""
    identity = _identity(conn)
    return {
        "name": _setting(conn, SETTING_NAME, ""),
        "id": contact_id(identity.ed25519_public),
        "fingerprint": fingerprint(identity.ed25519_public),
        "profile": str(profile.path),
        "listen_port": None,
        "running": False,
        "addresses": [],
        "settings": {key: _setting(conn, key, value) for key, value in DEFAULT_SETTINGS.items()},
    }


def _contacts(conn: Any) -> list[dict[str, Any]]:
    """LocalApi.cmd_contacts of a service that is not online: the contacts the user added
    (not members known only through a group), by name, with the summary counts the
    indexer keeps and the rows it has not reached (migrations 0008, 0013)."""
    from .rows import QUEUED, SUMMARY_DELTA, UNREAD

    rows = conn.execute(
        f"WITH d AS ({SUMMARY_DELTA}) "  # noqa: S608
        f"SELECT c.id, c.display_name, c.verified, c.last_seen, c.addresses, {UNREAD}, "
        f"{QUEUED}, c.key_changed, c.replaces FROM contacts c LEFT JOIN d ON d.cid = c.id "
        "WHERE c.group_only IS 0 ORDER BY c.display_name, c.id"
    ).fetchall()
    return [
        {
            "id": r[0],
            "name": r[1],
            "verified": bool(r[2]),
            "key_changed": bool(r[7]),
            "replaces": r[8],
            "online": False,
            "last_seen": r[3],
            "addresses": list(json.loads(r[4])),
            "unread": r[5],
            "queued": r[6],
        }
        for r in rows
    ]

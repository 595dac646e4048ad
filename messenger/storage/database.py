"""Opening the SQLCipher database and migrating it with Alembic."""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

# SQLAlchemy is imported where an engine is made, not here: the checks below and the raw
# read path of one-shot CLI commands (reader.py) use sqlcipher3 alone (issue 15).
if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import URL, Engine
    from sqlalchemy.engine import ExceptionContext

from ..errors import (
    DatabaseCorrupt,
    DatabaseDamaged,
    DatabaseEmpty,
    DatabaseTruncated,
    DiskFull,
    ProfileError,
    WrongPassphrase,
)

log = logging.getLogger(__name__)

# SQLite's primary result codes for a damaged file (and for a wrong SQLCipher key).
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26
# The disk is full (or the file hit its size limit): nothing of the statement was written.
SQLITE_FULL = 13
# On a full disk, opening the database can fail with these instead (no room for -shm).
SQLITE_IOERR = 10
SQLITE_CANTOPEN = 14
# Less free space than this where the profile is, and an I/O error opening it means a full
# disk, not a damaged file.
DISK_FULL_BELOW = 1 << 20
# At every start a database up to this size has every page's HMAC checked
# (PRAGMA cipher_integrity_check, ~4 ms per MiB here: ~60 ms at this size); a bigger one
# only its header, size and schema, because the full check grows with it (1.3 s for
# 1M messages, 334 MiB; quick_check 3.3 s, integrity_check 18 s). A damaged page found
# later is still reported plainly (the handle_error hook below), and `chinwag-cli doctor`
# checks everything on demand.
FULL_CHECK_AT_START_MAX_BYTES = 16 * 1024 * 1024

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# The newest migration's revision. Kept here so an up-to-date profile opens without
# importing Alembic (about half a second of start-up); tests/unit/test_storage.py checks it
# against Alembic's own idea of the head, so a new migration cannot be forgotten here.
SCHEMA_HEAD = "0016"


def _url(db_path: Path, key: bytes) -> URL:
    from sqlalchemy import URL

    # SQLCipher takes a raw 256-bit key as  PRAGMA key = "x'<hex>'"  and then skips its own
    # PBKDF2: our key already comes from Argon2id or from a random source.
    return URL.create("sqlite+pysqlcipher", password=f"x'{key.hex()}'", database=str(db_path))


def create_db_engine(db_path: Path, key: bytes, *, synchronous: str = "NORMAL") -> Engine:
    """synchronous=NORMAL (the default, with WAL): a commit is in the OS before we go on, so
    it survives a killed or crashed process; an OS crash or power cut may lose the last
    commits (never corrupts). FULL also fsyncs each commit, at ~10x the latency here."""
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import StaticPool

    # One connection for the whole process (StaticPool), used by one thread at a time (the
    # service's database thread, or the loop thread while that is idle). The default pool
    # here keeps one connection per thread, and in WAL mode every commit on one of them
    # throws away the page cache of the others: SQLCipher then decrypts the pages again.
    engine = create_engine(
        _url(db_path, key),
        connect_args={"check_same_thread": False, "isolation_level": None},
        poolclass=StaticPool,
    )

    # A page that fails its HMAC or a broken b-tree, met by any query: a plain error
    # (DatabaseCorrupt, with what to do) instead of a traceback, and nothing written.
    @event.listens_for(engine, "handle_error")
    def _damaged(ctx: ExceptionContext) -> None:
        plain = plain_error(ctx.original_exception, db_path)
        if plain is not None:
            raise plain from ctx.original_exception

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: object, _record: object) -> None:
        cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
        cur.execute(
            "PRAGMA cipher_log_level = NONE"
        )  # a wrong key is reported by us, not on stderr
        # Reading the schema is the first access that needs the key: a wrong key fails here.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=5000")
        cur.close()

    # isolation_level=None hands transaction control to SQLAlchemy's own BEGIN below.
    @event.listens_for(engine, "begin")
    def _begin(conn: object) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # type: ignore[attr-defined]

    return engine


def open_database(
    db_path: Path,
    key: bytes,
    *,
    create: bool = False,
    synchronous: str = "NORMAL",
    key_trusted: bool = False,
) -> Engine:
    """Open (or with create=True, make) the encrypted database and bring it to the newest schema.

    A wrong key raises WrongPassphrase, a damaged file DatabaseDamaged (key_trusted: the
    key is known to be right, so a file it cannot decrypt is damaged); either way the
    files are left exactly as they were.
    """
    if not create and not db_path.exists():
        raise FileNotFoundError(db_path)
    if db_path.exists():
        if create:
            check_key(db_path, key)
        else:
            check_database(db_path, key, key_trusted=key_trusted)
    from sqlalchemy import text
    from sqlalchemy.exc import DatabaseError

    engine = create_db_engine(db_path, key, synchronous=synchronous)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT count(*) FROM sqlite_master")).scalar_one()
    except DatabaseError as exc:
        engine.dispose()
        if "file is not a database" in str(exc) or "encrypted" in str(exc):
            raise WrongPassphrase(
                "wrong passphrase: the profile database cannot be decrypted"
            ) from None
        raise
    migrate(engine)
    return engine


def check_key(db_path: Path, key: bytes) -> None:
    """Try the key on a read-only connection, which can neither write nor checkpoint a
    leftover WAL: a wrong key must leave every file exactly as it was."""
    import sqlcipher3

    conn = _read_only(db_path, key)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher3.DatabaseError:
        raise WrongPassphrase(
            "wrong passphrase: the profile database cannot be decrypted"
        ) from None
    finally:
        conn.close()


def read_only_connection(db_path: Path, key: bytes) -> Any:
    """A raw sqlcipher3 connection that can only read (storage/reader.py)."""
    return _read_only(db_path, key)


def _read_only(db_path: Path, key: bytes, *, writable_schema: bool = False) -> Any:
    """A read-only connection: it can neither write nor checkpoint a leftover WAL."""
    import sqlcipher3

    # as_uri() percent-encodes: a raw '#', '?' or '%' in the path would change its meaning.
    uri = f"{db_path.resolve().as_uri()}?mode=ro"
    try:
        conn = sqlcipher3.connect(uri, uri=True)
    except sqlcipher3.OperationalError as exc:
        raise ProfileError(f"cannot open the profile database {db_path}: {exc}") from exc
    conn.execute("PRAGMA cipher_log_level = NONE")
    conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    if writable_schema:  # SQLite then reads a file shorter than its header says
        conn.execute("PRAGMA writable_schema = ON")
    return conn


def _error_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def damage_of(exc: BaseException, db_path: Path) -> DatabaseDamaged | None:
    """The plain error for a driver exception that means a damaged file, else None."""
    if _error_code(exc) in (SQLITE_CORRUPT, SQLITE_NOTADB):
        return DatabaseCorrupt(db_path, f"is damaged ({exc}): part of it no longer decrypts")
    return None


def plain_error(exc: BaseException, db_path: Path) -> DatabaseDamaged | DiskFull | None:
    """The plain error for a driver exception the user can act on (a damaged file, a full
    disk: DiskFull, which the service and the CLI know, not a traceback), else None."""
    if _error_code(exc) == SQLITE_FULL:
        return DiskFull(db_path.parent)
    return damage_of(exc, db_path)


def disk_full(folder: Path) -> bool:
    """Is the file system holding `folder` (nearly) out of space?"""
    return shutil.disk_usage(folder).free < DISK_FULL_BELOW


def check_database(db_path: Path, key: bytes, *, key_trusted: bool, full: bool = False) -> None:
    """The check at every unlock (full=False) or `doctor`'s (full=True): tells a wrong key
    from an empty, cut short or damaged file, on a read-only connection. Raises
    WrongPassphrase or a DatabaseDamaged; returns when the file looks sound."""
    import sqlcipher3

    size = db_path.stat().st_size
    if size == 0:
        raise DatabaseEmpty(db_path, "is empty (0 bytes): everything that was in it is gone")
    conn = _read_only(db_path, key)
    try:
        try:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlcipher3.DatabaseError as exc:
            if _error_code(exc) == SQLITE_NOTADB and not key_trusted:
                raise WrongPassphrase(
                    "wrong passphrase: the profile database cannot be decrypted"
                ) from None
            if _error_code(exc) in (SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN) and disk_full(
                db_path.parent
            ):
                # Not damage: SQLite could not make its shared-memory file (-shm).
                raise DiskFull(db_path.parent) from None
            raise _classify(db_path, key, size, exc) from None
        if tables == 0:
            raise DatabaseEmpty(db_path, "holds no tables: everything that was in it is gone")
        if full or size <= FULL_CHECK_AT_START_MAX_BYTES:
            _check_pages(conn, db_path)
        if full:
            _check_structure(conn, db_path)
    finally:
        conn.close()


def _classify(db_path: Path, key: bytes, size: int, exc: BaseException) -> DatabaseDamaged:
    """The right key did not open the file: cut short, or damaged pages."""
    page_size = 4096  # SQLCipher 4's default, which Chinwag never changes
    if size % page_size:
        return DatabaseTruncated(
            db_path,
            f"is cut short ({size} bytes, not a whole number of {page_size}-byte pages): "
            "its end is missing",
        )
    # Every page carries an HMAC under our key. If each page the file holds is authentic
    # and SQLite still finds the database inconsistent, pages are missing: it was cut.
    conn = _read_only(db_path, key)
    try:
        _check_pages(conn, db_path)
    finally:
        conn.close()
    return DatabaseTruncated(
        db_path,
        f"is cut short: the {size // page_size} pages left are intact, but the rest of the "
        f"database is missing ({exc})",
    )


def _check_pages(conn: Any, db_path: Path) -> None:
    """Every page's HMAC (SQLCipher's cipher_integrity_check): random bytes anywhere."""
    problems = [row[0] for row in conn.execute("PRAGMA cipher_integrity_check").fetchall()]
    if problems:
        shown = "; ".join(problems[:3]) + (
            f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        )
        raise DatabaseCorrupt(db_path, f"is damaged: {shown}")


def _check_structure(conn: Any, db_path: Path) -> None:
    """SQLite's own full check of every b-tree and index (slow: ~18 s for 1M messages)."""
    import sqlcipher3

    try:
        rows = [row[0] for row in conn.execute("PRAGMA integrity_check(20)").fetchall()]
    except sqlcipher3.DatabaseError as exc:
        raise DatabaseCorrupt(db_path, f"is damaged ({exc})") from None
    if rows != ["ok"]:
        raise DatabaseCorrupt(db_path, "is damaged: " + "; ".join(rows[:3]))


def alembic_config() -> Config:
    from alembic.config import Config

    # Alembic's default output is the sys.stdout of the moment it was imported, which
    # may since have been closed (a test's capture, a detached pipe). Its command
    # messages are of no use to a user, so they go to a buffer of their own.
    cfg = Config(stdout=io.StringIO())
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


# Migration 0016 makes both search indexes again: ~6 s a million messages, once (issue 15,
# ninth round of 1:1 throughput). Past this many messages the first start after the
# update says so before it starts, instead of sitting silent for seconds.
REBUILD_NOTICE_ROWS = 200_000


def migrate(engine: Engine, revision: str = "head") -> None:
    current = current_revision(engine)
    if revision == "head" and current == SCHEMA_HEAD:
        return
    from alembic import command

    if current is not None and current < "0016" and (revision == "head" or revision >= "0016"):
        _notice_rebuild(engine)

    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def _notice_rebuild(engine: Engine) -> None:
    from sqlalchemy import text

    rows = 0
    with engine.connect() as conn:
        tables = set(conn.execute(text("SELECT name FROM sqlite_master")).scalars())
        for table in ("messages", "group_messages"):  # the latter since 0004
            if table in tables:
                # The largest row id, not count(*): the end of the table, not a walk of it.
                # Only these two constant names are interpolated.
                sql = f"SELECT coalesce(max(id), 0) FROM {table}"  # noqa: S608
                rows += conn.execute(text(sql)).scalar_one()
    if rows >= REBUILD_NOTICE_ROWS:
        log.warning(
            "updating the database: the search index of about %s messages is made again, "
            "once (a few seconds a million messages)",
            f"{rows:,}",
        )


def current_revision(engine: Engine) -> str | None:
    """The schema revision stored in the database (Alembic's own table, read directly)."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    with engine.connect() as conn:
        try:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        except OperationalError:  # no such table: a database Alembic has not touched yet
            return None
    # More than one row would mean branched migrations, which this project does not use.
    return rows[0][0] if len(rows) == 1 else None

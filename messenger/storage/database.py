"""Opening the SQLCipher database and migrating it with Alembic."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import URL, Engine, create_engine, event, text
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.pool import StaticPool

if TYPE_CHECKING:
    from alembic.config import Config

from ..profile import ProfileError, WrongPassphrase

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# The newest migration's revision. Kept here so an up-to-date profile opens without
# importing Alembic (about half a second of start-up); tests/unit/test_storage.py checks it
# against Alembic's own idea of the head, so a new migration cannot be forgotten here.
SCHEMA_HEAD = "0008"


def _url(db_path: Path, key: bytes) -> URL:
    # SQLCipher takes a raw 256-bit key as  PRAGMA key = "x'<hex>'"  and then skips its own
    # PBKDF2: our key already comes from Argon2id or from a random source.
    return URL.create("sqlite+pysqlcipher", password=f"x'{key.hex()}'", database=str(db_path))


def create_db_engine(db_path: Path, key: bytes, *, synchronous: str = "NORMAL") -> Engine:
    """synchronous=NORMAL (the default, with WAL): a commit is in the OS before we go on, so
    it survives a killed or crashed process; an OS crash or power cut may lose the last
    commits (never corrupts). FULL also fsyncs each commit, at ~10x the latency here."""
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
    # One connection for the whole process (StaticPool), used by one thread at a time (the
    # service's database thread, or the loop thread while that is idle). The default pool
    # here keeps one connection per thread, and in WAL mode every commit on one of them
    # throws away the page cache of the others: SQLCipher then decrypts the pages again.
    engine = create_engine(
        _url(db_path, key),
        connect_args={"check_same_thread": False, "isolation_level": None},
        poolclass=StaticPool,
    )

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
    db_path: Path, key: bytes, *, create: bool = False, synchronous: str = "NORMAL"
) -> Engine:
    """Open (or with create=True, make) the encrypted database and bring it to the newest schema.

    A wrong key raises WrongPassphrase and leaves the file untouched.
    """
    if not create and not db_path.exists():
        raise FileNotFoundError(db_path)
    if db_path.exists():
        check_key(db_path, key)
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

    # as_uri() percent-encodes: a raw '#', '?' or '%' in the path would change its meaning.
    uri = f"{db_path.resolve().as_uri()}?mode=ro"
    try:
        conn = sqlcipher3.connect(uri, uri=True)
    except sqlcipher3.OperationalError as exc:
        raise ProfileError(f"cannot open the profile database {db_path}: {exc}") from exc
    try:
        conn.execute("PRAGMA cipher_log_level = NONE")
        conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher3.DatabaseError:
        raise WrongPassphrase(
            "wrong passphrase: the profile database cannot be decrypted"
        ) from None
    finally:
        conn.close()


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    if revision == "head" and current_revision(engine) == SCHEMA_HEAD:
        return
    from alembic import command

    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    """The schema revision stored in the database (Alembic's own table, read directly)."""
    with engine.connect() as conn:
        try:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        except OperationalError:  # no such table: a database Alembic has not touched yet
            return None
    # More than one row would mean branched migrations, which this project does not use.
    return rows[0][0] if len(rows) == 1 else None

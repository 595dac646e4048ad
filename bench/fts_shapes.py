"""What the 1:1 search index costs a message, by its shape (issue 15, ninth round of 1:1
throughput). Not a benchmark with a target: a measurement of the indexer's pass alone.

A fresh SQLCipher profile (the app's schema and settings, `open_database`), one contact,
`--messages` two-word 200-byte bodies as bench_processes sends, stored in windows of 500
(not timed); after every `--every` of them the indexer's work (Repository.index_pending's
statements: fold the chunk into the summaries, insert it into the FTS5 table, move the
mark) in chunks of `--chunk`, on the same connection (its page cache warm, as in the
app), timed with the thread's CPU clock; each index shape in turn on its own copy.

    python -m bench.fts_shapes --messages 120000 --runs 2
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from messenger.storage.database import open_database
from messenger.storage.repository import FOLD_SUMMARIES

TOKENIZE = "tokenize='unicode61 remove_diacritics 2'"
_HEX = "'0123456789abcdef'"
TOKEN_SQL = (
    "char(983040 + ("
    + " + ".join(
        f"instr({_HEX}, substr(contact_id, {i + 1}, 1)) * {17 ** (3 - i)}" for i in range(4)
    )
    + ") % 65534)"
)
SHAPES: dict[str, tuple[str, str]] = {
    # name: (CREATE, the indexer's INSERT ... SELECT)
    "main (body, contact_id; prefix 2 3)": (
        "CREATE VIRTUAL TABLE messages_fts USING fts5(body, contact_id, content='messages', "
        f"content_rowid='id', {TOKENIZE}, prefix='2 3')",
        "INSERT INTO messages_fts(rowid, body, contact_id) "
        "SELECT id, body, contact_id FROM messages WHERE id > ? AND id <= ? ORDER BY id",
    ),
    "columnsize=0": (
        "CREATE VIRTUAL TABLE messages_fts USING fts5(body, contact_id, content='messages', "
        f"content_rowid='id', {TOKENIZE}, prefix='2 3', columnsize=0)",
        "INSERT INTO messages_fts(rowid, body, contact_id) "
        "SELECT id, body, contact_id FROM messages WHERE id > ? AND id <= ? ORDER BY id",
    ),
    "no contact column": (
        "CREATE VIRTUAL TABLE messages_fts USING fts5(body, content='messages', "
        f"content_rowid='id', {TOKENIZE}, prefix='2 3')",
        "INSERT INTO messages_fts(rowid, body) "
        "SELECT id, body FROM messages WHERE id > ? AND id <= ? ORDER BY id",
    ),
    "no contact column, columnsize=0": (
        "CREATE VIRTUAL TABLE messages_fts USING fts5(body, content='messages', "
        f"content_rowid='id', {TOKENIZE}, prefix='2 3', columnsize=0)",
        "INSERT INTO messages_fts(rowid, body) "
        "SELECT id, body FROM messages WHERE id > ? AND id <= ? ORDER BY id",
    ),
    "one-char contact token, columnsize=0": (
        "CREATE VIRTUAL TABLE messages_fts USING fts5(body, conv, content='messages', "
        f"content_rowid='id', {TOKENIZE}, prefix='2 3', columnsize=0)",
        "INSERT INTO messages_fts(rowid, body, conv) "
        f"SELECT id, body, {TOKEN_SQL} FROM messages WHERE id > ? AND id <= ? ORDER BY id",
    ),
    "one-char contact token": (
        "CREATE VIRTUAL TABLE messages_fts USING fts5(body, conv, content='messages', "
        f"content_rowid='id', {TOKENIZE}, prefix='2 3')",
        "INSERT INTO messages_fts(rowid, body, conv) "
        f"SELECT id, body, {TOKEN_SQL} FROM messages WHERE id > ? AND id <= ? ORDER BY id",
    ),
    "columnsize=0, detail=column": (
        "CREATE VIRTUAL TABLE messages_fts USING fts5(body, contact_id, content='messages', "
        f"content_rowid='id', {TOKENIZE}, prefix='2 3', columnsize=0, detail=column)",
        "INSERT INTO messages_fts(rowid, body, contact_id) "
        "SELECT id, body, contact_id FROM messages WHERE id > ? AND id <= ? ORDER BY id",
    ),
}


def _connect(db: Path, key: bytes) -> Any:
    import sqlcipher3

    conn = sqlcipher3.connect(str(db), isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def make_profile(folder: Path) -> tuple[Path, bytes, str]:
    key = secrets.token_bytes(32)
    db = folder / "base.db"
    open_database(db, key, create=True).dispose()
    conn = _connect(db, key)
    cid = secrets.token_hex(16)
    conn.execute(
        "INSERT INTO contacts (id, display_name, ed25519_public, x25519_public, "
        "static_certificate, psk, discovery_key, conversation_id, verified, addresses, "
        "created_at, last_seen, lamport, next_seq, group_only) "
        "VALUES (?, 'Bob', ?, ?, ?, ?, ?, ?, 0, '[]', 1.6e9, NULL, 0, 1, 0)",
        (cid, *(secrets.token_bytes(n) for n in (32, 32, 64, 32, 32, 16))),
    )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return db, key, cid


def store(conn: Any, cid: str, first: int, count: int) -> None:
    """Our messages in windows of 500, as a burst stores them (not timed)."""
    pad = "x" * 190
    for start in range(first, first + count, 500):
        rows = [
            (secrets.token_bytes(16), cid, i + 1, i + 1, 1_600_000_000_000 + i, f"m{i:08d} {pad}")
            for i in range(start, min(start + 500, first + count))
        ]
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO messages (msg_id, contact_id, outgoing, seq, lamport, sent_at_ms, "
            "received_at_ms, body, state) VALUES (?, ?, 1, ?, ?, ?, NULL, ?, 2)",
            rows,
        )
        conn.execute("COMMIT")


def index_all(
    db: Path, key: bytes, cid: str, create: str, insert: str, args: argparse.Namespace
) -> tuple[float, float]:
    """CPU s a message of the whole pass, and of the FTS5 INSERT statements alone."""
    conn = _connect(db, key)
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'messages_fts%'"
    ).fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("DROP TABLE messages_fts")
    conn.execute(create)
    conn.execute("INSERT INTO messages_fts(messages_fts, rank) VALUES('automerge', 8)")
    conn.execute("UPDATE search_progress SET last_id = 0")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    total = fts = fold = commit = 0.0
    count = 0
    chunk = args.chunk
    for first in range(0, args.messages, args.every):
        store(conn, cid, first, args.every)
        while True:
            t0 = time.thread_time()
            conn.execute("BEGIN IMMEDIATE")
            (last,) = conn.execute("SELECT last_id FROM search_progress WHERE id = 1").fetchone()
            n, top = conn.execute(
                "SELECT count(*), max(id) FROM (SELECT id FROM messages WHERE id > ? ORDER BY id "
                "LIMIT ?)",
                (last, chunk),
            ).fetchone()
            if not n:
                conn.execute("ROLLBACK")
                break
            tf = time.thread_time()
            conn.execute(FOLD_SUMMARIES, (last, top))
            t1 = time.thread_time()
            fold += t1 - tf
            conn.execute(insert, (last, top))
            fts += time.thread_time() - t1
            conn.execute("UPDATE search_progress SET last_id = ? WHERE id = 1", (top,))
            tc = time.thread_time()
            conn.execute("COMMIT")
            commit += time.thread_time() - tc
            total += time.thread_time() - t0
            count += n
    conn.close()
    if args.parts:
        fold, fts, commit = (x / count * 1e6 for x in (fold, fts, commit))
        print(f"    fold {fold:.2f}, FTS5 insert {fts:.2f}, commit {commit:.2f} us a message")
    return total / count, fts / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=5000)
    parser.add_argument("--every", type=int, default=15000, help="index after this many")
    parser.add_argument("--only", nargs="*", help="shape names (substrings)")
    parser.add_argument("--parts", action="store_true", help="print each pass's parts")
    args = parser.parse_args()
    os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base, key, cid = make_profile(folder)
        shapes = {
            k: v for k, v in SHAPES.items() if not args.only or any(o in k for o in args.only)
        }
        results: dict[str, list[tuple[float, float]]] = {k: [] for k in shapes}
        for _ in range(args.runs):  # the shapes in turn, so the machine's load hits all
            for name, (create, insert) in shapes.items():
                db = folder / "run.db"
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{db}{suffix}").unlink(missing_ok=True)
                shutil.copy(base, db)
                results[name].append(index_all(db, key, cid, create, insert, args))
        load = os.getloadavg()[0]
        print(
            f"{args.messages:,} messages, a pass every {args.every:,} in chunks of "
            f"{args.chunk:,}, load {load:.1f}"
        )
        for name, runs in results.items():
            whole = " / ".join(f"{w * 1e6:.2f}" for w, _ in runs)
            ins = " / ".join(f"{f * 1e6:.2f}" for _, f in runs)
            med = statistics.median(w for w, _ in runs) * 1e6
            print(f"  {name:38s} pass {whole} us (median {med:.2f}); FTS5 insert {ins}")


if __name__ == "__main__":
    main()

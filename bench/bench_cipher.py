"""SQLCipher settings for a one-row commit: page size, page HMAC, WAL autocheckpoint.

Each variant is a fresh SQLCipher file with the service's pragmas (WAL, synchronous=
NORMAL, a raw 256-bit key) and a messages-like table with three indexes; a sample is one
BEGIN IMMEDIATE / INSERT of a 200-byte row / COMMIT. Variants run interleaved, round by
round, so that the load of this shared machine hits them alike. The raw baseline is the
same commit in plain SQLite (no encryption) in the same run.

    python -m bench.bench_cipher [--quick]
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlcipher3

from .common import Result, fmt_time, parse_args, print_table

VARIANTS: dict[str, list[str]] = {
    "default (4 KiB pages, HMAC-SHA512, autocheckpoint 1000)": [],
    "HMAC-SHA256": ["PRAGMA cipher_hmac_algorithm = HMAC_SHA256"],
    "8 KiB pages": ["PRAGMA cipher_page_size = 8192"],
    "16 KiB pages": ["PRAGMA cipher_page_size = 16384"],
    "1 KiB pages": ["PRAGMA cipher_page_size = 1024"],
    "autocheckpoint 10000 pages": ["PRAGMA wal_autocheckpoint = 10000"],
    "HMAC off (for comparison only: no page integrity)": ["PRAGMA cipher_use_hmac = OFF"],
}
SCHEMA = (
    "CREATE TABLE m (id INTEGER PRIMARY KEY, msg_id BLOB UNIQUE, contact_id TEXT, "
    "lamport INTEGER, body TEXT, state INTEGER)",
    "CREATE INDEX ix_order ON m (contact_id, lamport, msg_id)",
    "CREATE INDEX ix_state ON m (contact_id, state)",
)


def _open(path: Path, settings: list[str] | None) -> Any:
    if settings is None:
        conn: Any = sqlite3.connect(path, isolation_level=None)
    else:
        conn = sqlcipher3.connect(str(path), isolation_level=None)
        conn.execute(f"PRAGMA key = \"x'{os.urandom(32).hex()}'\"")
        for pragma in settings:
            if "autocheckpoint" not in pragma:
                conn.execute(pragma)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for pragma in settings or ():
        if "autocheckpoint" in pragma:
            conn.execute(pragma)
    for sql in SCHEMA:
        conn.execute(sql)
    return conn


def _commits(conn: Any, count: int, start: int) -> list[float]:
    samples = []
    for i in range(start, start + count):
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO m (msg_id, contact_id, lamport, body, state) VALUES (?, ?, ?, ?, 10)",
            (os.urandom(16), f"c{i % 200}", i, "x" * 200),
        )
        conn.execute("COMMIT")
        samples.append(time.perf_counter() - t)
    return samples


def run(quick: bool) -> list[Result]:
    rounds, per_round = (4, 500) if quick else (10, 2000)
    with tempfile.TemporaryDirectory(prefix="chinwag-cipher-") as tmp:
        conns = {"plain": _open(Path(tmp) / "plain.db", None)}
        for i, (name, settings) in enumerate(VARIANTS.items()):
            conns[name] = _open(Path(tmp) / f"v{i}.db", settings)
        samples: dict[str, list[float]] = {name: [] for name in conns}
        for r in range(rounds):
            for name, conn in conns.items():
                samples[name] += _commits(conn, per_round, r * per_round)
        for conn in conns.values():
            conn.close()
    plain = statistics.median(samples.pop("plain"))
    default = statistics.median(samples[next(iter(VARIANTS))])
    results = []
    for name, values in samples.items():
        p50 = statistics.median(values)
        results.append(
            Result(
                f"one-row commit, {name}",
                f"{fmt_time(p50)} (p50; {p50 / default:.2f}x the default)",
                f"{fmt_time(plain)} (plain SQLite, same commit)",
                p50 / plain,
                f"{p50 / plain:.2f}x",
            )
        )
    return results


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    print_table("SQLCipher settings, one-row commit", run(args.quick))


if __name__ == "__main__":
    main()

"""What the database checks cost on a big profile (issue 14 item 5): the check at every
unlock, and each of SQLite/SQLCipher's full checks that `chinwag-cli doctor` runs, against
a raw read of the same file (warm page cache) in the same run.

    python -m bench.bench_integrity [--messages N] [--keep DIR]

Building 1,000,000 messages takes about 80 s here; --keep DIR reuses (or leaves) the
profile in DIR for another run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"

from messenger.profile import ProfileDir
from messenger.service import PeerService, ServiceConfig
from messenger.storage import database
from messenger.storage.repository import IncomingMessage, NewContact


async def build(folder: Path, total: int) -> None:
    service, _ = await PeerService.create_profile(
        folder, "Big", None, config=ServiceConfig(network=False)
    )
    try:
        contact_id = os.urandom(16).hex()
        contact = NewContact(
            contact_id, "Dana", os.urandom(32), os.urandom(32), os.urandom(64),
            os.urandom(32), os.urandom(32), os.urandom(16), False, ("127.0.0.1:9",),
        )  # fmt: skip
        service.repo.add_contact(contact, time.time())
        now_ms = int(time.time() * 1000)
        rng = random.Random(1)
        for start in range(0, total, 2000):
            batch = [
                IncomingMessage(
                    rng.randbytes(16),
                    i + 1,
                    i + 1,
                    now_ms - (total - i) * 1000,
                    f"message {i} " + "x" * 60,
                )
                for i in range(start, min(total, start + 2000))
            ]
            service.repo.store_incoming([(contact_id, batch)], now_ms)
        while service.repo.index_pending(20_000):
            pass  # the search index too, as a real profile has it
    finally:
        await service.aclose()


def timed(fn: Callable[[], object], runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def raw_read(path: Path) -> None:
    with path.open("rb") as fh:
        while fh.read(1 << 20):
            pass


def pragma(db: Path, key: bytes, statement: str) -> Callable[[], object]:
    def run() -> object:
        conn = database._read_only(db, key)
        try:
            return conn.execute(statement).fetchall()
        finally:
            conn.close()

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="build the profile here (or reuse it)")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="chinwag-integrity-"))
    folder = root / "profile"
    try:
        if not folder.exists():
            print(f"building {args.messages:,} messages ...", file=sys.stderr, flush=True)
            asyncio.run(build(folder, args.messages))
        profile = ProfileDir(folder)
        key, trusted = profile.unlock_key(None)
        db = profile.db_path
        size = db.stat().st_size
        raw = timed(lambda: raw_read(db))
        start_check = timed(lambda: database.check_database(db, key, key_trusted=trusted))
        rows = [("check at every unlock (as used)", start_check)]
        for name in ("cipher_integrity_check", "quick_check", "integrity_check"):
            rows.append((f"PRAGMA {name}", timed(pragma(db, key, f"PRAGMA {name}"), 1)))
        print(f"\n{args.messages:,} messages, {size / 1048576:.0f} MiB database")
        print("| check | time | raw read of the file (warm cache) | ratio |")
        print("| --- | --- | --- | --- |")
        for name, seconds in rows:
            ms, raw_ms, ratio = seconds * 1000, raw * 1000, seconds / raw
            print(f"| {name} | {ms:,.1f} ms | {raw_ms:,.1f} ms | {ratio:.2f}x |")
        limit = database.FULL_CHECK_AT_START_MAX_BYTES
        print(f"\n(databases up to {limit // 1048576} MiB get cipher_integrity_check at unlock)")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

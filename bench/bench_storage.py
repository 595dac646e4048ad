"""A big profile: the conversation list, search, and CLI start-up on 1,000,000 messages.

The profile (200 contacts, 1M messages interleaved in time, bodies drawn from a Zipf
vocabulary so that some words are in a large share of all messages) is built with bulk
SQL inserts through the real schema and its triggers, then fully search-indexed. Built
once into --keep DIR and reused by later runs (a build takes a minute or two).

Each row is compared with a raw baseline measured in the same run on the same file:
* `conversations()` (PeerService, network off) against a raw sqlcipher3 read of the
  200 contact rows (the least any conversation list must read);
* search, first page of 50 newest hits, against the bare FTS5 query for the same 50
  rowids (sqlcipher3, no join, no Python records); then the next page (`before`), a
  rare word, and one conversation's search;
* `chinwag-cli whoami` / `contacts` wall time against `python -c 'import sqlcipher3'`.

    python -m bench.bench_storage [--quick] [--keep DIR] [--messages N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlcipher3

from messenger.identity import contact_id as make_contact_id
from messenger.profile import ProfileDir
from messenger.records import MessageState
from messenger.service import PeerService, ServiceConfig
from messenger.storage.repository import FOLD_SUMMARIES

from .common import Result, fmt_time, print_table, quiet_logging

CONTACTS = 200
MESSAGES = 1_000_000
PAGE = 50
# Ordinary words first (their Zipf ranks make "the" ~40 % of messages, "time" ~2 %), then
# made-up ones; "zebra" is planted in a few messages as the rare word.
COMMON = (
    "the you to and it of is that in me for my on have this be not what so was with but "
    "are just we do at can lol if your all no up get like out about know now one will "
    "how go there think good see when time really yeah today then back"
).split()
VOCABULARY = COMMON + [f"w{i:04d}" for i in range(6000)]
COMMON_WORD, MEDIUM_WORD, RARE_WORD = "the", "time", "zebra"
RARE_EVERY = 50_000


def _bodies(count: int, rng: random.Random) -> list[str]:
    weights = [1 / (rank + 1) ** 1.07 for rank in range(len(VOCABULARY))]
    words = rng.choices(VOCABULARY, weights, k=count * 9)
    out = []
    pos = 0
    for i in range(count):
        n = 3 + (i * 7919) % 12  # 3..14 words
        body = " ".join(words[pos : pos + n])
        pos = (pos + n) % (len(words) - 15)
        out.append(f"{body} {RARE_WORD}" if i % RARE_EVERY == 7 else body)
    return out


def _connect(db: Path, key: bytes) -> Any:
    conn = sqlcipher3.connect(str(db), isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def build_profile(path: Path, messages: int, contacts: int = CONTACTS, seed: int = 1) -> None:
    """A profile as `chinwag-cli init` makes it, then `contacts` contacts and `messages`
    messages written in bulk, in time order, through the schema's triggers."""
    rng = random.Random(seed)
    os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")

    async def create() -> None:
        service, _ = await PeerService.create_profile(
            path, "Bench", None, config=ServiceConfig(network=False)
        )
        await service.aclose()

    asyncio.run(create())
    profile = ProfileDir(path)
    conn = _connect(profile.db_path, profile.database_key(None))
    conn.execute("PRAGMA synchronous=OFF")
    ids = []
    conn.execute("BEGIN")
    for i in range(contacts):
        ed = rng.randbytes(32)
        cid = make_contact_id(ed)
        ids.append(cid)
        conn.execute(
            "INSERT INTO contacts (id, display_name, ed25519_public, x25519_public, "
            "static_certificate, psk, discovery_key, conversation_id, verified, addresses, "
            "created_at, last_seen, lamport, next_seq, group_only) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, '[]', ?, NULL, 0, 1, 0)",
            (
                cid,
                f"Contact {i:03d}",
                ed,
                rng.randbytes(32),
                rng.randbytes(64),
                rng.randbytes(32),
                rng.randbytes(32),
                rng.randbytes(16),
                1.6e9,
            ),
        )
    conn.execute("COMMIT")
    bodies = _bodies(messages, rng)
    start_ms = 1_600_000_000_000
    step_ms = 30_000  # one message every 30 s across all conversations: ~1 year
    lamports = [0] * contacts
    seqs = [0] * contacts
    chunk = 20_000
    for first in range(0, messages, chunk):
        rows = []
        for i in range(first, min(first + chunk, messages)):
            c = rng.randrange(contacts)
            lamports[c] += 1
            outgoing = rng.random() < 0.5
            if outgoing:
                seqs[c] += 1
            at = start_ms + i * step_ms
            recent = i >= messages - 3 * contacts  # the last few: unread or in the outbox
            if outgoing:
                state = MessageState.QUEUED if recent else MessageState.READ
            else:
                state = MessageState.RECEIVED if recent else MessageState.SEEN
            msg_id = (at & 0xFFFF_FFFF_FFFF).to_bytes(6, "big") + rng.randbytes(10)
            rows.append(
                (
                    msg_id,
                    ids[c],
                    int(outgoing),
                    seqs[c] if outgoing else lamports[c],
                    lamports[c],
                    at,
                    None if outgoing else at + 200,
                    bodies[i],
                    int(state),
                )
            )
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO messages (msg_id, contact_id, outgoing, seq, lamport, sent_at_ms, "
            "received_at_ms, body, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
    conn.execute("BEGIN")
    for c, cid in enumerate(ids):
        conn.execute(
            "UPDATE contacts SET lamport = ?, next_seq = ? WHERE id = ?",
            (lamports[c], seqs[c] + 1, cid),
        )
    # As the background indexer would leave it (Repository.index_pending): every message
    # folded into the conversation summaries (migration 0013) and in the search index.
    ((last, top),) = conn.execute(
        "SELECT last_id, (SELECT max(id) FROM messages) FROM search_progress"
    ).fetchall()
    conn.execute(FOLD_SUMMARIES, (last, top))
    conn.execute(
        "INSERT INTO messages_fts(rowid, body, contact_id) SELECT id, body, contact_id "
        "FROM messages WHERE id > ? AND id <= ?",
        (last, top),
    )
    conn.execute("UPDATE search_progress SET last_id = ?", (top,))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _timed(fn: Callable[[], object], rounds: int) -> float:
    """Median seconds of `rounds` calls, after one warm-up call."""
    fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


async def _atimed(fn: Callable[[], Any], rounds: int) -> float:
    await fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _wall(argv: list[str], rounds: int, env: dict[str, str]) -> float:
    """Median wall time of running a command (after one warm-up run)."""
    samples = []
    for i in range(rounds + 1):
        start = time.perf_counter()
        subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
        if i:
            samples.append(time.perf_counter() - start)
    return statistics.median(samples)


async def measure(path: Path, quick: bool) -> list[Result]:
    rounds = 5 if quick else 30
    profile = ProfileDir(path)
    raw = _connect(profile.db_path, profile.database_key(None))
    (total,) = raw.execute("SELECT count(*) FROM messages").fetchone()
    (common_hits,) = raw.execute(
        "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?", (COMMON_WORD,)
    ).fetchone()
    (medium_hits,) = raw.execute(
        "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?", (MEDIUM_WORD,)
    ).fetchone()
    size = f"{total:,} messages, {CONTACTS} conversations"
    results: list[Result] = []

    raw_contacts = _timed(lambda: raw.execute("SELECT * FROM contacts").fetchall(), rounds)

    def raw_fts(word: str) -> Callable[[], object]:
        return lambda: raw.execute(
            "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ? ORDER BY rowid DESC LIMIT ?",
            (f'"{word}"*', PAGE),
        ).fetchall()

    raw_common = _timed(raw_fts(COMMON_WORD), rounds)
    raw_rare = _timed(raw_fts(RARE_WORD), rounds)
    # What conversations() cost before summaries: the newest message and the counts
    # recomputed from the messages table (the 0007 queries), same file, same run.
    recount = _timed(
        lambda: (
            raw.execute(
                "SELECT m.* FROM messages m JOIN (SELECT contact_id, max(lamport) AS top "
                "FROM messages GROUP BY contact_id) l ON m.contact_id = l.contact_id "
                "AND m.lamport = l.top"
            ).fetchall(),
            raw.execute(
                "SELECT contact_id, count(*) FROM messages WHERE state = 10 GROUP BY contact_id"
            ).fetchall(),
        ),
        max(3, rounds // 5),
    )

    service = await PeerService.open(path, None, config=ServiceConfig(network=False))
    try:
        convs = await service.chat.conversations()
        assert len(convs) == CONTACTS and all(c.last_message for c in convs)
        t_conv = await _atimed(service.chat.conversations, rounds)
        results.append(
            Result(
                f"conversations(), {size}",
                fmt_time(t_conv),
                f"{fmt_time(raw_contacts)} (sqlcipher3: read the {CONTACTS} contact rows)",
                t_conv / raw_contacts,
                f"{t_conv / raw_contacts:.1f}x",
                "< 10 ms",
                t_conv < 0.010,
            )
        )
        results.append(
            Result(
                "  for comparison: recomputing last message + unread from messages (before 0008)",
                fmt_time(recount),
                f"{fmt_time(raw_contacts)} (read the contact rows)",
                recount / raw_contacts,
                f"{recount / raw_contacts:.0f}x",
            )
        )

        first = await service.chat.search(COMMON_WORD, limit=PAGE)
        assert len(first) == PAGE
        t_common = await _atimed(lambda: service.chat.search(COMMON_WORD, limit=PAGE), rounds)
        results.append(
            Result(
                f"search “{COMMON_WORD}” ({common_hits:,} hits), first page of {PAGE} newest",
                fmt_time(t_common),
                f"{fmt_time(raw_common)} (bare FTS5 query for the same {PAGE} rowids)",
                t_common / raw_common,
                f"{t_common / raw_common:.1f}x",
                "< 30 ms",
                t_common < 0.030,
            )
        )
        deep = first[-1].row_id
        for _ in range(9):  # page 11: the cursor ten pages back
            deep = (await service.chat.search(COMMON_WORD, limit=PAGE, before=deep))[-1].row_id
        t_next = await _atimed(
            lambda: service.chat.search(COMMON_WORD, limit=PAGE, before=deep), rounds
        )
        results.append(
            Result(
                f"search “{COMMON_WORD}”, page 11 (before=row id of page 10's last hit)",
                fmt_time(t_next),
                f"{fmt_time(raw_common)} (bare FTS5 first page)",
                t_next / raw_common,
                f"{t_next / raw_common:.1f}x",
            )
        )
        t_medium = await _atimed(lambda: service.chat.search(MEDIUM_WORD, limit=PAGE), rounds)
        results.append(
            Result(
                f"search “{MEDIUM_WORD}” ({medium_hits:,} hits), first page",
                fmt_time(t_medium),
                f"{fmt_time(raw_common)} (bare FTS5, “{COMMON_WORD}”)",
                t_medium / raw_common,
                f"{t_medium / raw_common:.1f}x",
            )
        )
        t_rare = await _atimed(lambda: service.chat.search(RARE_WORD, limit=PAGE), rounds)
        results.append(
            Result(
                f"search “{RARE_WORD}” (rare, {total // RARE_EVERY} hits)",
                fmt_time(t_rare),
                f"{fmt_time(raw_rare)} (bare FTS5 query)",
                t_rare / raw_rare,
                f"{t_rare / raw_rare:.1f}x",
            )
        )
        one = convs[0].contact.id
        t_one = await _atimed(
            lambda: service.chat.search(MEDIUM_WORD, contact_id=one, limit=PAGE), rounds
        )
        results.append(
            Result(
                f"search “{MEDIUM_WORD}” in one conversation (1 of {CONTACTS}), first page",
                fmt_time(t_one),
                f"{fmt_time(raw_common)} (bare FTS5, “{COMMON_WORD}”, all)",
                t_one / raw_common,
                f"{t_one / raw_common:.1f}x",
            )
        )
    finally:
        await service.aclose()
        raw.close()
    results += startup(path, max(3, rounds // 3))
    return results


def startup(path: Path, rounds: int) -> list[Result]:
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    cli = str(Path(sys.executable).with_name("chinwag-cli"))
    base = _wall([sys.executable, "-c", "import sqlcipher3"], rounds, env)
    results = []
    for command in ("whoami", "contacts"):
        t = _wall([cli, "--profile", str(path), command], rounds, env)
        results.append(
            Result(
                f"`chinwag-cli {command}` (1M-message profile, no passphrase)",
                fmt_time(t),
                f"{fmt_time(base)} (python -c 'import sqlcipher3')",
                t / base,
                f"{t / base:.1f}x",
                "<= 3x",
                t / base <= 3,
            )
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--keep", type=Path, help="build the profile here once and reuse it")
    parser.add_argument("--messages", type=int, default=MESSAGES)
    args = parser.parse_args()
    quiet_logging()
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    with tempfile.TemporaryDirectory(prefix="chinwag-bench-") as tmp:
        path = args.keep or Path(tmp) / "big"
        if not ProfileDir(path).exists():
            started = time.perf_counter()
            print(f"building a {args.messages:,}-message profile in {path} ...", file=sys.stderr)
            build_profile(path, args.messages)
            print(f"  built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        results = asyncio.run(measure(path, args.quick))
    print_table("Big profile: conversation list, search, CLI start-up", results)


if __name__ == "__main__":
    main()

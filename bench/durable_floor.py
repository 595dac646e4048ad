"""The durable throughput floor (issue 15): the least work per message that 1:1 throughput
with each peer its own process must do, written as a careful raw asyncio program.

Sender (this process, `FloorSender`) and receiver (`bench.raw_peer floor`, its own
process) do, per window of messages:

* sender: store every message (one transaction per window: group commit, as the product's
  send batcher; multi-row INSERTs and time-ordered ids, as its repository), pack the window
  as one msgpack Batch record of Chat messages (as the service packs what it queued, see
  docs/protocol.md §7), fragment, pad to the protocol's buckets, encrypt each fragment with
  ChaCha20-Poly1305 (IETF, PyNaCl, the Noise transport's nonce layout; so one AEAD call per
  ~250 messages, not one each), frame (u16 length) and write;
* receiver: per read from the socket, take the complete frames, decrypt, unpad, reassemble,
  msgpack-decode, store every message in one transaction, answer with one encrypted
  Receipt batch of their ids;
* sender: per read, decrypt and decode the receipts and mark those messages delivered in
  one transaction.

Same storage settings as messenger/storage/database.py: SQLCipher 4 defaults (page size,
HMAC-SHA512, no KDF: a raw 256-bit key), WAL, synchronous=NORMAL, and a table shaped like
`messages` with its two indexes and the unique msg_id.

Left out, because a floor is the least the work allows: the Noise handshake (done before),
field validation of decoded messages, events to subscribers, conversation summaries and
unread counters, foreign keys (no contacts table), the database thread (all of it runs on
the event loop thread), SQLAlchemy, and the search index (the product defers it too).
Kept free of `messenger` imports: Python, asyncio, msgpack, PyNaCl and sqlcipher3 alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

import msgpack
from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_decrypt as _decrypt,
)
from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_encrypt as _encrypt,
)

from .raw_peer import sqlcipher_file

_LEN = struct.Struct("!H")
CHAT, RECEIPT, BATCH = 1, 2, 11  # the wire tags (docs/protocol.md)
DELIVERED = 0  # ReceiptKind
TAG = 16
BUCKETS = (64, 256, 1024, 4096, 16384, 65535 - TAG)  # framing.BUCKETS
MAX_CHUNK = BUCKETS[-1] - 2  # room for the flags byte and the 0x80 marker
MAX_IDS = 512  # ids per Receipt, messages per Batch
READ_SIZE = 1 << 18

_INSERT = (
    "INSERT INTO messages (msg_id, contact_id, outgoing, seq, lamport, sent_at_ms,"
    " received_at_ms, body, state) VALUES "
)
_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
# Rows per multi-row statement, as the product's repository: ~1 µs per row less than
# executemany here (one sqlite3_step per statement instead of one per row).
_CHUNK = 100


def floor_store(path: Path) -> Any:
    """A SQLCipher file with the service's settings and a `messages`-shaped table."""
    conn = sqlcipher_file(path)
    conn.execute(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY, msg_id BLOB UNIQUE, contact_id TEXT,"
        " outgoing INT, seq INT, lamport INT, sent_at_ms INT, received_at_ms INT, body TEXT,"
        " state INT)"
    )
    conn.execute("CREATE INDEX ix1 ON messages (contact_id, lamport, msg_id)")
    conn.execute("CREATE INDEX ix2 ON messages (contact_id, state)")
    return conn


def _insert(conn: Any, rows: list[tuple[Any, ...]]) -> None:
    """One transaction, multi-row INSERTs."""
    conn.execute("BEGIN IMMEDIATE")
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        conn.execute(_INSERT + ", ".join([_VALUES] * len(chunk)), [v for row in chunk for v in row])
    conn.execute("COMMIT")


def _mark_delivered(conn: Any, ids: list[bytes]) -> None:
    """One transaction, `msg_id IN (...)` by up to MAX_IDS ids (as the repository does)."""
    conn.execute("BEGIN IMMEDIATE")
    for start in range(0, len(ids), MAX_IDS):
        chunk = ids[start : start + MAX_IDS]
        marks = ",".join("?" * len(chunk))
        conn.execute(f"UPDATE messages SET state = 2 WHERE msg_id IN ({marks})", chunk)
    conn.execute("COMMIT")


class Sealer:
    """One direction of a Noise transport: fragment, pad, encrypt, frame a record."""

    __slots__ = ("key", "n")

    def __init__(self, key: bytes) -> None:
        self.key, self.n = key, 0

    def seal(self, record: bytes) -> bytes:
        out = []
        for start in range(0, len(record), MAX_CHUNK):
            chunk = record[start : start + MAX_CHUNK]
            size = len(chunk) + 2
            bucket = next(b for b in BUCKETS if b >= size)
            flags = b"\x01" if start + MAX_CHUNK < len(record) else b"\x00"
            padded = flags + chunk + b"\x80" + bytes(bucket - size)
            sealed = _encrypt(padded, None, (self.n << 32).to_bytes(12, "little"), self.key)
            self.n += 1
            out.append(_LEN.pack(len(sealed)) + sealed)
        return b"".join(out)


class Opener:
    """The other direction: frames in, records out (decrypt, unpad, reassemble)."""

    __slots__ = ("buf", "key", "n", "parts")

    def __init__(self, key: bytes) -> None:
        self.key, self.n = key, 0
        self.buf = bytearray()
        self.parts: list[bytes] = []

    def feed(self, data: bytes) -> list[bytes]:
        buf = self.buf
        buf += data
        records = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            size = (buf[pos] << 8) | buf[pos + 1]
            if end - pos - 2 < size:
                break
            plain = _decrypt(
                bytes(buf[pos + 2 : pos + 2 + size]),
                None,
                (self.n << 32).to_bytes(12, "little"),
                self.key,
            )
            self.n += 1
            pos += 2 + size
            self.parts.append(plain[1 : plain.rindex(0x80)])
            if not plain[0] & 1:
                records.append(b"".join(self.parts))
                self.parts.clear()
        del buf[:pos]
        return records


async def serve_floor(db: Path, key_in: bytes, key_out: bytes) -> asyncio.Server:
    """The receiver: stores what arrives, one transaction per read, and acks it."""
    store = floor_store(db)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        opener, sealer = Opener(key_in), Sealer(key_out)
        try:
            while data := await reader.read(READ_SIZE):
                records = opener.feed(data)
                if not records:
                    continue
                now = time.time_ns() // 1_000_000
                rows = []
                for record in records:
                    for m in msgpack.unpackb(record)[1]:
                        rows.append((m[1], "alice", False, m[3], m[4], m[5], now, m[6], 1))
                _insert(store, rows)
                ids = [row[0] for row in rows]
                receipts = [
                    [RECEIPT, DELIVERED, ids[i : i + MAX_IDS]] for i in range(0, len(ids), MAX_IDS)
                ]
                writer.write(sealer.seal(msgpack.packb([BATCH, receipts])))
        except ConnectionError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handler, "127.0.0.1", 0)


class FloorSender:
    """The sender's side: one connection for all rounds, as the service keeps one session
    (so its nonces never repeat under one key)."""

    def __init__(self, store: Any, key_out: bytes, key_in: bytes) -> None:
        self.store = store
        self.sealer, self.opener = Sealer(key_out), Opener(key_in)
        self.conv = os.urandom(16)
        self.seq = 0
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def connect(self, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.streams = reader, writer

    async def aclose(self) -> None:
        if self.streams is not None:
            writer = self.streams[1]
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self.streams = None

    async def throughput(self, bodies: list[str], window: int) -> float:
        """Messages/s from the first store to the last delivered mark, `window` messages
        sent at a time (as the service benchmark keeps `window` sends in flight)."""
        assert self.streams is not None, "connect first"
        reader, writer = self.streams
        store, sealer, opener, conv = self.store, self.sealer, self.opener, self.conv
        count = len(bodies)
        pending = count

        async def acks() -> None:
            nonlocal pending
            while pending > 0:
                data = await reader.read(READ_SIZE)
                if not data:
                    raise ConnectionError("the floor's receiver hung up")
                ids = [
                    msg_id
                    for record in opener.feed(data)
                    for receipt in msgpack.unpackb(record)[1]
                    for msg_id in receipt[2]
                ]
                if ids:
                    _mark_delivered(store, ids)
                    pending -= len(ids)

        start = time.perf_counter()
        acking = asyncio.create_task(acks())
        try:
            for first in range(0, count, window):
                now = time.time_ns() // 1_000_000
                # Time-ordered ids as the product's (repository.new_msg_ids): each batch
                # lands at the end of the unique msg_id index instead of on random pages.
                prefix = now.to_bytes(6, "big")
                n = min(window, count - first)
                tails = os.urandom(10 * n)
                ids = [prefix + tails[10 * i : 10 * i + 10] for i in range(n)]
                seqs = range(self.seq + 1, self.seq + n + 1)
                self.seq += n
                texts = bodies[first : first + n]
                rows = [
                    (msg_id, "bob", True, seq, seq, now, None, text, 0)
                    for msg_id, seq, text in zip(ids, seqs, texts, strict=True)
                ]
                _insert(store, rows)
                for i in range(0, n, MAX_IDS):
                    chats = [
                        [CHAT, msg_id, conv, seq, seq, now, text]
                        for msg_id, seq, text in zip(
                            ids[i : i + MAX_IDS],
                            seqs[i : i + MAX_IDS],
                            texts[i : i + MAX_IDS],
                            strict=True,
                        )
                    ]
                    writer.write(sealer.seal(msgpack.packb([BATCH, chats])))
                await writer.drain()
            await acking
        finally:
            acking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acking
        return count / (time.perf_counter() - start)


def undelivered(store: Any) -> int:
    """Messages this sender stored that were not marked delivered (a check: must be 0)."""
    return int(store.execute("SELECT count(*) FROM messages WHERE state != 2").fetchone()[0])

"""The encrypted group fan-out floor (issue 15): the least work that a group message's
fan-out to members in their own processes must do in Python, written as a careful raw
asyncio program, to set beside the raw fan-out (plain bytes, one commit each) and the
service in the same run (`python -m bench.bench_group --fan-out --floor`).

* sender (this process, `FloorGroup`): per message, store it as one row in one commit
  (a `group_messages`-shaped table), sign it once (Ed25519), msgpack-pack it once, then for
  every member seal it under that member's transport key (pad to the protocol's buckets,
  ChaCha20-Poly1305 with the Noise nonce layout, frame) and write; then read each member's
  answer: open it and decode the GroupAck;
* member (`bench.raw_peer group-floor`, its own process): per read, open the frames,
  msgpack-decode the message, store it as one row in one transaction (with the two
  indexes and the unique msg_id of `group_messages`), seal a GroupAck and write it.

Left out, because a floor is the least the work allows: the Noise handshake (done
before), the member's signature check (the service skips it too for a message that
arrives over its author's own session, protocol.md §16.4), field validation, sequence and
Lamport bookkeeping, delivery records at the sender, events, summaries and unread counts,
the search index, the database thread and SQLAlchemy.
Kept free of `messenger` imports: Python, asyncio, msgpack, PyNaCl and sqlcipher3 alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
from nacl.signing import SigningKey

from .durable_floor import READ_SIZE, Opener, Sealer
from .raw_peer import sqlcipher_file

GROUP_MESSAGE, GROUP_ACK = 30, 31  # tags of this floor's own records


def group_store(path: Path) -> Any:
    """A SQLCipher file with the service's settings and a `group_messages`-shaped table."""
    conn = sqlcipher_file(path)
    conn.execute(
        "CREATE TABLE group_messages (id INTEGER PRIMARY KEY, msg_id BLOB UNIQUE,"
        " group_id BLOB, author BLOB, seq INT, epoch INT, lamport INT, sent_at_ms INT,"
        " received_at_ms INT, body TEXT, signature BLOB, outgoing INT, seen INT)"
    )
    conn.execute("CREATE UNIQUE INDEX ix1 ON group_messages (group_id, author, seq)")
    conn.execute("CREATE INDEX ix2 ON group_messages (group_id, lamport, author)")
    return conn


_INSERT = "INSERT INTO group_messages VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)"


def _store(conn: Any, m: list[Any], received: int | None, outgoing: bool) -> None:
    """One message, one transaction. `m` is [tag, msg_id, group, author, epoch, seq,
    lamport, sent_at_ms, body, signature]."""
    conn.execute("BEGIN IMMEDIATE")
    row = (m[1], m[2], m[3], m[5], m[4], m[6], m[7], received, m[8], m[9], outgoing)
    conn.execute(_INSERT, row)
    conn.execute("COMMIT")


async def serve_member(db: Path, key_in: bytes, key_out: bytes) -> asyncio.Server:
    """A member: stores each message that arrives, then acks it."""
    store = group_store(db)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        opener, sealer = Opener(key_in), Sealer(key_out)
        try:
            while data := await reader.read(READ_SIZE):
                for record in opener.feed(data):
                    m = msgpack.unpackb(record)
                    _store(store, m, time.time_ns() // 1_000_000, False)
                    ack = [GROUP_ACK, m[2], [[m[3], m[5]]]]  # group, [(author, seq)]
                    writer.write(sealer.seal(msgpack.packb(ack)))
        except ConnectionError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handler, "127.0.0.1", 0)


@dataclass
class _Link:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    sealer: Sealer
    opener: Opener


def member_keys() -> tuple[bytes, bytes]:
    """(sender → member, member → sender) transport keys for one member."""
    return os.urandom(32), os.urandom(32)


class FloorGroup:
    """The sender's side: one session per member for all its messages."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.signing = SigningKey.generate()
        self.author = bytes(self.signing.verify_key)
        self.group = os.urandom(16)
        self.seq = 0
        self.links: list[_Link] = []

    async def connect(self, port: int, keys: tuple[bytes, bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.links.append(_Link(reader, writer, Sealer(keys[0]), Opener(keys[1])))

    async def aclose(self) -> None:
        for link in self.links:
            link.writer.close()
            with contextlib.suppress(Exception):
                await link.writer.wait_closed()
        self.links.clear()

    async def send(self, text: str) -> None:
        """One message to every member; returns once every member acked it."""
        self.seq += 1
        now = time.time_ns() // 1_000_000
        msg_id = now.to_bytes(6, "big") + os.urandom(10)
        fields = [GROUP_MESSAGE, msg_id, self.group, self.author, 1, self.seq, self.seq, now]
        signature = self.signing.sign(msgpack.packb([*fields, text])).signature
        message = [*fields, text, signature]
        _store(self.store, message, None, True)
        packed = msgpack.packb(message)
        for link in self.links:
            link.writer.write(link.sealer.seal(packed))
        await asyncio.gather(*(self._ack(link) for link in self.links))

    async def _ack(self, link: _Link) -> None:
        while True:
            data = await link.reader.read(READ_SIZE)
            if not data:
                raise ConnectionError("a floor member hung up")
            for record in link.opener.feed(data):
                ack = msgpack.unpackb(record)
                if ack[0] == GROUP_ACK and ack[2][0][1] >= self.seq:
                    return

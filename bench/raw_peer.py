"""A raw asyncio peer in its own process: the other side of the two-process baselines.

    python -m bench.raw_peer echo
    python -m bench.raw_peer durable DB_PATH
    python -m bench.raw_peer floor DB_PATH KEY_IN_HEX KEY_OUT_HEX
    python -m bench.raw_peer group-floor DB_PATH KEY_IN_HEX KEY_OUT_HEX

Listens on 127.0.0.1, prints its port on one line, then echoes 2-byte length-prefixed
messages until stdin closes. `durable` first commits each message as one row to a
SQLCipher database with the service's settings (`raw_store`) and answers after the commit.
`floor` is the receiver of the durable throughput floor (bench.durable_floor),
`group-floor` a member of the encrypted group fan-out floor (bench.group_floor).
Kept free of `messenger` imports: the baseline is Python, asyncio and sqlcipher3 alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import sys
from pathlib import Path
from typing import Any

_LEN = struct.Struct("!H")


def sqlcipher_file(path: Path) -> Any:
    """A new SQLCipher file with the service's settings: a raw 256-bit key (no KDF), WAL,
    synchronous=NORMAL, SQLCipher 4's default page size and HMAC; autocommit."""
    import sqlcipher3

    conn = sqlcipher3.connect(str(path), isolation_level=None)
    conn.execute(f"PRAGMA key = \"x'{os.urandom(32).hex()}'\"")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def raw_store(path: Path) -> Any:
    """A SQLCipher file with the service's settings and a message-shaped table with three
    indexes, as in bench_latency's floor."""
    conn = sqlcipher_file(path)
    conn.execute(
        "CREATE TABLE m (id BLOB PRIMARY KEY, conv BLOB, seq INT, at INT, body BLOB, st INT)"
    )
    for i, columns in enumerate(("conv, seq", "conv, at", "st")):
        conn.execute(f"CREATE INDEX m{i} ON m ({columns})")
    return conn


def commit_one(conn: Any, conv: bytes, seq: int, data: bytes) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO m VALUES (?, ?, ?, ?, ?, 0)", (os.urandom(16), conv, seq, seq, data))
    conn.execute("COMMIT")


async def serve_until_stdin_closes(server: asyncio.Server) -> None:
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server.close()
    with contextlib.suppress(Exception):
        await server.wait_closed()


async def serve_floor(db: Path, key_in: bytes, key_out: bytes) -> None:
    from .durable_floor import serve_floor as start

    await serve_until_stdin_closes(await start(db, key_in, key_out))


async def serve(durable: Path | None) -> None:
    store = raw_store(durable) if durable is not None else None
    conv = os.urandom(16)
    seq = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal seq
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                header = await reader.readexactly(_LEN.size)
                data = await reader.readexactly(_LEN.unpack(header)[0])
                if store is not None:
                    seq += 1
                    commit_one(store, conv, seq, data)
                writer.write(header + data)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    # Runs until the parent closes our stdin (also when the parent dies).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()
    if store is not None:
        store.close()
    with contextlib.suppress(Exception):
        await server.wait_closed()


async def serve_group_floor(db: Path, key_in: bytes, key_out: bytes) -> None:
    from .group_floor import serve_member

    await serve_until_stdin_closes(await serve_member(db, key_in, key_out))


def main() -> None:
    mode = sys.argv[1]
    if mode in ("floor", "group-floor"):
        serve_one = serve_floor if mode == "floor" else serve_group_floor
        asyncio.run(
            serve_one(Path(sys.argv[2]), bytes.fromhex(sys.argv[3]), bytes.fromhex(sys.argv[4]))
        )
        return
    asyncio.run(serve(Path(sys.argv[2]) if mode == "durable" else None))


if __name__ == "__main__":
    main()

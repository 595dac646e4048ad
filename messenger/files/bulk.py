"""The bulk-data connection: one TCP connection per (download, source), big records.

Chat frames top out at 64 KiB and go through padding, fragmentation and msgpack; pushing
a gigabyte through them would cost more Python than crypto. A download therefore opens its
own connection to each source, on the source's usual port (docs/protocol.md §17):

1. Over the live Noise session the downloader sends ``FileRequest(root, ticket, secret)``
   with a fresh random 16-byte ticket and 32-byte secret.
2. It dials the source and sends the clear preamble
   ``u16 20 || "CW" || u8 version || u8 4 (BULK) || ticket``.
3. Both ends derive one key per direction from the secret (keyed BLAKE2b) and exchange
   records ``u32 length || ChaCha20-Poly1305(key, nonce = u32 0 || u64le counter,
   u8 type || body)``. The secret travelled inside the authenticated, forward-secret Noise
   session, so this channel inherits both; counters make replay, reorder and truncation
   (records are answered one for one) fail.

The fetching side (a download's shared state, its per-source workers) is fetching.py.
Everything here is blocking and runs on worker threads: PyNaCl and hashlib release the GIL
for the work that matters, so a transfer costs the event loop nothing per chunk.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from nacl._sodium import ffi as _ffi  # PyNaCl's cffi binding of libsodium
from nacl._sodium import lib as _lib

from ..protocol import wire
from .chunks import (
    MAX_CHUNK_SIZE,
    MAX_CHUNKS,
    STORE_ALIGN,
    TAG_LEN,
    Bitmap,
    Manifest,
    aligned,
    stored_offset,
)
from .store import AttachmentStore, ChunkReader, StoreError

if TYPE_CHECKING:
    from .fetching import Download

BULK_KIND: Final = 4
"""Preamble handshake kind of a bulk connection (beside wire.HandshakeKind 1-3)."""
TICKET_LEN: Final = wire.FILE_TICKET_LEN
PEEK_LEN: Final = 6
"""Bytes an inbound connection is peeked at to tell a bulk preamble from a handshake."""
PREAMBLE_LEN: Final = PEEK_LEN + TICKET_LEN
MAX_RECORD: Final = max(MAX_CHUNK_SIZE, MAX_CHUNKS * 32) + 64
"""Largest record plaintext either way (a manifest of MAX_CHUNKS or a chunk, plus headers)."""
MAX_GET: Final = 256

READY, GET, CHUNK, MISSING, MANIFEST_GET, MANIFEST, BYE = range(1, 8)
_LEN = struct.Struct(">I")
CHUNK_INDEX = struct.Struct(">I")


class BulkError(Exception):
    """The bulk connection failed; `reason` is for the user and the logs."""


class SourceMisbehaved(BulkError):
    """The source sent something provably wrong (a bad chunk, a wrong manifest): drop it."""


class SourceStopped(BulkError):
    """The source said goodbye (paused, cancelled, no longer serving)."""


def encode_preamble(ticket: bytes) -> bytes:
    if len(ticket) != TICKET_LEN:
        raise ValueError("a ticket is 16 bytes")
    body = wire.PREAMBLE_MAGIC + bytes((wire.PROTOCOL_VERSION, BULK_KIND)) + ticket
    return len(body).to_bytes(2, "big") + body


def is_bulk_preamble(peek: bytes) -> bool:
    """Do the first PEEK_LEN bytes of a connection start a bulk preamble?"""
    return (
        len(peek) == PEEK_LEN
        and peek[:2] == (PREAMBLE_LEN - 2).to_bytes(2, "big")
        and peek[2:4] == wire.PREAMBLE_MAGIC
        and peek[5] == BULK_KIND
    )


def derive_keys(secret: bytes) -> tuple[bytes, bytes]:
    """(downloader -> source key, source -> downloader key)."""

    def kdf(label: bytes) -> bytes:
        return hashlib.blake2b(label, key=secret, digest_size=32, person=b"chinwag-bulk").digest()

    return kdf(b"downloader->source"), kdf(b"source->downloader")


class RecordBuffer:
    """A plaintext record buffer and libsodium's pointer to it.

    The memory is page-aligned and a record starts 5 bytes (type and chunk index) before
    a STORE_ALIGN boundary, so a received chunk's body is aligned as O_DIRECT wants it.
    """

    __slots__ = ("_memory", "data", "pointer")
    _AT = STORE_ALIGN - 5

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, self._AT + MAX_RECORD + STORE_ALIGN)
        self.data = memoryview(self._memory)[self._AT : self._AT + MAX_RECORD]
        self.pointer = _ffi.from_buffer(self._memory) + self._AT

    def aligned_body(self, length: int) -> memoryview:
        """A chunk body's place (after type and index), `length` rounded up to STORE_ALIGN."""
        start = STORE_ALIGN  # = self._AT + 5
        return memoryview(self._memory)[start : start + aligned(length)]

    def padded_chunk(self, length: int) -> memoryview:
        """The received chunk body of `length` bytes plus zeros to a STORE_ALIGN multiple."""
        body = self.aligned_body(length)
        body[length:] = bytes(len(body) - length)
        return body


class Channel:
    """Encrypted records over a blocking socket (see the module docstring).

    Chunks are the bulk of the bytes, and on a busy machine a megabyte copy costs a third
    of a megabyte of ChaCha20, so records are sealed and opened in place in buffers owned
    by the channel: libsodium through PyNaCl's own cffi binding, which (unlike its bytes
    API) takes buffers. A received body is a view valid until the next `recv` into the
    same buffer (the channel's own unless the caller passes one).
    """

    def __init__(self, sock: socket.socket, send_key: bytes, recv_key: bytes) -> None:
        self.sock = sock
        self._send_key = send_key
        self._recv_key = recv_key
        self._send_n = 0
        self._recv_n = 0
        self._in = bytearray(MAX_RECORD + TAG_LEN)
        self._received = RecordBuffer()
        self._plain = self._received.data
        self._plain_c = self._received.pointer
        self._out = bytearray(4 + MAX_RECORD + TAG_LEN)
        self._in_c = _ffi.from_buffer(self._in)
        self._out_c = _ffi.from_buffer(self._out)
        self._len_c = _ffi.new("unsigned long long *")
        self.download: Download | None = None  # what it fetches for (downloader side)
        self.source = ""  # the contact at the other end

    def _next_send_nonce(self) -> bytes:
        nonce = b"\0\0\0\0" + self._send_n.to_bytes(8, "little")
        self._send_n += 1
        return nonce

    def _seal_and_send(self, length: int) -> None:
        """Encrypt self._plain[:length] into self._out and send it as one record."""
        out = self._out_c + 4
        rc = _lib.crypto_aead_chacha20poly1305_ietf_encrypt(
            out, self._len_c, self._plain_c, length, _ffi.NULL, 0, _ffi.NULL,
            self._next_send_nonce(), self._send_key,
        )  # fmt: skip
        if rc != 0:
            raise BulkError("encryption failed")
        sealed = self._len_c[0]
        _LEN.pack_into(self._out, 0, sealed)
        self.sock.sendall(memoryview(self._out)[: 4 + sealed])

    def send(self, kind: int, *parts: bytes | memoryview) -> None:
        plain = self._plain
        plain[0] = kind
        at = 1
        for part in parts:
            plain[at : at + len(part)] = part
            at += len(part)
        self._seal_and_send(at)

    def send_stored_chunk(self, chunks: ChunkReader, index: int, offset: int, length: int) -> None:
        """A CHUNK record read straight from the store file into the record buffer (whose
        body is aligned for an O_DIRECT read: see RecordBuffer)."""
        plain = self._plain
        plain[0] = CHUNK
        CHUNK_INDEX.pack_into(plain, 1, index)
        try:
            chunks.read_into(offset, plain[5 : 5 + length], self._received.aligned_body(length))
        except StoreError:
            raise StoreError(f"chunk {index} is missing from the store") from None
        self._seal_and_send(5 + length)

    def _recv_into(self, view: memoryview) -> None:
        got = 0
        while got < len(view):
            n = self.sock.recv_into(view[got:])
            if n == 0:
                raise BulkError("the connection closed in the middle of a record")
            got += n

    def recv(self, into: RecordBuffer | None = None) -> tuple[int, memoryview]:
        """The next record's type and body (a view of `into`, or of the channel's buffer)."""
        into = into or self._received
        view = memoryview(self._in)
        self._recv_into(view[:4])
        (length,) = _LEN.unpack_from(self._in)
        if not TAG_LEN < length <= MAX_RECORD + TAG_LEN:
            raise SourceMisbehaved(f"bulk record of {length} bytes is out of bounds")
        self._recv_into(view[:length])
        nonce = b"\0\0\0\0" + self._recv_n.to_bytes(8, "little")
        self._recv_n += 1
        rc = _lib.crypto_aead_chacha20poly1305_ietf_decrypt(
            into.pointer, self._len_c, _ffi.NULL, self._in_c, length, _ffi.NULL, 0,
            nonce, self._recv_key,
        )  # fmt: skip
        if rc != 0:
            raise SourceMisbehaved("a bulk record failed authentication")
        return into.data[0], memoryview(into.data)[1 : self._len_c[0]]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()


# -- the serving side -----------------------------------------------------------------------


@dataclass(slots=True)
class Served:
    """What a source knows about one file it serves."""

    root: bytes
    manifest: Manifest
    have: Bitmap
    is_serving: Callable[[], str | None]  # None, or the reason it stopped serving
    on_served: Callable[[int], None]  # bytes of chunks sent, for progress


def serve(channel: Channel, store: AttachmentStore, served: Served) -> None:
    """Answer one downloader until it says goodbye or we stop serving. Blocking."""
    try:
        chunks = store.open_for_serving(served.root)
    except FileNotFoundError:
        channel.send(BYE, b"the file is not in the store")
        return
    try:
        channel.send(READY, served.have.to_bytes())
        while True:
            kind, body = channel.recv()
            if kind == BYE:
                return
            if kind == MANIFEST_GET:
                channel.send(MANIFEST, served.manifest.encode())
            elif kind == GET:
                if len(body) % 4 or not 0 < len(body) <= 4 * MAX_GET:
                    raise BulkError("malformed chunk request")
                # bytes(): body is a view of the buffer the chunks below are sealed in.
                for (index,) in CHUNK_INDEX.iter_unpack(bytes(body)):
                    stopped = served.is_serving()
                    if stopped is not None:
                        channel.send(BYE, stopped.encode())
                        return
                    if index >= served.manifest.count or index not in served.have:
                        channel.send(MISSING, CHUNK_INDEX.pack(index))
                        continue
                    length = served.manifest.stored_size(index)
                    offset = stored_offset(served.manifest.chunk_size, index)
                    channel.send_stored_chunk(chunks, index, offset, length)
                    served.on_served(length)
            else:
                raise BulkError(f"unexpected bulk record type {kind}")
    finally:
        chunks.close()

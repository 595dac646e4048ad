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

Everything here is blocking and runs on worker threads: PyNaCl and hashlib release the GIL
for the work that matters, so a transfer costs the event loop nothing per chunk.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

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
    ManifestError,
    aligned,
    chunk_hash,
    decode_manifest,
    manifest_root,
    stored_offset,
)
from .store import AttachmentStore, ChunkFile, ChunkReader, StoreError

BULK_KIND: Final = 4
"""Preamble handshake kind of a bulk connection (beside wire.HandshakeKind 1-3)."""
TICKET_LEN: Final = wire.FILE_TICKET_LEN
PEEK_LEN: Final = 6
"""Bytes an inbound connection is peeked at to tell a bulk preamble from a handshake."""
PREAMBLE_LEN: Final = PEEK_LEN + TICKET_LEN
MAX_RECORD: Final = max(MAX_CHUNK_SIZE, MAX_CHUNKS * 32) + 64
"""Largest record plaintext either way (a manifest of MAX_CHUNKS or a chunk, plus headers)."""
MAX_GET: Final = 256
WINDOW: Final = 6
"""Chunk requests a downloader keeps outstanding per source (6 MiB at 1 MiB chunks)."""
WRITE_BUFFERS: Final = 3
"""Received chunks a downloader holds per source while its writer verifies and stores them."""

READY, GET, CHUNK, MISSING, MANIFEST_GET, MANIFEST, BYE = range(1, 8)
_LEN = struct.Struct(">I")
_INDEX = struct.Struct(">I")


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
        _INDEX.pack_into(plain, 1, index)
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
                for (index,) in _INDEX.iter_unpack(bytes(body)):
                    stopped = served.is_serving()
                    if stopped is not None:
                        channel.send(BYE, stopped.encode())
                        return
                    if index >= served.manifest.count or index not in served.have:
                        channel.send(MISSING, _INDEX.pack(index))
                        continue
                    length = served.manifest.stored_size(index)
                    offset = stored_offset(served.manifest.chunk_size, index)
                    channel.send_stored_chunk(chunks, index, offset, length)
                    served.on_served(length)
            else:
                raise BulkError(f"unexpected bulk record type {kind}")
    finally:
        chunks.close()


# -- the fetching side ------------------------------------------------------------------------


class RateLimit:
    """A token bucket shared by a download's sources (bytes per second; 0 = unlimited)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def take(self, nbytes: int) -> float:
        """Account for nbytes; return how long to sleep first."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + nbytes / self.rate
            return max(0.0, start - now)


@dataclass(eq=False)
class Download:
    """A download's shared state; its per-source workers run `fetch` on threads."""

    root: bytes
    store: AttachmentStore
    max_size: int
    manifest: Manifest | None = None
    have: Bitmap | None = None
    rate: RateLimit = field(default_factory=lambda: RateLimit(0))
    stopped: threading.Event = field(default_factory=threading.Event)
    fetched: int = 0  # chunks fetched and verified by this run
    bytes_fetched: int = 0
    per_source: dict[str, int] = field(default_factory=dict)
    expected: tuple[int, int] | None = None  # (size, chunk size) from the offer
    error: StoreError | None = None
    _lock: threading.Condition = field(
        default_factory=lambda: threading.Condition(threading.Lock())
    )
    _in_flight: set[int] = field(default_factory=set)
    _file: ChunkFile | None = None

    def set_manifest(self, encoded: bytes) -> None:
        with self._lock:
            if self.manifest is not None:
                return
            if manifest_root(encoded) != self.root:
                raise SourceMisbehaved("the manifest does not match the offered root hash")
            try:
                manifest = decode_manifest(encoded, max_size=self.max_size)
            except ManifestError as exc:
                raise SourceMisbehaved(f"bad manifest: {exc}") from None
            if self.expected is not None and self.expected != (manifest.size, manifest.chunk_size):
                raise SourceMisbehaved(
                    f"the manifest describes {manifest.size} bytes in {manifest.chunk_size}-byte "
                    f"chunks, the offer {self.expected[0]} bytes in {self.expected[1]}"
                )
            self.manifest = manifest
            if self.have is None or self.have.count != manifest.count:
                self.have = Bitmap(manifest.count)

    def open(self) -> None:
        with self._lock:
            if self._file is None:
                self._file = self.store.open_for_writing(self.root)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def sync(self) -> bytes | None:
        """Flush written chunks to disk; return the bitmap that is now durable."""
        with self._lock:
            file, have = self._file, self.have
            snapshot = have.to_bytes() if have is not None else None
        if file is not None:
            file.sync()
        return snapshot

    @property
    def complete(self) -> bool:
        return self.have is not None and self.have.complete

    def take(self, source_have: Bitmap | None, limit: int) -> list[int]:
        with self._lock:
            assert self.have is not None
            picked: list[int] = []
            for i in range(self.have.count):
                if len(picked) >= limit:
                    break
                if i in self.have or i in self._in_flight:
                    continue
                if source_have is not None and i not in source_have:
                    continue
                picked.append(i)
                self._in_flight.add(i)
            return picked

    def release(self, indices: list[int] | set[int]) -> None:
        with self._lock:
            self._in_flight.difference_update(indices)
            self._lock.notify_all()

    def wait_for_work(self, timeout: float) -> None:
        with self._lock:
            self._lock.wait(timeout)

    def store_chunk(
        self, source: str, index: int, data: memoryview, padded: memoryview | None = None
    ) -> None:
        """Verify a chunk against the manifest and write it as it is (see ChunkFile.write
        for `padded`)."""
        manifest, file = self.manifest, self._file
        assert manifest is not None and file is not None
        if len(data) != manifest.stored_size(index) or chunk_hash(data) != manifest.hashes[index]:
            raise SourceMisbehaved(f"chunk {index} does not match its hash")
        file.write(manifest, index, data, padded)
        with self._lock:
            assert self.have is not None
            self.have.add(index)
            self._in_flight.discard(index)
            self.fetched += 1
            self.bytes_fetched += len(data)
            self.per_source[source] = self.per_source.get(source, 0) + 1
            if self.have.complete:
                self._lock.notify_all()


class ChunkWriter:
    """Verifies and stores one source's chunks on a thread of its own.

    Receiving and decrypting chunk n+1 then overlaps hashing and writing chunk n (both
    release the GIL), instead of a source's connection idling while its last chunk is
    checked. Chunks travel in a few RecordBuffers that go round: `buffer()` hands out a
    free one (waiting while all are queued), `submit` queues one, the writer frees it.
    """

    def __init__(self, download: Download, source: str, buffers: int = WRITE_BUFFERS) -> None:
        self.download = download
        self.source = source
        self.error: BaseException | None = None
        self._free: queue.SimpleQueue[RecordBuffer] = queue.SimpleQueue()
        for _ in range(buffers):
            self._free.put(RecordBuffer())
        self._queued: queue.SimpleQueue[tuple[int, RecordBuffer, memoryview] | None]
        self._queued = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, name=f"chinwag-chunk-writer-{source[:8]}", daemon=True
        )
        self._thread.start()

    def buffer(self) -> RecordBuffer:
        """A free buffer to receive into; raises what the writer failed with."""
        buffer = self._free.get()
        self.check()
        return buffer

    def give_back(self, buffer: RecordBuffer) -> None:
        self._free.put(buffer)

    def submit(self, index: int, buffer: RecordBuffer, data: memoryview) -> None:
        self._queued.put((index, buffer, data))

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Store what is queued (unless storing failed), then stop the thread."""
        if self._thread.is_alive():
            self._queued.put(None)
            self._thread.join()

    def _run(self) -> None:
        while (item := self._queued.get()) is not None:
            index, buffer, data = item
            if self.error is None:
                try:
                    padded = buffer.padded_chunk(len(data))
                    self.download.store_chunk(self.source, index, data, padded)
                except BaseException as exc:  # handed to the fetching thread
                    self.error = exc
            if self.error is not None:
                self.download.release([index])  # not stored: someone else may fetch it
            self._free.put(buffer)


def fetch(channel: Channel, download: Download, source: str) -> None:
    """Pull chunks from one source until the download is complete or stopped. Blocking.

    Raises SourceMisbehaved (drop the source), SourceStopped, BulkError or StoreError."""
    outstanding: list[int] = []
    writer: ChunkWriter | None = None
    try:
        source_have = _fetch_opening(channel, download)
        download.open()
        writer = ChunkWriter(download, source)
        while not download.stopped.is_set() and not download.complete:
            writer.check()
            if len(outstanding) < WINDOW:
                _ask_for_more(channel, download, source_have, outstanding)
            if not outstanding:
                download.wait_for_work(0.2)  # others hold the rest, and they may fail
                continue
            _receive(channel, download, writer, source_have, outstanding)
        writer.close()
        writer.check()
        with contextlib.suppress(OSError):
            channel.send(BYE)
    finally:
        if writer is not None:
            writer.close()
        download.release(outstanding)


def _fetch_opening(channel: Channel, download: Download) -> Bitmap:
    """The source's READY, and its manifest when the download has none yet: returns
    which chunks the source has."""
    kind, body = channel.recv()
    if kind == BYE:
        raise SourceStopped(bytes(body).decode("utf-8", "replace") or "not serving")
    if kind != READY:
        raise SourceMisbehaved(f"expected READY, got record type {kind}")
    ready = bytes(body)
    if download.manifest is None:
        channel.send(MANIFEST_GET)
        kind, body = channel.recv()
        if kind != MANIFEST:
            raise SourceMisbehaved(f"expected the manifest, got record type {kind}")
        download.set_manifest(bytes(body))
    assert download.manifest is not None
    try:
        return Bitmap(download.manifest.count, ready)
    except ManifestError as exc:
        raise SourceMisbehaved(f"bad chunk list: {exc}") from None


def _ask_for_more(
    channel: Channel, download: Download, source_have: Bitmap, outstanding: list[int]
) -> None:
    """Fills the window with chunks the source has and nobody else is fetching."""
    more = download.take(source_have, WINDOW - len(outstanding))
    if more:
        outstanding.extend(more)  # before sending: released if the send fails
        channel.send(GET, b"".join(_INDEX.pack(i) for i in more))


def _receive(
    channel: Channel,
    download: Download,
    writer: ChunkWriter,
    source_have: Bitmap,
    outstanding: list[int],
) -> None:
    """One record from the source: a chunk goes to the writer, MISSING frees its index
    for other sources, BYE or anything else ends this source."""
    buffer = writer.buffer()
    kind, body = channel.recv(into=buffer)
    if kind == CHUNK:
        (index,) = _INDEX.unpack_from(body)
        if index not in outstanding:
            writer.give_back(buffer)
            raise SourceMisbehaved(f"chunk {index} was not asked for")
        outstanding.remove(index)  # the writer stores it, or releases it if bad
        writer.submit(index, buffer, body[4:])
        delay = download.rate.take(len(body))
        if delay:
            time.sleep(delay)
        return
    writer.give_back(buffer)
    if kind == MISSING:
        (index,) = _INDEX.unpack_from(body)
        if index in outstanding:
            outstanding.remove(index)
            source_have.discard(index)
            download.release([index])
    elif kind == BYE:
        raise SourceStopped(bytes(body).decode("utf-8", "replace") or "stopped serving")
    else:
        raise SourceMisbehaved(f"unexpected bulk record type {kind}")

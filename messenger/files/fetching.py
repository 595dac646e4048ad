"""The fetching side of the bulk connection (bulk.py): a download's shared state, the
per-source worker that pulls chunks, and the thread that verifies and stores them.

Everything here is blocking and runs on worker threads, as in bulk.py.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Final

from .bulk import (
    BYE,
    CHUNK,
    CHUNK_INDEX,
    GET,
    MANIFEST,
    MANIFEST_GET,
    MISSING,
    READY,
    Channel,
    RecordBuffer,
    SourceMisbehaved,
    SourceStopped,
)
from .chunks import (
    Bitmap,
    Manifest,
    ManifestError,
    chunk_hash,
    decode_manifest,
    manifest_root,
)
from .store import AttachmentStore, ChunkFile, StoreError

WINDOW: Final = 6
"""Chunk requests a downloader keeps outstanding per source (6 MiB at 1 MiB chunks)."""
WRITE_BUFFERS: Final = 3
"""Received chunks a downloader holds per source while its writer verifies and stores them."""


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
        channel.send(GET, b"".join(CHUNK_INDEX.pack(i) for i in more))


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
        (index,) = CHUNK_INDEX.unpack_from(body)
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
        (index,) = CHUNK_INDEX.unpack_from(body)
        if index in outstanding:
            outstanding.remove(index)
            source_have.discard(index)
            download.release([index])
    elif kind == BYE:
        raise SourceStopped(bytes(body).decode("utf-8", "replace") or "stopped serving")
    else:
        raise SourceMisbehaved(f"unexpected bulk record type {kind}")

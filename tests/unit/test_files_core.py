"""Manifests, chunk crypto, bitmaps, file names, the attachment store, and the bulk
channel over a real socket pair."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messenger.files import bulk, fetching
from messenger.files.chunks import (
    HASH_LEN,
    MANIFEST_MAGIC,
    MIN_CHUNK_SIZE,
    STORE_ALIGN,
    TAG_LEN,
    Bitmap,
    ChunkError,
    Manifest,
    ManifestError,
    check_geometry,
    decode_manifest,
    decrypt_chunk,
    encrypt_chunk,
)
from messenger.files.names import BadName, check_mime, check_name, sanitise
from messenger.files.store import AttachmentStore, ChunkFile, ChunkReader, StoreError

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

chunk_sizes = st.sampled_from([1 << 16, 1 << 17, 1 << 20, 1 << 22])


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    chunk_size = draw(chunk_sizes)
    count = draw(st.integers(0, 40))
    size = 0 if count == 0 else (count - 1) * chunk_size + draw(st.integers(1, chunk_size))
    hashes = tuple(draw(st.binary(min_size=32, max_size=32)) for _ in range(count))
    return Manifest(size, chunk_size, hashes)


@FAST
@given(manifests())
def test_manifest_round_trip(manifest: Manifest) -> None:
    decoded = decode_manifest(manifest.encode())
    assert decoded == manifest and decoded.root == manifest.root


@FUZZ
@given(st.binary(max_size=300))
def test_manifest_fuzz_raises_only_manifest_error(data: bytes) -> None:
    try:
        decode_manifest(data)
    except ManifestError:
        pass


@FUZZ
@given(manifests(), st.data())
def test_manifest_mutations_never_crash(manifest: Manifest, data: st.DataObject) -> None:
    encoded = bytearray(manifest.encode())
    i = data.draw(st.integers(0, len(encoded) - 1))
    encoded[i] ^= data.draw(st.integers(1, 255))
    try:
        decoded = decode_manifest(bytes(encoded))
    except ManifestError:
        return
    assert decoded.root != manifest.root  # a change is never the same file


def test_manifest_must_match_its_size() -> None:
    header = MANIFEST_MAGIC + (3 << 20).to_bytes(8, "big") + (1 << 20).to_bytes(4, "big")
    with pytest.raises(ManifestError, match="lists 2 chunks but"):
        decode_manifest(header + (2).to_bytes(4, "big") + b"h" * 2 * HASH_LEN)
    with pytest.raises(ManifestError, match="hash bytes"):
        decode_manifest(header + (3).to_bytes(4, "big") + b"h" * 2 * HASH_LEN)


@pytest.mark.parametrize(
    ("size", "chunk_size", "error"),
    [(-1, 1 << 20, "negative"), (1 << 40, 1 << 20, "limit"), (10, 1000, "power of two")],
)
def test_geometry_checks(size: int, chunk_size: int, error: str) -> None:
    with pytest.raises(ManifestError, match=error):
        check_geometry(size, chunk_size, 4 << 30)


@FAST
@given(st.binary(max_size=5000), st.integers(0, 2**40), st.integers(0, 1000))
def test_chunk_crypto_round_trip_and_binding(plain: bytes, size: int, index: int) -> None:
    key = os.urandom(32)
    ct = encrypt_chunk(key, size, index, plain)
    assert decrypt_chunk(key, size, index, ct) == plain
    with pytest.raises(ChunkError):
        decrypt_chunk(key, size, index + 1, ct)  # moved
    with pytest.raises(ChunkError):
        decrypt_chunk(key, size + 1, index, ct)  # another file length


@FAST
@given(st.integers(0, 200), st.data())
def test_bitmap(count: int, data: st.DataObject) -> None:
    present = data.draw(st.sets(st.integers(0, max(count - 1, 0)), max_size=count))
    if count == 0:
        present = set()
    bitmap = Bitmap(count)
    for i in present:
        bitmap.add(i)
    again = Bitmap(count, bitmap.to_bytes())
    assert [i in again for i in range(count)] == [i in present for i in range(count)]
    assert again.have == len(present) and again.complete == (len(present) == count)
    assert again.missing() == sorted(set(range(count)) - present)


def test_bitmap_rejects_bits_past_the_end() -> None:
    with pytest.raises(ManifestError):
        Bitmap(3, b"\x08")
    with pytest.raises(ManifestError):
        Bitmap(9, b"\x00")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../x", "separator"),
        ("a\\b", "separator"),
        ("..", "not a file name"),
        ("...", "not a file name"),
        ("CON", "device"),
        ("lpt1.txt", "device"),
        ("Aux.tar.gz", "device"),
        ("a\x07b", "forbidden"),
        ("a\u202eb", "forbidden"),
        ("what?.txt", "forbidden"),
        (" lead", "space"),
        ("trail.", "dot"),
        ("x" * 256, "255 bytes"),
        ("", "empty"),
    ],
)
def test_check_name_refuses(name: str, why: str) -> None:
    with pytest.raises(BadName, match=why):
        check_name(name)


@pytest.mark.parametrize(
    "name", ["photo.png", "Résumé 2026.pdf", "a.b.c", "CONTRACT.txt", "日本.txt"]
)
def test_check_name_accepts(name: str) -> None:
    assert check_name(name) == name


@FUZZ
@given(st.text(max_size=300))
def test_sanitise_always_gives_a_name_check_name_accepts(name: str) -> None:
    clean = sanitise(name)
    assert check_name(clean) == clean


def test_sanitise_examples() -> None:
    assert sanitise("../../etc/passwd") == "passwd"
    assert sanitise("C:\\Windows\\nul.txt") == "_nul.txt"
    assert sanitise("..") == "file"
    assert sanitise("evil\u202egnp.exe") == "evil_gnp.exe"


def test_check_mime() -> None:
    assert check_mime("image/png") == "image/png"
    for bad in ("image", "image/png; x", "", "IMAGE/PNG\n"):
        with pytest.raises(BadName):
            check_mime(bad)


def test_store_round_trip_holds_no_plaintext(tmp_path: Path) -> None:
    store = AttachmentStore(tmp_path)
    plain = os.urandom(3 * MIN_CHUNK_SIZE + 77)
    (tmp_path / "in.bin").write_bytes(plain)
    key = os.urandom(32)
    manifest = store.import_file(tmp_path / "in.bin", key, chunk_size=MIN_CHUNK_SIZE)
    assert manifest.count == 4 and manifest.size == len(plain)
    stored = store.path(manifest.root).read_bytes()
    # Chunks sit in 4 KiB-aligned slots (the gaps are holes); the last one ends the file.
    assert len(stored) == 3 * (MIN_CHUNK_SIZE + STORE_ALIGN) + 77 + 16
    assert not any(plain[i : i + 32] in stored for i in range(0, len(plain), 4096))
    out = store.export(manifest.root, manifest, key, tmp_path / "out.bin")
    assert out.read_bytes() == plain
    # A damaged chunk is caught on export and leaves no file behind.
    damaged = bytearray(stored)
    damaged[10] ^= 1
    store.path(manifest.root).write_bytes(damaged)
    with pytest.raises(ChunkError):
        store.export(manifest.root, manifest, key, tmp_path / "bad.bin")
    assert not (tmp_path / "bad.bin").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_empty_file(tmp_path: Path) -> None:
    store = AttachmentStore(tmp_path)
    (tmp_path / "empty").write_bytes(b"")
    manifest = store.import_file(tmp_path / "empty", os.urandom(32))
    assert manifest.count == 0
    store.delete(manifest.root)
    assert store.export(manifest.root, manifest, b"k" * 32, tmp_path / "o").read_bytes() == b""


def _pair() -> tuple[bulk.Channel, bulk.Channel]:
    a, b = socket.socketpair()
    d2s, s2d = bulk.derive_keys(os.urandom(32))
    return bulk.Channel(a, d2s, s2d), bulk.Channel(b, s2d, d2s)


def test_channel_round_trip_and_tamper() -> None:
    down, src = _pair()
    down.send(bulk.GET, b"\x00\x00\x00\x01")
    assert (lambda r: (r[0], bytes(r[1])))(src.recv()) == (bulk.GET, b"\x00\x00\x00\x01")
    big = os.urandom(1 << 20)
    sending = threading.Thread(target=src.send, args=(bulk.CHUNK, b"\x00\x00\x00\x01", big))
    sending.start()
    kind, body = down.recv()
    sending.join(timeout=10)
    assert kind == bulk.CHUNK and bytes(body[4:]) == big
    # A flipped bit, or a replayed record, fails authentication.
    raw = socket.socketpair()
    d2s, s2d = bulk.derive_keys(b"s" * 32)
    sender, receiver = bulk.Channel(raw[0], s2d, d2s), bulk.Channel(raw[1], d2s, s2d)
    sender.send(bulk.READY, b"abc")
    data = bytearray(raw[1].recv(100))
    data[-1] ^= 1
    replay = socket.socketpair()
    replay[0].sendall(bytes(data))
    with pytest.raises(bulk.SourceMisbehaved, match="authentication"):
        bulk.Channel(replay[1], d2s, s2d).recv()
    for s in (*raw, *replay):
        s.close()
    down.close()
    src.close()
    del receiver


def test_channel_refuses_an_oversized_length() -> None:
    a, b = socket.socketpair()
    a.sendall((bulk.MAX_RECORD + 1000).to_bytes(4, "big"))
    with pytest.raises(bulk.SourceMisbehaved, match="out of bounds"):
        bulk.Channel(b, b"k" * 32, b"k" * 32).recv()
    a.close()
    b.close()


def test_preamble() -> None:
    ticket = os.urandom(16)
    pre = bulk.encode_preamble(ticket)
    assert len(pre) == bulk.PREAMBLE_LEN and bulk.is_bulk_preamble(pre[: bulk.PEEK_LEN])
    assert pre[bulk.PEEK_LEN :] == ticket
    assert not bulk.is_bulk_preamble(b"\x00\x30CW\x01\x02")  # a RECONNECT handshake


def test_serve_and_fetch_over_a_socket_pair(tmp_path: Path) -> None:
    """One source, one downloader, a source that lies about one chunk."""
    store = AttachmentStore(tmp_path / "src")
    (tmp_path / "f").write_bytes(os.urandom(5 * MIN_CHUNK_SIZE))
    manifest = store.import_file(tmp_path / "f", os.urandom(32), chunk_size=MIN_CHUNK_SIZE)
    served = bulk.Served(manifest.root, manifest, Bitmap.full(5), lambda: None, lambda n: None)
    down, src = _pair()
    worker = threading.Thread(target=bulk.serve, args=(src, store, served))
    worker.start()
    download = fetching.Download(manifest.root, AttachmentStore(tmp_path / "dst"), 1 << 30)
    download.expected = (manifest.size, manifest.chunk_size)
    fetching.fetch(down, download, "source")
    worker.join(timeout=10)
    download.close()
    assert download.complete and download.fetched == 5
    assert download.store.path(manifest.root).read_bytes() == store.path(manifest.root).read_bytes()

    # Now a source whose chunk 2 is damaged: the fetch stops with SourceMisbehaved and
    # chunk 2 is neither marked present nor left in flight.
    data = bytearray(store.path(manifest.root).read_bytes())
    data[bulk.stored_offset(MIN_CHUNK_SIZE, 2) + 5] ^= 1
    store.path(manifest.root).write_bytes(data)
    down, src = _pair()
    worker = threading.Thread(target=lambda: _quietly(bulk.serve, src, store, served))
    worker.start()
    download = fetching.Download(manifest.root, AttachmentStore(tmp_path / "dst2"), 1 << 30)
    with pytest.raises(bulk.SourceMisbehaved, match="chunk 2"):
        fetching.fetch(down, download, "source")
    down.close()
    worker.join(timeout=10)
    download.close()
    assert download.have is not None and 2 not in download.have
    assert 2 in download.take(None, 5)


def _quietly(fn, *args) -> None:  # type: ignore[no-untyped-def]
    try:
        fn(*args)
    except (bulk.BulkError, OSError):
        pass


def _imported(tmp_path: Path, size: int) -> tuple[AttachmentStore, Manifest, bytes, bytes]:
    store = AttachmentStore(tmp_path / "source")
    plain = os.urandom(size)
    (tmp_path / "in.bin").write_bytes(plain)
    key = os.urandom(32)
    return store, store.import_file(tmp_path / "in.bin", key, chunk_size=MIN_CHUNK_SIZE), key, plain


def test_chunk_file_writes_direct_or_buffered_alike(tmp_path: Path) -> None:
    manifest = Manifest(3 * MIN_CHUNK_SIZE, MIN_CHUNK_SIZE, (b"\0" * 32,) * 3)
    chunk = os.urandom(MIN_CHUNK_SIZE + TAG_LEN)
    buffer = bulk.RecordBuffer()
    buffer.data[5 : 5 + len(chunk)] = chunk
    buffer.data[5 + len(chunk) : 5 + len(chunk) + 100] = b"\xff" * 100  # stale bytes
    padded = buffer.padded_chunk(len(chunk))
    assert len(padded) % STORE_ALIGN == 0 and bytes(padded[len(chunk) :]).count(0) == len(
        padded
    ) - len(chunk)
    results = []
    for name, use_padded in (("direct", True), ("buffered", False)):
        file = ChunkFile(tmp_path / name)
        file.write(manifest, 1, memoryview(chunk), padded if use_padded else None)
        file.sync()
        file.close()
        data = (tmp_path / name).read_bytes()
        start = bulk.stored_offset(MIN_CHUNK_SIZE, 1)
        assert data[:start] == bytes(start)  # chunk 0 is a hole
        results.append(data[start : start + len(chunk)])
        # Served back the same, read straight from the disk or through the page cache.
        reader = ChunkReader(tmp_path / name)
        for direct in (True, False):
            out = bulk.RecordBuffer()
            view = out.data[5 : 5 + len(chunk)]
            reader.read_into(start, view, out.aligned_body(len(chunk)) if direct else None)
            assert bytes(view) == chunk
        with pytest.raises(StoreError, match="missing"):  # beyond the end: not there
            reader.read_into(3 * start, out.data[5 : 5 + len(chunk)], None)
        reader.close()
    assert results == [chunk, chunk]


def test_an_attachment_in_the_old_packed_layout_is_moved_to_slots(tmp_path: Path) -> None:
    store, manifest, key, plain = _imported(tmp_path, 4 * MIN_CHUNK_SIZE + 99)
    slots = store.path(manifest.root).read_bytes()
    chunks = [
        slots[bulk.stored_offset(manifest.chunk_size, i) :][: manifest.stored_size(i)]
        for i in range(manifest.count)
    ]
    # The layout of earlier versions: chunks packed at i * (chunk_size + 16); chunk 2 of
    # this partial download never arrived (a hole of zeros).
    packed = b"".join(c if i != 2 else bytes(len(c)) for i, c in enumerate(chunks))
    store.path(manifest.root).unlink()
    store.legacy_path(manifest.root).write_bytes(packed)
    assert store.legacy_roots() == [manifest.root]
    assert store.upgrade_legacy(manifest.root, manifest)
    assert not store.legacy_path(manifest.root).exists() and store.legacy_roots() == []
    indices = list(range(manifest.count))
    assert store.verify_present(manifest.root, manifest, indices) == [0, 1, 3, 4]
    upgraded = store.path(manifest.root).read_bytes()
    upgraded = (
        upgraded[: bulk.stored_offset(manifest.chunk_size, 2)]
        + b"".join([chunks[2].ljust(manifest.chunk_size + STORE_ALIGN, b"\0")])
        + upgraded[bulk.stored_offset(manifest.chunk_size, 3) :]
    )
    store.path(manifest.root).write_bytes(upgraded)
    assert store.export(manifest.root, manifest, key, tmp_path / "out").read_bytes() == plain
    assert not store.upgrade_legacy(manifest.root, manifest)  # nothing left to do


def test_a_file_system_that_refuses_direct_io_falls_back_to_ordinary_io(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """O_DIRECT opened, then EINVAL on the first write or read (another alignment wanted):
    the chunk still lands, and later ones go the ordinary way."""
    manifest = Manifest(2 * MIN_CHUNK_SIZE, MIN_CHUNK_SIZE, (b"\0" * 32,) * 2)
    chunks = [os.urandom(MIN_CHUNK_SIZE + TAG_LEN) for _ in range(2)]
    file = ChunkFile(tmp_path / "f")
    if not file.direct:
        pytest.skip("this file system has no O_DIRECT at all")
    real_pwrite, real_preadv = os.pwrite, os.preadv
    refused: list[int] = []

    def pwrite(fd: int, data: object, offset: int) -> int:
        if len(data) % STORE_ALIGN == 0:  # type: ignore[arg-type]  # the direct write
            refused.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "pwrite", pwrite)
    for index, chunk in enumerate(chunks):
        buffer = bulk.RecordBuffer()
        buffer.data[5 : 5 + len(chunk)] = chunk
        file.write(manifest, index, memoryview(chunk), buffer.padded_chunk(len(chunk)))
    assert len(refused) == 1 and not file.direct  # refused once, then no more tries
    file.close()
    monkeypatch.setattr(os, "pwrite", real_pwrite)

    def preadv(fd: int, buffers: list[memoryview], offset: int) -> int:
        if len(buffers[0]) % STORE_ALIGN == 0:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", preadv)
    reader = ChunkReader(tmp_path / "f")
    for index, chunk in enumerate(chunks):
        out = bulk.RecordBuffer()
        view = out.data[5 : 5 + len(chunk)]
        reader.read_into(
            bulk.stored_offset(MIN_CHUNK_SIZE, index), view, out.aligned_body(len(chunk))
        )
        assert bytes(view) == chunk
    reader.close()


def test_stopping_mid_fetch_keeps_every_chunk_already_received(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pause while received chunks still wait for the writer: they are verified and
    written, counted as held, and the rest goes back to the pool."""
    store = AttachmentStore(tmp_path / "src")
    (tmp_path / "f").write_bytes(os.urandom(24 * MIN_CHUNK_SIZE))
    manifest = store.import_file(tmp_path / "f", os.urandom(32), chunk_size=MIN_CHUNK_SIZE)
    served = bulk.Served(
        manifest.root, manifest, Bitmap.full(manifest.count), lambda: None, lambda n: None
    )
    down, src = _pair()
    worker = threading.Thread(target=lambda: _quietly(bulk.serve, src, store, served))
    worker.start()
    download = fetching.Download(
        manifest.root, AttachmentStore(tmp_path / "dst"), 1 << 30, manifest=manifest,
        have=Bitmap(manifest.count),
    )  # fmt: skip
    # A slow disk: each write takes a while, so chunks queue up behind the writer; the
    # user pauses when the fourth one is being written.
    store_chunk = download.store_chunk
    written: list[int] = []

    def slow_store(source: str, index: int, data: memoryview, padded=None) -> None:  # type: ignore[no-untyped-def]
        time.sleep(0.02)
        store_chunk(source, index, data, padded)
        written.append(index)
        if len(written) == 4:
            download.stopped.set()

    monkeypatch.setattr(download, "store_chunk", slow_store)
    fetching.fetch(down, download, "source")
    down.close()
    worker.join(timeout=10)
    download.sync()
    download.close()
    assert download.have is not None
    held = [i for i in range(manifest.count) if i in download.have]
    # Everything received was written (more than the four before the pause), all of it
    # verified on disk, nothing half-counted.
    assert sorted(written) == held and len(held) > 4 and len(held) < manifest.count
    dest = download.store
    assert dest.verify_present(manifest.root, manifest, held) == held
    # Nothing is left in flight: the rest can be fetched by the next run or another source.
    rest = [i for i in range(manifest.count) if i not in download.have]
    assert download.take(None, manifest.count) == rest

"""The fallbacks taken where a Linux-only call is missing, run here by taking the call away
(monkeypatch removes the constant, as on a system that lacks it): no O_DIRECT, no
rtnetlink. The Unix-socket fallback is tested in test_control.py; the profile lock's
Windows branch is type-checked against Windows (tests/install/test_platforms.py)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from messenger.files import bulk
from messenger.files.chunks import MIN_CHUNK_SIZE, TAG_LEN, Manifest
from messenger.files.store import AttachmentStore, ChunkFile, ChunkReader
from messenger.net.discovery import NetlinkWatcher


def test_without_o_direct_chunks_take_the_ordinary_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "O_DIRECT", raising=False)  # macOS, Windows, the BSDs
    manifest = Manifest(2 * MIN_CHUNK_SIZE, MIN_CHUNK_SIZE, (b"\0" * 32,) * 2)
    chunks = [os.urandom(MIN_CHUNK_SIZE + TAG_LEN) for _ in range(2)]
    file = ChunkFile(tmp_path / "f")
    assert not file.direct
    for index, chunk in enumerate(chunks):
        buffer = bulk.RecordBuffer()
        buffer.data[5 : 5 + len(chunk)] = chunk
        # An aligned, padded view is offered as on Linux; it is simply not needed.
        file.write(manifest, index, memoryview(chunk), buffer.padded_chunk(len(chunk)))
    file.sync()
    file.close()
    reader = ChunkReader(tmp_path / "f")
    assert not reader.direct
    for index, chunk in enumerate(chunks):
        out = bulk.RecordBuffer()
        view = out.data[5 : 5 + len(chunk)]
        reader.read_into(
            bulk.stored_offset(MIN_CHUNK_SIZE, index), view, out.aligned_body(len(chunk))
        )
        assert bytes(view) == chunk
    reader.close()


def test_without_o_direct_a_file_goes_in_and_out_of_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "O_DIRECT", raising=False)
    store = AttachmentStore(tmp_path / "store")
    plain = os.urandom(3 * MIN_CHUNK_SIZE + 123)
    (tmp_path / "in.bin").write_bytes(plain)
    key = os.urandom(32)
    manifest = store.import_file(tmp_path / "in.bin", key, chunk_size=MIN_CHUNK_SIZE)
    out = store.export(manifest.root, manifest, key, tmp_path / "out.bin")
    assert out.read_bytes() == plain


async def test_without_rtnetlink_the_watcher_declines_and_discovery_polls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    changes: list[None] = []
    monkeypatch.delattr(socket, "AF_NETLINK", raising=False)  # every system but Linux
    watcher = NetlinkWatcher(lambda: changes.append(None))
    assert watcher.start() is False  # the caller's poll (poll_interval) is all there is
    watcher.close()
    watcher.close()  # closing twice, or never started, is fine
    assert changes == []


@pytest.mark.skipif(not hasattr(socket, "AF_NETLINK"), reason="Linux only")
async def test_with_rtnetlink_the_watcher_subscribes() -> None:
    watcher = NetlinkWatcher(lambda: None)
    try:
        assert watcher.start() is True
    finally:
        watcher.close()

"""The attachment store: one file of ciphertext chunks per attachment, in the profile folder.

``<profile>/attachments/<root hex>.slots`` holds chunk ``i`` at ``i * (chunk_size + 4096)``
exactly as the manifest hashes it (encrypted with the file's own key, which lives only in
the encrypted database); the rest of each slot is a hole or zeros. A partial download is
the same file with holes; which chunks are present is the bitmap kept in the database.
Nothing here is ever plaintext: only `export` decrypts, straight to the path the user chose.

Earlier versions packed chunks at ``i * (chunk_size + 16)`` in ``<root hex>.chunks``;
`upgrade_legacy` rewrites such a file into slots once.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
from collections.abc import Callable
from pathlib import Path

from .chunks import (
    DEFAULT_CHUNK_SIZE,
    TAG_LEN,
    ChunkError,
    Manifest,
    aligned,
    chunk_count,
    chunk_hash,
    decrypt_chunk,
    encrypt_chunk,
    stored_offset,
)

DIR_NAME = "attachments"
log = logging.getLogger(__name__)


class StoreError(Exception):
    """A disk problem, with a message for the user (the partial file is kept)."""


class DiskFull(StoreError):
    pass


def _disk_error(exc: OSError, what: str) -> StoreError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"the disk is full while {what}; free some space and resume")
    return StoreError(f"{what} failed: {exc.strerror or exc}")


class AttachmentStore:
    def __init__(self, profile_path: Path) -> None:
        self.root_dir = Path(profile_path) / DIR_NAME

    def path(self, root: bytes) -> Path:
        return self.root_dir / f"{root.hex()}.slots"

    def legacy_path(self, root: bytes) -> Path:
        return self.root_dir / f"{root.hex()}.chunks"

    def _ensure_dir(self) -> None:
        self.root_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def has(self, root: bytes) -> bool:
        return self.path(root).exists()

    def import_file(
        self,
        source: Path,
        key: bytes,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        progress: Callable[[int], None] | None = None,
    ) -> Manifest:
        """Encrypt `source` chunk by chunk into the store; return its manifest. Blocking.

        Written like a download (ChunkFile): straight to the disk where it can be."""
        self._ensure_dir()
        size = os.stat(source).st_size
        count = chunk_count(size, chunk_size)
        tmp = self.root_dir / f".import-{os.urandom(8).hex()}"
        hashes: list[bytes] = []
        buffer = mmap.mmap(-1, aligned(chunk_size + TAG_LEN))  # page-aligned
        try:
            out = ChunkFile(tmp)
            try:
                with open(source, "rb") as src:
                    for index in range(count):
                        plain = src.read(chunk_size)
                        end = index * chunk_size + len(plain)
                        if end > size or (len(plain) < chunk_size and end != size):
                            raise StoreError(f"{source} changed while it was being read")
                        ct = encrypt_chunk(key, size, index, plain)
                        hashes.append(chunk_hash(ct))
                        buffer[: len(ct)] = ct
                        padded = aligned(len(ct))
                        buffer[len(ct) : padded] = bytes(padded - len(ct))
                        out.write_at(
                            stored_offset(chunk_size, index), memoryview(ct),
                            memoryview(buffer)[:padded], last=index == count - 1,
                        )  # fmt: skip
                        if progress is not None:
                            progress(end)
                    if src.read(1):
                        raise StoreError(f"{source} changed while it was being read")
                out.sync()
            finally:
                out.close()
            manifest = Manifest(size, chunk_size, tuple(hashes))
            os.replace(tmp, self.path(manifest.root))
            return manifest
        except BaseException as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(exc, OSError):
                raise _disk_error(exc, f"storing {source.name}") from exc
            raise
        finally:
            with contextlib.suppress(BufferError):  # a view of it may linger in a traceback
                buffer.close()

    def open_for_writing(self, root: bytes) -> ChunkFile:
        self._ensure_dir()
        return ChunkFile(self.path(root))

    def open_for_reading(self, root: bytes) -> int:
        return os.open(self.path(root), os.O_RDONLY)

    def open_for_serving(self, root: bytes) -> ChunkReader:
        return ChunkReader(self.path(root))

    @staticmethod
    def read_chunk(fd: int, manifest: Manifest, index: int) -> bytes:
        length = manifest.stored_size(index)
        data = os.pread(fd, length, stored_offset(manifest.chunk_size, index))
        if len(data) != length:
            raise StoreError(f"chunk {index} is missing from the store")
        return data

    def verify_present(self, root: bytes, manifest: Manifest, indices: list[int]) -> list[int]:
        """Those of `indices` whose stored bytes match their hash (after a crash)."""
        good: list[int] = []
        try:
            fd = self.open_for_reading(root)
        except FileNotFoundError:
            return good
        try:
            for i in indices:
                try:
                    data = self.read_chunk(fd, manifest, i)
                except StoreError:
                    continue
                if chunk_hash(data) == manifest.hashes[i]:
                    good.append(i)
        finally:
            os.close(fd)
        return good

    def export(self, root: bytes, manifest: Manifest, key: bytes, dest: Path) -> Path:
        """Decrypt a complete attachment to `dest` (written to a temporary name, then
        renamed, so a half-written file never carries the final name). Blocking."""
        dest = Path(dest)
        tmp = dest.with_name(f".{dest.name}.{os.urandom(4).hex()}.part")
        try:
            fd = self.open_for_reading(root)
        except FileNotFoundError:
            if manifest.count:
                raise StoreError("the attachment is not in the store") from None
            fd = os.open(os.devnull, os.O_RDONLY)  # an empty file has no chunks
        try:
            with open(tmp, "xb") as out:
                for i in range(manifest.count):
                    data = self.read_chunk(fd, manifest, i)
                    if chunk_hash(data) != manifest.hashes[i]:
                        raise ChunkError(f"stored chunk {i} is damaged")
                    out.write(decrypt_chunk(key, manifest.size, i, data))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
            return dest
        except BaseException as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(exc, OSError):
                raise _disk_error(exc, f"saving {dest.name}") from exc
            raise
        finally:
            os.close(fd)

    def delete(self, root: bytes) -> None:
        for path in (self.path(root), self.legacy_path(root)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def legacy_roots(self) -> list[bytes]:
        """Roots of the attachments stored in an earlier version's layout."""
        if not self.root_dir.is_dir():
            return []
        roots = []
        for path in self.root_dir.glob("*.chunks"):
            with contextlib.suppress(ValueError):
                roots.append(bytes.fromhex(path.stem))
        return roots

    def upgrade_legacy(self, root: bytes, manifest: Manifest | None) -> bool:
        """Rewrite an attachment stored in the packed layout of earlier versions into
        slots (once, at start-up; chunks missing from a partial one stay holes). Blocking.
        Returns whether there was one."""
        legacy = self.legacy_path(root)
        if not legacy.exists():
            return False
        if manifest is None:  # nothing was written before the manifest arrived (or no record)
            legacy.unlink()
            return True
        log.info("moving attachment %s to the slotted layout", root.hex()[:12])
        tmp = self.root_dir / f".upgrade-{os.urandom(8).hex()}"
        try:
            with open(legacy, "rb") as src, open(tmp, "wb") as out:
                for index in range(manifest.count):
                    src.seek(index * (manifest.chunk_size + TAG_LEN))
                    data = src.read(manifest.stored_size(index))
                    if not data.strip(b"\0"):
                        continue  # a hole: the chunk was never received
                    out.seek(stored_offset(manifest.chunk_size, index))
                    out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path(root))
            legacy.unlink()
            return True
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise _disk_error(exc, "moving an attachment to the new layout") from exc


class _StoreFile:
    """A store file open twice: ordinary I/O, and O_DIRECT where the file system allows it
    (given up for good at the first EINVAL: it wants another alignment)."""

    def __init__(self, path: Path, flags: int, direct_flags: int, mode: int = 0o600) -> None:
        self.fd = os.open(path, flags, mode)
        self._direct_fd = _open_direct(path, direct_flags)

    @property
    def direct(self) -> bool:
        return self._direct_fd >= 0

    def _give_up_direct(self) -> None:
        os.close(self._direct_fd)
        self._direct_fd = -1

    def close(self) -> None:
        for fd in (self.fd, self._direct_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self._direct_fd = -1


class ChunkFile(_StoreFile):
    """A store file open for writing chunks (a download's verified ones, or an import's).

    Chunks go straight to the disk (O_DIRECT) when the file system allows it and the
    caller hands over an aligned, padded view of the chunk (`write(..., padded=)`): the
    receiver then never fills the page cache with a file it only passes through, which on
    this project's virtual machines costs more CPU than decrypting and hashing the data
    together (docs/protocol.md §17.1). Anything else takes the ordinary buffered path.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path, os.O_RDWR | os.O_CREAT, os.O_WRONLY)

    def write(
        self, manifest: Manifest, index: int, data: memoryview, padded: memoryview | None = None
    ) -> None:
        """Write chunk `index`. `padded`, if given, is `data` followed by zeros up to a
        multiple of STORE_ALIGN, starting at a STORE_ALIGN-aligned address."""
        offset = stored_offset(manifest.chunk_size, index)
        self.write_at(offset, data, padded, last=index == manifest.count - 1)

    def write_at(
        self, offset: int, data: memoryview, padded: memoryview | None, *, last: bool
    ) -> None:
        try:
            if self._direct_fd >= 0 and padded is not None:
                try:
                    self._write_all(self._direct_fd, padded, offset)
                    if last and len(padded) > len(data):
                        os.ftruncate(self.fd, offset + len(data))  # the file ends with it
                    return
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    self._give_up_direct()  # buffered from now on
            self._write_all(self.fd, data, offset)
        except OSError as exc:
            raise _disk_error(exc, "writing a chunk to the store") from exc

    @staticmethod
    def _write_all(fd: int, data: memoryview, offset: int) -> None:
        written = os.pwrite(fd, data, offset)
        while written < len(data):  # short writes only happen near a full disk
            more = os.pwrite(fd, data[written:], offset + written)
            if more == 0:
                raise OSError(errno.ENOSPC, "no space left on device")
            written += more

    def sync(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise _disk_error(exc, "saving received chunks") from exc


def _open_direct(path: Path, flags: int) -> int:
    """An O_DIRECT descriptor of `path`, or -1 where there is none (not Linux, or a file
    system that refuses it, such as tmpfs before Linux 6.6)."""
    direct = getattr(os, "O_DIRECT", 0)
    if not direct:
        return -1
    try:
        return os.open(path, flags | direct)
    except OSError:
        return -1


class ChunkReader(_StoreFile):
    """A store file open for serving chunks: read straight from the disk (O_DIRECT) into
    the caller's aligned buffer where possible, like ChunkFile writes, so that serving a
    big file does not fill the page cache either; otherwise ordinary reads."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, os.O_RDONLY, os.O_RDONLY)

    def read_into(self, offset: int, view: memoryview, padded: memoryview | None) -> None:
        """Fill `view` from `offset`. `padded`, if given, starts where `view` does, at a
        STORE_ALIGN-aligned address, and has room for len(view) rounded up to it."""
        length = len(view)
        if self._direct_fd >= 0 and padded is not None:
            try:
                if os.preadv(self._direct_fd, [padded[: aligned(length)]], offset) >= length:
                    return
                raise StoreError("a chunk is missing from the store")
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._give_up_direct()  # ordinary reads from now on
        if os.preadv(self.fd, [view], offset) != length:
            raise StoreError("a chunk is missing from the store")

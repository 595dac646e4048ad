"""The attachment store: one file of ciphertext chunks per attachment, in the profile folder.

``<profile>/attachments/<root hex>.chunks`` holds chunk ``i`` at ``i * (chunk_size + 16)``
exactly as the manifest hashes it (encrypted with the file's own key, which lives only in
the encrypted database). A partial download is the same file with holes; which chunks are
present is the bitmap kept in the database. Nothing here is ever plaintext: only
`export` decrypts, straight to the path the user chose.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from pathlib import Path

from .chunks import (
    DEFAULT_CHUNK_SIZE,
    ChunkError,
    Manifest,
    chunk_hash,
    decrypt_chunk,
    encrypt_chunk,
    stored_offset,
)

DIR_NAME = "attachments"


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
        """Encrypt `source` chunk by chunk into the store; return its manifest. Blocking."""
        self._ensure_dir()
        size = os.stat(source).st_size
        tmp = self.root_dir / f".import-{os.urandom(8).hex()}"
        hashes: list[bytes] = []
        try:
            with open(source, "rb") as src, open(tmp, "wb") as out:
                index = 0
                while True:
                    plain = src.read(chunk_size)
                    if not plain and index * chunk_size >= size:
                        break
                    end = index * chunk_size + len(plain)
                    if end > size or (len(plain) < chunk_size and end != size):
                        raise StoreError(f"{source} changed while it was being read")
                    ct = encrypt_chunk(key, size, index, plain)
                    hashes.append(chunk_hash(ct))
                    out.write(ct)
                    index += 1
                    if progress is not None:
                        progress(index * chunk_size)
                    if len(plain) < chunk_size:
                        break
                out.flush()
                os.fsync(out.fileno())
            manifest = Manifest(size, chunk_size, tuple(hashes))
            os.replace(tmp, self.path(manifest.root))
            return manifest
        except BaseException as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(exc, OSError):
                raise _disk_error(exc, f"storing {source.name}") from exc
            raise

    def open_for_writing(self, root: bytes) -> int:
        self._ensure_dir()
        return os.open(self.path(root), os.O_RDWR | os.O_CREAT, 0o600)

    def open_for_reading(self, root: bytes) -> int:
        return os.open(self.path(root), os.O_RDONLY)

    @staticmethod
    def write_chunk(fd: int, manifest: Manifest, index: int, data: bytes | memoryview) -> None:
        try:
            offset = stored_offset(manifest.chunk_size, index)
            written = os.pwrite(fd, data, offset)
            while written < len(data):  # short writes only happen near a full disk
                more = os.pwrite(fd, memoryview(data)[written:], offset + written)
                if more == 0:
                    raise OSError(errno.ENOSPC, "no space left on device")
                written += more
        except OSError as exc:
            raise _disk_error(exc, "writing a received chunk") from exc

    @staticmethod
    def read_chunk(fd: int, manifest: Manifest, index: int) -> bytes:
        length = manifest.stored_size(index)
        data = os.pread(fd, length, stored_offset(manifest.chunk_size, index))
        if len(data) != length:
            raise StoreError(f"chunk {index} is missing from the store")
        return data

    @staticmethod
    def sync(fd: int) -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            raise _disk_error(exc, "saving received chunks") from exc

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
        with contextlib.suppress(FileNotFoundError):
            self.path(root).unlink()

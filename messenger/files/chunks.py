"""Manifests and chunk crypto (pure; no I/O).

A file is encrypted once, by its sender, with its own random 32-byte key: plaintext chunk
``i`` (``chunk_size`` bytes, the last one shorter) becomes ChaCha20-Poly1305-IETF with nonce
``u32 0 || u64le i`` and associated data ``b"chinwag-file" || u64be size``. Every holder
stores and serves these ciphertext chunks as they are; the manifest lists the BLAKE2b-256
hash of each, and the root (BLAKE2b-256 of the manifest bytes) names the file.

Manifest layout (big-endian)::

    b"CWM1" || u64 size || u32 chunk_size || u32 count || count x 32-byte chunk hash
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Final

import nacl.bindings
import nacl.exceptions

MANIFEST_MAGIC: Final = b"CWM1"
HASH_LEN: Final = 32
KEY_LEN: Final = 32
TAG_LEN: Final = 16
DEFAULT_CHUNK_SIZE: Final = 1 << 20
MIN_CHUNK_SIZE: Final = 1 << 16
MAX_CHUNK_SIZE: Final = 1 << 22
MAX_CHUNKS: Final = 1 << 17
"""At most this many chunks per file (a 4 MiB manifest; 128 GiB at 1 MiB chunks)."""
_HEADER = struct.Struct(">4sQII")
_CHUNK_AD = b"chinwag-file"
_ROOT_PERSON = b"chinwag-manifest"
_CHUNK_PERSON = b"chinwag-chunk"


class ManifestError(ValueError):
    """A manifest, chunk size or file size that cannot be right; the message says why."""


class ChunkError(ValueError):
    """A chunk that fails decryption or does not match its hash."""


def chunk_count(size: int, chunk_size: int) -> int:
    return -(-size // chunk_size)


def check_geometry(size: int, chunk_size: int, max_size: int) -> int:
    """Validate a file size and chunk size (from a hostile offer); return the chunk count."""
    if type(size) is not int or size < 0:
        raise ManifestError(f"file size {size!r} is negative or not a number")
    if size > max_size:
        raise ManifestError(f"file of {size} bytes is over the {max_size}-byte limit")
    if (
        type(chunk_size) is not int
        or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE
        or chunk_size & (chunk_size - 1)
    ):
        raise ManifestError(f"chunk size {chunk_size!r} is not a power of two in 64 KiB..4 MiB")
    count = chunk_count(size, chunk_size)
    if count > MAX_CHUNKS:
        raise ManifestError(f"{count} chunks is over the limit of {MAX_CHUNKS}")
    return count


def stored_chunk_size(size: int, chunk_size: int, index: int) -> int:
    """Length of ciphertext chunk `index` (plaintext plus the 16-byte tag)."""
    start = index * chunk_size
    return min(chunk_size, size - start) + TAG_LEN


STORE_ALIGN: Final = 4096
"""Stored chunks start on 4 KiB boundaries: a downloader can then write them straight to
the disk (O_DIRECT), which on a virtual machine is several times cheaper than filling the
page cache (see store.ChunkFile)."""


def stored_offset(chunk_size: int, index: int) -> int:
    """Where ciphertext chunk `index` starts in the store file: slot `index` of
    chunk_size + 4 KiB (room for the tag, rounded up to the alignment)."""
    return index * (chunk_size + STORE_ALIGN)


def aligned(length: int) -> int:
    """`length` rounded up to a multiple of STORE_ALIGN."""
    return -(-length // STORE_ALIGN) * STORE_ALIGN


def chunk_hash(ciphertext: bytes | bytearray | memoryview) -> bytes:
    return hashlib.blake2b(ciphertext, digest_size=HASH_LEN, person=_CHUNK_PERSON).digest()


def _nonce(index: int) -> bytes:
    return b"\0\0\0\0" + index.to_bytes(8, "little")


def _ad(size: int) -> bytes:
    return _CHUNK_AD + size.to_bytes(8, "big")


def encrypt_chunk(key: bytes, size: int, index: int, plaintext: bytes) -> bytes:
    return nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(
        plaintext, _ad(size), _nonce(index), key
    )


def decrypt_chunk(key: bytes, size: int, index: int, ciphertext: bytes) -> bytes:
    try:
        return nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt(
            bytes(ciphertext), _ad(size), _nonce(index), key
        )
    except nacl.exceptions.CryptoError:
        raise ChunkError(f"chunk {index} does not decrypt with the file key") from None


@dataclass(frozen=True, slots=True)
class Manifest:
    size: int
    chunk_size: int
    hashes: tuple[bytes, ...]

    @property
    def count(self) -> int:
        return len(self.hashes)

    def encode(self) -> bytes:
        return _HEADER.pack(
            MANIFEST_MAGIC, self.size, self.chunk_size, len(self.hashes)
        ) + b"".join(self.hashes)

    @property
    def root(self) -> bytes:
        return manifest_root(self.encode())

    def stored_size(self, index: int) -> int:
        return stored_chunk_size(self.size, self.chunk_size, index)


def manifest_root(encoded: bytes) -> bytes:
    return hashlib.blake2b(encoded, digest_size=HASH_LEN, person=_ROOT_PERSON).digest()


def decode_manifest(data: bytes, *, max_size: int = 1 << 62) -> Manifest:
    """Parse and check a manifest; raises only ManifestError."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ManifestError(f"manifest: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise ManifestError(f"manifest truncated ({len(data)} bytes)")
    magic, size, chunk_size, count = _HEADER.unpack_from(data)
    if magic != MANIFEST_MAGIC:
        raise ManifestError(f"manifest: bad magic {magic!r}")
    expected = check_geometry(size, chunk_size, max_size)
    if count != expected:
        raise ManifestError(
            f"manifest lists {count} chunks but {size} bytes in {chunk_size}-byte chunks "
            f"make {expected}"
        )
    body = data[_HEADER.size :]
    if len(body) != count * HASH_LEN:
        raise ManifestError(f"manifest has {len(body)} hash bytes, expected {count * HASH_LEN}")
    hashes = tuple(body[i : i + HASH_LEN] for i in range(0, len(body), HASH_LEN))
    return Manifest(size, chunk_size, hashes)


class Bitmap:
    """Which chunks are present: one bit per chunk, bit i of byte i // 8 (LSB first)."""

    __slots__ = ("_bits", "count", "have")

    def __init__(self, count: int, data: bytes | None = None) -> None:
        self.count = count
        length = (count + 7) // 8
        self._bits = bytearray(data if data is not None else length)
        if len(self._bits) != length:
            raise ManifestError(f"bitmap of {len(self._bits)} bytes for {count} chunks")
        if count % 8 and self._bits and self._bits[-1] >> (count % 8):
            raise ManifestError("bitmap has bits set past the last chunk")
        self.have = sum(bin(b).count("1") for b in self._bits)

    def __contains__(self, index: int) -> bool:
        return bool(self._bits[index >> 3] >> (index & 7) & 1)

    def add(self, index: int) -> None:
        if index not in self:
            self._bits[index >> 3] |= 1 << (index & 7)
            self.have += 1

    def discard(self, index: int) -> None:
        if index in self:
            self._bits[index >> 3] &= ~(1 << (index & 7)) & 0xFF
            self.have -= 1

    @property
    def complete(self) -> bool:
        return self.have == self.count

    def missing(self) -> list[int]:
        return [i for i in range(self.count) if i not in self]

    def to_bytes(self) -> bytes:
        return bytes(self._bits)

    @classmethod
    def full(cls, count: int) -> Bitmap:
        bitmap = cls(count)
        for i in range(count):
            bitmap.add(i)
        return bitmap

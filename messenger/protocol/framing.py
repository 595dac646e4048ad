"""Record-layer helpers (sans-I/O): length framing, padding and fragmentation.

On the wire every frame is ``u16 big-endian length || body``, where the body is
a Noise handshake message or a Noise transport ciphertext.

A *record* (one encoded wire message, at most :data:`MAX_RECORD` bytes) is
split into chunks by :func:`fragment`.  Each chunk is padded with :func:`pad`
to one of a few bucket sizes to hide its length, then encrypted into one frame.
The receiver reverses this with :func:`unpad` and a :class:`Reassembler`.

Padded plaintext layout::

    flags (u8, bit0 = more fragments follow) || chunk || 0x80 || 0x00 ... 0x00

whose total length is the smallest entry of :data:`BUCKETS` that fits.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BUCKETS",
    "FLAG_MORE",
    "LENGTH_PREFIX",
    "MAX_CHUNK",
    "MAX_FRAME_BODY",
    "MAX_PLAINTEXT",
    "MAX_RECORD",
    "MIN_TRANSPORT_FRAME",
    "FrameDecoder",
    "FrameError",
    "Reassembler",
    "encode_frame",
    "fragment",
    "pad",
    "unpad",
]

LENGTH_PREFIX: Final = 2
MAX_FRAME_BODY: Final = 65535
MIN_TRANSPORT_FRAME: Final = 16
"""Smallest possible transport frame body: an empty plaintext plus the AEAD tag."""
MAX_PLAINTEXT: Final = MAX_FRAME_BODY - 16
BUCKETS: Final[tuple[int, ...]] = (64, 256, 1024, 4096, 16384, MAX_PLAINTEXT)
MAX_CHUNK: Final = MAX_PLAINTEXT - 2
"""Largest chunk :func:`pad` accepts (room for the flags byte and the 0x80 marker)."""
MAX_RECORD: Final = 256 * 1024
FLAG_MORE: Final = 0x01

_MARKER: Final = 0x80


class FrameError(ValueError):
    """Malformed framing, padding or fragmentation."""


# --------------------------------------------------------------------------
# Length framing
# --------------------------------------------------------------------------


def encode_frame(body: bytes) -> bytes:
    """Prefix ``body`` with its u16 big-endian length.

    Raises :class:`FrameError` (a ``ValueError``) if ``body`` is empty or longer
    than :data:`MAX_FRAME_BODY`.
    """
    n = len(body)
    if n == 0:
        raise FrameError("cannot send an empty frame")
    if n > MAX_FRAME_BODY:
        raise FrameError(f"frame body of {n} bytes exceeds the limit of {MAX_FRAME_BODY}")
    return n.to_bytes(2, "big") + bytes(body)


class FrameDecoder:
    """Incremental decoder of a ``u16 length || body`` stream.

    Buffers at most one partial frame (at most ``2 + 65535`` bytes) between
    calls; complete frames in a chunk are sliced straight out of it.  After a
    :class:`FrameError` the decoder is dead and every later :meth:`feed` raises.
    """

    __slots__ = ("_buf", "_error")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._error: FrameError | None = None

    @property
    def buffered(self) -> int:
        """Number of bytes of the pending partial frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Consume ``data`` and return the bodies of all frames it completes."""
        if self._error is not None:
            raise FrameError(f"decoder already failed: {self._error}")
        try:
            return self._feed(memoryview(data).cast("B"))
        except FrameError as exc:
            self._error = exc
            self._buf.clear()
            raise

    def _feed(self, view: memoryview) -> list[bytes]:
        frames: list[bytes] = []
        buf = self._buf
        pos = 0
        end = len(view)

        if buf:
            # Complete the pending partial frame first, copying only what it needs.
            if len(buf) < LENGTH_PREFIX:
                take = min(LENGTH_PREFIX - len(buf), end)
                buf += view[:take]
                pos = take
                if len(buf) < LENGTH_PREFIX:
                    return frames
            length = _frame_length(buf[0], buf[1])
            take = min(LENGTH_PREFIX + length - len(buf), end - pos)
            buf += view[pos : pos + take]
            pos += take
            if len(buf) < LENGTH_PREFIX + length:
                return frames
            frames.append(bytes(buf[LENGTH_PREFIX:]))
            buf.clear()

        # Whole frames straight from the input.
        while end - pos >= LENGTH_PREFIX:
            length = _frame_length(view[pos], view[pos + 1])
            start = pos + LENGTH_PREFIX
            if end - start < length:
                break
            frames.append(bytes(view[start : start + length]))
            pos = start + length

        # Keep the trailing partial frame (< 2 + 65535 bytes).
        if pos < end:
            if end - pos >= LENGTH_PREFIX:
                # Validate the header now so a bad length fails early.
                _frame_length(view[pos], view[pos + 1])
            buf += view[pos:end]
        return frames


def _frame_length(hi: int, lo: int) -> int:
    length = (hi << 8) | lo
    if length == 0:
        raise FrameError("received a zero-length frame")
    return length


# --------------------------------------------------------------------------
# Padding
# --------------------------------------------------------------------------


def _bucket_for(size: int) -> int:
    for bucket in BUCKETS:
        if size <= bucket:
            return bucket
    raise FrameError(f"{size} bytes does not fit in the largest bucket ({BUCKETS[-1]})")


def pad(chunk: bytes, *, more: bool) -> bytes:
    """Pad ``chunk`` to a bucket: ``flags || chunk || 0x80 || 0x00*``."""
    if len(chunk) > MAX_CHUNK:
        raise FrameError(f"chunk of {len(chunk)} bytes exceeds the limit of {MAX_CHUNK}")
    size = len(chunk) + 2
    bucket = _bucket_for(size)
    out = bytearray(bucket)
    out[0] = FLAG_MORE if more else 0
    out[1 : size - 1] = chunk
    out[size - 1] = _MARKER
    return bytes(out)


def unpad(plaintext: bytes) -> tuple[bytes, bool]:
    """Strip the padding added by :func:`pad`; return ``(chunk, more)``.

    Raises :class:`FrameError` if the length is not a bucket size, unknown flag
    bits are set, the 0x80 marker is missing, or anything non-zero follows it.
    """
    n = len(plaintext)
    if n not in BUCKETS:
        raise FrameError(f"padded plaintext of {n} bytes is not a bucket size {BUCKETS}")
    flags = plaintext[0]
    if flags & ~FLAG_MORE:
        raise FrameError(f"unknown flag bits 0x{flags & ~FLAG_MORE:02x} in padded plaintext")
    stripped = bytes(plaintext).rstrip(b"\x00")
    if len(stripped) < 2 or stripped[-1] != _MARKER:
        raise FrameError("padding marker 0x80 missing or followed by non-zero bytes")
    return stripped[1:-1], bool(flags & FLAG_MORE)


# --------------------------------------------------------------------------
# Fragmentation
# --------------------------------------------------------------------------


def fragment(record: bytes, *, max_record: int = MAX_RECORD) -> list[tuple[bytes, bool]]:
    """Split ``record`` into ``(chunk, more)`` pairs of at most :data:`MAX_CHUNK` bytes.

    ``more`` is True on every chunk except the last.  An empty record yields a
    single empty final chunk.  Raises :class:`FrameError` if the record is
    longer than ``max_record``.
    """
    n = len(record)
    if n > max_record:
        raise FrameError(f"record of {n} bytes exceeds the limit of {max_record}")
    if n == 0:
        return [(b"", False)]
    data = bytes(record)
    starts = range(0, n, MAX_CHUNK)
    return [(data[s : s + MAX_CHUNK], s + MAX_CHUNK < n) for s in starts]


class Reassembler:
    """Collects chunks until one with ``more=False`` completes a record."""

    __slots__ = ("_buf", "_max_record")

    def __init__(self, max_record: int = MAX_RECORD) -> None:
        if type(max_record) is not int or max_record < 1:
            raise ValueError(f"max_record must be a positive int, got {max_record!r}")
        self._max_record = max_record
        self._buf = bytearray()

    @property
    def max_record(self) -> int:
        return self._max_record

    @property
    def buffered(self) -> int:
        """Bytes of the record being reassembled."""
        return len(self._buf)

    def add(self, chunk: bytes, more: bool) -> bytes | None:
        """Add one chunk; return the complete record once the last chunk arrives.

        Raises :class:`FrameError` (and discards the partial record) if the
        record would exceed the limit; the check happens before appending.
        """
        if not more and not self._buf and len(chunk) <= self._max_record:
            return chunk  # a record in one chunk (nearly all): no copies
        total = len(self._buf) + len(chunk)
        if total > self._max_record:
            self._buf.clear()
            raise FrameError(
                f"reassembled record would be at least {total} bytes, "
                f"exceeding the limit of {self._max_record}"
            )
        self._buf += chunk
        if more:
            return None
        record = bytes(self._buf)
        self._buf.clear()
        return record

"""Tests for messenger.protocol.framing: length framing, padding and fragmentation."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messenger.protocol.framing import (
    BUCKETS,
    MAX_CHUNK,
    MAX_FRAME_BODY,
    MAX_PLAINTEXT,
    MAX_RECORD,
    MIN_TRANSPORT_FRAME,
    FrameDecoder,
    FrameError,
    Reassembler,
    encode_frame,
    fragment,
    pad,
    unpad,
)

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

frame_bodies = st.binary(min_size=1, max_size=300) | st.sampled_from(
    [b"\x00", b"L" * MAX_FRAME_BODY, b"M" * 1000]
)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in [*points, len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


# --------------------------------------------------------------------------
# Length framing
# --------------------------------------------------------------------------


def test_constants() -> None:
    assert MAX_FRAME_BODY == 65535
    assert MIN_TRANSPORT_FRAME == 16
    assert MAX_PLAINTEXT == 65535 - 16
    assert BUCKETS == (64, 256, 1024, 4096, 16384, MAX_PLAINTEXT)
    assert MAX_CHUNK == MAX_PLAINTEXT - 2
    assert MAX_RECORD == 256 * 1024
    assert issubclass(FrameError, ValueError)


def test_encode_frame() -> None:
    assert encode_frame(b"abc") == b"\x00\x03abc"
    assert encode_frame(b"x" * MAX_FRAME_BODY)[:2] == b"\xff\xff"
    with pytest.raises(ValueError, match="empty"):
        encode_frame(b"")
    with pytest.raises(ValueError, match="65536"):
        encode_frame(b"x" * (MAX_FRAME_BODY + 1))


@FAST
@given(st.lists(frame_bodies, max_size=20), st.lists(st.integers(0, 10**7), max_size=30))
def test_decoder_random_splits(bodies: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(b) for b in bodies)
    dec = FrameDecoder()
    out: list[bytes] = []
    for piece in split_at(stream, cuts):
        out.extend(dec.feed(piece))
        assert dec.buffered <= 2 + MAX_FRAME_BODY
    assert out == bodies
    assert dec.buffered == 0


@FAST
@given(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=8))
def test_decoder_byte_by_byte(bodies: list[bytes]) -> None:
    stream = b"".join(encode_frame(b) for b in bodies)
    dec = FrameDecoder()
    out: list[bytes] = []
    for i in range(len(stream)):
        out.extend(dec.feed(stream[i : i + 1]))
    assert out == bodies


@FAST
@given(st.lists(frame_bodies, min_size=1, max_size=10), st.data())
def test_decoder_truncated_stream(bodies: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(b) for b in bodies)
    last = encode_frame(bodies[-1])
    cut = data.draw(st.integers(1, len(last) - 1))
    truncated = stream[: len(stream) - cut]
    dec = FrameDecoder()
    out = dec.feed(truncated)
    assert out == bodies[:-1]
    assert dec.buffered == len(last) - cut
    # Feeding nothing changes nothing; feeding the rest completes the frame.
    assert dec.feed(b"") == []
    assert dec.feed(stream[len(stream) - cut :]) == [bodies[-1]]
    assert dec.buffered == 0


def test_decoder_partial_only_yields_nothing() -> None:
    dec = FrameDecoder()
    assert dec.feed(b"\x00") == []
    assert dec.buffered == 1
    assert dec.feed(b"\x05ab") == []
    assert dec.buffered == 4
    assert dec.feed(b"cd") == []
    assert dec.feed(b"e\x00\x01") == [b"abcde"]
    assert dec.buffered == 2
    assert dec.feed(b"z") == [b"z"]


def test_decoder_accepts_bytes_like() -> None:
    dec = FrameDecoder()
    assert dec.feed(bytearray(b"\x00\x01a\x00")) == [b"a"]  # type: ignore[arg-type]
    assert dec.feed(memoryview(b"\x01b")) == [b"b"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "chunks",
    [
        [b"\x00\x00"],
        [b"\x00", b"\x00"],
        [b"\x00\x01a\x00\x00"],
        [b"\x00\x01a", b"\x00", b"\x00rest"],
        [b"\x00\x01a\x00"],  # not yet an error...
    ],
)
def test_decoder_zero_length(chunks: list[bytes]) -> None:
    dec = FrameDecoder()
    with pytest.raises(FrameError, match="zero-length"):
        for c in chunks:
            dec.feed(c)
        dec.feed(b"\x00")  # ...completes the zero header
    with pytest.raises(FrameError):
        dec.feed(b"\x00\x01a")  # dead after an error


def test_decoder_partial_buffer_bounded() -> None:
    dec = FrameDecoder()
    big = encode_frame(b"B" * MAX_FRAME_BODY)
    # Many complete frames plus a partial in one chunk: only the partial is kept.
    chunk = encode_frame(b"s") * 1000 + big[:-1]
    assert len(dec.feed(chunk)) == 1000
    assert dec.buffered == len(big) - 1 == 2 + MAX_FRAME_BODY - 1
    assert dec.feed(big[-1:] + big[:10]) == [b"B" * MAX_FRAME_BODY]
    assert dec.buffered == 10


def test_decoder_many_small_frames_is_linear() -> None:
    stream = encode_frame(b"x" * 16) * 200_000  # ~3.6 MB, 200k frames
    dec = FrameDecoder()
    t0 = time.perf_counter()
    frames = dec.feed(stream)
    elapsed = time.perf_counter() - t0
    assert len(frames) == 200_000
    assert elapsed < 5.0


# --------------------------------------------------------------------------
# Padding
# --------------------------------------------------------------------------


chunks = st.binary(max_size=300) | st.integers(0, MAX_CHUNK).map(lambda n: b"\x80" * n)


@FAST
@given(chunks, st.booleans())
def test_pad_round_trip(chunk: bytes, more: bool) -> None:
    padded = pad(chunk, more=more)
    assert len(padded) in BUCKETS
    assert len(padded) == min(b for b in BUCKETS if b >= len(chunk) + 2)
    assert unpad(padded) == (chunk, more)


@pytest.mark.parametrize(
    ("size", "bucket"),
    [
        (0, 64),
        (62, 64),
        (63, 256),
        (254, 256),
        (255, 1024),
        (1022, 1024),
        (1023, 4096),
        (4094, 4096),
        (4095, 16384),
        (16382, 16384),
        (16383, MAX_PLAINTEXT),
        (MAX_CHUNK, MAX_PLAINTEXT),
    ],
)
def test_bucket_sizes(size: int, bucket: int) -> None:
    padded = pad(b"\x00" * size, more=False)
    assert len(padded) == bucket
    assert unpad(padded) == (b"\x00" * size, False)


def test_pad_layout() -> None:
    assert pad(b"ab", more=True) == b"\x01ab\x80" + b"\x00" * 60
    assert pad(b"", more=False) == b"\x00\x80" + b"\x00" * 62


def test_pad_too_big() -> None:
    with pytest.raises(FrameError):
        pad(b"x" * (MAX_CHUNK + 1), more=False)


def test_padded_transport_frame_fits() -> None:
    assert len(pad(b"x" * MAX_CHUNK, more=True)) + 16 == MAX_FRAME_BODY


@pytest.mark.parametrize(
    "plaintext",
    [
        b"",
        b"\x00\x80",
        b"\x00\x80" + b"\x00" * 61,  # 63: not a bucket
        b"\x00\x80" + b"\x00" * 63,  # 65
        b"\x02\x80" + b"\x00" * 62,  # unknown flag
        b"\x81\x80" + b"\x00" * 62,  # unknown flag
        b"\x00" * 64,  # no marker
        b"\x00abc" + b"\x00" * 60,  # no marker
        b"\x00\x80" + b"\x00" * 61 + b"\x01",  # junk after marker
        b"\x01\x80\x01" + b"\x00" * 61,  # non-zero after marker
        b"\x80" + b"\x00" * 63,  # marker in flags position
    ],
)
def test_unpad_strict(plaintext: bytes) -> None:
    with pytest.raises(FrameError):
        unpad(plaintext)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=300)
    | st.sampled_from(BUCKETS[:3]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
)
def test_unpad_fuzz(plaintext: bytes) -> None:
    try:
        chunk, _ = unpad(plaintext)
    except FrameError:
        return
    assert len(chunk) <= MAX_CHUNK


@settings(max_examples=200, deadline=None)
@given(chunks, st.booleans(), st.data())
def test_unpad_fuzz_mutated(chunk: bytes, more: bool, data: st.DataObject) -> None:
    buf = bytearray(pad(chunk, more=more))
    i = data.draw(st.integers(0, len(buf) - 1))
    buf[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del buf[data.draw(st.integers(0, len(buf) - 1)) :]
    try:
        unpad(bytes(buf))
    except FrameError:
        pass


# --------------------------------------------------------------------------
# Fragmentation
# --------------------------------------------------------------------------


records = st.one_of(
    st.binary(max_size=200),
    st.integers(0, MAX_RECORD).map(lambda n: bytes([n % 251]) * n),
    st.sampled_from(
        [b"", b"r" * MAX_CHUNK, b"r" * (MAX_CHUNK + 1), b"r" * (2 * MAX_CHUNK), b"R" * MAX_RECORD]
    ),
)


@SLOW
@given(records)
def test_fragment_reassemble_round_trip(record: bytes) -> None:
    parts = fragment(record)
    assert parts[-1][1] is False
    assert all(more for _, more in parts[:-1])
    assert all(len(c) <= MAX_CHUNK for c, _ in parts)
    assert len(parts) == max(1, -(-len(record) // MAX_CHUNK))
    r = Reassembler()
    results = []
    for chunk, more in parts:
        # Through the padding layer too.
        got = r.add(*unpad(pad(chunk, more=more)))
        results.append(got)
    assert results[:-1] == [None] * (len(parts) - 1)
    assert results[-1] == record
    assert r.buffered == 0


def test_reassembler_several_records() -> None:
    r = Reassembler()
    assert r.add(b"ab", True) is None
    assert r.add(b"cd", False) == b"abcd"
    assert r.add(b"x", False) == b"x"
    assert r.add(b"", False) == b""


def test_fragment_too_big() -> None:
    with pytest.raises(FrameError):
        fragment(b"x" * (MAX_RECORD + 1))
    with pytest.raises(FrameError):
        fragment(b"x" * 11, max_record=10)


def test_oversize_record_raises_before_growing() -> None:
    r = Reassembler(max_record=100)
    assert r.max_record == 100
    assert r.add(b"a" * 60, True) is None
    with pytest.raises(FrameError, match="exceeding the limit of 100"):
        r.add(b"b" * 41, True)
    assert r.buffered == 0  # discarded, never grew past the limit
    # Exactly the limit is fine.
    assert r.add(b"a" * 60, True) is None
    assert r.add(b"b" * 40, False) == b"a" * 60 + b"b" * 40


def test_oversize_default_limit() -> None:
    r = Reassembler()
    for chunk, _ in fragment(b"x" * MAX_RECORD):
        r.add(chunk, True)  # never finish the record
    assert r.buffered == MAX_RECORD
    with pytest.raises(FrameError):
        r.add(b"y", False)
    assert r.buffered == 0


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_reassembler_bad_limit(bad: object) -> None:
    with pytest.raises(ValueError):
        Reassembler(max_record=bad)  # type: ignore[arg-type]

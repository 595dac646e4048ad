"""Wire messages of file transfer (tags 40-59): round trips, strict checks, fuzzing."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messenger.protocol.wire import (
    FileAction,
    FileControl,
    FileHave,
    FileOffer,
    FileRequest,
    MessageType,
    WireError,
    decode_message,
    encode_message,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

roots = st.binary(min_size=32, max_size=32)
ids = st.binary(min_size=16, max_size=16)
pos63 = st.integers(1, 2**63 - 1)

offers = st.builds(
    FileOffer,
    msg_id=ids,
    conversation=ids,
    seq=pos63,
    lamport=pos63,
    sent_at_ms=st.integers(0, 2**63 - 1),
    root=roots,
    name=st.text(max_size=300),
    mime=st.text(max_size=255),
    size=st.integers(-(2**63), 2**63 - 1),  # semantic checks are the receiver's
    chunk_size=st.integers(0, 2**32 - 1),
    key=st.binary(min_size=32, max_size=32),
)
requests = st.builds(FileRequest, root=roots, ticket=ids, secret=roots)
controls = st.builds(
    FileControl, root=roots, action=st.sampled_from(FileAction), reason=st.text(max_size=200)
)
haves = st.builds(FileHave, root=roots)
file_messages = st.one_of(offers, requests, controls, haves)
FILE_TAGS = [MessageType.FILE_OFFER, MessageType.FILE_REQUEST, MessageType.FILE_CONTROL, 43]


def pack(obj: Any) -> bytes:
    out = msgpack.packb(obj, use_bin_type=True)
    assert isinstance(out, bytes)
    return out


@FAST
@given(file_messages)
def test_round_trip(message: Any) -> None:
    assert decode_message(encode_message(message)) == message


@pytest.mark.parametrize("strategy", [offers, requests, controls, haves])
@FAST
@given(data=st.data())
def test_round_trip_each_type(strategy: Any, data: st.DataObject) -> None:
    message = data.draw(strategy)
    assert decode_message(encode_message(message)) == message


def test_tags_are_in_the_files_range() -> None:
    assert {int(t) for t in FILE_TAGS} <= set(range(40, 60))


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ([b"r" * 31, b"t" * 16, b"s" * 32], "root"),
        ([b"r" * 32, b"t" * 17, b"s" * 32], "ticket"),
        ([b"r" * 32, b"t" * 16, "s" * 32], "secret"),
    ],
)
def test_bad_request_fields(fields: list[Any], error: str) -> None:
    with pytest.raises(WireError, match=error):
        decode_message(pack([int(MessageType.FILE_REQUEST), *fields]))


def test_bad_control_action_and_long_reason() -> None:
    with pytest.raises(WireError, match="file action"):
        decode_message(pack([int(MessageType.FILE_CONTROL), b"r" * 32, 99, ""]))
    with pytest.raises(WireError, match="reason"):
        decode_message(pack([int(MessageType.FILE_CONTROL), b"r" * 32, 1, "x" * 201]))


def test_offer_rejects_bool_size_and_out_of_range_chunk_size() -> None:
    base = [b"m" * 16, b"c" * 16, 1, 1, 0, b"r" * 32, "a.txt", "text/plain", 5, 65536, b"k" * 32]
    decode_message(pack([int(MessageType.FILE_OFFER), *base]))
    for index, value, error in ((8, True, "size"), (9, 2**32, "chunk_size"), (8, 2**63, "size")):
        bad = list(base)
        bad[index] = value
        with pytest.raises(WireError, match=error):
            decode_message(pack([int(MessageType.FILE_OFFER), *bad]))


leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.text(max_size=40),
    st.binary(max_size=70),
    roots,
    ids,
)


@FUZZ
@given(st.sampled_from([int(t) for t in FILE_TAGS]), st.lists(leaves, max_size=12))
def test_fuzz_tagged_arrays(tag: int, rest: list[Any]) -> None:
    try:
        message = decode_message(pack([tag, *rest]))
    except WireError:
        return
    assert decode_message(encode_message(message)) == message


@FUZZ
@given(file_messages, st.data())
def test_fuzz_mutations(message: Any, data: st.DataObject) -> None:
    encoded = bytearray(encode_message(message))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(encoded) - 1))
        encoded[i] = data.draw(st.integers(0, 255))
    try:
        decoded = decode_message(bytes(encoded))
    except WireError:
        return
    assert decode_message(encode_message(decoded)) == decoded

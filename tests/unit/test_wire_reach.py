"""ReachUpdate (tag 12, protocol.md §19.8): round trips, strict validation, fuzzing."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messenger.protocol.wire import (
    MAX_ADDRESS_CHARS,
    MAX_ADDRESSES,
    MessageType,
    ReachUpdate,
    WireError,
    decode_message,
    encode_message,
)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TAG = int(MessageType.REACH_UPDATE)
ONION = "a" * 56 + ".onion:9878"

hosts = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60
)
addresses = st.builds(lambda h, p: f"{h}:{p}", hosts, st.integers(1, 65535))
updates = st.builds(
    ReachUpdate, addresses=st.lists(addresses, min_size=1, max_size=MAX_ADDRESSES).map(tuple)
)


def pack(obj: Any) -> bytes:
    out = msgpack.packb(obj, use_bin_type=True)
    assert isinstance(out, bytes)
    return out


@FAST
@given(updates)
def test_round_trip(msg: ReachUpdate) -> None:
    data = encode_message(msg)
    decoded = decode_message(data)
    assert decoded == msg and type(decoded) is ReachUpdate
    assert isinstance(decoded.addresses, tuple)
    assert encode_message(decoded) == data


def test_layout() -> None:
    """[12, [address, ...]]: the tag, then one array of "host:port" strings."""
    data = encode_message(ReachUpdate((ONION, "192.168.1.2:40404")))
    assert msgpack.unpackb(data) == [12, [ONION, "192.168.1.2:40404"]]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ([[]], r"0 entries, expected 1\.\.16"),
        ([[ONION] * (MAX_ADDRESSES + 1)], r"17 entries"),
        ([ONION], "expected an array"),
        ([[b"host:1"]], "address"),
        ([["no-port"]], "host:port"),
        ([["host:0"]], "out of range"),
        ([["host:65536"]], "out of range"),
        ([["ho st:1"]], "printable ASCII"),
        ([["h" * MAX_ADDRESS_CHARS + ":1"]], "address"),
        ([[ONION], 1], "expected 1 fields, got 2"),
        ([], "expected 1 fields, got 0"),
    ],
)
def test_invalid_is_refused(fields: list[Any], error: str) -> None:
    with pytest.raises(WireError, match=error):
        decode_message(pack([TAG, *fields]))


def test_encoder_refuses_what_the_decoder_would() -> None:
    with pytest.raises(WireError):
        encode_message(ReachUpdate(()))
    with pytest.raises(WireError):
        encode_message(ReachUpdate(("not an address",)))


@FAST
@given(
    st.lists(
        st.one_of(
            addresses,
            st.text(max_size=30),
            st.binary(max_size=10),
            st.integers(-(2**63), 2**64 - 1),
        )
    )
)
def test_any_array_decodes_or_raises_wire_error(entries: list[Any]) -> None:
    try:
        msg = decode_message(pack([TAG, entries]))
    except WireError:
        return
    assert isinstance(msg, ReachUpdate)
    assert list(msg.addresses) == entries and 1 <= len(entries) <= MAX_ADDRESSES


@FAST
@given(st.binary(max_size=200))
def test_arbitrary_bytes_after_the_tag_only_raise_wire_error(tail: bytes) -> None:
    try:
        decode_message(b"\x92\x0c" + tail)
    except WireError:
        pass

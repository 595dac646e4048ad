"""Tests for messenger.protocol.wire: round trips, strict validation and fuzzing."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messenger.protocol import framing
from messenger.protocol.wire import (
    HELLO_TAG,
    MAX_ADDRESSES,
    MAX_BATCH_MESSAGES,
    MAX_BODY_BYTES,
    MAX_NAME_CHARS,
    MAX_RECEIPT_IDS,
    MSG_ID_LEN,
    PROTOCOL_VERSION,
    Batch,
    ChatMessage,
    Close,
    HandshakeKind,
    Hello,
    MessageTooLarge,
    MessageType,
    Ping,
    Pong,
    Preamble,
    ProfileUpdate,
    Receipt,
    ReceiptKind,
    RejectCode,
    Rejection,
    Typing,
    UnsupportedVersion,
    WireError,
    WireMessage,
    decode_hello,
    decode_message,
    encode_batch,
    encode_hello,
    encode_message,
    encode_preamble,
    encode_rejection,
    parse_preamble,
    parse_rejection,
)
from tests.wire_outcome import encode_outcome

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------

ids = st.binary(min_size=MSG_ID_LEN, max_size=MSG_ID_LEN)
pos63 = st.integers(min_value=1, max_value=2**63 - 1)
u63 = st.integers(min_value=0, max_value=2**63 - 1)
u64 = st.integers(min_value=0, max_value=2**64 - 1)
bodies = st.text(min_size=1, max_size=200) | st.sampled_from(
    ["x" * MAX_BODY_BYTES, "é" * (MAX_BODY_BYTES // 2), "😀" * (MAX_BODY_BYTES // 4)]
)
names = st.text(min_size=1, max_size=MAX_NAME_CHARS).filter(lambda s: s.strip() != "")
hosts = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60
)
addresses = st.builds(lambda h, p: f"{h}:{p}", hosts, st.integers(1, 65535))

chat_messages = st.builds(
    ChatMessage,
    msg_id=ids,
    conversation=ids,
    seq=pos63,
    lamport=pos63,
    sent_at_ms=u63,
    body=bodies,
)
receipts = st.builds(
    Receipt,
    kind=st.sampled_from(ReceiptKind),
    msg_ids=st.lists(ids, min_size=1, max_size=MAX_RECEIPT_IDS).map(tuple),
)
typings = st.builds(Typing, conversation=ids, active=st.booleans())
pings = st.builds(Ping, nonce=u64)
pongs = st.builds(Pong, nonce=u64)
closes = st.builds(Close, reason=st.text(max_size=200))
profile_updates = st.builds(ProfileUpdate, display_name=names)

batches = st.builds(
    Batch, messages=st.lists(chat_messages | receipts, min_size=1, max_size=20).map(tuple)
)

wire_messages: st.SearchStrategy[WireMessage] = st.one_of(
    chat_messages, receipts, typings, pings, pongs, closes, profile_updates, batches
)

hellos = st.builds(
    Hello,
    ed25519_public=st.binary(min_size=32, max_size=32),
    static_certificate=st.binary(min_size=64, max_size=64),
    display_name=names,
    listen_port=st.integers(0, 65535),
    addresses=st.lists(addresses, max_size=MAX_ADDRESSES).map(tuple),
)

preambles = st.one_of(
    st.builds(Preamble, kind=st.just(HandshakeKind.INVITE), invite_id=ids),
    st.builds(
        Preamble,
        kind=st.sampled_from([HandshakeKind.RECONNECT, HandshakeKind.NEARBY]),
        invite_id=st.none(),
    ),
)

msgpack_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.binary(max_size=80),
    ids,
    st.sampled_from([0, 1, 2, 3, 7, 8, 100, 2**63, 2**64 - 1, -1]),
)
msgpack_values = st.recursive(
    msgpack_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=8),
        st.dictionaries(st.text(max_size=5), children, max_size=3),
    ),
    max_leaves=20,
)
# Arrays whose first element is a plausible tag reach the per-field checks.
tagged_arrays = st.builds(
    lambda tag, rest: [tag, *rest],
    st.sampled_from([*list(MessageType), HELLO_TAG, 0, 8, 99, 101]).map(int),
    st.lists(msgpack_values, max_size=7),
)


def pack(obj: Any) -> bytes:
    out = msgpack.packb(obj, use_bin_type=True)
    assert isinstance(out, bytes)
    return out


def assert_only_wire_error(data: bytes) -> None:
    for fn in (decode_message, decode_hello, parse_preamble):
        try:
            fn(data)
        except WireError:
            pass
    try:
        parse_rejection(data)
    except WireError:
        pass


# --------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------


@FAST
@given(wire_messages)
def test_message_round_trip(msg: WireMessage) -> None:
    data = encode_message(msg)
    decoded = decode_message(data)
    assert decoded == msg
    assert type(decoded) is type(msg)
    assert encode_message(decoded) == data


@pytest.mark.parametrize(
    "strategy", [chat_messages, receipts, typings, pings, pongs, closes, profile_updates, batches]
)
def test_round_trip_each_type(strategy: st.SearchStrategy[WireMessage]) -> None:
    @settings(max_examples=40, deadline=None)
    @given(strategy)
    def check(msg: WireMessage) -> None:
        assert decode_message(encode_message(msg)) == msg

    check()


@FAST
@given(hellos)
def test_hello_round_trip(hello: Hello) -> None:
    data = encode_hello(hello)
    assert decode_hello(data) == hello
    with pytest.raises(WireError):
        decode_message(data)


@FAST
@given(preambles, st.binary(max_size=100))
def test_preamble_round_trip(p: Preamble, rest: bytes) -> None:
    data = encode_preamble(p)
    assert len(data) == (20 if p.kind is HandshakeKind.INVITE else 4)
    parsed, remaining = parse_preamble(data + rest)
    assert parsed == p
    assert remaining == rest


@pytest.mark.parametrize("code", list(RejectCode))
def test_rejection_round_trip(code: RejectCode) -> None:
    data = encode_rejection(Rejection(code))
    assert data == b"CX" + bytes([code])
    assert parse_rejection(data) == Rejection(code)


def test_receipt_kind_is_enum_after_decode() -> None:
    r = decode_message(encode_message(Receipt(ReceiptKind.READ, (b"a" * 16,))))
    assert isinstance(r, Receipt)
    assert r.kind is ReceiptKind.READ
    assert isinstance(r.msg_ids, tuple)


def test_largest_messages_fit_in_a_record() -> None:
    big_chat = ChatMessage(
        b"\xff" * 16, b"\xff" * 16, 2**63 - 1, 2**63 - 1, 2**63 - 1, "😀" * 16384
    )
    big_receipt = Receipt(ReceiptKind.READ, (b"\xff" * 16,) * MAX_RECEIPT_IDS)
    for msg in (big_chat, big_receipt):
        assert len(encode_message(msg)) <= framing.MAX_RECORD


# --------------------------------------------------------------------------
# The fast encoders of chat messages and receipts give the generic path's bytes and errors
# --------------------------------------------------------------------------

# Field values valid or not: the fast path must accept exactly what the generic checks
# accept, with the same bytes, and leave every doubtful value to them (same error).
any_ids = ids | st.binary(max_size=20) | st.text(max_size=2) | st.integers(-1, 1) | st.none()
any_counters = (
    pos63 | st.integers(-2, 2) | st.sampled_from([2**63 - 1, 2**63, 2**64]) | st.booleans()
)
any_bodies = (
    bodies
    | st.text(max_size=3)
    | st.sampled_from(["x" * (MAX_BODY_BYTES + 1), "é" * (MAX_BODY_BYTES // 2 + 1), " "])
    | st.binary(max_size=4)
    | st.integers()
)
any_chat_messages = st.builds(
    ChatMessage,
    msg_id=any_ids,
    conversation=any_ids,
    seq=any_counters,
    lamport=any_counters,
    sent_at_ms=any_counters | st.just(0),
    body=any_bodies,
)
any_receipts = st.builds(
    Receipt,
    kind=st.sampled_from(ReceiptKind) | st.integers(0, 3) | st.booleans() | st.none(),
    msg_ids=st.lists(any_ids, max_size=4).map(tuple)
    | st.lists(ids, min_size=1, max_size=4)  # a list, not a tuple
    | st.lists(ids, min_size=MAX_RECEIPT_IDS, max_size=MAX_RECEIPT_IDS + 1).map(tuple),
)


@FAST
@given(any_chat_messages | any_receipts | chat_messages | receipts)
def test_fast_encoders_match_the_generic_path(msg: WireMessage) -> None:
    # The generic path is private: it is what the fast one must equal.
    from messenger.protocol.wire.codec import _encode_checked

    assert encode_outcome(encode_message, msg) == encode_outcome(_encode_checked, msg)


def test_fast_encoders_take_the_common_case() -> None:
    """A plain chat message and receipt are packed by the fast path, not just passed on."""
    from messenger.protocol.wire.chat import encode_chat_fast, encode_receipt_fast

    chat = ChatMessage(b"i" * 16, b"c" * 16, 1, 2, 3, "hi")
    receipt = Receipt(ReceiptKind.DELIVERED, (b"i" * 16, b"j" * 16))
    assert encode_chat_fast(chat) == pack([1, b"i" * 16, b"c" * 16, 1, 2, 3, "hi"])
    assert encode_receipt_fast(receipt) == pack([2, 1, [b"i" * 16, b"j" * 16]])
    assert encode_chat_fast(ChatMessage(b"i" * 16, b"c" * 16, 1, 2, 3, "é")) is None  # not ASCII
    assert encode_receipt_fast(Receipt(ReceiptKind.READ, ())) is None


@FAST
@given(any_chat_messages | chat_messages)
def test_packing_chat_fields_matches_encode_message(msg: ChatMessage) -> None:
    """The sender's batch packs from its rows' fields (issue 15): the same bytes as
    encode_message when plainly valid, None (the checked path decides) otherwise."""
    from messenger.protocol.wire import pack_chat_fields

    fields = (msg.msg_id, msg.conversation, msg.seq, msg.lamport, msg.sent_at_ms, msg.body)
    packed = pack_chat_fields(*fields)  # type: ignore[arg-type]
    if packed is not None:
        assert packed == encode_message(msg)
    from messenger.protocol.wire.chat import encode_chat_fast

    assert (packed is None) == (encode_chat_fast(msg) is None)


def _receipt_per_id(f: list[object]) -> tuple[str, object]:
    """The receipt decoder as it was (a check per id), for the fast path to equal."""
    from messenger.protocol.wire.base import _array, _bytes, _enum

    try:
        ids = _array(f[1], "msg_ids", 1, MAX_RECEIPT_IDS)
        return (
            "receipt",
            Receipt(
                kind=_enum(f[0], "receipt kind", ReceiptKind),
                msg_ids=tuple(_bytes(i, "msg_ids entry", MSG_ID_LEN) for i in ids),
            ),
        )
    except WireError as exc:
        return (type(exc).__name__, str(exc))


@FAST
@given(
    st.sampled_from([0, 1, 2, 3, True, None, "1"]),
    st.lists(any_ids, max_size=6)
    | st.lists(ids, min_size=1, max_size=6)
    | st.lists(ids, min_size=MAX_RECEIPT_IDS, max_size=MAX_RECEIPT_IDS + 1).map(tuple)
    | st.lists(any_ids, min_size=1, max_size=3).map(lambda xs: [*xs, b"x" * MSG_ID_LEN]),
)
def test_receipt_decoder_checks_ids_as_before(kind: object, msg_ids: object) -> None:
    """A receipt's ids are checked in C loops when they are all 16-byte bytes: the same
    message or the same error as the per-id checks, whatever arrives."""
    from messenger.protocol.wire.chat import _make_receipt

    f: list[object] = [kind, msg_ids]
    try:
        got: tuple[str, object] = ("receipt", _make_receipt(f))
    except WireError as exc:
        got = (type(exc).__name__, str(exc))
    assert got == _receipt_per_id(f)


# --------------------------------------------------------------------------
# Explicit edge cases
# --------------------------------------------------------------------------


def chat(body: Any = "hi", **kw: Any) -> ChatMessage:
    fields: dict[str, Any] = dict(
        msg_id=b"m" * 16, conversation=b"c" * 16, seq=1, lamport=1, sent_at_ms=0, body=body
    )
    fields.update(kw)
    return ChatMessage(**fields)


def chat_fields(body: Any = "hi", **kw: Any) -> list[Any]:
    fields: dict[str, Any] = dict(
        msg_id=b"m" * 16, conversation=b"c" * 16, seq=1, lamport=1, sent_at_ms=0, body=body
    )
    fields.update(kw)
    return [int(MessageType.CHAT), *fields.values()]


def test_body_exactly_max_ok() -> None:
    msg = chat("a" * MAX_BODY_BYTES)
    assert decode_message(encode_message(msg)) == msg
    multibyte = chat("é" * (MAX_BODY_BYTES // 2))
    assert decode_message(encode_message(multibyte)) == multibyte


def test_body_over_max_rejected_on_encode() -> None:
    with pytest.raises(MessageTooLarge, match=r"65537 bytes.*65536"):
        encode_message(chat("a" * (MAX_BODY_BYTES + 1)))
    # Limit is on UTF-8 bytes, not characters.
    with pytest.raises(MessageTooLarge):
        encode_message(chat("é" * (MAX_BODY_BYTES // 2) + "a"))


def test_body_over_max_rejected_on_decode() -> None:
    data = pack(chat_fields("a" * (MAX_BODY_BYTES + 1)))
    with pytest.raises(MessageTooLarge, match="65537"):
        decode_message(data)
    # Far too large: still a WireError, never anything else.
    with pytest.raises(WireError):
        decode_message(pack(chat_fields("a" * (5 * MAX_BODY_BYTES))))


def test_message_too_large_is_wire_error_and_value_error() -> None:
    assert issubclass(MessageTooLarge, WireError)
    assert issubclass(WireError, ValueError)


def test_empty_body_rejected() -> None:
    with pytest.raises(WireError):
        encode_message(chat(""))
    with pytest.raises(WireError):
        decode_message(pack(chat_fields("")))


def test_unencodable_body_rejected() -> None:
    with pytest.raises(WireError, match="UTF-8"):
        encode_message(chat("\ud800"))


@pytest.mark.parametrize("field", ["seq", "lamport", "sent_at_ms"])
def test_bool_where_int_expected_rejected(field: str) -> None:
    with pytest.raises(WireError, match="expected int, got bool"):
        decode_message(pack(chat_fields(**{field: True})))
    with pytest.raises(WireError, match="expected int, got bool"):
        encode_message(chat(**{field: True}))


def test_bool_nonce_and_kind_rejected() -> None:
    with pytest.raises(WireError):
        decode_message(pack([int(MessageType.PING), True]))
    with pytest.raises(WireError):
        decode_message(pack([int(MessageType.RECEIPT), True, [b"x" * 16]]))
    with pytest.raises(WireError):
        decode_message(pack([True, 5]))  # bool as tag


def test_int_where_bool_expected_rejected() -> None:
    with pytest.raises(WireError, match="expected bool"):
        decode_message(pack([int(MessageType.TYPING), b"c" * 16, 1]))


def test_float_where_int_expected_rejected() -> None:
    with pytest.raises(WireError):
        decode_message(pack(chat_fields(seq=1.0)))


@pytest.mark.parametrize("length", [0, 15, 17, 32])
def test_wrong_id_length_rejected(length: int) -> None:
    with pytest.raises(WireError, match="16 bytes"):
        decode_message(pack(chat_fields(msg_id=b"x" * length)))
    with pytest.raises(WireError, match="16 bytes"):
        encode_message(chat(conversation=b"x" * length))
    with pytest.raises(WireError, match="16 bytes"):
        decode_message(pack([int(MessageType.RECEIPT), 1, [b"x" * 16, b"y" * length]]))
    with pytest.raises(WireError, match="16 bytes"):
        encode_message(Typing(b"x" * length, True))


def test_str_where_bytes_expected_rejected() -> None:
    with pytest.raises(WireError, match="expected bytes"):
        decode_message(pack(chat_fields(msg_id="m" * 16)))
    with pytest.raises(WireError, match="expected bytes"):
        encode_message(chat(msg_id=bytearray(16)))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", 0),
        ("seq", 2**63),
        ("lamport", 0),
        ("lamport", -1),
        ("sent_at_ms", -1),
        ("sent_at_ms", 2**63),
    ],
)
def test_int_ranges(field: str, value: int) -> None:
    with pytest.raises(WireError, match="out of range"):
        decode_message(pack(chat_fields(**{field: value})))
    with pytest.raises(WireError, match="out of range"):
        encode_message(chat(**{field: value}))


def test_nonce_range() -> None:
    assert decode_message(encode_message(Ping(2**64 - 1))) == Ping(2**64 - 1)
    assert decode_message(encode_message(Pong(0))) == Pong(0)
    with pytest.raises(WireError):
        encode_message(Ping(2**64))
    with pytest.raises(WireError):
        encode_message(Pong(-1))
    with pytest.raises(WireError):
        decode_message(pack([int(MessageType.PONG), -1]))


def test_wrong_field_count_rejected() -> None:
    good = chat_fields()
    with pytest.raises(WireError, match="expected 6 fields, got 5"):
        decode_message(pack(good[:-1]))
    with pytest.raises(WireError, match="expected 6 fields, got 7"):
        decode_message(pack([*good, 1]))
    with pytest.raises(WireError):
        decode_message(pack([int(MessageType.PING)]))


def test_unknown_tag_rejected() -> None:
    for tag in (0, 8, 99, HELLO_TAG, 2**64 - 1, -5):
        with pytest.raises(WireError, match="unknown message type"):
            decode_message(pack([tag, 1]))


def test_hello_tag_only_for_hello() -> None:
    with pytest.raises(WireError, match="tag"):
        decode_hello(encode_message(Ping(1)))


def test_non_array_top_level_rejected() -> None:
    objs: list[Any] = [1, "x", b"x", None, {}, [], True, 1.5]
    for obj in objs:
        with pytest.raises(WireError):
            decode_message(pack(obj))
        with pytest.raises(WireError):
            decode_hello(pack(obj))


def test_receipt_limits() -> None:
    ok = Receipt(ReceiptKind.DELIVERED, (b"i" * 16,) * MAX_RECEIPT_IDS)
    assert decode_message(encode_message(ok)) == ok
    with pytest.raises(WireError):
        encode_message(Receipt(ReceiptKind.DELIVERED, (b"i" * 16,) * (MAX_RECEIPT_IDS + 1)))
    with pytest.raises(WireError):
        decode_message(pack([int(MessageType.RECEIPT), 1, [b"i" * 16] * (MAX_RECEIPT_IDS + 1)]))
    with pytest.raises(WireError):
        encode_message(Receipt(ReceiptKind.READ, ()))
    with pytest.raises(WireError, match="unknown value 3"):
        decode_message(pack([int(MessageType.RECEIPT), 3, [b"i" * 16]]))
    with pytest.raises(WireError):
        decode_message(pack([int(MessageType.RECEIPT), 1, b"i" * 16]))


def test_close_reason_limit() -> None:
    assert decode_message(encode_message(Close(""))) == Close("")
    assert decode_message(encode_message(Close("r" * 200))) == Close("r" * 200)
    with pytest.raises(WireError):
        encode_message(Close("r" * 201))
    with pytest.raises(WireError):
        decode_message(pack([int(MessageType.CLOSE), "r" * 201]))


@pytest.mark.parametrize("name", ["", " ", "\t\n", "n" * (MAX_NAME_CHARS + 1)])
def test_bad_display_names(name: str) -> None:
    with pytest.raises(WireError):
        encode_message(ProfileUpdate(name))
    with pytest.raises(WireError):
        decode_message(pack([int(MessageType.PROFILE_UPDATE), name]))


def test_display_name_max_ok() -> None:
    name = "😀" * MAX_NAME_CHARS
    assert decode_message(encode_message(ProfileUpdate(name))) == ProfileUpdate(name)


def test_encode_rejects_non_messages() -> None:
    with pytest.raises(WireError):
        encode_message(object())  # type: ignore[arg-type]
    with pytest.raises(WireError):
        encode_message(Rejection(RejectCode.BUSY))  # type: ignore[arg-type]
    with pytest.raises(WireError):
        encode_hello(Ping(1))  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# Hello
# --------------------------------------------------------------------------


def hello(**kw: Any) -> Hello:
    fields: dict[str, Any] = dict(
        ed25519_public=b"p" * 32,
        static_certificate=b"s" * 64,
        display_name="Alice",
        listen_port=5000,
        addresses=("192.168.1.2:5000", "[fe80::1%eth0]:5000"),
    )
    fields.update(kw)
    return Hello(**fields)


def test_hello_ok() -> None:
    h = hello()
    assert decode_hello(encode_hello(h)) == h
    h0 = hello(listen_port=0, addresses=())
    assert decode_hello(encode_hello(h0)) == h0


@pytest.mark.parametrize(
    "kw",
    [
        {"ed25519_public": b"p" * 31},
        {"static_certificate": b"s" * 32},
        {"display_name": " "},
        {"display_name": "x" * 65},
        {"listen_port": 65536},
        {"listen_port": -1},
        {"listen_port": True},
        {"addresses": ("a:1",) * (MAX_ADDRESSES + 1)},
        {"addresses": ("nohost",)},
        {"addresses": (":5000",)},
        {"addresses": ("host:",)},
        {"addresses": ("host:0",)},
        {"addresses": ("host:65536",)},
        {"addresses": ("host:1e3",)},
        {"addresses": ("host:\u0661\u0662",)},  # Arabic-Indic digits
        {"addresses": ("ho st:80",)},
        {"addresses": ("h\x00:80",)},
        {"addresses": ("h" * 300 + ":1",)},
        {"addresses": (b"host:1",)},
        {"addresses": ["ok:1", 5]},
    ],
)
def test_hello_invalid(kw: dict[str, Any]) -> None:
    with pytest.raises(WireError):
        encode_hello(hello(**kw))
    raw = hello(**kw)
    fields = [
        HELLO_TAG,
        raw.ed25519_public,
        raw.static_certificate,
        raw.display_name,
        raw.listen_port,
        list(raw.addresses),
    ]
    with pytest.raises(WireError):
        decode_hello(pack(fields))


def test_hello_field_count() -> None:
    data = pack([HELLO_TAG, b"p" * 32, b"s" * 64, "A", 1])
    with pytest.raises(WireError, match="expected 5 fields"):
        decode_hello(data)


# --------------------------------------------------------------------------
# Preamble / rejection
# --------------------------------------------------------------------------


def test_preamble_layout() -> None:
    inv = b"I" * 16
    assert encode_preamble(Preamble(HandshakeKind.INVITE, inv)) == b"CW\x01\x01" + inv
    assert encode_preamble(Preamble(HandshakeKind.RECONNECT, None)) == b"CW\x01\x02"
    assert encode_preamble(Preamble(HandshakeKind.NEARBY, None)) == b"CW\x01\x03"


def test_preamble_encode_validation() -> None:
    with pytest.raises(WireError):
        encode_preamble(Preamble(HandshakeKind.INVITE, None))
    with pytest.raises(WireError):
        encode_preamble(Preamble(HandshakeKind.INVITE, b"short"))
    with pytest.raises(WireError):
        encode_preamble(Preamble(HandshakeKind.NEARBY, b"I" * 16))
    with pytest.raises(WireError):
        encode_preamble(Preamble(7, None))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"C",
        b"CW\x01",
        b"XW\x01\x02",
        b"cw\x01\x02",
        b"CW\x01\x00",
        b"CW\x01\x04",
        b"CW\x01\xff",
        b"CW\x01\x01" + b"I" * 15,
        b"CX\x01",
    ],
)
def test_parse_preamble_rejects(data: bytes) -> None:
    with pytest.raises(WireError):
        parse_preamble(data)


def test_parse_preamble_version() -> None:
    with pytest.raises(UnsupportedVersion) as info:
        parse_preamble(b"CW\x02\x02" + b"noise")
    assert info.value.version == 2
    assert isinstance(info.value, WireError)
    assert PROTOCOL_VERSION == 1


def test_parse_rejection() -> None:
    assert parse_rejection(b"CX\x04") == Rejection(RejectCode.VERSION)
    assert parse_rejection(b"CX") is None
    assert parse_rejection(b"CX\x01\x00") is None
    assert parse_rejection(b"CW\x01\x02") is None
    assert parse_rejection(b"") is None
    assert parse_rejection(b"CX" + b"\x00" * 31) is None  # a handshake message
    with pytest.raises(WireError, match="unknown reject code"):
        parse_rejection(b"CX\x00")
    with pytest.raises(WireError):
        parse_rejection(b"CX\x05")


def test_bytes_like_inputs() -> None:
    data = encode_message(Ping(3))
    assert decode_message(bytearray(data)) == Ping(3)  # type: ignore[arg-type]
    assert decode_message(memoryview(data)) == Ping(3)  # type: ignore[arg-type]
    with pytest.raises(WireError):
        decode_message("not bytes")  # type: ignore[arg-type]
    with pytest.raises(WireError):
        parse_preamble(None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# Hostile msgpack
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never-used byte
        b"\x91" * 100_000 + b"\x01",  # deep nesting
        b"\xdd\xff\xff\xff\xff",  # array32 claiming 4G entries
        b"\xdb\xff\xff\xff\xff",  # str32 claiming 4G bytes
        b"\xc6\xff\xff\xff\xff",  # bin32 claiming 4G bytes
        b"\xdf\xff\xff\xff\xff",  # map32 claiming 4G entries
        b"\xd4\x01\x00",  # fixext
        b"\xc7\x00\x05",  # ext8 of length 0
        b"\x92\x04\xd4\x01\x00",  # ext inside array
        b"\x92\x06\xa1\xff",  # invalid UTF-8
        b"\x92\x04\x01\x01",  # trailing data
        b"\x92\x04",  # truncated
        b"\x82\x01\x02\x03\x04",  # map with int keys
        b"\x81\xa1a\x01",  # map with str keys
        b"\x92\x04\x81\xa1a\x01",  # nested map
        b"\x92\x04\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",  # NaN nonce
        b"\x92\x04\xd3\x80\x00\x00\x00\x00\x00\x00\x00",  # int64 min nonce
        b"\x92\x04\xc0",  # nil nonce
        b"\x96" + b"\xc4\x10" + b"a" * 16,  # truncated chat
    ],
)
def test_hostile_inputs(data: bytes) -> None:
    with pytest.raises(WireError):
        decode_message(data)
    with pytest.raises(WireError):
        decode_hello(data)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    assert_only_wire_error(data)


@FUZZ
@given(msgpack_values)
def test_fuzz_msgpack_structures(obj: Any) -> None:
    assert_only_wire_error(pack(obj))


@FUZZ
@given(tagged_arrays)
def test_fuzz_tagged_arrays(obj: list[Any]) -> None:
    assert_only_wire_error(pack(obj))


@FUZZ
@given(
    st.one_of(
        wire_messages.map(encode_message),
        hellos.map(encode_hello),
        preambles.map(encode_preamble),
    ),
    st.data(),
)
def test_fuzz_mutations(data: bytes, draw: st.DataObject) -> None:
    op = draw.draw(st.sampled_from(["flip", "set", "truncate", "extend", "insert", "delete"]))
    buf = bytearray(data)
    if op == "flip":
        i = draw.draw(st.integers(0, len(buf) - 1))
        buf[i] ^= 1 << draw.draw(st.integers(0, 7))
    elif op == "set":
        i = draw.draw(st.integers(0, len(buf) - 1))
        buf[i] = draw.draw(st.integers(0, 255))
    elif op == "truncate":
        del buf[draw.draw(st.integers(0, len(buf) - 1)) :]
    elif op == "extend":
        buf += draw.draw(st.binary(min_size=1, max_size=20))
    elif op == "insert":
        i = draw.draw(st.integers(0, len(buf)))
        buf[i:i] = draw.draw(st.binary(min_size=1, max_size=4))
    else:
        i = draw.draw(st.integers(0, len(buf) - 1))
        del buf[i]
    mutated = bytes(buf)
    assert_only_wire_error(mutated)
    # Whatever decodes successfully re-encodes to a valid message.
    try:
        msg = decode_message(mutated)
    except WireError:
        return
    assert decode_message(encode_message(msg)) == msg


@FAST
@given(wire_messages)
def test_truncations_never_decode(msg: WireMessage) -> None:
    data = encode_message(msg)
    for cut in range(len(data) - 1, max(-1, len(data) - 40), -1):
        with pytest.raises(WireError):
            decode_message(data[:cut])


# --------------------------------------------------------------------------
# Batch (tag 11)
# --------------------------------------------------------------------------


@FAST
@given(st.lists(chat_messages | receipts, min_size=1, max_size=40))
def test_encode_batch_equals_encoding_a_batch(messages: list[ChatMessage | Receipt]) -> None:
    encoded = [encode_message(m) for m in messages]
    data = encode_batch(encoded)
    assert data == encode_message(Batch(tuple(messages)))
    assert decode_message(data) == Batch(tuple(messages))


@pytest.mark.parametrize("count", [1, 15, 16, 17, 255, MAX_BATCH_MESSAGES])
def test_batch_sizes_round_trip(count: int) -> None:
    messages = tuple(chat(f"m{i}", seq=i + 1) for i in range(count))
    data = encode_batch([encode_message(m) for m in messages])
    assert decode_message(data) == Batch(messages)


def test_batch_limits() -> None:
    with pytest.raises(WireError, match="expected 1"):
        encode_batch([])
    with pytest.raises(WireError):
        encode_message(Batch(()))
    too_many = [encode_message(chat())] * (MAX_BATCH_MESSAGES + 1)
    with pytest.raises(WireError):
        encode_batch(too_many)
    with pytest.raises(WireError):
        decode_message(
            pack([int(MessageType.BATCH), [chat_fields_tagged()] * (MAX_BATCH_MESSAGES + 1)])
        )
    with pytest.raises(WireError):
        decode_message(pack([int(MessageType.BATCH), []]))


def chat_fields_tagged() -> list[Any]:
    return [int(MessageType.CHAT), *chat_fields()]


@pytest.mark.parametrize(
    "entry",
    [
        [int(MessageType.PING), 1],  # not batchable
        [int(MessageType.CLOSE), "bye"],
        [int(MessageType.TYPING), b"C" * 16, True],
        [int(MessageType.BATCH), [[int(MessageType.CHAT), *["x"] * 6]]],  # nested
        [int(MessageType.CHAT), b"x" * 16],  # too few fields
        [int(MessageType.CHAT), *["x"] * 6],  # wrong field types
        [True, *["x"] * 6],  # bool is not a tag
        [],
        "not an array",
        7,
        None,
    ],
)
def test_bad_batch_entries_rejected(entry: Any) -> None:
    with pytest.raises(WireError):
        decode_message(pack([int(MessageType.BATCH), [chat_fields_tagged(), entry]]))


def test_batch_with_extra_field_rejected() -> None:
    with pytest.raises(WireError, match="fields"):
        decode_message(pack([int(MessageType.BATCH), [chat_fields_tagged()], 1]))


@FUZZ
@given(st.lists(tagged_arrays | msgpack_values, min_size=1, max_size=6))
def test_fuzz_batch_entries(entries: list[Any]) -> None:
    assert_only_wire_error(pack([int(MessageType.BATCH), entries]))

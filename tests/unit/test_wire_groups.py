"""Group wire messages (tags 20-24): hypothesis round trips, strict validation, fuzzing."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messenger.protocol import framing
from messenger.protocol.wire import (
    MAX_BODY_BYTES,
    MAX_GROUP_MARKS,
    MAX_GROUP_MEMBERS,
    MAX_GROUP_REMOVED,
    MAX_MEMBER_ADDRESSES,
    MAX_NAME_CHARS,
    Batch,
    GroupAck,
    GroupAttachment,
    GroupHave,
    GroupJoinRequest,
    GroupLeave,
    GroupMark,
    GroupMember,
    GroupMessage,
    GroupRemoved,
    GroupRoster,
    MessageTooLarge,
    MessageType,
    WireError,
    WireMessage,
    decode_group_attachment,
    decode_message,
    encode_batch,
    encode_group_attachment,
    encode_message,
    encode_with_signature,
)
from tests.wire_outcome import encode_outcome

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

GROUP_TAGS = [int(t) for t in MessageType if 20 <= t < 40]

ids = st.binary(min_size=16, max_size=16)
keys = st.binary(min_size=32, max_size=32)
sigs = st.binary(min_size=64, max_size=64)
pos63 = st.integers(min_value=1, max_value=2**63 - 1)
u63 = st.integers(min_value=0, max_value=2**63 - 1)
names = st.text(min_size=1, max_size=MAX_NAME_CHARS).filter(lambda s: s.strip() != "")
hosts = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40
)
addresses = st.builds(lambda h, p: f"{h}:{p}", hosts, st.integers(1, 65535))
bodies = st.text(min_size=1, max_size=200) | st.just("x" * MAX_BODY_BYTES)

members = st.builds(
    GroupMember,
    ed25519_public=keys,
    static_public=keys,
    static_certificate=sigs,
    discovery_key=keys,
    display_name=names,
    joined_epoch=pos63,
    addresses=st.lists(addresses, max_size=MAX_MEMBER_ADDRESSES).map(tuple),
)
removed = st.one_of(
    st.builds(GroupRemoved, ed25519_public=keys, last_seq=u63),  # as signed before issue 14
    st.builds(GroupRemoved, ed25519_public=keys, last_seq=u63, epoch=pos63, lamport=u63),
)
marks = st.builds(GroupMark, author=keys, seq=u63)
rosters = st.builds(
    GroupRoster,
    group_id=ids,
    epoch=pos63,
    name=names,
    signer=keys,
    admins=st.lists(keys, min_size=1, max_size=4).map(tuple),
    members=st.lists(members, min_size=1, max_size=4).map(tuple),
    removed=st.lists(removed, max_size=4).map(tuple),
    signature=sigs,
)
attachments = st.builds(
    GroupAttachment,
    root=keys,
    name=st.text(max_size=60),
    mime=st.text(max_size=40),
    size=st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1),
    chunk_size=st.integers(min_value=0, max_value=2**32 - 1),
    key=keys,
)
group_messages = st.builds(
    GroupMessage,
    group_id=ids,
    author=keys,
    epoch=pos63,
    seq=pos63,
    lamport=pos63,
    sent_at_ms=u63,
    body=bodies,
    signature=sigs,
    attachment=st.none() | attachments,
)
haves = st.builds(
    GroupHave,
    group_id=ids,
    epoch=u63,
    roster_hash=keys,
    marks=st.lists(marks, max_size=8).map(tuple),
)
acks = st.builds(GroupAck, group_id=ids, marks=st.lists(marks, max_size=8).map(tuple))
leaves = st.builds(GroupLeave, group_id=ids, member=keys, epoch=pos63, signature=sigs)
joins = st.builds(GroupJoinRequest, name=names)
group_wire: st.SearchStrategy[WireMessage] = st.one_of(
    rosters, group_messages, haves, acks, leaves, joins
)

msgpack_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.text(max_size=20),
    st.binary(max_size=70),
    keys,
    sigs,
    ids,
)
msgpack_values = st.recursive(
    msgpack_leaves, lambda children: st.lists(children, max_size=8), max_leaves=30
)
tagged = st.builds(
    lambda tag, rest: [tag, *rest],
    st.sampled_from(GROUP_TAGS),
    st.lists(msgpack_values, max_size=9),
)


def pack(obj: Any) -> bytes:
    out = msgpack.packb(obj, use_bin_type=True)
    assert isinstance(out, bytes)
    return out


@FAST
@given(group_wire)
def test_round_trip(msg: WireMessage) -> None:
    data = encode_message(msg)
    decoded = decode_message(data)
    assert decoded == msg
    assert encode_message(decoded) == data


@pytest.mark.parametrize("strategy", [rosters, group_messages, haves, acks, leaves, joins])
def test_round_trip_each_type(strategy: st.SearchStrategy[WireMessage]) -> None:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(strategy)
    def check(msg: WireMessage) -> None:
        assert decode_message(encode_message(msg)) == msg

    check()


def test_tags_are_in_the_group_range() -> None:
    assert GROUP_TAGS == [20, 21, 22, 23, 24, 25]


def test_join_request_needs_a_name() -> None:
    for bad in ("", "   ", "x" * (MAX_NAME_CHARS + 1)):
        with pytest.raises(WireError, match="group name"):
            encode_message(GroupJoinRequest(bad))
    with pytest.raises(WireError):
        decode_message(pack([25, 7]))


def _member(i: int, n_addresses: int = MAX_MEMBER_ADDRESSES) -> GroupMember:
    return GroupMember(
        bytes([i]) * 32,
        b"s" * 32,
        b"c" * 64,
        b"d" * 32,
        "N" * MAX_NAME_CHARS,
        2**62,
        tuple(f"{'h' * 290}:{65535 - j}" for j in range(n_addresses)),
    )


def _roster(**kw: Any) -> GroupRoster:
    fields: dict[str, Any] = dict(
        group_id=b"g" * 16,
        epoch=1,
        name="Lab",
        signer=b"a" * 32,
        admins=(b"a" * 32,),
        members=(_member(1),),
        removed=(),
        signature=b"s" * 64,
    )
    fields.update(kw)
    return GroupRoster(**fields)


def test_largest_roster_and_message_fit_in_a_record() -> None:
    roster = _roster(
        admins=tuple(bytes([i]) * 32 for i in range(MAX_GROUP_MEMBERS)),
        members=tuple(_member(i) for i in range(MAX_GROUP_MEMBERS)),
        removed=tuple(
            GroupRemoved(bytes([i]) * 32, 2**62, 2**62, 2**62) for i in range(MAX_GROUP_REMOVED)
        ),
    )
    have = GroupHave(b"g" * 16, 2**62, b"h" * 32, (GroupMark(b"a" * 32, 2**62),) * MAX_GROUP_MARKS)
    message = GroupMessage(b"g" * 16, b"a" * 32, 1, 1, 1, 0, "😀" * 16384, b"s" * 64)
    for msg in (roster, have, message):
        assert len(encode_message(msg)) <= framing.MAX_RECORD
        assert decode_message(encode_message(msg)) == msg


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"members": ()}, "members"),
        ({"admins": ()}, "admins"),
        ({"members": tuple(_member(i, 0) for i in range(MAX_GROUP_MEMBERS + 1))}, "members"),
        ({"removed": (GroupRemoved(b"r" * 32, 0),) * (MAX_GROUP_REMOVED + 1)}, "removed"),
        ({"epoch": 0}, "epoch"),
        ({"name": " "}, "group name"),
        ({"name": "x" * (MAX_NAME_CHARS + 1)}, "group name"),
        ({"group_id": b"g" * 15}, "group_id"),
        ({"signature": b"s" * 63}, "signature"),
        ({"admins": (b"a" * 31,)}, "admin"),
        ({"members": (dataclasses.replace(_member(1), joined_epoch=0),)}, "joined_epoch"),
        ({"members": (_member(1, MAX_MEMBER_ADDRESSES + 1),)}, "member addresses"),
        ({"members": (dataclasses.replace(_member(1), addresses=("nohost",)),)}, "member address"),
        ({"removed": (GroupRemoved(b"r" * 32, -1),)}, "last_seq"),
        ({"removed": (GroupRemoved(b"r" * 32, 1, 0, 1),)}, "removed epoch"),
        ({"removed": (GroupRemoved(b"r" * 32, 1, 2, -1),)}, "removed lamport"),
        ({"members": ("not a member",)}, "member"),
    ],
)
def test_invalid_rosters_rejected_both_ways(change: dict[str, Any], error: str) -> None:
    bad = _roster(**change)
    with pytest.raises(WireError, match=error):
        encode_message(bad)
    # The same fields packed by hand are refused by the decoder too.
    fields = [
        bad.group_id,
        bad.epoch,
        bad.name,
        bad.signer,
        list(bad.admins),
        [
            [
                m.ed25519_public,
                m.static_public,
                m.static_certificate,
                m.discovery_key,
                m.display_name,
                m.joined_epoch,
                list(m.addresses),
            ]
            if isinstance(m, GroupMember)
            else m
            for m in bad.members
        ],
        [
            [r.ed25519_public, r.last_seq, *([r.epoch, r.lamport] if r.epoch is not None else [])]
            for r in bad.removed
        ],
        bad.signature,
    ]
    with pytest.raises(WireError):
        decode_message(pack([int(MessageType.GROUP_ROSTER), *fields]))


def test_a_removed_entry_has_two_or_four_fields() -> None:
    good = _roster(removed=(GroupRemoved(b"r" * 32, 1, 2, 3),))
    raw = encode_message(good)
    assert decode_message(raw) == good
    three = msgpack.unpackb(raw)
    three[7] = [[b"r" * 32, 1, 2]]
    with pytest.raises(WireError, match="removed member"):
        decode_message(pack(three))


def test_group_message_limits() -> None:
    ok = GroupMessage(b"g" * 16, b"a" * 32, 1, 1, 1, 0, "x" * MAX_BODY_BYTES, b"s" * 64)
    assert decode_message(encode_message(ok)) == ok
    with pytest.raises(MessageTooLarge):
        encode_message(dataclasses.replace(ok, body="x" * (MAX_BODY_BYTES + 1)))
    for change in ({"seq": 0}, {"lamport": 0}, {"epoch": 0}, {"body": ""}, {"seq": True}):
        with pytest.raises(WireError):
            encode_message(dataclasses.replace(ok, **change))
    # A bool where an int belongs is refused by the decoder as well.
    raw = pack([21, b"g" * 16, b"a" * 32, True, 1, 1, 0, "x", b"s" * 64])
    with pytest.raises(WireError, match="epoch"):
        decode_message(raw)


def test_a_text_message_is_encoded_as_before_attachments_existed() -> None:
    """Eight fields without an attachment: signatures made before §16.9 still verify."""
    text = GroupMessage(b"g" * 16, b"a" * 32, 1, 2, 3, 4, "hi", b"s" * 64)
    assert msgpack.unpackb(encode_message(text)) == [
        21, b"g" * 16, b"a" * 32, 1, 2, 3, 4, "hi", b"s" * 64
    ]  # fmt: skip
    file = GroupAttachment(b"r" * 32, "a.pdf", "application/pdf", 10, 1 << 20, b"k" * 32)
    with_file = dataclasses.replace(text, attachment=file)
    fields = msgpack.unpackb(encode_message(with_file))
    assert len(fields) == 10 and fields[9] == [
        b"r" * 32,
        "a.pdf",
        "application/pdf",
        10,
        1 << 20,
        b"k" * 32,
    ]
    assert decode_message(encode_message(with_file)) == with_file
    assert decode_group_attachment(encode_group_attachment(file)) == file


@pytest.mark.parametrize(
    ("attachment", "error"),
    [
        ([b"r" * 31, "a", "b", 1, 1, b"k" * 32], "attachment root"),
        ([b"r" * 32, "a", "b", 1, 1], "attachment"),
        ([b"r" * 32, "a", "b", 1, 2**32 + 1, b"k" * 32], "chunk_size"),
        ([b"r" * 32, 5, "b", 1, 1, b"k" * 32], "name"),
        ([b"r" * 32, "a", "b", 1, 1, b"k" * 31], "key"),
        ("not an array", "attachment"),
    ],
)
def test_malformed_attachments_are_refused(attachment: Any, error: str) -> None:
    raw = pack([21, b"g" * 16, b"a" * 32, 1, 1, 1, 0, "x", b"s" * 64, attachment])
    with pytest.raises(WireError, match=error):
        decode_message(raw)
    with pytest.raises(WireError):
        decode_group_attachment(pack(attachment))


def test_a_group_message_has_eight_or_nine_fields() -> None:
    base = [21, b"g" * 16, b"a" * 32, 1, 1, 1, 0, "x", b"s" * 64]
    with pytest.raises(WireError, match="8 to 9 fields, got 7"):
        decode_message(pack(base[:-1]))
    with pytest.raises(WireError, match="8 to 9 fields, got 10"):
        decode_message(pack([*base, None, None]))
    with pytest.raises(WireError, match="attachment"):
        decode_message(pack([*base, None]))  # absent means absent, not nil


@FAST
@given(st.binary(max_size=200))
def test_attachment_decoder_raises_only_wire_errors(data: bytes) -> None:
    try:
        decode_group_attachment(data)
    except WireError:
        pass


def test_marks_limits() -> None:
    too_many = (GroupMark(b"a" * 32, 1),) * (MAX_GROUP_MARKS + 1)
    with pytest.raises(WireError, match="marks"):
        encode_message(GroupAck(b"g" * 16, too_many))
    with pytest.raises(WireError, match="mark"):
        decode_message(pack([23, b"g" * 16, [[b"a" * 32]]]))
    with pytest.raises(WireError, match="roster_hash"):
        encode_message(GroupHave(b"g" * 16, 0, b"h" * 31, ()))


@FUZZ
@given(tagged)
def test_fuzz_tagged_arrays(obj: list[Any]) -> None:
    try:
        msg = decode_message(pack(obj))
    except WireError:
        return
    assert decode_message(encode_message(msg)) == msg


@FUZZ
@given(group_wire.map(encode_message), st.data())
def test_fuzz_mutations(data: bytes, draw: st.DataObject) -> None:
    buf = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 3))):
        i = draw.draw(st.integers(0, len(buf) - 1))
        op = draw.draw(st.sampled_from(["flip", "set", "delete", "insert"]))
        if op == "flip":
            buf[i] ^= 1 << draw.draw(st.integers(0, 7))
        elif op == "set":
            buf[i] = draw.draw(st.integers(0, 255))
        elif op == "delete" and len(buf) > 1:
            del buf[i]
        else:
            buf[i:i] = draw.draw(st.binary(min_size=1, max_size=3))
    try:
        msg = decode_message(bytes(buf))
    except WireError:
        return
    assert decode_message(encode_message(msg)) == msg


@FAST
@given(group_wire)
def test_truncations_never_decode(msg: WireMessage) -> None:
    data = encode_message(msg)
    for cut in range(len(data) - 1, max(-1, len(data) - 40), -1):
        with pytest.raises(WireError):
            decode_message(data[:cut])


# --------------------------------------------------------------------------
# Group messages in a Batch (tag 11): a catch-up streams them by the hundred
# --------------------------------------------------------------------------


@FAST
@given(st.lists(group_messages, min_size=1, max_size=12))
def test_group_messages_round_trip_in_a_batch(messages: list[GroupMessage]) -> None:
    data = encode_batch([encode_message(m) for m in messages])
    assert data == encode_message(Batch(tuple(messages)))
    assert decode_message(data) == Batch(tuple(messages))


def test_a_batched_group_message_is_checked_like_a_lone_one() -> None:
    good = GroupMessage(b"g" * 16, b"a" * 32, 1, 1, 1, 0, "hi", b"s" * 64)
    fields = msgpack.unpackb(encode_message(good))
    assert len(fields) == 9  # the optional attachment is left out
    for entry in (fields[:-1], [*fields[:4], -1, *fields[5:]], [*fields, b"x"]):
        with pytest.raises(WireError):  # too few fields, a negative seq, one too many
            decode_message(msgpack.packb([int(MessageType.BATCH), [fields, entry]]))
    # Other group messages still travel alone.
    ack = msgpack.unpackb(encode_message(GroupAck(b"g" * 16, ())))
    with pytest.raises(WireError, match="cannot be batched"):
        decode_message(msgpack.packb([int(MessageType.BATCH), [fields, ack]]))


# --------------------------------------------------------------------------
# What a signature covers, rebuilt without validating again (encode_with_signature)
# --------------------------------------------------------------------------


@FAST
@given(st.one_of(group_messages, rosters, leaves), sigs)
def test_the_signed_bytes_of_a_decoded_message_match_a_validated_encoding(
    msg: GroupMessage | GroupRoster | GroupLeave, blank: bytes
) -> None:
    decoded = decode_message(encode_message(msg))
    slow = encode_message(dataclasses.replace(decoded, signature=blank))
    assert encode_with_signature(decoded, blank) == slow
    assert decode_message(slow) == dataclasses.replace(msg, signature=blank)


def test_only_a_signed_message_has_signed_bytes() -> None:
    with pytest.raises(WireError, match="carries no signature"):
        encode_with_signature(GroupAck(b"g" * 16, ()), b"s" * 64)
    with pytest.raises(WireError, match="not a wire message"):
        encode_with_signature(GroupMark(b"a" * 32, 1), b"s" * 64)  # type: ignore[arg-type]


# -- the fast encoding of GroupAck (every member acks every message it stores) ------------

any_keys = keys | st.binary(max_size=40) | st.text(max_size=2) | st.integers(-1, 1) | st.none()
any_seqs = (
    u63 | st.sampled_from([-1, 2**63, 2**64]) | st.booleans() | st.none() | st.text(max_size=1)
)
any_marks = (
    st.builds(GroupMark, author=any_keys, seq=any_seqs)
    | st.tuples(keys, u63)  # a mark that is not a GroupMark
    | st.none()
)
any_acks = st.builds(
    GroupAck,
    group_id=ids | st.binary(max_size=20) | st.text(max_size=2) | st.none(),
    marks=st.lists(any_marks, max_size=4).map(tuple)
    | st.lists(marks, max_size=3)  # a list, not a tuple
    | st.lists(marks, min_size=MAX_GROUP_MARKS, max_size=MAX_GROUP_MARKS + 1).map(tuple),
)


@FAST
@given(any_acks | acks)
def test_the_fast_ack_encoder_matches_the_generic_path(msg: GroupAck) -> None:
    # The generic path is private: it is what the fast one must equal, bytes and errors.
    from messenger.protocol.wire.codec import _encode_checked

    assert encode_outcome(encode_message, msg) == encode_outcome(_encode_checked, msg)


def test_the_fast_ack_encoder_takes_the_common_case() -> None:
    from messenger.protocol.wire.groups import encode_group_ack_fast

    ack = GroupAck(b"g" * 16, (GroupMark(b"a" * 32, 7), GroupMark(b"b" * 32, 0)))
    packed = encode_group_ack_fast(ack)
    assert packed == msgpack.packb(
        [int(MessageType.GROUP_ACK), b"g" * 16, [[b"a" * 32, 7], [b"b" * 32, 0]]],
        use_bin_type=True,
    )
    assert decode_message(packed) == ack
    assert encode_group_ack_fast(GroupAck(b"g" * 16, (GroupMark(b"a" * 32, True),))) is None


@FAST
@given(ids, keys, u63)
def test_a_lone_ack_encoded_from_its_values_is_the_messages_encoding(
    group_id: bytes, author: bytes, seq: int
) -> None:
    from messenger.protocol.wire import encode_group_ack_one

    ack = GroupAck(group_id, (GroupMark(author, seq),))
    packers: list[object] = []
    packb = msgpack.packb
    msgpack.packb = lambda *a, **k: (packers.append(a), packb(*a, **k))[1]
    try:
        lone = encode_group_ack_one(group_id, author, seq)
    finally:
        msgpack.packb = packb
    assert packers == []  # its Packer is made once, not one a call
    assert lone == encode_message(ack)
    assert decode_message(encode_group_ack_one(group_id, author, seq)) == ack


def _checked_marks(value: object) -> tuple[GroupMark, ...]:
    """What the decoder's marks were before their fast path: every mark by the checks."""
    from messenger.protocol.wire.base import _array
    from messenger.protocol.wire.groups import _make_mark_checked

    return tuple(_make_mark_checked(m) for m in _array(value, "marks", 0, MAX_GROUP_MARKS))


near_marks = st.lists(
    st.one_of(
        st.builds(lambda a, s: [a, s], keys, u63),
        st.builds(lambda a, s: [a, s], st.binary(max_size=40), st.integers(-5, 2**64 - 1)),
        st.builds(lambda a, s: [a, s], keys, st.booleans() | st.none() | st.text(max_size=3)),
        st.lists(msgpack_values, max_size=3),
        msgpack_values,
    ),
    max_size=MAX_GROUP_MARKS + 1,
)


@FUZZ
@given(st.binary(min_size=16, max_size=16), near_marks)
def test_the_fast_marks_decode_as_the_checked_ones(group_id: bytes, marks: list[Any]) -> None:
    """A GroupAck's marks (what the admin reads from every member for every message) are
    taken without the generic checks when plainly valid: the same message, or the same
    refusal, as the checked way gives."""
    data = pack([int(MessageType.GROUP_ACK), group_id, marks])
    try:
        expected: object = GroupAck(group_id, _checked_marks(marks))
    except WireError as exc:
        expected = str(exc)
    try:
        got: object = decode_message(data)
    except WireError as exc:
        got = str(exc)
    assert got == expected
    # And a mark that is a bool where an int goes (an int subclass) is refused.
    with pytest.raises(WireError, match="mark seq"):
        decode_message(pack([int(MessageType.GROUP_ACK), group_id, [[b"a" * 32, True]]]))


near_group_messages = st.one_of(
    st.tuples(ids, keys, u63, u63, u63, u63, st.text(max_size=5), sigs).map(list),
    st.lists(
        st.sampled_from([b"g" * 16, b"a" * 32, 1, 0, 2**63, -1, True, "", "x", b"s" * 64])
        | msgpack_values,
        min_size=8,
        max_size=9,
    ),
)


@FUZZ
@given(near_group_messages)
def test_the_fast_group_message_decode_is_the_checked_one(fields: list[Any]) -> None:
    """A group message (every member decodes every one) is taken without the generic
    checks when plainly valid: the same message, or the same refusal, as the checked way."""
    from messenger.protocol.wire.groups import _make_group_message_checked

    def outcome(make: Callable[[list[Any]], object]) -> object:
        try:
            return make(list(fields))
        except WireError as exc:
            return (type(exc).__name__, str(exc))

    assert outcome(lambda f: decode_message(pack([21, *f]))) == outcome(_make_group_message_checked)


def test_the_fast_group_message_decode_takes_a_text_message_and_refuses_a_bad_body(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from messenger.protocol.wire import groups

    checks: list[str] = []
    for name in ("_int", "_bytes"):  # the generic checks, counted
        check = getattr(groups, name)
        monkeypatch.setattr(
            groups, name, lambda *a, _c=check, _n=name: (checks.append(_n), _c(*a))[1]
        )
    fields = [b"g" * 16, b"a" * 32, 1, 2, 3, 4, "hello", b"s" * 64]
    assert decode_message(pack([21, *fields])) == GroupMessage(*fields)  # type: ignore[arg-type]
    assert checks == []  # plainly valid: one test per field, no generic check
    with pytest.raises(WireError, match="body: must not be empty"):
        decode_message(pack([21, *fields[:6], "", fields[7]]))
    with pytest.raises(WireError, match="epoch"):
        decode_message(pack([21, fields[0], fields[1], True, *fields[3:]]))

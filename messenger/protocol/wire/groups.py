"""The group messages (tags 20-25, docs/protocol.md §16.1) and the records nested in them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgpack

from .base import (
    _INT63,
    DISCOVERY_KEY_LEN,
    ED25519_PUBLIC_LEN,
    ED25519_SIGNATURE_LEN,
    FILE_KEY_LEN,
    FILE_ROOT_LEN,
    GROUP_HASH_LEN,
    MAX_FILE_NAME_CHARS,
    MAX_GROUP_MARKS,
    MAX_GROUP_MEMBERS,
    MAX_GROUP_REMOVED,
    MAX_MEMBER_ADDRESSES,
    MAX_MIME_CHARS,
    MSG_ID_LEN,
    X25519_PUBLIC_LEN,
    MessageType,
    WireError,
    _array,
    _body,
    _bytes,
    _count,
    _display_name,
    _fields_of,
    _int,
    _str,
    check_address,
)


@dataclass(frozen=True, slots=True)
class GroupMember:
    """One member as the signed roster introduces it: enough to open a session with it
    (static key + certificate), find it on the LAN (discovery key, addresses) and check its
    messages (identity key)."""

    ed25519_public: bytes
    static_public: bytes
    static_certificate: bytes
    discovery_key: bytes
    display_name: str
    joined_epoch: int
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GroupRemoved:
    """A removed member, the last of its messages that stays valid (`last_seq`), and the
    roster epoch and Lamport time of its removal: nothing it signed at or after that
    epoch, or later than that Lamport time, is accepted. Entries of rosters signed before
    these two existed have neither (None) and are encoded as they were signed."""

    ed25519_public: bytes
    last_seq: int
    epoch: int | None = None
    lamport: int | None = None


@dataclass(frozen=True, slots=True)
class GroupRoster:
    """A whole roster at `epoch`, signed by `signer` (an admin of the previous roster)."""

    group_id: bytes
    epoch: int
    name: str
    signer: bytes
    admins: tuple[bytes, ...]
    members: tuple[GroupMember, ...]
    removed: tuple[GroupRemoved, ...]
    signature: bytes


@dataclass(frozen=True, slots=True)
class GroupMessage:
    """A group message, signed by its author so any member can pass it on."""

    group_id: bytes
    author: bytes
    epoch: int
    seq: int
    lamport: int
    sent_at_ms: int
    body: str
    signature: bytes
    # A file shared in the group (§16.9). Absent from the encoding when None, so a text
    # message is encoded (and signed) exactly as before attachments existed.
    attachment: GroupAttachment | None = None


@dataclass(frozen=True, slots=True)
class GroupAttachment:
    """A file offered in a group: what FileOffer carries beyond the chat message. Checked
    by each receiver like a 1:1 offer; a bad one leaves the message as text."""

    root: bytes
    name: str
    mime: str
    size: int
    chunk_size: int
    key: bytes


@dataclass(frozen=True, slots=True)
class GroupMark:
    """ "I hold every message of `author` up to `seq`" (a contiguous high-water mark)."""

    author: bytes
    seq: int


@dataclass(frozen=True, slots=True)
class GroupHave:
    """Catch-up: the sender's roster version and high-water marks for one group."""

    group_id: bytes
    epoch: int
    roster_hash: bytes
    marks: tuple[GroupMark, ...]


@dataclass(frozen=True, slots=True)
class GroupAck:
    """Messages just stored: the sender's new high-water marks for the authors concerned."""

    group_id: bytes
    marks: tuple[GroupMark, ...]


@dataclass(frozen=True, slots=True)
class GroupLeave:
    """A member leaves; signed by that member, acted on by an admin."""

    group_id: bytes
    member: bytes
    epoch: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class GroupJoinRequest:
    """Someone who paired with us nearby asks to join the open group they saw announced
    (by name: the announcement carries nothing else)."""

    name: str


# Per-message field validation.  Each _make_* takes the raw field values (from the
# decoder or from a dataclass being encoded) and returns a validated message.


def _make_member(value: object) -> GroupMember:
    f = _fields_of(value, "member", _count(GroupMember))
    addrs = _array(f[6], "member addresses", 0, MAX_MEMBER_ADDRESSES)
    return GroupMember(
        ed25519_public=_bytes(f[0], "member ed25519_public", ED25519_PUBLIC_LEN),
        static_public=_bytes(f[1], "member static_public", X25519_PUBLIC_LEN),
        static_certificate=_bytes(f[2], "member static_certificate", ED25519_SIGNATURE_LEN),
        discovery_key=_bytes(f[3], "member discovery_key", DISCOVERY_KEY_LEN),
        display_name=_display_name(f[4], "member display_name"),
        joined_epoch=_int(f[5], "member joined_epoch", 1, _INT63),
        addresses=tuple(check_address(a, "member address") for a in addrs),
    )


def _make_removed(value: object) -> GroupRemoved:
    f = _array(value, "removed member", 2, 4)
    if len(f) == 3:
        raise WireError("removed member: 2 or 4 fields")
    return GroupRemoved(
        ed25519_public=_bytes(f[0], "removed ed25519_public", ED25519_PUBLIC_LEN),
        last_seq=_int(f[1], "removed last_seq", 0, _INT63),
        epoch=_int(f[2], "removed epoch", 1, _INT63) if len(f) == 4 else None,
        lamport=_int(f[3], "removed lamport", 0, _INT63) if len(f) == 4 else None,
    )


_MARK_FIELDS: Final = _count(GroupMark)  # once: dataclasses.fields is ~1 us a call


def _make_mark_checked(value: object) -> GroupMark:
    f = _fields_of(value, "mark", _MARK_FIELDS)
    return GroupMark(
        author=_bytes(f[0], "mark author", ED25519_PUBLIC_LEN),
        seq=_int(f[1], "mark seq", 0, _INT63),
    )


def _marks(value: object) -> tuple[GroupMark, ...]:
    """The marks of a GroupHave or GroupAck. The admin of a group reads an ack from every
    member for every message it sends: a plainly valid mark is taken here at once (the
    generic checks cost ~1.5 us a mark), anything else goes the checked way, which
    accepts the same and says what is wrong (a property test compares the two)."""
    marks = _array(value, "marks", 0, MAX_GROUP_MARKS)
    made = []
    for m in marks:
        if type(m) is list and len(m) == _MARK_FIELDS:
            author, seq = m
            if (
                type(author) is bytes
                and len(author) == ED25519_PUBLIC_LEN
                and type(seq) is int
                and 0 <= seq < _INT63
            ):
                made.append(GroupMark(author, seq))
                continue
        made.append(_make_mark_checked(m))
    return tuple(made)


def _make_group_roster(f: list[object]) -> GroupRoster:
    admins = _array(f[4], "admins", 1, MAX_GROUP_MEMBERS)
    members = _array(f[5], "members", 1, MAX_GROUP_MEMBERS)
    removed = _array(f[6], "removed", 0, MAX_GROUP_REMOVED)
    return GroupRoster(
        group_id=_bytes(f[0], "group_id", MSG_ID_LEN),
        epoch=_int(f[1], "epoch", 1, _INT63),
        name=_display_name(f[2], "group name"),
        signer=_bytes(f[3], "signer", ED25519_PUBLIC_LEN),
        admins=tuple(_bytes(a, "admin", ED25519_PUBLIC_LEN) for a in admins),
        members=tuple(_make_member(m) for m in members),
        removed=tuple(_make_removed(r) for r in removed),
        signature=_bytes(f[7], "signature", ED25519_SIGNATURE_LEN),
    )


def _make_group_attachment(value: object) -> GroupAttachment:
    f = _fields_of(value, "attachment", _count(GroupAttachment))
    return GroupAttachment(
        root=_bytes(f[0], "attachment root", FILE_ROOT_LEN),
        name=_str(f[1], "attachment name", MAX_FILE_NAME_CHARS),
        mime=_str(f[2], "attachment mime", MAX_MIME_CHARS),
        # Any int64, as in FileOffer: an implausible size is each receiver's to refuse.
        size=_int(f[3], "attachment size", -_INT63, _INT63),
        chunk_size=_int(f[4], "attachment chunk_size", 0, 2**32),
        key=_bytes(f[5], "attachment key", FILE_KEY_LEN),
    )


def _make_group_message(f: list[object]) -> GroupMessage:
    """Every member decodes every group message: a plainly valid text message is taken
    here with one test per field (the generic checks are a call each, ~3 us a message);
    anything else goes the checked way, which accepts the same and says what is wrong
    (a property test compares the two). The body last, by its own check: when all the
    rest is valid its error is the first the checked way reports too."""
    if len(f) == _TEXT_MESSAGE_FIELDS:
        group_id, author, epoch, seq, lamport, sent_at_ms, body, signature = f
        if (
            type(group_id) is bytes
            and len(group_id) == MSG_ID_LEN
            and type(author) is bytes
            and len(author) == ED25519_PUBLIC_LEN
            and type(epoch) is int
            and 1 <= epoch < _INT63
            and type(seq) is int
            and 1 <= seq < _INT63
            and type(lamport) is int
            and 1 <= lamport < _INT63
            and type(sent_at_ms) is int
            and 0 <= sent_at_ms < _INT63
            and type(signature) is bytes
            and len(signature) == ED25519_SIGNATURE_LEN
        ):
            return GroupMessage(
                group_id, author, epoch, seq, lamport, sent_at_ms, _body(body), signature
            )
    return _make_group_message_checked(f)


_TEXT_MESSAGE_FIELDS: Final = 8  # a GroupMessage without its optional attachment


def _make_group_message_checked(f: list[object]) -> GroupMessage:
    return GroupMessage(
        group_id=_bytes(f[0], "group_id", MSG_ID_LEN),
        author=_bytes(f[1], "author", ED25519_PUBLIC_LEN),
        epoch=_int(f[2], "epoch", 1, _INT63),
        seq=_int(f[3], "seq", 1, _INT63),
        lamport=_int(f[4], "lamport", 1, _INT63),
        sent_at_ms=_int(f[5], "sent_at_ms", 0, _INT63),
        body=_body(f[6]),
        signature=_bytes(f[7], "signature", ED25519_SIGNATURE_LEN),
        attachment=_make_group_attachment(f[8]) if len(f) > 8 else None,
    )


def _make_group_have(f: list[object]) -> GroupHave:
    return GroupHave(
        group_id=_bytes(f[0], "group_id", MSG_ID_LEN),
        epoch=_int(f[1], "epoch", 0, _INT63),
        roster_hash=_bytes(f[2], "roster_hash", GROUP_HASH_LEN),
        marks=_marks(f[3]),
    )


def _make_group_ack(f: list[object]) -> GroupAck:
    return GroupAck(group_id=_bytes(f[0], "group_id", MSG_ID_LEN), marks=_marks(f[1]))


# Every member acknowledges every group message it stores (codec.encode_message tries
# this first): the generic field walk and validated copy cost ~7 us of an ack, this ~2.
_GROUP_ACK_TAG: Final = int(MessageType.GROUP_ACK)


def encode_group_ack_fast(msg: GroupAck) -> bytes | None:
    """A plainly valid GroupAck packed at once; None when in doubt, for the generic path
    to check and report."""
    group_id, marks = msg.group_id, msg.marks
    if not (
        type(group_id) is bytes
        and len(group_id) == MSG_ID_LEN
        and type(marks) is tuple
        and len(marks) <= MAX_GROUP_MARKS
    ):
        return None
    fields = []
    for mark in marks:
        if type(mark) is not GroupMark:
            return None
        author, seq = mark.author, mark.seq
        if not (
            type(author) is bytes
            and len(author) == ED25519_PUBLIC_LEN
            and type(seq) is int
            and 0 <= seq < _INT63
        ):
            return None
        fields.append((author, seq))
    packed = msgpack.packb((_GROUP_ACK_TAG, group_id, fields), use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


def encode_group_ack_one(group_id: bytes, author: bytes, seq: int) -> bytes:
    """encode_message(GroupAck(group_id, (GroupMark(author, seq),))) for values already
    checked (a stored message's group and author, our mark of it): a member acks each
    message it stores as it arrives, and the ack's objects were built only to be walked
    and checked again (a property test compares the two)."""
    packed = _ACK_PACKER.pack((_GROUP_ACK_TAG, group_id, ((author, seq),)))
    assert isinstance(packed, bytes)
    return packed


# One Packer for the acks instead of one per call (msgpack.packb makes one). Safe from
# any thread: pack() of bytes, ints and tuples runs in C under the GIL, calling no
# Python code, and (autoreset) returns its bytes and empties its buffer in that call.
_ACK_PACKER: Final = msgpack.Packer(use_bin_type=True)


def _make_group_leave(f: list[object]) -> GroupLeave:
    return GroupLeave(
        group_id=_bytes(f[0], "group_id", MSG_ID_LEN),
        member=_bytes(f[1], "member", ED25519_PUBLIC_LEN),
        epoch=_int(f[2], "epoch", 1, _INT63),
        signature=_bytes(f[3], "signature", ED25519_SIGNATURE_LEN),
    )


def _make_group_join_request(f: list[object]) -> GroupJoinRequest:
    return GroupJoinRequest(name=_display_name(f[0], "group name"))

"""The codec: the tag table, messages to and from msgpack arrays (field order from the
dataclasses, written once), and the public encode/decode functions."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Final, TypeAlias

import msgpack

from .base import (
    _MAX_ARRAY_LEN,
    _MAX_BIN_LEN,
    _MAX_STR_LEN,
    HELLO_TAG,
    MAX_BATCH_MESSAGES,
    MessageType,
    WireError,
    _array,
    _count,
)
from .chat import (
    Batch,
    ChatMessage,
    Close,
    DiscoveryKey,
    PairAccept,
    Ping,
    Pong,
    ProfileUpdate,
    ReachUpdate,
    Receipt,
    Typing,
    _make_chat,
    _make_close,
    _make_discovery_key,
    _make_pair_accept,
    _make_ping,
    _make_pong,
    _make_profile_update,
    _make_reach_update,
    _make_receipt,
    _make_typing,
    encode_chat_fast,
    encode_receipt_fast,
)
from .files import (
    FileControl,
    FileHave,
    FileOffer,
    FileRequest,
    _make_file_control,
    _make_file_have,
    _make_file_offer,
    _make_file_request,
)
from .groups import (
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
    _make_group_ack,
    _make_group_attachment,
    _make_group_have,
    _make_group_join_request,
    _make_group_leave,
    _make_group_message,
    _make_group_roster,
    encode_group_ack_fast,
)
from .handshake import Hello, _make_hello

WireMessage: TypeAlias = (
    ChatMessage
    | Receipt
    | Typing
    | Ping
    | Pong
    | Close
    | ProfileUpdate
    | DiscoveryKey
    | PairAccept
    | Batch
    | ReachUpdate
    | GroupRoster
    | GroupMessage
    | GroupHave
    | GroupAck
    | GroupLeave
    | GroupJoinRequest
    | FileOffer
    | FileRequest
    | FileControl
    | FileHave
)


def _make_batch(f: list[object]) -> Batch:
    entries = _array(f[0], "batch", 1, MAX_BATCH_MESSAGES)
    messages: list[ChatMessage | Receipt | GroupMessage] = []
    for entry in entries:
        if not isinstance(entry, list | tuple) or not entry or type(entry[0]) is not int:
            raise WireError("batch entry: expected a message array with an int type tag")
        tag = entry[0]
        if tag not in _BATCHABLE_TAGS:
            raise WireError(f"batch entry: message type tag {tag} cannot be batched")
        cls, count, make = _DECODERS[tag]
        fewest = _MIN_FIELDS.get(tag, count)
        if not fewest <= len(entry) - 1 <= count:
            raise WireError(
                f"batch entry {cls.__name__}: expected {count} fields, got {len(entry) - 1}"
            )
        message = make(entry[1:])  # type: ignore[arg-type]
        assert isinstance(message, ChatMessage | Receipt | GroupMessage)
        messages.append(message)
    return Batch(messages=tuple(messages))


_Maker: TypeAlias = Callable[[list[object]], WireMessage]
# tag -> (class, validator); the field count comes from the class
_MESSAGES: Final[dict[int, tuple[type[WireMessage], _Maker]]] = {
    MessageType.CHAT: (ChatMessage, _make_chat),
    MessageType.RECEIPT: (Receipt, _make_receipt),
    MessageType.TYPING: (Typing, _make_typing),
    MessageType.PING: (Ping, _make_ping),
    MessageType.PONG: (Pong, _make_pong),
    MessageType.CLOSE: (Close, _make_close),
    MessageType.PROFILE_UPDATE: (ProfileUpdate, _make_profile_update),
    MessageType.DISCOVERY_KEY: (DiscoveryKey, _make_discovery_key),
    MessageType.PAIR_ACCEPT: (PairAccept, _make_pair_accept),
    MessageType.BATCH: (Batch, _make_batch),
    MessageType.REACH_UPDATE: (ReachUpdate, _make_reach_update),
    MessageType.GROUP_ROSTER: (GroupRoster, _make_group_roster),
    MessageType.GROUP_MESSAGE: (GroupMessage, _make_group_message),
    MessageType.GROUP_HAVE: (GroupHave, _make_group_have),
    MessageType.GROUP_ACK: (GroupAck, _make_group_ack),
    MessageType.GROUP_LEAVE: (GroupLeave, _make_group_leave),
    MessageType.GROUP_JOIN_REQUEST: (GroupJoinRequest, _make_group_join_request),
    MessageType.FILE_OFFER: (FileOffer, _make_file_offer),
    MessageType.FILE_REQUEST: (FileRequest, _make_file_request),
    MessageType.FILE_CONTROL: (FileControl, _make_file_control),
    MessageType.FILE_HAVE: (FileHave, _make_file_have),
}
_DECODERS: Final[dict[int, tuple[type[WireMessage], int, _Maker]]] = {
    tag: (cls, _count(cls), make) for tag, (cls, make) in _MESSAGES.items()
}
# Messages whose last fields are optional: tag -> fewest fields.
_MIN_FIELDS: Final[dict[int, int]] = {MessageType.GROUP_MESSAGE: 8}
# What a Batch may carry: the messages that come in bursts.
_BATCHABLE_TAGS: Final = frozenset(
    {MessageType.CHAT, MessageType.RECEIPT, MessageType.GROUP_MESSAGE}
)
BATCHABLE: Final = (ChatMessage, Receipt, GroupMessage)
_TAGS: Final[dict[type[WireMessage], int]] = {cls: tag for tag, (cls, _, _) in _DECODERS.items()}
_HELLO_FIELDS: Final = len(dataclasses.fields(Hello))
# Records nested inside messages travel as arrays of their fields, in field order.
_NESTED: Final = (GroupMember, GroupRemoved, GroupMark, GroupAttachment)


def _item(value: object) -> object:
    """An element of an array field: a nested record or a batched message becomes its
    array; anything else is left as it is, for the validator to reject."""
    if isinstance(value, _NESTED):
        return _fields(value)
    if type(value) in _TAGS:
        return _tag_and_fields(value)
    return value


# Field values msgpack takes as they are (the hot path of every message: no isinstance
# chain for these).
_PLAIN: Final = frozenset({bytes, str, int, bool, type(None)})


def _value(value: object) -> object:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, tuple | list):
        return [_item(v) for v in value]
    if isinstance(value, _NESTED):
        return _fields(value)
    return value


# Per class: its field names and, for each, whether its default is None (a trailing
# optional field). dataclasses.fields() builds a new tuple on every call; every message
# sent went through it twice.
_SPECS: dict[type, tuple[tuple[str, ...], tuple[bool, ...]]] = {}


def _spec(cls: type) -> tuple[tuple[str, ...], tuple[bool, ...]]:
    specs = dataclasses.fields(cls)
    spec = (tuple(f.name for f in specs), tuple(f.default is None for f in specs))
    _SPECS[cls] = spec
    return spec


def _fields(msg: object) -> list[object]:
    """A message (or nested record) as the array msgpack carries: its dataclass fields in
    declaration order, so the order is written once, in the class. A trailing optional
    field left at None is omitted (GroupMessage.attachment)."""
    names, optional = _SPECS.get(type(msg)) or _spec(type(msg))
    values = [getattr(msg, name) for name in names]
    while values and values[-1] is None and optional[len(values) - 1]:
        values.pop()
    return [_value(v) for v in values]


def _tag_and_fields(msg: object) -> object:
    """A batch entry as the decoder sees it: [tag, field, ...] (anything else is left as
    it is, for the validator to reject)."""
    tag = _TAGS.get(type(msg))  # type: ignore[arg-type]
    if tag is None:
        return msg
    fields = _fields(msg)
    if isinstance(msg, Receipt) and isinstance(msg.kind, int):
        fields[0] = int(msg.kind)
    return [int(tag), *fields]


def _pack(tag: int, validated: WireMessage | Hello) -> bytes:
    fields = _fields(validated)
    if isinstance(validated, Receipt):
        fields[0] = int(validated.kind)
    elif isinstance(validated, FileControl):
        fields[1] = int(validated.action)
    try:
        packed = msgpack.packb([tag, *fields], use_bin_type=True)
    except Exception as exc:  # defensive: validation should make this unreachable
        raise WireError(f"cannot encode {type(validated).__name__}: {exc}") from exc
    assert isinstance(packed, bytes)
    return packed


def _unpack(data: bytes, what: str) -> list[object]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireError(f"{what}: expected bytes, got {type(data).__name__}")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_bin_len=_MAX_BIN_LEN,
            max_str_len=_MAX_STR_LEN,
            max_array_len=_MAX_ARRAY_LEN,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises many types (incl. UnicodeDecodeError)
        raise WireError(f"{what}: not valid msgpack ({type(exc).__name__}: {exc})") from None
    if type(obj) is not list:
        raise WireError(f"{what}: expected a msgpack array, got {type(obj).__name__}")
    if not obj:
        raise WireError(f"{what}: empty array")
    if type(obj[0]) is not int:
        raise WireError(f"{what}: type tag must be an int, got {type(obj[0]).__name__}")
    return obj


# The messages sent by the thousand skip the generic field walk (which builds the field
# list twice and a validated copy of the message: 3.4 us a chat message, 1.0 us here); the
# bytes are the generic path's (a property test compares the two).
_FAST_ENCODERS: Final[dict[type, Callable[[Any], bytes | None]]] = {
    ChatMessage: encode_chat_fast,
    Receipt: encode_receipt_fast,
    GroupAck: encode_group_ack_fast,
}


def encode_message(msg: WireMessage) -> bytes:
    """Validate and encode a transport message.

    Raises :class:`WireError` (or :class:`MessageTooLarge`) if a field is invalid.
    """
    fast = _FAST_ENCODERS.get(type(msg))
    if fast is not None:
        packed = fast(msg)
        if packed is not None:
            return packed
    return _encode_checked(msg)


def _encode_checked(msg: WireMessage) -> bytes:
    """encode_message by the generic path: every field validated by the decoder's rules."""
    tag = _TAGS.get(type(msg))
    if tag is None:
        raise WireError(f"not a wire message: {type(msg).__name__}")
    _, _, make = _DECODERS[tag]
    validated = make(_fields(msg))
    return _pack(tag, validated)


def encode_with_signature(msg: WireMessage, signature: bytes) -> bytes:
    """A signed message (GroupRoster, GroupMessage, GroupLeave) encoded with its
    `signature` field replaced, without validating it again: what a signature covers,
    for a message decode_message made (and so validated). Every member checks each group
    message it receives; building a copy with dataclasses.replace and validating it again
    cost ~15 us of the ~25 us this took. For such a message the bytes are those of
    encode_message(dataclasses.replace(msg, signature=signature)) (a property test
    compares the two)."""
    tag = _TAGS.get(type(msg))
    if tag is None:
        raise WireError(f"not a wire message: {type(msg).__name__}")
    names, _ = _SPECS.get(type(msg)) or _spec(type(msg))
    if "signature" not in names:
        raise WireError(f"{type(msg).__name__} carries no signature")
    fields = _fields(msg)
    fields[names.index("signature")] = signature
    try:
        packed = msgpack.packb([tag, *fields], use_bin_type=True)
    except Exception as exc:  # an object decode_message did not make
        raise WireError(f"cannot encode {type(msg).__name__}: {exc}") from exc
    assert isinstance(packed, bytes)
    return packed


def decode_message(data: bytes) -> WireMessage:
    """Decode and validate a transport message; raises only :class:`WireError`."""
    obj = _unpack(data, "message")
    tag = obj[0]
    assert type(tag) is int
    entry = _DECODERS.get(tag)
    if entry is None:
        raise WireError(f"unknown message type tag {tag}")
    cls, count, make = entry
    fewest = _MIN_FIELDS.get(tag, count)
    if not fewest <= len(obj) - 1 <= count:
        expected = str(count) if fewest == count else f"{fewest} to {count}"
        raise WireError(f"{cls.__name__}: expected {expected} fields, got {len(obj) - 1}")
    return make(obj[1:])


def encode_group_attachment(attachment: GroupAttachment) -> bytes:
    """The attachment as stored beside its group message (the array it is signed as)."""
    a = _make_group_attachment(
        [
            attachment.root,
            attachment.name,
            attachment.mime,
            attachment.size,
            attachment.chunk_size,
            attachment.key,
        ]
    )
    packed = msgpack.packb([a.root, a.name, a.mime, a.size, a.chunk_size, a.key])
    assert isinstance(packed, bytes)
    return packed


def decode_group_attachment(data: bytes) -> GroupAttachment:
    """Inverse of :func:`encode_group_attachment`; raises only :class:`WireError`."""
    try:
        value = msgpack.unpackb(data, raw=False, max_bin_len=_MAX_BIN_LEN, max_map_len=0)
    except Exception as exc:  # msgpack raises many types
        raise WireError(f"attachment: not valid msgpack ({type(exc).__name__})") from None
    return _make_group_attachment(value)


def encode_batch(encoded: list[bytes]) -> bytes:
    """A Batch record from messages already encoded with :func:`encode_message` (each a
    ChatMessage, Receipt or GroupMessage, 1..MAX_BATCH_MESSAGES of them): the msgpack array
    ``[11, [m1, m2, ...]]`` is its header followed by the encoded messages, so they are
    not encoded twice. Equal to ``encode_message(Batch(messages))``."""
    count = len(encoded)
    if not 1 <= count <= MAX_BATCH_MESSAGES:
        raise WireError(f"batch: {count} messages, expected 1..{MAX_BATCH_MESSAGES}")
    head = b"\x92\x0b" + (
        bytes((0x90 | count,)) if count < 16 else b"\xdc" + count.to_bytes(2, "big")
    )
    return head + b"".join(encoded)


def encode_hello(hello: Hello) -> bytes:
    """Validate and encode a handshake :class:`Hello` payload."""
    if type(hello) is not Hello:
        raise WireError(f"not a Hello: {type(hello).__name__}")
    return _pack(HELLO_TAG, _make_hello(_fields(hello)))


def decode_hello(data: bytes) -> Hello:
    """Decode and validate a handshake :class:`Hello`; raises only :class:`WireError`."""
    obj = _unpack(data, "hello")
    if obj[0] != HELLO_TAG:
        raise WireError(f"hello: wrong type tag {obj[0]} (expected {HELLO_TAG})")
    if len(obj) - 1 != _HELLO_FIELDS:
        raise WireError(f"Hello: expected {_HELLO_FIELDS} fields, got {len(obj) - 1}")
    return _make_hello(obj[1:])

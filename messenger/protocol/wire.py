"""Wire messages and their msgpack codec (sans-I/O).

Every message is a frozen dataclass.  A message is encoded as a msgpack array
``[TYPE_TAG, field1, field2, ...]``.  Decoding treats its input as hostile: the
exact field count, the exact type of every field (``bool`` is not ``int``),
byte lengths, integer ranges and string lengths are all checked, and *any*
malformed input raises :class:`WireError` -- never another exception type.

Validation is not done when a dataclass is constructed but when it is encoded
or decoded, with the same rules in both directions, so a message that encodes
successfully always decodes to an equal message.

Besides the transport messages this module holds:

* :class:`Hello`, the payload carried inside Noise handshake messages
  (:func:`encode_hello` / :func:`decode_hello`);
* the clear-text connection :class:`Preamble` that starts the initiator's first
  frame (:func:`encode_preamble` / :func:`parse_preamble`);
* the clear-text :class:`Rejection` frame a responder may send instead of a
  handshake reply (:func:`encode_rejection` / :func:`parse_rejection`).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias, TypeVar

import msgpack

__all__ = [
    "BATCHABLE",
    "HELLO_TAG",
    "MAX_ADDRESSES",
    "MAX_ADDRESS_CHARS",
    "MAX_BATCH_MESSAGES",
    "MAX_BODY_BYTES",
    "MAX_CLOSE_REASON_CHARS",
    "MAX_GROUP_MARKS",
    "MAX_GROUP_MEMBERS",
    "MAX_GROUP_REMOVED",
    "MAX_MEMBER_ADDRESSES",
    "MAX_NAME_CHARS",
    "MAX_RECEIPT_IDS",
    "MSG_ID_LEN",
    "PREAMBLE_MAGIC",
    "PROTOCOL_VERSION",
    "REJECTION_MAGIC",
    "Batch",
    "ChatMessage",
    "Close",
    "DiscoveryKey",
    "FileAction",
    "FileControl",
    "FileHave",
    "FileOffer",
    "FileRequest",
    "GroupAck",
    "GroupAttachment",
    "GroupHave",
    "GroupJoinRequest",
    "GroupLeave",
    "GroupMark",
    "GroupMember",
    "GroupMessage",
    "GroupRemoved",
    "GroupRoster",
    "HandshakeKind",
    "Hello",
    "MessageTooLarge",
    "MessageType",
    "PairAccept",
    "Ping",
    "Pong",
    "Preamble",
    "ProfileUpdate",
    "ReachUpdate",
    "Receipt",
    "ReceiptKind",
    "RejectCode",
    "Rejection",
    "Typing",
    "UnsupportedVersion",
    "WireError",
    "WireMessage",
    "decode_group_attachment",
    "decode_hello",
    "decode_message",
    "encode_batch",
    "encode_group_attachment",
    "encode_hello",
    "encode_message",
    "encode_preamble",
    "encode_rejection",
    "parse_preamble",
    "parse_rejection",
]

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

PROTOCOL_VERSION: Final = 1
MAX_BODY_BYTES: Final = 65536
"""Maximum size of a chat body, in UTF-8 bytes."""
MSG_ID_LEN: Final = 16
"""Length of message ids and conversation ids."""
MAX_RECEIPT_IDS: Final = 512
MAX_BATCH_MESSAGES: Final = 512
"""Most messages one Batch may carry."""
MAX_NAME_CHARS: Final = 64
MAX_ADDRESSES: Final = 16
MAX_ADDRESS_CHARS: Final = 300
MAX_CLOSE_REASON_CHARS: Final = 200

# Groups (docs/protocol.md §16). A roster of MAX_GROUP_MEMBERS members, each with
# MAX_MEMBER_ADDRESSES addresses, still fits one record (framing.MAX_RECORD).
MAX_GROUP_MEMBERS: Final = 64
MAX_MEMBER_ADDRESSES: Final = 4
MAX_GROUP_REMOVED: Final = 256
MAX_GROUP_MARKS: Final = MAX_GROUP_MEMBERS + MAX_GROUP_REMOVED
GROUP_HASH_LEN: Final = 32

ED25519_PUBLIC_LEN: Final = 32
ED25519_SIGNATURE_LEN: Final = 64
X25519_PUBLIC_LEN: Final = 32
DISCOVERY_KEY_LEN: Final = 32

_INT63: Final = 2**63
_UINT64: Final = 2**64

HELLO_TAG: Final = 100
"""Type tag of :class:`Hello`; deliberately outside the transport tag space."""

PREAMBLE_MAGIC: Final = b"CW"
REJECTION_MAGIC: Final = b"CX"
INVITE_ID_LEN: Final = 16
FILE_ROOT_LEN: Final = 32
FILE_KEY_LEN: Final = 32
FILE_TICKET_LEN: Final = 16
MAX_FILE_NAME_CHARS: Final = 1024
MAX_MIME_CHARS: Final = 255

# msgpack limits.  Nothing legitimate comes close: the largest field is a chat
# body (MAX_BODY_BYTES of UTF-8); strings are allowed to be larger so that an
# oversized body is reported as MessageTooLarge rather than a generic error.
_MAX_BIN_LEN: Final = 64
_MAX_STR_LEN: Final = 4 * MAX_BODY_BYTES
_MAX_ARRAY_LEN: Final = 2 * MAX_RECEIPT_IDS


class WireError(ValueError):
    """Raised for any malformed or invalid wire data."""


class MessageTooLarge(WireError):
    """A chat body exceeds :data:`MAX_BODY_BYTES`."""


class UnsupportedVersion(WireError):
    """A preamble announced a protocol version this build does not speak."""

    def __init__(self, version: int) -> None:
        super().__init__(
            f"unsupported protocol version {version} (this build speaks {PROTOCOL_VERSION})"
        )
        self.version = version


class MessageType(enum.IntEnum):
    """Type tags of the transport messages."""

    CHAT = 1
    RECEIPT = 2
    TYPING = 3
    PING = 4
    PONG = 5
    CLOSE = 6
    PROFILE_UPDATE = 7
    # 8 is left unassigned.
    DISCOVERY_KEY = 9
    PAIR_ACCEPT = 10
    BATCH = 11
    REACH_UPDATE = 12
    # 13-19: reserved. 20-39: groups (docs/protocol.md §16).
    GROUP_ROSTER = 20
    GROUP_MESSAGE = 21
    GROUP_HAVE = 22
    GROUP_ACK = 23
    GROUP_LEAVE = 24
    GROUP_JOIN_REQUEST = 25
    # 40-59: file transfer (docs/protocol.md §17).
    FILE_OFFER = 40
    FILE_REQUEST = 41
    FILE_CONTROL = 42
    FILE_HAVE = 43


class ReceiptKind(enum.IntEnum):
    DELIVERED = 1
    READ = 2


class FileAction(enum.IntEnum):
    """What a FileControl asks or reports (docs/protocol.md §17)."""

    PAUSE = 1
    RESUME = 2
    CANCEL = 3
    REJECT = 4  # the offer was refused; the reason says why
    UNAVAILABLE = 5  # asked for a file we do not (or no longer) serve


class HandshakeKind(enum.IntEnum):
    INVITE = 1
    """First contact via an invite: Noise XXpsk3."""
    RECONNECT = 2
    """Known contact: Noise IKpsk2."""
    NEARBY = 3
    """Discovered on the LAN: Noise XX."""


class RejectCode(enum.IntEnum):
    INVITE_USED = 1
    INVITE_EXPIRED = 2
    BUSY = 3
    VERSION = 4


# --------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatMessage:
    msg_id: bytes
    conversation: bytes
    seq: int
    lamport: int
    sent_at_ms: int
    body: str


@dataclass(frozen=True, slots=True)
class Receipt:
    kind: ReceiptKind
    msg_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Typing:
    conversation: bytes
    active: bool


@dataclass(frozen=True, slots=True)
class Ping:
    nonce: int


@dataclass(frozen=True, slots=True)
class Pong:
    nonce: int


@dataclass(frozen=True, slots=True)
class Close:
    reason: str


@dataclass(frozen=True, slots=True)
class ProfileUpdate:
    display_name: str


@dataclass(frozen=True, slots=True)
class DiscoveryKey:
    """The sender's current LAN advertising key (docs/protocol.md §14)."""

    key: bytes


@dataclass(frozen=True, slots=True)
class PairAccept:
    """Nearby pairing: the sender's user confirmed the short authentication string.

    Carries the sender's identity, bound to this session by a signature of the identity
    key over the handshake hash (identity.pairing_signature)."""

    ed25519_public: bytes
    static_public: bytes
    static_certificate: bytes
    display_name: str
    listen_port: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class Batch:
    """Several chat messages, receipts and group messages in one record, so in one
    encrypted frame: under load (a group catch-up streams hundreds) a sender packs what it
    queued in one pass of its event loop (docs/protocol.md §7). The receiver handles them
    one by one, in order, exactly as if they came alone."""

    messages: tuple[ChatMessage | Receipt | GroupMessage, ...]


@dataclass(frozen=True, slots=True)
class ReachUpdate:
    """Where the sender can be reached now, sent over a live session when that changed
    since its Hello (its onion service came up): the receiver stores these addresses as
    it stores a Hello's, so it can dial them later (docs/protocol.md §19.8)."""

    addresses: tuple[str, ...]


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


@dataclass(frozen=True, slots=True)
class FileOffer:
    """A file in a conversation: a chat message (id, counters) plus the file's metadata and
    key. Size, chunk size and name are checked by the receiver, which answers a bad offer
    with FileControl(REJECT, reason) rather than dropping the session."""

    msg_id: bytes
    conversation: bytes
    seq: int
    lamport: int
    sent_at_ms: int
    root: bytes
    name: str
    mime: str
    size: int
    chunk_size: int
    key: bytes


@dataclass(frozen=True, slots=True)
class FileRequest:
    """Open a bulk connection for `root`: the next inbound bulk preamble with `ticket` is
    ours, and both ends derive its record keys from `secret`."""

    root: bytes
    ticket: bytes
    secret: bytes


@dataclass(frozen=True, slots=True)
class FileControl:
    root: bytes
    action: FileAction
    reason: str


@dataclass(frozen=True, slots=True)
class FileHave:
    """The sender holds every chunk of `root` and can serve it."""

    root: bytes


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


FILE_MESSAGES: Final = (FileOffer, FileRequest, FileControl, FileHave)
"""The messages files/manager.py handles (tags 40-59)."""


@dataclass(frozen=True, slots=True)
class Hello:
    ed25519_public: bytes
    static_certificate: bytes
    display_name: str
    listen_port: int
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Preamble:
    kind: HandshakeKind
    invite_id: bytes | None


@dataclass(frozen=True, slots=True)
class Rejection:
    code: RejectCode


# --------------------------------------------------------------------------
# Field validators (shared by encoder and decoder)
# --------------------------------------------------------------------------


def _bytes(value: object, what: str, length: int) -> bytes:
    if type(value) is not bytes:
        raise WireError(f"{what}: expected bytes, got {type(value).__name__}")
    if len(value) != length:
        raise WireError(f"{what}: expected {length} bytes, got {len(value)}")
    return value


def _int(value: object, what: str, lo: int, hi: int) -> int:
    """Check ``lo <= value < hi`` for an exact ``int`` (not ``bool``)."""
    if type(value) is not int:
        raise WireError(f"{what}: expected int, got {type(value).__name__}")
    if not lo <= value < hi:
        raise WireError(f"{what}: {value} out of range [{lo}, {hi})")
    return value


def _bool(value: object, what: str) -> bool:
    if type(value) is not bool:
        raise WireError(f"{what}: expected bool, got {type(value).__name__}")
    return value


def _str(value: object, what: str, max_chars: int) -> str:
    if type(value) is not str:
        raise WireError(f"{what}: expected str, got {type(value).__name__}")
    if len(value) > max_chars:
        raise WireError(f"{what}: {len(value)} characters exceeds the limit of {max_chars}")
    _utf8_len(value, what)
    return value


def _utf8_len(value: str, what: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise WireError(f"{what}: not encodable as UTF-8 ({exc.reason})") from None


_E = TypeVar("_E", bound=enum.IntEnum)


def _enum(value: object, what: str, cls: type[_E]) -> _E:
    if type(value) is not int and not isinstance(value, cls):
        raise WireError(f"{what}: expected int, got {type(value).__name__}")
    try:
        return cls(value)
    except ValueError:
        raise WireError(f"{what}: unknown value {value!r}") from None


def _body(value: object) -> str:
    if type(value) is not str:
        raise WireError(f"body: expected str, got {type(value).__name__}")
    size = _utf8_len(value, "body")
    if size == 0:
        raise WireError("body: must not be empty")
    if size > MAX_BODY_BYTES:
        raise MessageTooLarge(
            f"chat body is {size} bytes of UTF-8, the limit is {MAX_BODY_BYTES} bytes"
        )
    return value


def _display_name(value: object, what: str) -> str:
    name = _str(value, what, MAX_NAME_CHARS)
    if not name.strip():
        raise WireError(f"{what}: must not be empty or blank")
    return name


def check_address(value: object, what: str) -> str:
    """A "host:port" as the wire allows it (WireError otherwise): also for addresses that
    go into a message we build (groups.py)."""
    addr = _str(value, what, MAX_ADDRESS_CHARS)
    host, sep, port = addr.rpartition(":")
    if not sep or not host:
        raise WireError(f"{what}: {addr!r} is not of the form host:port")
    if not (host.isascii() and host.isprintable()) or any(c.isspace() for c in host):
        raise WireError(f"{what}: host {host!r} must be printable ASCII without spaces")
    if not (port.isascii() and port.isdigit() and len(port) <= 5):
        raise WireError(f"{what}: port {port!r} is not a decimal number")
    if not 1 <= int(port) <= 65535:
        raise WireError(f"{what}: port {port} out of range 1..65535")
    return addr


def _array(
    value: object, what: str, min_len: int, max_len: int
) -> list[object] | tuple[object, ...]:
    if not isinstance(value, list | tuple):
        raise WireError(f"{what}: expected an array, got {type(value).__name__}")
    if not min_len <= len(value) <= max_len:
        raise WireError(f"{what}: {len(value)} entries, expected {min_len}..{max_len}")
    return value


# --------------------------------------------------------------------------
# Per-message field validation.  Each takes the raw field values (from the
# decoder or from a dataclass being encoded) and returns a validated message.
# --------------------------------------------------------------------------


def _make_chat(f: list[object]) -> ChatMessage:
    msg_id, conversation, seq, lamport, sent_at_ms, body = f
    # Fast path for the common case (the hot path of every chat message, both ways); any
    # doubt falls through to the field-by-field checks below, which give the error.
    if (
        type(msg_id) is bytes
        and len(msg_id) == MSG_ID_LEN
        and type(conversation) is bytes
        and len(conversation) == MSG_ID_LEN
        and type(seq) is int
        and 1 <= seq < _INT63
        and type(lamport) is int
        and 1 <= lamport < _INT63
        and type(sent_at_ms) is int
        and 0 <= sent_at_ms < _INT63
        and type(body) is str
        and body.isascii()  # then its UTF-8 size is its length
        and 0 < len(body) <= MAX_BODY_BYTES
    ):
        return ChatMessage(msg_id, conversation, seq, lamport, sent_at_ms, body)
    return ChatMessage(
        msg_id=_bytes(f[0], "msg_id", MSG_ID_LEN),
        conversation=_bytes(f[1], "conversation", MSG_ID_LEN),
        seq=_int(f[2], "seq", 1, _INT63),
        lamport=_int(f[3], "lamport", 1, _INT63),
        sent_at_ms=_int(f[4], "sent_at_ms", 0, _INT63),
        body=_body(f[5]),
    )


def _make_receipt(f: list[object]) -> Receipt:
    ids = _array(f[1], "msg_ids", 1, MAX_RECEIPT_IDS)
    return Receipt(
        kind=_enum(f[0], "receipt kind", ReceiptKind),
        msg_ids=tuple(_bytes(i, "msg_ids entry", MSG_ID_LEN) for i in ids),
    )


def _make_typing(f: list[object]) -> Typing:
    return Typing(
        conversation=_bytes(f[0], "conversation", MSG_ID_LEN),
        active=_bool(f[1], "active"),
    )


def _make_ping(f: list[object]) -> Ping:
    return Ping(nonce=_int(f[0], "nonce", 0, _UINT64))


def _make_pong(f: list[object]) -> Pong:
    return Pong(nonce=_int(f[0], "nonce", 0, _UINT64))


def _make_close(f: list[object]) -> Close:
    return Close(reason=_str(f[0], "reason", MAX_CLOSE_REASON_CHARS))


def _make_profile_update(f: list[object]) -> ProfileUpdate:
    return ProfileUpdate(display_name=_display_name(f[0], "display_name"))


def _make_discovery_key(f: list[object]) -> DiscoveryKey:
    return DiscoveryKey(key=_bytes(f[0], "key", DISCOVERY_KEY_LEN))


def _make_pair_accept(f: list[object]) -> PairAccept:
    return PairAccept(
        ed25519_public=_bytes(f[0], "ed25519_public", ED25519_PUBLIC_LEN),
        static_public=_bytes(f[1], "static_public", X25519_PUBLIC_LEN),
        static_certificate=_bytes(f[2], "static_certificate", ED25519_SIGNATURE_LEN),
        display_name=_display_name(f[3], "display_name"),
        listen_port=_int(f[4], "listen_port", 0, 65536),
        signature=_bytes(f[5], "signature", ED25519_SIGNATURE_LEN),
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


def _count(cls: type) -> int:
    return len(dataclasses.fields(cls))


def _fields_of(value: object, what: str, count: int) -> list[object] | tuple[object, ...]:
    return _array(value, what, count, count)


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


def _make_mark(value: object) -> GroupMark:
    f = _fields_of(value, "mark", _count(GroupMark))
    return GroupMark(
        author=_bytes(f[0], "mark author", ED25519_PUBLIC_LEN),
        seq=_int(f[1], "mark seq", 0, _INT63),
    )


def _marks(value: object) -> tuple[GroupMark, ...]:
    return tuple(_make_mark(m) for m in _array(value, "marks", 0, MAX_GROUP_MARKS))


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


def _make_group_leave(f: list[object]) -> GroupLeave:
    return GroupLeave(
        group_id=_bytes(f[0], "group_id", MSG_ID_LEN),
        member=_bytes(f[1], "member", ED25519_PUBLIC_LEN),
        epoch=_int(f[2], "epoch", 1, _INT63),
        signature=_bytes(f[3], "signature", ED25519_SIGNATURE_LEN),
    )


def _make_group_join_request(f: list[object]) -> GroupJoinRequest:
    return GroupJoinRequest(name=_display_name(f[0], "group name"))


def _make_file_offer(f: list[object]) -> FileOffer:
    return FileOffer(
        msg_id=_bytes(f[0], "msg_id", MSG_ID_LEN),
        conversation=_bytes(f[1], "conversation", MSG_ID_LEN),
        seq=_int(f[2], "seq", 1, _INT63),
        lamport=_int(f[3], "lamport", 1, _INT63),
        sent_at_ms=_int(f[4], "sent_at_ms", 0, _INT63),
        root=_bytes(f[5], "root", FILE_ROOT_LEN),
        name=_str(f[6], "name", MAX_FILE_NAME_CHARS),
        mime=_str(f[7], "mime", MAX_MIME_CHARS),
        # Any int64: a negative or huge size is the receiver's to reject with a reason.
        size=_int(f[8], "size", -_INT63, _INT63),
        chunk_size=_int(f[9], "chunk_size", 0, 2**32),
        key=_bytes(f[10], "key", FILE_KEY_LEN),
    )


def _make_file_request(f: list[object]) -> FileRequest:
    return FileRequest(
        root=_bytes(f[0], "root", FILE_ROOT_LEN),
        ticket=_bytes(f[1], "ticket", FILE_TICKET_LEN),
        secret=_bytes(f[2], "secret", FILE_KEY_LEN),
    )


def _make_file_control(f: list[object]) -> FileControl:
    return FileControl(
        root=_bytes(f[0], "root", FILE_ROOT_LEN),
        action=_enum(f[1], "file action", FileAction),
        reason=_str(f[2], "reason", MAX_CLOSE_REASON_CHARS),
    )


def _make_file_have(f: list[object]) -> FileHave:
    return FileHave(root=_bytes(f[0], "root", FILE_ROOT_LEN))


def _make_reach_update(f: list[object]) -> ReachUpdate:
    addrs = _array(f[0], "addresses", 1, MAX_ADDRESSES)
    return ReachUpdate(addresses=tuple(check_address(a, "address") for a in addrs))


def _make_hello(f: list[object]) -> Hello:
    addrs = _array(f[4], "addresses", 0, MAX_ADDRESSES)
    return Hello(
        ed25519_public=_bytes(f[0], "ed25519_public", ED25519_PUBLIC_LEN),
        static_certificate=_bytes(f[1], "static_certificate", ED25519_SIGNATURE_LEN),
        display_name=_display_name(f[2], "display_name"),
        listen_port=_int(f[3], "listen_port", 0, 65536),
        addresses=tuple(check_address(a, "address") for a in addrs),
    )


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


# --------------------------------------------------------------------------
# Public codec
# --------------------------------------------------------------------------


def encode_message(msg: WireMessage) -> bytes:
    """Validate and encode a transport message.

    Raises :class:`WireError` (or :class:`MessageTooLarge`) if a field is invalid.
    """
    tag = _TAGS.get(type(msg))
    if tag is None:
        raise WireError(f"not a wire message: {type(msg).__name__}")
    _, _, make = _DECODERS[tag]
    validated = make(_fields(msg))
    return _pack(tag, validated)


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


# --------------------------------------------------------------------------
# Clear-text preamble and rejection
# --------------------------------------------------------------------------


def encode_preamble(p: Preamble) -> bytes:
    """``b"CW" || u8 version || u8 kind [|| 16-byte invite id if kind is INVITE]``."""
    kind = _enum(p.kind, "preamble kind", HandshakeKind)
    head = PREAMBLE_MAGIC + bytes((PROTOCOL_VERSION, kind))
    if kind is HandshakeKind.INVITE:
        return head + _bytes(p.invite_id, "invite_id", INVITE_ID_LEN)
    if p.invite_id is not None:
        raise WireError(f"invite_id must be None for a {kind.name} preamble")
    return head


def parse_preamble(data: bytes) -> tuple[Preamble, bytes]:
    """Parse the preamble at the start of ``data``.

    Returns the preamble and the remaining bytes (the Noise handshake message).
    Raises :class:`UnsupportedVersion` (a :class:`WireError`) for a foreign
    protocol version and :class:`WireError` for anything else malformed.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireError(f"preamble: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 4:
        raise WireError(f"preamble: truncated ({len(data)} bytes, need at least 4)")
    if data[:2] != PREAMBLE_MAGIC:
        raise WireError(f"preamble: bad magic {data[:2]!r} (expected {PREAMBLE_MAGIC!r})")
    version = data[2]
    if version != PROTOCOL_VERSION:
        raise UnsupportedVersion(version)
    try:
        kind = HandshakeKind(data[3])
    except ValueError:
        raise WireError(f"preamble: unknown handshake kind {data[3]}") from None
    if kind is HandshakeKind.INVITE:
        end = 4 + INVITE_ID_LEN
        if len(data) < end:
            raise WireError(
                f"preamble: truncated invite id ({len(data) - 4} of {INVITE_ID_LEN} bytes)"
            )
        return Preamble(kind, data[4:end]), data[end:]
    return Preamble(kind, None), data[4:]


def encode_rejection(r: Rejection) -> bytes:
    """``b"CX" || u8 code``."""
    return REJECTION_MAGIC + bytes((_enum(r.code, "reject code", RejectCode),))


def parse_rejection(data: bytes) -> Rejection | None:
    """Return the :class:`Rejection` in ``data``, or None if it is not one.

    A rejection is exactly three bytes; Noise handshake messages are always
    longer, so there is no ambiguity.  Three bytes with the rejection magic but
    an unknown code raise :class:`WireError`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        return None
    data = bytes(data)
    if len(data) != 3 or data[:2] != REJECTION_MAGIC:
        return None
    try:
        return Rejection(RejectCode(data[2]))
    except ValueError:
        raise WireError(f"rejection: unknown reject code {data[2]}") from None

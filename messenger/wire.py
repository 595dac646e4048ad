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

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias, TypeVar

import msgpack

__all__ = [
    "HELLO_TAG",
    "MAX_ADDRESSES",
    "MAX_ADDRESS_CHARS",
    "MAX_BODY_BYTES",
    "MAX_CLOSE_REASON_CHARS",
    "MAX_NAME_CHARS",
    "MAX_RECEIPT_IDS",
    "MSG_ID_LEN",
    "PREAMBLE_MAGIC",
    "PROTOCOL_VERSION",
    "REJECTION_MAGIC",
    "ChatMessage",
    "Close",
    "DiscoveryKey",
    "FileAction",
    "FileControl",
    "FileHave",
    "FileOffer",
    "FileRequest",
    "HandshakeKind",
    "Hello",
    "MessageTooLarge",
    "MessageType",
    "PairAccept",
    "Ping",
    "Pong",
    "Preamble",
    "ProfileUpdate",
    "Receipt",
    "ReceiptKind",
    "RejectCode",
    "Rejection",
    "Typing",
    "UnsupportedVersion",
    "WireError",
    "WireMessage",
    "decode_hello",
    "decode_message",
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
MAX_NAME_CHARS: Final = 64
MAX_ADDRESSES: Final = 16
MAX_ADDRESS_CHARS: Final = 300
MAX_CLOSE_REASON_CHARS: Final = 200

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


def _address(value: object, what: str) -> str:
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


def _make_hello(f: list[object]) -> Hello:
    addrs = _array(f[4], "addresses", 0, MAX_ADDRESSES)
    return Hello(
        ed25519_public=_bytes(f[0], "ed25519_public", ED25519_PUBLIC_LEN),
        static_certificate=_bytes(f[1], "static_certificate", ED25519_SIGNATURE_LEN),
        display_name=_display_name(f[2], "display_name"),
        listen_port=_int(f[3], "listen_port", 0, 65536),
        addresses=tuple(_address(a, "address") for a in addrs),
    )


_Maker: TypeAlias = Callable[[list[object]], WireMessage]

# tag -> (class, field count, validator)
_DECODERS: Final[dict[int, tuple[type[WireMessage], int, _Maker]]] = {
    MessageType.CHAT: (ChatMessage, 6, _make_chat),
    MessageType.RECEIPT: (Receipt, 2, _make_receipt),
    MessageType.TYPING: (Typing, 2, _make_typing),
    MessageType.PING: (Ping, 1, _make_ping),
    MessageType.PONG: (Pong, 1, _make_pong),
    MessageType.CLOSE: (Close, 1, _make_close),
    MessageType.PROFILE_UPDATE: (ProfileUpdate, 1, _make_profile_update),
    MessageType.DISCOVERY_KEY: (DiscoveryKey, 1, _make_discovery_key),
    MessageType.PAIR_ACCEPT: (PairAccept, 6, _make_pair_accept),
    MessageType.FILE_OFFER: (FileOffer, 11, _make_file_offer),
    MessageType.FILE_REQUEST: (FileRequest, 3, _make_file_request),
    MessageType.FILE_CONTROL: (FileControl, 3, _make_file_control),
    MessageType.FILE_HAVE: (FileHave, 1, _make_file_have),
}
_TAGS: Final[dict[type[WireMessage], int]] = {cls: tag for tag, (cls, _, _) in _DECODERS.items()}
_HELLO_FIELDS: Final = 5


def _fields(msg: WireMessage | Hello) -> list[object]:
    if isinstance(msg, ChatMessage):
        return [msg.msg_id, msg.conversation, msg.seq, msg.lamport, msg.sent_at_ms, msg.body]
    if isinstance(msg, Receipt):
        ids = msg.msg_ids
        return [msg.kind, list(ids) if isinstance(ids, tuple | list) else ids]
    if isinstance(msg, Typing):
        return [msg.conversation, msg.active]
    if isinstance(msg, Ping | Pong):
        return [msg.nonce]
    if isinstance(msg, Close):
        return [msg.reason]
    if isinstance(msg, ProfileUpdate):
        return [msg.display_name]
    if isinstance(msg, DiscoveryKey):
        return [msg.key]
    if isinstance(msg, PairAccept):
        return [
            msg.ed25519_public,
            msg.static_public,
            msg.static_certificate,
            msg.display_name,
            msg.listen_port,
            msg.signature,
        ]
    if isinstance(msg, FileOffer):
        return [
            msg.msg_id,
            msg.conversation,
            msg.seq,
            msg.lamport,
            msg.sent_at_ms,
            msg.root,
            msg.name,
            msg.mime,
            msg.size,
            msg.chunk_size,
            msg.key,
        ]
    if isinstance(msg, FileRequest):
        return [msg.root, msg.ticket, msg.secret]
    if isinstance(msg, FileControl):
        return [msg.root, msg.action, msg.reason]
    if isinstance(msg, FileHave):
        return [msg.root]
    addrs = msg.addresses
    return [
        msg.ed25519_public,
        msg.static_certificate,
        msg.display_name,
        msg.listen_port,
        list(addrs) if isinstance(addrs, tuple | list) else addrs,
    ]


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
    if len(obj) - 1 != count:
        raise WireError(f"{cls.__name__}: expected {count} fields, got {len(obj) - 1}")
    return make(obj[1:])


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

"""What every message family shares: protocol constants and limits, the errors, the
enums, and the validators that check each field of hostile input (decoding) and of our
own messages (encoding) by the same rules."""

from __future__ import annotations

import dataclasses
import enum
from typing import Final, TypeVar

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
    go into a message we build (groups/rosters.py)."""
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


def _count(cls: type) -> int:
    return len(dataclasses.fields(cls))


def _fields_of(value: object, what: str, count: int) -> list[object] | tuple[object, ...]:
    return _array(value, what, count, count)

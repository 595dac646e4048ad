"""Wire messages and their msgpack codec (sans-I/O).

Every message is a frozen dataclass.  A message is encoded as a msgpack array
``[TYPE_TAG, field1, field2, ...]``.  Decoding treats its input as hostile: the
exact field count, the exact type of every field (``bool`` is not ``int``),
byte lengths, integer ranges and string lengths are all checked, and *any*
malformed input raises :class:`WireError` -- never another exception type.

Validation is not done when a dataclass is constructed but when it is encoded
or decoded, with the same rules in both directions, so a message that encodes
successfully always decodes to an equal message.

One module per message family: ``chat`` (tags 1-12), ``groups`` (20-25), ``files``
(40-59) and ``handshake`` (Hello, preamble, rejection); ``base`` holds the limits, errors,
enums and field validators they share, ``codec`` the tag table and the encode/decode
functions. Everything is re-exported here: callers use ``wire.X``.

Besides the transport messages the package holds:

* :class:`Hello`, the payload carried inside Noise handshake messages
  (:func:`encode_hello` / :func:`decode_hello`);
* the clear-text connection :class:`Preamble` that starts the initiator's first
  frame (:func:`encode_preamble` / :func:`parse_preamble`);
* the clear-text :class:`Rejection` frame a responder may send instead of a
  handshake reply (:func:`encode_rejection` / :func:`parse_rejection`).
"""

from .base import (
    DISCOVERY_KEY_LEN,
    ED25519_PUBLIC_LEN,
    ED25519_SIGNATURE_LEN,
    FILE_KEY_LEN,
    FILE_ROOT_LEN,
    FILE_TICKET_LEN,
    GROUP_HASH_LEN,
    HELLO_TAG,
    INVITE_ID_LEN,
    MAX_ADDRESS_CHARS,
    MAX_ADDRESSES,
    MAX_BATCH_MESSAGES,
    MAX_BODY_BYTES,
    MAX_CLOSE_REASON_CHARS,
    MAX_FILE_NAME_CHARS,
    MAX_GROUP_MARKS,
    MAX_GROUP_MEMBERS,
    MAX_GROUP_REMOVED,
    MAX_MEMBER_ADDRESSES,
    MAX_MIME_CHARS,
    MAX_NAME_CHARS,
    MAX_RECEIPT_IDS,
    MSG_ID_LEN,
    PREAMBLE_MAGIC,
    PROTOCOL_VERSION,
    REJECTION_MAGIC,
    X25519_PUBLIC_LEN,
    FileAction,
    HandshakeKind,
    MessageTooLarge,
    MessageType,
    ReceiptKind,
    RejectCode,
    UnsupportedVersion,
    WireError,
    check_address,
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
    pack_chat_fields,
)
from .codec import (
    BATCHABLE,
    WireMessage,
    decode_group_attachment,
    decode_hello,
    decode_message,
    encode_batch,
    encode_group_attachment,
    encode_hello,
    encode_message,
    encode_with_signature,
)
from .files import FILE_MESSAGES, FileControl, FileHave, FileOffer, FileRequest
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
    encode_group_ack_one,
)
from .handshake import (
    Hello,
    Preamble,
    Rejection,
    encode_preamble,
    encode_rejection,
    parse_preamble,
    parse_rejection,
)

__all__ = [
    "BATCHABLE",
    "DISCOVERY_KEY_LEN",
    "ED25519_PUBLIC_LEN",
    "ED25519_SIGNATURE_LEN",
    "FILE_KEY_LEN",
    "FILE_MESSAGES",
    "FILE_ROOT_LEN",
    "FILE_TICKET_LEN",
    "GROUP_HASH_LEN",
    "HELLO_TAG",
    "INVITE_ID_LEN",
    "MAX_ADDRESSES",
    "MAX_ADDRESS_CHARS",
    "MAX_BATCH_MESSAGES",
    "MAX_BODY_BYTES",
    "MAX_CLOSE_REASON_CHARS",
    "MAX_FILE_NAME_CHARS",
    "MAX_GROUP_MARKS",
    "MAX_GROUP_MEMBERS",
    "MAX_GROUP_REMOVED",
    "MAX_MEMBER_ADDRESSES",
    "MAX_MIME_CHARS",
    "MAX_NAME_CHARS",
    "MAX_RECEIPT_IDS",
    "MSG_ID_LEN",
    "PREAMBLE_MAGIC",
    "PROTOCOL_VERSION",
    "REJECTION_MAGIC",
    "X25519_PUBLIC_LEN",
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
    "check_address",
    "decode_group_attachment",
    "decode_hello",
    "decode_message",
    "encode_batch",
    "encode_group_ack_one",
    "encode_group_attachment",
    "encode_hello",
    "encode_message",
    "encode_preamble",
    "encode_rejection",
    "encode_with_signature",
    "pack_chat_fields",
    "parse_preamble",
    "parse_rejection",
]

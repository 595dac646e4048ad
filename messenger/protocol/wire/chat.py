"""The 1:1 session messages (tags 1-12): chat, receipts, typing, keepalive, close,
profile and discovery-key updates, pairing, batches, reach updates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgpack

from .base import (
    _INT63,
    _UINT64,
    DISCOVERY_KEY_LEN,
    ED25519_PUBLIC_LEN,
    ED25519_SIGNATURE_LEN,
    MAX_ADDRESSES,
    MAX_BODY_BYTES,
    MAX_CLOSE_REASON_CHARS,
    MAX_RECEIPT_IDS,
    MSG_ID_LEN,
    X25519_PUBLIC_LEN,
    MessageType,
    ReceiptKind,
    _array,
    _body,
    _bool,
    _bytes,
    _display_name,
    _enum,
    _int,
    _str,
    check_address,
)
from .groups import GroupMessage


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


# Per-message field validation.  Each _make_* takes the raw field values (from the
# decoder or from a dataclass being encoded) and returns a validated message.


def _plainly_valid_chat(
    msg_id: object,
    conversation: object,
    seq: object,
    lamport: object,
    sent_at_ms: object,
    body: object,
) -> bool:
    """The common case of a valid ChatMessage, checked at once (the hot path of every chat
    message, both ways). False means "not sure": the field-by-field checks of _make_chat
    then decide, and give the error."""
    return (
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
    )


def _make_chat(f: list[object]) -> ChatMessage:
    msg_id, conversation, seq, lamport, sent_at_ms, body = f
    if _plainly_valid_chat(msg_id, conversation, seq, lamport, sent_at_ms, body):
        # The types were checked just now (mypy cannot narrow through a function call).
        return ChatMessage(msg_id, conversation, seq, lamport, sent_at_ms, body)  # type: ignore[arg-type]
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
    # The common case checked in C loops (a receipt carries up to 512 ids; a check call
    # per id was most of decoding one, issue 15); anything else gets the per-id errors.
    if set(map(type, ids)) == _BYTES_ONLY and set(map(len, ids)) == _ID_LEN_ONLY:  # type: ignore[arg-type]
        checked: tuple[bytes, ...] = tuple(ids)  # type: ignore[arg-type]
        return Receipt(kind=_enum(f[0], "receipt kind", ReceiptKind), msg_ids=checked)
    return Receipt(
        kind=_enum(f[0], "receipt kind", ReceiptKind),
        msg_ids=tuple(_bytes(i, "msg_ids entry", MSG_ID_LEN) for i in ids),
    )


_BYTES_ONLY: Final = {bytes}
_ID_LEN_ONLY: Final = {MSG_ID_LEN}


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


def _make_reach_update(f: list[object]) -> ReachUpdate:
    addrs = _array(f[0], "addresses", 1, MAX_ADDRESSES)
    return ReachUpdate(addresses=tuple(check_address(a, "address") for a in addrs))


# Encoding the messages sent by the thousand (codec.encode_message tries these first).
_CHAT_TAG: Final = int(MessageType.CHAT)
_RECEIPT_TAG: Final = int(MessageType.RECEIPT)


def encode_chat_fast(msg: ChatMessage) -> bytes | None:
    """A plainly valid ChatMessage packed at once (every message sent goes through here);
    None when in doubt, for the generic path to check and report."""
    return pack_chat_fields(
        msg.msg_id, msg.conversation, msg.seq, msg.lamport, msg.sent_at_ms, msg.body
    )


# One Packer for the fast encoders (msgpack.packb makes one per call: 0.5 against 0.15 us);
# it packs without releasing the GIL and resets its buffer after an error.
_packb = msgpack.Packer(use_bin_type=True).pack


def pack_chat_fields(
    msg_id: bytes, conversation: bytes, seq: int, lamport: int, sent_at_ms: int, body: str
) -> bytes | None:
    """encode_chat_fast from the fields themselves, for a sender that has them as columns
    (a stored batch of ours: no ChatMessage built per message, issue 15); None when in
    doubt (then build the ChatMessage and let encode_message check and report)."""
    if not _plainly_valid_chat(msg_id, conversation, seq, lamport, sent_at_ms, body):
        return None
    packed: bytes = _packb((_CHAT_TAG, msg_id, conversation, seq, lamport, sent_at_ms, body))
    return packed


def encode_receipt_fast(msg: Receipt) -> bytes | None:
    """A plainly valid Receipt packed at once (an acknowledgement of every stored batch
    carries up to 512 ids); None when in doubt, for the generic path."""
    ids = msg.msg_ids
    if not (
        type(msg.kind) is ReceiptKind
        and type(ids) is tuple
        and 1 <= len(ids) <= MAX_RECEIPT_IDS
        and all(type(i) is bytes and len(i) == MSG_ID_LEN for i in ids)
    ):
        return None
    packed: bytes = _packb((_RECEIPT_TAG, int(msg.kind), ids))
    return packed

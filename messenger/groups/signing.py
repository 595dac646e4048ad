"""What a group member signs and how it is checked (docs/protocol.md §16.2): pure."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any, Final, TypeVar

import nacl.bindings
import nacl.encoding
import nacl.exceptions
import nacl.hash

from ..identity import Identity
from ..protocol import wire

ROSTER_CONTEXT: Final = b"chinwag group roster v1"
MESSAGE_CONTEXT: Final = b"chinwag group message v1"
LEAVE_CONTEXT: Final = b"chinwag group leave v1"
NO_SIGNATURE: Final = bytes(wire.ED25519_SIGNATURE_LEN)

_RAW = nacl.encoding.RawEncoder


def signed_bytes(context: bytes, message: wire.WireMessage) -> bytes:
    """What a signature covers: a context string and the message encoded with its
    signature field set to 64 zero bytes (docs/protocol.md §16.2)."""
    unsigned: Any = dataclasses.replace(message, signature=NO_SIGNATURE)  # type: ignore[arg-type]
    return context + wire.encode_message(unsigned)


_Signed = TypeVar("_Signed", wire.GroupRoster, wire.GroupMessage, wire.GroupLeave)


def _sign(identity: Identity, context: bytes, message: _Signed) -> _Signed:
    signature = identity.signing_key.sign(signed_bytes(context, message)).signature
    return dataclasses.replace(message, signature=bytes(signature))


def sign_roster(identity: Identity, roster: wire.GroupRoster) -> wire.GroupRoster:
    signer = dataclasses.replace(roster, signer=identity.ed25519_public)
    return _sign(identity, ROSTER_CONTEXT, signer)


def sign_message(identity: Identity, message: wire.GroupMessage) -> wire.GroupMessage:
    return _sign(identity, MESSAGE_CONTEXT, message)


def sign_leave(identity: Identity, leave: wire.GroupLeave) -> wire.GroupLeave:
    return _sign(identity, LEAVE_CONTEXT, leave)


def verify(context: bytes, message: Any, key: bytes) -> bool:
    """Check a signature of a message decode_message made (so validated already: the
    bytes signed are rebuilt without validating it again, see encode_with_signature)."""
    try:
        signed = context + wire.encode_with_signature(message, NO_SIGNATURE)
        # The binding itself: a VerifyKey object per check cost ~5 us more (catch-up
        # checks thousands of these).
        nacl.bindings.crypto_sign_open(message.signature + signed, key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
        return False
    except (wire.WireError, TypeError):
        return False
    return True


def verify_messages(messages: Sequence[wire.GroupMessage]) -> list[bool]:
    """Each message's author signature (runs in the verifier threads: libsodium releases
    the GIL)."""
    return [verify(MESSAGE_CONTEXT, m, m.author) for m in messages]


def roster_hash(roster: wire.GroupRoster) -> bytes:
    return nacl.hash.blake2b(
        wire.encode_message(roster), digest_size=32, person=b"chinwag-grp-rost", encoder=_RAW
    )


def message_id(group_id: bytes, author: bytes, seq: int) -> bytes:
    """The 16-byte id of a group message: the same on every member, so duplicates are
    recognised whichever member passed the message on."""
    # hashlib's BLAKE2b (RFC 7693, as files/bulk.py uses) gives the same bytes as PyNaCl's
    # in ~0.6 us instead of ~5 us of PyNaCl's argument checks; a catch-up computes this
    # for every message (tests/unit/test_groups.py compares the two).
    data = group_id + author + seq.to_bytes(8, "big")
    return hashlib.blake2b(data, digest_size=16, person=b"chinwag-grp-mid").digest()


def group_psk(
    own_static_private: bytes, own_ed25519: bytes, their_static: bytes, their_ed25519: bytes
) -> bytes:
    """The IKpsk2 psk of two members that are not contacts: both compute it from their own
    static private key and the other's static key as the signed roster introduced it."""
    shared = nacl.bindings.crypto_scalarmult(own_static_private, their_static)
    low, high = sorted((own_ed25519, their_ed25519))
    return nacl.hash.blake2b(
        low + high, digest_size=32, key=shared, person=b"chinwag-grp-psk", encoder=_RAW
    )

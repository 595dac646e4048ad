"""What travels outside the transport messages: the Hello inside the Noise handshake,
the clear-text connection preamble, and the clear-text rejection frame."""

from __future__ import annotations

from dataclasses import dataclass

from .base import (
    ED25519_PUBLIC_LEN,
    ED25519_SIGNATURE_LEN,
    INVITE_ID_LEN,
    MAX_ADDRESSES,
    PREAMBLE_MAGIC,
    PROTOCOL_VERSION,
    REJECTION_MAGIC,
    HandshakeKind,
    RejectCode,
    UnsupportedVersion,
    WireError,
    _array,
    _bytes,
    _display_name,
    _enum,
    _int,
    check_address,
)


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


# Per-message field validation.  Each _make_* takes the raw field values (from the
# decoder or from a dataclass being encoded) and returns a validated message.


def _make_hello(f: list[object]) -> Hello:
    addrs = _array(f[4], "addresses", 0, MAX_ADDRESSES)
    return Hello(
        ed25519_public=_bytes(f[0], "ed25519_public", ED25519_PUBLIC_LEN),
        static_certificate=_bytes(f[1], "static_certificate", ED25519_SIGNATURE_LEN),
        display_name=_display_name(f[2], "display_name"),
        listen_port=_int(f[3], "listen_port", 0, 65536),
        addresses=tuple(check_address(a, "address") for a in addrs),
    )


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

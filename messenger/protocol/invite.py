"""Invite codes (text and QR) for first contact.

An invite carries everything a peer needs to reach us and run a first-contact
handshake: our Ed25519 identity key, our X25519 static key, a one-time secret,
an expiry time, optional network addresses and an optional display name.

Binary layout (version 1), all integers big-endian::

    offset  size  field
    0       1     version            u8, INVITE_VERSION (1)
    1       32    ed25519_public     identity key
    33      32    x25519_public      static key
    65      32    secret             one-time invite secret
    97      8     expires_at         u64, unix seconds
    105     1     name_len           u8, number of UTF-8 bytes that follow (0..255)
    106     n     name               UTF-8 display name (<= 64 characters)
    106+n   1     addr_count         u8, 0..16
    ...           addresses          addr_count entries, see below
    end-4   4     checksum           first 4 bytes of BLAKE2b-256(all preceding bytes),
                                     personalised with b"chinwag-inv-ck"

Each address entry::

    type u8   4 = IPv4: 4 address bytes
              6 = IPv6: 16 address bytes
              1 = hostname: len u8 (1..253) + lowercase ASCII LDH hostname
    port u16  1..65535

The trailing 4-byte checksum (BLAKE2b over everything before it) is part of the
outer framing and is kept in every future version, so a damaged code is always
reported as "mistyped or truncated" rather than as an unknown version.
Encodings are canonical: decoding re-encodes and rejects anything that does not
round-trip byte for byte (including non-zero base32 trailing bits).

Text form: ``"CHINWAG:" + base32(RFC 4648, uppercase, no padding)``.  It uses
only QR *alphanumeric* characters, so the QR code holds exactly the text code
in alphanumeric mode.  Decoding tolerates surrounding and internal whitespace,
dashes, lowercase and a missing ``CHINWAG:`` prefix.

The checksum only detects typing/transfer errors; it is not authentication.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import ifaddr
import nacl.encoding
import nacl.hash
import nacl.utils
import segno

from messenger.errors import ListenAddressError
from messenger.identity import Identity

__all__ = [
    "DEFAULT_TTL",
    "INVITE_PREFIX",
    "INVITE_VERSION",
    "MAX_ADDRESSES",
    "MAX_DISPLAY_NAME_CHARS",
    "Address",
    "Invite",
    "InviteError",
    "InviteExpired",
    "InviteMalformed",
    "InviteUnsupported",
    "create_invite",
    "decode_invite",
    "encode_invite",
    "interface_addresses",
    "invite_qr",
    "invite_to_bytes",
    "parse_address",
    "parse_listen",
    "save_invite_qr",
]

INVITE_VERSION: Final = 1
DEFAULT_TTL: Final = 24 * 3600
INVITE_PREFIX: Final = "CHINWAG:"
MAX_ADDRESSES: Final = 16
MAX_DISPLAY_NAME_CHARS: Final = 64
MAX_DISPLAY_NAME_BYTES: Final = 255
KEY_LEN: Final = 32
SECRET_LEN: Final = 32
CHECKSUM_LEN: Final = 4
INVITE_ID_LEN: Final = 16

ADDR_HOSTNAME: Final = 1
ADDR_IPV4: Final = 4
ADDR_IPV6: Final = 6

_U64_LIMIT: Final = 1 << 64
_CHECKSUM_PERSON: Final = b"chinwag-inv-ck"
_INVITE_ID_PERSON: Final = b"chinwag-inv-id"
_INVITE_ID_DATA: Final = b"chinwag invite id v1"
_RAW: Final = nacl.encoding.RawEncoder

_B32_ALPHABET: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
_QR_ALPHANUMERIC: Final = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
_HOST_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Bidirectional formatting controls that could be used to spoof a display name.
_BIDI_CONTROLS: Final = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e") | frozenset(
    "\u2066\u2067\u2068\u2069"
)

_MALFORMED_MESSAGE: Final = (
    "This invite code is not valid. It may have been mistyped or truncated; "
    "please check it or ask for it again."
)


# --------------------------------------------------------------------------- errors


class InviteError(ValueError):
    """Base class for invite problems; ``str(exc)`` is a user-facing message."""


class InviteMalformed(InviteError):
    """The code is not a well-formed invite (mistyped, truncated, bad checksum...)."""

    def __init__(self, detail: str) -> None:
        super().__init__(_MALFORMED_MESSAGE)
        #: Technical reason, for logs; not meant for end users.
        self.detail = detail


class InviteUnsupported(InviteError):
    """The invite uses a format version this build does not understand."""

    def __init__(self, version: int) -> None:
        super().__init__(
            f"This invite uses format version {version}, which this version of Chinwag "
            "does not support. Updating Chinwag may help."
        )
        self.version = version


class InviteExpired(InviteError):
    """The invite's expiry time has passed."""

    def __init__(self, expires_at: int) -> None:
        try:
            when = datetime.fromtimestamp(expires_at, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        except (OverflowError, OSError, ValueError):
            when = f"unix time {expires_at}"
        super().__init__(f"This invite expired on {when}. Please ask for a new one.")
        self.expires_at = expires_at


# --------------------------------------------------------------------------- addresses


def _normalise_hostname(host: str) -> str:
    if not host.isascii():
        raise InviteError(f"{host!r} is not a valid host name (only ASCII host names are allowed)")
    name = host.lower()
    if name.endswith("."):
        name = name[:-1]
    labels = name.split(".")
    if (
        not name
        or len(name) > 253
        or not all(_HOST_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise InviteError(f"{host!r} is not a valid host name or IP address")
    return name


@dataclass(frozen=True, slots=True)
class Address:
    """A host (IPv4/IPv6 literal or DNS name) and TCP port.

    The host is normalised on construction: IP literals to their compressed
    form, host names to lowercase without a trailing dot.
    """

    host: str
    port: int

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or isinstance(self.port, bool):
            raise InviteError("port must be an integer")
        if not 1 <= self.port <= 65535:
            raise InviteError(f"port {self.port} is out of range (1-65535)")
        if not isinstance(self.host, str):
            raise InviteError("host must be a string")
        try:
            ip = ipaddress.ip_address(self.host)
        except ValueError:
            object.__setattr__(self, "host", _normalise_hostname(self.host))
            return
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
            raise InviteError("IPv6 addresses with a zone/scope id cannot be used in invites")
        object.__setattr__(self, "host", str(ip))

    @property
    def kind(self) -> int:
        """Wire type: 4 (IPv4), 6 (IPv6) or 1 (hostname)."""
        try:
            ip = ipaddress.ip_address(self.host)
        except ValueError:
            return ADDR_HOSTNAME
        return ADDR_IPV4 if ip.version == 4 else ADDR_IPV6

    def __str__(self) -> str:
        if self.kind == ADDR_IPV6:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """Parse ``"host:port"`` or ``"[ipv6]:port"``; raise :class:`InviteError` if invalid."""
    if not isinstance(text, str):
        raise InviteError("address must be a string")
    text = text.strip()
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise InviteError(f"{text!r} is not a valid address; expected [ipv6]:port")
        host, port_text = text[1:close], text[close + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InviteError(f"{host!r} is not a valid IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise InviteError(f"{text!r} is not a valid address; expected host:port")
        if ":" in host:
            raise InviteError("IPv6 addresses must be written in brackets: [address]:port")
    if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
        raise InviteError(f"{port_text!r} is not a valid port number")
    return Address(host, int(port_text))


# --------------------------------------------------------------------------- invite


def _check_display_name(name: object) -> str:
    if not isinstance(name, str):
        raise InviteError("display name must be a string")
    if len(name) > MAX_DISPLAY_NAME_CHARS:
        raise InviteError(f"display name is longer than {MAX_DISPLAY_NAME_CHARS} characters")
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cs") or ch in _BIDI_CONTROLS:
            raise InviteError("display name contains control characters")
    if len(name.encode("utf-8")) > MAX_DISPLAY_NAME_BYTES:
        raise InviteError("display name is too long")
    return name


def _check_bytes(name: str, value: object, length: int) -> None:
    if not isinstance(value, bytes) or len(value) != length:
        raise InviteError(f"{name} must be {length} bytes")


@dataclass(frozen=True, slots=True)
class Invite:
    """A first-contact invite. Construction validates every field (raises InviteError)."""

    ed25519_public: bytes
    x25519_public: bytes
    secret: bytes = field(repr=False)
    expires_at: int
    addresses: tuple[Address, ...] = ()
    display_name: str = ""

    def __post_init__(self) -> None:
        _check_bytes("ed25519_public", self.ed25519_public, KEY_LEN)
        _check_bytes("x25519_public", self.x25519_public, KEY_LEN)
        _check_bytes("secret", self.secret, SECRET_LEN)
        if not isinstance(self.expires_at, int) or isinstance(self.expires_at, bool):
            raise InviteError("expires_at must be an integer")
        if not 0 <= self.expires_at < _U64_LIMIT:
            raise InviteError("expires_at is out of range")
        if not isinstance(self.addresses, tuple):
            if isinstance(self.addresses, str | bytes) or not isinstance(self.addresses, Iterable):
                raise InviteError("addresses must be a sequence of Address")
            object.__setattr__(self, "addresses", tuple(self.addresses))
        if len(self.addresses) > MAX_ADDRESSES:
            raise InviteError(f"an invite can hold at most {MAX_ADDRESSES} addresses")
        if not all(isinstance(a, Address) for a in self.addresses):
            raise InviteError("addresses must be Address instances")
        _check_display_name(self.display_name)

    @property
    def invite_id(self) -> bytes:
        """16-byte identifier derived from the secret; safe to send in clear."""
        return nacl.hash.blake2b(
            _INVITE_ID_DATA,
            digest_size=INVITE_ID_LEN,
            key=self.secret,
            person=_INVITE_ID_PERSON,
            encoder=_RAW,
        )

    def is_expired(self, now: float) -> bool:
        return now >= self.expires_at


def _checksum(data: bytes) -> bytes:
    digest = nacl.hash.blake2b(data, digest_size=32, person=_CHECKSUM_PERSON, encoder=_RAW)
    return digest[:CHECKSUM_LEN]


def _encode_address(address: Address) -> bytes:
    kind = address.kind
    if kind == ADDR_HOSTNAME:
        host = address.host.encode("ascii")
        body = bytes([len(host)]) + host
    else:
        body = ipaddress.ip_address(address.host).packed
    return bytes([kind]) + body + address.port.to_bytes(2, "big")


def invite_to_bytes(invite: Invite) -> bytes:
    """The binary form (see module docstring), including the trailing checksum."""
    name = invite.display_name.encode("utf-8")
    body = b"".join(
        (
            bytes([INVITE_VERSION]),
            invite.ed25519_public,
            invite.x25519_public,
            invite.secret,
            invite.expires_at.to_bytes(8, "big"),
            bytes([len(name)]),
            name,
            bytes([len(invite.addresses)]),
            *(_encode_address(a) for a in invite.addresses),
        )
    )
    return body + _checksum(body)


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=")


def encode_invite(invite: Invite) -> str:
    """Text code: ``CHINWAG:`` + unpadded uppercase base32 of :func:`invite_to_bytes`."""
    return INVITE_PREFIX + _b32(invite_to_bytes(invite))


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise InviteMalformed("truncated")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]


def _decode_address(reader: _Reader) -> Address:
    kind = reader.u8()
    if kind == ADDR_IPV4:
        host = str(ipaddress.IPv4Address(reader.take(4)))
    elif kind == ADDR_IPV6:
        host = str(ipaddress.IPv6Address(reader.take(16)))
    elif kind == ADDR_HOSTNAME:
        raw = reader.take(reader.u8())
        if not raw.isascii():
            raise InviteMalformed("non-ASCII host name")
        host = raw.decode("ascii")
    else:
        raise InviteMalformed(f"unknown address type {kind}")
    port = int.from_bytes(reader.take(2), "big")
    try:
        address = Address(host, port)
    except InviteError as exc:
        raise InviteMalformed(f"bad address: {exc}") from None
    if address.kind != kind:
        raise InviteMalformed("host name entry holds an IP address")
    return address


def _parse(raw: bytes) -> Invite:
    if len(raw) < 1 + CHECKSUM_LEN:
        raise InviteMalformed("too short")
    body, checksum = raw[:-CHECKSUM_LEN], raw[-CHECKSUM_LEN:]
    if _checksum(body) != checksum:
        raise InviteMalformed("checksum mismatch")
    if body[0] != INVITE_VERSION:
        raise InviteUnsupported(body[0])
    reader = _Reader(body)
    reader.u8()
    ed25519_public = reader.take(KEY_LEN)
    x25519_public = reader.take(KEY_LEN)
    secret = reader.take(SECRET_LEN)
    expires_at = int.from_bytes(reader.take(8), "big")
    try:
        name = reader.take(reader.u8()).decode("utf-8")
    except UnicodeDecodeError:
        raise InviteMalformed("display name is not UTF-8") from None
    count = reader.u8()
    if count > MAX_ADDRESSES:
        raise InviteMalformed("too many addresses")
    addresses = tuple(_decode_address(reader) for _ in range(count))
    if reader.pos != len(body):
        raise InviteMalformed("extra bytes after the addresses")
    try:
        invite = Invite(
            ed25519_public=ed25519_public,
            x25519_public=x25519_public,
            secret=secret,
            expires_at=expires_at,
            addresses=addresses,
            display_name=name,
        )
    except InviteError as exc:
        raise InviteMalformed(f"invalid field: {exc}") from None
    if invite_to_bytes(invite) != raw:
        raise InviteMalformed("non-canonical encoding")
    return invite


def _normalise_text(text: object) -> str:
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("ascii")
        except UnicodeDecodeError:
            raise InviteMalformed("not ASCII") from None
    if not isinstance(text, str):
        raise InviteMalformed("not text")
    compact = "".join(text.split()).replace("-", "")
    if not compact.isascii():
        raise InviteMalformed("contains non-ASCII characters")
    compact = compact.upper()
    if compact.startswith(INVITE_PREFIX):
        compact = compact[len(INVITE_PREFIX) :]
    if not compact:
        raise InviteMalformed("empty")
    if not set(compact) <= _B32_ALPHABET:
        raise InviteMalformed("contains characters outside the base32 alphabet")
    return compact


def decode_invite(text: str, *, now: float) -> Invite:
    """Parse an invite code; only ever raises :class:`InviteError` subclasses.

    Raises :class:`InviteMalformed`, :class:`InviteUnsupported` or
    :class:`InviteExpired` (when ``now >= expires_at``).
    """
    compact = _normalise_text(text)
    if len(compact) % 8 in (1, 3, 6):
        raise InviteMalformed("truncated base32")
    try:
        raw = base64.b32decode(compact + "=" * (-len(compact) % 8))
    except (binascii.Error, ValueError):
        raise InviteMalformed("not base32") from None
    if _b32(raw) != compact:
        raise InviteMalformed("non-canonical base32")
    invite = _parse(raw)
    if invite.is_expired(now):
        raise InviteExpired(invite.expires_at)
    return invite


def create_invite(
    identity: Identity,
    *,
    addresses: Iterable[Address],
    display_name: str = "",
    ttl: int = DEFAULT_TTL,
    now: float,
) -> Invite:
    """Create a fresh invite for ``identity`` valid for ``ttl`` seconds from ``now``."""
    if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0:
        raise InviteError("ttl must be a positive number of seconds")
    return Invite(
        ed25519_public=identity.ed25519_public,
        x25519_public=identity.static_public,
        secret=nacl.utils.random(SECRET_LEN),
        expires_at=int(now) + ttl,
        addresses=tuple(addresses),
        display_name=display_name,
    )


# --------------------------------------------------------------------------- QR


def invite_qr(code: str) -> segno.QRCode:
    """QR code (error correction M, alphanumeric mode) holding exactly ``code``."""
    if not code or not set(code) <= _QR_ALPHANUMERIC:
        raise ValueError("invite code must be in canonical form (uppercase, as from encode_invite)")
    return segno.make(code, error="m", mode="alphanumeric", micro=False, boost_error=False)


def save_invite_qr(code: str, path: Path, *, scale: int = 8) -> None:
    """Write the invite QR as PNG or SVG, chosen by the file suffix."""
    kind = Path(path).suffix.lower().lstrip(".")
    if kind not in ("png", "svg"):
        raise ValueError(f"unsupported QR image type {Path(path).suffix!r}; use .png or .svg")
    if not isinstance(scale, int) or scale < 1:
        raise ValueError("scale must be a positive integer")
    invite_qr(code).save(str(path), kind=kind, scale=scale, border=4)


# --------------------------------------------------------------------------- local addresses


def interface_addresses(port: int) -> list[Address]:
    """Usable addresses of this machine (no loopback/link-local), IPv4 first."""
    v4: list[Address] = []
    v6: list[Address] = []
    seen: set[str] = set()
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            raw = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            try:
                addr = ipaddress.ip_address(raw.split("%", 1)[0])
            except ValueError:
                continue
            if (
                addr.is_loopback
                or addr.is_link_local
                or addr.is_unspecified
                or addr.is_multicast
                or str(addr) in seen
            ):
                continue
            seen.add(str(addr))
            (v4 if addr.version == 4 else v6).append(Address(str(addr), port))
    return v4 + v6


def parse_listen(text: str) -> tuple[str, int | None]:
    """HOST, HOST:PORT, [V6]:PORT or :PORT; port 0 or none means the remembered/free one."""
    host, sep, port_text = text.rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")):
        host, port_text = text, ""  # a bare host (or a bare IPv6 address)
    host = host.strip("[]")
    if port_text and not port_text.isdigit():
        raise ListenAddressError(f"--listen {text!r}: the port must be a number")
    port = int(port_text) if port_text else 0
    if port > 65535:
        raise ListenAddressError(f"--listen {text!r}: port out of range")
    return host, port or None

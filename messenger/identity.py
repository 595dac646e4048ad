"""Long-term identity keys, contact ids, fingerprints and safety numbers.

An :class:`Identity` is an Ed25519 signing key (the long-term identity) plus an
X25519 *static* key used in handshakes.  The static key is bound to the
identity by an Ed25519 signature (the *static certificate*) over
``b"chinwag static key v1" || static_public``, so the static key can be rotated
without changing who we are.

Everything here uses PyNaCl (libsodium) primitives only.

Storage layout of :meth:`Identity.to_bytes` (133 bytes)::

    magic          4   b"CWID"
    version        1   IDENTITY_FORMAT_VERSION (1)
    ed25519 seed  32   SigningKey seed
    x25519 secret 32   static private key
    certificate   64   Ed25519 signature over b"chinwag static key v1" || static_public

The static public key is recomputed from the private key on load, and the
certificate is verified, so a corrupted blob is rejected with
:class:`IdentityError`.

Safety numbers follow Signal's ``NumericFingerprintGenerator``: for each party,
``h0 = version(u16 BE, 0) || key || stable_id`` and
``h(i+1) = SHA-512(h(i) || key)`` for 5200 iterations, where ``stable_id`` is
the ASCII :func:`contact_id` of the key.  The first 30 bytes of the result give
six 5-byte big-endian chunks, each reduced mod 100000 and printed as five
digits.  The two 30-digit halves are ordered by the raw key bytes (smaller key
first), so both parties compute the same 60-digit string.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Final

import nacl.bindings
import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.signing

__all__ = [
    "CERTIFICATE_CONTEXT",
    "IDENTITY_FORMAT_VERSION",
    "SAFETY_NUMBER_ITERATIONS",
    "SAFETY_NUMBER_QR_VERSION",
    "ContactSecrets",
    "Identity",
    "IdentityError",
    "certify_static",
    "contact_id",
    "derive_contact_secrets",
    "fingerprint",
    "format_safety_number",
    "pairing_signature",
    "safety_number",
    "safety_number_qr_payload",
    "sas_commitment",
    "short_authentication_string",
    "verify_pairing_signature",
    "verify_safety_number_qr",
    "verify_static_certificate",
]

KEY_LEN: Final = 32
SIGNATURE_LEN: Final = 64

CERTIFICATE_CONTEXT: Final = b"chinwag static key v1"

IDENTITY_MAGIC: Final = b"CWID"
IDENTITY_FORMAT_VERSION: Final = 1
_IDENTITY_BLOB_LEN: Final = len(IDENTITY_MAGIC) + 1 + KEY_LEN + KEY_LEN + SIGNATURE_LEN

SAFETY_NUMBER_ITERATIONS: Final = 5200
_SAFETY_NUMBER_VERSION: Final = (0).to_bytes(2, "big")  # as Signal's FINGERPRINT_VERSION
SAFETY_NUMBER_QR_VERSION: Final = 1
_SAFETY_NUMBER_QR_LEN: Final = 1 + 2 * KEY_LEN

# BLAKE2b personalisation / salt strings (at most 16 bytes each, zero-padded by libsodium).
_CONTACT_ID_PERSON: Final = b"chinwag-cid-v1"
_CONTACT_ID_SALT: Final = b"contact-id"
_FINGERPRINT_PERSON: Final = b"chinwag-fpr-v1"
_FINGERPRINT_SALT: Final = b"fingerprint"
_PSK_PERSON: Final = b"chinwag-psk-v1"
_PSK_SALT: Final = b"contact-psk"
_DISCOVERY_PERSON: Final = b"chinwag-disc-v1"
_DISCOVERY_SALT: Final = b"discovery-key"

_SAS_PERSON: Final = b"chinwag-sas-v1"
_SAS_COMMIT_PERSON: Final = b"chinwag-sas-cmt"
SAS_NONCE_LEN: Final = 32
SAS_DIGITS: Final = 6
PAIRING_CONTEXT: Final = b"chinwag nearby pairing v1"

_RAW: Final = nacl.encoding.RawEncoder


class IdentityError(ValueError):
    """Invalid identity material: wrong lengths, bad signature, corrupt storage."""


def _require_len(name: str, value: object, length: int) -> bytes:
    if not isinstance(value, bytes) or len(value) != length:
        raise IdentityError(f"{name} must be {length} bytes")
    return value


def _blake2b(data: bytes, *, size: int, person: bytes, salt: bytes, key: bytes = b"") -> bytes:
    return nacl.hash.blake2b(
        data, digest_size=size, key=key, salt=salt, person=person, encoder=_RAW
    )


# --------------------------------------------------------------------------- certificates


def certify_static(signing_key: nacl.signing.SigningKey, static_public: bytes) -> bytes:
    """Return the 64-byte Ed25519 signature binding ``static_public`` to ``signing_key``."""
    _require_len("static public key", static_public, KEY_LEN)
    signed = signing_key.sign(CERTIFICATE_CONTEXT + static_public)
    return bytes(signed.signature)


def verify_static_certificate(
    ed25519_public: bytes, static_public: bytes, certificate: bytes
) -> None:
    """Check a static-key certificate; raise :class:`IdentityError` if it is not valid."""
    _require_len("Ed25519 public key", ed25519_public, KEY_LEN)
    _require_len("static public key", static_public, KEY_LEN)
    _require_len("static key certificate", certificate, SIGNATURE_LEN)
    try:
        verify_key = nacl.signing.VerifyKey(ed25519_public)
        verify_key.verify(CERTIFICATE_CONTEXT + static_public, certificate)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError) as exc:
        raise IdentityError("static key certificate does not verify") from exc


# --------------------------------------------------------------------------- identity


@dataclass(frozen=True, slots=True)
class Identity:
    """Our long-term Ed25519 identity plus the current certified X25519 static key."""

    signing_key: nacl.signing.SigningKey = field(repr=False)
    static_private: bytes = field(repr=False)
    static_public: bytes
    static_certificate: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.signing_key, nacl.signing.SigningKey):
            raise IdentityError("signing_key must be a nacl.signing.SigningKey")
        _require_len("static private key", self.static_private, KEY_LEN)
        _require_len("static public key", self.static_public, KEY_LEN)
        _require_len("static key certificate", self.static_certificate, SIGNATURE_LEN)
        derived = nacl.bindings.crypto_scalarmult_base(self.static_private)
        if not nacl.bindings.sodium_memcmp(derived, self.static_public):
            raise IdentityError("static public key does not match the static private key")
        verify_static_certificate(self.ed25519_public, self.static_public, self.static_certificate)

    @property
    def ed25519_public(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def contact_id(self) -> str:
        return contact_id(self.ed25519_public)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.ed25519_public)

    @classmethod
    def generate(cls) -> Identity:
        return cls._with_static(nacl.signing.SigningKey.generate())

    @classmethod
    def _with_static(cls, signing_key: nacl.signing.SigningKey) -> Identity:
        static_public, static_private = nacl.bindings.crypto_box_keypair()
        return cls(
            signing_key=signing_key,
            static_private=static_private,
            static_public=static_public,
            static_certificate=certify_static(signing_key, static_public),
        )

    def rotate_static(self) -> Identity:
        """Return a copy with a fresh X25519 static key (same Ed25519 identity)."""
        return self._with_static(self.signing_key)

    def to_bytes(self) -> bytes:
        """Serialise for storage (contains secret keys; store encrypted)."""
        return b"".join(
            (
                IDENTITY_MAGIC,
                bytes([IDENTITY_FORMAT_VERSION]),
                bytes(self.signing_key),
                self.static_private,
                self.static_certificate,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Identity:
        """Parse :meth:`to_bytes` output; raise :class:`IdentityError` if invalid."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise IdentityError("identity data must be bytes")
        data = bytes(data)
        if len(data) < len(IDENTITY_MAGIC) + 1 or not data.startswith(IDENTITY_MAGIC):
            raise IdentityError("not a Chinwag identity")
        version = data[len(IDENTITY_MAGIC)]
        if version != IDENTITY_FORMAT_VERSION:
            raise IdentityError(f"unsupported identity format version {version}")
        if len(data) != _IDENTITY_BLOB_LEN:
            raise IdentityError("identity data has the wrong length")
        offset = len(IDENTITY_MAGIC) + 1
        seed = data[offset : offset + KEY_LEN]
        offset += KEY_LEN
        static_private = data[offset : offset + KEY_LEN]
        offset += KEY_LEN
        certificate = data[offset : offset + SIGNATURE_LEN]
        try:
            signing_key = nacl.signing.SigningKey(seed)
            static_public = nacl.bindings.crypto_scalarmult_base(static_private)
        except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
            raise IdentityError("identity keys are invalid") from exc
        return cls(
            signing_key=signing_key,
            static_private=static_private,
            static_public=static_public,
            static_certificate=certificate,
        )


# --------------------------------------------------------------------------- ids & fingerprints


@functools.lru_cache(maxsize=4096)
def contact_id(ed25519_public: bytes) -> str:
    """32 lowercase hex chars: domain-separated BLAKE2b-128 of the Ed25519 public key.
    Cached: every group message shown names its author by this id."""
    _require_len("Ed25519 public key", ed25519_public, KEY_LEN)
    return _blake2b(ed25519_public, size=16, person=_CONTACT_ID_PERSON, salt=_CONTACT_ID_SALT).hex()


def conversation_id(a: bytes, b: bytes) -> bytes:
    """The id of the 1:1 conversation of two identity keys: the same on both sides."""
    low, high = sorted((a, b))
    return nacl.hash.blake2b(
        low + high, digest_size=16, person=b"chinwag-conv-1:1", encoder=nacl.encoding.RawEncoder
    )


def fingerprint(ed25519_public: bytes) -> str:
    """Human-readable key fingerprint: 8 space-separated groups of 4 uppercase hex digits.

    The digits are the first 16 bytes of a personalised BLAKE2b-256 of the key.
    """
    _require_len("Ed25519 public key", ed25519_public, KEY_LEN)
    digest = _blake2b(ed25519_public, size=32, person=_FINGERPRINT_PERSON, salt=_FINGERPRINT_SALT)
    hexed = digest[:16].hex().upper()
    return " ".join(hexed[i : i + 4] for i in range(0, len(hexed), 4))


# --------------------------------------------------------------------------- safety numbers


def _safety_number_half(key: bytes) -> str:
    stable_id = contact_id(key).encode("ascii")
    digest = _SAFETY_NUMBER_VERSION + key + stable_id
    for _ in range(SAFETY_NUMBER_ITERATIONS):
        digest = nacl.bindings.crypto_hash_sha512(digest + key)
    return "".join(
        f"{int.from_bytes(digest[i : i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5)
    )


def safety_number(local_ed25519: bytes, remote_ed25519: bytes) -> str:
    """60-digit safety number for a pair of identity keys; identical from both sides."""
    _require_len("local Ed25519 public key", local_ed25519, KEY_LEN)
    _require_len("remote Ed25519 public key", remote_ed25519, KEY_LEN)
    first, second = sorted((local_ed25519, remote_ed25519))
    return _safety_number_half(first) + _safety_number_half(second)


def format_safety_number(digits: str, *, lines: bool = False) -> str:
    """Format 60 digits as 12 groups of 5 (``lines=True``: 3 lines of 4 groups)."""
    if len(digits) != 60 or not (digits.isascii() and digits.isdigit()):
        raise ValueError("a safety number is exactly 60 digits")
    groups = [digits[i : i + 5] for i in range(0, 60, 5)]
    if lines:
        return "\n".join(" ".join(groups[i : i + 4]) for i in range(0, 12, 4))
    return " ".join(groups)


def safety_number_qr_payload(local_ed25519: bytes, remote_ed25519: bytes) -> bytes:
    """Payload to show as a QR for scan-to-verify: ``version || local || remote``.

    The payload is directional: the scanner checks that the shown *local* key is
    its *remote* key and vice versa, so scanning your own screen does not verify.
    """
    _require_len("local Ed25519 public key", local_ed25519, KEY_LEN)
    _require_len("remote Ed25519 public key", remote_ed25519, KEY_LEN)
    return bytes([SAFETY_NUMBER_QR_VERSION]) + local_ed25519 + remote_ed25519


def verify_safety_number_qr(payload: bytes, local_ed25519: bytes, remote_ed25519: bytes) -> bool:
    """True iff ``payload`` was produced by the peer for exactly this pair of keys.

    ``local_ed25519``/``remote_ed25519`` are from the scanner's point of view.
    """
    _require_len("local Ed25519 public key", local_ed25519, KEY_LEN)
    _require_len("remote Ed25519 public key", remote_ed25519, KEY_LEN)
    if not isinstance(payload, bytes) or len(payload) != _SAFETY_NUMBER_QR_LEN:
        return False
    if payload[0] != SAFETY_NUMBER_QR_VERSION:
        return False
    expected = bytes([SAFETY_NUMBER_QR_VERSION]) + remote_ed25519 + local_ed25519
    return bool(nacl.bindings.sodium_memcmp(payload, expected))


# --------------------------------------------------------------------------- contact secrets


@dataclass(frozen=True, slots=True)
class ContactSecrets:
    """Per-contact secrets derived from a first-contact handshake hash."""

    psk: bytes = field(repr=False)
    discovery_key: bytes = field(repr=False)


def derive_contact_secrets(handshake_hash: bytes) -> ContactSecrets:
    """Derive the contact PSK and discovery key from a handshake hash (32..64 bytes)."""
    if not isinstance(handshake_hash, bytes) or not 32 <= len(handshake_hash) <= 64:
        raise IdentityError("handshake hash must be 32 to 64 bytes")
    psk = _blake2b(b"", size=32, key=handshake_hash, person=_PSK_PERSON, salt=_PSK_SALT)
    discovery_key = _blake2b(
        b"", size=32, key=handshake_hash, person=_DISCOVERY_PERSON, salt=_DISCOVERY_SALT
    )
    return ContactSecrets(psk=psk, discovery_key=discovery_key)


# --------------------------------------------------------------------------- nearby pairing


def sas_commitment(nonce: bytes) -> bytes:
    """The initiator's commitment to its SAS nonce, sent before it sees the responder's keys."""
    _require_len("SAS nonce", nonce, SAS_NONCE_LEN)
    return _blake2b(nonce, size=32, person=_SAS_COMMIT_PERSON, salt=b"")


def short_authentication_string(handshake_hash: bytes, nonce: bytes) -> str:
    """Six decimal digits both users compare after an unauthenticated NEARBY handshake.

    `handshake_hash` is the Noise hash after message 2 (fixed once both ephemerals are
    known), `nonce` the initiator's committed nonce (revealed in message 3). Neither side
    can choose its contribution after seeing the other's, so a man in the middle matches
    both users' digits with probability 10^-6 per attempt (docs/protocol.md §15).
    """
    if not isinstance(handshake_hash, bytes) or not 32 <= len(handshake_hash) <= 64:
        raise IdentityError("handshake hash must be 32 to 64 bytes")
    _require_len("SAS nonce", nonce, SAS_NONCE_LEN)
    digest = _blake2b(handshake_hash + nonce, size=8, person=_SAS_PERSON, salt=b"")
    return f"{int.from_bytes(digest, 'big') % 10**SAS_DIGITS:0{SAS_DIGITS}d}"


def pairing_signature(signing_key: nacl.signing.SigningKey, handshake_hash: bytes) -> bytes:
    """Ed25519 signature binding an identity to one NEARBY session (its final hash)."""
    signed = signing_key.sign(PAIRING_CONTEXT + handshake_hash)
    return bytes(signed.signature)


def verify_pairing_signature(
    ed25519_public: bytes, handshake_hash: bytes, signature: bytes
) -> None:
    """Raise :class:`IdentityError` unless `signature` is `pairing_signature` by that key."""
    _require_len("Ed25519 public key", ed25519_public, KEY_LEN)
    _require_len("pairing signature", signature, SIGNATURE_LEN)
    try:
        nacl.signing.VerifyKey(ed25519_public).verify(PAIRING_CONTEXT + handshake_hash, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError) as exc:
        raise IdentityError("pairing signature does not verify") from exc

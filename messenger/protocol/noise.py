"""Sans-I/O Noise Protocol Framework (revision 34) for ``25519_ChaChaPoly_BLAKE2b``.

Everything here is pure ``bytes`` in / ``bytes`` out: no sockets, no asyncio, no
framing. The only cryptographic dependency is PyNaCl (libsodium):

* DH: X25519 (``crypto_scalarmult``), DHLEN = 32; an all-zero result (the peer
  sent a low-order point) is rejected with :class:`NoiseError`.
* Cipher: ChaCha20-Poly1305 (IETF), nonce = 4 zero bytes || 64-bit little-endian
  counter, 16-byte tag.
* Hash: BLAKE2b-512 (``crypto_generichash``), HASHLEN = 64, BLOCKLEN = 128, with
  HMAC and HKDF built exactly as in section 4.3 of the specification.

Supported handshake patterns (parsed from the protocol name): the one-way
patterns ``N K X``, the interactive patterns ``NN NK NX KN KK KX XN XK XX IN IK
IX`` and any combination of ``pskN`` modifiers, e.g.
``Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b``, ``Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b``
or ``Noise_NNpsk0+psk2_25519_ChaChaPoly_BLAKE2b``.

Typical use::

    init = HandshakeState(name, initiator=True, s=my_keys, psks=[psk])
    resp = HandshakeState(name, initiator=False, s=their_keys, psks=[psk])
    msg1 = init.write_message(b"hello")   # -> send over the wire
    resp.read_message(msg1)               # -> b"hello"
    ...                                   # until is_complete on both sides
    send, recv = init.split()             # oriented for *this* side

Any failure (bad MAC, wrong key/psk, malformed or truncated message, misuse of
the state machine) raises :class:`NoiseError`. A :class:`HandshakeState` that
failed a cryptographic check is dead; start a new one.
"""

from __future__ import annotations

import hmac as _hmac
import re as _re
from collections.abc import Sequence
from dataclasses import dataclass

# PyNaCl's own cffi binding of libsodium, for the transport's AEAD calls (_seal, _open).
from nacl._sodium import ffi as _ffi
from nacl._sodium import lib as _lib
from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_encrypt as _aead_encrypt,
)
from nacl.bindings import crypto_generichash_blake2b_salt_personal as _blake2b
from nacl.bindings import crypto_scalarmult as _scalarmult
from nacl.bindings import crypto_scalarmult_base as _scalarmult_base
from nacl.bindings import randombytes as _randombytes
from nacl.exceptions import CryptoError as _CryptoError

__all__ = [
    "DHLEN",
    "HASHLEN",
    "MAX_MESSAGE_LEN",
    "MAX_NONCE",
    "PSKLEN",
    "SUPPORTED_PATTERNS",
    "TAGLEN",
    "CipherState",
    "HandshakePattern",
    "HandshakeState",
    "KeyPair",
    "NoiseError",
    "SymmetricState",
    "UnsupportedProtocolError",
    "hkdf",
    "hmac_hash",
    "parse_protocol_name",
]

# --------------------------------------------------------------------------- constants

MAX_MESSAGE_LEN = 65535
"""Maximum size of any Noise message (handshake or transport), in bytes."""
MAX_PROTOCOL_NAME_LEN = 255
DHLEN = 32
KEYLEN = 32
PSKLEN = 32
TAGLEN = 16
HASHLEN = 64
BLOCKLEN = 128
MAX_NONCE = 2**64 - 1
"""Reserved nonce value: never used for encryption except inside REKEY."""
_MAX_PLAINTEXT = MAX_MESSAGE_LEN - TAGLEN

_ZERO32 = bytes(32)
_REKEY_NONCE = (MAX_NONCE << 32).to_bytes(12, "little")
_IPAD = bytes(i ^ 0x36 for i in range(256))
_OPAD = bytes(i ^ 0x5C for i in range(256))


class NoiseError(Exception):
    """Any Noise failure: handshake, decryption, validation or state-machine misuse."""


class UnsupportedProtocolError(NoiseError):
    """The protocol name is well-formed but names a pattern/modifier/suite we don't do."""


# --------------------------------------------------------------------------- primitives


def _hash(data: bytes) -> bytes:
    """HASH(): BLAKE2b with a 64-byte digest."""
    return _blake2b(data, digest_size=HASHLEN)


def hmac_hash(key: bytes, data: bytes) -> bytes:
    """HMAC-BLAKE2b per RFC 2104 (spec section 4.3), BLOCKLEN = 128."""
    if len(key) > BLOCKLEN:
        key = _hash(key)
    key = key.ljust(BLOCKLEN, b"\x00")
    inner = _hash(key.translate(_IPAD) + data)
    return _hash(key.translate(_OPAD) + inner)


def hkdf(chaining_key: bytes, input_key_material: bytes, num_outputs: int) -> tuple[bytes, ...]:
    """HKDF as defined in spec section 4.3 (2 or 3 outputs of HASHLEN bytes)."""
    if num_outputs not in (2, 3):
        raise ValueError("num_outputs must be 2 or 3")
    temp_key = hmac_hash(chaining_key, input_key_material)
    output1 = hmac_hash(temp_key, b"\x01")
    output2 = hmac_hash(temp_key, output1 + b"\x02")
    if num_outputs == 2:
        return output1, output2
    output3 = hmac_hash(temp_key, output2 + b"\x03")
    return output1, output2, output3


def _dh(private: bytes, public: bytes) -> bytes:
    """X25519; rejects low-order points (all-zero shared secret)."""
    try:
        shared = _scalarmult(private, public)
    except _CryptoError as exc:  # libsodium returns -1 on an all-zero result
        raise NoiseError("DH failed: peer public key is a low-order point") from exc
    if _hmac.compare_digest(shared, _ZERO32):
        raise NoiseError("DH failed: peer public key is a low-order point")
    return shared


def _check_len(name: str, value: object, length: int) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise NoiseError(f"{name} must be bytes, not {type(value).__name__}")
    value = bytes(value)
    if len(value) != length:
        raise NoiseError(f"{name} must be {length} bytes, got {len(value)}")
    return value


# --------------------------------------------------------------------------- key pairs


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An X25519 key pair (32-byte private scalar, 32-byte public key)."""

    private: bytes
    public: bytes

    def __post_init__(self) -> None:
        for name, value in (("private key", self.private), ("public key", self.public)):
            if type(value) is not bytes or len(value) != DHLEN:
                raise NoiseError(f"{name} must be {DHLEN} bytes")

    @classmethod
    def generate(cls) -> KeyPair:
        return cls.from_private(_randombytes(DHLEN))

    @classmethod
    def from_private(cls, private: bytes) -> KeyPair:
        private = _check_len("private key", private, DHLEN)
        try:
            public = _scalarmult_base(private)
        except _CryptoError as exc:
            raise NoiseError("invalid X25519 private key") from exc
        return cls(private, public)

    def __repr__(self) -> str:  # never leak the private key into logs
        return f"KeyPair(public={self.public.hex()})"


# --------------------------------------------------------------------------- CipherState


def _seal(plaintext: bytes, ad: bytes, nonce: bytes, key: bytes) -> bytes:
    """ChaCha20-Poly1305 (IETF) encryption: PyNaCl's crypto_aead_chacha20poly1305_ietf_
    encrypt without its argument checks, which cost more than the cipher itself on a 1 KiB
    frame (issue 15). Every frame passes here; CipherState checked types and lengths."""
    mlen = len(plaintext)
    out = _ffi.new("unsigned char[]", mlen + TAGLEN)
    if _lib.crypto_aead_chacha20poly1305_ietf_encrypt(
        out, _ffi.NULL, plaintext, mlen, ad or _ffi.NULL, len(ad), _ffi.NULL, nonce, key
    ):
        raise NoiseError("encryption failed")
    sealed: bytes = _ffi.buffer(out, mlen + TAGLEN)[:]
    return sealed


def _open(ciphertext: bytes, ad: bytes, nonce: bytes, key: bytes) -> bytes:
    """The matching decryption (crypto_aead_chacha20poly1305_ietf_decrypt, unchecked)."""
    mlen = len(ciphertext) - TAGLEN
    out = _ffi.new("unsigned char[]", max(mlen, 1))
    if _lib.crypto_aead_chacha20poly1305_ietf_decrypt(
        out, _ffi.NULL, _ffi.NULL, ciphertext, len(ciphertext), ad or _ffi.NULL, len(ad), nonce, key
    ):
        raise NoiseError("decryption failed: bad authentication tag")
    opened: bytes = _ffi.buffer(out, mlen)[:]
    return opened


class CipherState:
    """Spec section 5.1: a key ``k`` (or none) and a 64-bit nonce ``n``."""

    __slots__ = ("_k", "_n")

    def __init__(self, key: bytes | None = None) -> None:
        self._k: bytes | None = None if key is None else _check_len("cipher key", key, KEYLEN)
        self._n = 0

    def initialize_key(self, key: bytes | None) -> None:
        self._k = None if key is None else _check_len("cipher key", key, KEYLEN)
        self._n = 0

    @property
    def has_key(self) -> bool:
        return self._k is not None

    @property
    def nonce(self) -> int:
        return self._n

    @nonce.setter
    def nonce(self, value: int) -> None:
        if not isinstance(value, int) or not 0 <= value <= MAX_NONCE:
            raise NoiseError(f"nonce must be an int in [0, 2**64-1], got {value!r}")
        self._n = value

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        k = self._k
        if k is None:
            if len(plaintext) > MAX_MESSAGE_LEN:
                raise NoiseError(f"message too long: {len(plaintext)} > {MAX_MESSAGE_LEN}")
            return bytes(plaintext)
        n = self._n
        if n >= MAX_NONCE:
            raise NoiseError("nonce exhausted: this CipherState can not encrypt any more")
        if len(plaintext) > _MAX_PLAINTEXT:
            raise NoiseError(f"plaintext too long: {len(plaintext)} > {_MAX_PLAINTEXT} bytes")
        if type(plaintext) is not bytes:
            plaintext = bytes(plaintext)
        ciphertext = _seal(plaintext, bytes(ad), (n << 32).to_bytes(12, "little"), k)
        self._n = n + 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """Decrypt; raises :class:`NoiseError` on failure. Nonce advances only on success."""
        k = self._k
        if k is None:
            if len(ciphertext) > MAX_MESSAGE_LEN:
                raise NoiseError(f"message too long: {len(ciphertext)} > {MAX_MESSAGE_LEN}")
            return bytes(ciphertext)
        n = self._n
        if n >= MAX_NONCE:
            raise NoiseError("nonce exhausted: this CipherState can not decrypt any more")
        clen = len(ciphertext)
        if clen < TAGLEN:
            raise NoiseError(f"ciphertext too short: {clen} < {TAGLEN} bytes")
        if clen > MAX_MESSAGE_LEN:
            raise NoiseError(f"message too long: {clen} > {MAX_MESSAGE_LEN}")
        if type(ciphertext) is not bytes:
            ciphertext = bytes(ciphertext)
        plaintext = _open(ciphertext, bytes(ad), (n << 32).to_bytes(12, "little"), k)
        self._n = n + 1
        return plaintext

    def encrypt(self, plaintext: bytes) -> bytes:
        """Transport shortcut: ``encrypt_with_ad(b"", plaintext)``."""
        return self.encrypt_with_ad(b"", plaintext)

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Transport shortcut: ``decrypt_with_ad(b"", ciphertext)``."""
        return self.decrypt_with_ad(b"", ciphertext)

    def rekey(self) -> None:
        """REKEY(k) = ENCRYPT(k, 2**64-1, zerolen, zeros)[:32]; the nonce is unchanged."""
        if self._k is None:
            raise NoiseError("cannot rekey a CipherState without a key")
        self._k = _aead_encrypt(_ZERO32, None, _REKEY_NONCE, self._k)[:KEYLEN]

    def __repr__(self) -> str:
        return f"CipherState(has_key={self.has_key}, nonce={self._n})"


class _DiscardedCipherState(CipherState):
    """Stand-in for the unused direction of a one-way pattern (spec 7.4)."""

    __slots__ = ()

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        raise NoiseError("one-way pattern: this direction carries no transport messages")

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        raise NoiseError("one-way pattern: this direction carries no transport messages")

    def rekey(self) -> None:
        raise NoiseError("one-way pattern: this direction carries no transport messages")


# --------------------------------------------------------------------------- SymmetricState


class SymmetricState:
    """Spec section 5.2: chaining key ``ck``, handshake hash ``h`` and a CipherState."""

    __slots__ = ("cipher", "ck", "h")

    def __init__(self, protocol_name: bytes) -> None:
        if len(protocol_name) <= HASHLEN:
            self.h = protocol_name.ljust(HASHLEN, b"\x00")
        else:
            self.h = _hash(protocol_name)
        self.ck = self.h
        self.cipher = CipherState()

    def mix_key(self, input_key_material: bytes) -> None:
        self.ck, temp_k = hkdf(self.ck, input_key_material, 2)
        self.cipher.initialize_key(temp_k[:KEYLEN])

    def mix_hash(self, data: bytes) -> None:
        self.h = _hash(self.h + data)

    def mix_key_and_hash(self, input_key_material: bytes) -> None:
        self.ck, temp_h, temp_k = hkdf(self.ck, input_key_material, 3)
        self.mix_hash(temp_h)
        self.cipher.initialize_key(temp_k[:KEYLEN])

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        temp_k1, temp_k2 = hkdf(self.ck, b"", 2)
        return CipherState(temp_k1[:KEYLEN]), CipherState(temp_k2[:KEYLEN])


# --------------------------------------------------------------------------- patterns

# name -> (initiator pre-message, responder pre-message, message patterns)
_PATTERNS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, ...], ...]]] = {
    # one-way (spec 7.4)
    "N": ((), ("s",), (("e", "es"),)),
    "K": (("s",), ("s",), (("e", "es", "ss"),)),
    "X": ((), ("s",), (("e", "es", "s", "ss"),)),
    # interactive (spec 7.5)
    "NN": ((), (), (("e",), ("e", "ee"))),
    "NK": ((), ("s",), (("e", "es"), ("e", "ee"))),
    "NX": ((), (), (("e",), ("e", "ee", "s", "es"))),
    "KN": (("s",), (), (("e",), ("e", "ee", "se"))),
    "KK": (("s",), ("s",), (("e", "es", "ss"), ("e", "ee", "se"))),
    "KX": (("s",), (), (("e",), ("e", "ee", "se", "s", "es"))),
    "XN": ((), (), (("e",), ("e", "ee"), ("s", "se"))),
    "XK": ((), ("s",), (("e", "es"), ("e", "ee"), ("s", "se"))),
    "XX": ((), (), (("e",), ("e", "ee", "s", "es"), ("s", "se"))),
    "IN": ((), (), (("e", "s"), ("e", "ee", "se"))),
    "IK": ((), ("s",), (("e", "es", "s", "ss"), ("e", "ee", "se"))),
    "IX": ((), (), (("e", "s"), ("e", "ee", "se", "s", "es"))),
}
SUPPORTED_PATTERNS: frozenset[str] = frozenset(_PATTERNS)
_ONE_WAY = frozenset({"N", "K", "X"})
_DH_TOKENS = frozenset({"ee", "es", "se", "ss"})

_NAME_RE = _re.compile(r"([A-Z0-9]+)([a-z][a-z0-9+]*)?")
_PSK_RE = _re.compile(r"psk(0|[1-9][0-9]*)")


@dataclass(frozen=True, slots=True)
class HandshakePattern:
    """A parsed protocol name: pattern tokens with modifiers applied."""

    protocol_name: str
    pattern_name: str
    modifiers: tuple[str, ...]
    initiator_pre: tuple[str, ...]
    responder_pre: tuple[str, ...]
    messages: tuple[tuple[str, ...], ...]
    one_way: bool
    psk_count: int

    @property
    def is_psk(self) -> bool:
        return self.psk_count > 0


def parse_protocol_name(protocol_name: str) -> HandshakePattern:
    """Parse ``Noise_<pattern>_25519_ChaChaPoly_BLAKE2b``; raise NoiseError if bad/unsupported."""
    full_pattern = _pattern_part(protocol_name)
    m = _NAME_RE.fullmatch(full_pattern)
    if m is None:
        raise NoiseError(f"invalid handshake pattern {full_pattern!r}")
    base, modifier_str = m.group(1), m.group(2)
    if base not in _PATTERNS:
        raise UnsupportedProtocolError(f"unsupported handshake pattern {base!r}")
    init_pre, resp_pre, base_messages = _PATTERNS[base]

    modifiers: tuple[str, ...] = tuple(modifier_str.split("+")) if modifier_str else ()
    if len(set(modifiers)) != len(modifiers):
        raise NoiseError(f"duplicate pattern modifier in {full_pattern!r}")
    return HandshakePattern(
        protocol_name=protocol_name,
        pattern_name=base,
        modifiers=modifiers,
        initiator_pre=init_pre,
        responder_pre=resp_pre,
        messages=_with_psks(base, base_messages, modifiers),
        one_way=base in _ONE_WAY,
        psk_count=len(modifiers),  # every modifier is a pskN (others are refused)
    )


def _pattern_part(protocol_name: str) -> str:
    """The <pattern> of ``Noise_<pattern>_<dh>_<cipher>_<hash>``, once the rest is checked
    to name the one suite implemented here."""
    if not isinstance(protocol_name, str):
        raise NoiseError("protocol name must be a str")
    if not protocol_name.isascii() or len(protocol_name) > MAX_PROTOCOL_NAME_LEN:
        raise NoiseError(f"invalid protocol name {protocol_name!r}")
    parts = protocol_name.split("_")
    if len(parts) != 5 or parts[0] != "Noise":
        raise NoiseError(
            f"invalid protocol name {protocol_name!r}: "
            "expected Noise_<pattern>_<dh>_<cipher>_<hash>"
        )
    _, full_pattern, dh, cipher, hash_name = parts
    if dh != "25519":
        raise UnsupportedProtocolError(f"unsupported DH function {dh!r} (only 25519)")
    if cipher != "ChaChaPoly":
        raise UnsupportedProtocolError(f"unsupported cipher {cipher!r} (only ChaChaPoly)")
    if hash_name != "BLAKE2b":
        raise UnsupportedProtocolError(f"unsupported hash {hash_name!r} (only BLAKE2b)")
    return full_pattern


def _with_psks(
    base: str, base_messages: tuple[tuple[str, ...], ...], modifiers: tuple[str, ...]
) -> tuple[tuple[str, ...], ...]:
    """The base pattern's messages with each pskN modifier's token placed (spec 9.2)."""
    messages = [list(msg) for msg in base_messages]
    for mod in modifiers:
        pm = _PSK_RE.fullmatch(mod)
        if pm is None:
            raise UnsupportedProtocolError(f"unsupported pattern modifier {mod!r}")
        index = int(pm.group(1))
        if index == 0:
            messages[0].insert(0, "psk")
        elif index <= len(messages):
            messages[index - 1].append("psk")
        else:
            raise NoiseError(f"modifier {mod!r} needs {index} messages, {base} has {len(messages)}")
    return tuple(tuple(msg) for msg in messages)


def _min_message_lengths(pattern: HandshakePattern) -> tuple[int, ...]:
    """Exact overhead (bytes excluding the payload) of each handshake message."""
    has_key = pattern.is_psk and "e" in (pattern.initiator_pre + pattern.responder_pre)
    lengths = []
    for msg in pattern.messages:
        n = 0
        for tok in msg:
            if tok == "e":
                n += DHLEN
                if pattern.is_psk:
                    has_key = True
            elif tok == "s":
                n += DHLEN + (TAGLEN if has_key else 0)
            else:  # DH tokens and psk
                has_key = True
        lengths.append(n + (TAGLEN if has_key else 0))
    return tuple(lengths)


# --------------------------------------------------------------------------- HandshakeState


class HandshakeState:
    """Spec section 5.3. Drive with :meth:`write_message` / :meth:`read_message`."""

    # One parameter for each of the spec's Initialize(handshake_pattern, initiator,
    # prologue, s, e, rs, re), named as the spec names them, plus the psks of pskN.
    def __init__(  # noqa: PLR0913  (the spec's Initialize() parameters)
        self,
        protocol_name: str,
        *,
        initiator: bool,
        prologue: bytes = b"",
        s: KeyPair | None = None,
        e: KeyPair | None = None,
        rs: bytes | None = None,
        re: bytes | None = None,
        psks: Sequence[bytes] = (),
    ) -> None:
        pattern = parse_protocol_name(protocol_name)
        self._pattern = pattern
        self._initiator = bool(initiator)
        self._psk_mode = pattern.is_psk
        self._overheads = _min_message_lengths(pattern)

        if s is not None and not isinstance(s, KeyPair):
            raise NoiseError("s must be a KeyPair")
        if e is not None and not isinstance(e, KeyPair):
            raise NoiseError("e must be a KeyPair")
        self._s = s
        self._e = e
        self._rs = None if rs is None else _check_len("remote static key", rs, DHLEN)
        self._re = None if re is None else _check_len("remote ephemeral key", re, DHLEN)

        if isinstance(psks, bytes | bytearray | memoryview):
            raise NoiseError("psks must be a sequence of 32-byte keys, not a single bytes value")
        self._psks: list[bytes] = []
        self._psks_used = 0
        for psk in psks:
            self.set_psk(psk)

        self._check_given_keys(initiator)
        self._ss = SymmetricState(protocol_name.encode("ascii"))
        self._ss.mix_hash(bytes(prologue))
        self._mix_pre_messages(initiator)

        self._index = 0  # next message pattern
        self._failed = False
        self._split_done = False

    def _check_given_keys(self, initiator: bool) -> None:
        """Which keys must be given now (pre-messages, our static), and which must not be
        (they arrive in a message)."""
        pattern = self._pattern
        protocol_name = pattern.protocol_name
        local_pre = pattern.initiator_pre if initiator else pattern.responder_pre
        remote_pre = pattern.responder_pre if initiator else pattern.initiator_pre
        mine = range(0 if initiator else 1, len(pattern.messages), 2)
        theirs = range(1 if initiator else 0, len(pattern.messages), 2)
        local_sends_s = "s" in local_pre or any("s" in pattern.messages[i] for i in mine)
        remote_sends_s = any("s" in pattern.messages[i] for i in theirs)
        if local_sends_s and self._s is None:
            raise NoiseError(f"{protocol_name} requires a local static key pair (s)")
        if "e" in local_pre and self._e is None:
            raise NoiseError(f"{protocol_name} requires a pre-shared local ephemeral (e)")
        if "s" in remote_pre and self._rs is None:
            raise NoiseError(f"{protocol_name} requires the remote static public key (rs)")
        if "e" in remote_pre and self._re is None:
            raise NoiseError(f"{protocol_name} requires the remote ephemeral public key (re)")
        if remote_sends_s and self._rs is not None:
            raise NoiseError(f"{protocol_name} transmits the remote static key; do not pass rs")
        if "e" not in remote_pre and self._re is not None:
            raise NoiseError(f"{protocol_name} transmits the remote ephemeral key; do not pass re")

    def _mix_pre_messages(self, initiator: bool) -> None:
        """Spec 5.3 Initialize(): each pre-message public key is hashed in (and, in psk
        mode, an ephemeral also mixed into the key)."""
        pattern = self._pattern
        for owner_pre, is_local in (
            (pattern.initiator_pre, initiator),
            (pattern.responder_pre, not initiator),
        ):
            for tok in owner_pre:
                if tok == "s":
                    key = self._s.public if is_local and self._s else self._rs
                else:
                    key = self._e.public if is_local and self._e else self._re
                assert key is not None  # validated by _check_given_keys
                self._ss.mix_hash(key)
                if tok == "e" and self._psk_mode:
                    self._ss.mix_key(key)

    # ------------------------------------------------------------------ properties

    @property
    def protocol_name(self) -> str:
        return self._pattern.protocol_name

    @property
    def pattern(self) -> HandshakePattern:
        return self._pattern

    @property
    def initiator(self) -> bool:
        return self._initiator

    @property
    def is_complete(self) -> bool:
        return self._index >= len(self._pattern.messages)

    @property
    def is_my_turn(self) -> bool:
        """True if the next handshake step for this side is :meth:`write_message`."""
        if self.is_complete or self._failed:
            return False
        return (self._index % 2 == 0) == self._initiator

    @property
    def handshake_hash(self) -> bytes:
        """The handshake hash ``h`` (final, and usable for channel binding, once complete)."""
        return self._ss.h

    @property
    def remote_static(self) -> bytes | None:
        return self._rs

    @property
    def remote_ephemeral(self) -> bytes | None:
        return self._re

    @property
    def local_static(self) -> KeyPair | None:
        return self._s

    @property
    def local_ephemeral(self) -> KeyPair | None:
        return self._e

    @property
    def psks_needed(self) -> int:
        """How many more PSKs must still be supplied via :meth:`set_psk`."""
        return self._pattern.psk_count - self._psks_used - len(self._psks)

    # ------------------------------------------------------------------ psk

    def set_psk(self, psk: bytes) -> None:
        """Queue the next PSK; allowed any time before the 'psk' token that consumes it."""
        psk = _check_len("psk", psk, PSKLEN)
        if not self._psk_mode:
            raise NoiseError(f"{self._pattern.protocol_name} does not use a psk")
        if self._pattern.psk_count - self._psks_used - len(self._psks) <= 0:
            raise NoiseError(
                f"too many psks: {self._pattern.protocol_name} uses {self._pattern.psk_count}"
            )
        self._psks.append(psk)

    # ------------------------------------------------------------------ internals

    def _check_step(self, writing: bool) -> tuple[str, ...]:
        if self._failed:
            raise NoiseError("handshake already failed; start a new HandshakeState")
        if self.is_complete:
            raise NoiseError("handshake is complete; use split() for transport messages")
        if self.is_my_turn != writing:
            verb = "write" if writing else "read"
            raise NoiseError(f"out of turn: it is not this side's turn to {verb} a message")
        tokens = self._pattern.messages[self._index]
        needed = tokens.count("psk")
        if needed > len(self._psks):
            raise NoiseError("psk required by this message but not set; call set_psk() first")
        return tokens

    def _mix_dh(self, tok: str) -> None:
        if tok == "ee":
            local, remote = self._e, self._re
        elif tok == "ss":
            local, remote = self._s, self._rs
        elif (tok == "es") == self._initiator:  # initiator es / responder se
            local, remote = self._e, self._rs
        else:  # initiator se / responder es
            local, remote = self._s, self._re
        if local is None or remote is None:  # pragma: no cover - prevented by validation
            raise NoiseError(f"missing key for DH token {tok!r}")
        self._ss.mix_key(_dh(local.private, remote))

    def _finish_message(self) -> None:
        self._index += 1

    # ------------------------------------------------------------------ messages

    def write_message(self, payload: bytes = b"") -> bytes:
        """Produce the next handshake message carrying ``payload``."""
        tokens = self._check_step(writing=True)
        total = self._overheads[self._index] + len(payload)
        if total > MAX_MESSAGE_LEN:
            raise NoiseError(f"handshake message too long: {total} > {MAX_MESSAGE_LEN} bytes")
        ss = self._ss
        out: list[bytes] = []
        try:
            for tok in tokens:
                if tok == "e":
                    if self._e is None:
                        self._e = KeyPair.generate()
                    out.append(self._e.public)
                    ss.mix_hash(self._e.public)
                    if self._psk_mode:
                        ss.mix_key(self._e.public)
                elif tok == "s":
                    assert self._s is not None  # validated in __init__
                    out.append(ss.encrypt_and_hash(self._s.public))
                elif tok == "psk":
                    ss.mix_key_and_hash(self._psks.pop(0))
                    self._psks_used += 1
                else:
                    self._mix_dh(tok)
            out.append(ss.encrypt_and_hash(bytes(payload)))
        except NoiseError:
            self._failed = True
            raise
        self._finish_message()
        return b"".join(out)

    def read_message(self, message: bytes) -> bytes:
        """Consume the peer's next handshake message and return its payload."""
        tokens = self._check_step(writing=False)
        message = bytes(message)
        if len(message) > MAX_MESSAGE_LEN:
            raise NoiseError(f"handshake message too long: {len(message)} > {MAX_MESSAGE_LEN}")
        if len(message) < self._overheads[self._index]:
            raise NoiseError(
                f"handshake message too short: {len(message)} < "
                f"{self._overheads[self._index]} bytes"
            )
        ss = self._ss
        pos = 0
        try:
            for tok in tokens:
                if tok == "e":
                    re_pub = message[pos : pos + DHLEN]
                    pos += DHLEN
                    self._re = re_pub
                    ss.mix_hash(re_pub)
                    if self._psk_mode:
                        ss.mix_key(re_pub)
                elif tok == "s":
                    n = DHLEN + (TAGLEN if ss.cipher.has_key else 0)
                    self._rs = ss.decrypt_and_hash(message[pos : pos + n])
                    pos += n
                elif tok == "psk":
                    ss.mix_key_and_hash(self._psks.pop(0))
                    self._psks_used += 1
                else:
                    self._mix_dh(tok)
            payload = ss.decrypt_and_hash(message[pos:])
        except NoiseError:
            self._failed = True
            raise
        self._finish_message()
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        """Return ``(send, receive)`` transport CipherStates oriented for this side.

        May be called once, after the handshake completed. For one-way patterns the
        direction responder->initiator is disabled (its CipherState always raises).
        """
        if self._failed:
            raise NoiseError("handshake failed; cannot split")
        if not self.is_complete:
            raise NoiseError("handshake not complete; cannot split yet")
        if self._split_done:
            raise NoiseError("split() already called; transport keys are handed out once")
        self._split_done = True
        c1, c2 = self._ss.split()
        if self._pattern.one_way:
            c2 = _DiscardedCipherState()
        return (c1, c2) if self._initiator else (c2, c1)

    def __repr__(self) -> str:
        role = "initiator" if self._initiator else "responder"
        return (
            f"HandshakeState({self._pattern.protocol_name!r}, {role}, "
            f"message={self._index}/{len(self._pattern.messages)})"
        )

"""Onion keys and addresses (rend-spec-v3), pure."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

from nacl.bindings import crypto_scalarmult_ed25519_base_noclamp

from .errors import OnionAddressInvalid, OnionKeyInvalid

ONION_RE = re.compile(r"^([a-z2-7]{56})\.onion$")
KEY_SIZE = 64  # an ed25519 expanded secret key, as ADD_ONION ED25519-V3 takes it


def onion_address_from_public_key(public_key: bytes) -> str:
    """rend-spec-v3: base32(pubkey | SHA3-256(".onion checksum" | pubkey | 3)[:2] | 3)."""
    if len(public_key) != 32:
        raise OnionKeyInvalid("an ed25519 public key is 32 bytes")
    version = b"\x03"
    checksum = hashlib.sha3_256(b".onion checksum" + public_key + version).digest()[:2]
    return base64.b32encode(public_key + checksum + version).decode().lower() + ".onion"


def onion_address_from_key(key: bytes) -> str:
    """The address a stored key publishes (its public key is the clamped scalar times B)."""
    check_onion_key(key)
    return onion_address_from_public_key(crypto_scalarmult_ed25519_base_noclamp(key[:32]))


def check_onion_key(key: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise OnionKeyInvalid(f"an onion key is {KEY_SIZE} bytes, got {len(key)}")
    # An expanded ed25519 secret starts with a clamped scalar; anything else is not a key
    # tor made (a corrupted or foreign value).
    if key[0] & 7 or key[31] & 0x80 or not key[31] & 0x40:
        raise OnionKeyInvalid("not an ed25519 expanded secret key (scalar not clamped)")


def check_onion_address(address: str) -> str:
    """The address, lower-cased, if it is a v3 onion address with a valid checksum."""
    normal = address.strip().lower()
    match = ONION_RE.match(normal)
    if not match:
        raise OnionAddressInvalid(f"not a v3 onion address: {address!r}")
    raw = base64.b32decode(match.group(1).upper())
    if onion_address_from_public_key(raw[:32]) != normal:
        raise OnionAddressInvalid(f"onion address checksum or version is wrong: {address!r}")
    return normal


@dataclass(frozen=True, slots=True)
class OnionService:
    address: str  # "<56 chars>.onion"
    key: bytes  # 64-byte ed25519 expanded secret key: store it encrypted
    virtual_port: int
    target: tuple[str, int]
    pow_defence: bool = False  # tor's proof-of-work defence is on (tor >= 0.4.9)

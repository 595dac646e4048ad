from __future__ import annotations

import re

import nacl.bindings
import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messenger.identity import (
    CERTIFICATE_CONTEXT,
    SAFETY_NUMBER_ITERATIONS,
    SAFETY_NUMBER_QR_VERSION,
    ContactSecrets,
    Identity,
    IdentityError,
    certify_static,
    contact_id,
    derive_contact_secrets,
    fingerprint,
    format_safety_number,
    safety_number,
    safety_number_qr_payload,
    verify_safety_number_qr,
    verify_static_certificate,
)

# Fixed test keys: Ed25519 public keys for seeds 00..1f and 20..3f.
KEY_A = bytes(nacl.signing.SigningKey(bytes(range(32))).verify_key)
KEY_B = bytes(nacl.signing.SigningKey(bytes(range(32, 64))).verify_key)


def _ed_public() -> bytes:
    return bytes(nacl.signing.SigningKey.generate().verify_key)


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_fixed_keys_are_what_the_kats_assume() -> None:
    assert KEY_A.hex() == "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    assert KEY_B.hex() == "29acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc9322966dd7"


# --------------------------------------------------------------------------- identity


def test_generate_shapes_and_invariants() -> None:
    ident = Identity.generate()
    assert len(ident.ed25519_public) == 32
    assert ident.ed25519_public == bytes(ident.signing_key.verify_key)
    assert len(ident.static_private) == 32
    assert len(ident.static_public) == 32
    assert len(ident.static_certificate) == 64
    assert nacl.bindings.crypto_scalarmult_base(ident.static_private) == ident.static_public
    verify_static_certificate(ident.ed25519_public, ident.static_public, ident.static_certificate)
    assert ident.contact_id == contact_id(ident.ed25519_public)
    assert ident.fingerprint == fingerprint(ident.ed25519_public)


def test_generate_is_random() -> None:
    a, b = Identity.generate(), Identity.generate()
    assert a.ed25519_public != b.ed25519_public
    assert a.static_public != b.static_public


def test_repr_does_not_leak_secrets() -> None:
    ident = Identity.generate()
    text = repr(ident)
    assert repr(ident.static_private) not in text
    assert repr(bytes(ident.signing_key)) not in text
    assert ident.static_private.hex() not in text


def test_to_from_bytes_round_trip() -> None:
    ident = Identity.generate()
    blob = ident.to_bytes()
    assert len(blob) == 133
    again = Identity.from_bytes(blob)
    assert again == ident
    assert bytes(again.signing_key) == bytes(ident.signing_key)
    assert again.static_private == ident.static_private
    assert again.static_public == ident.static_public
    assert again.static_certificate == ident.static_certificate
    assert Identity.from_bytes(bytearray(blob)) == ident


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b"",
        lambda b: b[:-1],
        lambda b: b + b"\x00",
        lambda b: b"XWID" + b[4:],
        lambda b: b[:4] + b"\x02" + b[5:],
        lambda b: b[:4] + b"\x00" + b[5:],
        lambda b: b[:-1] + bytes([b[-1] ^ 1]),  # certificate bit flip
    ],
)
def test_from_bytes_rejects_corruption(mutate: object) -> None:
    blob = Identity.generate().to_bytes()
    with pytest.raises(IdentityError):
        Identity.from_bytes(mutate(blob))  # type: ignore[operator]


def test_from_bytes_rejects_non_bytes() -> None:
    with pytest.raises(IdentityError):
        Identity.from_bytes("not bytes")  # type: ignore[arg-type]


def test_from_bytes_every_bit_flip_is_rejected_or_harmless() -> None:
    ident = Identity.generate()
    blob = ident.to_bytes()
    for bit in range(len(blob) * 8):
        try:
            other = Identity.from_bytes(_flip(blob, bit))
        except IdentityError:
            continue
        # Only X25519 bits that are clamped away can survive; the keys must be unchanged.
        assert 5 * 8 + 32 * 8 <= bit < 5 * 8 + 64 * 8, bit
        assert other.ed25519_public == ident.ed25519_public
        assert other.static_public == ident.static_public


def test_constructor_validates() -> None:
    ident = Identity.generate()
    other = Identity.generate()
    with pytest.raises(IdentityError):
        Identity(
            ident.signing_key, ident.static_private, other.static_public, ident.static_certificate
        )
    with pytest.raises(IdentityError):
        Identity(
            ident.signing_key, ident.static_private, ident.static_public, other.static_certificate
        )
    with pytest.raises(IdentityError):
        Identity(
            other.signing_key, ident.static_private, ident.static_public, ident.static_certificate
        )
    with pytest.raises(IdentityError):
        Identity(ident.signing_key, ident.static_private[:31], ident.static_public, b"\x00" * 64)
    with pytest.raises(IdentityError):
        Identity(b"\x00" * 32, ident.static_private, ident.static_public, ident.static_certificate)  # type: ignore[arg-type]


def test_rotate_static() -> None:
    ident = Identity.generate()
    rotated = ident.rotate_static()
    assert rotated.ed25519_public == ident.ed25519_public
    assert bytes(rotated.signing_key) == bytes(ident.signing_key)
    assert rotated.static_public != ident.static_public
    assert rotated.static_private != ident.static_private
    verify_static_certificate(
        rotated.ed25519_public, rotated.static_public, rotated.static_certificate
    )
    # The old certificate does not cover the new key.
    with pytest.raises(IdentityError):
        verify_static_certificate(
            rotated.ed25519_public, rotated.static_public, ident.static_certificate
        )
    assert Identity.from_bytes(rotated.to_bytes()) == rotated


# --------------------------------------------------------------------------- certificates


def test_certificate_is_signature_over_context_and_key() -> None:
    sk = nacl.signing.SigningKey.generate()
    static_public = nacl.bindings.crypto_box_keypair()[0]
    cert = certify_static(sk, static_public)
    assert len(cert) == 64
    sk.verify_key.verify(CERTIFICATE_CONTEXT + static_public, cert)
    assert CERTIFICATE_CONTEXT == b"chinwag static key v1"


def test_certificate_verification() -> None:
    ident = Identity.generate()
    ed, static, cert = ident.ed25519_public, ident.static_public, ident.static_certificate
    verify_static_certificate(ed, static, cert)
    with pytest.raises(IdentityError):
        verify_static_certificate(Identity.generate().ed25519_public, static, cert)
    with pytest.raises(IdentityError):
        verify_static_certificate(ed, Identity.generate().static_public, cert)
    for bit in range(64 * 8):
        with pytest.raises(IdentityError):
            verify_static_certificate(ed, static, _flip(cert, bit))
    for bit in range(32 * 8):
        with pytest.raises(IdentityError):
            verify_static_certificate(ed, _flip(static, bit), cert)
        with pytest.raises(IdentityError):
            verify_static_certificate(_flip(ed, bit), static, cert)


@pytest.mark.parametrize(
    ("ed", "static", "cert"),
    [
        (b"\x00" * 31, b"\x00" * 32, b"\x00" * 64),
        (b"\x00" * 32, b"\x00" * 33, b"\x00" * 64),
        (b"\x00" * 32, b"\x00" * 32, b"\x00" * 63),
        (b"\x00" * 32, b"\x00" * 32, b"\x00" * 64),  # small-order key, zero signature
        ("x" * 32, b"\x00" * 32, b"\x00" * 64),
    ],
)
def test_certificate_verification_rejects_bad_inputs(ed: bytes, static: bytes, cert: bytes) -> None:
    with pytest.raises(IdentityError):
        verify_static_certificate(ed, static, cert)


def test_certify_rejects_bad_length() -> None:
    with pytest.raises(IdentityError):
        certify_static(nacl.signing.SigningKey.generate(), b"\x01" * 31)


def test_certificate_is_not_a_signature_over_the_bare_key() -> None:
    sk = nacl.signing.SigningKey.generate()
    static_public = nacl.bindings.crypto_box_keypair()[0]
    bare = bytes(sk.sign(static_public).signature)
    with pytest.raises(IdentityError):
        verify_static_certificate(bytes(sk.verify_key), static_public, bare)


# --------------------------------------------------------------------------- ids and fingerprints


def test_contact_id_format_and_kat() -> None:
    cid = contact_id(KEY_A)
    assert re.fullmatch(r"[0-9a-f]{32}", cid)
    assert cid == "15ed9882026b18102f97c8f3aefa9697"
    assert contact_id(KEY_A) == cid
    assert contact_id(KEY_B) != cid
    # Domain separated: not a plain (unpersonalised) BLAKE2b-128 of the key.
    plain = nacl.bindings.crypto_generichash_blake2b_salt_personal(KEY_A, digest_size=16)
    assert cid != plain.hex()


def test_fingerprint_format_and_kat() -> None:
    fp = fingerprint(KEY_A)
    assert re.fullmatch(r"([0-9A-F]{4} ){7}[0-9A-F]{4}", fp)
    assert fp == "ED4F 3221 6BCD 4A11 2E97 A0A6 7AC1 5510"
    assert fingerprint(KEY_B) != fp
    assert fp.replace(" ", "").lower() != contact_id(KEY_A)


@pytest.mark.parametrize("func", [contact_id, fingerprint])
def test_id_functions_reject_bad_keys(func: object) -> None:
    for bad in (b"", b"\x00" * 31, b"\x00" * 33, "a" * 32):
        with pytest.raises(IdentityError):
            func(bad)  # type: ignore[operator]


# --------------------------------------------------------------------------- safety numbers


def _reference_half(key: bytes) -> str:
    """Signal NumericFingerprintGenerator.getFingerprint + getEncodedChunk, written out."""
    stable_id = contact_id(key).encode()
    digest = b"\x00\x00" + key + stable_id
    for _ in range(5200):
        digest = nacl.bindings.crypto_hash_sha512(digest + key)
    out = ""
    for i in range(6):
        chunk = digest[i * 5 : i * 5 + 5]
        value = (chunk[0] << 32) | (chunk[1] << 24) | (chunk[2] << 16) | (chunk[3] << 8) | chunk[4]
        out += f"{value % 100000:05d}"
    return out


def test_safety_number_known_answer() -> None:
    expected = "880952238133126277783434150509223263012162018269808755614056"
    assert safety_number(KEY_A, KEY_B) == expected
    assert safety_number(KEY_B, KEY_A) == expected
    assert SAFETY_NUMBER_ITERATIONS == 5200
    # Halves are ordered by key bytes (KEY_A < KEY_B).
    assert expected == _reference_half(KEY_A) + _reference_half(KEY_B)


def test_safety_number_symmetric_and_shape() -> None:
    a, b = _ed_public(), _ed_public()
    sn = safety_number(a, b)
    assert len(sn) == 60
    assert sn.isdigit()
    assert sn == safety_number(b, a)
    lo, hi = sorted((a, b))
    assert sn[:30] == _reference_half(lo)
    assert sn[30:] == _reference_half(hi)


def test_safety_number_changes_when_a_key_changes() -> None:
    a, b, c = _ed_public(), _ed_public(), _ed_public()
    base = safety_number(a, b)
    assert safety_number(a, c) != base
    assert safety_number(c, b) != base
    assert safety_number(_flip(a, 0), b) != base
    assert safety_number(a, _flip(b, 255)) != base


def test_safety_number_same_key_twice() -> None:
    sn = safety_number(KEY_A, KEY_A)
    assert sn[:30] == sn[30:]


def test_safety_number_rejects_bad_keys() -> None:
    with pytest.raises(IdentityError):
        safety_number(KEY_A, KEY_B[:31])
    with pytest.raises(IdentityError):
        safety_number(b"", KEY_B)


def test_format_safety_number() -> None:
    digits = "".join(str(i % 10) for i in range(60))
    flat = format_safety_number(digits)
    assert flat.split(" ") == [digits[i : i + 5] for i in range(0, 60, 5)]
    multi = format_safety_number(digits, lines=True)
    lines = multi.split("\n")
    assert len(lines) == 3
    assert all(len(line.split(" ")) == 4 for line in lines)
    assert multi.replace("\n", " ") == flat
    for bad in ("", "1" * 59, "1" * 61, "a" * 60, "\u0661" * 60):
        with pytest.raises(ValueError):
            format_safety_number(bad)


def test_safety_number_qr_payload_round_trip() -> None:
    alice, bob = _ed_public(), _ed_public()
    shown_by_alice = safety_number_qr_payload(alice, bob)
    assert len(shown_by_alice) == 65
    assert shown_by_alice[0] == SAFETY_NUMBER_QR_VERSION
    # Bob scans Alice's screen: from Bob's side, local = bob, remote = alice.
    assert verify_safety_number_qr(shown_by_alice, bob, alice)
    # Alice scanning her own screen must not verify.
    assert not verify_safety_number_qr(shown_by_alice, alice, bob)
    # A different key on either side fails.
    mallory = _ed_public()
    assert not verify_safety_number_qr(shown_by_alice, bob, mallory)
    assert not verify_safety_number_qr(shown_by_alice, mallory, alice)
    assert not verify_safety_number_qr(safety_number_qr_payload(mallory, bob), bob, alice)


def test_safety_number_qr_rejects_garbage() -> None:
    alice, bob = _ed_public(), _ed_public()
    good = safety_number_qr_payload(alice, bob)
    assert not verify_safety_number_qr(b"", bob, alice)
    assert not verify_safety_number_qr(good[:-1], bob, alice)
    assert not verify_safety_number_qr(good + b"\x00", bob, alice)
    assert not verify_safety_number_qr(bytes([2]) + good[1:], bob, alice)
    assert not verify_safety_number_qr("text", bob, alice)  # type: ignore[arg-type]
    for bit in range(len(good) * 8):
        assert not verify_safety_number_qr(_flip(good, bit), bob, alice)


@settings(max_examples=50)
@given(st.binary(min_size=65, max_size=65))
def test_safety_number_qr_random_payloads(payload: bytes) -> None:
    assert not verify_safety_number_qr(payload, KEY_A, KEY_B) or payload == (
        safety_number_qr_payload(KEY_B, KEY_A)
    )


# --------------------------------------------------------------------------- contact secrets


def test_derive_contact_secrets_kat_and_properties() -> None:
    secrets = derive_contact_secrets(bytes(range(64)))
    assert isinstance(secrets, ContactSecrets)
    assert secrets.psk.hex() == ("6d8d887c4b3e720761216dce00dc03bf9dfd57f1344e1a183eec2c6be303a305")
    assert secrets.discovery_key.hex() == (
        "9b2ca576ffd45beea042994521488e5a4f9ca1917c0f090f75c35194eabe4dfd"
    )
    assert derive_contact_secrets(bytes(range(64))) == secrets
    assert secrets.psk.hex() not in repr(secrets)
    assert secrets.discovery_key.hex() not in repr(secrets)


@given(st.binary(min_size=32, max_size=64), st.binary(min_size=32, max_size=64))
def test_derive_contact_secrets_both_sides_agree(h1: bytes, h2: bytes) -> None:
    s1 = derive_contact_secrets(h1)
    assert derive_contact_secrets(bytes(h1)) == s1
    assert len(s1.psk) == 32
    assert len(s1.discovery_key) == 32
    assert s1.psk != s1.discovery_key
    assert s1.psk != h1[:32]
    if h1 != h2:
        s2 = derive_contact_secrets(h2)
        assert s2.psk != s1.psk
        assert s2.discovery_key != s1.discovery_key


@pytest.mark.parametrize("bad", [b"", b"\x00" * 31, b"\x00" * 65, "x" * 32])
def test_derive_contact_secrets_rejects_bad_hash(bad: object) -> None:
    with pytest.raises(IdentityError):
        derive_contact_secrets(bad)  # type: ignore[arg-type]

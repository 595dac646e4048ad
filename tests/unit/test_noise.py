"""Tests for messenger.protocol.noise: interop with the independent `noiseprotocol` package,
failure modes, and hypothesis property tests."""

from __future__ import annotations

import hashlib
import hmac
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from noise.connection import Keypair, NoiseConnection

from messenger.protocol.noise import (
    MAX_MESSAGE_LEN,
    MAX_NONCE,
    CipherState,
    HandshakeState,
    KeyPair,
    NoiseError,
    UnsupportedProtocolError,
    hkdf,
    hmac_hash,
    parse_protocol_name,
)

# Self-generated fixed test keys (random, not from any published vector file).
INIT_STATIC = KeyPair.from_private(
    bytes.fromhex("3f3b290470a1d0aba86b2623a32c67298a8b04ce19bb07a9c26b8fa6ea456851")
)
RESP_STATIC = KeyPair.from_private(
    bytes.fromhex("129bf72ecc499baa424b434ab83afd71a1009b72dbc47420ce203e71c11c08a1")
)
INIT_EPHEMERAL = KeyPair.from_private(
    bytes.fromhex("67acf81966ef1dbce0899c6c1ef9927d5ad5f3b1b35d5e0409f2926ff2af9bdc")
)
RESP_EPHEMERAL = KeyPair.from_private(
    bytes.fromhex("fd09a3429d42b66e19e8f5dfb37e05cd5089d71a89b56fbfee9ce06056c473a9")
)
PSK_A = bytes.fromhex("0f1bdcf6193de54c1140f1deddd9ec5f5514b600a164a8a7b3378000b338c88d")
PSK_B = bytes.fromhex("8c37eac62af1eb83ca71d3b43808cae552d17a57668293de60e9d2d229dc4454")
PROLOGUE = bytes.fromhex("2df753dbd31cc35ef8f57150405596f1792781114268fce86246269689a9cb2e")

SUITE = "_25519_ChaChaPoly_BLAKE2b"
XX = "Noise_XX" + SUITE
NN = "Noise_NN" + SUITE
IK = "Noise_IK" + SUITE
XXPSK3 = "Noise_XXpsk3" + SUITE
IKPSK2 = "Noise_IKpsk2" + SUITE

# Low-order points of Curve25519 (all give an all-zero X25519 output).
LOW_ORDER_POINTS = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Keys:
    """Which keys each side gets for a given pattern."""

    init_s: KeyPair | None
    resp_s: KeyPair | None
    init_rs: bytes | None
    resp_rs: bytes | None
    psks: tuple[bytes, ...]


def keys_for(name: str) -> Keys:
    p = parse_protocol_name(name)
    init_needs_s = "s" in p.initiator_pre or any("s" in m for m in p.messages[0::2])
    resp_needs_s = "s" in p.responder_pre or any("s" in m for m in p.messages[1::2])
    psks = (PSK_A, PSK_B, PSK_A, PSK_B)[: p.psk_count]
    return Keys(
        init_s=INIT_STATIC if init_needs_s else None,
        resp_s=RESP_STATIC if resp_needs_s else None,
        init_rs=RESP_STATIC.public if "s" in p.responder_pre else None,
        resp_rs=INIT_STATIC.public if "s" in p.initiator_pre else None,
        psks=psks,
    )


def ours(name: str, initiator: bool, *, psks: Sequence[bytes] | None = None) -> HandshakeState:
    k = keys_for(name)
    return HandshakeState(
        name,
        initiator=initiator,
        prologue=PROLOGUE,
        s=k.init_s if initiator else k.resp_s,
        e=INIT_EPHEMERAL if initiator else RESP_EPHEMERAL,
        rs=k.init_rs if initiator else k.resp_rs,
        psks=k.psks if psks is None else psks,
    )


class Theirs:
    """Adapter giving noiseprotocol's NoiseConnection the same shape as ours."""

    def __init__(self, name: str, initiator: bool) -> None:
        k = keys_for(name)
        conn = NoiseConnection.from_name(name.encode())
        if initiator:
            conn.set_as_initiator()
        else:
            conn.set_as_responder()
        conn.set_prologue(PROLOGUE)
        s = k.init_s if initiator else k.resp_s
        rs = k.init_rs if initiator else k.resp_rs
        if s is not None:
            conn.set_keypair_from_private_bytes(Keypair.STATIC, s.private)
        if rs is not None:
            conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, rs)
        eph = INIT_EPHEMERAL if initiator else RESP_EPHEMERAL
        conn.set_keypair_from_private_bytes(Keypair.EPHEMERAL, eph.private)
        if k.psks:
            conn.set_psks(psks=list(k.psks))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "ephemeral already set" warning
            conn.start_handshake()
        self.conn = conn

    @property
    def is_complete(self) -> bool:
        return bool(self.conn.handshake_finished)

    @property
    def handshake_hash(self) -> bytes:
        return bytes(self.conn.get_handshake_hash())

    def write_message(self, payload: bytes) -> bytes:
        return bytes(self.conn.write_message(payload))

    def read_message(self, message: bytes) -> bytes:
        return bytes(self.conn.read_message(message))

    def encrypt(self, data: bytes) -> bytes:
        return bytes(self.conn.encrypt(data))

    def decrypt(self, data: bytes) -> bytes:
        return bytes(self.conn.decrypt(data))


class OursAdapter:
    def __init__(self, name: str, initiator: bool) -> None:
        self.hs = ours(name, initiator)
        self.send: CipherState | None = None
        self.recv: CipherState | None = None

    @property
    def is_complete(self) -> bool:
        return self.hs.is_complete

    @property
    def handshake_hash(self) -> bytes:
        return self.hs.handshake_hash

    def write_message(self, payload: bytes) -> bytes:
        return self.hs.write_message(payload)

    def read_message(self, message: bytes) -> bytes:
        return self.hs.read_message(message)

    def _split(self) -> None:
        if self.send is None:
            self.send, self.recv = self.hs.split()

    def encrypt(self, data: bytes) -> bytes:
        self._split()
        assert self.send is not None
        return self.send.encrypt_with_ad(b"", data)

    def decrypt(self, data: bytes) -> bytes:
        self._split()
        assert self.recv is not None
        return self.recv.decrypt_with_ad(b"", data)


Party = OursAdapter | Theirs


def transcript(name: str, init: Party, resp: Party) -> tuple[list[bytes], bytes]:
    """Run handshake + transport; return every wire message and the handshake hash."""
    one_way = parse_protocol_name(name).one_way
    wire: list[bytes] = []
    i = 0
    while not (init.is_complete and resp.is_complete):
        writer, reader = (init, resp) if i % 2 == 0 else (resp, init)
        payload = f"handshake payload {i}".encode() * (i + 1)
        msg = writer.write_message(payload)
        assert reader.read_message(msg) == payload
        wire.append(msg)
        i += 1
        assert i < 10
    assert init.handshake_hash == resp.handshake_hash
    for j in range(8):
        from_init = one_way or j % 2 == 0
        sender, receiver = (init, resp) if from_init else (resp, init)
        payload = bytes([j]) * (j * 37) + b"transport"
        ct = sender.encrypt(payload)
        assert receiver.decrypt(ct) == payload
        wire.append(ct)
    return wire, init.handshake_hash


INTEROP_PROTOCOLS = [
    XXPSK3,
    IKPSK2,
    XX,
    NN,
    *(f"Noise_{p}{SUITE}" for p in ["N", "K", "X", "NK", "NX", "KN", "KK", "KX", "XN", "XK"]),
    *(f"Noise_{p}{SUITE}" for p in ["IN", "IK", "IX"]),
    *(
        f"Noise_{p}{SUITE}"
        for p in ["Npsk0", "Xpsk1", "NNpsk0", "NNpsk2", "NNpsk0+psk2", "XKpsk3", "KKpsk0"]
    ),
    *(f"Noise_{p}{SUITE}" for p in ["IXpsk2", "XXpsk0+psk1+psk2+psk3", "INpsk1"]),
]


@pytest.mark.parametrize("name", INTEROP_PROTOCOLS)
@pytest.mark.parametrize("roles", ["ours-theirs", "theirs-ours"])
def test_interop_with_noiseprotocol(name: str, roles: str) -> None:
    reference, ref_hash = transcript(name, Theirs(name, True), Theirs(name, False))
    own, own_hash = transcript(name, OursAdapter(name, True), OursAdapter(name, False))
    assert own == reference
    assert own_hash == ref_hash
    if roles == "ours-theirs":
        mixed, mixed_hash = transcript(name, OursAdapter(name, True), Theirs(name, False))
    else:
        mixed, mixed_hash = transcript(name, Theirs(name, True), OursAdapter(name, False))
    assert mixed == reference
    assert mixed_hash == ref_hash
    assert len(ref_hash) == 64


def test_rekey_interop() -> None:
    name = XXPSK3
    a, b = OursAdapter(name, True), Theirs(name, False)
    transcript(name, a, b)
    assert a.send is not None and a.recv is not None
    a.send.rekey()
    b.conn.rekey_inbound_cipher()
    assert b.decrypt(a.encrypt(b"after rekey")) == b"after rekey"
    a.recv.rekey()
    b.conn.rekey_outbound_cipher()
    assert a.decrypt(b.encrypt(b"back")) == b"back"


# --------------------------------------------------------------------------- primitives


def test_hmac_and_hkdf_match_stdlib_reference() -> None:
    def ref_hmac(key: bytes, data: bytes) -> bytes:
        return hmac.new(key, data, lambda *a: hashlib.blake2b(*a, digest_size=64)).digest()

    for key in (b"", b"k" * 64, b"x" * 128, b"y" * 200):
        assert hmac_hash(key, b"data") == ref_hmac(key, b"data")
    ck, ikm = b"c" * 64, b"i" * 32
    t = ref_hmac(ck, ikm)
    o1 = ref_hmac(t, b"\x01")
    o2 = ref_hmac(t, o1 + b"\x02")
    o3 = ref_hmac(t, o2 + b"\x03")
    assert hkdf(ck, ikm, 2) == (o1, o2)
    assert hkdf(ck, ikm, 3) == (o1, o2, o3)


def test_keypair() -> None:
    kp = KeyPair.generate()
    assert len(kp.private) == 32 and len(kp.public) == 32
    assert KeyPair.from_private(kp.private) == kp
    assert kp.private.hex() not in repr(kp)
    with pytest.raises(NoiseError):
        KeyPair.from_private(b"short")
    with pytest.raises(NoiseError):
        KeyPair(b"\x00" * 31, b"\x00" * 32)


# --------------------------------------------------------------------------- CipherState


def test_cipherstate_basics_and_nonce_format() -> None:
    key = bytes(range(32))
    c = CipherState(key)
    assert c.has_key and c.nonce == 0
    ct = c.encrypt_with_ad(b"ad", b"hello")
    assert c.nonce == 1
    # spec: ChaChaPoly nonce = 4 zero bytes + 8-byte little-endian counter
    from nacl.bindings import crypto_aead_chacha20poly1305_ietf_encrypt as enc

    assert ct == enc(b"hello", b"ad", bytes(4) + (0).to_bytes(8, "little"), key)
    c.nonce = 0x0102030405
    ct2 = c.encrypt_with_ad(b"", b"x")
    assert ct2 == enc(b"x", None, bytes(4) + (0x0102030405).to_bytes(8, "little"), key)

    empty = CipherState()
    assert not empty.has_key
    assert empty.encrypt_with_ad(b"ad", b"plain") == b"plain"
    assert empty.decrypt_with_ad(b"ad", b"plain") == b"plain"
    with pytest.raises(NoiseError):
        CipherState(b"short")
    with pytest.raises(NoiseError):
        empty.rekey()


def test_cipherstate_decrypt_failure_does_not_advance_nonce() -> None:
    a, b = CipherState(PSK_A), CipherState(PSK_A)
    ct = a.encrypt_with_ad(b"", b"msg")
    bad = ct[:-1] + bytes([ct[-1] ^ 1])
    with pytest.raises(NoiseError):
        b.decrypt_with_ad(b"", bad)
    assert b.nonce == 0
    with pytest.raises(NoiseError):
        b.decrypt_with_ad(b"wrong ad", ct)
    assert b.nonce == 0
    for short in (b"", b"\x00" * 15):
        with pytest.raises(NoiseError):
            b.decrypt_with_ad(b"", short)
    assert b.decrypt_with_ad(b"", ct) == b"msg"
    assert b.nonce == 1


def test_replayed_and_reordered_transport_fail() -> None:
    init, resp = ours(XX, True), ours(XX, False)
    _handshake(init, resp)
    send, _ = init.split()
    _, recv = resp.split()
    c0, c1, c2 = (send.encrypt_with_ad(b"", m) for m in (b"zero", b"one", b"two"))
    with pytest.raises(NoiseError):
        recv.decrypt_with_ad(b"", c1)  # reordered
    assert recv.decrypt_with_ad(b"", c0) == b"zero"
    with pytest.raises(NoiseError):
        recv.decrypt_with_ad(b"", c0)  # replayed
    assert recv.decrypt_with_ad(b"", c1) == b"one"
    with pytest.raises(NoiseError):
        recv.decrypt_with_ad(b"", c1)  # replayed again
    assert recv.decrypt_with_ad(b"", c2) == b"two"


def test_nonce_exhaustion() -> None:
    a, b = CipherState(PSK_A), CipherState(PSK_A)
    a.nonce = b.nonce = MAX_NONCE - 1
    assert b.decrypt_with_ad(b"", a.encrypt_with_ad(b"", b"last")) == b"last"
    assert a.nonce == MAX_NONCE
    with pytest.raises(NoiseError, match="exhausted"):
        a.encrypt_with_ad(b"", b"one too many")
    with pytest.raises(NoiseError, match="exhausted"):
        b.decrypt_with_ad(b"", b"\x00" * 32)
    with pytest.raises(NoiseError):
        a.nonce = MAX_NONCE + 1
    with pytest.raises(NoiseError):
        a.nonce = -1


def test_rekey_matches_spec() -> None:
    from nacl.bindings import crypto_aead_chacha20poly1305_ietf_encrypt as enc

    c = CipherState(PSK_A)
    c.nonce = 7
    c.rekey()
    assert c.nonce == 7  # REKEY leaves the nonce alone
    expected_key = enc(bytes(32), None, bytes(4) + b"\xff" * 8, PSK_A)[:32]
    reference = CipherState(expected_key)
    reference.nonce = 7
    assert c.encrypt_with_ad(b"", b"x") == reference.encrypt_with_ad(b"", b"x")


def test_message_size_limits() -> None:
    c = CipherState(PSK_A)
    assert len(c.encrypt_with_ad(b"", b"\x00" * (MAX_MESSAGE_LEN - 16))) == MAX_MESSAGE_LEN
    with pytest.raises(NoiseError, match="too long"):
        c.encrypt_with_ad(b"", b"\x00" * (MAX_MESSAGE_LEN - 15))
    with pytest.raises(NoiseError, match="too long"):
        c.decrypt_with_ad(b"", b"\x00" * (MAX_MESSAGE_LEN + 1))

    init, resp = ours(XX, True), ours(XX, False)
    with pytest.raises(NoiseError, match="too long"):
        init.write_message(b"\x00" * (MAX_MESSAGE_LEN - 31))
    init.write_message(b"\x00" * (MAX_MESSAGE_LEN - 32))  # exactly 65535 bytes: fine
    with pytest.raises(NoiseError, match="too long"):
        resp.read_message(b"\x00" * (MAX_MESSAGE_LEN + 1))


# --------------------------------------------------------------------------- handshake


def _handshake(init: HandshakeState, resp: HandshakeState) -> None:
    i = 0
    while not (init.is_complete and resp.is_complete):
        w, r = (init, resp) if i % 2 == 0 else (resp, init)
        assert w.is_my_turn and not r.is_my_turn
        r.read_message(w.write_message(b"p%d" % i))
        i += 1


def test_handshake_state_properties() -> None:
    init, resp = ours(XX, True), ours(XX, False)
    assert init.is_my_turn and not resp.is_my_turn
    assert init.remote_static is None
    _handshake(init, resp)
    assert init.is_complete and resp.is_complete
    assert not init.is_my_turn and not resp.is_my_turn
    assert init.remote_static == RESP_STATIC.public
    assert resp.remote_static == INIT_STATIC.public
    assert init.remote_ephemeral == RESP_EPHEMERAL.public
    assert resp.remote_ephemeral == INIT_EPHEMERAL.public
    assert init.handshake_hash == resp.handshake_hash
    i_send, i_recv = init.split()
    r_send, r_recv = resp.split()
    assert r_recv.decrypt_with_ad(b"", i_send.encrypt_with_ad(b"", b"a")) == b"a"
    assert i_recv.decrypt_with_ad(b"", r_send.encrypt_with_ad(b"", b"b")) == b"b"
    with pytest.raises(NoiseError, match="already"):
        init.split()
    with pytest.raises(NoiseError, match="complete"):
        init.write_message(b"")
    with pytest.raises(NoiseError, match="complete"):
        resp.read_message(b"\x00" * 100)


def test_random_ephemeral_when_not_fixed() -> None:
    a = HandshakeState(NN, initiator=True)
    b = HandshakeState(NN, initiator=True)
    assert a.write_message()[:32] != b.write_message()[:32]


def test_split_before_complete_and_one_way_direction() -> None:
    name = "Noise_N" + SUITE
    init, resp = ours(name, True), ours(name, False)
    with pytest.raises(NoiseError, match="not complete"):
        init.split()
    resp.read_message(init.write_message(b"one-way"))
    i_send, i_recv = init.split()
    r_send, r_recv = resp.split()
    assert r_recv.decrypt_with_ad(b"", i_send.encrypt_with_ad(b"", b"x")) == b"x"
    with pytest.raises(NoiseError, match="one-way"):
        r_send.encrypt_with_ad(b"", b"nope")
    with pytest.raises(NoiseError, match="one-way"):
        i_recv.decrypt_with_ad(b"", b"\x00" * 20)


def test_out_of_turn() -> None:
    init, resp = ours(XX, True), ours(XX, False)
    with pytest.raises(NoiseError, match="out of turn"):
        resp.write_message(b"")
    with pytest.raises(NoiseError, match="out of turn"):
        init.read_message(b"\x00" * 64)
    msg = init.write_message(b"")
    with pytest.raises(NoiseError, match="out of turn"):
        init.write_message(b"")
    resp.read_message(msg)  # the misuse did not break anything
    init.read_message(resp.write_message(b""))


@pytest.mark.parametrize("name", [XX, IK, XXPSK3, IKPSK2, NN, "Noise_NNpsk0" + SUITE])
def test_too_short_messages(name: str) -> None:
    init, resp = ours(name, True), ours(name, False)
    i = 0
    while not resp.is_complete:
        w, r = (init, resp) if i % 2 == 0 else (resp, init)
        msg = w.write_message(b"")
        for cut in range(len(msg)):
            probe = ours(name, r is init)
            _replay_to(probe, name, i)
            with pytest.raises(NoiseError):
                probe.read_message(msg[:cut])
        r.read_message(msg)
        i += 1


def _replay_to(probe: HandshakeState, name: str, upto: int) -> None:
    """Advance `probe` (a fresh state) through the first `upto` messages."""
    other = ours(name, not probe.initiator)
    init, resp = (probe, other) if probe.initiator else (other, probe)
    for i in range(upto):
        w, r = (init, resp) if i % 2 == 0 else (resp, init)
        r.read_message(w.write_message(b""))


@pytest.mark.parametrize(("name", "index"), [(XX, 1), (XX, 2), (IK, 0), (IKPSK2, 0), (XXPSK3, 2)])
def test_tampered_handshake_message(name: str, index: int) -> None:
    for pos in range(0, 200, 7):
        init, resp = ours(name, True), ours(name, False)
        for i in range(index):
            w, r = (init, resp) if i % 2 == 0 else (resp, init)
            r.read_message(w.write_message(b"payload"))
        w, r = (init, resp) if index % 2 == 0 else (resp, init)
        msg = bytearray(w.write_message(b"payload"))
        if pos >= len(msg):
            break
        msg[pos] ^= 0x01
        with pytest.raises(NoiseError):
            r.read_message(bytes(msg))
        # the failed state is dead
        with pytest.raises(NoiseError, match="failed"):
            r.read_message(bytes(msg))
        assert not r.is_my_turn


def test_tampered_payload_in_first_message_detected_later() -> None:
    # XX message 1 is unauthenticated, but the transcript hash catches it later.
    init, resp = ours(XX, True), ours(XX, False)
    msg1 = bytearray(init.write_message(b"hello"))
    msg1[-1] ^= 1
    resp.read_message(bytes(msg1))
    with pytest.raises(NoiseError):
        init.read_message(resp.write_message(b""))


@pytest.mark.parametrize(
    ("name", "detector_index"),
    [(XXPSK3, 2), (IKPSK2, 1), ("Noise_NNpsk0" + SUITE, 0), ("Noise_NNpsk2" + SUITE, 1)],
)
def test_wrong_psk_detected(name: str, detector_index: int) -> None:
    init = ours(name, True, psks=[PSK_A])
    resp = ours(name, False, psks=[PSK_B])
    for i in range(detector_index):
        w, r = (init, resp) if i % 2 == 0 else (resp, init)
        r.read_message(w.write_message(b""))
    w, r = (init, resp) if detector_index % 2 == 0 else (resp, init)
    msg = w.write_message(b"secret")
    with pytest.raises(NoiseError, match="decryption failed"):
        r.read_message(msg)


def test_ikpsk2_responder_sets_psk_after_first_message() -> None:
    directory = {INIT_STATIC.public: PSK_B}
    init = ours(IKPSK2, True, psks=[PSK_B])
    resp = HandshakeState(IKPSK2, initiator=False, prologue=PROLOGUE, s=RESP_STATIC)
    assert resp.psks_needed == 1
    assert resp.read_message(init.write_message(b"who am i")) == b"who am i"
    assert resp.remote_static == INIT_STATIC.public
    # writing before the psk is known is refused without killing the handshake
    with pytest.raises(NoiseError, match="set_psk"):
        resp.write_message(b"")
    resp.set_psk(directory[resp.remote_static])
    assert resp.psks_needed == 0
    with pytest.raises(NoiseError, match="too many"):
        resp.set_psk(PSK_A)
    assert init.read_message(resp.write_message(b"welcome")) == b"welcome"
    assert init.is_complete and resp.is_complete
    assert init.handshake_hash == resp.handshake_hash
    i_send, _ = init.split()
    _, r_recv = resp.split()
    assert r_recv.decrypt_with_ad(b"", i_send.encrypt_with_ad(b"", b"data")) == b"data"


def test_ikpsk2_late_psk_matches_noiseprotocol() -> None:
    theirs = Theirs(IKPSK2, True)
    resp = HandshakeState(
        IKPSK2, initiator=False, prologue=PROLOGUE, s=RESP_STATIC, e=RESP_EPHEMERAL
    )
    resp.read_message(theirs.write_message(b"m1"))
    resp.set_psk(PSK_A)
    assert theirs.read_message(resp.write_message(b"m2")) == b"m2"
    assert theirs.handshake_hash == resp.handshake_hash


def test_psk_validation() -> None:
    with pytest.raises(NoiseError, match="32 bytes"):
        HandshakeState(XXPSK3, initiator=True, s=INIT_STATIC, psks=[b"short"])
    with pytest.raises(NoiseError, match="too many"):
        HandshakeState(XXPSK3, initiator=True, s=INIT_STATIC, psks=[PSK_A, PSK_B])
    with pytest.raises(NoiseError, match="does not use a psk"):
        HandshakeState(XX, initiator=True, s=INIT_STATIC, psks=[PSK_A])
    with pytest.raises(NoiseError):
        HandshakeState(XXPSK3, initiator=True, s=INIT_STATIC, psks=PSK_A)  # type: ignore[arg-type]
    hs = HandshakeState(XXPSK3, initiator=True, s=INIT_STATIC)
    with pytest.raises(NoiseError, match="32 bytes"):
        hs.set_psk(b"\x00" * 33)


def test_key_validation() -> None:
    with pytest.raises(NoiseError, match="requires a local static"):
        HandshakeState(XX, initiator=True)
    with pytest.raises(NoiseError, match="requires the remote static"):
        HandshakeState(IK, initiator=True, s=INIT_STATIC)
    with pytest.raises(NoiseError, match="32 bytes"):
        HandshakeState(IK, initiator=True, s=INIT_STATIC, rs=b"\x01" * 31)
    with pytest.raises(NoiseError, match="do not pass rs"):
        HandshakeState(XX, initiator=True, s=INIT_STATIC, rs=RESP_STATIC.public)
    with pytest.raises(NoiseError):
        HandshakeState(XX, initiator=True, s=b"\x00" * 32)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        "Noise_XX_448_ChaChaPoly_BLAKE2b",
        "Noise_XX_25519_AESGCM_BLAKE2b",
        "Noise_XX_25519_ChaChaPoly_SHA256",
        "Noise_XX_25519_ChaChaPoly_BLAKE2s",
        "Noise_XXfallback_25519_ChaChaPoly_BLAKE2b",
        "Noise_XXhfs_25519_ChaChaPoly_BLAKE2b",
        "Noise_I1K1_25519_ChaChaPoly_BLAKE2b",
        "Noise_ZZ_25519_ChaChaPoly_BLAKE2b",
    ],
)
def test_unsupported_protocol_names(bad: str) -> None:
    with pytest.raises(UnsupportedProtocolError):
        parse_protocol_name(bad)
    with pytest.raises(NoiseError):
        HandshakeState(bad, initiator=True, s=INIT_STATIC)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "Noise",
        "Noise_XX_25519_ChaChaPoly",
        "Nois_XX_25519_ChaChaPoly_BLAKE2b",
        "Noise_XXpsk9_25519_ChaChaPoly_BLAKE2b",
        "Noise_NNpsk2+psk2_25519_ChaChaPoly_BLAKE2b",
        "Noise_XXpsk01_25519_ChaChaPoly_BLAKE2b",
        "Noise_xx_25519_ChaChaPoly_BLAKE2b",
        "Noise_XX_25519_ChaChaPoly_BLAKE2b_extra",
        "Noise_XX\u00e9_25519_ChaChaPoly_BLAKE2b",
    ],
)
def test_malformed_protocol_names(bad: str) -> None:
    with pytest.raises(NoiseError):
        parse_protocol_name(bad)


def test_psk_modifier_placement() -> None:
    p = parse_protocol_name("Noise_NNpsk0+psk2" + SUITE)
    assert p.messages == (("psk", "e"), ("e", "ee", "psk"))
    assert p.psk_count == 2
    p = parse_protocol_name(XXPSK3)
    assert p.messages[2] == ("s", "se", "psk")


@pytest.mark.parametrize("point", LOW_ORDER_POINTS)
def test_low_order_ephemeral_rejected(point: bytes) -> None:
    init, resp = ours(NN, True), ours(NN, False)
    resp.read_message(init.write_message(b""))
    reply = resp.write_message(b"")
    evil = point + reply[32:]
    with pytest.raises(NoiseError, match="low-order"):
        init.read_message(evil)
    # and on the responder side
    resp2 = ours(NN, False)
    resp2.read_message(point)
    with pytest.raises(NoiseError, match="low-order"):
        resp2.write_message(b"")


@pytest.mark.parametrize("point", LOW_ORDER_POINTS[:2])
def test_low_order_static_rejected(point: bytes) -> None:
    with pytest.raises(NoiseError, match="low-order"):
        HandshakeState(IK, initiator=True, s=INIT_STATIC, rs=point).write_message(b"")


# --------------------------------------------------------------------------- properties

payloads = st.binary(max_size=300)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hs_payloads=st.lists(payloads, min_size=3, max_size=3),
    transport=st.lists(st.tuples(st.booleans(), st.binary(max_size=2000)), max_size=12),
)
def test_property_xxpsk3_roundtrip(
    hs_payloads: list[bytes], transport: list[tuple[bool, bytes]]
) -> None:
    psk = PSK_A
    init = HandshakeState(XXPSK3, initiator=True, s=KeyPair.generate(), psks=[psk])
    resp = HandshakeState(XXPSK3, initiator=False, s=KeyPair.generate(), psks=[psk])
    for i, payload in enumerate(hs_payloads):
        w, r = (init, resp) if i % 2 == 0 else (resp, init)
        assert r.read_message(w.write_message(payload)) == payload
    assert init.is_complete and resp.is_complete
    assert init.handshake_hash == resp.handshake_hash
    i_send, i_recv = init.split()
    r_send, r_recv = resp.split()
    for from_init, payload in transport:
        send, recv = (i_send, r_recv) if from_init else (r_send, i_recv)
        ct = send.encrypt_with_ad(b"", payload)
        assert len(ct) == len(payload) + 16
        assert recv.decrypt_with_ad(b"", ct) == payload


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from([XX, XXPSK3, IK, IKPSK2, NN, "Noise_KK" + SUITE]),
    stage=st.integers(min_value=0, max_value=2),
    junk=st.binary(max_size=200),
)
def test_property_random_handshake_input_only_raises_noise_error(
    name: str, stage: int, junk: bytes
) -> None:
    n_messages = len(parse_protocol_name(name).messages)
    stage = min(stage, n_messages - 1)
    reader_is_init = stage % 2 == 1
    probe = ours(name, reader_is_init)
    _replay_to(probe, name, stage)
    try:
        probe.read_message(junk)
    except NoiseError:
        pass


@settings(max_examples=150, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), ad=st.binary(max_size=80), junk=st.binary())
def test_property_random_ciphertext_only_raises_noise_error(
    key: bytes, ad: bytes, junk: bytes
) -> None:
    c = CipherState(key)
    with pytest.raises(NoiseError):
        c.decrypt_with_ad(ad, junk)
    assert c.nonce == 0


@settings(max_examples=60, deadline=None)
@given(junk=st.binary(max_size=300), flip=st.integers(min_value=0, max_value=10_000))
def test_property_transport_tamper_detected(junk: bytes, flip: int) -> None:
    a, b = CipherState(PSK_B), CipherState(PSK_B)
    ct = bytearray(a.encrypt_with_ad(b"", junk))
    ct[flip % len(ct)] ^= 1 << (flip % 8)
    with pytest.raises(NoiseError):
        b.decrypt_with_ad(b"", bytes(ct))

"""LAN discovery, the pure parts: tokens, the TXT codec (fuzzed), the bounded directory,
the NEARBY handshake with its short authentication string, and the new wire messages."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messenger.identity import (
    Identity,
    IdentityError,
    pairing_signature,
    sas_commitment,
    short_authentication_string,
    verify_pairing_signature,
)
from messenger.net.discovery import (
    MAX_ADDRESSES,
    MAX_TXT_BYTES,
    TOKEN_LEN,
    Advert,
    LanDirectory,
    TokenBook,
    advert_token,
    clean_name,
    encode_txt,
    epoch_of,
    host_of,
    nearby_id,
    parse_txt,
    usable_addresses,
)
from messenger.protocol import wire
from messenger.protocol.noise import KeyPair
from messenger.protocol.session import (
    Closed,
    NearbyTarget,
    PairingReady,
    Pinned,
    Session,
    State,
)

FAST = settings(max_examples=300, deadline=None)
KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))
EPOCH = 600.0


# --------------------------------------------------------------------------- tokens


SALT = bytes(range(100, 108))
OTHER_SALT = bytes(range(200, 208))


def test_token_is_keyed_blake2b_of_the_epoch_and_salt() -> None:
    token = advert_token(KEY_A, 1000, SALT)
    assert len(token) == TOKEN_LEN == 16
    assert token == advert_token(KEY_A, 1000, SALT)
    assert token != advert_token(KEY_A, 1001, SALT)
    assert token != advert_token(KEY_B, 1000, SALT)
    # Same key, same epoch, another announcement: nothing in common.
    assert token != advert_token(KEY_A, 1000, OTHER_SALT)
    with pytest.raises(ValueError):
        advert_token(b"short", 1, SALT)
    with pytest.raises(ValueError):
        advert_token(KEY_A, 1, b"short")


def test_token_test_vector() -> None:
    # BLAKE2b-16(u64be(epoch) || salt; key=00..1f, person="chinwag-tok-v2"), protocol.md §14.2.
    import hashlib

    expected = hashlib.blake2b(
        (2_992_568).to_bytes(8, "big") + SALT, digest_size=16, key=KEY_A, person=b"chinwag-tok-v2"
    ).digest()
    assert advert_token(KEY_A, 2_992_568, SALT) == expected


def test_token_book_accepts_neighbouring_epochs_only() -> None:
    book = TokenBook(EPOCH)
    book.set_keys({"alice": KEY_A, "bob": KEY_B, "broken": b"x"})
    now = 1_795_540_000.0
    epoch = epoch_of(now, EPOCH)
    for delta in (-1, 0, 1):
        assert book.match(advert_token(KEY_A, epoch + delta, SALT), SALT, now) == "alice"
    for delta in (-2, 2):
        assert book.match(advert_token(KEY_A, epoch + delta, SALT), SALT, now) is None
    assert book.match(advert_token(KEY_B, epoch, SALT), SALT, now) == "bob"
    # A token checked against another salt than its own matches nobody.
    assert book.match(advert_token(KEY_B, epoch, SALT), OTHER_SALT, now) is None
    assert book.match(advert_token(KEY_B, epoch, SALT), b"short", now) is None
    book.set_key("bob", None)
    assert book.match(advert_token(KEY_B, epoch, SALT), SALT, now) is None
    book.set_key("bob", KEY_A[::-1])
    assert book.match(advert_token(KEY_A[::-1], epoch, SALT), SALT, now) == "bob"
    # The next epoch: the book follows the clock.
    later = now + EPOCH
    assert book.match(advert_token(KEY_A, epoch + 2, SALT), SALT, later) == "alice"
    assert book.match(advert_token(KEY_A, epoch - 1, SALT), SALT, later) is None


@FAST
@given(st.binary(min_size=8, max_size=8), st.binary(min_size=8, max_size=8))
def test_two_announcements_share_no_token(salt_a: bytes, salt_b: bytes) -> None:
    # What a stranger sees across a restart in the same epoch: unlinkable tokens.
    if salt_a != salt_b:
        assert advert_token(KEY_A, 7, salt_a) != advert_token(KEY_A, 7, salt_b)


# --------------------------------------------------------------------------- TXT


def test_txt_layout() -> None:
    token = bytes(range(16))
    raw = encode_txt(Advert(1, token, salt=SALT))
    assert raw == b"\x03v=1" + b"\x22t=" + token.hex().encode() + b"\x12s=" + SALT.hex().encode()
    assert parse_txt(raw) == Advert(1, token, None, salt=SALT)
    # No salt, or a malformed one: not a usable advert.
    assert parse_txt(b"\x03v=1" + b"\x22t=" + token.hex().encode()) is None
    assert parse_txt(raw[:-1]) is None
    assert parse_txt(raw.replace(SALT.hex().encode(), SALT.hex().upper().encode())) is None
    named = encode_txt(Advert(1, token, "Zoë"))
    assert parse_txt(named) == Advert(1, token, "Zoë")


tokens = st.binary(min_size=TOKEN_LEN, max_size=TOKEN_LEN)
names = st.none() | st.text(min_size=1, max_size=80)


@FAST
@given(tokens, names)
def test_txt_round_trip(token: bytes, name: str | None) -> None:
    raw = encode_txt(Advert(1, token, name))
    assert len(raw) <= MAX_TXT_BYTES
    advert = parse_txt(raw)
    assert advert is not None and advert.token == token and advert.version == 1
    # The name as announced: cleaned, cut to 136 UTF-8 bytes (never inside a character).
    expected = None
    if name is not None:
        cut = clean_name(name).encode("utf-8")[:136].decode("utf-8", errors="ignore")
        expected = clean_name(cut) or None
    assert advert.name == expected


@FAST
@given(st.binary(max_size=400))
def test_txt_parser_never_raises(raw: bytes) -> None:
    advert = parse_txt(raw)
    if advert is not None:
        assert advert.version == wire.PROTOCOL_VERSION and len(advert.token) == TOKEN_LEN
        assert advert.name is None or (0 < len(advert.name) <= wire.MAX_NAME_CHARS)


txt_strings = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from([b"v=1", b"V=1", b"v=2", b"t=", b"n=", b"=x", b"v", b"n=\xff\xfe"]),
        st.builds(lambda t: b"t=" + t.hex().encode(), tokens),
        st.builds(lambda n: b"n=" + n.encode()[:100], st.text(max_size=30)),
    ),
    max_size=8,
)


@FAST
@given(txt_strings)
def test_txt_parser_on_structured_garbage(strings: list[bytes]) -> None:
    raw = b"".join(bytes([len(s)]) + s for s in strings)
    advert = parse_txt(raw)
    first: dict[bytes, bytes] = {}
    for s in strings:
        key, sep, value = s.partition(b"=")
        if sep and key:
            first.setdefault(key.lower(), value)
    if advert is not None:
        assert first.get(b"v") == b"1"
        assert bytes.fromhex(first[b"t"].decode()) == advert.token


def test_txt_parser_rules() -> None:
    # The token and its salt, as length-prefixed strings.
    ts = b"\x22t=" + b"ab" * 16 + b"\x12s=" + b"01" * 8
    assert parse_txt(b"\x03v=1" + ts) is not None
    # Keys are case-insensitive and only their first occurrence counts (RFC 6763 §6.4).
    assert parse_txt(b"\x03V=1" + ts) is not None
    other = b"t=" + b"cd" * 16
    first = parse_txt(b"\x03v=1" + ts + bytes([len(other)]) + other)
    assert first is not None and first.token == bytes.fromhex("ab" * 16)
    assert first.salt == bytes.fromhex("01" * 8)
    assert parse_txt(b"\x03v=2" + ts) is None  # another version
    assert parse_txt(b"\x03v=1") is None  # no token
    assert parse_txt(b"\x03v=1\x22t=" + b"ab" * 16) is None  # no salt
    assert parse_txt(b"\x03v=1\x22t=" + b"ab" * 16 + b"\x10s=" + b"01" * 7) is None  # short
    assert parse_txt(b"\x03v=1\x22t=" + b"AB" * 16 + ts[34:]) is None  # upper-case hex
    assert parse_txt(b"\x03v=1\x20t=" + b"ab" * 15 + ts[34:]) is None  # short token
    assert parse_txt(b"\x03v=1" + b"\x27" + ts[1:]) is None  # a string overruns
    assert parse_txt(b"\x03v=1" + ts + b"\x00") is not None  # empty string
    big = b"\x03v=1" + ts + (b"\xffx=" + b"y" * 252)
    assert len(big) > MAX_TXT_BYTES and parse_txt(big) is None  # oversized
    bad_name = parse_txt(b"\x03v=1" + ts + b"\x04n=\xff\xfe")
    assert bad_name is not None and bad_name.name is None
    assert parse_txt("v=1") is None and parse_txt(None) is None


def test_names_are_cleaned() -> None:
    assert clean_name("A\u202eB\x00C\u200d  D\n") == "ABC D"
    assert clean_name("x" * 100) == "x" * wire.MAX_NAME_CHARS
    assert parse_txt(encode_txt(Advert(1, bytes(16), "\u202e\u202e"))) == Advert(1, bytes(16))


def test_usable_addresses() -> None:
    ips = [
        "10.0.0.1",
        "127.0.0.1",
        "224.0.0.251",
        "0.0.0.0",
        "fe80::1%3",
        "fe80::2",
        "2001:db8::1",
        "169.254.1.2",
        "not an ip",
        "10.0.0.1",
    ]
    assert usable_addresses(ips, 4000) == (
        "10.0.0.1:4000",
        "[2001:db8::1]:4000",
        "169.254.1.2:4000",
    )
    assert usable_addresses(ips, 0) == () and usable_addresses(ips, None) == ()
    assert usable_addresses(ips, 70000) == ()
    many = [f"10.0.0.{i}" for i in range(1, 20)]
    assert len(usable_addresses(many, 1)) == MAX_ADDRESSES
    assert host_of("[2001:db8::1]:4000") == "2001:db8::1" and host_of("10.0.0.1:5") == "10.0.0.1"


# --------------------------------------------------------------------------- directory

NOW = 1_795_540_000.0


def _directory(**kw: int) -> LanDirectory:
    book = TokenBook(EPOCH)
    book.set_keys({"alice": KEY_A, "bob": KEY_B})
    return LanDirectory(book, **kw)


def _advert(key: bytes | None, name: str | None = None) -> Advert:
    salt = os.urandom(8)
    token = advert_token(key, epoch_of(NOW, EPOCH), salt) if key else os.urandom(16)
    return Advert(1, token, name, salt=salt)


def test_directory_tracks_contacts() -> None:
    d = _directory()
    changes = d.update("A1._chinwag._tcp.local.", ["10.0.0.1:1"], _advert(KEY_A), NOW)
    assert changes.seen == ("alice",) and not changes.gone and not changes.nearby
    # The same record again (a refresh): no news.
    assert not d.update("a1._chinwag._tcp.local.", ["10.0.0.1:1"], _advert(KEY_A), NOW)
    # Moved: seen again, newest address first.
    changes = d.update("a2._chinwag._tcp.local.", ["10.0.0.9:1"], _advert(KEY_A), NOW + 1)
    assert changes.seen == ("alice",)
    assert d.contact_addresses("alice") == ["10.0.0.9:1", "10.0.0.1:1"]
    assert not d.remove("a1._chinwag._tcp.local.")  # still seen at a2
    changes = d.remove("A2._chinwag._tcp.local.")
    assert changes.gone == ("alice",)
    assert d.contact_addresses("alice") == []


def test_directory_ignores_what_it_cannot_use() -> None:
    d = _directory()
    d.own = {"me._chinwag._tcp.local."}
    assert not d.update("me._chinwag._tcp.local.", ["10.0.0.1:1"], _advert(KEY_A), NOW)
    assert not d.update("x._chinwag._tcp.local.", ["10.0.0.1:1"], _advert(None), NOW)  # stranger
    assert not d.update("y._chinwag._tcp.local.", ["10.0.0.1:1"], None, NOW)  # unparseable
    assert not d.update("z._chinwag._tcp.local.", [], _advert(KEY_A), NOW)  # no address
    assert len(d) == 0 and d.stats.ignored == 4 - 1  # own records are not even counted


def test_a_record_that_turns_bad_removes_the_entry() -> None:
    d = _directory()
    d.update("a._chinwag._tcp.local.", ["10.0.0.1:1"], _advert(KEY_A), NOW)
    changes = d.update("a._chinwag._tcp.local.", ["10.0.0.1:1"], None, NOW)  # conflicting record
    assert changes.gone == ("alice",) and len(d) == 0


def test_nearby_list() -> None:
    d = _directory()
    changes = d.update("n1._chinwag._tcp.local.", ["10.0.0.5:1"], _advert(None, "Zed"), NOW)
    assert changes.nearby and not changes.seen
    d.update("n2._chinwag._tcp.local.", ["10.0.0.6:1"], _advert(None, "amy"), NOW)
    d.update("c._chinwag._tcp.local.", ["10.0.0.7:1"], _advert(KEY_A, "Alice"), NOW)  # a contact
    people = d.nearby()
    assert [p.advert.name for p in people] == ["amy", "Zed"]
    assert d.find_nearby(people[0].nearby_id) is people[0]
    assert d.find_nearby(people[0].nearby_id[:4].upper()) is people[0]
    assert d.find_nearby("") is None and d.find_nearby("zzzz") is None
    assert nearby_id("N1._chinwag._tcp.local.") == nearby_id("n1._chinwag._tcp.local.")
    # Renamed: the list changed; the same name again: it did not.
    assert d.update("n1._chinwag._tcp.local.", ["10.0.0.5:1"], _advert(None, "Zoe"), NOW).nearby
    assert not d.update("n1._chinwag._tcp.local.", ["10.0.0.5:1"], _advert(None, "Zoe"), NOW).nearby


def test_rematch_after_a_key_arrives() -> None:
    book = TokenBook(EPOCH)
    d = LanDirectory(book)
    d.update("f._chinwag._tcp.local.", ["10.0.0.8:1"], _advert(KEY_B, "Frank"), NOW)
    assert [p.advert.name for p in d.nearby()] == ["Frank"]
    book.set_keys({"frank": KEY_B})  # we paired: his advertising key came over the session
    changes = d.rematch(NOW)
    assert changes.seen == ("frank",) and changes.nearby and d.nearby() == []
    book.set_keys({})  # removed again
    changes = d.rematch(NOW)
    assert changes.gone == ("frank",) and [p.advert.name for p in d.nearby()] == ["Frank"]


def test_a_key_that_arrives_after_the_announcement() -> None:
    # The contact re-announced with a token of its new key before the key itself arrived
    # over the session: the directory remembers the unknown service and matches it later.
    book = TokenBook(EPOCH)
    d = LanDirectory(book)
    assert not d.update("g._chinwag._tcp.local.", ["10.0.0.9:1"], _advert(KEY_B), NOW)
    assert len(d) == 0 and d.instances() == ["g._chinwag._tcp.local."]
    book.set_keys({"gina": KEY_B})
    assert d.rematch(NOW).seen == ("gina",)
    assert d.contact_addresses("gina") == ["10.0.0.9:1"]
    assert d.remove("g._chinwag._tcp.local.").gone == ("gina",) and d.instances() == []


def test_directory_is_bounded_under_a_flood() -> None:
    d = _directory(max_entries=256, max_nearby=32)
    rng = random.Random(7)
    events = 0
    for i in range(10_000):
        name = f"{i:x}{rng.random()}._chinwag._tcp.local."
        advert = _advert(None, f"fake {i}" if i % 2 else None)
        changes = d.update(name, [f"10.1.{i % 250}.{i % 200}:9"], advert, NOW)
        assert not changes.seen and not changes.gone
        events += changes.nearby
    assert len(d) <= 256 and len(d.instances()) <= 2 * 256
    assert len(d.nearby()) == 32
    # The list is stable under the flood: the first 32 stay, later fakes change nothing.
    assert events == 32
    # A real contact still gets in, and is never evicted by strangers.
    assert d.update("real._chinwag._tcp.local.", ["10.0.0.1:1"], _advert(KEY_A), NOW).seen
    for i in range(1000):
        d.update(f"more{i}._chinwag._tcp.local.", ["10.2.0.1:1"], _advert(None, "x"), NOW)
    assert d.contact_addresses("alice") == ["10.0.0.1:1"]


def test_a_replayed_token_cannot_crowd_a_contact_out() -> None:
    d = _directory(max_per_contact=4)
    for i in range(50):  # someone replays alice's token from 50 fake services
        d.update(f"fake{i}._chinwag._tcp.local.", [f"10.9.9.{i}:1"], _advert(KEY_A), NOW)
    assert sum(1 for name in d.instances() if name.startswith("fake")) == 4
    assert len(d.contact_addresses("alice")) == 4
    d.update("genuine._chinwag._tcp.local.", ["10.0.0.1:1"], _advert(KEY_A), NOW + 1)
    assert d.contact_addresses("alice")[0] == "10.0.0.1:1"


# --------------------------------------------------------------------------- SAS, NEARBY


def test_sas_helpers() -> None:
    h, nonce = os.urandom(64), os.urandom(32)
    sas = short_authentication_string(h, nonce)
    assert len(sas) == 6 and sas.isdigit()
    assert sas == short_authentication_string(h, nonce)
    assert sas_commitment(nonce) != sas_commitment(os.urandom(32))
    digits = {short_authentication_string(os.urandom(64), nonce) for _ in range(200)}
    assert len(digits) > 190  # spread over 10^6 values
    with pytest.raises(IdentityError):
        short_authentication_string(b"short", nonce)
    identity = Identity.generate()
    signature = pairing_signature(identity.signing_key, h)
    verify_pairing_signature(identity.ed25519_public, h, signature)
    with pytest.raises(IdentityError):
        verify_pairing_signature(identity.ed25519_public, os.urandom(64), signature)


class _Authority:
    def invite_psk(self, invite_id: bytes) -> None:
        return None

    def match_contact(self, remote_static: bytes, hello: wire.Hello) -> None:
        return None


def _hello(name: str) -> wire.Hello:
    identity = Identity.generate()
    return wire.Hello(identity.ed25519_public, identity.static_certificate, name, 4000, ())


def _nearby_pair(offered: bool = True, nonce: bytes | None = None) -> tuple[Session, Session]:
    initiator = Session(
        initiator=True,
        static=KeyPair.generate(),
        hello=_hello("Erin"),
        target=NearbyTarget(),
        pinned=Pinned(sas_nonce=nonce),
    )
    responder = Session(
        initiator=False,
        static=KeyPair.generate(),
        hello=_hello("Frank"),
        authority=_Authority(),
        nearby=offered,
    )
    return initiator, responder


def _run_nearby(i: Session, r: Session) -> tuple[list, list]:
    assert r.receive_data(i.data_to_send()) == []
    at_i = i.receive_data(r.data_to_send())
    at_r = r.receive_data(i.data_to_send())
    return at_i, at_r


def test_nearby_handshake_shows_the_same_digits() -> None:
    i, r = _nearby_pair()
    at_i, at_r = _run_nearby(i, r)
    assert len(at_i) == len(at_r) == 1
    ready_i, ready_r = at_i[0], at_r[0]
    assert isinstance(ready_i, PairingReady) and isinstance(ready_r, PairingReady)
    assert ready_i.sas == ready_r.sas and len(ready_i.sas) == 6
    assert ready_i.handshake_hash == ready_r.handshake_hash
    assert ready_i.peer_name == "Frank" and ready_r.peer_name == "Erin"
    assert i.established and r.established and i.kind is wire.HandshakeKind.NEARBY
    # Then an encrypted channel: identities go over it once the users confirmed.
    identity = Identity.generate()
    accept = wire.PairAccept(
        identity.ed25519_public,
        identity.static_public,
        identity.static_certificate,
        "Erin",
        4000,
        pairing_signature(identity.signing_key, ready_i.handshake_hash),
    )
    i.send(accept)
    (received,) = r.receive_data(i.data_to_send())
    assert received.message == accept  # type: ignore[union-attr]


def test_a_man_in_the_middle_gets_different_digits() -> None:
    # Erin -> Mallory (posing as Frank) and Mallory -> Frank (posing as Erin).
    matches = 0
    for _ in range(20):
        erin, mallory_r = _nearby_pair()
        mallory_i, frank = _nearby_pair()
        left = _run_nearby(erin, mallory_r)
        right = _run_nearby(mallory_i, frank)
        matches += left[0][0].sas == right[1][0].sas
    assert matches == 0


def test_nearby_static_keys_are_one_time() -> None:
    i1, r1 = _nearby_pair()
    i2, r2 = _nearby_pair()
    _run_nearby(i1, r1)
    _run_nearby(i2, r2)
    assert i1._hs is not None and i2._hs is not None
    assert i1._hs.remote_static != i2._hs.remote_static
    assert i1._hs.local_static is not None and i1._hs.local_static.public != i1._static.public


def test_nearby_is_silence_unless_visible() -> None:
    i, r = _nearby_pair(offered=False)
    events = r.receive_data(i.data_to_send())
    assert len(events) == 1 and isinstance(events[0], Closed)
    assert r.data_to_send() == b"" and r.state is State.CLOSED


def test_a_nonce_that_breaks_its_commitment_aborts() -> None:
    i, r = _nearby_pair(nonce=bytes(32))
    assert r.receive_data(i.data_to_send()) == []  # message 1 commits to 00..00
    message_2 = r.data_to_send()
    i._sas_nonce = b"\x01" * 32  # a cheating initiator reveals another nonce in message 3
    i.receive_data(message_2)
    events = r.receive_data(i.data_to_send())
    assert len(events) == 1 and isinstance(events[0], Closed)
    assert "commitment" in events[0].reason and r.state is State.CLOSED


# --------------------------------------------------------------------------- wire


@FAST
@given(st.binary(min_size=32, max_size=32))
def test_discovery_key_round_trip(key: bytes) -> None:
    message = wire.DiscoveryKey(key)
    assert wire.decode_message(wire.encode_message(message)) == message


@FAST
@given(
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=64, max_size=64),
    st.text(min_size=1, max_size=64).filter(lambda s: s.strip() != ""),
    st.integers(0, 65535),
    st.binary(min_size=64, max_size=64),
)
def test_pair_accept_round_trip(
    ed: bytes, x: bytes, cert: bytes, name: str, port: int, sig: bytes
) -> None:
    message = wire.PairAccept(ed, x, cert, name, port, sig)
    assert wire.decode_message(wire.encode_message(message)) == message


def test_bad_discovery_messages_are_wire_errors() -> None:
    import msgpack

    with pytest.raises(wire.WireError):
        wire.decode_message(msgpack.packb([9, b"short"]))
    with pytest.raises(wire.WireError):
        wire.encode_message(wire.DiscoveryKey(b"x" * 31))
    with pytest.raises(wire.WireError):
        wire.decode_message(msgpack.packb([10, b"a" * 32, b"b" * 32, b"c" * 64, "", 1, b"s" * 64]))

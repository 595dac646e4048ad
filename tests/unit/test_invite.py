from __future__ import annotations

import base64
import ipaddress
import unicodedata
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nacl.hash
import pytest
import segno
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import messenger.protocol.invite as invite_mod
from messenger.identity import Identity
from messenger.protocol.invite import (
    DEFAULT_TTL,
    INVITE_VERSION,
    Address,
    Invite,
    InviteError,
    InviteExpired,
    InviteMalformed,
    InviteUnsupported,
    create_invite,
    decode_invite,
    encode_invite,
    interface_addresses,
    invite_qr,
    invite_to_bytes,
    parse_address,
    save_invite_qr,
)

NOW = 1_700_000_000.0
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
QR_ALNUM = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _sample_invite(**changes: Any) -> Invite:
    base = Invite(
        ed25519_public=bytes(range(32)),
        x25519_public=bytes(range(32, 64)),
        secret=bytes(range(64, 96)),
        expires_at=int(NOW) + DEFAULT_TTL,
        addresses=(
            Address("192.168.1.20", 41000),
            Address("2001:db8::1", 41000),
            Address("alice-laptop.local", 9),
        ),
        display_name="Alice Ø 🐱",
    )
    return replace(base, **changes)


def _checksum(body: bytes) -> bytes:
    return nacl.hash.blake2b(
        body, digest_size=32, person=b"chinwag-inv-ck", encoder=nacl.encoding.RawEncoder
    )[:4]


def _code_for_raw(body: bytes) -> str:
    """Text code for an arbitrary body, with a correct checksum appended."""
    raw = body + _checksum(body)
    return "CHINWAG:" + base64.b32encode(raw).decode().rstrip("=")


def _normalised(text: str) -> str:
    compact = "".join(text.split()).replace("-", "").upper()
    return compact.removeprefix("CHINWAG:")


# --------------------------------------------------------------------------- strategies

_label = st.from_regex(r"\A[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?\Z")
_hostnames = (
    st.lists(_label, min_size=1, max_size=4)
    .filter(lambda labels: not labels[-1].isdigit())
    .map(".".join)
)
_ports = st.integers(1, 65535)
_addresses = st.one_of(
    st.builds(lambda ip, p: Address(str(ip), p), st.ip_addresses(v=4), _ports),
    st.builds(lambda ip, p: Address(str(ip), p), st.ip_addresses(v=6), _ports),
    st.builds(Address, _hostnames, _ports),
)


def _name_ok(name: str) -> bool:
    return len(name.encode("utf-8")) <= 255


_names = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cc", "Cs"),
        blacklist_characters="".join(BIDI),
    ),
    max_size=64,
).filter(_name_ok)

_invites = st.builds(
    Invite,
    ed25519_public=st.binary(min_size=32, max_size=32),
    x25519_public=st.binary(min_size=32, max_size=32),
    secret=st.binary(min_size=32, max_size=32),
    expires_at=st.integers(0, 2**64 - 1),
    addresses=st.lists(_addresses, max_size=16).map(tuple),
    display_name=_names,
)


# --------------------------------------------------------------------------- round trips


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_invites)
def test_round_trip(invite: Invite) -> None:
    code = encode_invite(invite)
    assert code.startswith("CHINWAG:")
    assert set(code) <= QR_ALNUM
    assert decode_invite(code, now=-1.0) == invite
    assert decode_invite(code, now=invite.expires_at - 1) == invite


@settings(max_examples=100)
@given(_invites, st.data())
def test_decode_tolerates_whitespace_dashes_case_and_missing_prefix(
    invite: Invite, data: st.DataObject
) -> None:
    code = encode_invite(invite)
    body = code.removeprefix("CHINWAG:")
    rnd = data.draw(st.randoms(use_true_random=False))
    pieces = []
    for ch in data.draw(st.sampled_from([code, body, "chinwag:" + body, "ChinWag :" + body])):
        pieces.append(rnd.choice([ch, ch.lower()]))
        pieces.append(rnd.choice(["", "", "", " ", "-", "\n", "\r\n", "\t", " - "]))
    text = (
        data.draw(st.sampled_from(["", "  ", "\n", "\t "]))
        + "".join(pieces)
        + data.draw(st.sampled_from(["", " ", "\n\n"]))
    )
    assert decode_invite(text, now=-1.0) == invite


def test_decode_tolerant_examples() -> None:
    invite = _sample_invite()
    code = encode_invite(invite)
    body = code.removeprefix("CHINWAG:")
    grouped = "-".join(body[i : i + 4] for i in range(0, len(body), 4))
    lined = "\n".join(body[i : i + 20] for i in range(0, len(body), 20))
    for text in (
        code,
        code.lower(),
        body,
        body.lower(),
        f"  {code}\n",
        "CHINWAG:" + grouped,
        grouped.lower(),
        lined,
        "CHINWAG:\n" + lined + "\n",
        code.encode("ascii"),
    ):
        assert decode_invite(text, now=NOW) == invite  # type: ignore[arg-type]


def test_encoding_matches_documented_layout() -> None:
    invite = _sample_invite()
    raw = invite_to_bytes(invite)
    name = invite.display_name.encode()
    assert raw[0] == INVITE_VERSION == 1
    assert raw[1:33] == invite.ed25519_public
    assert raw[33:65] == invite.x25519_public
    assert raw[65:97] == invite.secret
    assert int.from_bytes(raw[97:105], "big") == invite.expires_at
    assert raw[105] == len(name)
    assert raw[106 : 106 + len(name)] == name
    pos = 106 + len(name)
    assert raw[pos] == 3
    pos += 1
    assert raw[pos : pos + 7] == b"\x04" + bytes([192, 168, 1, 20]) + (41000).to_bytes(2, "big")
    pos += 7
    assert raw[pos : pos + 19] == (
        b"\x06" + ipaddress.IPv6Address("2001:db8::1").packed + (41000).to_bytes(2, "big")
    )
    pos += 19
    host = b"alice-laptop.local"
    assert raw[pos : pos + 4 + len(host)] == b"\x01" + bytes([len(host)]) + host + b"\x00\x09"
    pos += 4 + len(host)
    assert raw[pos:] == _checksum(raw[:pos])
    assert len(raw[pos:]) == 4
    assert encode_invite(invite) == "CHINWAG:" + base64.b32encode(raw).decode().rstrip("=")


# --------------------------------------------------------------------------- error detection


def _assert_rejected_or_identical(text: str, code: str, invite: Invite) -> None:
    if _normalised(text) == _normalised(code):
        assert decode_invite(text, now=NOW) == invite
    else:
        with pytest.raises(InviteMalformed):
            decode_invite(text, now=NOW)


@pytest.mark.parametrize(
    "invite",
    [
        _sample_invite(),
        _sample_invite(addresses=(), display_name=""),
        _sample_invite(display_name="x" * 64, addresses=(Address("10.0.0.1", 1),) * 16),
    ],
    ids=["typical", "minimal", "large"],
)
def test_every_single_character_substitution_is_detected(invite: Invite) -> None:
    code = encode_invite(invite)
    replacements = set(B32) | set(B32.lower()) | set("0189:-. !=_Ø")
    for i, original in enumerate(code):
        for ch in replacements - {original}:
            _assert_rejected_or_identical(code[:i] + ch + code[i + 1 :], code, invite)


def test_every_truncation_deletion_and_transposition_is_detected() -> None:
    invite = _sample_invite()
    code = encode_invite(invite)
    for k in range(len(code)):
        with pytest.raises(InviteMalformed):
            decode_invite(code[:k], now=NOW)
    for k in range(1, len(code)):
        text = code[k:]
        if k == len("CHINWAG:"):
            assert decode_invite(text, now=NOW) == invite  # only the prefix dropped
        else:
            with pytest.raises(InviteMalformed):
                decode_invite(text, now=NOW)
    for i in range(len(code)):
        _assert_rejected_or_identical(code[:i] + code[i + 1 :], code, invite)
    for i in range(len(code) - 1):
        swapped = code[:i] + code[i + 1] + code[i] + code[i + 2 :]
        if swapped != code:
            _assert_rejected_or_identical(swapped, code, invite)
    for i in range(len(code) + 1):
        for ch in B32:
            _assert_rejected_or_identical(code[:i] + ch + code[i:], code, invite)


def test_non_canonical_base32_trailing_bits_rejected() -> None:
    code = encode_invite(_sample_invite())
    body = code.removeprefix("CHINWAG:")
    assert len(body) % 8 != 0  # there are unused trailing bits to play with
    last = B32.index(body[-1])
    for v in range(32):
        if v == last:
            continue
        with pytest.raises(InviteMalformed):
            decode_invite("CHINWAG:" + body[:-1] + B32[v], now=NOW)


def test_expired() -> None:
    invite = _sample_invite(expires_at=1_700_000_000)
    code = encode_invite(invite)
    assert decode_invite(code, now=1_699_999_999.9) == invite
    for now in (1_700_000_000, 1_700_000_000.5, 1_800_000_000):
        with pytest.raises(InviteExpired) as info:
            decode_invite(code, now=now)
        assert info.value.expires_at == 1_700_000_000
        assert "2023-11-14 22:13 UTC" in str(info.value)
        assert "expired" in str(info.value)
    assert isinstance(info.value, InviteError)
    assert isinstance(info.value, ValueError)


def test_expired_message_for_absurd_times() -> None:
    invite = _sample_invite(expires_at=2**64 - 1)
    with pytest.raises(InviteExpired) as info:
        decode_invite(encode_invite(invite), now=float(2**65))
    assert str(2**64 - 1) in str(info.value)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unknown_version_is_unsupported(version: int) -> None:
    raw = invite_to_bytes(_sample_invite())
    body = bytes([version]) + raw[1:-4]
    with pytest.raises(InviteUnsupported) as info:
        decode_invite(_code_for_raw(body), now=NOW)
    assert info.value.version == version
    assert str(version) in str(info.value)
    # A future version may have an entirely different (even tiny) body.
    with pytest.raises(InviteUnsupported):
        decode_invite(_code_for_raw(bytes([version])), now=NOW)


def _body_with(**parts: bytes) -> bytes:
    fields = {
        "version": b"\x01",
        "ed": bytes(32),
        "x": bytes(32),
        "secret": bytes(32),
        "expires": (2**40).to_bytes(8, "big"),
        "name": b"\x00",
        "addrs": b"\x00",
        "extra": b"",
    }
    fields.update(parts)
    return b"".join(fields.values())


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x01",
        _body_with()[:-1],
        _body_with(extra=b"\x00"),
        _body_with(name=b"\x02\xff\xfe"),  # invalid UTF-8
        _body_with(name=b"\x01\x07"),  # control character
        _body_with(name=b"\x03\xe2\x80\xae"),  # RIGHT-TO-LEFT OVERRIDE
        _body_with(name=bytes([65]) + b"a" * 65),  # 65 characters
        _body_with(addrs=b"\x11" + b"\x04\x0a\x00\x00\x01\x00\x01" * 17),  # 17 addresses
        _body_with(addrs=b"\x01\x05" + bytes(6)),  # unknown address type
        _body_with(addrs=b"\x01\x04\x0a\x00\x00\x01\x00\x00"),  # port 0
        _body_with(addrs=b"\x01\x04\x0a\x00"),  # truncated address
        _body_with(addrs=b"\x02\x04\x0a\x00\x00\x01\x00\x01"),  # count too high
        _body_with(addrs=b"\x01\x01\x07" + b"1.2.3.4" + b"\x00\x01"),  # IP as hostname
        _body_with(addrs=b"\x01\x01\x07" + b"Foo.bar" + b"\x00\x01"),  # not lowercase
        _body_with(addrs=b"\x01\x01\x04" + b"foo." + b"\x00\x01"),  # trailing dot
        _body_with(addrs=b"\x01\x01\x00" + b"\x00\x01"),  # empty hostname
        _body_with(addrs=b"\x01\x01\x04" + b"a_b!" + b"\x00\x01"),  # bad characters
        _body_with(addrs=b"\x01\x01\x02" + b"\xc3\xa9" + b"\x00\x01"),  # non-ASCII
    ],
)
def test_structurally_invalid_bodies_with_valid_checksum(body: bytes) -> None:
    with pytest.raises(InviteMalformed):
        decode_invite(_code_for_raw(body), now=NOW)


def test_valid_minimal_body_decodes() -> None:
    invite = decode_invite(_code_for_raw(_body_with()), now=NOW)
    assert invite.addresses == ()
    assert invite.display_name == ""
    assert invite.expires_at == 2**40


def test_bad_checksum() -> None:
    raw = invite_to_bytes(_sample_invite())
    bad = raw[:-1] + bytes([raw[-1] ^ 0x80])
    with pytest.raises(InviteMalformed) as info:
        decode_invite("CHINWAG:" + base64.b32encode(bad).decode().rstrip("="), now=NOW)
    assert "mistyped or truncated" in str(info.value)
    assert info.value.detail


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "CHINWAG:",
        "chinwag:",
        "CHINWAG:A",
        "CHINWAG:AAA",
        "CHINWAG:0000",
        "CHINWAG:AAAA====",
        "CHINWAG:AAAAAAAA:",
        "CHINWAG:ÄAAA",
        "\uff23\uff28\uff29\uff2e\uff37\uff21\uff27:AAAA",
        "ﬁ" * 8,
        "\x00",
        "https://example.com/",
        None,
        42,
        b"\xff\xfe",
        ["CHINWAG:AAAA"],
    ],
)
def test_garbage_is_malformed(text: Any) -> None:
    with pytest.raises(InviteMalformed):
        decode_invite(text, now=NOW)


@settings(max_examples=500)
@given(st.text())
def test_fuzz_text_only_raises_invite_error(text: str) -> None:
    try:
        decode_invite(text, now=NOW)
    except InviteError:
        pass


@settings(max_examples=300)
@given(st.text(alphabet=B32 + B32.lower() + " -:\n", max_size=400))
def test_fuzz_base32_text_only_raises_invite_error(text: str) -> None:
    try:
        decode_invite(text, now=NOW)
    except InviteError:
        pass


@settings(max_examples=500)
@given(st.binary(max_size=600), st.floats(allow_nan=True))
def test_fuzz_checksummed_bodies_only_raise_invite_error(body: bytes, now: float) -> None:
    """Bodies with a *valid* checksum exercise the parser itself."""
    body = b"\x01" + body
    try:
        invite = decode_invite(_code_for_raw(body), now=now)
    except InviteError:
        return
    assert invite_to_bytes(invite)[:-4] == body


@settings(max_examples=200)
@given(_invites, st.integers(0, 10_000), st.binary(min_size=1, max_size=3))
def test_fuzz_mutated_valid_bodies(invite: Invite, pos: int, junk: bytes) -> None:
    raw = invite_to_bytes(invite)[:-4]
    pos %= len(raw)
    body = raw[:pos] + junk + raw[pos + len(junk) :]
    assume(body[0] == INVITE_VERSION)
    try:
        decoded = decode_invite(_code_for_raw(body), now=-1.0)
    except InviteError:
        return
    assert invite_to_bytes(decoded)[:-4] == body


# --------------------------------------------------------------------------- invite object


def test_invite_id() -> None:
    invite = _sample_invite()
    iid = invite.invite_id
    assert isinstance(iid, bytes)
    assert len(iid) == 16
    assert iid == _sample_invite(display_name="other", addresses=()).invite_id
    assert iid != _sample_invite(secret=bytes(32)).invite_id
    assert iid not in invite.secret
    assert iid != invite.secret[:16]
    # Keyed by the secret: not an unkeyed hash of it.
    assert iid != nacl.hash.blake2b(invite.secret, digest_size=16, encoder=nacl.encoding.RawEncoder)


def test_invite_repr_hides_secret() -> None:
    invite = _sample_invite()
    assert repr(invite.secret) not in repr(invite)


@pytest.mark.parametrize(
    "changes",
    [
        {"ed25519_public": bytes(31)},
        {"x25519_public": bytes(33)},
        {"secret": b""},
        {"secret": "x" * 32},
        {"expires_at": -1},
        {"expires_at": 2**64},
        {"expires_at": 1.5},
        {"expires_at": True},
        {"addresses": (Address("10.0.0.1", 1),) * 17},
        {"addresses": ("10.0.0.1:1",)},
        {"addresses": "10.0.0.1:1"},
        {"addresses": 5},
        {"display_name": "x" * 65},
        {"display_name": "🐱" * 64},  # 64 characters but 256 UTF-8 bytes
        {"display_name": "bad\nname"},
        {"display_name": "evil\u202etxt.exe"},
        {"display_name": "\ud800"},
        {"display_name": b"bytes"},
    ],
)
def test_invite_validation(changes: dict[str, Any]) -> None:
    with pytest.raises(InviteError):
        _sample_invite(**changes)


def test_invite_accepts_list_of_addresses() -> None:
    invite = _sample_invite(addresses=[Address("10.0.0.1", 1)])
    assert invite.addresses == (Address("10.0.0.1", 1),)
    hash(invite)


def test_create_invite() -> None:
    ident = Identity.generate()
    addrs = [parse_address("192.168.0.5:4000"), parse_address("[2001:db8::5]:4000")]
    invite = create_invite(ident, addresses=addrs, display_name="Bob", now=NOW + 0.9)
    assert invite.ed25519_public == ident.ed25519_public
    assert invite.x25519_public == ident.static_public
    assert invite.expires_at == int(NOW) + DEFAULT_TTL
    assert invite.addresses == tuple(addrs)
    assert invite.display_name == "Bob"
    assert len(invite.secret) == 32
    other = create_invite(ident, addresses=addrs, display_name="Bob", now=NOW)
    assert other.secret != invite.secret
    assert other.invite_id != invite.invite_id
    short = create_invite(ident, addresses=(), display_name="", ttl=60, now=NOW)
    assert short.expires_at == int(NOW) + 60
    assert decode_invite(encode_invite(invite), now=NOW) == invite
    with pytest.raises(InviteExpired):
        decode_invite(encode_invite(short), now=NOW + 60)
    for ttl in (0, -5, 1.5, True):
        with pytest.raises(InviteError):
            create_invite(ident, addresses=(), display_name="", ttl=ttl, now=NOW)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("text", "host", "port", "shown"),
    [
        ("192.168.1.2:5000", "192.168.1.2", 5000, "192.168.1.2:5000"),
        (" 10.0.0.1:1 ", "10.0.0.1", 1, "10.0.0.1:1"),
        ("[2001:DB8::1]:443", "2001:db8::1", 443, "[2001:db8::1]:443"),
        ("[::ffff:1.2.3.4]:80", str(ipaddress.IPv6Address("::ffff:1.2.3.4")), 80, None),
        ("Example.COM:65535", "example.com", 65535, "example.com:65535"),
        ("host.local.:22", "host.local", 22, "host.local:22"),
        ("a-b.c-d:7", "a-b.c-d", 7, "a-b.c-d:7"),
    ],
)
def test_parse_address(text: str, host: str, port: int, shown: str | None) -> None:
    address = parse_address(text)
    assert address == Address(host, port)
    assert address.host == host
    assert address.port == port
    if shown is not None:
        assert str(address) == shown
    assert parse_address(str(address)) == address


@pytest.mark.parametrize(
    "text",
    [
        "",
        "host",
        ":80",
        "host:",
        "host:0",
        "host:65536",
        "host:99999999",
        "host:-1",
        "host:+80",
        "host:\uff18\uff10",
        "host:80a",
        "2001:db8::1:80",
        "[2001:db8::1]",
        "[2001:db8::1]80",
        "[1.2.3.4]:80",
        "[example.com]:80",
        "[fe80::1%eth0]:80",
        "fe80::1%eth0:80",
        "-host:80",
        "host-:80",
        "ho_st:80",
        "ho st:80",
        "bücher.de:80",
        "a..b:80",
        "1.2.3:80",
        "256.1.1.1:80",
        ("a" * 64) + ".com:80",
        ".".join(["abcdefgh"] * 30) + ":80",
    ],
)
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(InviteError):
        parse_address(text)


def test_parse_address_rejects_non_string() -> None:
    with pytest.raises(InviteError):
        parse_address(b"1.2.3.4:5")  # type: ignore[arg-type]


@given(_addresses)
def test_address_str_round_trip(address: Address) -> None:
    assert parse_address(str(address)) == address


def test_address_validation() -> None:
    with pytest.raises(InviteError):
        Address("1.2.3.4", True)
    with pytest.raises(InviteError):
        Address("1.2.3.4", "80")  # type: ignore[arg-type]
    with pytest.raises(InviteError):
        Address(1234, 80)  # type: ignore[arg-type]
    assert Address("::FFFF:0:1", 1).host == "::ffff:0:1"


def _fake_adapters() -> list[SimpleNamespace]:
    def ip(value: Any) -> SimpleNamespace:
        return SimpleNamespace(ip=value, network_prefix=24, nice_name="x")

    return [
        SimpleNamespace(name="lo", ips=[ip("127.0.0.1"), ip(("::1", 0, 0))]),
        SimpleNamespace(
            name="eth0",
            ips=[
                ip("192.168.1.20"),
                ip(("fe80::1234", 0, 2)),
                ip(("2001:db8::20", 0, 0)),
                ip("169.254.3.4"),
            ],
        ),
        SimpleNamespace(
            name="wlan0",
            ips=[ip(("fd00::7", 0, 0)), ip("10.1.2.3"), ip("192.168.1.20"), ip("garbage")],
        ),
    ]


def test_interface_addresses_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(invite_mod, "ifaddr", SimpleNamespace(get_adapters=_fake_adapters))
    assert interface_addresses(41000) == [
        Address("192.168.1.20", 41000),
        Address("10.1.2.3", 41000),
        Address("2001:db8::20", 41000),
        Address("fd00::7", 41000),
    ]


def test_interface_addresses_real_machine() -> None:
    for address in interface_addresses(5555):
        assert address.port == 5555
        ip = ipaddress.ip_address(address.host)
        assert not ip.is_loopback
        assert not ip.is_link_local


# --------------------------------------------------------------------------- QR


def test_invite_qr_properties() -> None:
    code = encode_invite(_sample_invite())
    qr = invite_qr(code)
    assert isinstance(qr, segno.QRCode)
    assert qr.mode == "alphanumeric"
    assert qr.error == "M"
    assert not qr.is_micro


def test_invite_qr_biggest_invite_fits() -> None:
    invite = _sample_invite(
        display_name="🐱" * 63,
        addresses=tuple(Address("a" * 63 + f".b{i}", 65535) for i in range(16)),
    )
    code = encode_invite(invite)
    assert decode_invite(code, now=NOW) == invite
    qr = invite_qr(code)
    assert qr.error == "M"


@pytest.mark.parametrize("code", ["", "chinwag:abc", "CHINWAG:ÄÖ", "CHINWAG:AB\n"])
def test_invite_qr_rejects_non_canonical(code: str) -> None:
    with pytest.raises(ValueError):
        invite_qr(code)


def test_save_invite_qr_svg(tmp_path: Path) -> None:
    code = encode_invite(_sample_invite())
    path = tmp_path / "invite.SVG"
    save_invite_qr(code, path)
    text = path.read_text()
    assert "<svg" in text


def test_save_invite_qr_png_header(tmp_path: Path) -> None:
    path = tmp_path / "invite.png"
    save_invite_qr(encode_invite(_sample_invite()), path, scale=2)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("name", ["invite.jpg", "invite", "invite.png.txt"])
def test_save_invite_qr_bad_suffix(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        save_invite_qr(encode_invite(_sample_invite()), tmp_path / name)
    assert not (tmp_path / name).exists()


def test_save_invite_qr_bad_scale(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        save_invite_qr(encode_invite(_sample_invite()), tmp_path / "x.png", scale=0)


@pytest.mark.parametrize(
    "invite",
    [
        _sample_invite(),
        _sample_invite(addresses=(), display_name=""),
        _sample_invite(
            display_name="🐱" * 63,
            addresses=tuple(Address("a" * 63 + f".b{i}", 65535) for i in range(16)),
        ),
    ],
    ids=["typical", "minimal", "largest"],
)
def test_qr_png_decodes_to_exact_code(tmp_path: Path, invite: Invite) -> None:
    zxingcpp = pytest.importorskip(
        "zxingcpp", reason="zxing-cpp not installed (needed to decode the QR image)"
    )
    image_mod = pytest.importorskip("PIL.Image", reason="Pillow not installed")
    code = encode_invite(invite)
    path = tmp_path / "invite.png"
    save_invite_qr(code, path)
    with image_mod.open(path) as image:
        results = zxingcpp.read_barcodes(image.convert("L"))
    assert [r.text for r in results] == [code]
    assert results[0].format == zxingcpp.BarcodeFormat.QRCode
    assert decode_invite(results[0].text, now=NOW) == invite


def test_unicode_categories_sanity() -> None:
    # The test strategy's name alphabet must match what Invite accepts.
    for ch in BIDI:
        assert unicodedata.category(ch) in ("Cf",)

"""The parts of messenger/net/tor/ that need no tor: torrc lines, settings from the
environment, onion addresses and keys (tests/tor runs the rest against a real tor)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
import stem.response
from hypothesis import given
from hypothesis import strategies as st
from nacl.bindings import crypto_sign_keypair

from messenger.net.tor import (
    TOR_CONFIG_ENV,
    TOR_CONTROL_ENV,
    OnionAddressInvalid,
    OnionKeyInvalid,
    TorError,
    TorNotFound,
    TorSettings,
    check_onion_address,
    check_onion_key,
    find_tor,
    onion_address_from_key,
    onion_address_from_public_key,
    parse_torrc_lines,
)
from messenger.net.tor.control import MAX_STREAMS_PER_CIRCUIT, add_onion, parse_bootstrap_phase

# rend-spec-v3 / tor's own unit test (test_hs_common.c, test_build_address): this public
# key gives this address.
VECTOR_PUBKEY = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
VECTOR_ADDRESS = "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenl5sid.onion"


def test_known_address_vector() -> None:
    assert onion_address_from_public_key(VECTOR_PUBKEY) == VECTOR_ADDRESS
    assert check_onion_address(VECTOR_ADDRESS.upper()) == VECTOR_ADDRESS


@given(st.binary(min_size=32, max_size=32))
def test_every_public_key_gives_a_valid_address(public_key: bytes) -> None:
    address = onion_address_from_public_key(public_key)
    assert check_onion_address(address) == address
    raw = base64.b32decode(address.removesuffix(".onion").upper())
    assert raw[:32] == public_key and raw[-1] == 3


@given(st.text(max_size=80))
def test_check_onion_address_rejects_or_returns_lowercase(text: str) -> None:
    try:
        address = check_onion_address(text)
    except OnionAddressInvalid:
        return
    assert address == text.strip().lower()


def test_a_changed_character_breaks_the_checksum() -> None:
    flipped = ("a" if VECTOR_ADDRESS[0] != "a" else "b") + VECTOR_ADDRESS[1:]
    with pytest.raises(OnionAddressInvalid, match="checksum"):
        check_onion_address(flipped)
    with pytest.raises(OnionAddressInvalid):
        check_onion_address("example.com")


def test_key_checks() -> None:
    # A key as tor makes it: an expanded ed25519 secret (clamped scalar + prefix).
    public, secret = crypto_sign_keypair()

    expanded = bytearray(hashlib.sha512(secret[:32]).digest())
    expanded[0] &= 248
    expanded[31] &= 127
    expanded[31] |= 64
    key = bytes(expanded)
    check_onion_key(key)
    assert onion_address_from_key(key) == onion_address_from_public_key(public)
    with pytest.raises(OnionKeyInvalid, match="64 bytes"):
        check_onion_key(key[:63])
    with pytest.raises(OnionKeyInvalid, match="clamped"):
        check_onion_key(b"\xff" * 64)


def test_torrc_lines_skip_comments_and_refuse_owned_options() -> None:
    text = "# private network\n\nTestingTorNetwork 1\n  DirAuthority a b c  \n"
    assert parse_torrc_lines(text) == ("TestingTorNetwork 1", "DirAuthority a b c")
    for owned in ("SocksPort 9050", "controlport 9051", "DataDirectory /tmp/x"):
        with pytest.raises(TorError, match="set by Chinwag"):
            parse_torrc_lines(f"TestingTorNetwork 1\n{owned}\n", source="extra.torrc")


def test_settings_from_env(tmp_path: Path) -> None:
    config = tmp_path / "extra.torrc"
    config.write_text("UseDefaultFallbackDirs 0\n")
    settings = TorSettings.from_env({TOR_CONFIG_ENV: str(config)})
    assert settings.extra_lines == ("UseDefaultFallbackDirs 0",) and not settings.control
    attached = TorSettings.from_env({TOR_CONTROL_ENV: "127.0.0.1:9051"})
    assert attached.control == "127.0.0.1:9051" and attached.extra_lines == ()
    with pytest.raises(TorError, match="cannot read"):
        TorSettings.from_env({TOR_CONFIG_ENV: str(tmp_path / "missing")})
    assert TorSettings.from_env({}) == TorSettings()


def test_missing_tor_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TorNotFound, match="not found"):
        find_tor(str(tmp_path / "no-such-tor"))


def test_bootstrap_phase_is_read_with_stems_parser() -> None:
    state = parse_bootstrap_phase(
        'NOTICE BOOTSTRAP PROGRESS=45 TAG=requesting_descriptors SUMMARY="Asking for relay '
        'descriptors"'
    )
    assert state is not None
    assert (state.percent, state.tag) == (45, "requesting_descriptors")
    assert state.summary == "Asking for relay descriptors"
    assert parse_bootstrap_phase("NOTICE BOOTSTRAP TAG=x") is None


class OlderTor:
    """A control connection to a tor that predates ADD_ONION's PoW keywords (0.4.8): it
    answers as tor does, with stem's own message type. Only `msg` is used by add_onion."""

    def __init__(self, service_id: str, key: bytes) -> None:
        self.commands: list[str] = []
        self.service_id = service_id
        self.key = key

    def msg(self, command: str) -> stem.response.ControlMessage:
        self.commands.append(command)
        if "PoWDefensesEnabled" in command:
            text = (
                "512 Bad arguments to ADD_ONION: "
                'Unrecognized keyword argument "PoWDefensesEnabled"\r\n'
            )
        else:
            private = base64.b64encode(self.key).decode()
            text = (
                f"250-ServiceID={self.service_id}\r\n"
                f"250-PrivateKey=ED25519-V3:{private}\r\n250 OK\r\n"
            )
        return stem.response.ControlMessage.from_str(text)


def test_an_older_tor_gets_the_onion_without_the_pow_defence() -> None:
    key = bytes([0x40]) + bytes(30) + bytes([0x40]) + bytes(32)
    service_id = onion_address_from_key(key).removesuffix(".onion")
    tor = OlderTor(service_id, key)
    got_id, got_key, with_pow = add_onion(tor, 7777, ("127.0.0.1", 4242), None)
    assert (got_id, got_key, with_pow) == (service_id, key, False)
    first, second = tor.commands
    assert "PoWDefensesEnabled=1" in first and "PoWDefensesEnabled" not in second
    # The stream limit stays: any tor since 0.2.9 takes it.
    for command in tor.commands:
        assert f"MaxStreams={MAX_STREAMS_PER_CIRCUIT}" in command
        assert "Flags=MaxStreamsCloseCircuit" in command
        assert "Port=7777,127.0.0.1:4242" in command


def test_add_onion_failure_is_a_tor_error_with_tors_reason() -> None:
    class Refusing:
        def msg(self, command: str) -> stem.response.ControlMessage:
            return stem.response.ControlMessage.from_str("552 Onion address collision\r\n")

    with pytest.raises(TorError, match="Onion address collision"):
        add_onion(Refusing(), 7777, ("127.0.0.1", 1), None)

"""The open-group field of the LAN advert (docs/protocol.md §16.8)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from messenger.net.discovery import (
    MAX_OPEN_GROUP_BYTES,
    MAX_TXT_BYTES,
    TOKEN_LEN,
    Advert,
    clean_name,
    encode_txt,
    parse_txt,
)

TOKEN = bytes(range(TOKEN_LEN))


def test_open_group_only_from_a_visible_peer() -> None:
    raw = encode_txt(Advert(1, TOKEN, "Zoë", "Lab 3.14"))
    assert raw.endswith(b"\x0ao=Lab 3.14")
    assert parse_txt(raw) == Advert(1, TOKEN, "Zoë", "Lab 3.14")
    # Without a name (not visible) nothing about a group is announced or believed.
    assert b"o=" not in encode_txt(Advert(1, TOKEN, None, "Lab"))
    forged = encode_txt(Advert(1, TOKEN)) + b"\x05o=Lab"
    assert parse_txt(forged) == Advert(1, TOKEN, None, None)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=80), st.text(min_size=1, max_size=80))
def test_largest_name_and_group_still_fit(name: str, group: str) -> None:
    raw = encode_txt(Advert(1, TOKEN, name, group))
    assert len(raw) <= MAX_TXT_BYTES
    advert = parse_txt(raw)
    assert advert is not None
    if advert.name and advert.open_group:
        cut = clean_name(group).encode()[:MAX_OPEN_GROUP_BYTES].decode(errors="ignore")
        assert advert.open_group == clean_name(cut)


def test_the_worst_case_record_fits() -> None:
    # Longest name and group in 4-byte characters, with token and salt: within 255 bytes.
    widest = "\U0001f600" * 64
    raw = encode_txt(Advert(1, TOKEN, widest, widest, salt=bytes(8)))
    assert len(raw) <= MAX_TXT_BYTES
    assert parse_txt(raw) is not None

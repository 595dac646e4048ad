"""check_text, the rule every text we send obeys (messenger/core/text.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messenger.core.text import check_text
from messenger.errors import MessageTooLong, ServiceError
from messenger.protocol.wire import MAX_BODY_BYTES


def _as_it_was(body: str) -> str | None:
    """The rule as first written (an encoded copy to count, a stripped copy to test)."""
    size = len(body.encode("utf-8"))
    if size > MAX_BODY_BYTES:
        return "too long"
    if not body.strip():
        return "empty"
    return None


def _outcome(body: str) -> str | None:
    try:
        check_text(body)
    except MessageTooLong:
        return "too long"
    except ServiceError:
        return "empty"
    return None


edges = st.sampled_from(
    [
        "",
        " ",
        "\u3000\u2028\x1c\x85",  # whitespace outside ASCII
        "\u200b",  # not whitespace to str.strip
        "x" * MAX_BODY_BYTES,
        "x" * (MAX_BODY_BYTES + 1),
        "é" * (MAX_BODY_BYTES // 2),
        "é" * (MAX_BODY_BYTES // 2 + 1),
        " " * (MAX_BODY_BYTES + 1),
    ]
)


@settings(max_examples=300, deadline=None)
@given(edges | st.text() | st.text(alphabet=st.sampled_from(" \t\n\r\x0b\x0c\u00a0\u2003a")))
def test_check_text_decides_as_the_rule_says(body: str) -> None:
    # The ASCII shortcut (no encoded copy) and isspace() (no stripped copy) decide as
    # the encoded size and strip() do, for any text.
    assert _outcome(body) == _as_it_was(body)


def test_the_errors_name_the_size() -> None:
    with pytest.raises(MessageTooLong, match=f"{MAX_BODY_BYTES + 1} bytes"):
        check_text("x" * (MAX_BODY_BYTES + 1))
    with pytest.raises(MessageTooLong, match=f"{MAX_BODY_BYTES + 2} bytes"):
        check_text("é" * (MAX_BODY_BYTES // 2 + 1))

"""The rules for text that crosses the boundary: message bodies we send, names peers chose."""

from __future__ import annotations

import unicodedata

from ..errors import MessageTooLong, ServiceError
from ..protocol import wire


def check_text(body: str) -> None:
    """The rules every text message obeys, 1:1 or group: within the size limit, not blank."""
    # ASCII text is as many bytes as characters: no encoded copy to count (issue 15).
    size = len(body) if body.isascii() else len(body.encode("utf-8"))
    if size > wire.MAX_BODY_BYTES:
        raise MessageTooLong(
            f"message is {size} bytes; the limit is {wire.MAX_BODY_BYTES} bytes of text"
        )
    if not body or body.isspace():  # what `not body.strip()` says, without the copy
        raise ServiceError("an empty message is not sent")


def safe_name(name: str) -> str:
    """A peer-chosen name made safe to show: no control or bidi-override characters."""
    cleaned = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    return " ".join(cleaned.split())[: wire.MAX_NAME_CHARS]

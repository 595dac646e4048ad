"""What an encoder makes of a message, bytes or the error it raises, for property tests
that hold a fast encoder to the generic, checked path."""

from __future__ import annotations

from collections.abc import Callable

from messenger.protocol.wire import WireError, WireMessage


def encode_outcome(encode: Callable[[WireMessage], bytes], msg: WireMessage) -> tuple[str, object]:
    try:
        return ("bytes", encode(msg))
    except WireError as exc:
        return (type(exc).__name__, str(exc))

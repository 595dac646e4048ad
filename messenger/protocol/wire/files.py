"""The file-transfer messages (tags 40-59, docs/protocol.md §17)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .base import (
    _INT63,
    FILE_KEY_LEN,
    FILE_ROOT_LEN,
    FILE_TICKET_LEN,
    MAX_CLOSE_REASON_CHARS,
    MAX_FILE_NAME_CHARS,
    MAX_MIME_CHARS,
    MSG_ID_LEN,
    FileAction,
    _bytes,
    _enum,
    _int,
    _str,
)


@dataclass(frozen=True, slots=True)
class FileOffer:
    """A file in a conversation: a chat message (id, counters) plus the file's metadata and
    key. Size, chunk size and name are checked by the receiver, which answers a bad offer
    with FileControl(REJECT, reason) rather than dropping the session."""

    msg_id: bytes
    conversation: bytes
    seq: int
    lamport: int
    sent_at_ms: int
    root: bytes
    name: str
    mime: str
    size: int
    chunk_size: int
    key: bytes


@dataclass(frozen=True, slots=True)
class FileRequest:
    """Open a bulk connection for `root`: the next inbound bulk preamble with `ticket` is
    ours, and both ends derive its record keys from `secret`."""

    root: bytes
    ticket: bytes
    secret: bytes


@dataclass(frozen=True, slots=True)
class FileControl:
    root: bytes
    action: FileAction
    reason: str


@dataclass(frozen=True, slots=True)
class FileHave:
    """The sender holds every chunk of `root` and can serve it."""

    root: bytes


FILE_MESSAGES: Final = (FileOffer, FileRequest, FileControl, FileHave)
"""The messages the files worker (files/) handles (tags 40-59)."""


# Per-message field validation.  Each _make_* takes the raw field values (from the
# decoder or from a dataclass being encoded) and returns a validated message.


def _make_file_offer(f: list[object]) -> FileOffer:
    return FileOffer(
        msg_id=_bytes(f[0], "msg_id", MSG_ID_LEN),
        conversation=_bytes(f[1], "conversation", MSG_ID_LEN),
        seq=_int(f[2], "seq", 1, _INT63),
        lamport=_int(f[3], "lamport", 1, _INT63),
        sent_at_ms=_int(f[4], "sent_at_ms", 0, _INT63),
        root=_bytes(f[5], "root", FILE_ROOT_LEN),
        name=_str(f[6], "name", MAX_FILE_NAME_CHARS),
        mime=_str(f[7], "mime", MAX_MIME_CHARS),
        # Any int64: a negative or huge size is the receiver's to reject with a reason.
        size=_int(f[8], "size", -_INT63, _INT63),
        chunk_size=_int(f[9], "chunk_size", 0, 2**32),
        key=_bytes(f[10], "key", FILE_KEY_LEN),
    )


def _make_file_request(f: list[object]) -> FileRequest:
    return FileRequest(
        root=_bytes(f[0], "root", FILE_ROOT_LEN),
        ticket=_bytes(f[1], "ticket", FILE_TICKET_LEN),
        secret=_bytes(f[2], "secret", FILE_KEY_LEN),
    )


def _make_file_control(f: list[object]) -> FileControl:
    return FileControl(
        root=_bytes(f[0], "root", FILE_ROOT_LEN),
        action=_enum(f[1], "file action", FileAction),
        reason=_str(f[2], "reason", MAX_CLOSE_REASON_CHARS),
    )


def _make_file_have(f: list[object]) -> FileHave:
    return FileHave(root=_bytes(f[0], "root", FILE_ROOT_LEN))

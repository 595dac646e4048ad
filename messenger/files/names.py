"""File names from peers: checked strictly in offers, sanitised again before any save.

An offered name must already be a plain file name: no path separators, no control or
bidi characters, not "." or "..", not a Windows device name (CON, NUL, COM1, ...), no
characters Windows forbids, at most 255 UTF-8 bytes. `sanitise` turns anything into such
a name (for our own files and as a second line of defence when saving).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

MAX_NAME_BYTES: Final = 255
MAX_MIME_CHARS: Final = 127
_FORBIDDEN: Final = set('<>:"/\\|?*')
_DEVICE: Final = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)$", re.I)
_MIME: Final = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


class BadName(ValueError):
    pass


def _bad_char(ch: str) -> bool:
    return ch in _FORBIDDEN or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn")


def check_name(name: str) -> str:
    """Return `name` if it is a safe plain file name; raise BadName saying why not."""
    if type(name) is not str or not name:
        raise BadName("the file name is empty")
    if "/" in name or "\\" in name:
        raise BadName(f"the file name {name!r} contains a path separator")
    if name in (".", "..") or name.strip(". ") == "":
        raise BadName(f"{name!r} is not a file name")
    bad = [ch for ch in name if _bad_char(ch)]
    if bad:
        raise BadName(f"the file name contains forbidden characters {''.join(sorted(set(bad)))!r}")
    if name != name.strip() or name.endswith("."):
        raise BadName(f"the file name {name!r} starts or ends with a space or ends with a dot")
    if _DEVICE.match(name.split(".", 1)[0].rstrip()):
        raise BadName(f"{name!r} is a reserved device name on Windows")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise BadName(f"the file name is over {MAX_NAME_BYTES} bytes")
    return name


def sanitise(name: str, fallback: str = "file") -> str:
    """Any string made into a safe plain file name (never empty, never raises)."""
    name = unicodedata.normalize("NFC", str(name)).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join("_" if _bad_char(ch) else ch for ch in name).strip().rstrip(".").strip()
    stem, dot, ext = name.partition(".")
    if _DEVICE.match(stem.rstrip()):
        name = f"_{stem}{dot}{ext}"
    if name.strip(". _") == "":
        name = fallback
    while len(name.encode("utf-8")) > MAX_NAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) < 16 and stem:
            name = stem[:-1] + "." + ext
        else:
            name = name[:-1]
    return name


def check_mime(mime: str) -> str:
    if type(mime) is not str or len(mime) > MAX_MIME_CHARS or not _MIME.match(mime):
        raise BadName(f"{mime!r} is not a media type like image/png")
    return mime


def is_image(mime: str) -> bool:
    return mime in ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp")


def human_size(n: float) -> str:
    """Sizes as the user sees them everywhere (messages, transfer panel, CLI): binary units."""
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(n)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{int(n)} bytes"

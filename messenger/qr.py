"""The invite code as a QR image (segno): on screen, in a PNG or SVG file.

Kept out of protocol/invite.py (the pure codec): this is presentation, and writes files.
The code uses only QR alphanumeric characters, so the QR holds exactly the text code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import segno

_QR_ALPHANUMERIC: Final = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")


def invite_qr(code: str) -> segno.QRCode:
    """QR code (error correction M, alphanumeric mode) holding exactly ``code``."""
    if not code or not set(code) <= _QR_ALPHANUMERIC:
        raise ValueError("invite code must be in canonical form (uppercase, as from encode_invite)")
    return segno.make(code, error="m", mode="alphanumeric", micro=False, boost_error=False)


def save_invite_qr(code: str, path: Path, *, scale: int = 8) -> None:
    """Write the invite QR as PNG or SVG, chosen by the file suffix."""
    kind = Path(path).suffix.lower().lstrip(".")
    if kind not in ("png", "svg"):
        raise ValueError(f"unsupported QR image type {Path(path).suffix!r}; use .png or .svg")
    if not isinstance(scale, int) or scale < 1:
        raise ValueError("scale must be a positive integer")
    invite_qr(code).save(str(path), kind=kind, scale=scale, border=4)

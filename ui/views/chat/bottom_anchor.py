"""Messages sit at the bottom of a conversation, next to the composer, as in every chat
app: a short history is pushed down by a top margin, so the newest message is where the
eye goes after sending, and new ones grow the column upwards until it scrolls.

QListView lays its rows out from the top and has no alignment of its own; a top viewport
margin as tall as the unused height is the least intrusive way (clicks, `indexAt` and
the scroll bar all keep working in viewport coordinates, and the rows' layout, which
depends on the width only, is not redone)."""

from __future__ import annotations

from PySide6.QtWidgets import QListView


def fit_to_bottom(view: QListView) -> None:
    """Set the top margin that puts the rows at the bottom of `view` (none once they fill
    it). Call after the rows are laid out (`updateGeometries`)."""
    # The room the rows would have with no margin: the frame's inside.
    room = view.height() - 2 * view.frameWidth()
    content = view.contentsSize().height()
    top = max(0, room - content) if content > 0 else 0
    margins = view.viewportMargins()
    if margins.top() != top:
        view.setViewportMargins(margins.left(), top, margins.right(), margins.bottom())

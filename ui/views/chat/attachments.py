"""A file inside a message bubble, as the 1:1 and group histories both show it: the
thumbnail's size, the thumbnail, progress bar and status line under the name, the hint of
what a click does, the actions its menu offers; and files that arrive by drop or paste."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QMimeData, QPointF, QRectF, QSizeF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter
from PySide6.QtWidgets import QMenu

from messenger import TransferRecord, TransferState
from ui.models.transfers import ACTION_LABELS, available_actions, primary_action, status_text
from ui.views.paint import rounded_path

FILE_WIDTH = 260.0  # a file message's bubble is at least this wide (room for its status)
FILE_SPACING = 6.0
THUMB_HEIGHT = 160.0  # image thumbnails fit in FILE_WIDTH x this
THUMB_MAX_ZOOM = 1.5
BAR_HEIGHT = 4.0
PROGRESS_STATES = (TransferState.DOWNLOADING, TransferState.PAUSED, TransferState.FAILED)


def thumbnail_size(thumb: QImage, width: float) -> QSizeF:
    """Where a thumbnail fits in `width` x THUMB_HEIGHT: stored thumbnails are small, so
    they fill the box but are blown up at most THUMB_MAX_ZOOM times."""
    native = QSizeF(thumb.size()) * THUMB_MAX_ZOOM
    box = QSizeF(width, THUMB_HEIGHT)
    size = native.boundedTo(box)
    if size != native:
        size = native.scaled(box, Qt.AspectRatioMode.KeepAspectRatio)
    return size


def file_part_height(thumb_size: QSizeF | None, progress_bar: bool) -> float:
    """The thumbnail and progress bar's height, each with its spacing below."""
    height = 0.0
    if thumb_size is not None:
        height += thumb_size.height() + FILE_SPACING
    if progress_bar:
        height += BAR_HEIGHT + FILE_SPACING
    return height


def paint_file_part(
    painter: QPainter,
    rect: QRectF,
    t: TransferRecord,
    thumb: QImage | None,
    thumb_size: QSizeF | None,
    font: QFont,
    colors: tuple[QColor, QColor],
) -> None:
    """Thumbnail, progress bar and status line of a file message, from `rect`'s top left
    and as wide as `rect`; `colors` are (muted text, link)."""
    muted, link = colors
    left, y, width = rect.left(), rect.top(), rect.width()
    if thumb is not None and thumb_size is not None:
        target = QRectF(QPointF(left, y), thumb_size)
        painter.save()
        painter.setClipPath(rounded_path(target, 8, 8, 8, 8), Qt.ClipOperation.IntersectClip)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawImage(target, thumb)
        painter.restore()
        y += thumb_size.height() + FILE_SPACING
    if t.state in PROGRESS_STATES:
        track = QRectF(left, y, width, BAR_HEIGHT)
        painter.setPen(Qt.PenStyle.NoPen)
        trough = QColor(muted)
        trough.setAlphaF(0.3)
        painter.setBrush(trough)
        painter.drawRoundedRect(track, BAR_HEIGHT / 2, BAR_HEIGHT / 2)
        done = QRectF(track)
        done.setWidth(max(BAR_HEIGHT, width * min(1.0, t.progress)))
        painter.setBrush(link)
        painter.drawRoundedRect(done, BAR_HEIGHT / 2, BAR_HEIGHT / 2)
        y += BAR_HEIGHT + FILE_SPACING
    fm = QFontMetricsF(font)
    painter.setFont(font)
    painter.setPen(muted)
    status = fm.elidedText(status_text(t), Qt.TextElideMode.ElideRight, width)
    painter.drawText(
        QRectF(left, y, width, fm.height()),
        Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
        status,
    )


def action_hint(t: TransferRecord) -> str | None:
    """What a click on the file's bubble does, as written on its time line ("Download ▸")."""
    action = primary_action(t)
    return None if action is None else f"{ACTION_LABELS[action]} ▸"


def bubble_actions(t: TransferRecord, saved: bool) -> list[str]:
    """The file actions a bubble's context menu offers (the panel's buttons, and View)."""
    actions = available_actions(t, saved)
    if t.state is TransferState.COMPLETE and t.mime.startswith("image/"):
        actions.insert(0, "view")
    return actions


def add_file_actions(
    menu: QMenu, t: TransferRecord, saved: bool, run: Callable[[str, str], None]
) -> None:
    """The bubble's file actions as menu items; `run(action, transfer id)` does one."""
    for action in bubble_actions(t, saved):
        item = menu.addAction(ACTION_LABELS[action])
        item.triggered.connect(lambda _c=False, a=action, i=t.id: run(a, i))


class FileClick:
    """A press and a release on the same file's bubble: its primary action."""

    def __init__(self) -> None:
        self._pressed: str | None = None

    def press(self, t: TransferRecord | None) -> None:
        self._pressed = t.id if t is not None else None

    def release(self, t: TransferRecord | None) -> tuple[str, str] | None:
        """(action, transfer id) if the release completes a click on a file."""
        pressed, self._pressed = self._pressed, None
        if t is None or t.id != pressed:
            return None
        action = primary_action(t)
        return None if action is None else (action, t.id)


# -- files arriving by drop or paste -----------------------------------------------------------


def local_files(data: QMimeData) -> list[Path]:
    return [Path(u.toLocalFile()) for u in data.urls() if u.isLocalFile()]


def offers_files(data: QMimeData) -> bool:
    """Whether a drag carries something a conversation can send (files or an image)."""
    return data.hasUrls() or data.hasImage()


def take_files(
    data: QMimeData, send_files: Callable[[list[Path]], None], send_image: Callable[[object], None]
) -> bool:
    """Dropped or pasted: local files are sent as they are, else an image; False if
    neither came."""
    files = local_files(data)
    if files:
        send_files(files)
    elif data.hasImage():
        send_image(data.imageData())
    else:
        return False
    return True


def pasted_image_file(image: object) -> Path | None:
    """A pasted image written as a PNG to a private temporary folder (to be sent from
    there), or None if it is not an image."""
    if not isinstance(image, QImage) or image.isNull():
        return None
    folder = Path(tempfile.mkdtemp(prefix="chinwag-paste-"))
    path = folder / f"pasted {time.strftime('%Y-%m-%d %H.%M.%S')}.png"
    return path if image.save(str(path)) else None  # PNG, from the suffix

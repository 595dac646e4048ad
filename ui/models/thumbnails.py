"""Thumbnails of finished images, shared by the 1:1 and group histories and the files panel.

A thumbnail is made once (a small PNG), stored in the encrypted database through the
service, and kept here as a QImage by transfer id; the first ask starts the load and
`loaded` is called when it arrives.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
from PySide6.QtGui import QImage, QImageWriter

from messenger import TransferRecord, TransferState
from ui.bridge import Bridge
from ui.tasks import TaskSet

# Images larger than this get no thumbnail (making one means decrypting the whole file).
THUMBNAIL_MAX_SOURCE = 32 << 20
THUMBNAIL_SIZE = 112  # pixels, the longer side of a stored thumbnail


def make_thumbnail(data: bytes, size: int = THUMBNAIL_SIZE) -> bytes | None:
    """A PNG thumbnail of an image (None if Qt cannot read it)."""
    image = QImage.fromData(QByteArray(data))
    if image.isNull():
        return None
    small = image.scaled(
        size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    QImageWriter(buffer, QByteArray(b"png")).write(small)
    return bytes(buffer.data().data())


def wants_thumbnail(t: TransferRecord) -> bool:
    """A finished image small enough to decrypt whole for a thumbnail."""
    return (
        t.mime.startswith("image/")
        and t.state is TransferState.COMPLETE
        and t.size <= THUMBNAIL_MAX_SOURCE
    )


class Thumbnails:
    """Transfer id -> thumbnail (None while loading or if the image cannot be read)."""

    def __init__(
        self, bridge: Bridge, tasks: TaskSet, loaded: Callable[[str, QImage], None]
    ) -> None:
        self._bridge = bridge
        self._tasks = tasks  # the owner's: closing the owner cancels the loads
        self._loaded = loaded
        self._images: dict[str, QImage | None] = {}

    def get(self, t: TransferRecord) -> QImage | None:
        """A finished image's thumbnail; the first ask starts loading it."""
        if not wants_thumbnail(t):
            return None
        if t.id not in self._images and not self._tasks.closed:
            self._images[t.id] = None
            self._tasks.spawn(self._load(t.id))
        return self._images.get(t.id)

    async def _load(self, transfer_id: str) -> None:
        png = await self._bridge.thumbnail(transfer_id)
        if png is None:
            png = make_thumbnail(await self._bridge.file_bytes(transfer_id))
            if png is not None:
                await self._bridge.set_thumbnail(transfer_id, png)
        image = QImage.fromData(png) if png else None
        if image is not None and not image.isNull():
            self._images[transfer_id] = image
            self._loaded(transfer_id, image)

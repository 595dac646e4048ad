"""QR codes in the desktop app: crisp rendering of segno codes, and decoding with zxing-cpp.

Rendering never scales a bitmap smoothly. A code is first drawn at one pixel per module
(quiet zone included), then enlarged by an *integer* factor in device pixels with
nearest-neighbour sampling, so every module is a sharp square at any devicePixelRatio.

Decoding accepts a ``QImage`` or a ``PIL.Image``; it converts to an 8-bit grayscale buffer
itself (zxing-cpp's own QImage path does not work with PySide6) and is safe to call from a
worker thread. :class:`FrameDecoder` decodes camera frames off the UI thread, one at a
time, dropping the frames that arrive while one is being decoded.

Safety-number QR codes: the payload from ``messenger.identity.safety_number_qr_payload``
(65 bytes) is shown as the text ``CHINWAG-SAFETY:`` + unpadded base32 (RFC 4648). That text
uses only QR *alphanumeric* characters, exactly like invite codes, so it decodes to the
same string with every reader (no byte-mode charset guessing), and an invite QR scanned in
the wrong place is recognised and explained.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Final

import segno
import zxingcpp
from PySide6.QtCore import QObject, QPointF, QRectF, QSize, Qt, Signal, Slot
from PySide6.QtGui import QColor, QImage, QImageReader, QPainter, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage
    from PySide6.QtMultimedia import QVideoFrame, QVideoSink

__all__ = [
    "SAFETY_QR_PREFIX",
    "FrameDecoder",
    "QrImageError",
    "QrWidget",
    "decode_qr_file",
    "decode_qr_image",
    "parse_safety_qr_text",
    "qr_image",
    "qr_pixmap",
    "safety_qr",
    "safety_qr_text",
]

QUIET_ZONE: Final = 4  # modules of light border the QR standard asks for
SAFETY_QR_PREFIX: Final = "CHINWAG-SAFETY:"
DARK: Final = QColor(0x1B, 0x1B, 0x1F)
LIGHT: Final = QColor(0xFF, 0xFF, 0xFF)


class QrImageError(ValueError):
    """An image could not be read at all; ``str(exc)`` is a user-facing message."""


# --------------------------------------------------------------------------- rendering


def _module_image(qr: segno.QRCode, border: int, dark: QColor, light: QColor) -> QImage:
    """The code at one pixel per module, quiet zone included."""
    rows = [list(row) for row in qr.matrix_iter(scale=1, border=border)]
    n = len(rows)
    image = QImage(n, n, QImage.Format.Format_RGB32)
    image.fill(light)
    ink = dark.rgb()
    for y, row in enumerate(rows):
        for x, is_dark in enumerate(row):
            if is_dark:
                image.setPixel(x, y, ink)
    return image


def qr_image(
    qr: segno.QRCode,
    scale: int = 8,
    *,
    border: int = QUIET_ZONE,
    dark: QColor = DARK,
    light: QColor = LIGHT,
) -> QImage:
    """The code with each module ``scale`` x ``scale`` pixels (nearest neighbour: crisp)."""
    if scale < 1:
        raise ValueError("scale must be at least 1")
    base = _module_image(qr, border, dark, light)
    n = base.width()
    return base.scaled(
        n * scale,
        n * scale,
        Qt.AspectRatioMode.IgnoreAspectRatio,
        Qt.TransformationMode.FastTransformation,
    )


def qr_pixmap(
    qr: segno.QRCode,
    logical_size: int,
    device_pixel_ratio: float = 1.0,
    *,
    border: int = QUIET_ZONE,
) -> QPixmap:
    """The largest crisp rendering that fits ``logical_size`` logical pixels at this DPR.

    The pixmap carries ``device_pixel_ratio``, so it paints at the right size on HiDPI
    screens; its logical size may be a little smaller than asked (whole device pixels per
    module).
    """
    n = qr.symbol_size(scale=1, border=border)[0]
    scale = max(1, int(int(logical_size * device_pixel_ratio) // n))
    pixmap = QPixmap.fromImage(qr_image(qr, scale, border=border))
    pixmap.setDevicePixelRatio(device_pixel_ratio)
    return pixmap


class QrWidget(QWidget):
    """Paints a QR code as large as the widget allows, snapped to whole device pixels.

    The code always sits on a light card (dark modules on white, also in a dark theme:
    many readers cannot decode inverted codes).
    """

    def __init__(self, parent: QWidget | None = None, *, minimum: int = 240) -> None:
        super().__init__(parent)
        self._qr: segno.QRCode | None = None
        self._modules: QImage | None = None
        self._dimmed = False
        self.setMinimumSize(minimum, minimum)
        policy = QSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        self.setAccessibleName("QR code")

    def set_qr(self, qr: segno.QRCode | None) -> None:
        self._qr = qr
        self._modules = None if qr is None else _module_image(qr, QUIET_ZONE, DARK, LIGHT)
        self.update()

    def qr(self) -> segno.QRCode | None:
        return self._qr

    def set_dimmed(self, dimmed: bool) -> None:
        """Fade the code out (an expired invite must not be scanned)."""
        self._dimmed = dimmed
        self.update()

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return width

    def sizeHint(self) -> QSize:
        return QSize(300, 300)

    def paintEvent(self, event: object) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        dpr = self.devicePixelRatioF()
        side = min(self.width(), self.height())
        card = QRectF((self.width() - side) / 2, (self.height() - side) / 2, side, side)
        painter.setPen(QColor(0, 0, 0, 28))  # a hairline, so the card shows on white too
        painter.setBrush(LIGHT)
        painter.drawRoundedRect(card.adjusted(0.5, 0.5, -0.5, -0.5), 14, 14)
        if self._modules is None:
            painter.end()
            return
        n = self._modules.width()
        # whole device pixels per module, and a device-pixel-aligned origin
        device_side = int(side * dpr)
        scale = max(1, device_side // n)
        size_device = n * scale
        x_device = round(card.x() * dpr) + (device_side - size_device) // 2
        y_device = round(card.y() * dpr) + (device_side - size_device) // 2
        target = QRectF(
            QPointF(x_device / dpr, y_device / dpr),
            QPointF((x_device + size_device) / dpr, (y_device + size_device) / dpr),
        )
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        if self._dimmed:
            painter.setOpacity(0.15)
        painter.drawImage(target, self._modules)
        painter.end()


def safety_qr_text(payload: bytes) -> str:
    """The text shown in a safety-number QR (see the module docstring)."""
    return SAFETY_QR_PREFIX + base64.b32encode(payload).decode("ascii").rstrip("=")


def parse_safety_qr_text(text: str) -> bytes | None:
    """The payload of a safety-number QR's text, or None if it is not one."""
    compact = "".join(text.split()).upper()
    if not compact.startswith(SAFETY_QR_PREFIX):
        return None
    body = compact[len(SAFETY_QR_PREFIX) :]
    try:
        return base64.b32decode(body + "=" * (-len(body) % 8))
    except (binascii.Error, ValueError):
        return None


def safety_qr(payload: bytes) -> segno.QRCode:
    return segno.make(
        safety_qr_text(payload), error="m", mode="alphanumeric", micro=False, boost_error=False
    )


# --------------------------------------------------------------------------- decoding


def _read(source: object) -> list[str]:
    only_qr = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    found = zxingcpp.read_barcodes(source, formats=only_qr)
    texts: list[str] = []
    for barcode in found:
        if barcode.valid and barcode.text and barcode.text not in texts:
            texts.append(barcode.text)
    return texts


def decode_qr_image(image: QImage | PILImage) -> list[str]:
    """Texts of every QR code found in the image (empty if none). Thread-safe."""
    if not isinstance(image, QImage):
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            from PIL import Image

            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        return _read(image.convert("L"))
    if image.isNull() or image.width() < 1 or image.height() < 1:
        return []
    if image.hasAlphaChannel():  # a transparent background must read as light, not black
        flat = QImage(image.size(), QImage.Format.Format_RGB32)
        flat.fill(LIGHT)
        painter = QPainter(flat)
        painter.drawImage(0, 0, image)
        painter.end()
        image = flat
    gray = image.convertToFormat(QImage.Format.Format_Grayscale8)
    width, height, stride = gray.width(), gray.height(), gray.bytesPerLine()
    data = bytes(gray.constBits())  # a private copy, alive until the decode returns
    # (zxing-cpp's ImageView does not keep its buffer alive: keep `data` referenced here)
    view = zxingcpp.ImageView(
        memoryview(data).cast("B", (height, stride)),
        width,
        height,
        zxingcpp.ImageFormat.Lum,
        stride,
        1,
    )
    texts = _read(view)
    del view, data
    return texts


def load_image(path: str | Path) -> QImage:
    """Read an image file (EXIF rotation applied); raises QrImageError if unreadable."""
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    image = reader.read()
    if not image.isNull():
        return image
    try:  # formats Qt has no plugin for (Pillow reads a few more)
        from PIL import Image, ImageOps, UnidentifiedImageError

        with Image.open(path) as opened:
            gray = ImageOps.exif_transpose(opened).convert("L")
            data = gray.tobytes()
            image = QImage(
                data, gray.width, gray.height, gray.width, QImage.Format.Format_Grayscale8
            )
            return image.copy()
    except FileNotFoundError:
        raise QrImageError(f"The file {Path(path).name} does not exist.") from None
    except (OSError, UnidentifiedImageError, ValueError):
        raise QrImageError(f"{Path(path).name} is not an image Chinwag can read.") from None


def decode_qr_file(path: str | Path) -> list[str]:
    """Texts of every QR code in an image file. Raises QrImageError if it is unreadable.

    Photos can be large: call it off the UI thread (``asyncio.to_thread``).
    """
    return decode_qr_image(load_image(path))


# --------------------------------------------------------------------------- camera frames


class FrameDecoder(QObject):
    """Decodes video frames on a worker thread, one at a time; busy means dropped.

    Connect :meth:`attach` to a ``QVideoSink`` (or call :meth:`submit` with QImages);
    ``decoded`` is emitted on the UI thread with the texts of every frame that held at
    least one QR code. ``min_interval`` limits how often a decode starts (CPU use).
    """

    decoded = Signal(list)
    frameImage = Signal(QImage)  # every frame, for a viewfinder
    _finished = Signal(list)  # internal: worker -> UI thread (queued)

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        decode: Callable[[QImage], list[str]] = decode_qr_image,
        min_interval: float = 0.08,
    ) -> None:
        super().__init__(parent)
        self._decode = decode
        self._min_interval = min_interval
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="chinwag-qr"
        )
        self._busy = False
        self._last_start = 0.0
        self._sink: QVideoSink | None = None
        self.submitted = 0
        self.dropped = 0
        self._finished.connect(self._on_finished, Qt.ConnectionType.QueuedConnection)

    @property
    def busy(self) -> bool:
        return self._busy

    def attach(self, sink: QVideoSink) -> None:
        self.detach()
        self._sink = sink
        sink.videoFrameChanged.connect(self._on_frame)

    def detach(self) -> None:
        if self._sink is not None:
            try:
                self._sink.videoFrameChanged.disconnect(self._on_frame)
            except (RuntimeError, TypeError):
                pass
            self._sink = None

    # Decorated slots: the sink may emit from a capture thread, and PySide6 delivers
    # cross-thread signals safely only to declared slots (PYSIDE-3124).
    @Slot("QVideoFrame")
    def _on_frame(self, frame: QVideoFrame) -> None:
        if not frame.isValid():
            return
        image = frame.toImage()
        if image.isNull():
            return
        self.frameImage.emit(image)
        self.submit(image)

    def submit(self, image: QImage) -> bool:
        """Start decoding ``image`` unless a decode is running; False if it was dropped."""
        now = time.monotonic()
        if self._executor is None or self._busy or now - self._last_start < self._min_interval:
            self.dropped += 1
            return False
        self._busy = True
        self._last_start = now
        self.submitted += 1
        # QImage is implicitly shared and reentrant: the worker reads its own reference.
        future = self._executor.submit(self._decode, image.copy())
        future.add_done_callback(self._done)
        return True

    def _done(self, future: Future[list[str]]) -> None:  # worker thread
        try:
            texts = future.result()
        except Exception:  # a broken frame is just a frame without a code
            texts = []
        try:
            self._finished.emit(texts)
        except RuntimeError:  # the QObject is already gone
            pass

    @Slot(list)
    def _on_finished(self, texts: list[str]) -> None:
        self._busy = False
        if texts:
            self.decoded.emit(texts)

    def close(self) -> None:
        """Stop accepting frames; a decode in flight finishes on its own thread."""
        self.detach()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

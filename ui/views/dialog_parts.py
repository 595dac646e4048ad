"""Pieces shared by Chinwag's dialogs: titles and hints, busy spinner, inline messages,
an owned task set, the text-code field, and the QR scanning panel (image file, clipboard
image, webcam).

Colours come from ``ui.theme.current()``; buttons use the app style sheet's
``primary="true"`` property. When no app style sheet is installed (a dialog shown on its
own), :func:`style_dialog` adds a minimal fallback so the dialog still looks finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final, TypeVar

from PySide6.QtCore import QObject, QPointF, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontDatabase,
    QGuiApplication,
    QImage,
    QKeyEvent,
    QPainter,
    QPainterPath,
    QPen,
)
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ui import theme
from ui.tasks import TaskSet

log = logging.getLogger(__name__)
T = TypeVar("T")

CHECK_ICON: Final = (theme.ICONS / "checkbox-check.svg").as_posix()
NO_QR_IN_IMAGE: Final = "No QR code found in this image."
IMAGE_FILTER: Final = "Images (*.png *.jpg *.jpeg *.bmp *.gif *.webp *.tif *.tiff);;All files (*)"


# --------------------------------------------------------------------------- look


def error_color() -> str:
    return theme.current().danger


def success_color() -> str:
    return "#5fd37f" if theme.current().dark else "#1e8e3e"


def secondary_text_color() -> str:
    return theme.current().text_secondary


def monospace_font(point_size: float | None = None) -> QFont:
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    font.setStyleHint(QFont.StyleHint.Monospace)
    if point_size is not None:
        font.setPointSizeF(point_size)
    return font


def _fallback_sheet(t: theme.Theme) -> str:
    """Buttons and fields when the app's own style sheet is not installed."""
    return f"""
        QPushButton {{
            background: {t.input_bg}; color: {t.text}; border: none; border-radius: 8px;
            padding: 7px 16px; min-height: 20px;
        }}
        QPushButton:hover {{ background: {t.hover}; }}
        QPushButton:disabled {{ color: {t.text_muted}; }}
        QPushButton[primary="true"] {{
            background: {t.accent}; color: {t.accent_text}; font-weight: 600;
        }}
        QPushButton[primary="true"]:hover {{ background: {t.accent_hover}; }}
        QPushButton[primary="true"]:disabled {{ background: {t.border}; color: {t.text_muted}; }}
        QLineEdit, QPlainTextEdit {{
            background: {t.input_bg}; color: {t.text}; border: 1px solid transparent;
            border-radius: 8px; padding: 5px 8px;
        }}
        QLineEdit:focus, QPlainTextEdit:focus {{ border: 1px solid {t.accent}; }}
    """


def dialog_sheet() -> str:
    t = theme.current()
    sheet = f"""
        QDialog {{ background: {t.window}; }}
        QLabel#DialogTitle {{ font-size: 16pt; font-weight: 600; }}
        QLabel#SectionTitle {{ font-weight: 600; }}
        QLabel#Hint {{ color: {t.text_secondary}; }}
        QLabel#SmallHint {{ color: {t.text_muted}; font-size: 8.5pt; }}
        QFrame#Card {{
            background: {t.sidebar}; border: 1px solid {t.border}; border-radius: 14px;
        }}
        QPlainTextEdit#CodeBlock {{
            background: {t.sidebar}; border: 1px solid {t.border}; border-radius: 10px;
            padding: 8px 10px;
        }}
        QPlainTextEdit#CodeBlock:focus {{ border: 1px solid {t.accent}; }}
        QFrame#Rule {{ background: {t.border}; border: none; }}
        QCheckBox, QRadioButton {{ spacing: 9px; }}
        QCheckBox::indicator, QRadioButton::indicator {{
            width: 14px; height: 14px; background: {t.window};
            border: 2px solid {t.text_muted};
        }}
        QCheckBox::indicator {{ border-radius: 4px; }}
        QRadioButton::indicator {{ border-radius: 9px; }}
        QCheckBox::indicator:hover, QRadioButton::indicator:hover {{ border-color: {t.accent}; }}
        QCheckBox::indicator:checked {{
            background: {t.accent}; border-color: {t.accent}; image: url("{CHECK_ICON}");
        }}
        QRadioButton::indicator:checked {{
            background: {t.accent_text}; border: 5px solid {t.accent}; width: 8px; height: 8px;
        }}
        QCheckBox::indicator:disabled, QRadioButton::indicator:disabled {{
            border-color: {t.border};
        }}
        QCheckBox::indicator:checked:disabled {{ background: {t.border}; }}
    """
    app = QApplication.instance()
    if not isinstance(app, QApplication) or not app.styleSheet():
        sheet = _fallback_sheet(t) + sheet
    return sheet


class _ThemeFollower(QObject):
    """Re-applies a dialog's sheet when the theme changes; dies with the dialog."""

    def __init__(self, widget: QWidget, extra: Callable[[], None] | None) -> None:
        super().__init__(widget)
        self._widget = widget
        self._extra = extra

    def refresh(self, _theme: object = None) -> None:
        self._widget.setStyleSheet(dialog_sheet())
        if self._extra is not None:
            self._extra()


def style_dialog(widget: QWidget, extra: Callable[[], None] | None = None) -> None:
    """Apply the dialog sheet now and again whenever the theme changes (then ``extra``)."""
    follower = _ThemeFollower(widget, extra)
    follower.refresh()
    manager = theme.manager()
    if manager is not None:
        manager.changed.connect(follower.refresh)


def rule() -> QFrame:
    """A thin horizontal line between sections."""
    line = QFrame()
    line.setObjectName("Rule")
    line.setFixedHeight(1)
    return line


def title_label(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("DialogTitle")
    label.setWordWrap(True)
    label.setAccessibleName(text)
    return label


def section_label(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("SectionTitle")
    return label


def hint_label(text: str = "", *, small: bool = False) -> QLabel:
    label = QLabel(text)
    label.setObjectName("SmallHint" if small else "Hint")
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label


def primary_button(text: str, *, default: bool = True) -> QPushButton:
    button = QPushButton(text)
    button.setProperty("primary", True)
    button.setDefault(default)
    button.setAutoDefault(default)
    return button


def secondary_button(text: str, icon_name: str | None = None) -> QPushButton:
    button = QPushButton(text)
    button.setAutoDefault(False)
    button.setDefault(False)
    if icon_name:
        # Fusion leaves almost no gap between icon and text
        button.setStyleSheet("QPushButton { padding-left: 12px; padding-right: 16px; }")
        button.setText(f" {text}")
        button.setIcon(theme.icon(icon_name, theme.current().text))
        button.setIconSize(QSize(16, 16))
    return button


# --------------------------------------------------------------------------- tasks


class DialogTasks(TaskSet):
    """A TaskSet with a default error handler (the dialog's inline message)."""

    def __init__(self, name: str, on_error: Callable[[BaseException], None] | None = None) -> None:
        super().__init__(name)
        self._default_on_error = on_error

    def spawn(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> asyncio.Task[T]:
        handler = on_error or self._default_on_error

        def report(exc: BaseException) -> None:
            log.error("%s: task failed", self._name, exc_info=exc)
            if handler is not None:
                with contextlib.suppress(RuntimeError):  # the widget may be gone
                    handler(exc)

        return super().spawn(coro, on_error=report)

    @property
    def pending(self) -> bool:
        return len(self) > 0

    def cancel(self) -> None:
        """Cancel the others; a task that closes its own dialog finishes normally."""
        try:
            running = asyncio.current_task()
        except RuntimeError:
            running = None
        for task in list(self._tasks):
            if task is not running:
                task.cancel()


# --------------------------------------------------------------------------- busy, messages


class Spinner(QWidget):
    """An indeterminate busy indicator (a rotating arc) that only animates when shown."""

    def __init__(self, parent: QWidget | None = None, *, size: int = 18) -> None:
        super().__init__(parent)
        self._angle = 0
        self._timer = QTimer(self)
        self._timer.setInterval(16)
        self._timer.timeout.connect(self._tick)
        self.setFixedSize(size, size)
        self.setAccessibleName("Working")
        self.hide()

    def showEvent(self, event: Any) -> None:
        self._timer.start()
        super().showEvent(event)

    def hideEvent(self, event: Any) -> None:
        self._timer.stop()
        super().hideEvent(event)

    def _tick(self) -> None:
        self._angle = (self._angle + 6) % 360
        self.update()

    def paintEvent(self, event: Any) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        width = max(2.0, self.width() / 9)
        rect = QRectF(self.rect()).adjusted(width, width, -width, -width)
        track = QColor(theme.current().text)
        track.setAlphaF(0.15)
        painter.setPen(QPen(track, width))
        painter.drawEllipse(rect)
        pen = QPen(QColor(theme.current().accent), width)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        painter.setPen(pen)
        painter.drawArc(rect, -self._angle * 16, 100 * 16)
        painter.end()


class InlineMessage(QLabel):
    """A wrapped message under a form: error, success or plain info; hidden when empty.

    ``kind`` is "error", "success", "info" or "" (tests read it with ``text()``).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        self.kind = ""
        self.hide()

    def _show(self, text: str, color: str, kind: str) -> None:
        self.kind = kind
        self.setStyleSheet(f"color: {color};")
        self.setText(text)
        self.setAccessibleName(text)
        self.setVisible(bool(text))

    def error(self, text: str) -> None:
        self._show(text, error_color(), "error")

    def success(self, text: str) -> None:
        self._show(text, success_color(), "success")

    def info(self, text: str) -> None:
        self._show(text, secondary_text_color(), "info")

    def clear_message(self) -> None:
        self.kind = ""
        self.setText("")
        self.hide()


class BusyRow(QWidget):
    """A spinner and a short status text ("Unlocking…"), shown only while busy."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        self.spinner = Spinner(self)
        self.label = hint_label()
        self.label.setWordWrap(False)
        layout.addWidget(self.spinner)
        layout.addWidget(self.label, 1)
        self.hide()

    @property
    def active(self) -> bool:
        return not self.isHidden()

    def start(self, text: str) -> None:
        self.label.setText(text)
        self.spinner.show()
        self.show()

    def stop(self) -> None:
        self.spinner.hide()
        self.hide()


# --------------------------------------------------------------------------- code field


class CodeEdit(QPlainTextEdit):
    """Multi-line monospace field for a pasted text code. An image pasted into it is
    handed over (``imagePasted``) instead of being dropped; Enter emits ``submitted``."""

    imagePasted = Signal(QImage)
    submitted = Signal()

    def __init__(self, parent: QWidget | None = None, *, lines: int = 5) -> None:
        super().__init__(parent)
        self.setObjectName("CodeBlock")
        self.setFont(monospace_font())
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.setWordWrapMode(self.wordWrapMode().WrapAnywhere)
        self.setTabChangesFocus(True)
        self.setFixedHeight(self.fontMetrics().lineSpacing() * lines + 22)

    def canInsertFromMimeData(self, source: Any) -> bool:
        return bool(source.hasImage()) or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: Any) -> None:
        if source.hasImage() and not source.hasText():
            image = source.imageData()
            if isinstance(image, QImage) and not image.isNull():
                self.imagePasted.emit(image)
                return
        super().insertFromMimeData(source)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
            event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        ):
            self.submitted.emit()
            return
        super().keyPressEvent(event)


# --------------------------------------------------------------------------- camera


class CameraView(QWidget):
    """Shows camera frames mirrored (like a mirror) with a viewfinder square."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._frame: QImage | None = None
        self._status = "Starting the camera…"
        self.setMinimumSize(320, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(260)
        self.setAccessibleName("Camera preview")

    def set_frame(self, image: QImage) -> None:
        self._frame = image
        self.update()

    def clear(self) -> None:
        self._frame = None
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(420, 260)

    def paintEvent(self, event: Any) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        bounds = QRectF(self.rect())
        clip = QPainterPath()
        clip.addRoundedRect(bounds, 12, 12)
        painter.setClipPath(clip)
        painter.fillRect(bounds, QColor("#111114"))
        if self._frame is not None and not self._frame.isNull():
            size = self._frame.size().scaled(
                self.size(), Qt.AspectRatioMode.KeepAspectRatioByExpanding
            )
            target = QRectF(
                (self.width() - size.width()) / 2,
                (self.height() - size.height()) / 2,
                size.width(),
                size.height(),
            )
            painter.save()
            painter.translate(self.width(), 0)
            painter.scale(-1, 1)
            painter.drawImage(target, self._frame)
            painter.restore()
        side = min(self.width(), self.height()) * 0.68
        finder = QRectF((self.width() - side) / 2, (self.height() - side) / 2, side, side)
        outside = QPainterPath()
        outside.addRect(bounds)
        hole = QPainterPath()
        hole.addRoundedRect(finder, 14, 14)
        painter.fillPath(outside.subtracted(hole), QColor(0, 0, 0, 110))
        pen = QPen(QColor("white"), 3)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        painter.setPen(pen)
        arm = side * 0.14
        x0, y0, x1, y1 = finder.left(), finder.top(), finder.right(), finder.bottom()
        for cx, cy, dx, dy in ((x0, y0, 1, 1), (x1, y0, -1, 1), (x0, y1, 1, -1), (x1, y1, -1, -1)):
            painter.drawLine(QPointF(cx, cy), QPointF(cx + dx * arm, cy))
            painter.drawLine(QPointF(cx, cy), QPointF(cx, cy + dy * arm))
        painter.setPen(QColor("#E8E8EC"))
        if self._frame is None:
            painter.drawText(bounds, Qt.AlignmentFlag.AlignCenter, self._status)
        else:
            caption = bounds.adjusted(0, 0, 0, -6)
            painter.drawText(
                caption,
                int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom),
                "Hold the code inside the square",
            )
        painter.end()


class CameraScanner(QWidget):
    """A webcam viewfinder whose frames are decoded off the UI thread.

    ``scanned(list)`` carries the texts of QR codes seen (each distinct set once);
    ``problem(str)`` a user-facing reason the camera cannot be used. A missing, busy or
    forbidden camera never raises.
    """

    scanned = Signal(list)
    problem = Signal(str)
    runningChanged = Signal(bool)

    NO_FRAMES_AFTER_MS: Final = 6000

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from ui.qr import FrameDecoder  # segno and zxing-cpp: not on the start-up path

        self.view = CameraView(self)
        self.decoder = FrameDecoder(self)
        self.decoder.frameImage.connect(self._on_frame_image)
        self.decoder.decoded.connect(self._on_decoded)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        self._camera: Any = None
        self._session: Any = None
        self._sink: Any = None
        self._last: list[str] = []
        self._got_frame = False
        self._watchdog = QTimer(self)
        self._watchdog.setSingleShot(True)
        self._watchdog.timeout.connect(self._no_frames)
        self.hide()

    @property
    def running(self) -> bool:
        return self._camera is not None

    def start(self) -> None:
        if self.running:
            return
        try:
            from PySide6.QtMultimedia import (
                QCamera,
                QMediaCaptureSession,
                QMediaDevices,
                QVideoSink,
            )
        except ImportError:
            self.problem.emit("Camera support (Qt Multimedia) is not installed.")
            return
        if not QMediaDevices.videoInputs():
            self.problem.emit(
                "No camera found. Connect a webcam, or open a screenshot of the code instead."
            )
            return
        if not self._permission_granted():
            return
        self._last = []
        self._got_frame = False
        self._camera = QCamera(QMediaDevices.defaultVideoInput(), self)
        self._camera.errorOccurred.connect(self._on_camera_error)
        self._session = QMediaCaptureSession(self)
        self._sink = QVideoSink(self)
        self._session.setCamera(self._camera)
        self._session.setVideoSink(self._sink)
        self.decoder.attach(self._sink)
        self.view.clear()
        self.show()
        self._camera.start()
        self._watchdog.start(self.NO_FRAMES_AFTER_MS)
        self.runningChanged.emit(True)

    def _permission_granted(self) -> bool:
        try:
            from PySide6.QtCore import QCameraPermission
        except ImportError:  # Qt < 6.5 has no permission API
            return True
        app = QGuiApplication.instance()
        if not isinstance(app, QGuiApplication):
            return True
        permission = QCameraPermission()
        status = app.checkPermission(permission)
        if status == Qt.PermissionStatus.Granted:
            return True
        if status == Qt.PermissionStatus.Undetermined:
            app.requestPermission(permission, self, self._permission_answer)
            return False
        self._denied()
        return False

    def _permission_answer(self, permission: Any) -> None:
        app = QGuiApplication.instance()
        if (
            isinstance(app, QGuiApplication)
            and app.checkPermission(permission) == Qt.PermissionStatus.Granted
        ):
            self.start()
        else:
            self._denied()

    def _denied(self) -> None:
        self.problem.emit(
            "Chinwag may not use the camera. Allow camera access in your system settings, "
            "or open a screenshot of the code instead."
        )

    def stop(self) -> None:
        self._watchdog.stop()
        self.decoder.detach()
        camera, self._camera = self._camera, None
        if camera is not None:
            with contextlib.suppress(RuntimeError):
                camera.stop()
                camera.deleteLater()
        if self._session is not None:
            self._session.deleteLater()
            self._session = None
        if self._sink is not None:
            self._sink.deleteLater()
            self._sink = None
        self.hide()
        self.runningChanged.emit(False)

    def close_scanner(self) -> None:
        if self.running:
            self.stop()
        self.decoder.close()

    def _on_camera_error(self, error: Any, text: str) -> None:
        self.stop()
        self.problem.emit(
            f"The camera could not be used ({text or 'unknown error'}). "
            "It may be in use by another app."
        )

    def _no_frames(self) -> None:
        if self.running and not self._got_frame:
            self.stop()
            self.problem.emit(
                "The camera is not sending any picture. It may be in use by another app."
            )

    def _on_frame_image(self, image: QImage) -> None:
        self._got_frame = True
        self.view.set_frame(image)

    def _on_decoded(self, texts: list[str]) -> None:
        if texts == self._last:
            return
        self._last = list(texts)
        self.scanned.emit(texts)


# --------------------------------------------------------------------------- scan panel


class ScanPanel(QWidget):
    """Three ways to read a QR code: the webcam, an image file, or the clipboard.

    Emits ``scanned(texts, source)`` (source: "camera", "file" or "clipboard") when a
    QR code was read, and ``problem(message)`` with a user-facing message otherwise
    (e.g. "No QR code found in this image.").
    """

    scanned = Signal(list, str)
    problem = Signal(str)
    busyChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None, *, compact: bool = False) -> None:
        super().__init__(parent)
        self.tasks = DialogTasks(
            "scan panel", on_error=lambda exc: self.problem.emit(f"Could not read it: {exc}")
        )
        self.camera_button = secondary_button("Scan with camera", "camera")
        self.file_button = secondary_button("Open image…", "image")
        self.paste_button = secondary_button("Paste image", "clipboard")
        self.camera_button.setToolTip("Hold their code up to your webcam")
        self.file_button.setToolTip("Open a screenshot or photo of their code")
        self.paste_button.setToolTip("Read a code from an image you copied")
        for button, name in (
            (self.camera_button, "Scan a QR code with the camera"),
            (self.file_button, "Open an image file with a QR code"),
            (self.paste_button, "Paste an image with a QR code from the clipboard"),
        ):
            button.setAccessibleName(name)
            button.setMinimumHeight(36)
        self.camera = CameraScanner(self)
        self.camera.scanned.connect(lambda texts: self.scanned.emit(texts, "camera"))
        self.camera.problem.connect(self.problem)
        self.camera.runningChanged.connect(self._camera_running)

        buttons = QHBoxLayout()
        buttons.setSpacing(8)
        buttons.addWidget(self.camera_button)
        buttons.addWidget(self.file_button)
        buttons.addWidget(self.paste_button)
        if compact:
            buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(10)
        layout.addLayout(buttons)
        layout.addWidget(self.camera)

        self.camera_button.clicked.connect(self.toggle_camera)
        self.file_button.clicked.connect(self.choose_file)
        self.paste_button.clicked.connect(self.paste_image)

    # -- camera ----------------------------------------------------------------------------

    def toggle_camera(self) -> None:
        if self.camera.running:
            self.camera.stop()
        else:
            self.camera.start()

    def _camera_running(self, running: bool) -> None:
        self.camera_button.setText(" Stop camera" if running else " Scan with camera")
        QTimer.singleShot(0, self._fit_window)

    def _fit_window(self) -> None:
        window = self.window()
        if window is not self and window.isVisible():
            window.adjustSize()

    def stop_camera(self) -> None:
        if self.camera.running:
            self.camera.stop()

    # -- files and clipboard ---------------------------------------------------------------

    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open an image of a QR code", str(Path.home()), IMAGE_FILTER
        )
        if path:
            self.decode_file(path)

    def decode_file(self, path: str | Path) -> asyncio.Task[None]:
        return self.tasks.spawn(self._decode_file(Path(path)))

    async def _decode_file(self, path: Path) -> None:
        from ui.qr import QrImageError, decode_qr_file

        self._busy(True)
        try:
            texts = await asyncio.to_thread(decode_qr_file, path)
        except QrImageError as exc:
            self.problem.emit(str(exc))
            return
        finally:
            self._busy(False)
        self._report(texts, "file")

    def paste_image(self) -> asyncio.Task[None] | None:
        clipboard = QGuiApplication.clipboard()
        image = clipboard.image()
        if not image.isNull():
            return self.decode_image(image, "clipboard")
        mime = clipboard.mimeData()
        if mime is not None and mime.hasUrls():
            for url in mime.urls():
                if url.isLocalFile():
                    return self.decode_file(url.toLocalFile())
        self.problem.emit(
            "The clipboard holds no image. Copy a screenshot of the QR code, then try again."
        )
        return None

    def decode_image(self, image: QImage, source: str) -> asyncio.Task[None]:
        return self.tasks.spawn(self._decode_image(image.copy(), source))

    async def _decode_image(self, image: QImage, source: str) -> None:
        from ui.qr import decode_qr_image

        self._busy(True)
        try:
            texts = await asyncio.to_thread(decode_qr_image, image)
        finally:
            self._busy(False)
        self._report(texts, source)

    def _report(self, texts: list[str], source: str) -> None:
        if texts:
            self.scanned.emit(texts, source)
        else:
            self.problem.emit(NO_QR_IN_IMAGE)

    def _busy(self, busy: bool) -> None:
        self.file_button.setEnabled(not busy)
        self.paste_button.setEnabled(not busy)
        self.busyChanged.emit(busy)

    def set_active(self, active: bool) -> None:
        """Disable (and stop the camera) while the dialog is busy with a result."""
        if not active:
            self.stop_camera()
        self.setEnabled(active)

    def close_panel(self) -> None:
        self.tasks.cancel()
        self.camera.close_scanner()

"""Small painted pieces shared by the views: avatars, delivery ticks, badges, rounded
bubbles. All vector, all from the current theme, so they are crisp at any scale."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from messenger import MessageState
from ui import theme


def rounded_path(rect: QRectF, tl: float, tr: float, br: float, bl: float) -> QPainterPath:
    """A rectangle with its own radius per corner (grouped bubbles have tight corners)."""
    path = QPainterPath()
    x, y, w, h = rect.x(), rect.y(), rect.width(), rect.height()
    limit = min(w, h) / 2
    tl, tr, br, bl = (min(r, limit) for r in (tl, tr, br, bl))
    path.moveTo(x + tl, y)
    path.lineTo(x + w - tr, y)
    path.arcTo(x + w - 2 * tr, y, 2 * tr, 2 * tr, 90, -90)
    path.lineTo(x + w, y + h - br)
    path.arcTo(x + w - 2 * br, y + h - 2 * br, 2 * br, 2 * br, 0, -90)
    path.lineTo(x + bl, y + h)
    path.arcTo(x, y + h - 2 * bl, 2 * bl, 2 * bl, 270, -90)
    path.lineTo(x, y + tl)
    path.arcTo(x, y, 2 * tl, 2 * tl, 180, -90)
    path.closeSubpath()
    return path


DAY_PILL_MARGIN = 24  # above and below a day's pill, together


def day_pill_height(fm: QFontMetricsF) -> float:
    """The room a day's pill takes above the first message of a day."""
    return fm.height() + 8 + DAY_PILL_MARGIN


def paint_day_pill(
    painter: QPainter, rect: QRectF, day: str, font: QFont, fill: QColor, text: QColor
) -> None:
    """The day's pill ("Today", "Yesterday", "Mon, 7 December"), centred at the top of
    `rect`, above the first message of a day."""
    fm = QFontMetricsF(font)
    w = fm.horizontalAdvance(day) + 24
    h = fm.height() + 8
    pill = QRectF(rect.center().x() - w / 2, rect.top() + DAY_PILL_MARGIN * 2 / 3, w, h)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(fill)
    painter.drawRoundedRect(pill, h / 2, h / 2)
    painter.setFont(font)
    painter.setPen(text)
    painter.drawText(pill, Qt.AlignmentFlag.AlignCenter, day)


def paint_avatar(
    painter: QPainter, rect: QRectF, name: str, contact_id: str, font: QFont | None = None
) -> None:
    """A filled circle in the contact's stable colour with their initials."""
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(theme.avatar_color(contact_id))
    painter.drawEllipse(rect)
    f = QFont(font) if font is not None else QFont(painter.font())
    f.setPixelSize(max(8, round(rect.height() * 0.38)))
    f.setWeight(QFont.Weight.DemiBold)
    painter.setFont(f)
    painter.setPen(QColor("#ffffff"))
    painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, theme.initials(name))
    painter.restore()


def paint_presence(
    painter: QPainter, avatar: QRectF, online: bool, ring: QColor, route: str = ""
) -> None:
    """A green dot at the avatar's lower right, ringed in the background colour; for a
    contact reached over Tor a larger purple onion mark (concentric rings) instead."""
    if not online:
        return
    tor = route == "tor"
    d = max(11.0 if tor else 8.0, avatar.width() * (0.36 if tor else 0.28))
    dot = QRectF(avatar.right() - d + 2, avatar.bottom() - d + 2, d, d)
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(QPen(ring, max(2.0, d * 0.16)))
    painter.setBrush(theme.current().color("tor" if tor else "online"))
    painter.drawEllipse(dot)
    if tor:
        paint_onion_rings(painter, dot.adjusted(d * 0.08, d * 0.08, -d * 0.08, -d * 0.08))
    painter.restore()


def paint_onion_rings(painter: QPainter, rect: QRectF, color: QColor | None = None) -> None:
    """Tor's onion, drawn as its logo does: rings round a dot, inside `rect`."""
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    c = rect.center()
    r = rect.width() / 2
    painter.setPen(QPen(color or QColor("#ffffff"), max(1.0, r * 0.17)))
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.drawEllipse(c, r * 0.58, r * 0.58)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(color or QColor("#ffffff"))
    painter.drawEllipse(c, r * 0.24, r * 0.24)
    painter.restore()


def paint_verified(painter: QPainter, rect: QRectF, color: QColor) -> None:
    """A filled circle with a check mark: "you compared safety numbers"."""
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(color)
    painter.drawEllipse(rect)
    s = rect.width()
    pen = QPen(QColor("#ffffff"), max(1.2, s * 0.13))
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    painter.setPen(pen)
    path = QPainterPath(QPointF(rect.x() + s * 0.28, rect.y() + s * 0.52))
    path.lineTo(rect.x() + s * 0.44, rect.y() + s * 0.67)
    path.lineTo(rect.x() + s * 0.73, rect.y() + s * 0.36)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.drawPath(path)
    painter.restore()


def tick_width(size: float, state: MessageState) -> float:
    if state in (MessageState.DELIVERED, MessageState.READ):
        return size * 1.5
    return size


def paint_ticks(
    painter: QPainter,
    x: float,
    y: float,
    size: float,
    state: MessageState,
    color: QColor,
    knockout: QColor,
) -> None:
    """Signal-style delivery state at (x, y): a clock while queued, a ringed check once sent,
    two ringed checks when delivered, two filled ones when read."""
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    width = max(1.1, size * 0.095)
    pen = QPen(color, width)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    r = size / 2 - width / 2

    def check(cx: float, cy: float, ink: QColor) -> None:
        p = QPen(ink, width)
        p.setCapStyle(Qt.PenCapStyle.RoundCap)
        p.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        painter.setPen(p)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        path = QPainterPath(QPointF(cx - r * 0.45, cy + r * 0.02))
        path.lineTo(cx - r * 0.1, cy + r * 0.38)
        path.lineTo(cx + r * 0.48, cy - r * 0.3)
        painter.drawPath(path)

    cy = y + size / 2
    if state is MessageState.QUEUED:
        cx = x + size / 2
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawEllipse(QPointF(cx, cy), r, r)
        painter.drawLine(QPointF(cx, cy), QPointF(cx, cy - r * 0.55))
        painter.drawLine(QPointF(cx, cy), QPointF(cx + r * 0.4, cy + r * 0.2))
    elif state is MessageState.SENT:
        cx = x + size / 2
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawEllipse(QPointF(cx, cy), r, r)
        check(cx, cy, color)
    else:
        filled = state is MessageState.READ
        for cx in (x + size / 2, x + size):
            if filled:
                painter.setPen(QPen(knockout, width))
                painter.setBrush(color)
            else:
                painter.setPen(pen)
                painter.setBrush(knockout)
            painter.drawEllipse(QPointF(cx, cy), r, r)
            check(cx, cy, knockout if filled else color)
    painter.restore()


def paint_badge(painter: QPainter, right: float, center_y: float, count: int, font: QFont) -> float:
    """An unread-count pill ending at `right`; returns its width."""
    t = theme.current()
    text = "99+" if count > 99 else str(count)
    f = QFont(font)
    f.setWeight(QFont.Weight.DemiBold)
    fm = QFontMetricsF(f)
    h = max(18.0, fm.height() + 4)
    w = max(h, fm.horizontalAdvance(text) + 12)
    rect = QRectF(right - w, center_y - h / 2, w, h)
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(t.color("badge"))
    painter.drawRoundedRect(rect, h / 2, h / 2)
    painter.setFont(f)
    painter.setPen(t.color("badge_text"))
    painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
    painter.restore()
    return w


class Avatar(QWidget):
    """A round initials avatar (header, dialogs), optionally with a presence dot."""

    def __init__(self, size: int = 40, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._size = size
        self._name = ""
        self._contact_id = ""
        self._online = False
        self._route = ""
        self.setFixedSize(size, size)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)

    def set_contact(self, name: str, contact_id: str, online: bool = False) -> None:
        self._name, self._contact_id, self._online = name, contact_id, online
        self.setAccessibleName(f"{name}'s avatar")
        self.update()

    def set_online(self, online: bool) -> None:
        self._online = online
        self.update()

    def set_route(self, route: str) -> None:
        """How the contact is reached ("tor" shows the onion mark)."""
        self._route = route
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(self._size, self._size)

    def paintEvent(self, _event: object) -> None:
        if not self._contact_id:
            return
        painter = QPainter(self)
        rect = QRectF(0.5, 0.5, self._size - 1, self._size - 1)
        paint_avatar(painter, rect, self._name, self._contact_id)
        bg = self.palette().color(self.backgroundRole())
        ring = theme.current().color("surface") or bg
        paint_presence(painter, rect, self._online, ring, self._route)
        painter.end()

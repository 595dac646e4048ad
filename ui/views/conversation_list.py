"""The left pane's list: a QListView over the conversation model, drawn by a delegate
(avatar, name, verified mark, presence, preview, time, unread badge)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from PySide6.QtCore import (
    QEvent,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QRectF,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QFocusEvent,
    QFont,
    QFontMetricsF,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPen,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from ui import theme
from ui.models.conversations import ConversationItem, ConversationListModel
from ui.models.history import local_time, time_label
from ui.views.fitted_list import FittedListView
from ui.views.paint import paint_avatar, paint_badge, paint_presence, paint_ticks, paint_verified

ROW_HEIGHT = 72
AVATAR = 48
PAD = 12

Index = QModelIndex | QPersistentModelIndex
LINE_GAP = 4.0  # between a row's two lines of text


@dataclass(frozen=True, slots=True)
class RowLines:
    """A list row's two lines of text: their fonts, metrics and place."""

    name_font: QFont
    small: QFont
    preview_font: QFont
    fm_name: QFontMetricsF
    fm_small: QFontMetricsF
    fm_preview: QFontMetricsF
    left: float
    right: float
    top: float
    line1_h: float
    line2_h: float


def list_time(ms: int, now: dt.datetime | None = None) -> str:
    """Today: the time; this week: the weekday; this year: day and month; else the date."""
    when = local_time(ms)
    now = now or dt.datetime.now()
    days = (now.date() - when.date()).days
    if days <= 0:
        return time_label(ms)
    if days < 7:
        return when.strftime("%a")
    if when.year == now.year:
        return f"{when.day} {when.strftime('%b')}"
    return when.strftime("%d/%m/%Y")


def preview_text(item: ConversationItem) -> str:
    if item.contact.key_changed:
        return "⚠ Safety number changed"  # held: said before anything they write
    if item.typing:
        return "typing…"
    if item.last is None:
        return "Say hello 👋" if item.online else "No messages yet"
    return " ".join(item.last.body.split())


class ConversationDelegate(QStyledItemDelegate):
    _font_key = ""
    _font_set: tuple[QFont, QFont, QFont, QFont]
    _metrics: dict[str, QFontMetricsF]

    def _fonts(self, base: QFont) -> tuple[QFont, QFont, QFont, QFont]:
        """The row's fonts and their metrics, derived once per base font."""
        key = base.key()
        if key != self._font_key:
            name = theme.scaled_font(base, 1.02, QFont.Weight.DemiBold)
            small = theme.scaled_font(base, 0.86)
            preview = theme.scaled_font(base, 0.94)
            unread = theme.scaled_font(base, 0.94, QFont.Weight.Medium)
            self._font_set = (name, small, preview, unread)
            self._metrics = {f.key(): QFontMetricsF(f) for f in self._font_set}
            self._font_key = key
        return self._font_set

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        fm = QFontMetricsF(option.font)
        return QSize(200, max(ROW_HEIGHT, round(fm.height() * 2 + 34)))

    def _paint_background(
        self, painter: QPainter, option: QStyleOptionViewItem, rect: QRectF
    ) -> QColor:
        """The row's selection or hover, and a focus ring; returns the colour behind it."""
        t = theme.current()
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hovered = bool(option.state & QStyle.StateFlag.State_MouseOver)
        background = t.color("sidebar")
        if selected or hovered:
            background = t.color("selected" if selected else "hover")
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(background)
            painter.drawRoundedRect(rect.adjusted(8, 2, -8, -2), 10, 10)
        keyboard = option.state & QStyle.StateFlag.State_KeyboardFocusChange
        if keyboard and option.state & QStyle.StateFlag.State_HasFocus and option.widget:
            if option.widget.hasFocus():  # a ring only for keyboard users
                painter.setPen(QPen(t.color("accent"), 1.5))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRoundedRect(rect.adjusted(9, 3, -9, -3), 9, 9)
        return background

    def _lines(self, base: QFont, rect: QRectF, avatar: QRectF, unread: bool) -> RowLines:
        """Where a row's two lines of text go, beside its avatar (conversation and group
        rows share it)."""
        name_font, small, preview_font, unread_font = self._fonts(base)
        if unread:
            preview_font = unread_font
        fm_name, fm_small, fm_preview = (
            self._metrics[f.key()] for f in (name_font, small, preview_font)
        )
        line1_h, line2_h = fm_name.height(), fm_preview.height()
        return RowLines(
            name_font=name_font,
            small=small,
            preview_font=preview_font,
            fm_name=fm_name,
            fm_small=fm_small,
            fm_preview=fm_preview,
            left=avatar.right() + PAD,
            right=rect.right() - PAD - 10,
            top=rect.center().y() - (line1_h + LINE_GAP + line2_h) / 2,
            line1_h=line1_h,
            line2_h=line2_h,
        )

    def _paint_time(self, painter: QPainter, lines: RowLines, when: str, unread: bool) -> float:
        """The time at the end of line 1 (accent when unread); returns its width."""
        time_w = lines.fm_small.horizontalAdvance(when)
        painter.setFont(lines.small)
        painter.setPen(theme.current().color("accent" if unread else "text_muted"))
        painter.drawText(
            QRectF(lines.right - time_w, lines.top, time_w, lines.line1_h),
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
            when,
        )
        return time_w

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        item: ConversationItem | None = index.data(ConversationListModel.ItemRole)
        if item is None:
            return
        t = theme.current()
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.TextAntialiasing)
        rect = QRectF(option.rect)
        background = self._paint_background(painter, option, rect)

        avatar = QRectF(rect.left() + PAD + 6, rect.center().y() - AVATAR / 2, AVATAR, AVATAR)
        paint_avatar(painter, avatar, item.name, item.id, option.font)
        paint_presence(painter, avatar, item.online, background, item.route)

        lines = self._lines(option.font, rect, avatar, bool(item.unread))
        name_font, small, preview_font = lines.name_font, lines.small, lines.preview_font
        fm_name, fm_small, fm_preview = lines.fm_name, lines.fm_small, lines.fm_preview
        left, right, top = lines.left, lines.right, lines.top
        line1_h, line2_h, gap = lines.line1_h, lines.line2_h, LINE_GAP

        # Line 1: name, verified mark, time.
        when = list_time(item.last.sent_at_ms if item.last else int(item.contact.created_at * 1000))
        time_w = self._paint_time(painter, lines, when, bool(item.unread))
        mark = fm_name.height() * 0.72 if item.contact.verified else 0.0
        name_room = right - time_w - 8 - left - (mark + 4 if mark else 0)
        name = fm_name.elidedText(item.name, Qt.TextElideMode.ElideRight, max(10.0, name_room))
        painter.setFont(name_font)
        painter.setPen(t.color("text"))
        painter.drawText(
            QRectF(left, top, name_room, line1_h),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            name,
        )
        if mark:
            x = left + fm_name.horizontalAdvance(name) + 5
            paint_verified(
                painter, QRectF(x, top + (line1_h - mark) / 2, mark, mark), t.color("accent")
            )

        # Line 2: (state ticks) preview, unread badge.
        y2 = top + line1_h + gap
        x = left
        badge_w = 0.0
        if item.unread:
            badge_w = paint_badge(painter, right, y2 + line2_h / 2, item.unread, small) + 8
        if item.last is not None and item.last.outgoing and not item.typing:
            size = fm_small.height() * 0.8
            paint_ticks(
                painter,
                x,
                y2 + (line2_h - size) / 2,
                size,
                item.last.state,
                t.color("text_muted"),
                background,
            )
            x += size * 1.5 + 5
        painter.setFont(preview_font)
        if item.contact.key_changed:
            painter.setPen(t.color("danger"))
        elif item.typing:
            painter.setPen(t.color("accent"))
        else:
            painter.setPen(t.color("text" if item.unread else "text_secondary"))
        room = max(10.0, right - badge_w - x)
        text = fm_preview.elidedText(preview_text(item), Qt.TextElideMode.ElideRight, room)
        painter.drawText(
            QRectF(x, y2, room, line2_h),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            text,
        )
        painter.restore()


class ConversationListView(FittedListView):
    """Emits `conversationActivated(contact_id)` when a row becomes current (click or keys)."""

    conversationActivated = Signal(str)
    conversationEntered = Signal(str)  # Enter on a row: open it and go to the composer
    conversationClicked = Signal(str)  # a click: the composer takes the focus

    def __init__(self, parent: QWidget | None = None) -> None:
        # As tall as its rows; at least three when the sidebar is short (the groups keep
        # theirs, see main_window).
        super().__init__(parent, min_rows=3)
        self.setObjectName("ConversationList")
        self.setAccessibleName("Conversations")
        self.setItemDelegate(ConversationDelegate(self))
        self.setUniformItemSizes(True)
        self.setMouseTracking(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFrameShape(QListView.Shape.NoFrame)
        self.viewport().setAttribute(Qt.WidgetAttribute.WA_Hover)
        self.setSpacing(0)
        self._suppress = False

    def setModel(self, model: object) -> None:
        super().setModel(model)  # type: ignore[arg-type]
        self.selectionModel().currentChanged.connect(self._on_current_changed)

    def _on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self._suppress or not current.isValid():
            return
        contact_id = current.data(ConversationListModel.ContactIdRole)
        if contact_id:
            self.conversationActivated.emit(contact_id)

    def select_contact(self, contact_id: str | None) -> None:
        """Show `contact_id` as the current row without emitting conversationActivated."""
        model = self.model()
        self._suppress = True
        try:
            if contact_id is None:
                self.selectionModel().clear()
                return
            for row in range(model.rowCount()):
                index = model.index(row, 0)
                if index.data(ConversationListModel.ContactIdRole) == contact_id:
                    self.selectionModel().setCurrentIndex(
                        index, QItemSelectionModel.SelectionFlag.ClearAndSelect
                    )
                    self.scrollTo(index)
                    return
            self.selectionModel().clear()
        finally:
            self._suppress = False

    def focusInEvent(self, event: QFocusEvent) -> None:
        # Qt makes the first row current when a list gets the focus; that is not the user
        # choosing a conversation.
        self._suppress = True
        try:
            super().focusInEvent(event)
        finally:
            self._suppress = False

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        super().mouseReleaseEvent(event)
        index = self.indexAt(event.position().toPoint())
        if index.isValid() and event.button() == Qt.MouseButton.LeftButton:
            self.conversationClicked.emit(index.data(ConversationListModel.ContactIdRole))

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            index = self.currentIndex()
            if index.isValid():
                self.conversationEntered.emit(index.data(ConversationListModel.ContactIdRole))
                return
        super().keyPressEvent(event)

    def event(self, e: QEvent) -> bool:
        if e.type() == QEvent.Type.Leave:
            self.viewport().update()
        return super().event(e)

"""The 1:1 history's bubbles: layout (cached per row and width) and painting."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QPointF, QRectF, QSize, QSizeF, Qt
from PySide6.QtGui import (
    QAbstractTextDocumentLayout,
    QColor,
    QFont,
    QFontMetricsF,
    QImage,
    QPainter,
    QPalette,
    QPen,
    QTextDocument,
)
from PySide6.QtWidgets import QListView, QStyledItemDelegate, QStyleOptionViewItem

from messenger import MessageRecord, MessageState, TransferRecord
from ui import theme
from ui.models.history import HistoryModel, time_label
from ui.views.chat.attachments import (
    FILE_SPACING,
    FILE_WIDTH,
    PROGRESS_STATES,
    action_hint,
    file_part_height,
    paint_file_part,
    thumbnail_size,
)
from ui.views.chat.text import URL_RE, build_document, jumbo_emoji
from ui.views.paint import (
    day_pill_height,
    paint_day_pill,
    paint_ticks,
    rounded_path,
    tick_width,
)

Index = QModelIndex | QPersistentModelIndex


SIDE = 20.0  # outer margin of bubbles
PAD_X = 12.0
PAD_Y = 7.0
RADIUS = 18.0
TIGHT = 5.0
GROUP_GAP = 2.0
GAP = 10.0
TICK = 0.95  # delivery-state icon size, relative to the small font's height


@dataclass(slots=True)
class BubbleLayout:
    doc: QTextDocument | None  # None: one plain line, drawn with drawText (the fast path)
    outgoing: bool
    jumbo: bool
    day: str | None
    day_height: float
    top: float  # bubble's y inside the row
    width: float  # bubble width
    height: float  # bubble height
    text_width: float
    meta_inline: bool
    time: str
    row_height: int
    body: str = ""
    # A file message: where its file area starts below the bubble's top, and its parts.
    file_top: float = 0.0
    thumb: QImage | None = None
    thumb_size: QSizeF | None = None
    progress_bar: bool = False


@dataclass(slots=True)
class _Style:
    """Fonts, metrics and colours of the current theme and font, computed once."""

    body: QFont
    small: QFont
    day: QFont
    jumbo: QFont
    fm_body: QFontMetricsF
    fm_small: QFontMetricsF
    fm_day: QFontMetricsF
    colors: dict[str, QColor]


class BubbleDelegate(QStyledItemDelegate):
    """Bubbles with wrapped text, links and search marks; layouts are cached per row and
    width, so relayouts after a page loads or a message arrives stay cheap. A plain
    one-line message (most of them) is measured with font metrics and drawn with
    drawText; anything else gets a QTextDocument."""

    CACHE = 600
    COLORS = (
        "bubble_in",
        "bubble_in_text",
        "bubble_out",
        "bubble_out_text",
        "bubble_out_meta",
        "link_in",
        "link_out",
        "text_muted",
        "day_pill",
        "day_pill_text",
        "highlight",
        "window",
    )

    def __init__(self, view: QListView) -> None:
        super().__init__(view)
        self._view = view
        self.history: HistoryModel | None = None  # what the view shows (set by the view)
        self._cache: OrderedDict[tuple[object, ...], BubbleLayout] = OrderedDict()
        self._width = -1
        self._style: _Style | None = None

    def invalidate(self) -> None:
        self._cache.clear()
        self._width = -1
        self._style = None

    def set_width(self, width: int) -> None:
        self._width = width

    def style(self) -> _Style:
        style = self._style
        if style is None:
            base = QFont(self._view.font())
            body = theme.scaled_font(base, 1.04)
            small = theme.scaled_font(base, 0.8)
            day = theme.scaled_font(base, 0.84, QFont.Weight.DemiBold)
            jumbo = theme.scaled_font(base, 2.6)
            t = theme.current()
            style = self._style = _Style(
                body,
                small,
                day,
                jumbo,
                QFontMetricsF(body),
                QFontMetricsF(small),
                QFontMetricsF(day),
                {name: t.color(name) for name in self.COLORS},
            )
        return style

    def bubble_max(self) -> float:
        vw = max(200, self._width if self._width >= 0 else self._view.viewport().width())
        return max(160.0, min(vw * 0.72, 620.0))

    def _row(self, index: Index) -> tuple[MessageRecord, str | None, bool, bool, bool] | None:
        history = self.history
        if history is None or not index.isValid():
            return None
        row = index.row()
        if not 0 <= row < history.rowCount():
            return None
        return history.row_view(row)

    def layout(self, index: Index) -> BubbleLayout:
        """The row's layout, cached: every relayout of the view asks for every row."""
        history = self.history
        assert history is not None
        row = index.row()
        m, day, joins_prev, joins_next, _ = history.row_view(row)
        last = row == history.rowCount() - 1
        width = self._width
        if width < 0:
            width = self._width = self._view.viewport().width()
        # Theme and font changes clear the cache (invalidate), so they need no key part.
        marks = history.search_terms
        transfer = history.transfer_of(m.msg_id)
        thumb = history.thumbnail(transfer) if transfer is not None else None
        shape = None if transfer is None else (transfer.state, thumb is not None)
        key = (m.row_id, width, day, joins_prev, joins_next, last, marks, shape)
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        st = self.style()
        body = m.body
        max_text = self.bubble_max() - 2 * PAD_X
        jumbo = jumbo_emoji(body)
        doc, text_w, text_h, last_line_w = self._measure_text(m, jumbo, marks, max_text)

        fm_small = st.fm_small
        when = time_label(m.sent_at_ms)
        tick = fm_small.height() * TICK
        meta_w = fm_small.horizontalAdvance(when) + (
            tick_width(tick, MessageState.READ) + 4 if m.outgoing else 0
        )
        inline = transfer is None and not jumbo and last_line_w + 12 + meta_w <= max_text
        if inline:
            content_w = max(text_w, last_line_w + 12 + meta_w)
            content_h = text_h
        else:
            content_w = max(text_w, meta_w)
            content_h = text_h + fm_small.height() + 1
        file_top = 0.0
        thumb_size = None
        progress_bar = False
        if transfer is not None:
            # Under the name: thumbnail, progress bar, status line; the hint shares the time's line.
            file_w = min(max_text, FILE_WIDTH)
            content_w = max(content_w, file_w)
            file_top = PAD_Y + text_h + FILE_SPACING
            thumb_size = thumbnail_size(thumb, file_w) if thumb is not None else None
            progress_bar = transfer.state in PROGRESS_STATES
            file_h = file_part_height(thumb_size, progress_bar) + fm_small.height()
            content_h += FILE_SPACING + file_h + FILE_SPACING
        bubble_w = content_w + 2 * PAD_X
        bubble_h = content_h + 2 * PAD_Y

        day_h = day_pill_height(st.fm_day) if day else 0.0
        top = day_h + (GROUP_GAP if joins_prev and not day else GAP if not day else 4)
        bottom = 12.0 if last else 0.0
        result = BubbleLayout(
            doc=doc,
            outgoing=m.outgoing,
            jumbo=jumbo,
            day=day,
            day_height=day_h,
            top=top,
            width=bubble_w,
            height=bubble_h,
            text_width=text_w,
            meta_inline=inline,
            time=when,
            row_height=math.ceil(top + bubble_h + bottom),
            body=body,
            file_top=file_top,
            thumb=thumb,
            thumb_size=thumb_size,
            progress_bar=progress_bar,
        )
        self._cache[key] = result
        if len(self._cache) > self.CACHE:
            self._cache.popitem(last=False)
        return result

    def _measure_text(
        self, m: MessageRecord, jumbo: bool, marks: tuple[str, ...], max_text: float
    ) -> tuple[QTextDocument | None, float, float, float]:
        """(document or None for the fast path, text width, height, last line's width)."""
        st = self.style()
        body = m.body
        plain = (
            not jumbo
            and "\n" not in body
            and URL_RE.search(body) is None
            and not (marks and any(w.casefold() in body.casefold() for w in marks))
        )
        text_w: float = st.fm_body.horizontalAdvance(body) if plain else max_text + 1
        if plain and text_w <= max_text:
            text_w = math.ceil(text_w) + 1
            return None, text_w, st.fm_body.height(), text_w
        doc = self._document(m, jumbo, marks)
        doc.setTextWidth(max_text)
        ideal = math.ceil(doc.idealWidth()) + 1
        if ideal < max_text:
            doc.setTextWidth(ideal)
        lines = doc.lastBlock().layout()
        last_line_w = 0.0
        if lines is not None and lines.lineCount():
            line = lines.lineAt(lines.lineCount() - 1)
            last_line_w = line.x() + line.naturalTextWidth()
        return doc, doc.textWidth(), doc.size().height(), last_line_w

    def _document(self, m: MessageRecord, jumbo: bool, marks: tuple[str, ...]) -> QTextDocument:
        st = self.style()
        c = st.colors
        if m.outgoing:
            color, link = c["bubble_out_text"], c["link_out"]
        else:
            color, link = c["bubble_in_text"], c["link_in"]
        return build_document(
            m.body,
            st.jumbo if jumbo else st.body,
            color,
            link,
            marks,
            (c["highlight"], QColor("#1b1b1d")),
        )

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        if self._row(index) is None:
            return QSize(0, 0)
        return QSize(max(0, self._width), self.layout(index).row_height)

    def bubble_rect(self, rect: QRectF, lay: BubbleLayout) -> QRectF:
        r = QRectF(rect)
        x = r.right() - SIDE - lay.width if lay.outgoing else r.left() + SIDE
        return QRectF(x, r.top() + lay.top, lay.width, lay.height)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        row = self._row(index)
        if row is None:
            return
        m, _day, joins_prev, joins_next, highlighted = row
        lay = self.layout(index)
        st = self.style()
        c = st.colors
        rect = QRectF(option.rect)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.TextAntialiasing)
        painter.setClipRect(option.rect)

        if lay.day:
            self._paint_day(painter, rect, lay.day)

        bubble = self.bubble_rect(rect, lay)
        big, tight = RADIUS, TIGHT
        if lay.outgoing:
            radii = (big, tight if joins_prev else big, tight if joins_next else big, big)
        else:
            radii = (tight if joins_prev else big, big, big, tight if joins_next else big)
        if not lay.jumbo:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(c["bubble_out" if lay.outgoing else "bubble_in"])
            painter.drawPath(rounded_path(bubble, *radii))
        if highlighted:
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.setPen(QPen(c["highlight"], 2.5))
            painter.drawPath(rounded_path(bubble.adjusted(-3, -3, 3, 3), *(r + 3 for r in radii)))

        text_color = c["bubble_out_text" if lay.outgoing else "bubble_in_text"]
        if lay.doc is None:
            painter.setFont(st.body)
            painter.setPen(text_color)
            painter.drawText(
                QRectF(
                    bubble.left() + PAD_X,
                    bubble.top() + PAD_Y,
                    lay.text_width + 2,
                    st.fm_body.height(),
                ),
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                lay.body,
            )
        else:
            painter.save()
            painter.translate(bubble.left() + PAD_X, bubble.top() + PAD_Y)
            ctx = QAbstractTextDocumentLayout.PaintContext()
            ctx.palette.setColor(QPalette.ColorRole.Text, text_color)
            lay.doc.documentLayout().draw(painter, ctx)
            painter.restore()

        transfer = self.history.transfer_of(m.msg_id) if self.history else None
        if transfer is not None and lay.file_top:
            self._paint_file(painter, bubble, lay, transfer)

        self._paint_meta(painter, bubble, lay, m)
        painter.restore()

    def _paint_day(self, painter: QPainter, rect: QRectF, day: str) -> None:
        """The day's pill above the first message of a day."""
        st = self.style()
        colors = st.colors
        paint_day_pill(painter, rect, day, st.day, colors["day_pill"], colors["day_pill_text"])

    def _paint_meta(
        self, painter: QPainter, bubble: QRectF, lay: BubbleLayout, m: MessageRecord
    ) -> None:
        """Time and delivery state, at the bubble's lower right."""
        st = self.style()
        c = st.colors
        fm_small = st.fm_small
        if lay.jumbo:
            meta_color = c["text_muted"]
        else:
            meta_color = c["bubble_out_meta" if lay.outgoing else "text_muted"]
        right = bubble.right() - PAD_X
        meta_top = bubble.bottom() - PAD_Y - fm_small.height()
        if lay.outgoing:
            tick = fm_small.height() * TICK
            tw = tick_width(tick, m.state)
            knockout = c["window" if lay.jumbo else "bubble_out"]
            paint_ticks(
                painter,
                right - tw,
                meta_top + (fm_small.height() - tick) / 2,
                tick,
                m.state,
                meta_color,
                knockout,
            )
            right -= tw + 4
        painter.setFont(st.small)
        painter.setPen(meta_color)
        tw = fm_small.horizontalAdvance(lay.time)
        painter.drawText(
            QRectF(right - tw, meta_top, tw + 1, fm_small.height()),
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
            lay.time,
        )

    def _paint_file(
        self, painter: QPainter, bubble: QRectF, lay: BubbleLayout, t: TransferRecord
    ) -> None:
        """Thumbnail, progress bar and status of a file message, and what a click does."""
        st = self.style()
        c = st.colors
        fm_small = st.fm_small
        left = bubble.left() + PAD_X
        width = bubble.width() - 2 * PAD_X
        muted = c["bubble_out_meta" if lay.outgoing else "text_muted"]
        link = c["link_out" if lay.outgoing else "link_in"]
        top = bubble.top() + lay.file_top
        part = QRectF(left, top, width, bubble.bottom() - top)
        paint_file_part(painter, part, t, lay.thumb, lay.thumb_size, st.small, (muted, link))
        hint = action_hint(t)
        if hint is not None:
            # On the time's line, at the left: what a click does (more in the context menu).
            painter.setPen(link)
            line_top = bubble.bottom() - PAD_Y - fm_small.height()
            painter.drawText(
                QRectF(left, line_top, width / 2, fm_small.height()),
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                hint,
            )

    def transfer_at(self, index: Index, rect: QRectF, pos: QPointF) -> TransferRecord | None:
        """The file carried by the bubble under `pos`, if it is a file message."""
        row = self._row(index)
        history = self.history
        if row is None or history is None or not self.bubble_at(index, rect, pos):
            return None
        return history.transfer_of(row[0].msg_id)

    def anchor_at(self, index: Index, rect: QRectF, pos: QPointF) -> str | None:
        """The link under `pos` (view coordinates) in the row at `rect`, if any."""
        if self._row(index) is None:
            return None
        lay = self.layout(index)
        bubble = self.bubble_rect(rect, lay)
        if not bubble.contains(pos):
            return None
        if lay.doc is None:
            return None  # the fast path is only taken for text without links
        local = pos - QPointF(bubble.left() + PAD_X, bubble.top() + PAD_Y)
        href = lay.doc.documentLayout().anchorAt(local)
        return href or None

    def bubble_at(self, index: Index, rect: QRectF, pos: QPointF) -> bool:
        if self._row(index) is None:
            return False
        return self.bubble_rect(rect, self.layout(index)).contains(pos)

"""The right pane: one conversation.

Header (avatar, name, verified mark, presence, search and safety-number buttons), a search
bar (Ctrl+F), the history (a QListView over a paging HistoryModel, drawn as bubbles by a
QTextDocument-based delegate with clickable links and day separators), a typing
indicator and the composer (Enter sends, Shift+Enter is a new line, emoji picker).
"""

from __future__ import annotations

import asyncio
import math
import re
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import (
    QEvent,
    QIdentityProxyModel,
    QMimeData,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QPointF,
    QRectF,
    QRegularExpression,
    QSize,
    QSizeF,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import (
    QAbstractTextDocumentLayout,
    QColor,
    QContextMenuEvent,
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QFont,
    QFontMetricsF,
    QGuiApplication,
    QImage,
    QKeyEvent,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPalette,
    QPen,
    QResizeEvent,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextOption,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QPlainTextEdit,
    QSizePolicy,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from messenger import MessageRecord, MessageState, MessageTooLong, ServiceError
from messenger.files.manager import FileError
from messenger.records import TransferRecord, TransferState
from ui import theme
from ui.bridge import Bridge
from ui.models.conversations import ConversationItem, ConversationListModel
from ui.models.history import HistoryModel, key_of, local_time, time_label
from ui.tasks import TaskSet
from ui.views.paint import Avatar, paint_ticks, paint_verified, rounded_path, tick_width
from ui.views.transfers import (
    ACTION_LABELS,
    TransfersPanel,
    available_actions,
    primary_action,
    status_text,
)

Index = QModelIndex | QPersistentModelIndex

URL_RE = re.compile(r"(?:https?://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
TRAILING_PUNCTUATION = ".,;:!?)]}'\""

EMOJI = (
    "😀 😂 🥲 😊 😍 🥰 😘 😉 😎 🤔 😅 😭 😡 😱 🥳 😴 "
    "👍 👎 👏 🙏 🙌 💪 👋 🤝 ❤️ 🔥 ✨ 🎉 💯 ✅ ❌ ⭐ "
    "☕ 🍕 🍻 🎂 🚀 💡 📎 👀"
).split()

# -- text helpers --------------------------------------------------------------------------------


def link_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, href) of each web address in `text`."""
    spans = []
    for m in URL_RE.finditer(text):
        url = m.group(0)
        while url and url[-1] in TRAILING_PUNCTUATION:
            if url[-1] == ")" and url.count("(") >= url.count(")"):
                break
            url = url[:-1]
        if len(url) < 5:
            continue
        href = url if "://" in url else f"https://{url}"
        spans.append((m.start(), m.start() + len(url), href))
    return spans


def _is_emoji_char(cp: int) -> bool:
    return (
        0x1F000 <= cp <= 0x1FAFF
        or 0x2600 <= cp <= 0x27BF
        or 0x2B00 <= cp <= 0x2BFF
        or cp in (0x00A9, 0x00AE, 0x203C, 0x2049, 0x2122, 0x2139, 0x3030, 0x303D)
    )


def jumbo_emoji(text: str) -> bool:
    """One to three emoji and nothing else: drawn large, without a bubble (as Signal does)."""
    s = text.strip()
    if not s or len(s) > 16:
        return False
    count = 0
    joined = False
    for ch in s:
        cp = ord(ch)
        if cp in (0xFE0F, 0xFE0E, 0x20E3) or 0x1F3FB <= cp <= 0x1F3FF or 0xE0020 <= cp <= 0xE007F:
            continue
        if cp == 0x200D:
            joined = True
            continue
        if not _is_emoji_char(cp):
            return False
        if not joined:
            count += 1
        joined = False
    return 0 < count <= 3


def build_document(
    body: str,
    font: QFont,
    color: QColor,
    link: QColor,
    marks: tuple[str, ...] = (),
    mark_colors: tuple[QColor, QColor] | None = None,
) -> QTextDocument:
    """The bubble's text: web addresses as links, `marks` (search words) highlighted."""
    doc = QTextDocument()
    doc.setDocumentMargin(0)
    doc.setDefaultFont(font)
    option = QTextOption()
    option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
    doc.setDefaultTextOption(option)
    cursor = QTextCursor(doc)
    plain = QTextCharFormat()
    plain.setForeground(color)
    pos = 0
    for start, end, href in link_spans(body):
        if start > pos:
            cursor.insertText(body[pos:start], plain)
        fmt = QTextCharFormat()
        fmt.setAnchor(True)
        fmt.setAnchorHref(href)
        fmt.setForeground(link)
        fmt.setFontUnderline(True)
        cursor.insertText(body[start:end], fmt)
        pos = end
    if pos < len(body):
        cursor.insertText(body[pos:], plain)
    if marks and mark_colors is not None:
        mark = QTextCharFormat()
        mark.setBackground(mark_colors[0])
        mark.setForeground(mark_colors[1])
        for word in marks:  # at word starts, as the full-text search matches them
            pattern = QRegularExpression(
                r"\b" + QRegularExpression.escape(word),
                QRegularExpression.PatternOption.CaseInsensitiveOption,
            )
            found = doc.find(pattern)
            while not found.isNull():
                found.mergeCharFormat(mark)
                found = doc.find(pattern, found)
    return doc


# -- the bubble delegate -----------------------------------------------------------------------

SIDE = 20.0  # outer margin of bubbles
PAD_X = 12.0
PAD_Y = 7.0
RADIUS = 18.0
TIGHT = 5.0
GROUP_GAP = 2.0
GAP = 10.0
FILE_WIDTH = 260.0  # a file message's bubble is at least this wide (room for its status)
FILE_SPACING = 6.0
THUMB_HEIGHT = 160.0  # image thumbnails fit in FILE_WIDTH x this
THUMB_MAX_ZOOM = 1.5
BAR_HEIGHT = 4.0
PROGRESS_STATES = (TransferState.DOWNLOADING, TransferState.PAUSED, TransferState.FAILED)
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
        history = self._view.history
        if history is None or not index.isValid():
            return None
        row = index.row()
        if not 0 <= row < len(history._rows):
            return None
        return history.row_view(row)

    def layout(self, index: Index) -> BubbleLayout:
        """The row's layout, cached: every relayout of the view asks for every row."""
        history = self._view.history
        assert history is not None
        row = index.row()
        m, day, joins_prev, joins_next, _ = history.row_view(row)
        last = row == len(history._rows) - 1
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
        doc = None
        plain = (
            not jumbo
            and "\n" not in body
            and URL_RE.search(body) is None
            and not (marks and any(w.casefold() in body.casefold() for w in marks))
        )
        text_w = st.fm_body.horizontalAdvance(body) if plain else max_text + 1
        if plain and text_w <= max_text:
            text_w = math.ceil(text_w) + 1
            text_h = st.fm_body.height()
            last_line_w = text_w
        else:
            doc = self._document(m, jumbo, marks)
            doc.setTextWidth(max_text)
            ideal = math.ceil(doc.idealWidth()) + 1
            if ideal < max_text:
                doc.setTextWidth(ideal)
            text_w = doc.textWidth()
            text_h = doc.size().height()
            lines = doc.lastBlock().layout()
            last_line_w = 0.0
            if lines is not None and lines.lineCount():
                line = lines.lineAt(lines.lineCount() - 1)
                last_line_w = line.x() + line.naturalTextWidth()

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
            file_h = 0.0
            if thumb is not None:
                # Stored thumbnails are small: fit the box, but blow them up at most 1.5x.
                native = QSizeF(thumb.size()) * THUMB_MAX_ZOOM
                thumb_size = native.boundedTo(QSizeF(file_w, THUMB_HEIGHT))
                if thumb_size != native:
                    thumb_size = native.scaled(
                        QSizeF(file_w, THUMB_HEIGHT), Qt.AspectRatioMode.KeepAspectRatio
                    )
                file_h += thumb_size.height() + FILE_SPACING
            progress_bar = transfer.state in PROGRESS_STATES
            if progress_bar:
                file_h += BAR_HEIGHT + FILE_SPACING
            file_h += fm_small.height()
            content_h += FILE_SPACING + file_h + FILE_SPACING
        bubble_w = content_w + 2 * PAD_X
        bubble_h = content_h + 2 * PAD_Y

        day_h = st.fm_day.height() + 8 + 24 if day else 0.0
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

    def bubble_rect(self, rect: QRectF | object, lay: BubbleLayout) -> QRectF:
        r = QRectF(rect)  # type: ignore[call-overload]
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
            fm = st.fm_day
            w = fm.horizontalAdvance(lay.day) + 24
            h = fm.height() + 8
            pill = QRectF(rect.center().x() - w / 2, rect.top() + 16, w, h)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(c["day_pill"])
            painter.drawRoundedRect(pill, h / 2, h / 2)
            painter.setFont(st.day)
            painter.setPen(c["day_pill_text"])
            painter.drawText(pill, Qt.AlignmentFlag.AlignCenter, lay.day)

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

        fm_small = st.fm_small
        transfer = self._view.history.transfer_of(m.msg_id) if self._view.history else None
        if transfer is not None and lay.file_top:
            self._paint_file(painter, bubble, lay, transfer)

        # Time and delivery state, at the bubble's lower right.
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
        painter.restore()

    def _paint_file(
        self, painter: QPainter, bubble: QRectF, lay: BubbleLayout, t: TransferRecord
    ) -> None:
        """Thumbnail, progress bar and status of a file message, and what a click does."""
        st = self.style()
        c = st.colors
        fm_small = st.fm_small
        left = bubble.left() + PAD_X
        width = bubble.width() - 2 * PAD_X
        y = bubble.top() + lay.file_top
        muted = c["bubble_out_meta" if lay.outgoing else "text_muted"]
        if lay.thumb is not None and lay.thumb_size is not None:
            target = QRectF(QPointF(left, y), lay.thumb_size)
            path = rounded_path(target, 8, 8, 8, 8)
            painter.save()
            painter.setClipPath(path, Qt.ClipOperation.IntersectClip)
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(target, lay.thumb)
            painter.restore()
            y += lay.thumb_size.height() + FILE_SPACING
        if lay.progress_bar:
            track = QRectF(left, y, width, BAR_HEIGHT)
            painter.setPen(Qt.PenStyle.NoPen)
            trough = QColor(muted)
            trough.setAlphaF(0.3)
            painter.setBrush(trough)
            painter.drawRoundedRect(track, BAR_HEIGHT / 2, BAR_HEIGHT / 2)
            done = QRectF(track)
            done.setWidth(max(BAR_HEIGHT, width * min(1.0, t.progress)))
            painter.setBrush(c["link_out" if lay.outgoing else "link_in"])
            painter.drawRoundedRect(done, BAR_HEIGHT / 2, BAR_HEIGHT / 2)
            y += BAR_HEIGHT + FILE_SPACING
        painter.setFont(st.small)
        painter.setPen(muted)
        status = fm_small.elidedText(status_text(t), Qt.TextElideMode.ElideRight, width)
        painter.drawText(
            QRectF(left, y, width, fm_small.height()),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            status,
        )
        action = primary_action(t)
        if action is not None:
            # On the time's line, at the left: what a click does (more in the context menu).
            hint = f"{ACTION_LABELS[action]} ▸"
            painter.setPen(c["link_out" if lay.outgoing else "link_in"])
            line_top = bubble.bottom() - PAD_Y - fm_small.height()
            painter.drawText(
                QRectF(left, line_top, width / 2, fm_small.height()),
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                hint,
            )

    def transfer_at(self, index: Index, rect: QRectF, pos: QPointF) -> TransferRecord | None:
        """The file carried by the bubble under `pos`, if it is a file message."""
        row = self._row(index)
        history = self._view.history
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


# -- the history view ----------------------------------------------------------------------


class _NoAutoFetch(QIdentityProxyModel):
    """QAbstractItemView fetches more when its *last* row is visible, which in a chat is
    always; older pages are fetched by the view itself when it nears the top."""

    def canFetchMore(self, parent: Index) -> bool:
        return False

    def fetchMore(self, parent: Index) -> None:
        pass


class HistoryView(QListView):
    linkActivated = Signal(str)
    atBottomChanged = Signal(bool)
    transferActionRequested = Signal(str, str)  # action, transfer id (from a file's bubble)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("HistoryView")
        self.setAccessibleName("Messages")
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setUniformItemSizes(False)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.verticalScrollBar().setSingleStep(24)
        self.delegate = BubbleDelegate(self)
        self.setItemDelegate(self.delegate)
        self.history: HistoryModel | None = None
        self._proxy: _NoAutoFetch | None = None
        self._anchor: tuple[bytes, int] | None = None
        self._stick = True
        self._at_bottom = True
        self._press_href: str | None = None
        self._press_transfer: str | None = None  # the file whose bubble the press was on
        # Whether a file was saved this session (ChatView points this at its files panel).
        self.is_saved: Callable[[str], bool] = lambda _transfer_id: False
        self.open_url = QDesktopServices.openUrl  # tests replace this
        self._fetch_timer = QTimer(self)  # dies with the view, unlike a bare singleShot
        self._fetch_timer.setSingleShot(True)
        self._fetch_timer.setInterval(0)
        self._fetch_timer.timeout.connect(self._maybe_fetch)
        self.verticalScrollBar().valueChanged.connect(self._on_scrolled)
        self.verticalScrollBar().rangeChanged.connect(self._on_range_changed)

    # -- model wiring ---------------------------------------------------------------------

    def set_history(self, model: HistoryModel | None) -> None:
        old_proxy = self._proxy
        self.history = model
        if model is None:
            # An empty model, not setModel(None): PySide6 6.12 releases None once too often
            # on setModel(None), which eventually aborts the interpreter.
            empty = _NoAutoFetch(self)
            self.setModel(empty)
            self._proxy = empty
        else:
            # "before" handlers go on the source model first, so they run before the view
            # (through the proxy) forgets the old geometry; "after" handlers go on the proxy
            # after setModel, so they run once the view has taken the change in.
            model.rowsAboutToBeInserted.connect(self._before_insert)
            model.rowsAboutToBeRemoved.connect(self._before_remove)
            model.modelAboutToBeReset.connect(self._before_reset)
            proxy = _NoAutoFetch(self)
            proxy.setSourceModel(model)
            self.setModel(proxy)
            proxy.rowsInserted.connect(self._after_change)
            proxy.rowsRemoved.connect(self._after_change)
            proxy.modelReset.connect(self._after_reset)
            model.windowReset.connect(self._after_window)
            model.loadingChanged.connect(self._on_loading_changed)
            model.transferShapeChanged.connect(self._on_transfer_shape)
            self._proxy = proxy
        if old_proxy is not None:
            old_proxy.deleteLater()
        self._stick = True
        self._anchor = None

    def _rows(self) -> int:
        return self.history.rowCount() if self.history is not None else 0

    def is_at_bottom(self) -> bool:
        sb = self.verticalScrollBar()
        return sb.value() >= sb.maximum() - 4

    def _first_visible(self, skip: range | None = None) -> tuple[bytes, int] | None:
        model = self.model()
        if model is None or self.history is None:
            return None
        row = self.indexAt(QPoint(self.viewport().width() // 2, 1)).row()
        if row < 0:
            row = 0
        while row < self._rows():
            if skip is None or row not in skip:
                rect = self.visualRect(model.index(row, 0))
                if rect.bottom() >= 0:
                    return (self.history.record(row).msg_id, rect.top())
            row += 1
        return None

    def _before_insert(self, _parent: QModelIndex, first: int, _last: int) -> None:
        self._stick = self.is_at_bottom() and self.history is not None and self.history.at_end
        self._anchor = None if self._stick else self._first_visible()

    def _before_remove(self, _parent: QModelIndex, first: int, last: int) -> None:
        self._stick = self.is_at_bottom() and self.history is not None and self.history.at_end
        self._anchor = None if self._stick else self._first_visible(range(first, last + 1))

    def _before_reset(self) -> None:
        self._anchor = None

    def _after_change(self, *_args: object) -> None:
        if self.history is None:
            return
        if self._stick:
            self.scrollToBottom()  # lays out (once) and goes to the end
        elif self._anchor is not None:
            self.executeDelayedItemsLayout()
            msg_id, y = self._anchor
            row = self.history.row_of(msg_id)
            if row >= 0:
                now = self.visualRect(self.model().index(row, 0)).top()
                sb = self.verticalScrollBar()
                sb.setValue(sb.value() + now - y)
        self._anchor = None
        self._fetch_timer.start()

    def _after_reset(self) -> None:
        self._anchor = None

    def _on_transfer_shape(self) -> None:
        """A file message grew or shrank (a thumbnail arrived, the progress bar went)."""
        # The rows' sizes changed without the model saying so: lay them out again (a
        # scroll to the bottom alone keeps the old row rectangles, and a thumbnail that
        # arrived would be painted into a row too short for it).
        self.scheduleDelayedItemsLayout()
        if self._stick:
            self.executeDelayedItemsLayout()
            self.scrollToBottom()  # and stay at the newest message
        self.viewport().update()

    def _after_window(self) -> None:
        """A new window: show the highlighted message, or the newest one."""
        self.executeDelayedItemsLayout()
        history = self.history
        if history is None:
            return
        row = history.row_of(history.highlight) if history.highlight else -1
        if row >= 0:
            self.scrollTo(self.model().index(row, 0), QAbstractItemView.ScrollHint.PositionAtCenter)
        else:
            self.scrollToBottom()
        self._stick = self.is_at_bottom() and history.at_end
        self._fetch_timer.start()

    def _on_loading_changed(self, loading: bool) -> None:
        if not loading:
            self._fetch_timer.start()

    # -- fetching at the edges --------------------------------------------------------------

    def _on_range_changed(self, _low: int, _high: int) -> None:
        if self._stick and self.history is not None and self.history.at_end:
            self.scrollToBottom()
        self._fetch_timer.start()

    def _on_scrolled(self, _value: int) -> None:
        self._maybe_fetch()
        self._update_follow()

    def _update_follow(self) -> None:
        at_bottom = self.is_at_bottom()
        if self.history is not None:
            self.history.follow_live = at_bottom and self.history.at_end
        if at_bottom != self._at_bottom:
            self._at_bottom = at_bottom
            self.atBottomChanged.emit(at_bottom)

    def _maybe_fetch(self) -> None:
        history = self.history
        if history is None or not history.loaded or history.busy:
            return
        sb = self.verticalScrollBar()
        margin = max(120, self.viewport().height() // 2)
        if sb.value() <= sb.minimum() + margin and history.canFetchMore(QModelIndex()):
            history.fetchMore(QModelIndex())
        elif sb.value() >= sb.maximum() - margin and history.can_fetch_newer():
            history.fetch_newer_soon()

    # -- geometry -----------------------------------------------------------------------------

    def resizeEvent(self, event: QResizeEvent) -> None:
        at_bottom = self.is_at_bottom()
        anchor = None if at_bottom else self._first_visible()
        super().resizeEvent(event)
        self.delegate.set_width(self.viewport().width())
        if event.oldSize().width() != event.size().width():
            self.scheduleDelayedItemsLayout()
            self.executeDelayedItemsLayout()
        if at_bottom:
            self.scrollToBottom()
        elif anchor is not None and self.history is not None:
            row = self.history.row_of(anchor[0])
            if row >= 0:
                now = self.visualRect(self.model().index(row, 0)).top()
                self.verticalScrollBar().setValue(
                    self.verticalScrollBar().value() + now - anchor[1]
                )

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.FontChange:
            self.delegate.invalidate()
        super().changeEvent(event)

    def refresh_layout(self) -> None:
        """After a theme or font change: new layouts for every row."""
        self.delegate.invalidate()
        self.scheduleDelayedItemsLayout()
        self.viewport().update()

    # -- links and copying ------------------------------------------------------------------

    def _href_at(self, pos: QPoint) -> str | None:
        index = self.indexAt(pos)
        if not index.isValid():
            return None
        return self.delegate.anchor_at(index, QRectF(self.visualRect(index)), QPointF(pos))

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        href = self._href_at(event.position().toPoint())
        self.viewport().setCursor(
            Qt.CursorShape.PointingHandCursor if href else Qt.CursorShape.ArrowCursor
        )
        self.viewport().setToolTip(href or "")
        super().mouseMoveEvent(event)

    def transfer_at(self, pos: QPoint) -> TransferRecord | None:
        index = self.indexAt(pos)
        if not index.isValid():
            return None
        return self.delegate.transfer_at(index, QRectF(self.visualRect(index)), QPointF(pos))

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self._press_href = None
        self._press_transfer = None
        if event.button() == Qt.MouseButton.LeftButton:
            pos = event.position().toPoint()
            self._press_href = self._href_at(pos)
            found = self.transfer_at(pos)
            self._press_transfer = found.id if found is not None else None
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        href = None
        transfer = None
        if event.button() == Qt.MouseButton.LeftButton:
            pos = event.position().toPoint()
            href = self._href_at(pos)
            transfer = self.transfer_at(pos)
        super().mouseReleaseEvent(event)
        if href and href == self._press_href:
            self.linkActivated.emit(href)
            self.open_url(QUrl(href))
        elif transfer is not None and transfer.id == self._press_transfer:
            # A click on a file's bubble does what its hint says (Download, Pause, Open, ...).
            action = primary_action(transfer)
            if action is not None:
                self.transferActionRequested.emit(action, transfer.id)
        self._press_href = None
        self._press_transfer = None

    def message_at(self, pos: QPoint) -> MessageRecord | None:
        index = self.indexAt(pos)
        if not index.isValid() or self.history is None:
            return None
        if not self.delegate.bubble_at(index, QRectF(self.visualRect(index)), QPointF(pos)):
            return None
        return self.history.record(index.row())

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        message = self.message_at(event.pos())
        if message is None:
            return
        href = self._href_at(event.pos())
        menu = QMenu(self)
        copy = menu.addAction(theme.icon("copy"), "Copy text")
        copy.triggered.connect(lambda: QGuiApplication.clipboard().setText(message.body))
        if href:
            link = menu.addAction("Copy link")
            link.triggered.connect(lambda: QGuiApplication.clipboard().setText(href))
        transfer = self.history.transfer_of(message.msg_id) if self.history else None
        if transfer is not None:
            menu.addSeparator()
            emit = self.transferActionRequested.emit
            for action in self.transfer_actions(transfer):
                item = menu.addAction(ACTION_LABELS[action])
                item.triggered.connect(lambda _c=False, a=action, i=transfer.id: emit(a, i))
            menu.addSeparator()
        info = menu.addAction(f"{'Sent' if message.outgoing else 'Received'} {_full_time(message)}")
        info.setEnabled(False)
        menu.exec(event.globalPos())

    def transfer_actions(self, t: TransferRecord) -> list[str]:
        """The file actions a bubble's context menu offers (the panel's buttons, and View)."""
        actions = available_actions(t, self.is_saved(t.id))
        if t.state is TransferState.COMPLETE and t.mime.startswith("image/"):
            actions.insert(0, "view")
        return actions

    def keyPressEvent(self, event: QKeyEvent) -> None:
        sb = self.verticalScrollBar()
        if (
            event.key() == Qt.Key.Key_Home
            and event.modifiers() & Qt.KeyboardModifier.ControlModifier
        ):
            sb.setValue(sb.minimum())
            return
        if (
            event.key() == Qt.Key.Key_End
            and event.modifiers() & Qt.KeyboardModifier.ControlModifier
        ):
            sb.setValue(sb.maximum())
            return
        if event.key() == Qt.Key.Key_PageUp:
            sb.setValue(sb.value() - self.viewport().height() + 40)
            return
        if event.key() == Qt.Key.Key_PageDown:
            sb.setValue(sb.value() + self.viewport().height() - 40)
            return
        super().keyPressEvent(event)


def _full_time(m: MessageRecord) -> str:
    return local_time(m.sent_at_ms).strftime("%Y-%m-%d %H:%M:%S")


# -- composer ------------------------------------------------------------------------------


class ComposerEdit(QPlainTextEdit):
    """Enter sends, Shift+Enter starts a new line; grows from one to six lines. Pasting an
    image (or files) sends it instead of inserting text."""

    submitted = Signal()
    escapePressed = Signal()
    imagePasted = Signal(object)  # QImage
    filesDropped = Signal(object)  # list[Path]

    MAX_LINES = 6

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ComposerEdit")
        self.setAccessibleName("Message")
        self.setTabChangesFocus(True)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self._fit()

    def canInsertFromMimeData(self, source: QMimeData) -> bool:
        return source.hasImage() or source.hasUrls() or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:
        files = [Path(u.toLocalFile()) for u in source.urls() if u.isLocalFile()]
        if files:
            self.filesDropped.emit(files)
        elif source.hasImage():
            self.imagePasted.emit(source.imageData())
        else:
            super().insertFromMimeData(source)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            mods = event.modifiers()
            if not mods & (
                Qt.KeyboardModifier.ShiftModifier
                | Qt.KeyboardModifier.AltModifier
                | Qt.KeyboardModifier.ControlModifier
            ):
                self.submitted.emit()
                return
            self.insertPlainText("\n")
            return
        if event.key() == Qt.Key.Key_Escape:
            self.escapePressed.emit()
        super().keyPressEvent(event)

    def _fit(self, *_args: object) -> None:
        fm = self.fontMetrics()
        lines = max(1, min(self.MAX_LINES, int(self.document().size().height())))
        margins = self.contentsMargins()
        doc_margin = self.document().documentMargin()
        height = math.ceil(
            lines * fm.lineSpacing() + 2 * doc_margin + margins.top() + margins.bottom() + 12
        )
        self.setFixedHeight(max(40, height))


class EmojiPicker(QFrame):
    """A small popup grid of common emoji; Esc or a click outside closes it."""

    chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Popup)
        self.setObjectName("EmojiPicker")
        self.setAccessibleName("Emoji")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        grid = QGridLayout(self)
        grid.setContentsMargins(8, 8, 8, 8)
        grid.setSpacing(2)
        self.buttons: list[QToolButton] = []
        for i, emoji in enumerate(EMOJI):
            button = QToolButton(self)
            button.setObjectName("EmojiButton")
            button.setText(emoji)
            button.setAccessibleName(f"Insert {emoji}")
            button.setAutoRaise(True)
            button.setFixedSize(38, 38)
            button.clicked.connect(lambda _=False, e=emoji: self._choose(e))
            grid.addWidget(button, i // 8, i % 8)
            self.buttons.append(button)

    def _choose(self, emoji: str) -> None:
        self.chosen.emit(emoji)
        self.close()

    def popup_above(self, anchor: QWidget) -> None:
        self.adjustSize()
        top_left = anchor.mapToGlobal(QPoint(0, 0))
        self.move(top_left.x(), top_left.y() - self.height() - 6)
        self.show()
        if self.buttons:
            self.buttons[0].setFocus()


class Composer(QFrame):
    sendRequested = Signal(str)
    typingChanged = Signal(bool)
    attachRequested = Signal()

    TYPING_REFRESH = 4.0  # re-announce while typing goes on
    TYPING_IDLE_MS = 5000  # stopped typing after this long without a key

    def __init__(self, max_bytes: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Composer")
        self.max_bytes = max_bytes
        self.emoji_button = QToolButton(self)
        self.emoji_button.setIcon(theme.icon("smile"))
        self.emoji_button.setIconSize(QSize(22, 22))
        self.emoji_button.setToolTip("Emoji")
        self.emoji_button.setAccessibleName("Insert emoji")
        self.attach_button = QToolButton(self)
        self.attach_button.setIcon(theme.icon("paperclip"))
        self.attach_button.setIconSize(QSize(22, 22))
        self.attach_button.setToolTip("Send a file or image (or drop it here, or paste it)")
        self.attach_button.setAccessibleName("Attach a file")
        self.edit = ComposerEdit(self)
        self.counter = QLabel(self)
        self.counter.setObjectName("Counter")
        self.counter.setAccessibleName("Characters left")
        self.counter.hide()
        self.send_button = QToolButton(self)
        self.send_button.setObjectName("SendButton")
        self.send_button.setIcon(theme.icon("send", "#ffffff"))
        self.send_button.setIconSize(QSize(18, 18))
        self.send_button.setFixedSize(36, 36)
        self.send_button.setToolTip("Send (Enter)")
        self.send_button.setAccessibleName("Send")
        self.error = QLabel(self)
        self.error.setObjectName("ComposerError")
        self.error.setWordWrap(True)
        self.error.hide()

        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(8)
        row.addWidget(self.attach_button, 0, Qt.AlignmentFlag.AlignBottom)
        row.addWidget(self.emoji_button, 0, Qt.AlignmentFlag.AlignBottom)
        row.addWidget(self.edit, 1)
        row.addWidget(self.counter, 0, Qt.AlignmentFlag.AlignBottom)
        row.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(14, 10, 14, 12)
        outer.setSpacing(6)
        outer.addWidget(self.error)
        outer.addLayout(row)

        for button in (self.attach_button, self.emoji_button, self.send_button):
            button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.attach_button.clicked.connect(self.attachRequested)
        self._picker: EmojiPicker | None = None
        self._typing = False
        self._typing_sent_at = 0.0
        self._idle = QTimer(self)
        self._idle.setSingleShot(True)
        self._idle.setInterval(self.TYPING_IDLE_MS)
        self._idle.timeout.connect(self._stop_typing)
        self._placeholder = ""
        self.emoji_button.clicked.connect(self.show_emoji_picker)
        self.send_button.clicked.connect(self.submit)
        self.edit.submitted.connect(self.submit)
        self.edit.textChanged.connect(self._on_text_changed)
        self._on_text_changed()

    def retheme(self) -> None:
        self.emoji_button.setIcon(theme.icon("smile"))
        self.send_button.setIcon(theme.icon("send", "#ffffff"))
        self.error.setStyleSheet(f"color: {theme.current().danger};")

    def set_available(self, available: bool, placeholder: str) -> None:
        """Enable for a conversation, or disable with the reason as the placeholder."""
        self._placeholder = placeholder
        self.edit.setPlaceholderText(placeholder)
        self.edit.setEnabled(available)
        self.emoji_button.setEnabled(available)
        if not available:
            self._stop_typing()
        self._on_text_changed()

    def set_placeholder(self, placeholder: str) -> None:
        self._placeholder = placeholder
        self.edit.setPlaceholderText(placeholder)

    def text(self) -> str:
        return self.edit.toPlainText()

    def set_text(self, text: str) -> None:
        self.edit.setPlainText(text)
        cursor = self.edit.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        self.edit.setTextCursor(cursor)

    def show_error(self, message: str) -> None:
        self.error.setStyleSheet(f"color: {theme.current().danger};")
        self.error.setText(message)
        self.error.setVisible(bool(message))

    def bytes_used(self) -> int:
        return len(self.text().encode("utf-8"))

    def _on_text_changed(self) -> None:
        text = self.text()
        size = len(text.encode("utf-8"))
        left = self.max_bytes - size
        over = left < 0
        if size > self.max_bytes * 0.9:
            self.counter.setText(f"{-left:,} too long" if over else f"{left:,} left")
            self.counter.setProperty("over", over)
            self.counter.style().unpolish(self.counter)
            self.counter.style().polish(self.counter)
            self.counter.show()
            self.counter.setToolTip(f"A message can hold {self.max_bytes:,} bytes of text")
        else:
            self.counter.hide()
        enabled = self.edit.isEnabled()
        self.send_button.setEnabled(enabled and bool(text.strip()) and not over)
        if over:
            self.send_button.setToolTip("The message is too long to send")
        else:
            self.send_button.setToolTip("Send (Enter)")
        if self.error.isVisible() and text:
            self.show_error("")
        if enabled and text.strip():
            now = time.monotonic()
            if not self._typing or now - self._typing_sent_at > self.TYPING_REFRESH:
                self._typing = True
                self._typing_sent_at = now
                self.typingChanged.emit(True)
            self._idle.start()
        elif self._typing:
            self._stop_typing()

    def _stop_typing(self) -> None:
        self._idle.stop()
        if self._typing:
            self._typing = False
            self.typingChanged.emit(False)

    def submit(self) -> None:
        text = self.text()
        if not self.edit.isEnabled() or not text.strip():
            return
        if len(text.encode("utf-8")) > self.max_bytes:
            self.show_error(
                f"This message is too long: a message can hold {self.max_bytes:,} bytes of text."
            )
            return
        self.edit.clear()
        self._stop_typing()
        self.sendRequested.emit(text.strip("\n"))

    def show_emoji_picker(self) -> None:
        if self._picker is None:
            self._picker = EmojiPicker(self)
            self._picker.chosen.connect(self._insert_emoji)
        self._picker.popup_above(self.emoji_button)

    def _insert_emoji(self, emoji: str) -> None:
        self.edit.insertPlainText(emoji)
        self.edit.setFocus()


# -- header, search bar, typing indicator ---------------------------------------------------


def presence_text(item: ConversationItem, now: float | None = None) -> str:
    if item.online:
        return "online"
    if not item.last_seen:
        return "offline"
    now = now or time.time()
    ago = max(0.0, now - item.last_seen)
    if ago < 60:
        return "last seen just now"
    if ago < 3600:
        return f"last seen {int(ago // 60)} min ago"
    when = local_time(int(item.last_seen * 1000))
    today = local_time(int(now * 1000)).date()
    if when.date() == today:
        return f"last seen today at {time_label(int(item.last_seen * 1000))}"
    if (today - when.date()).days == 1:
        return f"last seen yesterday at {time_label(int(item.last_seen * 1000))}"
    return f"last seen {when.strftime('%d %b %Y')}"


class VerifiedMark(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFixedSize(16, 16)
        self.setToolTip("Verified: you compared safety numbers")
        self.setAccessibleName("Verified")

    def paintEvent(self, _event: object) -> None:
        painter = QPainter(self)
        paint_verified(painter, QRectF(1, 1, 14, 14), theme.current().color("accent"))
        painter.end()


class ChatHeader(QFrame):
    searchClicked = Signal()
    safetyClicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ChatHeader")
        self.avatar = Avatar(40, self)
        self.name = QLabel(self)
        self.name.setObjectName("HeaderName")
        self.name.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.name.setFont(theme.scaled_font(self.font(), 1.15, QFont.Weight.DemiBold))
        self.verified = VerifiedMark(self)
        self.status = QLabel(self)
        self.status.setObjectName("HeaderStatus")
        self.status.setFont(theme.scaled_font(self.font(), 0.88))
        self.search_button = QToolButton(self)
        self.search_button.setToolTip("Search this conversation (Ctrl+F)")
        self.search_button.setAccessibleName("Search this conversation")
        self.safety_button = QToolButton(self)
        self.safety_button.setToolTip("Safety number: verify this contact")
        self.safety_button.setAccessibleName("Safety number")
        for button in (self.search_button, self.safety_button):
            button.setIconSize(QSize(20, 20))
            button.setFixedSize(36, 36)
            button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.retheme()

        names = QHBoxLayout()
        names.setSpacing(6)
        names.setContentsMargins(0, 0, 0, 0)
        names.addWidget(self.name)
        names.addWidget(self.verified)
        names.addStretch(1)
        text = QVBoxLayout()
        text.setSpacing(0)
        text.setContentsMargins(0, 0, 0, 0)
        text.addLayout(names)
        text.addWidget(self.status)
        row = QHBoxLayout(self)
        row.setContentsMargins(16, 10, 12, 10)
        row.setSpacing(12)
        row.addWidget(self.avatar)
        row.addLayout(text, 1)
        row.addWidget(self.search_button)
        row.addWidget(self.safety_button)
        self.search_button.clicked.connect(self.searchClicked)
        self.safety_button.clicked.connect(self.safetyClicked)

    def retheme(self) -> None:
        self.search_button.setIcon(theme.icon("search"))
        self.safety_button.setIcon(theme.icon("shield"))

    def show_item(self, item: ConversationItem, typing: bool = False) -> None:
        self.avatar.set_contact(item.name, item.id, item.online)
        self.name.setText(item.name)
        self.name.setAccessibleName(f"Conversation with {item.name}")
        self.verified.setVisible(item.contact.verified)
        self.status.setText("typing…" if typing else presence_text(item))
        self.safety_button.setToolTip(
            f"Safety number with {item.name}" + (" (verified)" if item.contact.verified else "")
        )


class SearchBar(QFrame):
    """Search in the open conversation: results newest first, Enter/↑/↓ step through."""

    queryChanged = Signal(str)
    nextRequested = Signal()
    previousRequested = Signal()
    closed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("SearchBar")
        self.field = QLineEdit(self)
        self.field.setObjectName("SearchField")
        self.field.setPlaceholderText("Search in this conversation")
        self.field.setAccessibleName("Search in this conversation")
        self.field.setClearButtonEnabled(True)
        self._icon_action = self.field.addAction(
            theme.icon("search"), QLineEdit.ActionPosition.LeadingPosition
        )
        self.count = QLabel(self)
        self.count.setObjectName("MutedLabel")
        self.count.setMinimumWidth(70)
        self.count.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.up = QToolButton(self)
        self.up.setToolTip("Older match (Enter)")
        self.up.setAccessibleName("Older match")
        self.down = QToolButton(self)
        self.down.setToolTip("Newer match (Shift+Enter)")
        self.down.setAccessibleName("Newer match")
        self.close_button = QToolButton(self)
        self.close_button.setToolTip("Close search (Esc)")
        self.close_button.setAccessibleName("Close search")
        for button in (self.up, self.down, self.close_button):
            button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.retheme()
        row = QHBoxLayout(self)
        row.setContentsMargins(16, 8, 12, 8)
        row.setSpacing(6)
        row.addWidget(self.field, 1)
        row.addWidget(self.count)
        row.addWidget(self.up)
        row.addWidget(self.down)
        row.addWidget(self.close_button)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(220)
        self._debounce.timeout.connect(lambda: self.queryChanged.emit(self.field.text()))
        self.field.textChanged.connect(lambda _t: self._debounce.start())
        self.up.clicked.connect(self.previousRequested)
        self.down.clicked.connect(self.nextRequested)
        self.close_button.clicked.connect(self.closed)
        self.field.installEventFilter(self)

    def retheme(self) -> None:
        self._icon_action.setIcon(theme.icon("search"))
        self.up.setIcon(theme.icon("chevron-up"))
        self.down.setIcon(theme.icon("chevron-down"))
        self.close_button.setIcon(theme.icon("close"))

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is self.field and event.type() == QEvent.Type.KeyPress:
            assert isinstance(event, QKeyEvent)
            key = event.key()
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                if self._debounce.isActive():
                    self._debounce.stop()
                    self.queryChanged.emit(self.field.text())
                elif event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                    self.nextRequested.emit()
                else:
                    self.previousRequested.emit()
                return True
            if key == Qt.Key.Key_Up:
                self.previousRequested.emit()
                return True
            if key == Qt.Key.Key_Down:
                self.nextRequested.emit()
                return True
            if key == Qt.Key.Key_Escape:
                self.closed.emit()
                return True
        return super().eventFilter(obj, event)

    def set_count(self, current: int, total: int, searching: bool = False) -> None:
        if searching:
            self.count.setText("…")
        elif not self.field.text().strip():
            self.count.setText("")
        elif total == 0:
            self.count.setText("No results")
        else:
            self.count.setText(f"{current + 1} of {total}")
        self.up.setEnabled(total > 0 and current < total - 1)
        self.down.setEnabled(total > 0 and current > 0)


class TypingIndicator(QWidget):
    """'Alice is typing' with three animated dots."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("TypingIndicator")
        self._name = ""
        self._phase = 0
        self._timer = QTimer(self)
        self._timer.setInterval(280)
        self._timer.timeout.connect(self._tick)
        self.setFixedHeight(24)
        self.setAccessibleName("Typing indicator")
        self.hide()

    def set_typing(self, name: str, active: bool) -> None:
        self._name = name
        if active:
            self.setAccessibleDescription(f"{name} is typing")
            self.show()
            self._timer.start()
        else:
            self._timer.stop()
            self.hide()

    def text(self) -> str:
        return f"{self._name} is typing…" if self.isVisible() else ""

    def _tick(self) -> None:
        self._phase = (self._phase + 1) % 3
        self.update()

    def paintEvent(self, _event: object) -> None:
        t = theme.current()
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        x, cy = SIDE + 4, self.height() / 2
        painter.setPen(Qt.PenStyle.NoPen)
        for i in range(3):
            color = t.color("text_muted")
            if i != self._phase:
                color.setAlphaF(0.45)
            painter.setBrush(color)
            painter.drawEllipse(QPointF(x + i * 9, cy), 3, 3)
        font = theme.scaled_font(self.font(), 0.88)
        painter.setFont(font)
        painter.setPen(t.color("text_muted"))
        painter.drawText(
            QRectF(x + 30, 0, self.width() - x - 40, self.height()),
            Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
            f"{self._name} is typing…",
        )
        painter.end()


# -- the whole pane ----------------------------------------------------------------------------


class ChatView(QWidget):
    """One conversation. `show_conversation` switches; `jump_to` shows a message in context."""

    safetyNumberRequested = Signal(str)  # contact_id
    conversationShown = Signal(str)

    def __init__(
        self, bridge: Bridge, conversations: ConversationListModel, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.conversations = conversations
        self.contact_id: str | None = None
        self.history: HistoryModel | None = None
        self._tasks = TaskSet("chat view")
        self._search_results: list[MessageRecord] = []
        self._search_index = 0
        self._search_generation = 0
        self._search_task: asyncio.Task[None] | None = None

        self.header = ChatHeader(self)
        self.search_bar = SearchBar(self)
        self.search_bar.hide()
        self.view = HistoryView(self)
        self.typing = TypingIndicator(self)
        self.transfers = TransfersPanel(bridge, self)
        # File bubbles act through the panel, which keeps per-file state (where it was saved).
        self.view.is_saved = self.transfers.saved
        self.view.transferActionRequested.connect(self.transfers.run_action)
        self.composer = Composer(bridge.max_body_bytes, self)
        self.setAcceptDrops(True)
        self.jump_button = QToolButton(self.view)
        self.jump_button.setObjectName("JumpButton")
        self.jump_button.setIcon(theme.icon("arrow-down"))
        self.jump_button.setIconSize(QSize(20, 20))
        self.jump_button.setFixedSize(40, 40)
        self.jump_button.setToolTip("Jump to the newest message")
        self.jump_button.setAccessibleName("Jump to the newest message")
        self.jump_button.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.header)
        layout.addWidget(self.search_bar)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.typing)
        layout.addWidget(self.transfers)
        layout.addWidget(self.composer)
        self.setTabOrder(self.header.search_button, self.header.safety_button)
        self.setTabOrder(self.header.safety_button, self.view)
        self.setTabOrder(self.view, self.composer.emoji_button)
        self.setTabOrder(self.composer.emoji_button, self.composer.edit)
        self.setTabOrder(self.composer.edit, self.composer.send_button)

        self.composer.set_available(False, "Choose a conversation to start chatting")
        self.composer.sendRequested.connect(self._send)
        self.composer.attachRequested.connect(self._choose_files)
        self.composer.edit.imagePasted.connect(self._send_image)
        self.composer.edit.filesDropped.connect(self.send_files)
        self.composer.typingChanged.connect(self._on_own_typing)
        self.composer.edit.escapePressed.connect(self.close_search)
        self.header.searchClicked.connect(self.open_search)
        self.header.safetyClicked.connect(self._on_safety)
        self.search_bar.queryChanged.connect(self._run_search)
        self.search_bar.nextRequested.connect(lambda: self._step_search(-1))
        self.search_bar.previousRequested.connect(lambda: self._step_search(1))
        self.search_bar.closed.connect(self.close_search)
        self.view.atBottomChanged.connect(lambda _b: self._update_jump_button())
        self.jump_button.clicked.connect(self.jump_to_latest)
        self.view.installEventFilter(self)
        conversations.typingChanged.connect(self._on_typing_changed)
        conversations.contactUpdated.connect(self._on_contact_updated)
        self._status_timer = QTimer(self)
        self._status_timer.setInterval(30_000)
        self._status_timer.timeout.connect(self._refresh_header)
        self._status_timer.start()
        manager = theme.manager()
        if manager is not None:
            manager.changed.connect(self.retheme)

    # -- lifecycle -------------------------------------------------------------------------

    def shutdown(self) -> None:
        self._tasks.close()
        self.transfers.shutdown()
        if self.history is not None:
            self.history.close()
        self._status_timer.stop()
        if self.contact_id is not None:
            self.composer.set_available(False, "")

    def retheme(self, *_args: object) -> None:
        self.header.retheme()
        self.search_bar.retheme()
        self.composer.retheme()
        self.jump_button.setIcon(theme.icon("arrow-down"))
        self.view.refresh_layout()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is self.view and event.type() == QEvent.Type.Resize:
            self._place_jump_button()
        return super().eventFilter(obj, event)

    def _place_jump_button(self) -> None:
        vp = self.view.viewport().geometry()
        self.jump_button.move(vp.right() - self.jump_button.width() - 18, vp.bottom() - 56)

    # -- switching conversations ------------------------------------------------------------

    def item(self) -> ConversationItem | None:
        return self.conversations.item(self.contact_id) if self.contact_id else None

    def show_conversation(self, contact_id: str, jump_to: MessageRecord | None = None) -> None:
        item = self.conversations.item(contact_id)
        if item is None:
            return
        if contact_id == self.contact_id and self.history is not None:
            if jump_to is not None:
                self._tasks.spawn(self.jump_to(jump_to))
            return
        if self.contact_id is not None:
            self.composer._stop_typing()
        old = self.history
        self.contact_id = contact_id
        self.history = HistoryModel(self.bridge, contact_id, self)
        self.history.beyondWindow.connect(lambda _n: self._update_jump_button())
        self.history.windowReset.connect(self._update_jump_button)
        self.view.set_history(self.history)
        if old is not None:
            old.close()
            old.deleteLater()
        self.close_search()
        self.transfers.show_contact(contact_id)
        self.header.show_item(item, self.conversations.is_typing(contact_id))
        self.typing.set_typing(item.name, self.conversations.is_typing(contact_id))
        self.composer.show_error("")
        self.composer.set_text("")
        self.composer.set_available(True, self._placeholder(item))
        if jump_to is not None:
            self._tasks.spawn(self.jump_to(jump_to))
        else:
            self.history.spawn(self.history.load_latest())
        self.conversationShown.emit(contact_id)

    def clear(self) -> None:
        if self.history is not None:
            self.history.close()
            self.history.deleteLater()
        self.history = None
        self.contact_id = None
        self.transfers.show_contact(None)
        self.view.set_history(None)
        self.composer.set_available(False, "Choose a conversation to start chatting")

    def _placeholder(self, item: ConversationItem) -> str:
        if item.online:
            return f"Message {item.name}"
        return f"Message {item.name} (delivered when they are back online)"

    async def jump_to(self, record: MessageRecord) -> None:
        """Show `record` in context: reuse the window if it holds it, else load around it."""
        history = self.history
        if history is None or record.contact_id != self.contact_id:
            return
        row = history.row_of(record.msg_id)
        if row < 0:
            await history.spawn(history.load_around(record))
        else:
            history.set_highlight(record.msg_id)
            self.view.scrollTo(
                self.view.model().index(row, 0), QAbstractItemView.ScrollHint.PositionAtCenter
            )
        self._update_jump_button()

    def jump_to_latest(self) -> None:
        history = self.history
        if history is None:
            return
        if history.at_end and history.highlight is None:
            self.view.scrollToBottom()
        else:
            history.spawn(history.load_latest())
        self.composer.edit.setFocus()

    def _update_jump_button(self) -> None:
        history = self.history
        show = (
            history is not None
            and history.loaded
            and (not history.at_end or not self.view.is_at_bottom())
        )
        self.jump_button.setVisible(bool(show))
        if show:
            self._place_jump_button()
            self.jump_button.raise_()

    def focus_composer(self) -> None:
        if self.composer.edit.isEnabled():
            self.composer.edit.setFocus()

    # -- live updates -----------------------------------------------------------------------

    def _on_typing_changed(self, contact_id: str, active: bool) -> None:
        if contact_id != self.contact_id:
            return
        item = self.item()
        if item is not None:
            self.typing.set_typing(item.name, active)
            self.header.show_item(item, active)

    def _on_contact_updated(self, item: ConversationItem) -> None:
        if item.id == self.contact_id:
            self.header.show_item(item, self.conversations.is_typing(item.id))
            self.composer.set_placeholder(self._placeholder(item))

    def _refresh_header(self) -> None:
        item = self.item()
        if item is not None:
            self.header.show_item(item, self.conversations.is_typing(item.id))

    def _on_safety(self) -> None:
        if self.contact_id:
            self.safetyNumberRequested.emit(self.contact_id)

    # -- sending ----------------------------------------------------------------------------

    def _send(self, text: str) -> None:
        if self.contact_id is None:
            return
        contact_id = self.contact_id
        self.view._stick = True
        if self.history is not None and not self.history.at_end:
            self.history.spawn(self.history.load_latest())

        async def send() -> None:
            try:
                await self.bridge.send_text(contact_id, text)
            except (MessageTooLong, ServiceError) as exc:
                if self.contact_id == contact_id:
                    self.composer.show_error(f"Not sent: {exc}")
                    if not self.composer.text():
                        self.composer.set_text(text)

        self._tasks.spawn(send())
        self.view.scrollToBottom()

    # -- files --------------------------------------------------------------------------------

    def _choose_files(self) -> None:
        if self.contact_id is None:
            return
        paths, _ = QFileDialog.getOpenFileNames(self, "Send files", str(Path.home()))
        self.send_files([Path(p) for p in paths])

    def send_files(self, paths: list[Path]) -> None:
        if self.contact_id is None:
            return
        contact_id = self.contact_id

        async def send(path: Path) -> None:
            try:
                await self.bridge.send_file(contact_id, path)
            except (FileError, ServiceError) as exc:
                if self.contact_id == contact_id:
                    self.composer.show_error(f"Not sent: {exc}")

        for path in paths:
            self._tasks.spawn(send(path))

    def _send_image(self, image: object) -> None:
        """A pasted image: written as a PNG to a private temporary folder, then sent."""
        if not isinstance(image, QImage) or image.isNull() or self.contact_id is None:
            return
        folder = Path(tempfile.mkdtemp(prefix="chinwag-paste-"))
        path = folder / f"pasted {time.strftime('%Y-%m-%d %H.%M.%S')}.png"
        if image.save(str(path), "PNG"):
            self.send_files([path])

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self.contact_id is not None and (
            event.mimeData().hasUrls() or event.mimeData().hasImage()
        ):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        data = event.mimeData()
        files = [Path(u.toLocalFile()) for u in data.urls() if u.isLocalFile()]
        if files:
            self.send_files(files)
        elif data.hasImage():
            self._send_image(data.imageData())
        event.acceptProposedAction()

    def _on_own_typing(self, active: bool) -> None:
        if self.contact_id is not None:
            self.bridge.set_typing(self.contact_id, active)

    # -- search in this conversation ----------------------------------------------------------

    def open_search(self) -> None:
        if self.contact_id is None:
            return
        self.search_bar.show()
        self.search_bar.field.setFocus()
        self.search_bar.field.selectAll()

    def close_search(self) -> None:
        if not self.search_bar.isVisible():
            return
        self.search_bar.hide()
        self._search_results = []
        self.search_bar.field.clear()
        if self.history is not None:
            self.history.set_search_terms([])
            if self.history.highlight is not None:
                self.history.set_highlight(None)
        self.focus_composer()

    def _run_search(self, text: str) -> None:
        self._search_generation += 1
        generation = self._search_generation
        if self._search_task is not None:
            self._search_task.cancel()  # superseded by what was typed since (or cleared)
            self._search_task = None
        contact_id = self.contact_id
        if not text.strip() or contact_id is None:
            self._search_results = []
            self.search_bar.set_count(0, 0)
            return
        self.search_bar.set_count(0, 0, searching=True)

        async def search() -> None:
            results = await self.bridge.search(text, contact_id)
            if generation != self._search_generation or contact_id != self.contact_id:
                return
            self._search_results = results
            self._search_index = 0
            if self.history is not None:
                self.history.set_search_terms(text.split())
            self.search_bar.set_count(0, len(results))
            if results:
                await self.jump_to(results[0])

        self._search_task = self._tasks.spawn(search())

    def _step_search(self, delta: int) -> None:
        """delta=+1: the next older match; -1: the next newer one."""
        if not self._search_results:
            return
        index = self._search_index + delta
        if not 0 <= index < len(self._search_results):
            return
        self._search_index = index
        self.search_bar.set_count(index, len(self._search_results))
        self._tasks.spawn(self.jump_to(self._search_results[index]))

    # -- keys -----------------------------------------------------------------------------

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.matches(QKeySequence.StandardKey.Find):
            self.open_search()
            return
        super().keyPressEvent(event)


__all__ = [
    "BubbleDelegate",
    "ChatHeader",
    "ChatView",
    "Composer",
    "ComposerEdit",
    "EmojiPicker",
    "HistoryView",
    "SearchBar",
    "TypingIndicator",
    "build_document",
    "jumbo_emoji",
    "key_of",
    "link_spans",
    "presence_text",
]

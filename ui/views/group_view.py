"""A group conversation: header, messages with author names and colours, "delivered to
N of M" on ours, files shared in the group (progress, thumbnails, actions), a member panel
with presence, and a composer that takes files by button, drop or paste."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QPointF,
    QRectF,
    QSize,
    QSizeF,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QContextMenuEvent,
    QDragEnterEvent,
    QDropEvent,
    QFont,
    QFontMetrics,
    QFontMetricsF,
    QMouseEvent,
    QPainter,
    QPen,
    QTextOption,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QSplitter,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from messenger import GroupMessageRecord, GroupRecord, TransferRecord
from ui import theme
from ui.bridge import Bridge
from ui.models.groups import GroupHistoryModel
from ui.tasks import TaskSet
from ui.views.chat.attachments import (
    FILE_SPACING,
    FILE_WIDTH,
    PROGRESS_STATES,
    FileClick,
    action_hint,
    add_file_actions,
    file_part_height,
    offers_files,
    paint_file_part,
    pasted_image_file,
    take_files,
    thumbnail_size,
)
from ui.views.chat.bottom_anchor import fit_to_bottom
from ui.views.chat.composer import STARTING_PLACEHOLDER, ComposerEdit
from ui.views.paint import (
    day_pill_height,
    paint_avatar,
    paint_day_pill,
    paint_presence,
    rounded_path,
)
from ui.views.transfers import TransfersPanel

Index = QModelIndex | QPersistentModelIndex
BUBBLE_MAX = 520
PAD = 10


def _time(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%H:%M")


class GroupMessageDelegate(QStyledItemDelegate):
    """A bubble per message: theirs on the left with the author's name in the author's
    colour, ours on the right with "✓ N/M" (delivered to N of the M other members)."""

    def __init__(self, model: GroupHistoryModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model

    def _fonts(self, option: QStyleOptionViewItem) -> tuple[QFont, QFont, QFont]:
        base = QFont(option.font)
        name = QFont(base)
        name.setWeight(QFont.Weight.DemiBold)
        meta = theme.scaled_font(base, 0.85)
        return base, name, meta

    def _file_block(
        self, m: GroupMessageRecord, width: float, meta: QFont
    ) -> tuple[TransferRecord | None, QSizeF | None, float]:
        """A file message's extra: (transfer, thumbnail size, height under the text)."""
        t = self.model.transfer_of(m)
        if t is None:
            return None, None, 0.0
        thumb = self.model.thumbnail(t)
        thumb_size = thumbnail_size(thumb, width) if thumb is not None else None
        height = file_part_height(thumb_size, t.state in PROGRESS_STATES)
        return t, thumb_size, height + FILE_SPACING + QFontMetrics(meta).height()

    def _layout(
        self, option: QStyleOptionViewItem, m: GroupMessageRecord
    ) -> tuple[float, float, float]:
        """(bubble width, body height, total height)."""
        base, name, meta = self._fonts(option)
        width = min(BUBBLE_MAX, max(120, option.rect.width() - 120))
        fm = QFontMetrics(base)
        body = fm.boundingRect(
            0, 0, width - 2 * PAD, 100000, Qt.TextFlag.TextWordWrap, m.body
        ).height()
        natural = fm.boundingRect(0, 0, 100000, 1000, 0, m.body).width() + 2 * PAD
        label = QFontMetrics(name).horizontalAdvance(m.author_name) + 2 * PAD
        status = QFontMetrics(meta).horizontalAdvance("00:00  ✓ 00/00") + 2 * PAD
        bubble: float = min(width, max(natural, label if not m.outgoing else 0, status))
        t, _, file_h = self._file_block(m, min(width, FILE_WIDTH) - 2 * PAD, meta)
        if t is not None:
            bubble = min(width, max(bubble, FILE_WIDTH))
        header = 0 if m.outgoing else QFontMetrics(name).height() + 2
        total = PAD + header + body + file_h + 4 + QFontMetrics(meta).height() + PAD
        return bubble, body, total + 6

    def _day(self, option: QStyleOptionViewItem, index: Index) -> tuple[str | None, QFont, float]:
        """The day's pill above this row, if it is the first of a day: (label, font, the
        room it takes)."""
        font = theme.scaled_font(QFont(option.font), 0.84, QFont.Weight.DemiBold)
        row = index.row()
        day = self.model.day_of(row) if 0 <= row < self.model.rowCount() else None
        return day, font, day_pill_height(QFontMetricsF(font)) if day else 0.0

    def bubble_rect(self, option: QStyleOptionViewItem, index: Index) -> QRectF | None:
        m = index.data(GroupHistoryModel.MessageRole)
        if m is None:
            return None
        bubble_w, _, total = self._layout(option, m)
        rect = option.rect
        left = rect.right() - bubble_w - 16 if m.outgoing else rect.left() + 52
        return QRectF(left, rect.top() + self._day(option, index)[2] + 3, bubble_w, total - 6)

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        m = index.data(GroupHistoryModel.MessageRole)
        if m is None:
            return QSize(0, 0)
        height = self._layout(option, m)[2] + self._day(option, index)[2]
        return QSize(option.rect.width(), int(height))

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        m: GroupMessageRecord | None = index.data(GroupHistoryModel.MessageRole)
        if m is None:
            return
        t = theme.current()
        base, name, meta = self._fonts(option)
        bubble_w, body_h, total = self._layout(option, m)
        rect = option.rect
        day, day_font, day_h = self._day(option, index)
        left = rect.right() - bubble_w - 16 if m.outgoing else rect.left() + 52
        bubble = QRectF(left, rect.top() + day_h + 3, bubble_w, total - 6)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if day is not None:
            pill = QRectF(rect.left(), rect.top(), rect.width(), day_h)
            paint_day_pill(
                painter, pill, day, day_font, QColor(t.day_pill), QColor(t.day_pill_text)
            )
        if not m.outgoing:
            avatar = QRectF(rect.left() + 12, bubble.top(), 30, 30)
            paint_avatar(painter, avatar, m.author_name, m.author_id)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(t.bubble_out if m.outgoing else t.bubble_in))
        painter.drawPath(rounded_path(bubble, 12, 12, 12, 12))
        if m.msg_id == self.model.highlight:  # the message a search jumped to
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.setPen(QPen(QColor(t.accent), 2.5))
            painter.drawPath(rounded_path(bubble.adjusted(-2, -2, 2, 2), 14, 14, 14, 14))
        y = bubble.top() + PAD
        if not m.outgoing:
            painter.setFont(name)
            painter.setPen(theme.avatar_color(m.author_id))
            height = QFontMetrics(name).height()
            painter.drawText(
                QRectF(bubble.left() + PAD, y, bubble_w - 2 * PAD, height),
                Qt.AlignmentFlag.AlignLeft,
                m.author_name,
            )
            y += height + 2
        painter.setFont(base)
        painter.setPen(QColor(t.bubble_out_text if m.outgoing else t.bubble_in_text))
        text_rect = QRectF(bubble.left() + PAD, y, bubble_w - 2 * PAD, body_h)
        option_text = QTextOption()
        option_text.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        painter.drawText(text_rect, m.body, option_text)
        y += body_h
        muted = QColor(t.bubble_out_meta if m.outgoing else t.text_muted)
        link = QColor(t.link_out if m.outgoing else t.link_in)
        transfer, thumb_size, file_h = self._file_block(m, bubble_w - 2 * PAD, meta)
        if transfer is not None:
            part = QRectF(bubble.left() + PAD, y + FILE_SPACING, bubble_w - 2 * PAD, file_h)
            thumb = self.model.thumbnail(transfer)
            paint_file_part(painter, part, transfer, thumb, thumb_size, meta, (muted, link))
            y += file_h
        y += 4
        painter.setFont(meta)
        painter.setPen(muted)
        status = _time(m.sent_at_ms)
        if m.outgoing:
            status += f"  ✓ {self.model.delivered(m)}/{self.model.member_count()}"
        line = QRectF(bubble.left() + PAD, y, bubble_w - 2 * PAD, QFontMetrics(meta).height())
        painter.drawText(line, Qt.AlignmentFlag.AlignRight, status)
        hint = action_hint(transfer) if transfer is not None else None
        if hint is not None:
            # On the time's line, at the left: what a click does (more in the context menu).
            painter.setPen(link)
            painter.drawText(line, Qt.AlignmentFlag.AlignLeft, hint)
        painter.restore()


class MemberList(QListWidget):
    """The member panel: avatar, name, presence dot, "admin" and "you" marks."""

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.setObjectName("MemberList")
        self.setAccessibleName("Members")
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setIconSize(QSize(28, 28))
        self.group: GroupRecord | None = None

    def show_group(self, group: GroupRecord) -> None:
        self.group = group
        self.refresh()

    def refresh(self) -> None:
        self.clear()
        if self.group is None:
            return
        for m in sorted(self.group.members, key=lambda m: (not m.is_me, m.name.casefold())):
            online = m.is_me or self.bridge.is_online(m.contact_id)
            marks = [x for x, on in (("you", m.is_me), ("admin", m.admin)) if on]
            text = m.name + (f"  ({', '.join(marks)})" if marks else "")
            item = QListWidgetItem(_avatar_icon(m.name, m.contact_id, online), text)
            item.setData(Qt.ItemDataRole.UserRole, m.contact_id)
            item.setData(
                Qt.ItemDataRole.AccessibleTextRole,
                f"{text}, {'online' if online else 'offline'}",
            )
            item.setToolTip("online" if online else "offline")
            self.addItem(item)


def _avatar_icon(name: str, contact_id: str, online: bool) -> Any:
    from PySide6.QtGui import QIcon, QPixmap

    pixmap = QPixmap(56, 56)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    rect = QRectF(2, 2, 48, 48)
    paint_avatar(painter, rect, name, contact_id)
    paint_presence(painter, rect, online, QColor(theme.current().sidebar))
    painter.end()
    return QIcon(pixmap)


class GroupMessageList(QListView):
    """The messages; a click on a file's bubble does its main action, a right click offers
    the rest."""

    transferActionRequested = Signal(str, str)  # action, transfer id

    def __init__(self, model: GroupHistoryModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.history = model
        self.is_saved: Callable[[str], bool] = lambda _transfer_id: False
        self._file_click = FileClick()
        # Older pages load when the user nears the top (the model turns Qt's own paging off);
        # the message at the top stays where it was on screen while they are put above it.
        self._anchor: tuple[bytes, int] | None = None
        self._fetch_timer = QTimer(self)  # dies with the view, unlike a bare singleShot
        self._fetch_timer.setSingleShot(True)
        self._fetch_timer.setInterval(0)
        self._fetch_timer.timeout.connect(self._maybe_fetch)
        self.verticalScrollBar().valueChanged.connect(self._schedule_fetch)
        self.verticalScrollBar().rangeChanged.connect(self._schedule_fetch)
        model.loadingChanged.connect(self._schedule_fetch)
        model.rowsAboutToBeInserted.connect(self._before_insert)  # before the view's own

    def updateGeometries(self) -> None:
        super().updateGeometries()
        fit_to_bottom(self)  # a short history sits by the composer

    def _schedule_fetch(self, *_args: object) -> None:
        self._fetch_timer.start()  # once the scroll or layout has settled

    def _maybe_fetch(self) -> None:
        bar = self.verticalScrollBar()
        if bar.value() <= bar.minimum() + max(120, self.viewport().height() // 2):
            self.history.fetch_older()

    def _before_insert(self, _parent: QModelIndex, first: int, _last: int) -> None:
        self._anchor = None
        top = self.indexAt(QPoint(self.viewport().width() // 2, 1))
        if first == 0 and top.isValid():  # rows go in above what the user is looking at
            message = self.history.data(top, GroupHistoryModel.MessageRole)
            if message is not None:
                self._anchor = (message.msg_id, self.visualRect(top).top())

    def rowsInserted(
        self, parent: QModelIndex | QPersistentModelIndex, first: int, last: int
    ) -> None:
        super().rowsInserted(parent, first, last)  # the view takes the rows in first
        anchor, self._anchor = self._anchor, None
        if anchor is None:
            return
        self.executeDelayedItemsLayout()
        self.updateGeometries()  # the scroll range grows now, not at the next layout
        row = self.history.row_of(anchor[0])
        if row >= 0:
            now = self.visualRect(self.history.index(row, 0)).top()
            bar = self.verticalScrollBar()
            bar.setValue(bar.value() + now - anchor[1])

    def transfer_at(self, pos: QPoint) -> TransferRecord | None:
        index = self.indexAt(pos)
        delegate = self.itemDelegate()
        if not index.isValid() or not isinstance(delegate, GroupMessageDelegate):
            return None
        option = QStyleOptionViewItem()
        option.initFrom(self)
        option.rect = self.visualRect(index)
        bubble = delegate.bubble_rect(option, index)
        m = index.data(GroupHistoryModel.MessageRole)
        if bubble is None or m is None or not bubble.contains(QPointF(pos)):
            return None
        return self.history.transfer_of(m)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        left = event.button() == Qt.MouseButton.LeftButton
        self._file_click.press(self.transfer_at(event.position().toPoint()) if left else None)
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        left = event.button() == Qt.MouseButton.LeftButton
        found = self.transfer_at(event.position().toPoint()) if left else None
        clicked = self._file_click.release(found)
        if clicked is not None:
            self.transferActionRequested.emit(*clicked)
        super().mouseReleaseEvent(event)

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        found = self.transfer_at(event.pos())
        if found is None:
            return
        menu = QMenu(self)
        add_file_actions(menu, found, self.is_saved(found.id), self.transferActionRequested.emit)
        menu.exec(event.globalPos())


class GroupView(QWidget):
    manageRequested = Signal(str)  # group id

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.setObjectName("GroupView")
        self.group: GroupRecord | None = None
        self._tasks = TaskSet("group view")
        self.model = GroupHistoryModel(bridge, self)

        header = self._build_header()
        split = self._build_messages()
        self.transfers = TransfersPanel(bridge, self)
        self.messages.is_saved = self.transfers.saved
        self.messages.transferActionRequested.connect(self.transfers.run_action)

        bar = self._build_composer_bar()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(header)
        layout.addWidget(split, 1)
        layout.addWidget(self.transfers)
        layout.addWidget(self.notice)
        layout.addWidget(bar)
        self.notice.hide()

        self._wire()

    def _build_header(self) -> QFrame:
        """Title, member count, join requests, the members and manage buttons."""
        header = QFrame(self)
        header.setObjectName("ChatHeader")
        self.title = QLabel(header)
        self.title.setObjectName("ChatTitle")
        self.title.setFont(theme.scaled_font(self.font(), 1.15, QFont.Weight.DemiBold))
        self.subtitle = QLabel(header)
        self.subtitle.setObjectName("ChatSubtitle")
        self.members_button = QToolButton(header)
        self.members_button.setText("Members")
        self.members_button.setCheckable(True)
        self.members_button.setChecked(True)
        self.members_button.setAccessibleName("Show members")
        self.requests_button = QPushButton(header)
        self.requests_button.setProperty("primary", True)
        self.requests_button.hide()
        self.manage_button = QPushButton("Manage…", header)
        self.manage_button.setAccessibleName("Manage group")
        titles = QVBoxLayout()
        titles.setSpacing(0)
        titles.addWidget(self.title)
        titles.addWidget(self.subtitle)
        top = QHBoxLayout(header)
        top.setContentsMargins(16, 10, 12, 10)
        top.addLayout(titles, 1)
        top.addWidget(self.requests_button)
        top.addWidget(self.members_button)
        top.addWidget(self.manage_button)
        return header

    def _build_messages(self) -> QSplitter:
        """The messages beside the member panel."""
        self.messages = GroupMessageList(self.model, self)
        self.messages.setObjectName("GroupMessages")
        self.messages.setAccessibleName("Messages")
        self.messages.setModel(self.model)
        self.messages.setItemDelegate(GroupMessageDelegate(self.model, self.messages))
        self.messages.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.messages.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.messages.setUniformItemSizes(False)
        self.messages.setWordWrap(True)
        self.messages.setFrameShape(QFrame.Shape.NoFrame)
        self.member_list = MemberList(self.bridge, self)
        self.member_list.setMinimumWidth(180)
        split = QSplitter(Qt.Orientation.Horizontal, self)
        split.addWidget(self.messages)
        split.addWidget(self.member_list)
        split.setStretchFactor(0, 1)
        split.setSizes([600, 200])
        split.setChildrenCollapsible(False)
        return split

    def _build_composer_bar(self) -> QFrame:
        """The composer: attach, text, send."""
        bar = QFrame(self)
        bar.setObjectName("ComposerBar")
        self.composer = ComposerEdit(bar)
        self.composer.setPlaceholderText("Write to the group")
        self.attach_button = QToolButton(bar)
        self.attach_button.setIcon(theme.icon("paperclip"))
        self.attach_button.setIconSize(QSize(22, 22))
        self.attach_button.setToolTip("Share a file or image (or drop it here, or paste it)")
        self.attach_button.setAccessibleName("Attach a file")
        self.attach_button.setAutoRaise(True)
        self.send_button = QPushButton("Send", bar)
        self.send_button.setProperty("primary", True)
        self.send_button.setAccessibleName("Send")
        self.notice = QLabel(bar)
        self.notice.setObjectName("Hint")
        row = QHBoxLayout(bar)
        row.setContentsMargins(12, 8, 12, 8)
        row.addWidget(self.attach_button, 0, Qt.AlignmentFlag.AlignBottom)
        row.addWidget(self.composer, 1)
        row.addWidget(self.send_button)
        return bar

    def _wire(self) -> None:
        """What the widgets, model and bridge tell each other."""
        self.composer.submitted.connect(self.send)
        self.composer.imagePasted.connect(self._send_image)
        self.composer.filesDropped.connect(self.send_files)
        self.attach_button.clicked.connect(self._choose_files)
        self.transfers.errorShown.connect(self._show_notice)
        self.setAcceptDrops(True)
        self.send_button.clicked.connect(self.send)
        self.members_button.toggled.connect(self.member_list.setVisible)
        self.manage_button.clicked.connect(self._on_manage)
        self.requests_button.clicked.connect(self.manage_button.click)
        self.bridge.groupJoinRequested.connect(self._on_join_requested)
        self.model.rowsInserted.connect(self._scroll_if_at_bottom)
        self.model.modelReset.connect(self.messages.scrollToBottom)
        self.bridge.groupChanged.connect(self._on_group_changed)
        self.bridge.presenceChanged.connect(self._on_presence)

    def _on_manage(self) -> None:
        if self.group is not None:
            self.manageRequested.emit(self.group.id)

    @property
    def group_id(self) -> str | None:
        return self.group.id if self.group is not None else None

    def shutdown(self) -> None:
        self._tasks.close()
        self.transfers.shutdown()
        self.model.detach()
        for signal, slot in (
            (self.bridge.groupChanged, self._on_group_changed),
            (self.bridge.presenceChanged, self._on_presence),
            (self.bridge.groupJoinRequested, self._on_join_requested),
        ):
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError):
                pass

    async def show_group(self, group: GroupRecord, jump_to: bytes | None = None) -> None:
        """Show `group`: at its newest message, or at `jump_to` (outlined) if given."""
        self.group = group
        self._show_header()
        self.member_list.show_group(group)
        self.transfers.show_group(group.id)
        await self.model.show_group(group)
        self.messages.scrollToBottom()
        if jump_to is not None:
            await self.jump_to(jump_to)

    async def jump_to(self, msg_id: bytes) -> None:
        row = await self.model.load_until(msg_id)
        if row < 0:
            self._show_notice(
                "That message is too far back to show here."
                if self.model.has_older
                else "That message is no longer in this group."
            )
            return
        self.model.set_highlight(msg_id)
        self.messages.executeDelayedItemsLayout()
        self.messages.scrollTo(
            self.model.index(row, 0), QAbstractItemView.ScrollHint.PositionAtCenter
        )

    def _show_header(self) -> None:
        group = self.group
        if group is None:
            return
        online = sum(1 for m in group.members if m.is_me or self.bridge.is_online(m.contact_id))
        self.title.setText(group.name)
        self.subtitle.setText(f"{len(group.members)} members, {online} online")
        active = group.state == "active"
        writable = active and self.bridge.ready  # painted from the StartupView: not yet
        self.composer.setEnabled(writable)
        self.send_button.setEnabled(writable)
        self.attach_button.setEnabled(writable)
        if not active:
            self.composer.setPlaceholderText("You are no longer a member of this group")
        else:
            self.composer.setPlaceholderText(
                "Write to the group" if self.bridge.ready else STARTING_PLACEHOLDER
            )
        pending = len(self.bridge.join_requests(group.id)) if group.i_am_admin else 0
        self.requests_button.setText(f"{pending} asking to join" if pending else "")
        self.requests_button.setAccessibleName(self.requests_button.text())
        self.requests_button.setVisible(pending > 0)

    def service_ready(self, group: GroupRecord | None) -> None:
        """The service is up (the group list was read again): the open group's header,
        members and composer follow its fresh record."""
        if group is not None and group.id == self.group_id:
            self._on_group_changed(group)

    def _on_join_requested(self, group_id: str, _contact_id: str, _name: str) -> None:
        if group_id == self.group_id:
            self._show_header()

    def _on_group_changed(self, group: GroupRecord) -> None:
        if group.id == self.group_id:
            self.group = group
            self._show_header()
            self.member_list.show_group(group)

    def _on_presence(self, contact_id: str, _online: bool) -> None:
        if self.group is not None and any(m.contact_id == contact_id for m in self.group.members):
            self._show_header()
            self.member_list.refresh()

    def _scroll_if_at_bottom(self, _parent: Any, first: int, _last: int) -> None:
        bar = self.messages.verticalScrollBar()
        if first > 0 and bar.value() >= bar.maximum() - 80:
            self.messages.scrollToBottom()

    def focus_composer(self) -> None:
        self.composer.setFocus()

    def send(self) -> None:
        text = self.composer.toPlainText()
        if self.group is None or not text.strip():
            return
        self.composer.clear()
        self.notice.hide()
        self.model.set_highlight(None)  # a message reached from search: moved on from it
        group_id = self.group.id

        def failed(exc: BaseException) -> None:
            self.composer.setPlainText(text)
            self.notice.setText(str(exc))
            self.notice.show()

        self._tasks.spawn(self._send(group_id, text), on_error=failed)

    async def _send(self, group_id: str, text: str) -> None:
        await self.bridge.send_group_text(group_id, text)
        self.messages.scrollToBottom()

    # -- files ------------------------------------------------------------------------------

    def _show_notice(self, text: str) -> None:
        self.notice.setText(text)
        self.notice.show()

    def _choose_files(self) -> None:
        if self.group is None:
            return
        paths, _ = QFileDialog.getOpenFileNames(self, "Share files", str(Path.home()))
        self.send_files([Path(p) for p in paths])

    def send_files(self, paths: list[Path]) -> None:
        if self.group is None or self.group.state != "active":
            return
        group_id = self.group.id
        self.notice.hide()

        async def send(path: Path) -> None:
            await self.bridge.send_group_file(group_id, path)
            self.messages.scrollToBottom()

        def failed(exc: BaseException) -> None:
            self._show_notice(f"Not shared: {exc}")

        for path in paths:
            self._tasks.spawn(send(path), on_error=failed)

    def _send_image(self, image: object) -> None:
        """A pasted image: written as a PNG to a private temporary folder, then shared."""
        path = pasted_image_file(image) if self.group is not None else None
        if path is not None:
            self.send_files([path])

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self.group is not None and offers_files(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        take_files(event.mimeData(), self.send_files, self._send_image)
        event.acceptProposedAction()

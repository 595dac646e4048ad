"""The Groups section of the sidebar: one row per group with its unread count."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRectF, Qt, Signal
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListView,
    QStyleOptionViewItem,
    QWidget,
)

from ui import theme
from ui.bridge import Bridge
from ui.models.groups import GroupItem, GroupListModel
from ui.views.conversation_list import (
    AVATAR,
    LINE_GAP,
    PAD,
    ConversationDelegate,
    list_time,
)
from ui.views.fitted_list import FittedListView
from ui.views.paint import paint_avatar, paint_badge

VISIBLE_GROUPS = 3  # rows of the sidebar's group section before it scrolls

Index = QModelIndex | QPersistentModelIndex


class GroupDelegate(ConversationDelegate):
    """A group row drawn like a conversation row (the same size, avatar, fonts, selection
    and time), so the sidebar's two sections read as one list."""

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        item: GroupItem | None = index.data(GroupListModel.ItemRole)
        if item is None:
            return
        t = theme.current()
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.TextAntialiasing)
        rect = QRectF(option.rect)
        self._paint_background(painter, option, rect)
        avatar = QRectF(rect.left() + PAD + 6, rect.center().y() - AVATAR / 2, AVATAR, AVATAR)
        paint_avatar(painter, avatar, "# " + item.group.name, item.id, option.font)

        lines = self._lines(option.font, rect, avatar, bool(item.unread))
        name_font, small, preview_font = lines.name_font, lines.small, lines.preview_font
        fm_name, fm_preview = lines.fm_name, lines.fm_preview
        left, right, top = lines.left, lines.right, lines.top
        line1_h, line2_h = lines.line1_h, lines.line2_h

        # Line 1: name, time of the newest message.
        when = list_time(item.activity_ms) if item.activity_ms else ""
        time_w = self._paint_time(painter, lines, when, bool(item.unread))
        name_room = max(10.0, right - time_w - 8 - left)
        painter.setFont(name_font)
        painter.setPen(t.color("text"))
        painter.drawText(
            QRectF(left, top, name_room, line1_h),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            fm_name.elidedText(item.group.name, Qt.TextElideMode.ElideRight, name_room),
        )

        # Line 2: preview, unread badge.
        y2 = top + line1_h + LINE_GAP
        badge_w = 0.0
        if item.unread:
            badge_w = paint_badge(painter, right, y2 + line2_h / 2, item.unread, small) + 8
        room = max(10.0, right - badge_w - left)
        painter.setFont(preview_font)
        painter.setPen(t.color("text" if item.unread else "text_secondary"))
        painter.drawText(
            QRectF(left, y2, room, line2_h),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            fm_preview.elidedText(item.preview(), Qt.TextElideMode.ElideRight, room),
        )
        painter.restore()


class GroupListView(FittedListView):
    """Emits `groupActivated(group_id)` when a row becomes current (click or keys)."""

    groupActivated = Signal(str)

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        # Up to three groups shown whole (the conversations give way first); more scroll.
        super().__init__(parent, min_rows=VISIBLE_GROUPS, max_rows=VISIBLE_GROUPS)
        self.setObjectName("GroupList")
        self.setAccessibleName("Groups")
        self.setItemDelegate(GroupDelegate(bridge, self))
        self.setUniformItemSizes(True)
        self.setMouseTracking(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFrameShape(QListView.Shape.NoFrame)
        self.viewport().setAttribute(Qt.WidgetAttribute.WA_Hover)

    def setModel(self, model: object) -> None:
        super().setModel(model)  # type: ignore[arg-type]
        self.selectionModel().currentChanged.connect(self._on_current_changed)
        self.clicked.connect(self._on_current_changed)

    def _on_current_changed(self, current: QModelIndex, *_rest: object) -> None:
        if current.isValid():
            group_id = current.data(GroupListModel.GroupIdRole)
            if group_id:
                self.groupActivated.emit(group_id)

    def select_group(self, group_id: str | None) -> None:
        model = self.model()
        for row in range(model.rowCount()):
            index = model.index(row, 0)
            if index.data(GroupListModel.GroupIdRole) == group_id:
                self.selectionModel().blockSignals(True)
                self.setCurrentIndex(index)
                self.selectionModel().blockSignals(False)
                return
        self.clearSelection()

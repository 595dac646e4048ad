"""The Groups section of the sidebar: one row per group with its unread count."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from ui import theme
from ui.bridge import Bridge
from ui.models.groups import GroupItem, GroupListModel
from ui.views.paint import paint_avatar, paint_badge

Index = QModelIndex | QPersistentModelIndex
ROW_HEIGHT = 60


class GroupDelegate(QStyledItemDelegate):
    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        return QSize(option.rect.width(), ROW_HEIGHT)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        item: GroupItem | None = index.data(GroupListModel.ItemRole)
        if item is None:
            return
        t = theme.current()
        rect = option.rect
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(rect, t.color("selected"))
        elif option.state & QStyle.StateFlag.State_MouseOver:
            painter.fillRect(rect, t.color("hover"))
        avatar = QRectF(rect.left() + 14, rect.top() + 10, 40, 40)
        paint_avatar(painter, avatar, "# " + item.group.name, item.id)
        base = QFont(option.font)
        name_font = QFont(base)
        name_font.setWeight(QFont.Weight.DemiBold)
        small = theme.scaled_font(base, 0.9)
        left = avatar.right() + 12
        width = rect.right() - left - 12
        online = item.online_count(self.bridge)
        count = f"{online}/{len(item.group.members)}"
        painter.setFont(small)
        painter.setPen(QColor(t.text_muted))
        count_w = QFontMetrics(small).horizontalAdvance(count)
        painter.drawText(
            QRectF(rect.right() - 12 - count_w, rect.top() + 12, count_w, 20),
            Qt.AlignmentFlag.AlignRight,
            count,
        )
        painter.setFont(name_font)
        painter.setPen(QColor(t.text))
        name = QFontMetrics(name_font).elidedText(
            item.group.name, Qt.TextElideMode.ElideRight, int(width - count_w - 8)
        )
        painter.drawText(QRectF(left, rect.top() + 10, width, 22), Qt.AlignmentFlag.AlignLeft, name)
        badge = 0.0
        if item.unread:
            badge = paint_badge(painter, rect.right() - 12, rect.top() + 41, item.unread, small)
        painter.setFont(small)
        painter.setPen(QColor(t.text_secondary))
        preview = QFontMetrics(small).elidedText(
            item.preview(), Qt.TextElideMode.ElideRight, int(width - badge - 8)
        )
        painter.drawText(
            QRectF(left, rect.top() + 32, width - badge - 8, 20),
            Qt.AlignmentFlag.AlignLeft,
            preview,
        )
        painter.restore()


class GroupListView(QListView):
    """Emits `groupActivated(group_id)` when a row becomes current (click or keys)."""

    groupActivated = Signal(str)

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
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

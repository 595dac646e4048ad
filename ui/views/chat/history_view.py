"""The 1:1 history: a QListView over a paging HistoryModel that keeps its place while
pages load, fetches at its edges, and turns clicks on links and files into signals."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import (
    QEvent,
    QIdentityProxyModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QPointF,
    QRectF,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import (
    QContextMenuEvent,
    QDesktopServices,
    QGuiApplication,
    QKeyEvent,
    QMouseEvent,
    QResizeEvent,
)
from PySide6.QtWidgets import QAbstractItemView, QFrame, QListView, QMenu, QWidget

from messenger import MessageRecord, TransferRecord
from ui import theme
from ui.models.history import HistoryModel, local_time
from ui.views.chat.attachments import FileClick, add_file_actions, bubble_actions
from ui.views.chat.bottom_anchor import fit_to_bottom
from ui.views.chat.bubbles import BubbleDelegate

Index = QModelIndex | QPersistentModelIndex


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
        self._file_click = FileClick()
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
        self.delegate.history = model
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

    def updateGeometries(self) -> None:
        super().updateGeometries()
        fit_to_bottom(self)  # a short history sits by the composer

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
        left = event.button() == Qt.MouseButton.LeftButton
        pos = event.position().toPoint()
        if left:
            self._press_href = self._href_at(pos)
        self._file_click.press(self.transfer_at(pos) if left else None)
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        href = None
        transfer = None
        if event.button() == Qt.MouseButton.LeftButton:
            pos = event.position().toPoint()
            href = self._href_at(pos)
            transfer = self.transfer_at(pos)
        super().mouseReleaseEvent(event)
        # A click on a file's bubble does what its hint says (Download, Pause, Open, ...).
        clicked = self._file_click.release(transfer)
        if href and href == self._press_href:
            self.linkActivated.emit(href)
            self.open_url(QUrl(href))
        elif clicked is not None:
            self.transferActionRequested.emit(*clicked)
        self._press_href = None

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
            saved = self.is_saved(transfer.id)
            add_file_actions(menu, transfer, saved, self.transferActionRequested.emit)
            menu.addSeparator()
        info = menu.addAction(f"{'Sent' if message.outgoing else 'Received'} {_full_time(message)}")
        info.setEnabled(False)
        menu.exec(event.globalPos())

    def transfer_actions(self, t: TransferRecord) -> list[str]:
        """The file actions a bubble's context menu offers (the panel's buttons, and View)."""
        return bubble_actions(t, self.is_saved(t.id))

    def keyPressEvent(self, event: QKeyEvent) -> None:
        sb = self.verticalScrollBar()
        page = self.viewport().height() - 40
        ctrl = bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier)
        # Ctrl+Home/End: the ends of what is loaded; Page Up/Down with or without Ctrl.
        scrolls: dict[tuple[int, bool], Callable[[], int]] = {
            (Qt.Key.Key_Home, True): sb.minimum,
            (Qt.Key.Key_End, True): sb.maximum,
            (Qt.Key.Key_PageUp, ctrl): lambda: sb.value() - page,
            (Qt.Key.Key_PageDown, ctrl): lambda: sb.value() + page,
        }
        target = scrolls.get((event.key(), ctrl))
        if target is None:
            super().keyPressEvent(event)
        else:
            sb.setValue(target())


def _full_time(m: MessageRecord) -> str:
    return local_time(m.sent_at_ms).strftime("%Y-%m-%d %H:%M:%S")

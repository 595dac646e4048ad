"""The right pane: one conversation.

Header (avatar, name, verified mark, presence, search and safety-number buttons), a search
bar (Ctrl+F), the history (a QListView over a paging HistoryModel, drawn as bubbles by a
QTextDocument-based delegate with clickable links and day separators), a typing
indicator and the composer (Enter sends, Shift+Enter is a new line, emoji picker).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from PySide6.QtCore import (
    QEvent,
    QObject,
    QSize,
    QTimer,
    Signal,
)
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QKeyEvent, QKeySequence
from PySide6.QtWidgets import QAbstractItemView, QFileDialog, QToolButton, QVBoxLayout, QWidget

from messenger import FileError, MessageRecord, MessageTooLong, ServiceError
from ui import theme
from ui.bridge import Bridge
from ui.models.conversations import ConversationItem, ConversationListModel
from ui.models.history import HistoryModel
from ui.tasks import TaskSet
from ui.views.chat.attachments import offers_files, pasted_image_file, take_files
from ui.views.chat.composer import STARTING_PLACEHOLDER, Composer
from ui.views.chat.header import ChatHeader
from ui.views.chat.history_view import HistoryView
from ui.views.chat.key_changed_banner import KeyChangedBanner
from ui.views.chat.search_bar import SearchBar
from ui.views.chat.typing_indicator import TypingIndicator
from ui.views.transfers import TransfersPanel


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
        self.key_banner = KeyChangedBanner(self)
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

        self._lay_out()
        self._wire()

    def _lay_out(self) -> None:
        """Header, search bar, history, typing, files, composer; and the tab order."""
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.header)
        layout.addWidget(self.search_bar)
        layout.addWidget(self.key_banner)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.typing)
        layout.addWidget(self.transfers)
        layout.addWidget(self.composer)
        self.setTabOrder(self.header.search_button, self.header.safety_button)
        self.setTabOrder(self.header.safety_button, self.view)
        self.setTabOrder(self.view, self.composer.emoji_button)
        self.setTabOrder(self.composer.emoji_button, self.composer.edit)
        self.setTabOrder(self.composer.edit, self.composer.send_button)

    def _wire(self) -> None:
        """What the pieces, the conversation list and the theme tell this pane."""
        self.composer.set_available(False, "Choose a conversation to start chatting")
        self.composer.sendRequested.connect(self._send)
        self.composer.attachRequested.connect(self._choose_files)
        self.composer.edit.imagePasted.connect(self._send_image)
        self.composer.edit.filesDropped.connect(self.send_files)
        self.composer.typingChanged.connect(self._on_own_typing)
        self.composer.edit.escapePressed.connect(self.close_search)
        self.header.searchClicked.connect(self.open_search)
        self.header.safetyClicked.connect(self._on_safety)
        self.key_banner.verifyRequested.connect(self._on_safety)
        self.key_banner.acceptRequested.connect(self._accept_new_key)
        self.search_bar.queryChanged.connect(self._run_search)
        self.search_bar.nextRequested.connect(lambda: self._step_search(-1))
        self.search_bar.previousRequested.connect(lambda: self._step_search(1))
        self.search_bar.closed.connect(self.close_search)
        self.view.atBottomChanged.connect(lambda _b: self._update_jump_button())
        self.jump_button.clicked.connect(self.jump_to_latest)
        self.view.installEventFilter(self)
        self.conversations.typingChanged.connect(self._on_typing_changed)
        self.conversations.contactUpdated.connect(self._on_contact_updated)
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
        self._show_key_state(item)
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
        self.key_banner.hide()
        self.composer.set_available(False, "Choose a conversation to start chatting")

    def _show_key_state(self, item: ConversationItem) -> None:
        """A changed safety number holds the conversation: the banner, and no composer.
        While the service is still starting the composer waits too, saying so."""
        if not self.bridge.ready:
            self.key_banner.hide()
            self.composer.set_available(False, STARTING_PLACEHOLDER)
            return
        if not item.contact.key_changed:
            self.key_banner.hide()
            self.composer.set_available(True, self._placeholder(item))
            return
        self.composer.set_available(
            False, f"Verify or accept {item.name}'s new safety number to send messages"
        )
        self.key_banner.show_for(item.name, 0)
        contact_id = item.id

        async def count_waiting() -> None:
            waiting = await self.bridge.waiting_for_replaced(contact_id)
            current = self.item()
            if current is not None and current.id == contact_id and current.contact.key_changed:
                self.key_banner.show_for(current.name, waiting)

        self._tasks.spawn(count_waiting())

    def _accept_new_key(self, send_queued: bool) -> None:
        contact_id = self.contact_id
        if contact_id is None:
            return

        async def accept() -> None:
            try:
                record = await self.bridge.accept_new_key(contact_id, send_queued=send_queued)
            except ServiceError as exc:
                if self.contact_id == contact_id:
                    self.composer.show_error(str(exc))
                return
            if send_queued and record.replaces is not None:
                # Our waiting messages moved here from the earlier contact's conversation.
                await self.conversations.refresh({contact_id, record.replaces})
                if self.contact_id == contact_id and self.history is not None:
                    await self.history.spawn(self.history.load_latest())

        self._tasks.spawn(accept())

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

    def service_ready(self) -> None:
        """The service is up (the list was read again): the open conversation's header and
        composer follow its fresh row."""
        item = self.item()
        if item is not None:
            self.header.show_item(item, self.conversations.is_typing(item.id))
            self._show_key_state(item)

    def _on_contact_updated(self, item: ConversationItem) -> None:
        if not self.bridge.ready:
            return  # service_ready() shows the fresh row
        if item.id == self.contact_id:
            self.header.show_item(item, self.conversations.is_typing(item.id))
            if item.contact.key_changed and self.key_banner.isVisible():
                # Seen or renamed: the same hold; the user's choice in the banner stays.
                self.key_banner.show_for(item.name, self.key_banner.waiting, keep_choice=True)
            elif item.contact.key_changed or self.key_banner.isVisible():
                self._show_key_state(item)  # held now, or the hold was lifted
            else:
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
        path = pasted_image_file(image) if self.contact_id is not None else None
        if path is not None:
            self.send_files([path])

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self.contact_id is not None and offers_files(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        take_files(event.mimeData(), self.send_files, self._send_image)
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


__all__ = ["ChatView"]

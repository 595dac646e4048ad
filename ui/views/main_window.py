"""The main window: conversations on the left, the open conversation on the right.

Keyboard: Ctrl+N add contact, Ctrl+K quick switcher, Ctrl+F search (in the conversation,
or everywhere when none is open), Ctrl+Shift+F search everywhere, Ctrl+, settings,
Ctrl+Q quit. Esc closes dialogs and bars.
"""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from messenger import GroupMessageRecord, MessageRecord
from ui import theme
from ui.bridge import Bridge
from ui.models.conversations import ConversationFilterModel, ConversationListModel
from ui.models.groups import GroupListModel
from ui.tasks import TaskSet
from ui.views.conversation_list import ConversationListView
from ui.views.group_list import GroupListView
from ui.views.paint import Avatar
from ui.views.tor_status import TorStatusBar

if TYPE_CHECKING:
    from collections.abc import Callable

    from ui.views.chat_view import ChatView
    from ui.views.group_view import GroupView

log = logging.getLogger("chinwag.ui")

MARK_READ_DELAY_MS = 250


class EmptyState(QWidget):
    """What the right pane shows when no conversation is open."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("EmptyState")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        self.logo = QLabel(self)
        self.logo.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.title = QLabel("Chinwag", self)
        self.title.setObjectName("EmptyTitle")
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.title.setFont(theme.scaled_font(self.font(), 1.6, self.font().Weight.DemiBold))
        self.text = QLabel(self)
        self.text.setObjectName("EmptyText")
        self.text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text.setWordWrap(True)
        self.add_button = QPushButton("Add a contact", self)
        self.add_button.setProperty("primary", True)
        self.add_button.setAccessibleName("Add a contact")
        self.code_button = QPushButton("Show my code", self)
        self.code_button.setAccessibleName("Show my code")
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.code_button)
        buttons.addWidget(self.add_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addStretch(3)
        layout.addWidget(self.logo)
        layout.addSpacing(12)
        layout.addWidget(self.title)
        layout.addSpacing(4)
        layout.addWidget(self.text)
        layout.addSpacing(18)
        layout.addLayout(buttons)
        layout.addStretch(4)
        self.set_has_contacts(False)
        self._logo()

    def _logo(self) -> None:
        dpr = self.devicePixelRatioF() or 1.0
        self.logo.setPixmap(theme.app_icon().pixmap(QSize(88, 88), dpr))

    def set_has_contacts(self, has: bool) -> None:
        if has:
            self.text.setText(
                "Choose a conversation on the left, or press Ctrl+K to jump to one.\n"
                "Messages are end-to-end encrypted, from your computer to theirs."
            )
        else:
            self.text.setText(
                "No contacts yet. Show your code to someone nearby, or add theirs.\n"
                "No account, no phone number, no server: just your network."
            )


class MainWindow(QMainWindow):
    quitRequested = Signal()
    unreadChanged = Signal(int)

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.setObjectName("MainWindow")
        self.setWindowTitle("Chinwag")
        self.setWindowIcon(theme.app_icon())
        self.setMinimumSize(QSize(720, 480))
        self._tasks = TaskSet("main window")
        self._closing = False
        self._dialogs: list[QDialog] = []
        self._action_icons: dict[QAction, str] = {}
        self._unmarked = False  # arrivals read on screen, not yet marked in storage

        self.conversations = ConversationListModel(bridge, self)
        self.conversations.read_now = self._reading
        self.filtered = ConversationFilterModel(self)
        self.filtered.setSourceModel(self.conversations)
        self.groups = GroupListModel(bridge, self)
        self.groups.read_now = self._reading_group

        side = self._build_sidebar()
        self._build_group_section(side)
        self._build_panes()
        self._build_actions()
        self._wire()
        self._mark_timer = QTimer(self)
        self._mark_timer.setSingleShot(True)
        self._mark_timer.setInterval(MARK_READ_DELAY_MS)
        self._mark_timer.timeout.connect(self._mark_read_now)
        self.notifier: Any = None  # set by the app: ui.tray.Tray
        manager = theme.manager()
        if manager is not None:
            manager.changed.connect(self.retheme)
        self.retheme()
        self._update_empty()
        self._show_starting(not bridge.ready)

    def _build_sidebar(self) -> QVBoxLayout:
        """The left pane: who I am, the add and menu buttons, the filter, the conversations."""
        self.sidebar = QFrame(self)
        self.sidebar.setObjectName("Sidebar")
        self.me = Avatar(32, self.sidebar)
        self.me.set_contact(self.bridge.display_name, self.bridge.my_id)
        self.me.setToolTip(f"{self.bridge.display_name} (you)")
        self.title = QLabel("Chats", self.sidebar)
        self.title.setObjectName("SidebarTitle")
        self.title.setFont(theme.scaled_font(self.font(), 1.25, self.font().Weight.DemiBold))
        self.add_button = QToolButton(self.sidebar)
        self.add_button.setToolTip("Add a contact (Ctrl+N)")
        self.add_button.setAccessibleName("Add a contact")
        self.menu_button = QToolButton(self.sidebar)
        self.menu_button.setToolTip("Menu")
        self.menu_button.setAccessibleName("Menu")
        self.menu_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        for button in (self.add_button, self.menu_button):
            button.setIconSize(QSize(20, 20))
            button.setFixedSize(36, 36)
            button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.filter = QLineEdit(self.sidebar)
        self.filter.setObjectName("FilterBox")
        self.filter.setPlaceholderText("Search")
        self.filter.setAccessibleName("Filter conversations")
        self.filter.setClearButtonEnabled(True)
        self._filter_icon = self.filter.addAction(
            theme.icon("search"), QLineEdit.ActionPosition.LeadingPosition
        )
        self.list = ConversationListView(self.sidebar)
        self.list.setModel(self.filtered)
        self.empty_list = QLabel(self.sidebar)
        self.empty_list.setObjectName("EmptyList")
        self.empty_list.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_list.setWordWrap(True)
        self.empty_list.setMinimumHeight(120)
        # With a filter that names no conversation, a link searches the messages instead
        # (as Signal's one search box finds both); the filter's own text is escaped.
        self.empty_list.setTextFormat(Qt.TextFormat.RichText)
        self.empty_list.linkActivated.connect(lambda _href: self._search_filter_text())

        header = QFrame(self.sidebar)
        header.setObjectName("SidebarHeader")
        top = QHBoxLayout(header)
        top.setContentsMargins(16, 12, 10, 4)
        top.setSpacing(10)
        top.addWidget(self.me)
        top.addWidget(self.title, 1)
        top.addWidget(self.add_button)
        top.addWidget(self.menu_button)
        side = QVBoxLayout(self.sidebar)
        side.setContentsMargins(0, 0, 0, 0)
        side.setSpacing(0)
        side.addWidget(header)
        filter_row = QHBoxLayout()
        filter_row.setContentsMargins(14, 8, 14, 10)
        filter_row.addWidget(self.filter)
        side.addLayout(filter_row)
        side.addWidget(self.list)  # as tall as its rows: the groups follow right under
        side.addWidget(self.empty_list)
        return side

    def _build_group_section(self, side: QVBoxLayout) -> None:
        """Groups: a section under the conversations."""
        # Groups (ui/views/group_list.py): a section under the conversations.
        self.groups_title = QLabel("Groups", self.sidebar)
        self.groups_title.setObjectName("SectionTitle")
        self.new_group_button = QToolButton(self.sidebar)
        self.new_group_button.setText("+")
        self.new_group_button.setToolTip("New group (Ctrl+G)")
        self.new_group_button.setAccessibleName("New group")
        groups_row = QHBoxLayout()
        groups_row.setContentsMargins(16, 6, 10, 2)
        groups_row.addWidget(self.groups_title, 1)
        groups_row.addWidget(self.new_group_button)
        side.addLayout(groups_row)
        self.group_list = GroupListView(self.bridge, self.sidebar)
        self.group_list.setModel(self.groups)
        side.addWidget(self.group_list)
        side.addStretch(1)  # the spare room goes below both sections
        # Tor at the foot of the sidebar: bootstrap progress, then reachable/off/...
        self.tor_status = TorStatusBar(self.sidebar)
        self.tor_status.set_unavailable(self.bridge.tor_unavailable())
        self.tor_status.set_status(self.bridge.tor_status)
        side.addWidget(self.tor_status)

    def _build_panes(self) -> None:
        """The conversation, group and empty panes beside the sidebar. The conversation
        and group panes (and their modules) are built on first use or right after the
        first paint (build_panes): the first paint shows the empty pane (issue 15)."""
        self._chat: ChatView | None = None
        self._group_view: GroupView | None = None
        # What the user asked for while the service starts (see _when_ready).
        self._after_start: Callable[[], None] | None = None
        self.empty = EmptyState(self)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.empty)

        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.sidebar)
        splitter.addWidget(self.stack)
        splitter.setHandleWidth(1)
        splitter.setChildrenCollapsible(False)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([330, 770])
        self.sidebar.setMinimumWidth(260)
        self.sidebar.setMaximumWidth(480)
        self.splitter = splitter
        # "Disk full" across the top while arriving messages cannot be stored (they wait
        # at their senders); hidden again once there is room (service DiskSpace events).
        self.disk_banner = QFrame(self)
        self.disk_banner.setObjectName("Banner")
        banner_layout = QHBoxLayout(self.disk_banner)
        banner_layout.setContentsMargins(12, 6, 12, 6)
        self.disk_banner_text = QLabel(self.disk_banner)
        self.disk_banner_text.setWordWrap(True)
        banner_layout.addWidget(self.disk_banner_text)
        self.disk_banner.hide()
        central = QWidget(self)
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.disk_banner)
        column.addWidget(splitter, 1)
        self.setCentralWidget(central)

    def _build_actions(self) -> None:
        """The menu's actions and their shortcuts."""
        self.add_action = self._action("Add contact…", "user-plus", "Ctrl+N", self.add_contact)
        self.code_action = self._action("My code…", "qr-code", "Ctrl+Shift+C", self.show_my_code)
        self.switch_action = self._action(
            "Go to conversation…", "message", "Ctrl+K", self.show_quick_switcher
        )
        self.search_action = self._action(
            "Find…", "search", QKeySequence.StandardKey.Find, self.find_text
        )
        self.search_all_action = self._action(
            "Search all messages…", "message-search", "Ctrl+Shift+F", self.show_search
        )
        self.new_group_action = self._action("New group…", "user-plus", "Ctrl+G", self.new_group)
        self.settings_action = self._action(
            "Settings…", "settings", QKeySequence.StandardKey.Preferences, self.show_settings
        )
        if self.settings_action.shortcut().isEmpty():
            self.settings_action.setShortcut(QKeySequence("Ctrl+,"))
        self.quit_action = self._action("Quit", "log-out", QKeySequence.StandardKey.Quit, self.quit)
        if self.quit_action.shortcut().isEmpty():
            self.quit_action.setShortcut(QKeySequence("Ctrl+Q"))
        menu = QMenu(self)
        menu.addAction(self.add_action)
        menu.addAction(self.code_action)
        menu.addAction(self.new_group_action)
        menu.addSeparator()
        menu.addAction(self.switch_action)
        menu.addAction(self.search_all_action)
        menu.addSeparator()
        menu.addAction(self.settings_action)
        menu.addSeparator()
        menu.addAction(self.quit_action)
        self.menu = menu
        self.menu_button.setMenu(menu)
        self.add_button.clicked.connect(self.add_contact)
        self.empty.add_button.clicked.connect(self.add_contact)
        self.empty.code_button.clicked.connect(self.show_my_code)
        QShortcut(QKeySequence("Ctrl+L"), self).activated.connect(self.focus_filter)

        self.setTabOrder(self.filter, self.list)

    def _wire(self) -> None:
        """What the widgets, models and bridge tell each other."""
        self.filter.textChanged.connect(self._on_filter)
        self.filter.returnPressed.connect(self._open_first_match)
        self.filter.installEventFilter(self)
        self.list.conversationActivated.connect(self.open_conversation)
        self.list.conversationEntered.connect(self._open_and_focus)
        self.list.conversationClicked.connect(lambda _cid: self.chat.focus_composer())
        self.conversations.unreadTotalChanged.connect(self._on_unread)
        self.conversations.rowsInserted.connect(self._update_empty)
        self.conversations.modelReset.connect(self._update_empty)
        self.bridge.messageAdded.connect(self._on_message_added)
        self.bridge.settingChanged.connect(self._on_setting_changed)
        self.group_list.groupActivated.connect(self.open_group)
        self.new_group_button.clicked.connect(self.new_group)
        self.groups.unreadTotalChanged.connect(lambda _n: self._on_unread(0))
        self.bridge.groupMessageAdded.connect(self._on_group_message)
        self.bridge.groupDeleted.connect(self._on_group_deleted)
        self.bridge.diskSpaceChanged.connect(self._on_disk_space)
        self.bridge.torStatusChanged.connect(self.tor_status.set_status)
        self.bridge.serviceReady.connect(self._on_service_ready)
        self.tor_status.clicked.connect(lambda: self.show_settings("Network"))

    @property
    def chat(self) -> ChatView:
        """The conversation pane, built on first use."""
        if self._chat is None:
            from ui.views.chat_view import ChatView

            chat = ChatView(self.bridge, self.conversations, self)
            self.stack.addWidget(chat)
            chat.safetyNumberRequested.connect(self.show_safety_number)
            self.setTabOrder(self.list, chat.header.search_button)
            self._chat = chat
        return self._chat

    @property
    def group_view(self) -> GroupView:
        """The group pane, built on first use."""
        if self._group_view is None:
            from ui.views.group_view import GroupView

            view = GroupView(self.bridge, self)
            self.stack.addWidget(view)
            view.manageRequested.connect(self.manage_group)
            self._group_view = view
        return self._group_view

    def build_panes(self) -> None:
        """Build the conversation and group panes now (the app calls it after the first
        paint, so the first click does not wait for them)."""
        if not self._closing:
            _ = self.chat, self.group_view

    def _on_disk_space(self, full: bool, message: str) -> None:
        if full:
            self.disk_banner_text.setText(
                f"Disk full: {message}. Messages sent to you wait with their senders."
            )
        self.disk_banner.setVisible(full)

    def _action(self, text: str, icon: str, shortcut: Any, slot: Any) -> QAction:
        action = QAction(text, self)
        action.setIconVisibleInMenu(True)
        self._action_icons[action] = icon
        action.setShortcut(QKeySequence(shortcut))
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.triggered.connect(lambda _checked=False: slot())
        self.addAction(action)
        return action

    def _on_setting_changed(self, key: str, value: object) -> None:
        if key == "theme":
            manager = theme.manager()
            if manager is not None:
                manager.set_mode(str(value))
        elif key == "display_name":
            self.me.set_contact(self.bridge.display_name, self.bridge.my_id)
            self.me.setToolTip(f"{self.bridge.display_name} (you)")

    def retheme(self, *_args: object) -> None:
        self.add_button.setIcon(theme.icon("edit"))
        self.menu_button.setIcon(theme.icon("menu"))
        self._filter_icon.setIcon(theme.icon("search"))
        for action, name in self._action_icons.items():
            action.setIcon(theme.icon(name))
        self.list.viewport().update()

    # -- loading and shutting down ----------------------------------------------------------

    async def load(self) -> None:
        """Fill the lists. While the service starts (bridge not ready) they come from the
        StartupView."""
        await self.conversations.load()
        await self.groups.load()
        self._update_empty()
        self.list.setFocus()
        self._on_unread(0)

    # What needs the running service (its dialogs ask it synchronously), off while starting.
    def _starting_actions(self) -> list[Any]:
        return [
            self.add_action,
            self.code_action,
            self.new_group_action,
            self.settings_action,
            self.add_button,
            self.new_group_button,
            self.empty.add_button,
            self.empty.code_button,
        ]

    def _show_starting(self, starting: bool) -> None:
        """The "starting" state: Tor's line says so, and what needs the service is off."""
        for action in self._starting_actions():
            action.setEnabled(not starting)
        if starting:
            self.tor_status.label.setText("Starting…")
            self.tor_status.setAccessibleName("Starting")
            self.tor_status.setToolTip("Chinwag is starting: connecting to your contacts")

    def _on_service_ready(self) -> None:
        self._tasks.spawn(self._service_ready())

    async def _service_ready(self) -> None:
        """Everything read again from the running service: who is online, what arrived
        since the first paint, the groups; then what waited is enabled."""
        self.tor_status.set_unavailable(self.bridge.tor_unavailable())
        self.tor_status.set_status(self.bridge.tor_status)
        self._show_starting(False)
        await self.conversations.reload()
        if self._chat is not None:
            self._chat.service_ready()
        await self.groups.load()
        if self._group_view is not None and self._group_view.group_id is not None:
            item = self.groups.item(self._group_view.group_id)
            self._group_view.service_ready(item.group if item is not None else None)
        self._update_empty()
        self._on_unread(0)

    def shutdown(self) -> None:
        """Stop every task and timer; the window can no longer talk to the service."""
        self._closing = True
        self._mark_timer.stop()
        self._tasks.close()
        if self._chat is not None:
            self._chat.shutdown()
        self.conversations.detach()
        if self._group_view is not None:
            self._group_view.shutdown()
        self.groups.detach()
        for signal, slot in (
            (self.bridge.messageAdded, self._on_message_added),
            (self.bridge.settingChanged, self._on_setting_changed),
            (self.bridge.groupMessageAdded, self._on_group_message),
            (self.bridge.groupDeleted, self._on_group_deleted),
            (self.bridge.torStatusChanged, self.tor_status.set_status),
        ):
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError):
                pass
        for dialog in list(self._dialogs):
            dialog.close()

    def quit(self) -> None:
        self.quitRequested.emit()

    def closeEvent(self, event: QCloseEvent) -> None:
        # Closing the window quits (there is no hidden background mode).
        self.quitRequested.emit()
        event.accept()

    # -- conversations ----------------------------------------------------------------------

    def _update_empty(self, *_args: object) -> None:
        has = self.conversations.rowCount() > 0
        shown = self.filtered.rowCount() > 0
        self.empty.set_has_contacts(has)
        self.list.setVisible(shown)
        self.empty_list.setVisible(not shown)
        if not has:
            self.empty_list.setText("No conversations yet.<br>Press Ctrl+N to add a contact.")
        else:
            text = html.escape(self.filter.text().strip())
            self.empty_list.setText(
                f"No conversation is named “{text}”.<br><br>"
                f'<a href="search">Search messages for “{text}”</a> (Enter)'
            )

    def _on_filter(self, text: str) -> None:
        self.filtered.set_filter(text)
        self._update_empty()
        self.list.select_contact(self._chat.contact_id if self._chat is not None else None)

    def _open_first_match(self) -> None:
        if self.filtered.rowCount():
            contact_id = self.filtered.index(0, 0).data(ConversationListModel.ContactIdRole)
            self._open_and_focus(contact_id)
        elif self.filter.text().strip() and self.conversations.rowCount():
            self._search_filter_text()

    def _search_filter_text(self) -> None:
        """The filter named no conversation: search every message for its text."""
        self.show_search(self.filter.text().strip())

    def focus_filter(self) -> None:
        self.filter.setFocus()
        self.filter.selectAll()

    def eventFilter(self, obj: Any, event: QEvent) -> bool:
        if obj is self.filter and event.type() == QEvent.Type.KeyPress:
            key = event.key()  # type: ignore[attr-defined]
            if key == Qt.Key.Key_Down:
                self.list.setFocus()
                if not self.list.currentIndex().isValid() and self.filtered.rowCount():
                    self.list.setCurrentIndex(self.filtered.index(0, 0))
                return True
            if key == Qt.Key.Key_Escape and self.filter.text():
                self.filter.clear()
                return True
        return super().eventFilter(obj, event)

    def open_conversation(self, contact_id: str, jump_to: MessageRecord | None = None) -> None:
        if contact_id.startswith(GROUP_PREFIX):  # a group's notification was clicked
            self.open_group(contact_id.removeprefix(GROUP_PREFIX))
            return
        if self._closing or self.conversations.item(contact_id) is None:
            return
        self.chat.show_conversation(contact_id, jump_to)
        self.stack.setCurrentWidget(self.chat)
        self.list.select_contact(contact_id)
        self.group_list.select_group(None)
        item = self.conversations.item(contact_id)
        if item is not None:
            self.setWindowTitle(self._title())
        self.mark_read_soon(immediate=True)

    def _open_and_focus(self, contact_id: str) -> None:
        self.open_conversation(contact_id)
        self.chat.focus_composer()

    def current_contact(self) -> str | None:
        chat = self._chat
        return chat.contact_id if chat is not None and self.stack.currentWidget() is chat else None

    # -- unread, read receipts, notifications ------------------------------------------------

    def is_attentive(self) -> bool:
        """The user can see the open conversation: the window is active and not minimised."""
        return self.isVisible() and self.isActiveWindow() and not self.isMinimized()

    def _reading(self, contact_id: str) -> bool:
        return not self._closing and contact_id == self.current_contact() and self.is_attentive()

    def mark_read_soon(self, immediate: bool = False) -> None:
        """Mark the open conversation read (storage and, if enabled, read receipts)."""
        contact_id = self.current_contact()
        if contact_id is None or not self.is_attentive():
            return
        item = self.conversations.item(contact_id)
        if item is None:
            return
        if item.unread:
            self.conversations.clear_unread(contact_id)
        elif not immediate and not self._unmarked:
            return
        self._unmarked = True
        if immediate:
            self._mark_read_now()
        elif not self._mark_timer.isActive():
            self._mark_timer.start()  # a burst of arrivals makes one database write

    def _mark_read_now(self) -> None:
        self._unmarked = False
        contact_id = self.current_contact()
        if contact_id is not None and not self._closing:
            self._tasks.spawn(self.bridge.mark_read(contact_id))

    def _on_message_added(self, message: MessageRecord) -> None:
        if message.outgoing or self._closing:
            return
        if message.contact_id == self.current_contact() and self.is_attentive():
            # Counted as read already (see _reading); storage catches up in one write.
            self._unmarked = True
            if not self._mark_timer.isActive():
                self._mark_timer.start()
            return
        if self.notifier is not None and self.bridge.setting("notifications"):
            item = self.conversations.item(message.contact_id)
            name = item.name if item is not None else "Someone"
            self.notifier.notify_message(message, name)
        if not self.isActiveWindow():
            QApplication.alert(self, 0)

    def _on_unread(self, _total: int) -> None:
        title = self._title()
        if title != self.windowTitle():
            self.setWindowTitle(title)
        self.unreadChanged.emit(self.conversations.unread_total() + self.groups.unread_total())

    def _title(self) -> str:
        total = self.conversations.unread_total() + self.groups.unread_total()
        return f"Chinwag ({total})" if total else "Chinwag"

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() in (QEvent.Type.ActivationChange, QEvent.Type.WindowStateChange):
            if self.is_attentive():
                QTimer.singleShot(0, self, lambda: self.mark_read_soon(immediate=True))

    # -- searching and switching --------------------------------------------------------------

    def find_text(self) -> None:
        if self.current_contact() is not None:
            self.chat.open_search()
        else:
            self.show_search()

    def show_quick_switcher(self) -> None:
        from ui.views.quick_switcher import QuickSwitcher

        dialog = QuickSwitcher(self.conversations, self)
        dialog.chosen.connect(self._open_and_focus)
        self._show_dialog(dialog)

    def show_search(self, query: str = "") -> None:
        from ui.views.search_dialog import SearchDialog

        dialog = SearchDialog(self.bridge, self.conversations, self, groups=self.groups)
        dialog.resultChosen.connect(self.jump_to_message)
        self._show_dialog(dialog)
        if query:
            dialog.field.setText(query)
            dialog.run_search()

    def jump_to_message(self, record: MessageRecord | GroupMessageRecord) -> None:
        """Open the message's conversation with the message shown and highlighted."""
        if isinstance(record, GroupMessageRecord):
            self.open_group(record.group_id, jump_to=record.msg_id)
        else:
            self.open_conversation(record.contact_id, jump_to=record)

    # -- dialogs (from ui/views/*_dialog.py) ---------------------------------------------------

    def _show_dialog(self, dialog: QDialog) -> QDialog:
        """Non-blocking: a modal dialog that never nests an event loop inside a task."""
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self._dialogs.append(dialog)
        dialog.finished.connect(
            lambda _r, d=dialog: self._dialogs.remove(d) if d in self._dialogs else None
        )
        dialog.open()
        return dialog

    def add_contact(self) -> None:
        from ui.views.add_contact_dialog import AddContactDialog

        dialog = AddContactDialog(self.bridge, self)
        dialog.accepted.connect(lambda d=dialog: self._contact_added(getattr(d, "contact", None)))
        self._show_dialog(dialog)

    def _contact_added(self, contact: Any) -> None:
        contact_id = getattr(contact, "id", None)
        if contact_id is None:
            return
        if self.conversations.item(contact_id) is None:
            # The ContactAdded event may not have reached the list yet.
            QTimer.singleShot(100, self, lambda: self._open_and_focus(contact_id))
        else:
            self._open_and_focus(contact_id)

    def show_my_code(self) -> None:
        from ui.views.my_code_dialog import MyCodeDialog

        self._show_dialog(MyCodeDialog(self.bridge, self))

    def show_safety_number(self, contact_id: str) -> None:
        """The contact's safety number; asked for while starting, it opens once the
        service is up (the dialog reads our keys from it)."""
        if not self.bridge.ready:
            self._when_ready(lambda: self.show_safety_number(contact_id))
            return
        from ui.views.safety_number_dialog import SafetyNumberDialog

        item = self.conversations.item(contact_id)
        if item is not None:
            self._show_dialog(SafetyNumberDialog(self.bridge, item.contact, self))

    def show_settings(self, page: str | None = None) -> None:
        """Settings (at `page`); asked for while starting (the Tor line is clickable), they
        open once the service is up."""
        if not self.bridge.ready:
            self._when_ready(lambda: self.show_settings(page))
            return
        from ui.views.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.bridge, self)
        if page is not None:
            dialog.show_page(page)
        self._show_dialog(dialog)

    def _when_ready(self, show: Callable[[], None]) -> None:
        """Run `show` once the service is up, with a busy cursor meanwhile; asked again
        while waiting, the newest request wins (one dialog opens, not a pile)."""
        waiting = self._after_start is not None
        self._after_start = show
        if not waiting:
            self._tasks.spawn(self._show_after_start())

    async def _show_after_start(self) -> None:
        QApplication.setOverrideCursor(Qt.CursorShape.BusyCursor)
        try:
            await self.bridge.wait_ready()
        finally:
            QApplication.restoreOverrideCursor()
        show, self._after_start = self._after_start, None
        if show is not None and not self._closing:
            show()

    # -- groups (ui/views/group_view.py, group_dialogs.py) --------------------------------------

    def current_group(self) -> str | None:
        view = self._group_view
        return view.group_id if view is not None and self.stack.currentWidget() is view else None

    def _reading_group(self, group_id: str) -> bool:
        return not self._closing and group_id == self.current_group() and self.is_attentive()

    def open_group(self, group_id: str, jump_to: bytes | None = None) -> None:
        item = self.groups.item(group_id)
        if self._closing or item is None:
            return
        self.stack.setCurrentWidget(self.group_view)
        self.list.select_contact(None)
        self.group_list.select_group(group_id)
        self._tasks.spawn(self.group_view.show_group(item.group, jump_to=jump_to))
        if item.unread:
            self.groups.clear_unread(group_id)
        self._tasks.spawn(self.bridge.mark_group_read(group_id))

    def _on_group_message(self, message: Any) -> None:
        if message.outgoing or self._closing:
            return
        if self._reading_group(message.group_id):
            self._tasks.spawn(self.bridge.mark_group_read(message.group_id))
            return
        if self.notifier is not None and self.bridge.setting("notifications"):
            item = self.groups.item(message.group_id)
            name = item.group.name if item is not None else "A group"
            self.notifier.notify_message(
                _GroupNote(
                    GROUP_PREFIX + message.group_id, f"{message.author_name}: {message.body}"
                ),
                name,
            )
        if not self.isActiveWindow():
            QApplication.alert(self, 0)

    def _on_group_deleted(self, group_id: str) -> None:
        if self.current_group() == group_id:
            self.stack.setCurrentWidget(self.empty)

    def new_group(self) -> None:
        self._tasks.spawn(self._new_group())

    async def _new_group(self) -> None:
        from ui.views.group_dialogs import CreateGroupDialog

        dialog = CreateGroupDialog(self.bridge, await self.bridge.contacts(), self)
        dialog.accepted.connect(
            lambda d=dialog: (
                d.group is not None
                and QTimer.singleShot(50, self, lambda: self.open_group(d.group.id))
            )
        )
        self._show_dialog(dialog)

    def manage_group(self, group_id: str) -> None:
        self._tasks.spawn(self._manage_group(group_id))

    async def _manage_group(self, group_id: str) -> None:
        from ui.views.group_dialogs import ManageGroupDialog

        group = await self.bridge.group(group_id)
        self._show_dialog(ManageGroupDialog(self.bridge, group, await self.bridge.contacts(), self))


GROUP_PREFIX = "group:"


class _GroupNote:
    """What the tray's notify_message reads from a message: the conversation key and text."""

    def __init__(self, contact_id: str, body: str) -> None:
        self.contact_id = contact_id
        self.body = body

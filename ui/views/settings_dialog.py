"""Settings: profile name, appearance, chats, notifications, passphrase, network.

Every switch applies at once through ``bridge.set_setting`` (the app listens to
``bridge.settingChanged``, e.g. to switch the theme). The listening port is shown for
firewall set-ups only: Chinwag chooses it on first start and keeps it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QRadioButton,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from messenger import ProfileError, ServiceError, TorStatusChanged
from ui import theme
from ui.bridge import Bridge
from ui.views.backup_dialogs import BackupSection
from ui.views.dialog_parts import (
    BusyRow,
    DialogTasks,
    InlineMessage,
    hint_label,
    monospace_font,
    primary_button,
    secondary_button,
    section_label,
    style_dialog,
    title_label,
)
from ui.views.onboarding import MAX_NAME_CHARS, PassphraseChooser
from ui.views.tor_status import (
    TOR_EXPLAINED,
    TOR_ONLY_EXPLAINED,
    TOR_ONLY_SETTING,
    TOR_SETTING,
    connecting_text,
)

THEMES: Final = (("system", "Follow the system"), ("light", "Light"), ("dark", "Dark"))
PAGES: Final = ("Profile", "Appearance", "Chats", "Notifications", "Privacy", "Network")
PAGE_ICONS: Final = ("user", "sun", "message", "bell", "lock", "wifi")


def _page(title: str) -> tuple[QWidget, QVBoxLayout]:
    page = QWidget()
    layout = QVBoxLayout(page)
    layout.setContentsMargins(28, 22, 28, 16)
    layout.setSpacing(8)
    layout.addWidget(title_label(title))
    layout.addSpacing(8)
    return page, layout


def _scrolling(page: QWidget) -> QScrollArea:
    """A page taller than the dialog (Network, with Tor) scrolls instead of squeezing."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(page)
    return area


def _option(box: QCheckBox, hint: str, layout: QVBoxLayout) -> None:
    layout.addWidget(box)
    text = hint_label(hint)
    text.setContentsMargins(26, 0, 0, 8)
    layout.addWidget(text)


class SettingsDialog(QDialog):
    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.tasks = DialogTasks("settings", on_error=self._unexpected)
        self.setWindowTitle("Settings")
        self.resize(720, 560)
        self.setMinimumSize(640, 460)

        self.nav = QListWidget()
        self.nav.setFixedWidth(170)
        self.nav.setAccessibleName("Settings sections")
        self.pages = QStackedWidget()
        self.message = InlineMessage()
        self.message.setContentsMargins(28, 0, 28, 0)

        self._build_profile()
        self._build_appearance()
        self._build_chats()
        self._build_notifications()
        self._build_privacy()
        self._build_network()
        self.nav.setIconSize(QSize(18, 18))
        for name, icon_name in zip(PAGES, PAGE_ICONS, strict=True):
            item = QListWidgetItem(theme.icon(icon_name), name, self.nav)
            item.setData(Qt.ItemDataRole.UserRole, icon_name)
        self.nav.currentRowChanged.connect(self._show_page)
        self.nav.setCurrentRow(0)

        self.close_button = primary_button("Close")
        self.close_button.clicked.connect(self.accept)
        right = QVBoxLayout()
        right.setContentsMargins(0, 0, 0, 0)
        right.addWidget(self.pages, 1)
        right.addWidget(self.message)
        bottom = QHBoxLayout()
        bottom.setContentsMargins(28, 8, 22, 18)
        bottom.addStretch(1)
        bottom.addWidget(self.close_button)
        right.addLayout(bottom)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.nav)
        layout.addLayout(right, 1)
        style_dialog(self, self._style_nav)

    def _style_nav(self) -> None:
        t = theme.current()
        for row in range(self.nav.count()):
            item = self.nav.item(row)
            item.setIcon(theme.icon(item.data(Qt.ItemDataRole.UserRole)))
        self.nav.setStyleSheet(
            f"""
            QListWidget {{ background: {t.sidebar}; border: none;
                          border-right: 1px solid {t.border}; padding: 14px 8px; outline: none; }}
            QListWidget::item {{ padding: 8px 10px; border-radius: 8px; margin: 1px 0;
                                color: {t.text}; }}
            QListWidget::item:selected {{ background: {t.selected}; color: {t.text}; }}
            QListWidget::item:hover:!selected {{ background: {t.hover}; }}
            """
        )

    def _unexpected(self, exc: BaseException) -> None:
        self.message.error(f"Not saved: {exc}")

    def _show_page(self, row: int) -> None:
        self.pages.setCurrentIndex(row)
        self.message.clear_message()

    def show_page(self, name: str) -> None:
        self.nav.setCurrentRow(PAGES.index(name))

    # -- pages -----------------------------------------------------------------------------

    def _build_profile(self) -> None:
        page, layout = _page("Profile")
        self.name_edit = QLineEdit(self.bridge.display_name)
        self.name_edit.setMaxLength(MAX_NAME_CHARS)
        self.name_edit.setAccessibleName("Display name")
        self.name_save = secondary_button("Save")
        row = QHBoxLayout()
        row.addWidget(self.name_edit, 1)
        row.addWidget(self.name_save)
        layout.addWidget(section_label("Your name"))
        layout.addLayout(row)
        layout.addWidget(hint_label("Shown to your contacts; they see the change when online."))
        layout.addSpacing(16)
        layout.addWidget(section_label("Your fingerprint"))
        fingerprint = QLabel(self._service_value("fingerprint", ""))
        fingerprint.setFont(monospace_font())
        fingerprint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        fingerprint.setAccessibleName("Your key fingerprint")
        layout.addWidget(fingerprint)
        layout.addWidget(
            hint_label(
                "Identifies your key. To check a contact, compare safety numbers in "
                "their chat instead."
            )
        )
        layout.addStretch(1)
        self.name_edit.textChanged.connect(self._name_edited)
        self.name_edit.returnPressed.connect(self.save_name)
        self.name_save.clicked.connect(self.save_name)
        self._name_edited()
        self.pages.addWidget(page)

    def _build_appearance(self) -> None:
        page, layout = _page("Appearance")
        layout.addWidget(section_label("Theme"))
        self.theme_buttons: dict[str, QRadioButton] = {}
        group = QButtonGroup(page)
        current = self.bridge.setting("theme") or "system"
        for value, label in THEMES:
            button = QRadioButton(label)
            button.setChecked(value == current)
            button.toggled.connect(
                lambda on, value=value: on and self.apply_setting("theme", value)
            )
            group.addButton(button)
            self.theme_buttons[value] = button
            layout.addWidget(button)
        layout.addStretch(1)
        self.pages.addWidget(page)

    def _build_chats(self) -> None:
        page, layout = _page("Chats")
        self.read_receipts = QCheckBox("Send read receipts")
        self.typing = QCheckBox("Send typing indicators")
        self._bind(self.read_receipts, "read_receipts")
        self._bind(self.typing, "typing_notifications")
        _option(
            self.read_receipts,
            "Let people know when you have read their messages. Off by default.",
            layout,
        )
        _option(self.typing, "Let people see when you are typing.", layout)
        layout.addStretch(1)
        self.pages.addWidget(page)

    def _build_notifications(self) -> None:
        page, layout = _page("Notifications")
        self.notifications = QCheckBox("Show a notification for new messages")
        self.previews = QCheckBox("Show the sender and message text")
        self._bind(self.notifications, "notifications")
        self._bind(self.previews, "notification_previews")
        _option(self.notifications, "Only when the Chinwag window is not active.", layout)
        _option(
            self.previews,
            "Turn off to show only that a message arrived, without who sent it or what "
            "it says (others may see your screen).",
            layout,
        )
        self.notifications.toggled.connect(self.previews.setEnabled)
        self.previews.setEnabled(self.notifications.isChecked())
        layout.addStretch(1)
        self.pages.addWidget(page)

    def _build_privacy(self) -> None:
        page, layout = _page("Privacy")
        layout.addWidget(section_label("Passphrase"))
        self.passphrase_state = hint_label()
        layout.addWidget(self.passphrase_state)
        layout.addSpacing(6)
        self.passphrase_chooser = PassphraseChooser(
            page,
            with_label="Use a new passphrase",
            without_label="No passphrase (keep the key in the keyring)",
        )
        layout.addWidget(self.passphrase_chooser)
        self.passphrase_busy = BusyRow()
        self.passphrase_message = InlineMessage()
        self.passphrase_button = primary_button("Change passphrase")
        self.passphrase_button.setDefault(False)
        row = QHBoxLayout()
        row.addWidget(self.passphrase_busy, 1)
        row.addStretch(0)
        row.addWidget(self.passphrase_button)
        layout.addWidget(self.passphrase_message)
        layout.addLayout(row)
        layout.addSpacing(18)
        service = getattr(self.bridge, "service", None)
        profile = getattr(service, "profile", None)
        self.backup = BackupSection(getattr(profile, "path", None), self._has_passphrase())
        layout.addWidget(self.backup)
        layout.addStretch(1)
        self.passphrase_chooser.on_change(self._passphrase_edited)
        self.passphrase_button.clicked.connect(self.change_passphrase)
        self._show_passphrase_state()
        self._passphrase_edited()
        self.pages.addWidget(page)

    def _build_network(self) -> None:
        page, layout = _page("Network")
        self._build_tor(layout)
        layout.addSpacing(14)
        layout.addWidget(section_label("Listening port"))
        port = self._service_value("listen_port", None)
        self.port_field = QLineEdit(str(port) if port else "not listening")
        self.port_field.setReadOnly(True)
        self.port_field.setFont(monospace_font())
        self.port_field.setMaximumWidth(160)
        self.port_field.setAccessibleName("Listening port")
        layout.addWidget(self.port_field)
        layout.addWidget(
            hint_label(
                "Chinwag picks a free TCP port the first time it runs and keeps it. Contacts "
                "on your network find you by themselves; you only need this number to "
                "allow Chinwag through a firewall."
            )
        )
        layout.addSpacing(14)
        layout.addWidget(section_label("Your addresses"))
        self.addresses_shown = QLabel()
        self.addresses_shown.setFont(monospace_font())
        self.addresses_shown.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.addresses_shown)
        self._show_addresses()
        layout.addWidget(hint_label("Invite codes carry these so contacts can reach you."))
        layout.addStretch(1)
        self.pages.addWidget(_scrolling(page))

    def _build_tor(self, layout: QVBoxLayout) -> None:
        layout.addWidget(section_label("Internet"))
        self.tor_box = QCheckBox(TOR_SETTING)
        self.tor_box.setAccessibleName(TOR_SETTING)
        unavailable = self.bridge.tor_unavailable()
        self.tor_box.setChecked(self.bridge.tor_enabled() and unavailable is None)
        self.tor_box.setEnabled(unavailable is None)
        self.tor_box.toggled.connect(self._tor_toggled)
        _option(self.tor_box, TOR_EXPLAINED, layout)
        self.tor_state = QLabel()
        self.tor_state.setWordWrap(True)
        self.tor_state.setAccessibleName("Tor status")
        self.tor_address = QLineEdit()
        self.tor_address.setReadOnly(True)
        self.tor_address.setFont(monospace_font())
        self.tor_address.setAccessibleName("Your onion address")
        self.tor_address.setToolTip("Your onion address: contacts who have it can reach you")
        column = QVBoxLayout()
        column.setContentsMargins(26, 0, 0, 0)
        column.setSpacing(6)
        column.addWidget(self.tor_state)
        column.addWidget(self.tor_address)
        layout.addLayout(column)
        layout.addSpacing(6)
        self.tor_only_box = QCheckBox(TOR_ONLY_SETTING)
        self.tor_only_box.setAccessibleName(TOR_ONLY_SETTING)
        self.tor_only_box.setChecked(bool(self.bridge.setting("tor_only")))
        self.tor_only_box.setEnabled(self.tor_box.isChecked())
        self.tor_only_box.toggled.connect(self._tor_only_toggled)
        _option(self.tor_only_box, TOR_ONLY_EXPLAINED, layout)
        self.bridge.torStatusChanged.connect(self._show_tor)
        self._show_tor(self.bridge.tor_status)

    def _tor_toggled(self, on: bool) -> None:
        self.apply_setting("tor", on)
        self._show_tor(self.bridge.tor_status)
        self.tor_only_box.setEnabled(on)

    def _tor_only_toggled(self, on: bool) -> asyncio.Task[Any]:
        async def apply() -> None:
            await self._apply("tor_only", on)
            self._show_addresses()  # invites now carry only the onion, or all again

        return self.tasks.spawn(apply())

    def _show_tor(self, status: TorStatusChanged) -> None:
        """One line under the switch: why it is off, or what tor is doing."""
        unavailable = self.bridge.tor_unavailable()
        wanted = self.tor_box.isChecked()
        if unavailable is not None:
            text = f"Not available: {unavailable}"
        elif not self.bridge.tor_switches_live and wanted != (status.state != "off"):
            text = "Takes effect the next time Chinwag starts."
        elif status.state == "ready":
            text = "Connected: contacts anywhere can reach you at your onion address."
        elif status.state == "starting":
            text = connecting_text(status.percent)
        elif status.state == "lost":
            text = f"Tor stopped ({status.error}); restarting it…"
        elif status.state == "failed":
            text = f"Tor could not start: {status.error}"
        else:
            text = "Off: contacts are reached on your local network only."
        self.tor_state.setText(text)
        ready = status.state == "ready" and bool(status.onion) and unavailable is None
        self.tor_address.setText((status.onion or "") if ready else "")
        self.tor_address.setCursorPosition(0)  # the start of the address, not its end
        self.tor_address.setVisible(ready)
        if hasattr(self, "addresses_shown"):  # built after the Tor section
            self._show_addresses()

    def _show_addresses(self) -> None:
        """Where invites say we are (the onion address comes and goes with Tor)."""
        addresses = self._addresses()
        self.addresses_shown.setText(
            "\n".join(addresses) if addresses else "No network address found."
        )

    # -- reading the service (read-only facts the bridge does not wrap) --------------------

    def _service_value(self, name: str, default: Any) -> Any:
        service = getattr(self.bridge, "service", None)
        return getattr(service, name, default) if service is not None else default

    def _addresses(self) -> list[str]:
        service = getattr(self.bridge, "service", None)
        try:
            return [str(a) for a in service.addresses()] if service is not None else []
        except Exception:  # informational only
            return []

    def _has_passphrase(self) -> bool | None:
        service = getattr(self.bridge, "service", None)
        try:
            return bool(service.profile.needs_passphrase()) if service is not None else None
        except (ProfileError, OSError, AttributeError):
            return None

    # -- applying --------------------------------------------------------------------------

    def _bind(self, box: QCheckBox, key: str) -> None:
        box.setChecked(bool(self.bridge.setting(key)))
        box.toggled.connect(lambda on: self.apply_setting(key, on))

    def apply_setting(self, key: str, value: Any) -> asyncio.Task[Any]:
        return self.tasks.spawn(self._apply(key, value))

    async def _apply(self, key: str, value: Any) -> None:
        try:
            await self.bridge.set_setting(key, value)
        except ServiceError as exc:
            self.message.error(f"Not saved: {exc}")
            return
        self.message.clear_message()

    def _name_edited(self) -> None:
        name = " ".join(self.name_edit.text().split())
        self.name_save.setEnabled(bool(name) and name != self.bridge.display_name)

    def save_name(self) -> asyncio.Task[Any] | None:
        name = " ".join(self.name_edit.text().split())
        if not name or name == self.bridge.display_name:
            return None
        return self.tasks.spawn(self._save_name(name))

    async def _save_name(self, name: str) -> None:
        self.name_save.setEnabled(False)
        try:
            await self.bridge.set_setting("display_name", name)
        except ServiceError as exc:
            self.message.error(f"Not saved: {exc}")
            self._name_edited()
            return
        self.name_edit.setText(self.bridge.display_name)
        self._name_edited()
        self.message.success("Name saved.")

    # -- passphrase ------------------------------------------------------------------------

    def _show_passphrase_state(self) -> None:
        has = self._has_passphrase()
        if has is True:
            text = (
                "Your messages are protected by a passphrase. You can change it, or remove "
                "it. Your current passphrase is not needed: you are already signed in."
            )
        elif has is False:
            text = (
                "You have no passphrase: the key is kept by your system's keyring or a "
                "private file, and Chinwag opens without asking. Set one to protect your "
                "messages from anyone who uses this computer account."
            )
        else:
            text = ""
        self.passphrase_state.setText(text)
        self.passphrase_state.setVisible(bool(text))

    def _passphrase_edited(self) -> None:
        chooser = self.passphrase_chooser
        wanted_none = chooser.no_passphrase.isChecked()
        already_none = self._has_passphrase() is False
        self.passphrase_button.setText("Remove passphrase" if wanted_none else "Change passphrase")
        self.passphrase_button.setEnabled(
            chooser.is_valid()
            and not (wanted_none and already_none)
            and not self.passphrase_busy.active
        )

    def change_passphrase(self) -> asyncio.Task[Any] | None:
        chooser = self.passphrase_chooser
        if not chooser.is_valid() or self.passphrase_busy.active:
            return None
        return self.tasks.spawn(self._change_passphrase(chooser.result()))

    async def _change_passphrase(self, passphrase: str | None) -> None:
        self.passphrase_message.clear_message()
        self.passphrase_chooser.setEnabled(False)
        self.passphrase_button.setEnabled(False)
        self.passphrase_busy.start("Re-encrypting your messages…")
        try:
            warnings = await self.bridge.change_passphrase(passphrase)
        except (ProfileError, ServiceError, OSError) as exc:
            self.passphrase_message.error(f"The passphrase was not changed: {exc}")
            return
        finally:
            self.passphrase_busy.stop()
            self.passphrase_chooser.setEnabled(True)
        self.passphrase_chooser.reset()
        self.backup.set_has_passphrase(passphrase is not None)
        self._show_passphrase_state()
        self._passphrase_edited()
        done = "Passphrase changed." if passphrase else "Passphrase removed."
        if warnings:
            self.passphrase_message.info(done + " " + " ".join(warnings))
        else:
            self.passphrase_message.success(done)

    def done(self, result: int) -> None:
        if self.passphrase_busy.active or self.backup.busy.active:
            return  # a re-key or backup must finish; closing now would hide its outcome
        # Setting writes still in flight finish on their own (self.tasks keeps them).
        super().done(result)

"""Creating a group (name, members from the contacts) and managing one (rename, add,
remove, leave, delete)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from messenger import ContactRecord, GroupRecord
from ui import theme
from ui.bridge import Bridge
from ui.views.dialog_parts import (
    DialogTasks,
    InlineMessage,
    hint_label,
    primary_button,
    rule,
    secondary_button,
    section_label,
    style_dialog,
    title_label,
)


def _indicator_sheet() -> str:
    """Check boxes in lists that stay visible in the dark theme too: an outlined square,
    filled with the accent colour when checked."""
    t = theme.current()
    return (
        "QListWidget::indicator { width: 14px; height: 14px; border-radius: 3px; "
        f"border: 1px solid {t.text_muted}; background: {t.input_bg}; }}"
        "QListWidget::indicator:checked { "
        f"border: 1px solid {t.accent}; background: {t.accent}; }}"
    )


def _checklist(contacts: list[ContactRecord], name: str) -> QListWidget:
    widget = QListWidget()
    widget.setAccessibleName(name)
    for c in contacts:
        item = QListWidgetItem(c.display_name)
        item.setData(Qt.ItemDataRole.UserRole, c.id)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Unchecked)
        widget.addItem(item)
    return widget


def _checked(widget: QListWidget) -> list[str]:
    return [
        widget.item(i).data(Qt.ItemDataRole.UserRole)
        for i in range(widget.count())
        if widget.item(i).checkState() == Qt.CheckState.Checked
    ]


class CreateGroupDialog(QDialog):
    def __init__(
        self, bridge: Bridge, contacts: list[ContactRecord], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.group: GroupRecord | None = None
        self.setWindowTitle("New group")
        self.setMinimumWidth(420)
        self.name = QLineEdit(self)
        self.name.setPlaceholderText("Group name")
        self.name.setAccessibleName("Group name")
        self.name.setMaxLength(64)
        self.members = _checklist(contacts, "Members")
        self.error = InlineMessage(self)
        self.create_button = primary_button("Create group")
        cancel = secondary_button("Cancel")
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(cancel)
        buttons.addWidget(self.create_button)
        layout = QVBoxLayout(self)
        layout.addWidget(title_label("New group"))
        layout.addWidget(
            hint_label(
                "Everyone in the group keeps the whole conversation; whoever was away catches "
                "up from whoever was there. Members need not know each other."
            )
        )
        layout.addWidget(self.name)
        layout.addWidget(section_label("Members"))
        layout.addWidget(self.members, 1)
        layout.addWidget(self.error)
        layout.addLayout(buttons)
        style_dialog(self, lambda: self.members.setStyleSheet(_indicator_sheet()))
        self._tasks = DialogTasks("create group", self._failed)
        self.name.textChanged.connect(self._update)
        self.members.itemChanged.connect(self._update)
        self.create_button.clicked.connect(self._create)
        cancel.clicked.connect(self.reject)
        self._update()

    def _update(self, *_args: object) -> None:
        self.create_button.setEnabled(
            bool(self.name.text().strip()) and bool(_checked(self.members))
        )

    def _failed(self, exc: BaseException) -> None:
        self.error.error(str(exc))
        self.create_button.setEnabled(True)

    def _create(self) -> None:
        self.create_button.setEnabled(False)
        self._tasks.spawn(self._do_create())

    async def _do_create(self) -> None:
        self.group = await self.bridge.create_group(self.name.text(), _checked(self.members))
        self.accept()

    def done(self, result: int) -> None:
        self._tasks.cancel()
        super().done(result)


class ManageGroupDialog(QDialog):
    def __init__(
        self,
        bridge: Bridge,
        group: GroupRecord,
        contacts: list[ContactRecord],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.group = group
        self.setWindowTitle(f"Manage {group.name}")
        self.setMinimumWidth(440)
        admin = group.i_am_admin
        active = group.state == "active"
        self.name = QLineEdit(group.name, self)
        self.name.setAccessibleName("Group name")
        self.name.setMaxLength(64)
        self.rename_button = secondary_button("Rename")
        members = [m for m in group.members if not m.is_me]
        self.members = QListWidget(self)
        self.members.setAccessibleName("Members")
        for m in members:
            item = QListWidgetItem(m.name + ("  (admin)" if m.admin else ""))
            item.setData(Qt.ItemDataRole.UserRole, m.contact_id)
            if admin:
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Unchecked)
            self.members.addItem(item)
        self.remove_button = secondary_button("Remove checked")
        present = {m.contact_id for m in group.members}
        self.candidates = _checklist([c for c in contacts if c.id not in present], "Add people")
        self.add_button = secondary_button("Add checked")
        self.open_box = QCheckBox("Open to join: announce the name on this network", self)
        self.open_box.setChecked(bridge.group_is_open(group.id))
        self.open_box.setEnabled(admin)
        self.open_box.setToolTip(
            "People nearby who see it pair with you (compare six digits), then ask; "
            "you approve each request. Needs “visible on this network”."
        )
        self.requests = QListWidget(self)
        self.requests.setAccessibleName("Join requests")
        for contact_id, name in bridge.join_requests(group.id):
            item = QListWidgetItem(f"{name} asks to join")
            item.setData(Qt.ItemDataRole.UserRole, contact_id)
            self.requests.addItem(item)
        self.approve_button = primary_button("Approve", default=False)
        self.decline_button = secondary_button("Decline")
        self.leave_button = secondary_button("Leave group")
        self.delete_button = secondary_button("Delete on this device")
        self.error = InlineMessage(self)
        close = primary_button("Close")

        self._lay_out(admin, close)

        def lists() -> None:
            for widget in (self.members, self.candidates):
                widget.setStyleSheet(_indicator_sheet())

        style_dialog(self, lists)
        for widget in (self.name, self.rename_button, self.remove_button, self.add_button):
            widget.setEnabled(admin)
        self.candidates.setEnabled(admin)
        self.leave_button.setEnabled(active)
        self._tasks = DialogTasks("manage group", self._failed)
        self.rename_button.clicked.connect(
            lambda: self._run(self.bridge.rename_group(group.id, self.name.text()))
        )
        self.remove_button.clicked.connect(
            lambda: self._run(self.bridge.remove_group_members(group.id, self._checked_members()))
        )
        self.add_button.clicked.connect(
            lambda: self._run(self.bridge.add_group_members(group.id, _checked(self.candidates)))
        )
        self.leave_button.clicked.connect(lambda: self._run(self.bridge.leave_group(group.id)))
        self.delete_button.clicked.connect(lambda: self._run(self.bridge.delete_group(group.id)))
        close.clicked.connect(self.accept)
        self.open_box.toggled.connect(
            lambda on: self._tasks.spawn(self.bridge.set_group_open(group.id, on))
        )
        self.approve_button.clicked.connect(self._approve)
        self.decline_button.clicked.connect(self._decline)

    def _lay_out(self, admin: bool, close: QPushButton) -> None:
        """Name, members, people to add, join requests, then leave/delete/close."""
        rename_row = QHBoxLayout()
        rename_row.addWidget(self.name, 1)
        rename_row.addWidget(self.rename_button)
        layout = QVBoxLayout(self)
        layout.addWidget(title_label(self.group.name))
        if not admin:
            layout.addWidget(hint_label("Only an admin can rename the group or change members."))
        layout.addLayout(rename_row)
        layout.addWidget(section_label("Members"))
        layout.addWidget(self.members, 1)
        layout.addWidget(self.remove_button)
        layout.addWidget(section_label("Add people"))
        if self.candidates.count():
            layout.addWidget(self.candidates, 1)
            layout.addWidget(self.add_button)
        else:
            layout.addWidget(hint_label("Every one of your contacts is a member."))
            self.candidates.hide()
            self.add_button.hide()
        layout.addWidget(self.open_box)
        if self.requests.count():
            layout.addWidget(section_label("Join requests"))
            layout.addWidget(self.requests)
            answer = QHBoxLayout()
            answer.addStretch(1)
            answer.addWidget(self.decline_button)
            answer.addWidget(self.approve_button)
            layout.addLayout(answer)
            self.requests.setCurrentRow(0)
        layout.addWidget(rule())
        bottom = QHBoxLayout()
        bottom.addWidget(self.leave_button)
        bottom.addWidget(self.delete_button)
        bottom.addStretch(1)
        bottom.addWidget(close)
        layout.addWidget(self.error)
        layout.addLayout(bottom)

    def _chosen_request(self) -> str | None:
        item = self.requests.currentItem()
        value = None if item is None else item.data(Qt.ItemDataRole.UserRole)
        return value if isinstance(value, str) else None

    def _approve(self) -> None:
        contact_id = self._chosen_request()
        if contact_id is not None:
            self._run(self.bridge.approve_join(self.group.id, contact_id))

    def _decline(self) -> None:
        contact_id = self._chosen_request()
        if contact_id is not None:
            self.bridge.decline_join(self.group.id, contact_id)
            self.requests.takeItem(self.requests.currentRow())

    def _checked_members(self) -> list[str]:
        return _checked(self.members)

    def _failed(self, exc: BaseException) -> None:
        self.error.error(str(exc))

    def _run(self, coro: object) -> None:
        async def then_close() -> None:
            await coro  # type: ignore[misc]
            self.accept()

        self._tasks.spawn(then_close())

    def done(self, result: int) -> None:
        self._tasks.cancel()
        super().done(result)

"""The Qt face of the peer service: service events become Qt signals, commands are
coroutines run on the one asyncio loop that qasync shares with Qt.

Widgets never touch storage or sockets: they call these methods (from an
``@asyncSlot`` or ``asyncio.ensure_future``) and listen to these signals.

At start-up the bridge can exist before the service (issue 15): the window is built and
painted from a StartupView (a raw read of who I am, the settings and the conversation
list) while the service is imported and opened behind it. Until `attach()`: commands wait
for the service, the few synchronous questions get "nobody online, no transfers"
answers, and `ready` is False so the window shows its "starting" state;
`serviceReady` then tells the views to read everything again, live from then on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

import messenger
from messenger import (
    ContactAdded,
    ContactChanged,
    ContactRecord,
    ConversationSummary,
    DiskSpace,
    FileOfferRejected,
    GroupChanged,
    GroupDeleted,
    GroupDeliveryChanged,
    GroupId,
    GroupJoinRequested,
    GroupMessageAdded,
    GroupMessageRecord,
    GroupRecord,
    MessageAdded,
    MessageRecord,
    MessageStatesChanged,
    PresenceChanged,
    ServiceError,
    ServiceEvent,
    StartupView,
    TorStatusChanged,
    TransferChanged,
    TransferRecord,
    TypingChanged,
    format_safety_number,
    safety_number_qr_payload,
    verify_safety_number_qr,
)

if TYPE_CHECKING:
    from messenger import Invite, PeerService

SETTING_TOR = "tor"


class Bridge(QObject):
    # A contact was added, renamed or verified: the conversation list should refresh it.
    contactAdded = Signal(object)  # ContactRecord
    contactChanged = Signal(object)  # ContactRecord
    presenceChanged = Signal(str, bool)  # contact_id, online
    # contact_id, how its live session runs: "lan", "direct", "tor" ("" offline); emitted
    # before presenceChanged, and alone when a session moves (Tor -> LAN)
    routeChanged = Signal(str, str)
    torStatusChanged = Signal(object)  # TorStatusChanged: bootstrap, reachable, lost, ...
    messageAdded = Signal(object)  # MessageRecord (ours queued, or theirs stored)
    messageStatesChanged = Signal(str, object, int)  # contact_id, tuple[bytes], MessageState
    typingChanged = Signal(str, bool)  # contact_id, active
    transferChanged = Signal(object)  # TransferRecord (state or progress)
    fileOfferRejected = Signal(str, str, str, bool)  # contact_id, name, reason, incoming
    diskSpaceChanged = Signal(bool, str)  # full, message for the user
    settingChanged = Signal(str, object)  # key, value
    # Groups (messenger/groups/); a group id is a GroupId (str), as the service takes it.
    groupChanged = Signal(object)  # GroupRecord: new, renamed, members or state changed
    groupDeleted = Signal(str)  # group id
    groupMessageAdded = Signal(object)  # GroupMessageRecord (ours stored, or theirs)
    groupDeliveryChanged = Signal(str, str, int)  # group id, member contact id, our seq
    groupJoinRequested = Signal(str, str, str)  # group id, contact id, contact name
    # The service is up (see the module docstring): read lists again, enable what waited.
    serviceReady = Signal()

    def __init__(
        self,
        service: PeerService | None,
        parent: QObject | None = None,
        *,
        tor_blocked: str | None = None,
        early: StartupView | None = None,
    ) -> None:
        """`tor_blocked`: why Tor cannot be turned on in this run (e.g. CHINWAG_NO_TOR).
        `early`: what to show until `attach(service)`, when `service` is None."""
        super().__init__(parent)
        if service is None and early is None:
            raise ValueError("a bridge needs a service or a StartupView to show until then")
        self._service: PeerService | None = None
        self._early = early
        self._up = asyncio.Event()
        self._tor_blocked = tor_blocked
        self._was_online: dict[str, bool] = {}  # a route change is not a presence change
        self._unsubscribe: Callable[[], None] = lambda: None
        if service is not None:
            self._connect(service)

    def _connect(self, service: PeerService) -> None:
        self._service = service
        self._unsubscribe = service.subscribe(self._on_event)
        self._up.set()

    def attach(self, service: PeerService) -> None:
        """The service is open: from now on everything goes to it (serviceReady)."""
        if self._service is not None:
            raise RuntimeError("the bridge already has a service")
        self._connect(service)
        self._early = None
        self.serviceReady.emit()

    def detach(self) -> None:
        self._unsubscribe()
        self._unsubscribe = lambda: None

    @property
    def ready(self) -> bool:
        """Whether the service is up (False while the window shows the StartupView)."""
        return self._service is not None

    @property
    def service(self) -> PeerService:
        if self._service is None:
            raise ServiceError("Chinwag is still starting")
        return self._service

    async def wait_ready(self) -> None:
        """Return once the service is up (at once if it is)."""
        await self._up.wait()

    async def _up_service(self) -> PeerService:
        """The service, once it is up (commands issued while starting wait for it)."""
        await self._up.wait()
        return self.service

    # -- events -> signals (called on the loop thread, which is Qt's thread) -------------

    def _on_event(self, event: ServiceEvent) -> None:
        emit = _EMITTERS.get(type(event))
        if emit is not None:  # events the window does not show have no signal
            emit(self, event)

    def _presence(self, event: PresenceChanged) -> None:
        self.routeChanged.emit(event.contact_id, event.route or "")
        if event.online != self._was_online.get(event.contact_id):
            self._was_online[event.contact_id] = event.online
            self.presenceChanged.emit(event.contact_id, event.online)

    # -- who am I --------------------------------------------------------------------------

    @property
    def display_name(self) -> str:
        if self._early is not None:
            return self._early.display_name
        return self.service.display_name

    @property
    def my_id(self) -> str:
        if self._early is not None:
            return self._early.contact_id
        return self.service.contact_id

    @property
    def max_body_bytes(self) -> int:
        """The most UTF-8 bytes one message can hold (the composer counts against it).
        Looked up when asked: the constant's package (the wire codec) is not needed for
        the first paint."""
        return int(messenger.MAX_BODY_BYTES)

    def setting(self, key: str) -> Any:
        if self._early is not None:
            return self._early.settings.get(key)
        return self.service.settings.get(key)

    async def set_setting(self, key: str, value: Any) -> None:
        await (await self._up_service()).set_setting(key, value)
        self.settingChanged.emit(key, value)

    async def change_passphrase(self, new_passphrase: str | None) -> list[str]:
        return await (await self._up_service()).change_passphrase(new_passphrase)

    # -- conversations ----------------------------------------------------------------------

    async def conversations(self) -> list[ConversationSummary]:
        """Every conversation's summary; while starting, those of the StartupView."""
        if self._early is not None:
            return list(self._early.conversations)
        return await self.service.chat.conversations()

    async def contact(self, contact_id: str) -> ContactRecord | None:
        for c in await (await self._up_service()).contacts.all():
            if c.id == contact_id:
                return c
        return None

    def is_online(self, contact_id: str) -> bool:
        return self._service is not None and self._service.contacts.is_online(contact_id)

    def route(self, contact_id: str) -> str:
        """How the contact's live session runs: "lan", "direct", "tor"; "" offline."""
        if self._service is None:
            return ""
        return self._service.contacts.route(contact_id) or ""

    # -- Tor reach ---------------------------------------------------------------------------

    @property
    def tor_status(self) -> TorStatusChanged:
        """Tor now (events after this arrive as torStatusChanged); "off" until the service
        is up (it starts Tor)."""
        if self._service is None:
            return TorStatusChanged("off")
        return self._service.reach.tor_status

    def tor_unavailable(self) -> str | None:
        """Why Tor cannot be used here (no tor binary, or turned off for this run). Looking
        for the binary waits for the service (Tor's module is one of the heavy imports)."""
        if self._tor_blocked or self._service is None:
            return self._tor_blocked
        missing: str | None = messenger.tor_missing()
        return missing

    def tor_enabled(self) -> bool:
        """The profile's choice; never chosen: on when Tor can run here."""
        chosen = self.setting(SETTING_TOR)
        return self.tor_unavailable() is None if chosen is None else bool(chosen)

    @property
    def tor_switches_live(self) -> bool:
        """Whether changing the setting starts or stops Tor now (else at the next start)."""
        return self.service.config.tor is None

    async def history(
        self,
        contact_id: str,
        *,
        limit: int = 50,
        before: tuple[int, bytes] | None = None,
        after: tuple[int, bytes] | None = None,
    ) -> list[MessageRecord]:
        return await (await self._up_service()).chat.history(
            contact_id, limit=limit, before=before, after=after
        )

    async def send_text(self, contact_id: str, body: str) -> MessageRecord:
        return await (await self._up_service()).chat.send_text(contact_id, body)

    async def mark_read(self, contact_id: str) -> int:
        return await (await self._up_service()).chat.mark_read(contact_id)

    def set_typing(self, contact_id: str, active: bool) -> None:
        if self._service is not None:
            self._service.chat.set_typing(contact_id, active)

    async def search(self, text: str, contact_id: str | None = None) -> list[MessageRecord]:
        return await (await self._up_service()).chat.search(text, contact_id=contact_id)

    async def search_groups(self, text: str) -> list[GroupMessageRecord]:
        return await (await self._up_service()).groups.search(text)

    # -- files (messenger/files) -------------------------------------------------------------

    def transfers(
        self, contact_id: str | None = None, group_id: GroupId | None = None
    ) -> list[TransferRecord]:
        """Every transfer, or those of one conversation (a contact's or a group's)."""
        if self._service is None:
            return []
        found = self._service.files.transfers()
        if contact_id is not None:
            found = [t for t in found if contact_id in t.contacts]
        if group_id is not None:
            found = [t for t in found if group_id in t.groups]
        return found

    def transfer_for_message(self, msg_id: bytes) -> TransferRecord | None:
        return self._service.files.for_message(msg_id) if self._service is not None else None

    async def send_file(self, contact_id: str, path: Path) -> TransferRecord:
        """Raises messenger.FileError with a user-facing message."""
        return await (await self._up_service()).files.send_file(contact_id, path)

    async def send_group_file(self, group_id: GroupId, path: Path) -> TransferRecord:
        """Raises messenger.FileError with a user-facing message."""
        return await (await self._up_service()).files.send_to_group(group_id, path)

    async def transfer_action(self, action: str, transfer_id: str) -> TransferRecord:
        if action not in ("accept", "pause", "resume", "cancel"):
            raise ValueError(action)
        result: TransferRecord = await getattr((await self._up_service()).files, action)(
            transfer_id
        )
        return result

    async def forward_file(
        self, transfer_id: str, *, contact_id: str | None = None, group_id: GroupId | None = None
    ) -> TransferRecord:
        """Pass a complete file on to a contact or into a group (FileError if it cannot)."""
        files = (await self._up_service()).files
        if group_id is not None:
            return await files.forward_to_group(transfer_id, group_id)
        assert contact_id is not None
        return await files.forward(transfer_id, contact_id)

    async def save_file(self, transfer_id: str, dest: Path) -> Path:
        return await (await self._up_service()).files.save_as(transfer_id, dest)

    async def file_bytes(self, transfer_id: str) -> bytes:
        return await (await self._up_service()).files.plaintext(transfer_id)

    async def thumbnail(self, transfer_id: str) -> bytes | None:
        return await (await self._up_service()).files.thumbnail(transfer_id)

    async def set_thumbnail(self, transfer_id: str, png: bytes) -> None:
        await (await self._up_service()).files.set_thumbnail(transfer_id, png)

    # -- contacts, invites, verification ----------------------------------------------------

    async def create_invite(self, ttl: int = 24 * 3600) -> tuple[str, Invite]:
        return await (await self._up_service()).invites.create_invite(ttl=ttl)

    async def accept_invite(self, code: str, *, verified: bool = False) -> ContactRecord:
        """Raises messenger.InviteFailed with a user-facing message."""
        return await (await self._up_service()).invites.accept_invite(code, verified=verified)

    def safety_number(self, contact: ContactRecord) -> str:
        return format_safety_number(self.service.contacts.safety_number(contact), lines=True)

    def safety_qr_payload(self, contact: ContactRecord) -> bytes:
        return safety_number_qr_payload(
            self.service.identity.ed25519_public, contact.ed25519_public
        )

    def check_safety_qr(self, contact: ContactRecord, payload: bytes) -> bool:
        """Whether their safety-number QR matches ours (no side effect)."""
        return verify_safety_number_qr(
            payload, self.service.identity.ed25519_public, contact.ed25519_public
        )

    async def verify_with_qr(self, contact: ContactRecord, payload: bytes) -> bool:
        """Their safety-number QR, scanned: marks the contact verified if it matches."""
        ok = verify_safety_number_qr(
            payload, (await self._up_service()).identity.ed25519_public, contact.ed25519_public
        )
        if ok:
            await self.set_verified(contact.id, True)
        return ok

    async def set_verified(self, contact_id: str, verified: bool) -> None:
        service = await self._up_service()
        await service.contacts.set_verified(contact_id, verified)  # emits ContactChanged

    async def waiting_for_replaced(self, contact_id: str) -> int:
        return await (await self._up_service()).contacts.waiting_for_replaced(contact_id)

    async def accept_new_key(self, contact_id: str, *, send_queued: bool) -> ContactRecord:
        """Accept a contact's changed safety number (see Contacts.accept_new_key)."""
        service = await self._up_service()
        return await service.contacts.accept_new_key(contact_id, send_queued=send_queued)

    # -- groups -----------------------------------------------------------------------------

    async def contacts(self) -> list[ContactRecord]:
        return await (await self._up_service()).contacts.all()

    async def groups(self) -> list[GroupRecord]:
        return await (await self._up_service()).groups.groups()

    async def group(self, group_id: GroupId) -> GroupRecord:
        return await (await self._up_service()).groups.group(group_id)

    async def create_group(self, name: str, member_ids: list[str]) -> GroupRecord:
        """Raises messenger.GroupError with a user-facing message."""
        return await (await self._up_service()).groups.create_group(name, member_ids)

    async def add_group_members(self, group_id: GroupId, member_ids: list[str]) -> GroupRecord:
        return await (await self._up_service()).groups.add_members(group_id, member_ids)

    async def remove_group_members(self, group_id: GroupId, member_ids: list[str]) -> GroupRecord:
        return await (await self._up_service()).groups.remove_members(group_id, member_ids)

    async def rename_group(self, group_id: GroupId, name: str) -> GroupRecord:
        return await (await self._up_service()).groups.rename(group_id, name)

    async def leave_group(self, group_id: GroupId) -> GroupRecord:
        return await (await self._up_service()).groups.leave(group_id)

    async def delete_group(self, group_id: GroupId) -> None:
        await (await self._up_service()).groups.delete(group_id)

    async def group_list(self) -> list[tuple[GroupRecord, GroupMessageRecord | None]]:
        """Every group with its newest message; while starting, those of the StartupView."""
        if self._early is not None:
            return list(self._early.groups)
        groups = self.service.groups
        listed: list[tuple[GroupRecord, GroupMessageRecord | None]] = []
        for group in await groups.groups():
            newest = await groups.history(group.id, limit=1)
            listed.append((group, newest[0] if newest else None))
        return listed

    async def group_history(
        self, group_id: GroupId, *, limit: int = 50, before: tuple[int, bytes, int] | None = None
    ) -> list[GroupMessageRecord]:
        return await (await self._up_service()).groups.history(group_id, limit=limit, before=before)

    async def send_group_text(self, group_id: GroupId, body: str) -> GroupMessageRecord:
        return await (await self._up_service()).groups.send_text(group_id, body)

    async def mark_group_read(self, group_id: GroupId) -> int:
        return await (await self._up_service()).groups.mark_read(group_id)

    def group_delivery(self, group_id: GroupId) -> dict[str, int]:
        if self._service is None:
            return {}
        return self._service.groups.delivery(group_id)

    async def set_group_open(self, group_id: GroupId, is_open: bool) -> GroupRecord:
        return await (await self._up_service()).groups.set_open(group_id, is_open)

    def group_is_open(self, group_id: GroupId) -> bool:
        return self._service is not None and group_id in self._service.groups.open_groups()

    def join_requests(self, group_id: GroupId) -> list[tuple[str, str]]:
        """(contact id, name) of the people asking to join this group."""
        if self._service is None:
            return []
        return [
            (r["contact"], r["name"])
            for r in self._service.groups.join_requests()
            if r["group"] == group_id
        ]

    async def approve_join(self, group_id: GroupId, contact_id: str) -> GroupRecord:
        return await (await self._up_service()).groups.approve(group_id, contact_id)

    def decline_join(self, group_id: GroupId, contact_id: str) -> None:
        self.service.groups.decline(group_id, contact_id)


# Each service event the window shows, and how it becomes a signal (a table, not a branch
# chain: a new event is one line here and one signal above).
_EMITTERS: dict[type[Any], Callable[[Bridge, Any], None]] = {
    MessageAdded: lambda b, e: b.messageAdded.emit(e.message),
    MessageStatesChanged: lambda b, e: b.messageStatesChanged.emit(
        e.contact_id, e.msg_ids, int(e.state)
    ),
    PresenceChanged: lambda b, e: b._presence(e),
    TorStatusChanged: lambda b, e: b.torStatusChanged.emit(e),
    TypingChanged: lambda b, e: b.typingChanged.emit(e.contact_id, e.active),
    ContactAdded: lambda b, e: b.contactAdded.emit(e.contact),
    ContactChanged: lambda b, e: b.contactChanged.emit(e.contact),
    GroupMessageAdded: lambda b, e: b.groupMessageAdded.emit(e.message),
    GroupDeliveryChanged: lambda b, e: b.groupDeliveryChanged.emit(e.group_id, e.contact_id, e.seq),
    GroupChanged: lambda b, e: b.groupChanged.emit(e.group),
    GroupDeleted: lambda b, e: b.groupDeleted.emit(e.group_id),
    GroupJoinRequested: lambda b, e: b.groupJoinRequested.emit(e.group_id, e.contact_id, e.name),
    TransferChanged: lambda b, e: b.transferChanged.emit(e.transfer),
    FileOfferRejected: lambda b, e: b.fileOfferRejected.emit(
        e.contact_id, e.name, e.reason, e.incoming
    ),
    DiskSpace: lambda b, e: b.diskSpaceChanged.emit(e.full, e.message),
}

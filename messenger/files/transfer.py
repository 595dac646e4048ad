"""One file as this device holds it (Transfer), the settings and sizes every part of the
files worker shares, and the ports it needs of the rest of the service."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..protocol import wire
from ..records import GroupId, GroupMessageRecord, TransferState
from ..storage.attachments import AttachmentRow
from .chunks import Bitmap, Manifest
from .fetching import Download
from .names import human_size

if TYPE_CHECKING:
    from ..net.transport import Connection


SETTING_MAX_SIZE = "files.max_size"
SETTING_AUTO_ACCEPT_IMAGES = "files.auto_accept_images"
SETTING_RATE_LIMIT = "files.rate_limit"
DEFAULT_FILE_SETTINGS: dict[str, int] = {
    SETTING_MAX_SIZE: 4 << 30,  # bytes; bigger offers are refused
    SETTING_AUTO_ACCEPT_IMAGES: 10 << 20,  # images up to this size download unasked
    SETTING_RATE_LIMIT: 0,  # bytes per second per download; 0 = as fast as it goes
}
PERSIST_INTERVAL = 0.5  # seconds between bitmap saves (and progress events)


@dataclass(slots=True)
class Transfer:
    row: AttachmentRow
    manifest: Manifest | None
    have: Bitmap | None
    contacts: dict[bytes, tuple[str, bool]] = field(default_factory=dict)  # msg -> (who, ours)
    groups: dict[bytes, tuple[bytes, bool]] = field(default_factory=dict)  # msg -> (group, ours)
    sources: set[str] = field(default_factory=set)
    bad_sources: set[str] = field(default_factory=set)  # sent a bad chunk: never again
    remote_paused: dict[str, str] = field(default_factory=dict)  # source -> reason
    peers: dict[str, str] = field(default_factory=dict)  # contact -> status (our offers)
    served_bytes: dict[str, int] = field(default_factory=dict)
    download: Download | None = None
    last_download: Download | None = None  # the finished one, for its statistics
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    speed: float = 0.0
    last_emit: float = 0.0

    @property
    def root(self) -> bytes:
        return self.row.root

    @property
    def state(self) -> TransferState:
        return TransferState(self.row.state)

    @property
    def outgoing(self) -> bool:
        """We sent it (imported it ourselves) and nobody offered it to us."""
        links = [*self.contacts.values(), *self.groups.values()]
        return bool(links) and all(ours for _, ours in links)


@dataclass(slots=True)
class Ticket:
    root: bytes
    contact_id: str
    secret: bytes
    expires: float
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


def offer_summary(name: str, size: int) -> str:
    """The chat text of a file message (searchable, and what older front ends show)."""
    return f"\U0001f4ce {name} ({human_size(size)})"


class GroupsPort(Protocol):
    """What files need of the groups worker (groups/). Files holds group ids as bytes, as
    storage does (Transfer.groups, attachment_links); send_text is the public method and
    takes the GroupId the records carry."""

    def is_active(self, group_id: bytes) -> bool: ...

    def member_contacts(self, group_id: bytes) -> set[str]: ...

    async def send_text(
        self, group_id: GroupId, body: str, *, attachment: wire.GroupAttachment | None = None
    ) -> GroupMessageRecord: ...

    async def attachment_links(self) -> list[tuple[bytes, bytes, bytes, bool, bytes]]: ...


class Tunnel(Protocol):
    """How a bulk connection reaches a contact whose session does not run over a direct
    address (through Tor): the service's side."""

    def wanted(self, contact_id: str, conn: Connection) -> bool:
        """Whether `conn` runs through a tunnel, so a bulk connection must too."""
        ...

    async def open(self, contact_id: str) -> socket.socket:
        """A connected socket to the contact's listener; OSError if none."""
        ...

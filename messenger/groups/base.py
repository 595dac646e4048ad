"""The group worker's state, its small helpers and the records it hands the front ends;
the parts (rosters.py, joining.py, sync.py) build on it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.batch import Batcher
from ..core.indexer import SearchIndexer
from ..errors import DiskFull, GroupError
from ..events import GroupChanged
from ..identity import contact_id as make_contact_id
from ..net.transport import Connection
from ..protocol import wire
from ..records import GroupId, GroupMessageRecord, GroupRecord
from ..storage.group_repository import GroupRepository, NewGroupMessage
from ..storage.group_rows import (
    StoredGroupMessage,
    Viewer,
    group_message_record,
    group_record,
)
from .model import Group, GroupState, group_key
from .signing import verify_messages

if TYPE_CHECKING:
    from ..core.ports import Clock, ContactKeyring, Db, Emit, LanKeys, LinkRegistry, Me, Tasks
    from ..storage.repository import Repository


@dataclass(slots=True)
class Arrival:
    message: NewGroupMessage
    connection: Connection | None


class GroupBase:
    """State shared by the parts of GroupManager (built and wired by PeerService)."""

    # The ports PeerService wires in, keyword-only: one argument per collaborator.
    def __init__(  # noqa: PLR0913  (the ports PeerService wires in, keyword-only)
        self,
        *,
        me: Me,
        db: Db,
        repo: Repository,
        emit: Emit,
        tasks: Tasks,
        clock: Clock,
        links: LinkRegistry,
        contacts: ContactKeyring,
        lan: LanKeys,
        remove_contact: Callable[[str], Awaitable[None]],
        on_offers: Callable[[list[StoredGroupMessage]], Awaitable[None]],
        batch_max: int,
        not_stored: Callable[[DiskFull, set[str]], None],
        verify: Callable[[Sequence[wire.GroupMessage]], list[bool]] = verify_messages,
    ) -> None:
        self._me_port = me
        # Our key, once: Identity.ed25519_public builds it from the signing key on every
        # call (~2 us), and a message's record compared it with every member's.
        self._me_key = me.identity.ed25519_public
        self._db = db
        self._settings = repo  # settings and contact rows
        self.repo = GroupRepository(repo)
        self._emit = emit
        self._tasks = tasks
        self._clock = clock
        self._links = links
        self._contacts = contacts
        self._lan = lan
        self._remove_contact = remove_contact
        self._on_offers = on_offers
        self._not_stored = not_stored  # a full disk: these contacts' messages were not stored
        self._batch_max = batch_max
        # Checks group messages' author signatures (a port so tests can count the checks).
        self._verify = verify
        self._groups: dict[bytes, Group] = {}
        self._group_only: set[str] = set()
        self._committer: Batcher[Arrival, StoredGroupMessage | None] | None = None
        # Messages handed to the committer (or being stored from a read) and not through
        # _store yet: while any are, an arrival queues behind them (storage order).
        self._committing = 0
        self.rejected = 0  # messages and rosters refused (hostile or stale): for tests, logs
        self._open: list[bytes] = []  # groups announced as open to join, in order
        self._join_requests: dict[tuple[bytes, str], str] = {}  # (group, contact) -> name
        self._pending_acks: dict[tuple[Connection, bytes], set[bytes]] = {}
        # Arriving messages whose signatures are still to be checked, in arrival order,
        # and the task checking them (one at a time, so they are accepted in order).
        self._unverified: list[tuple[Connection, wire.GroupMessage]] = []
        self._verifying: asyncio.Task[None] | None = None
        # A message was checked on arrival in this read: the rest of the read queues.
        self._inline_checked = False
        self._closed = False
        self._verifier: ThreadPoolExecutor | None = None
        # Messages queued for checking so far, and how many of them are through (handed to
        # the committer or refused); send_text waits on these (_arrivals_checked).
        self._arrived = 0
        self._checked = 0
        self._checked_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._delivery_dirty: dict[tuple[bytes, bytes], int] = {}
        # Stored messages are added to the search index in batches, off their commits.
        self._indexer = SearchIndexer(
            db, self.repo.index_pending, lambda exc: not_stored(exc, set())
        )

    # -- helpers --------------------------------------------------------------------------

    @property
    def _me(self) -> bytes:
        return self._me_key

    def _group(self, group_id: GroupId) -> Group:
        """The group a public method names (ids are converted to bytes here, once)."""
        group = self._groups.get(group_key(group_id))
        if group is None or group.state is GroupState.DELETED:
            raise GroupError(f"no group {group_id}")
        return group

    def _active(self, group_id: GroupId) -> Group:
        group = self._group(group_id)
        if group.state is not GroupState.ACTIVE:
            raise GroupError(f"you are no longer a member of {group.roster.name!r}")
        return group

    def _admin(self, group_id: GroupId) -> Group:
        group = self._active(group_id)
        if self._me not in group.roster.admins:
            raise GroupError(f"only an admin of {group.roster.name!r} can change it")
        return group

    def _live(self, key: bytes) -> Connection | None:
        return self._links.ready(make_contact_id(key))

    def _peer_key(self, conn: Connection) -> bytes | None:
        keys = self._contacts.keys(conn.contact_id or "")
        return keys.ed25519_public if keys else None

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def is_group_only(self, contact_id: str) -> bool:
        return contact_id in self._group_only

    def arrivals_done(self) -> None:
        """Service hook (transport.FastPath.delivered): the messages of one read were all
        handed over. Unless some wait to be checked (sync.py), the next read's first
        message may be checked and stored on arrival again."""
        if not self._unverified:
            self._inline_checked = False

    # -- records --------------------------------------------------------------------------

    def record(self, group: Group, unread: int = 0) -> GroupRecord:
        return group_record(
            group.id, group.roster, group.state, unread, me=self._me_record(), online=self._online
        )

    def _message_record(self, group: Group, m: StoredGroupMessage) -> GroupMessageRecord:
        return group_message_record(
            m,
            group.roster,
            me=self._me_record(),
            names=group.names,
            delivery=group.delivery,
            others=group.others(self._me_key),
        )

    def _me_record(self) -> Viewer:
        return Viewer(self._me_key, self._me_port.display_name)

    def _online(self, contact_id: str) -> bool:
        return self._links.is_online(contact_id)

    def _changed(self, group: Group) -> None:
        self._emit(GroupChanged(self.record(group)))

    def announce(self) -> None:
        """Service hook (discovery started) and after changes: what the LAN advert says."""
        live = [
            g
            for g in self._open
            if g in self._groups
            and self._groups[g].state is GroupState.ACTIVE
            and self._me in self._groups[g].roster.admins
        ]
        self._lan.set_open_group(self._groups[live[0]].roster.name if live else None)

"""The files worker's state, its small shared helpers and its records; the parts
(offers.py, download.py, serving.py) build on it."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FileError
from ..events import TransferChanged
from ..protocol import wire
from ..records import TransferRecord, TransferState
from ..storage.attachments import AttachmentRepo
from .bulk import Channel
from .names import human_size
from .store import AttachmentStore
from .transfer import DEFAULT_FILE_SETTINGS, GroupsPort, Ticket, Transfer, Tunnel

if TYPE_CHECKING:
    from ..core.ports import Clock, ContactKeyring, Db, Emit, LinkRegistry
    from ..net.transport import Timing
    from ..storage.repository import Repository


class FileBase:
    """State shared by the parts of FileManager (built and wired by PeerService)."""

    # The ports PeerService wires in, keyword-only: one argument per collaborator.
    def __init__(  # noqa: PLR0913  (the ports PeerService wires in, keyword-only)
        self,
        *,
        folder: Path,
        db: Db,
        repo: Repository,
        emit: Emit,
        clock: Clock,
        links: LinkRegistry,
        contacts: ContactKeyring,
        groups: GroupsPort,
        timing: Timing,
        tunnel: Tunnel | None = None,
    ) -> None:
        self._tunnel = tunnel
        self._db = db
        self._settings_repo = repo
        self._emit = emit
        self._clock = clock
        self._links = links
        self._contacts = contacts
        self._groups = groups
        self._timing = timing
        self.store = AttachmentStore(folder)
        self._repo = AttachmentRepo(repo)
        self._files: dict[bytes, Transfer] = {}
        self._offer_msgs: dict[bytes, bytes] = {}  # our offer's msg id -> root
        self._early_haves: dict[bytes, set[str]] = {}  # root -> contacts (see MAX_EARLY_HAVES)
        self._tickets: dict[bytes, Ticket] = {}
        self._bulk_open = 0
        self._channels: set[Channel] = set()
        self._pool = ThreadPoolExecutor(max_workers=48, thread_name_prefix="chinwag-files")
        self._tasks: set[asyncio.Task[Any]] = set()
        self.settings: dict[str, int] = dict(DEFAULT_FILE_SETTINGS)
        self._closing = False

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _find(self, transfer_id: str) -> Transfer:
        prefix = transfer_id.strip().lower()
        if len(prefix) < 4:
            raise FileError("give at least 4 hex digits of the transfer id")
        found = [f for root, f in self._files.items() if root.hex().startswith(prefix)]
        if not found:
            raise FileError(f"no transfer {transfer_id!r}; see `file list`")
        if len(found) > 1:
            raise FileError(f"{transfer_id!r} matches several transfers; give more digits")
        return found[0]

    # -- shared helpers -----------------------------------------------------------------------

    def _have_bytes(self, f: Transfer) -> int:
        manifest, have = f.manifest, f.have
        if f.download is not None and f.download.manifest is not None:
            manifest, have = f.download.manifest, f.download.have
        if manifest is None or have is None:
            return f.row.size if f.state is TransferState.COMPLETE else 0
        if have.complete:
            return manifest.size
        return sum(manifest.stored_size(i) - 16 for i in range(manifest.count) if i in have)

    async def _set_state(self, f: Transfer, state: TransferState, **values: Any) -> None:
        f.row = replace(f.row, state=int(state), **values)
        await self._db.run(self._repo.update, f.root, state=int(state), **values)
        self._changed(f)

    async def _set_serving(self, f: Transfer, serving: bool) -> None:
        f.row = replace(f.row, serving=serving)
        await self._db.run(self._repo.update, f.root, serving=serving)
        self._changed(f)

    def _tell_sources(self, f: Transfer, action: wire.FileAction, reason: str) -> None:
        for contact_id in f.sources:
            self._tell(contact_id, f.root, action, reason)

    def _tell_all(self, f: Transfer, action: wire.FileAction, reason: str) -> None:
        for contact_id in {c for c, _ in f.contacts.values()} | set(f.peers):
            self._tell(contact_id, f.root, action, reason)

    def _tell(self, contact_id: str, root: bytes, action: wire.FileAction, reason: str) -> None:
        conn = self._links.connection(contact_id)
        if conn is not None:
            conn.send(wire.FileControl(root, action, reason))

    def _members_of_groups(self, f: Transfer) -> set[str]:
        """Everyone in the groups the file was shared in (they may hold it or want it)."""
        members: set[str] = set()
        for group_id, _ in f.groups.values():
            members |= self._groups.member_contacts(group_id)
        return members

    # -- records and events -------------------------------------------------------------------

    def _changed(self, f: Transfer) -> None:
        self._emit(TransferChanged(self._record(f)))

    def _record(self, f: Transfer) -> TransferRecord:
        download = f.download or f.last_download
        error = f.row.error
        if error is None and f.state is TransferState.DOWNLOADING:
            usable = f.sources - f.bad_sources
            waiting = [f.remote_paused[c] for c in usable if c in f.remote_paused]
            if usable and len(waiting) == len(usable):
                error = waiting[0]
            elif not any(self._links.is_online(c) for c in usable):
                error = "waiting for a source to come online"
        peers = dict(f.peers)
        for contact_id, n in f.served_bytes.items():
            status = peers.get(contact_id, "downloading")
            peers[contact_id] = f"{status}, {human_size(n)} sent"
        return TransferRecord(
            id=f.root.hex(),
            name=f.row.name,
            mime=f.row.mime,
            size=f.row.size,
            state=f.state,
            have_bytes=self._have_bytes(f),
            outgoing=f.outgoing,
            serving=f.row.serving and f.state is TransferState.COMPLETE,
            contacts=tuple(dict.fromkeys(c for c, _ in f.contacts.values())),
            groups=tuple(dict.fromkeys(g.hex() for g, _ in f.groups.values())),
            sources=tuple(sorted(f.sources)),
            dropped_sources=tuple(sorted(f.bad_sources)),
            error=error,
            speed=f.speed,
            fetched_chunks=download.fetched if download else 0,
            chunks_by_source=tuple(sorted(download.per_source.items())) if download else (),
            msg_ids=(*f.contacts, *f.groups),
            peers=tuple(sorted(peers.items())),
        )

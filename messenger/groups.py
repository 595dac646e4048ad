"""LAN group chat (docs/protocol.md §16): signed rosters, signed messages, catch-up.

A group has no server: every member holds the whole conversation and passes on what
others missed. Messages travel over the pairwise Noise sessions the service already runs;
members that are not contacts of each other are introduced by the signed roster and get a
hidden, group-only contact row (so the ordinary IKpsk2 reconnect authenticates them).

The pure parts (signing, verification, roster rules, high-water marks) are functions and
small classes at the top; :class:`GroupManager` wires them to the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar

import nacl.bindings
import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.utils

from .core.batch import Batcher
from .core.text import check_text, safe_name
from .errors import DiskFull, GroupError
from .events import (
    GroupChanged,
    GroupDeleted,
    GroupDeliveryChanged,
    GroupJoinRequested,
    GroupMessageAdded,
)
from .identity import Identity, IdentityError, conversation_id, verify_static_certificate
from .identity import contact_id as make_contact_id
from .net.transport import Connection
from .protocol import wire
from .records import GroupMemberRecord, GroupMessageRecord, GroupRecord
from .storage.group_repository import GroupRepository, NewGroupMessage, StoredGroupMessage
from .storage.repository import ContactKeys, NewContact

if TYPE_CHECKING:
    from .core.ports import Clock, ContactKeyring, Db, Emit, LanKeys, LinkRegistry, Me, Tasks
    from .storage.repository import Repository

log = logging.getLogger(__name__)

ROSTER_CONTEXT: Final = b"chinwag group roster v1"
MESSAGE_CONTEXT: Final = b"chinwag group message v1"
LEAVE_CONTEXT: Final = b"chinwag group leave v1"
NO_SIGNATURE: Final = bytes(wire.ED25519_SIGNATURE_LEN)
NO_HASH: Final = bytes(wire.GROUP_HASH_LEN)
GROUP_ID_LEN: Final = wire.MSG_ID_LEN
# Catch-up sends at most this many messages before waiting for the socket to drain.
CATCH_UP_BATCH: Final = 500
# Arriving messages checked in one go: fewer than this on the loop thread, more in
# VERIFY_THREADS threads (PyNaCl drops the GIL inside libsodium).
VERIFY_INLINE_MAX: Final = 16
VERIFY_THREADS: Final = 2
# Settings key: the groups (hex ids) we announce on the LAN as open to join.
SETTING_OPEN_GROUPS: Final = "open_groups"
# Seconds a burst of delivery acks is collected before it is written (one transaction).
DELIVERY_WRITE_DELAY: Final = 0.2
# Join requests kept at once (each needs a paired contact, so this is generous).
MAX_JOIN_REQUESTS: Final = 64
# A Lamport time or sequence number this large can only come from a hostile peer.
MAX_COUNTER: Final = 1 << 62

_RAW = nacl.encoding.RawEncoder


class GroupState(enum.IntEnum):
    ACTIVE = 0
    LEFT = 1  # we left; kept read-only until deleted
    REMOVED = 2  # an admin removed us; kept read-only until deleted
    DELETED = 3  # a tombstone: history gone, stale rosters that list us are ignored


# --------------------------------------------------------------------------- pure helpers


def signed_bytes(context: bytes, message: wire.WireMessage) -> bytes:
    """What a signature covers: a context string and the message encoded with its
    signature field set to 64 zero bytes (docs/protocol.md §16.2)."""
    unsigned: Any = dataclasses.replace(message, signature=NO_SIGNATURE)  # type: ignore[arg-type]
    return context + wire.encode_message(unsigned)


_Signed = TypeVar("_Signed", wire.GroupRoster, wire.GroupMessage, wire.GroupLeave)


def _sign(identity: Identity, context: bytes, message: _Signed) -> _Signed:
    signature = identity.signing_key.sign(signed_bytes(context, message)).signature
    return dataclasses.replace(message, signature=bytes(signature))


def sign_roster(identity: Identity, roster: wire.GroupRoster) -> wire.GroupRoster:
    signer = dataclasses.replace(roster, signer=identity.ed25519_public)
    return _sign(identity, ROSTER_CONTEXT, signer)


def sign_message(identity: Identity, message: wire.GroupMessage) -> wire.GroupMessage:
    return _sign(identity, MESSAGE_CONTEXT, message)


def sign_leave(identity: Identity, leave: wire.GroupLeave) -> wire.GroupLeave:
    return _sign(identity, LEAVE_CONTEXT, leave)


def verify(context: bytes, message: Any, key: bytes) -> bool:
    try:
        # The binding itself: a VerifyKey object per check cost ~5 us more (catch-up
        # checks thousands of these).
        nacl.bindings.crypto_sign_open(message.signature + signed_bytes(context, message), key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
        return False
    except (wire.WireError, TypeError):
        return False
    return True


def verify_messages(messages: Sequence[wire.GroupMessage]) -> list[bool]:
    """Each message's author signature (runs in the verifier threads: libsodium releases
    the GIL)."""
    return [verify(MESSAGE_CONTEXT, m, m.author) for m in messages]


def roster_hash(roster: wire.GroupRoster) -> bytes:
    return nacl.hash.blake2b(
        wire.encode_message(roster), digest_size=32, person=b"chinwag-grp-rost", encoder=_RAW
    )


def message_id(group_id: bytes, author: bytes, seq: int) -> bytes:
    """The 16-byte id of a group message: the same on every member, so duplicates are
    recognised whichever member passed the message on."""
    # hashlib's BLAKE2b (RFC 7693, as files/bulk.py uses) gives the same bytes as PyNaCl's
    # in ~0.6 us instead of ~5 us of PyNaCl's argument checks; a catch-up computes this
    # for every message (tests/unit/test_groups.py compares the two).
    data = group_id + author + seq.to_bytes(8, "big")
    return hashlib.blake2b(data, digest_size=16, person=b"chinwag-grp-mid").digest()


def group_psk(
    own_static_private: bytes, own_ed25519: bytes, their_static: bytes, their_ed25519: bytes
) -> bytes:
    """The IKpsk2 psk of two members that are not contacts: both compute it from their own
    static private key and the other's static key as the signed roster introduced it."""
    shared = nacl.bindings.crypto_scalarmult(own_static_private, their_static)
    low, high = sorted((own_ed25519, their_ed25519))
    return nacl.hash.blake2b(
        low + high, digest_size=32, key=shared, person=b"chinwag-grp-psk", encoder=_RAW
    )


def newer(a: tuple[int, bytes], b: tuple[int, bytes]) -> bool:
    """Roster order: the higher epoch wins; at the same epoch the higher hash wins, so
    concurrent updates converge to the same roster on every member."""
    return a > b


def check_roster_shape(roster: wire.GroupRoster) -> str | None:
    """Rules every roster must follow whatever its history; None if it does."""
    keys = [m.ed25519_public for m in roster.members]
    if len(set(keys)) != len(keys):
        return "a member is listed twice"
    if not set(roster.admins) <= set(keys):
        return "an admin is not a member"
    if len(set(roster.admins)) != len(roster.admins):
        return "an admin is listed twice"
    if {r.ed25519_public for r in roster.removed} & set(keys):
        return "a member is also listed as removed"
    if any(m.joined_epoch > roster.epoch for m in roster.members):
        return "a member joined in a later epoch"
    for m in roster.members:
        try:
            verify_static_certificate(m.ed25519_public, m.static_public, m.static_certificate)
        except IdentityError:
            return "a member's static key certificate does not verify"
    if not verify(ROSTER_CONTEXT, roster, roster.signer):
        return "the roster signature does not verify"
    return None


class Marks:
    """Per-author contiguous high-water marks: `mark[a]` = every seq 1..mark of author `a`
    is held; seqs held above a gap wait in `ahead` until the gap fills."""

    def __init__(self) -> None:
        self.mark: dict[bytes, int] = {}
        self.ahead: dict[bytes, set[int]] = {}

    @classmethod
    def from_seqs(cls, seqs: dict[bytes, list[int]]) -> Marks:
        marks = cls()
        for author, values in seqs.items():
            for seq in values:
                marks.add(author, seq)
        return marks

    def has(self, author: bytes, seq: int) -> bool:
        return seq <= self.mark.get(author, 0) or seq in self.ahead.get(author, ())

    def add(self, author: bytes, seq: int) -> None:
        top = self.mark.get(author, 0)
        if seq <= top:
            return
        ahead = self.ahead.setdefault(author, set())
        ahead.add(seq)
        while top + 1 in ahead:
            top += 1
            ahead.discard(top)
        self.mark[author] = top
        if not ahead:
            del self.ahead[author]

    def highest(self, author: bytes) -> int:
        return max(self.mark.get(author, 0), *self.ahead.get(author, {0}))

    def authors(self) -> set[bytes]:
        return set(self.mark) | set(self.ahead)

    def wire(self) -> tuple[wire.GroupMark, ...]:
        return tuple(wire.GroupMark(a, s) for a, s in sorted(self.mark.items()) if s > 0)[
            : wire.MAX_GROUP_MARKS
        ]


@dataclass(slots=True)
class Group:
    roster: wire.GroupRoster
    hash: bytes
    state: GroupState
    lamport: int
    next_seq: int
    marks: Marks = field(default_factory=Marks)
    delivery: dict[bytes, int] = field(default_factory=dict)  # member -> our seq it holds
    names: dict[bytes, str] = field(default_factory=dict)  # every author we have met

    @property
    def id(self) -> bytes:
        return self.roster.group_id

    @property
    def epoch(self) -> int:
        return self.roster.epoch

    @property
    def version(self) -> tuple[int, bytes]:
        return (self.roster.epoch, self.hash)

    def member(self, key: bytes) -> wire.GroupMember | None:
        for m in self.roster.members:
            if m.ed25519_public == key:
                return m
        return None

    def removed_cutoff(self, key: bytes) -> int | None:
        for r in self.roster.removed:
            if r.ed25519_public == key:
                return r.last_seq
        return None

    def check_message(self, m: wire.GroupMessage, *, signature: bool = True) -> str | None:
        """Why this group does not accept `m` now (None: it does). Signature checked last
        (not at all with signature=False: the caller checks it, in a batch)."""
        if m.lamport >= MAX_COUNTER or m.seq >= MAX_COUNTER:
            return "implausible Lamport time or sequence number"
        if m.epoch > self.epoch:
            return f"epoch {m.epoch} is newer than our roster ({self.epoch})"
        member = self.member(m.author)
        if member is not None:
            if m.epoch < member.joined_epoch:
                return f"epoch {m.epoch} is before the author joined ({member.joined_epoch})"
        else:
            removal = next((r for r in self.roster.removed if r.ed25519_public == m.author), None)
            if removal is None:
                return "the author is not a member"
            if m.seq > removal.last_seq:
                return f"the author was removed after its message {removal.last_seq}"
            # An unused seq <= last_seq is not enough: nothing signed after the removal.
            if removal.epoch is not None and m.epoch >= removal.epoch:
                return f"signed at epoch {m.epoch}, when the author was removed ({removal.epoch})"
            if removal.lamport is not None and m.lamport > removal.lamport:
                return f"Lamport time {m.lamport} is after the author's removal ({removal.lamport})"
        if signature and not verify(MESSAGE_CONTEXT, m, m.author):
            return "bad signature"
        return None


@dataclass(slots=True)
class _Arrival:
    message: NewGroupMessage
    connection: Connection | None


# --------------------------------------------------------------------------- the manager


class GroupManager:
    """Groups over the contacts' sessions. Built and wired by PeerService; its hooks:
    `load`, `on_message`, `on_adopted`, `announce`, `aclose`."""

    def __init__(
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
    ) -> None:
        self._me_port = me
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
        self._groups: dict[bytes, Group] = {}
        self._group_only: set[str] = set()
        self._committer: Batcher[_Arrival, StoredGroupMessage | None] | None = None
        self.rejected = 0  # messages and rosters refused (hostile or stale): for tests, logs
        self._open: list[bytes] = []  # groups announced as open to join, in order
        self._join_requests: dict[tuple[bytes, str], str] = {}  # (group, contact) -> name
        self._pending_acks: dict[tuple[Connection, bytes], set[bytes]] = {}
        # Arriving messages whose signatures are still to be checked, in arrival order,
        # and the task checking them (one at a time, so they are accepted in order).
        self._unverified: list[tuple[Connection, wire.GroupMessage]] = []
        self._verifying: asyncio.Task[None] | None = None
        self._verifier: ThreadPoolExecutor | None = None
        # Messages queued for checking so far, and how many of them are through (handed to
        # the committer or refused); send_text waits on these (_arrivals_checked).
        self._arrived = 0
        self._checked = 0
        self._checked_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._delivery_dirty: dict[tuple[bytes, bytes], int] = {}

    # -- lifecycle ------------------------------------------------------------------------

    async def load(self) -> None:
        for row in await self._db.run(self.repo.groups):
            roster = wire.decode_message(row.roster)
            assert isinstance(roster, wire.GroupRoster)
            group = Group(roster, row.roster_hash, GroupState(row.state), row.lamport, row.next_seq)
            group.names = {m.ed25519_public: m.display_name for m in roster.members}
            if group.state is not GroupState.DELETED:
                group.marks = Marks.from_seqs(await self._db.run(self.repo.author_seqs, row.id))
            self._groups[row.id] = group
        for group_id, marks in (await self._db.run(self.repo.delivery_marks)).items():
            if group_id in self._groups:
                self._groups[group_id].delivery = marks
        self._group_only = await self._db.run(self.repo.group_only_ids)
        opened = await self._db.run(self._settings.get_setting, SETTING_OPEN_GROUPS, [])
        self._open = [bytes.fromhex(g) for g in opened if bytes.fromhex(g) in self._groups]
        self._committer = Batcher(self._store, self._batch_max, "chinwag-group-messages")

    async def aclose(self) -> None:
        if self._verifying is not None:
            self._verifying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._verifying
        if self._verifier is not None:
            self._verifier.shutdown(wait=True)
        if self._committer is not None:
            await self._committer.aclose()
        dirty, self._delivery_dirty = self._delivery_dirty, {}
        if dirty:  # the delayed write was cancelled with the service's tasks
            marks = [(g, m, s) for (g, m), s in dirty.items()]
            await self._db.run(self.repo.set_delivery_marks, marks)

    # -- helpers --------------------------------------------------------------------------

    @property
    def _me(self) -> bytes:
        return self._me_port.identity.ed25519_public

    def _group(self, group_id: bytes) -> Group:
        group = self._groups.get(group_id)
        if group is None or group.state is GroupState.DELETED:
            raise GroupError(f"no group {group_id.hex()}")
        return group

    def _active(self, group_id: bytes) -> Group:
        group = self._group(group_id)
        if group.state is not GroupState.ACTIVE:
            raise GroupError(f"you are no longer a member of {group.roster.name!r}")
        return group

    def _admin(self, group_id: bytes) -> Group:
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

    # -- records --------------------------------------------------------------------------

    def record(self, group: Group, unread: int = 0) -> GroupRecord:
        admins = set(group.roster.admins)
        members = tuple(
            GroupMemberRecord(
                contact_id=make_contact_id(m.ed25519_public),
                name=self._me_port.display_name if m.ed25519_public == self._me else m.display_name,
                admin=m.ed25519_public in admins,
                online=m.ed25519_public == self._me
                or self._links.is_online(make_contact_id(m.ed25519_public)),
                is_me=m.ed25519_public == self._me,
            )
            for m in group.roster.members
        )
        return GroupRecord(
            id=group.id.hex(),
            name=group.roster.name,
            epoch=group.epoch,
            state=group.state.name.lower(),
            members=members,
            unread=unread,
            i_am_admin=self._me in admins and group.state is GroupState.ACTIVE,
        )

    def _message_record(self, group: Group, m: StoredGroupMessage) -> GroupMessageRecord:
        others = [k.ed25519_public for k in group.roster.members if k.ed25519_public != self._me]
        delivered = sum(1 for k in others if group.delivery.get(k, 0) >= m.seq) if m.outgoing else 0
        name = (
            self._me_port.display_name
            if m.author == self._me
            else group.names.get(m.author, "former member")
        )
        return GroupMessageRecord(
            row_id=m.row_id,
            msg_id=m.msg_id,
            group_id=m.group_id.hex(),
            author_id=make_contact_id(m.author),
            author_key=m.author,
            author_name=name,
            seq=m.seq,
            lamport=m.lamport,
            sent_at_ms=m.sent_at_ms,
            received_at_ms=m.received_at_ms,
            body=m.body,
            outgoing=m.outgoing,
            delivered_to=delivered,
            member_count=len(others),
            file_id=wire.decode_group_attachment(m.attachment).root.hex() if m.attachment else None,
        )

    def _changed(self, group: Group) -> None:
        self._emit(GroupChanged(self.record(group)))

    # -- public API -----------------------------------------------------------------------

    async def groups(self) -> list[GroupRecord]:
        unread = await self._db.run(self.repo.unread_counts)
        return [
            self.record(g, unread.get(gid, 0))
            for gid, g in self._groups.items()
            if g.state is not GroupState.DELETED
        ]

    async def group(self, group_id: bytes) -> GroupRecord:
        unread = await self._db.run(self.repo.unread_counts)
        return self.record(self._group(group_id), unread.get(group_id, 0))

    def resolve(self, query: str) -> bytes:
        """A group by id (or a unique id prefix) or by exact name (case-insensitive)."""
        q = query.strip().casefold()
        live = {gid: g for gid, g in self._groups.items() if g.state is not GroupState.DELETED}
        found = [gid for gid, g in live.items() if g.roster.name.casefold() == q]
        if not found and q:
            found = [gid for gid in live if gid.hex().startswith(q)]
        if not found:
            raise GroupError(f"no group named {query!r} or with an id starting so")
        if len(found) > 1:
            names = ", ".join(f"{live[g].roster.name} ({g.hex()[:8]})" for g in found)
            raise GroupError(f"{query!r} matches several groups: {names}; use an id prefix")
        return found[0]

    async def create_group(self, name: str, member_ids: Sequence[str]) -> GroupRecord:
        """A new group with us as admin and these contacts as members."""
        members = [await self._own_member(1)]
        for contact_id in dict.fromkeys(member_ids):
            members.append(await self._contact_member(contact_id, 1))
        roster = wire.GroupRoster(
            group_id=nacl.utils.random(GROUP_ID_LEN),
            epoch=1,
            name=self._group_name(name),
            signer=self._me,
            admins=(self._me,),
            members=tuple(members),
            removed=(),
            signature=NO_SIGNATURE,
        )
        group = await self._publish(sign_roster(self._me_port.identity, roster), previous=None)
        return self.record(group)

    async def add_members(self, group_id: bytes, member_ids: Sequence[str]) -> GroupRecord:
        group = self._admin(group_id)
        epoch = group.epoch + 1
        present = {m.ed25519_public for m in group.roster.members}
        added = []
        for contact_id in dict.fromkeys(member_ids):
            member = await self._contact_member(contact_id, epoch)
            if member.ed25519_public not in present:
                added.append(member)
        if not added:
            raise GroupError("they are all members already")
        if len(group.roster.members) + len(added) > wire.MAX_GROUP_MEMBERS:
            raise GroupError(f"a group has at most {wire.MAX_GROUP_MEMBERS} members")
        keys = {m.ed25519_public for m in added}
        return await self._update(
            group,
            members=(*group.roster.members, *added),
            removed=tuple(r for r in group.roster.removed if r.ed25519_public not in keys),
        )

    async def remove_members(self, group_id: bytes, member_ids: Sequence[str]) -> GroupRecord:
        group = self._admin(group_id)
        keys = self._member_keys(group, member_ids)
        return await self._remove(group, keys)

    async def _remove(self, group: Group, keys: set[bytes]) -> GroupRecord:
        members = tuple(m for m in group.roster.members if m.ed25519_public not in keys)
        if not members:
            raise GroupError("a group needs at least one member; delete it instead")
        admins = tuple(a for a in group.roster.admins if a not in keys) or (
            members[0].ed25519_public,
        )
        # What we hold of each removed member stays valid; anything later is refused.
        removed = (
            *group.roster.removed,
            *(
                wire.GroupRemoved(k, group.marks.highest(k), group.epoch + 1, group.lamport)
                for k in sorted(keys)
            ),
        )[-wire.MAX_GROUP_REMOVED :]
        return await self._update(group, members=members, admins=admins, removed=removed)

    async def rename(self, group_id: bytes, name: str) -> GroupRecord:
        group = self._admin(group_id)
        return await self._update(group, name=self._group_name(name))

    async def set_admins(self, group_id: bytes, admin_ids: Sequence[str]) -> GroupRecord:
        """Hand over (or share) administration: the new admins, in order."""
        group = self._admin(group_id)
        keys = self._member_keys(group, admin_ids)
        admins = tuple(m.ed25519_public for m in group.roster.members if m.ed25519_public in keys)
        return await self._update(group, admins=admins)

    async def leave(self, group_id: bytes) -> GroupRecord:
        """Leave: an admin removes itself with a roster update (handing administration to
        the next member if it was the only admin); a member asks the admins to remove it."""
        group = self._active(group_id)
        if self._me in group.roster.admins:
            if len(group.roster.members) > 1:
                await self._remove(group, {self._me})
        else:
            leave = sign_leave(
                self._me_port.identity,
                wire.GroupLeave(group.id, self._me, group.epoch, NO_SIGNATURE),
            )
            for m in group.roster.members:
                conn = self._live(m.ed25519_public)
                if conn is not None:
                    conn.send(leave)
        group.state = GroupState.LEFT
        await self._db.run(self.repo.set_state, group.id, int(group.state))
        self._changed(group)
        await self._forget_unneeded_contacts()
        return self.record(group)

    async def delete(self, group_id: bytes) -> None:
        """Delete the group's history on this device (leaving it first if still a member)."""
        group = self._group(group_id)
        if group.state is GroupState.ACTIVE:
            await self.leave(group_id)
        group.state = GroupState.DELETED
        group.marks = Marks()
        await self._db.run(self.repo.forget_group, group.id, int(group.state))
        self._emit(GroupDeleted(group.id.hex()))

    async def send_text(
        self, group_id: bytes, body: str, *, attachment: wire.GroupAttachment | None = None
    ) -> GroupMessageRecord:
        """Sign, store durably, then send to every member online now (the others get it
        at their next catch-up, from us or from any member that has it). `attachment`
        makes it a file offer (files/manager.py sends those)."""
        check_text(body)
        self._active(group_id)
        await self._arrivals_checked()
        group = self._active(group_id)
        group.lamport += 1
        seq = group.next_seq
        group.next_seq += 1
        message = sign_message(
            self._me_port.identity,
            wire.GroupMessage(
                group.id,
                self._me,
                group.epoch,
                seq,
                group.lamport,
                self._now_ms(),
                body,
                NO_SIGNATURE,
                attachment,
            ),
        )
        assert self._committer is not None
        stored = await self._committer.submit(_Arrival(self._new(message, outgoing=True), None))
        assert stored is not None
        for m in group.roster.members:
            if m.ed25519_public != self._me:
                conn = self._live(m.ed25519_public)
                if conn is not None:
                    conn.send(message)
        return self._message_record(group, stored)

    def get(self, group_id: bytes) -> Group | None:
        """The group as held here (roster, state, version; a deleted one too), or None."""
        return self._groups.get(group_id)

    def held(self) -> list[Group]:
        """Every group held here, deleted ones too (for diagnostics and tests)."""
        return list(self._groups.values())

    def is_active(self, group_id: bytes) -> bool:
        group = self._groups.get(group_id)
        return group is not None and group.state is GroupState.ACTIVE

    def member_contacts(self, group_id: bytes) -> set[str]:
        """Contact ids of the other members of an active group (empty if there is none)."""
        group = self._groups.get(group_id)
        if group is None or group.state is not GroupState.ACTIVE:
            return set()
        return {
            make_contact_id(m.ed25519_public)
            for m in group.roster.members
            if m.ed25519_public != self._me
        }

    async def history(
        self, group_id: bytes, *, limit: int = 50, before: tuple[int, bytes, int] | None = None
    ) -> list[GroupMessageRecord]:
        group = self._group(group_id)
        rows = await self._db.run(self.repo.history, group_id, limit=limit, before=before)
        return [self._message_record(group, r) for r in rows]

    async def search(
        self,
        text: str,
        *,
        group_id: bytes | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> list[GroupMessageRecord]:
        """Full-text search of every group's messages (or one group's), newest first;
        `before` (the last result's row_id) gives the next page."""
        if group_id is not None:
            self._group(group_id)
        rows = await self._db.run(
            self.repo.search, text, group_id=group_id, limit=limit, before=before
        )
        found = []
        for row in rows:
            group = self._groups.get(row.group_id)
            if group is not None:
                found.append(self._message_record(group, row))
        return found

    async def mark_read(self, group_id: bytes) -> int:
        self._group(group_id)
        return await self._db.run(self.repo.mark_seen, group_id)

    def delivery(self, group_id: bytes) -> dict[str, int]:
        """How far each member holds our messages (contact id -> our seq)."""
        group = self._group(group_id)
        return {make_contact_id(k): s for k, s in group.delivery.items()}

    async def attachment_links(self) -> list[tuple[bytes, bytes, bytes, bool, bytes]]:
        """Every stored group message that offers a file: (msg id, group, author key,
        ours, attachment as stored) (files/manager.py notes them at start)."""
        return await self._db.run(self.repo.attachment_links)

    async def repo_count(self, group_id: bytes) -> int:
        """How many messages of the group this device holds."""
        return await self._db.run(self.repo.message_count, group_id)

    def marks(self, group_id: bytes) -> dict[str, int]:
        """Our high-water mark per author (contact id -> seq): for tests and diagnostics."""
        group = self._group(group_id)
        return {make_contact_id(a): s for a, s in group.marks.mark.items()}

    # -- open groups (docs/protocol.md §16.8) ---------------------------------------------

    async def set_open(self, group_id: bytes, is_open: bool) -> GroupRecord:
        """Announce the group on the LAN as open to join (its name only, while we are
        visible), or stop. People nearby pair with us (SAS check), then ask; we approve."""
        group = self._admin(group_id) if is_open else self._group(group_id)
        self._open = [g for g in self._open if g != group_id]
        if is_open:
            self._open.insert(0, group_id)
        opened = [g.hex() for g in self._open]
        await self._db.run(self._settings.set_setting, SETTING_OPEN_GROUPS, opened)
        self.announce()
        return self.record(group)

    def open_groups(self) -> list[str]:
        return [g.hex() for g in self._open]

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

    async def request_join(self, contact_id: str, name: str) -> None:
        """Ask a contact (met nearby and paired) to let us into its open group `name`."""
        conn = self._links.connection(contact_id)
        if conn is None or not conn.session.established:
            raise GroupError("they are not online: ask again when they are")
        conn.send(wire.GroupJoinRequest(self._group_name(name)))

    def join_requests(self) -> list[dict[str, str]]:
        return [
            {"group": g.hex(), "group_name": self._groups[g].roster.name, "contact": c, "name": n}
            for (g, c), n in self._join_requests.items()
            if g in self._groups
        ]

    async def approve(self, group_id: bytes, contact_id: str) -> GroupRecord:
        name = self._join_requests.pop((group_id, contact_id), None)
        if name is None:
            raise GroupError("no such join request")
        try:
            return await self.add_members(group_id, [contact_id])
        except BaseException:
            self._join_requests[(group_id, contact_id)] = name
            raise

    def decline(self, group_id: bytes, contact_id: str) -> None:
        self._join_requests.pop((group_id, contact_id), None)

    async def _on_join_request(self, conn: Connection, request: wire.GroupJoinRequest) -> None:
        contact_id = conn.contact_id
        if contact_id is None or contact_id in self._group_only:
            return
        wanted = request.name.casefold()
        for group_id in self._open:
            group = self._groups.get(group_id)
            if (
                group is None
                or group.state is not GroupState.ACTIVE
                or self._me not in group.roster.admins
                or group.roster.name.casefold() != wanted
            ):
                continue
            keys = self._contacts.keys(contact_id)
            if keys is None or group.member(keys.ed25519_public) is not None:
                return
            if len(self._join_requests) >= MAX_JOIN_REQUESTS:
                return
            record = await self._db.run(self._settings.contact, contact_id)
            name = record.display_name if record else "?"
            self._join_requests[(group_id, contact_id)] = name
            self._emit(GroupJoinRequested(group_id.hex(), contact_id, name))
            return

    # -- building rosters -----------------------------------------------------------------

    def _group_name(self, name: str) -> str:
        cleaned = safe_name(name)
        if not cleaned:
            raise GroupError(f"a group name needs 1 to {wire.MAX_NAME_CHARS} characters")
        return cleaned

    def _member_keys(self, group: Group, member_ids: Sequence[str]) -> set[bytes]:
        by_id = {make_contact_id(m.ed25519_public): m.ed25519_public for m in group.roster.members}
        keys = set()
        for contact_id in member_ids:
            key = by_id.get(contact_id)
            if key is None:
                raise GroupError(f"{contact_id} is not a member of {group.roster.name!r}")
            keys.add(key)
        return keys

    async def _own_member(self, epoch: int) -> wire.GroupMember:
        me = self._me_port
        return wire.GroupMember(
            ed25519_public=self._me,
            static_public=me.identity.static_public,
            static_certificate=me.identity.static_certificate,
            discovery_key=me.own_discovery_key,
            display_name=me.display_name,
            joined_epoch=epoch,
            addresses=_valid_addresses(str(a) for a in me.addresses()),
        )

    async def _contact_member(self, contact_id: str, epoch: int) -> wire.GroupMember:
        if contact_id not in self._contacts:
            raise GroupError(f"no contact {contact_id}")
        if self._contacts.is_held(contact_id):
            # Its safety number changed: it gets nothing of ours until the user answers.
            raise GroupError(
                "this contact's safety number has changed: verify or accept it before "
                "adding it to a group"
            )
        ed, static, cert, disc, name, addresses = await self._db.run(
            self.repo.member_material, contact_id
        )
        return wire.GroupMember(
            ed25519_public=ed,
            static_public=static,
            static_certificate=cert,
            discovery_key=disc,
            display_name=name or "?",
            joined_epoch=epoch,
            addresses=_valid_addresses(json.loads(addresses)),
        )

    async def _update(self, group: Group, **changes: Any) -> GroupRecord:
        roster = dataclasses.replace(
            group.roster, epoch=group.epoch + 1, signature=NO_SIGNATURE, **changes
        )
        signed = sign_roster(self._me_port.identity, roster)
        updated = await self._publish(signed, previous=group)
        return self.record(updated)

    async def _publish(self, roster: wire.GroupRoster, previous: Group | None) -> Group:
        """Apply a roster we signed and send it to every member online, old and new."""
        problem = check_roster_shape(roster)
        if problem is not None:
            raise GroupError(f"cannot make that roster: {problem}")
        before = previous.roster if previous is not None else None
        group = await self._accept(roster, previous)
        self._push_roster(roster, before, source=None)
        await self._forget_unneeded_contacts()
        return group

    def _push_roster(
        self,
        roster: wire.GroupRoster,
        before: wire.GroupRoster | None,
        source: Connection | None,
    ) -> None:
        targets = {m.ed25519_public for m in roster.members}
        if before is not None:  # removed members learn that they were removed
            targets |= {m.ed25519_public for m in before.members}
        targets.discard(self._me)
        for key in targets:
            conn = self._live(key)
            if conn is not None and conn is not source:
                conn.send(roster)

    # -- applying rosters -----------------------------------------------------------------

    async def _accept(self, roster: wire.GroupRoster, previous: Group | None) -> Group:
        """Make a checked roster current: store it, introduce new members, let removed ones
        go, and tell the front ends."""
        mine = any(m.ed25519_public == self._me for m in roster.members)
        old_state = previous.state if previous is not None else GroupState.ACTIVE
        state = GroupState.ACTIVE if mine else GroupState.REMOVED
        if old_state is GroupState.LEFT:
            state = GroupState.LEFT
        await self._db.run(
            self.repo.save_roster,
            roster.group_id,
            epoch=roster.epoch,
            name=roster.name,
            roster=wire.encode_message(roster),
            roster_hash=roster_hash(roster),
            state=int(state),
            now=self._clock(),
        )
        if previous is None:
            group = Group(roster, roster_hash(roster), state, 0, 1)
            self._groups[roster.group_id] = group
        else:
            group = previous
            group.roster = roster
            group.hash = roster_hash(roster)
            group.state = state
        group.names.update({m.ed25519_public: m.display_name for m in roster.members})
        if state is GroupState.ACTIVE:
            await self._introduce(roster.members)
        if roster.group_id in self._open:
            self.announce()
        self._changed(group)
        return group

    async def _introduce(self, members: Iterable[wire.GroupMember]) -> None:
        """Members we have no contact row for get a hidden, group-only one (with a psk both
        sides derive), so the ordinary reconnect machinery dials and authenticates them."""
        for m in members:
            key = m.ed25519_public
            contact_id = make_contact_id(key)
            if key == self._me or contact_id in self._contacts:
                continue
            psk = group_psk(self._me_port.identity.static_private, self._me, m.static_public, key)
            new = NewContact(
                id=contact_id,
                display_name=safe_name(m.display_name) or "?",
                ed25519_public=key,
                x25519_public=m.static_public,
                static_certificate=m.static_certificate,
                psk=psk,
                discovery_key=m.discovery_key,
                conversation_id=conversation_id(self._me, key),
                verified=False,
                addresses=m.addresses,
            )
            await self._db.run(self.repo.add_group_contact, new, self._clock())
            self._group_only.add(contact_id)
            self._contacts.remember(ContactKeys(contact_id, key, m.static_public, psk))
            self._lan.contact_key_known(contact_id, m.discovery_key)
            self._links.dial_now(contact_id)

    async def _forget_unneeded_contacts(self) -> None:
        """A group-only contact that shares no active group with us any more is forgotten
        (its session closed), so a removed member cannot reach us."""
        needed = {
            make_contact_id(m.ed25519_public)
            for g in self._groups.values()
            if g.state is GroupState.ACTIVE
            for m in g.roster.members
        }
        for contact_id in sorted(self._group_only - needed):
            self._group_only.discard(contact_id)
            if contact_id in self._contacts:
                await self._remove_contact(contact_id)

    async def _on_roster(self, conn: Connection, roster: wire.GroupRoster) -> None:
        group = self._groups.get(roster.group_id)
        version = (roster.epoch, roster_hash(roster))
        if group is not None and not newer(version, group.version):
            return  # stale or a duplicate: nothing to do
        if group is not None and group.state in (GroupState.DELETED, GroupState.LEFT):
            return
        problem = check_roster_shape(roster)
        if problem is None:
            problem = await self._check_authority(roster, group, conn)
        if problem is not None:
            self.rejected += 1
            log.warning("roster for %s refused: %s", roster.group_id.hex()[:8], problem)
            return
        before = group.roster if group is not None else None
        await self._accept(roster, group)
        self._push_roster(roster, before, source=conn)  # pass it on (gossip)
        await self._forget_unneeded_contacts()

    async def _check_authority(
        self, roster: wire.GroupRoster, group: Group | None, conn: Connection
    ) -> str | None:
        if group is None:
            # A group new to us: introduced by one of our contacts, signed by one of the
            # admins it names, and listing us.
            if conn.contact_id in self._group_only:
                return "a new group must come from a contact"
            if roster.signer not in roster.admins:
                return "signed by someone who is not an admin"
            if not any(m.ed25519_public == self._me for m in roster.members):
                return "we are not a member"
            return None
        # An update: signed by an admin of the version it builds on (the newest we hold
        # with an older epoch; for a tie, the one before the tie).
        base_bytes = await self._db.run(self.repo.roster_before, roster.group_id, roster.epoch)
        base = group.roster
        if base_bytes is not None:
            decoded = wire.decode_message(base_bytes)
            assert isinstance(decoded, wire.GroupRoster)
            base = decoded
        if roster.signer not in base.admins and roster.signer not in group.roster.admins:
            return "signed by someone who is not an admin"
        return None

    # -- messages and catch-up ------------------------------------------------------------

    async def on_message(self, conn: Connection, message: wire.WireMessage) -> bool:
        """Service hook: True if the message was a group matter (handled here)."""
        match message:
            case wire.GroupMessage():
                self._on_group_message(conn, message)
            case wire.GroupHave():
                await self._on_have(conn, message)
            case wire.GroupAck():
                await self._on_ack(conn, message)
            case wire.GroupRoster():
                await self._on_roster(conn, message)
            case wire.GroupLeave():
                await self._on_leave(conn, message)
            case wire.GroupJoinRequest():
                await self._on_join_request(conn, message)
            case wire.ChatMessage() if conn.contact_id in self._group_only:
                pass  # a group-only peer is no contact: no 1:1 chat with it
            case _:
                return False
        return True

    def _new(self, m: wire.GroupMessage, *, outgoing: bool) -> NewGroupMessage:
        return NewGroupMessage(
            msg_id=message_id(m.group_id, m.author, m.seq),
            group_id=m.group_id,
            author=m.author,
            seq=m.seq,
            epoch=m.epoch,
            lamport=m.lamport,
            sent_at_ms=m.sent_at_ms,
            body=m.body,
            signature=m.signature,
            outgoing=outgoing,
            attachment=(
                wire.encode_group_attachment(m.attachment) if m.attachment is not None else None
            ),
        )

    def _on_group_message(self, conn: Connection, m: wire.GroupMessage) -> None:
        group = self._groups.get(m.group_id)
        if group is None or group.state is not GroupState.ACTIVE:
            return
        sender = self._peer_key(conn)
        if sender is None or group.member(sender) is None:
            self.rejected += 1  # only members pass messages on
            log.warning("group message from a non-member refused")
            return
        if group.marks.has(m.author, m.seq):
            self._ack_soon(conn, group, m.author)  # its first ack may have been lost
            return
        problem = group.check_message(m, signature=False)
        if problem is not None:
            self.rejected += 1
            log.warning("group message refused: %s", problem)
            return
        self._arrived += 1
        if self._verifying is None:
            # Nothing waits to be checked: check this one now (a live message, or the
            # first of a read), without a loop pass on the way to the committer.
            self._accept_verified([(conn, m)], verify_messages([m]))
            self._note_checked(self._checked + 1)
            self._verifying = self._tasks.spawn(self._verify_arrivals(), "chinwag-group-verify")
            return
        # The signature is checked by _verify_arrivals with the rest of this read.
        self._unverified.append((conn, m))

    async def _verify_arrivals(self) -> None:
        """Check the signatures of what arrived (the messages of a whole read, often
        hundreds in a catch-up), then hand the good ones to the committer, in order.
        Ed25519 verification is most of a catch-up's CPU: a big batch is checked in
        threads beside the loop, a few on the loop (a thread hand-off costs more)."""
        try:
            while self._unverified:
                batch, self._unverified = self._unverified, []
                messages = [m for _, m in batch]
                if len(messages) < VERIFY_INLINE_MAX:
                    good = verify_messages(messages)
                else:
                    good = await self._verify_in_threads(messages)
                self._accept_verified(batch, good)
                self._note_checked(self._checked + len(batch))
        finally:
            self._verifying = None
            if self._unverified or self._checked < self._arrived:  # cancelled or failed
                self._unverified.clear()
                self._note_checked(self._arrived)

    def _note_checked(self, checked: int) -> None:
        self._checked = checked
        waiting, self._checked_waiters = self._checked_waiters, []
        for target, waiter in waiting:
            if target > checked:
                self._checked_waiters.append((target, waiter))
            elif not waiter.done():
                waiter.set_result(None)

    async def _arrivals_checked(self) -> None:
        """Wait until the messages that arrived before now are checked and handed on, so
        that a message of ours comes after them (Lamport time, storage order), as when an
        arrival went to the committer at once."""
        target = self._arrived
        if self._checked >= target:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._checked_waiters.append((target, waiter))
        await waiter

    async def _verify_in_threads(self, messages: list[wire.GroupMessage]) -> list[bool]:
        if self._verifier is None:
            self._verifier = ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="chinwag-verify")
        loop = asyncio.get_running_loop()
        size = -(-len(messages) // VERIFY_THREADS)
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(self._verifier, verify_messages, messages[i : i + size])
                for i in range(0, len(messages), size)
            )
        )
        return [ok for part in parts for ok in part]

    def _accept_verified(
        self, batch: list[tuple[Connection, wire.GroupMessage]], good: list[bool]
    ) -> None:
        assert self._committer is not None
        for (conn, m), ok in zip(batch, good, strict=True):
            if not ok:
                self.rejected += 1
                log.warning("group message refused: bad signature")
                continue
            group = self._groups.get(m.group_id)
            if group is None or group.state is not GroupState.ACTIVE:
                continue  # left or deleted while it was checked
            group.lamport = max(group.lamport, m.lamport)
            self._committer.post(_Arrival(self._new(m, outgoing=False), conn))  # nobody awaits it

    async def _store(self, arrivals: list[_Arrival]) -> list[StoredGroupMessage | None]:
        """Group commit of group messages (ours and arriving ones), then acks and events."""
        try:
            messages = [a.message for a in arrivals]
            # db.write: a few messages (a live one) commit right here when the database
            # thread is idle, as 1:1 messages do, instead of two thread hand-offs.
            stored = await self._db.write(
                [m.body for m in messages], self.repo.store_messages, messages, self._now_ms()
            )
        except DiskFull as exc:
            # Not stored, not acknowledged, not marked: the members that sent them are
            # told to catch us up again on a new session once there is room (the service
            # closes those sessions then, protocol.md 9.3).
            senders = {
                a.connection.contact_id
                for a in arrivals
                if a.connection is not None and a.connection.contact_id is not None
            }
            self._not_stored(exc, senders)
            if any(a.connection is None for a in arrivals):
                raise  # one of ours: the user's send fails with the plain DiskFull
            return [None] * len(arrivals)
        by_id = {m.msg_id: m for m in stored}
        acks: dict[Connection, dict[bytes, set[bytes]]] = {}
        for a in arrivals:
            new = a.message
            group = self._groups.get(new.group_id)
            if group is None:
                continue
            group.marks.add(new.author, new.seq)
            if a.connection is not None:
                acks.setdefault(a.connection, {}).setdefault(new.group_id, set()).add(new.author)
        for conn, by_group in acks.items():
            for group_id, authors in by_group.items():
                self._ack(conn, self._groups[group_id], authors)
        offers = [m for m in stored if m.attachment is not None and not m.outgoing]
        if offers:
            await self._on_offers(offers)  # before the UI hears of the messages
        for m in stored:
            group = self._groups.get(m.group_id)
            if group is not None:
                self._emit(GroupMessageAdded(self._message_record(group, m)))
        return [by_id.get(a.message.msg_id) for a in arrivals]

    def _ack_soon(self, conn: Connection, group: Group, author: bytes) -> None:
        """Duplicates (a second member replaying a catch-up) are acknowledged once per
        turn of the loop, not once per message."""
        if not self._pending_acks:
            asyncio.get_running_loop().call_soon(self._flush_acks)
        self._pending_acks.setdefault((conn, group.id), set()).add(author)

    def _flush_acks(self) -> None:
        pending, self._pending_acks = self._pending_acks, {}
        for (conn, group_id), authors in pending.items():
            group = self._groups.get(group_id)
            if group is not None:
                self._ack(conn, group, authors)

    def _ack(self, conn: Connection, group: Group, authors: Iterable[bytes]) -> None:
        if conn.closed.is_set() or not conn.session.established:
            return
        marks = tuple(wire.GroupMark(a, group.marks.mark.get(a, 0)) for a in sorted(authors))
        conn.send(wire.GroupAck(group.id, marks[: wire.MAX_GROUP_MARKS]))

    def on_adopted(self, conn: Connection, contact_id: str) -> None:
        """Service hook: a session went live. Tell the peer what we hold of every group we
        share with it (it answers with what we lack, and we with what it lacks)."""
        keys = self._contacts.keys(contact_id)
        if keys is None:
            return
        for group in self._groups.values():
            if group.state is GroupState.ACTIVE and group.member(keys.ed25519_public):
                conn.send(self._have(group))

    def _have(self, group: Group) -> wire.GroupHave:
        return wire.GroupHave(group.id, group.epoch, group.hash, group.marks.wire())

    async def _on_have(self, conn: Connection, have: wire.GroupHave) -> None:
        peer = self._peer_key(conn)
        group = self._groups.get(have.group_id)
        if peer is None:
            return
        if group is None:
            if have.epoch > 0 and conn.contact_id not in self._group_only:
                conn.send(wire.GroupHave(have.group_id, 0, NO_HASH, ()))  # "show me"
            return
        if group.state is GroupState.LEFT and peer in group.roster.admins:
            conn.send(
                sign_leave(
                    self._me_port.identity,
                    wire.GroupLeave(group.id, self._me, group.epoch, NO_SIGNATURE),
                )
            )
            return
        if group.state is not GroupState.ACTIVE:
            return
        theirs = (have.epoch, have.roster_hash)
        if group.member(peer) is None:
            if newer(theirs, group.version):
                conn.send(self._have(group))  # they may know that it was added: show us
            elif group.removed_cutoff(peer) is not None and newer(group.version, theirs):
                await self._send_rosters(conn, group, have.epoch)  # "you were removed"
            return  # a non-member gets no messages from us
        if newer(group.version, theirs):
            await self._send_rosters(conn, group, have.epoch)
        elif newer(theirs, group.version):
            conn.send(self._have(group))
        theirs_marks = {m.author: m.seq for m in have.marks}
        self._note_delivery(group, peer, theirs_marks.get(self._me, 0))
        self._tasks.spawn(self._send_missing(conn, group, theirs_marks), "chinwag-group-catch-up")

    async def _send_rosters(self, conn: Connection, group: Group, their_epoch: int) -> None:
        if their_epoch == 0:
            conn.send(group.roster)
            return
        # Every version after theirs (and ours at their epoch, if it beat theirs), so each
        # step can be checked against the one before it.
        for data in await self._db.run(self.repo.roster_versions, group.id, their_epoch - 1):
            roster = wire.decode_message(data)
            assert isinstance(roster, wire.GroupRoster)
            conn.send(roster)

    async def _send_missing(self, conn: Connection, group: Group, theirs: dict[bytes, int]) -> None:
        """Stream every message the peer lacks, author by author, in bounded batches."""
        for author in sorted(group.marks.authors()):
            after = theirs.get(author, 0)
            if group.marks.highest(author) <= after:
                continue
            while not conn.closed.is_set():
                batch = await self._db.run(
                    self.repo.messages_after, group.id, author, after, CATCH_UP_BATCH
                )
                if not batch:
                    break
                for m in batch:
                    conn.send(
                        wire.GroupMessage(
                            m.group_id,
                            m.author,
                            m.epoch,
                            m.seq,
                            m.lamport,
                            m.sent_at_ms,
                            m.body,
                            m.signature,
                            _attachment(m.attachment),
                        )
                    )
                after = batch[-1].seq
                await conn.drain()

    async def _on_ack(self, conn: Connection, ack: wire.GroupAck) -> None:
        peer = self._peer_key(conn)
        group = self._groups.get(ack.group_id)
        if peer is None or group is None or group.member(peer) is None:
            return
        for mark in ack.marks:
            if mark.author == self._me:
                self._note_delivery(group, peer, mark.seq)

    def _note_delivery(self, group: Group, member: bytes, seq: int) -> None:
        seq = min(seq, group.next_seq - 1)  # nobody holds what we have not written
        if seq <= group.delivery.get(member, 0):
            return
        group.delivery[member] = seq
        # Recorded in one write per burst of acks, off the path of the next send.
        if not self._delivery_dirty:
            self._tasks.spawn(self._write_delivery(), "chinwag-group-delivery")
        self._delivery_dirty[(group.id, member)] = seq
        self._emit(GroupDeliveryChanged(group.id.hex(), make_contact_id(member), seq))

    async def _write_delivery(self) -> None:
        await asyncio.sleep(DELIVERY_WRITE_DELAY)
        dirty, self._delivery_dirty = self._delivery_dirty, {}
        marks = [(g, m, s) for (g, m), s in dirty.items()]
        await self._db.run(self.repo.set_delivery_marks, marks)

    async def _on_leave(self, conn: Connection, leave: wire.GroupLeave) -> None:
        group = self._groups.get(leave.group_id)
        if group is None or group.state is not GroupState.ACTIVE:
            return
        if group.member(leave.member) is None:
            return
        if not verify(LEAVE_CONTEXT, leave, leave.member):
            self.rejected += 1
            return
        if self._me in group.roster.admins:
            await self._remove(group, {leave.member})
        else:  # pass it to the admins we can reach
            for admin in group.roster.admins:
                target = self._live(admin)
                if target is not None and target is not conn:
                    target.send(leave)


def _attachment(stored: bytes | None) -> wire.GroupAttachment | None:
    """A stored attachment back as signed (it was validated before it was stored)."""
    return wire.decode_group_attachment(stored) if stored is not None else None


def _valid_addresses(addresses: Iterable[str]) -> tuple[str, ...]:
    """Addresses that pass the wire rules, at most MAX_MEMBER_ADDRESSES of them."""
    found: list[str] = []
    for text in addresses:
        try:
            wire.check_address(text, "address")
        except wire.WireError:
            continue
        found.append(text)
    return tuple(dict.fromkeys(found))[: wire.MAX_MEMBER_ADDRESSES]

"""A group as a member holds it: roster rules, message rules, high-water marks (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from ..errors import GroupError
from ..identity import IdentityError, verify_static_certificate
from ..protocol import wire
from ..records import GroupId
from ..storage.group_rows import GroupState as GroupState  # the state column's values
from .signing import MESSAGE_CONTEXT, ROSTER_CONTEXT, verify

NO_HASH: Final = bytes(wire.GROUP_HASH_LEN)
GROUP_ID_LEN: Final = wire.MSG_ID_LEN
# A Lamport time or sequence number this large can only come from a hostile peer.
MAX_COUNTER: Final = 1 << 62


def group_key(group_id: GroupId) -> bytes:
    """The bytes (wire, storage) of a group id as the records carry it: 32 lowercase hex
    digits exactly (GroupError for anything else, so no two spellings name one group)."""
    try:
        key = bytes.fromhex(group_id)
    except (TypeError, ValueError):
        key = b""
    if len(key) != GROUP_ID_LEN or key.hex() != group_id:
        raise GroupError(f"not a group id: {group_id!r} (it is {2 * GROUP_ID_LEN} hex digits)")
    return key


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
    # The members by key, for the roster they were taken from (every message and ack
    # looks its sender up: a walk of the roster was ~1-2 us with 20 members).
    _members: dict[bytes, wire.GroupMember] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _members_of: wire.GroupRoster | None = field(
        default=None, init=False, repr=False, compare=False
    )
    # The members other than us, for the roster and key they were taken from: every
    # message's record counts them (a walk of 20 members, ~1 us a message).
    _others: list[bytes] = field(default_factory=list, init=False, repr=False, compare=False)
    _others_of: tuple[wire.GroupRoster, bytes] | None = field(
        default=None, init=False, repr=False, compare=False
    )

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
        roster = self.roster
        if self._members_of is not roster:
            self._members = {m.ed25519_public: m for m in reversed(roster.members)}
            self._members_of = roster
        return self._members.get(key)

    def others(self, me: bytes) -> list[bytes]:
        """The members' keys other than `me`, in roster order (do not change the list)."""
        of = self._others_of
        if of is None or of[0] is not self.roster or of[1] != me:
            self._others = [m.ed25519_public for m in self.roster.members if m.ed25519_public != me]
            self._others_of = (self.roster, me)
        return self._others

    def removed_cutoff(self, key: bytes) -> int | None:
        for r in self.roster.removed:
            if r.ed25519_public == key:
                return r.last_seq
        return None

    # One return per rule, in the order docs/protocol.md §16.4 lists them.
    def check_message(self, m: wire.GroupMessage, *, signature: bool = True) -> str | None:  # noqa: PLR0911
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

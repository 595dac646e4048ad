"""Group rows as plain SQL over a DB-API cursor, and the records the front ends get from
them, without SQLAlchemy or the group worker.

The group worker builds its records here (groups/base.py), and the desktop app's first
paint reads the group list on a raw sqlcipher3 connection (storage/reader.py) before the
service, SQLAlchemy and the worker are imported: one query and one way to make a record,
so the list painted first and the list the service shows cannot drift apart.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..identity import contact_id as make_contact_id
from ..protocol import wire
from ..records import GroupMemberRecord, GroupMessageRecord, GroupRecord


class GroupState(enum.IntEnum):
    """A group's `state` column."""

    ACTIVE = 0
    LEFT = 1  # we left; kept read-only until deleted
    REMOVED = 2  # an admin removed us; kept read-only until deleted
    DELETED = 3  # a tombstone: history gone, stale rosters that list us are ignored


@dataclass(frozen=True, slots=True)
class StoredGroupMessage:
    """A group message as stored (the signed wire fields plus local bookkeeping)."""

    row_id: int
    msg_id: bytes
    group_id: bytes
    author: bytes
    seq: int
    epoch: int
    lamport: int
    sent_at_ms: int
    received_at_ms: int | None
    body: str
    signature: bytes
    outgoing: bool
    seen: bool
    attachment: bytes | None = None  # the file offered, as signed (wire.GroupAttachment)


GROUP_MESSAGE_COLUMNS = (
    "id, msg_id, group_id, author, seq, epoch, lamport, sent_at_ms, received_at_ms, body, "
    "signature, outgoing, seen, attachment"
)


def stored_group_message(row: Sequence[Any]) -> StoredGroupMessage:
    """A StoredGroupMessage from the columns of GROUP_MESSAGE_COLUMNS, in that order."""
    return StoredGroupMessage(
        row_id=row[0],
        msg_id=row[1],
        group_id=row[2],
        author=row[3],
        seq=row[4],
        epoch=row[5],
        lamport=row[6],
        sent_at_ms=row[7],
        received_at_ms=row[8],
        body=row[9],
        signature=row[10],
        outgoing=bool(row[11]),
        seen=bool(row[12]),
        attachment=row[13],
    )


# Every group not deleted, with its unread count (kept by triggers, migration 0008) and its
# newest message in the order every member shares (ix_group_messages_order finds it).
_NEWEST = (
    "SELECT id FROM group_messages WHERE group_id = g.id "
    "ORDER BY lamport DESC, author DESC, seq DESC LIMIT 1"
)
SELECT_GROUP_LIST = (
    "SELECT g.id, g.roster, g.state, g.unread, "  # noqa: S608  (constant columns)
    + ", ".join(f"m.{c.strip()}" for c in GROUP_MESSAGE_COLUMNS.split(","))
    + f" FROM chat_groups g LEFT JOIN group_messages m ON m.id = ({_NEWEST}) "
    f"WHERE g.state != {GroupState.DELETED.value} ORDER BY g.created_at"
)


@dataclass(frozen=True, slots=True)
class GroupListRow:
    group_id: bytes
    roster: wire.GroupRoster
    state: GroupState
    unread: int
    newest: StoredGroupMessage | None


def group_list_rows(cursor: Any) -> list[GroupListRow]:
    """Every group not deleted, with its roster, unread count and newest message."""
    found = []
    for row in cursor.execute(SELECT_GROUP_LIST).fetchall():
        roster = wire.decode_message(row[1])
        if not isinstance(roster, wire.GroupRoster):  # only we write this column
            raise ValueError("a stored group roster is not a roster")
        newest = stored_group_message(row[4:]) if row[4] is not None else None
        found.append(GroupListRow(row[0], roster, GroupState(row[2]), row[3], newest))
    return found


def delivery_marks(cursor: Any) -> dict[bytes, dict[bytes, int]]:
    """Group -> member -> the highest seq of ours the member is known to hold."""
    found: dict[bytes, dict[bytes, int]] = {}
    for group_id, member, seq in cursor.execute("SELECT group_id, member, seq FROM group_delivery"):
        found.setdefault(group_id, {})[member] = seq
    return found


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who reads the records: our identity key and display name."""

    key: bytes
    name: str


def group_record(
    group_id: bytes,
    roster: wire.GroupRoster,
    state: GroupState,
    unread: int,
    *,
    me: Viewer,
    online: Callable[[str], bool],
) -> GroupRecord:
    admins = set(roster.admins)
    members = tuple(
        GroupMemberRecord(
            contact_id=make_contact_id(m.ed25519_public),
            name=me.name if m.ed25519_public == me.key else m.display_name,
            admin=m.ed25519_public in admins,
            online=m.ed25519_public == me.key or online(make_contact_id(m.ed25519_public)),
            is_me=m.ed25519_public == me.key,
        )
        for m in roster.members
    )
    return GroupRecord(
        id=group_id.hex(),
        name=roster.name,
        epoch=roster.epoch,
        state=state.name.lower(),
        members=members,
        unread=unread,
        i_am_admin=me.key in admins and state is GroupState.ACTIVE,
    )


def group_message_record(
    m: StoredGroupMessage,
    roster: wire.GroupRoster,
    *,
    me: Viewer,
    names: Mapping[bytes, str],
    delivery: Mapping[bytes, int],
    others: Sequence[bytes] | None = None,
) -> GroupMessageRecord:
    """`names`: every author met (a former member keeps a name); `delivery`: member ->
    our highest seq it holds; `others`: the roster's members but us, if known already."""
    if others is None:
        others = [k.ed25519_public for k in roster.members if k.ed25519_public != me.key]
    delivered = sum(1 for k in others if delivery.get(k, 0) >= m.seq) if m.outgoing else 0
    name = me.name if m.author == me.key else names.get(m.author, "former member")
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


def group_list(cursor: Any, me: Viewer) -> list[tuple[GroupRecord, GroupMessageRecord | None]]:
    """The group list as the window shows it before anyone is online: each group with
    its newest message (the group worker's `group_list` answers the same from memory)."""
    marks = delivery_marks(cursor)
    listed = []
    for row in group_list_rows(cursor):
        record = group_record(
            row.group_id, row.roster, row.state, row.unread, me=me, online=lambda _: False
        )
        newest = None
        if row.newest is not None:
            names = {m.ed25519_public: m.display_name for m in row.roster.members}
            newest = group_message_record(
                row.newest,
                row.roster,
                me=me,
                names=names,
                delivery=marks.get(row.group_id, {}),
            )
        listed.append((record, newest))
    return listed

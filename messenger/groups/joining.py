"""Open groups (docs/protocol.md §16.8): announced on the LAN, joined on request."""

from __future__ import annotations

from typing import Final

from ..errors import GroupError
from ..events import GroupJoinRequested
from ..net.transport import Connection
from ..protocol import wire
from ..records import GroupId, GroupRecord
from .model import GroupState, group_key
from .rosters import GroupRosters

# Settings key: the groups (hex ids) we announce on the LAN as open to join.
SETTING_OPEN_GROUPS: Final = "open_groups"
# Join requests kept at once (each needs a paired contact, so this is generous).
MAX_JOIN_REQUESTS: Final = 64


class GroupJoining(GroupRosters):
    """Open groups and the join requests people nearby send for them."""

    async def set_open(self, group_id: GroupId, is_open: bool) -> GroupRecord:
        """Announce the group on the LAN as open to join (its name only, while we are
        visible), or stop. People nearby pair with us (SAS check), then ask; we approve."""
        group = self._admin(group_id) if is_open else self._group(group_id)
        self._open = [g for g in self._open if g != group.id]
        if is_open:
            self._open.insert(0, group.id)
        opened = [g.hex() for g in self._open]
        await self._db.run(self._settings.set_setting, SETTING_OPEN_GROUPS, opened)
        self.announce()
        return self.record(group)

    def open_groups(self) -> list[GroupId]:
        return [g.hex() for g in self._open]

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

    async def approve(self, group_id: GroupId, contact_id: str) -> GroupRecord:
        key = (group_key(group_id), contact_id)
        name = self._join_requests.pop(key, None)
        if name is None:
            raise GroupError("no such join request")
        try:
            return await self.add_members(group_id, [contact_id])
        except BaseException:
            self._join_requests[key] = name
            raise

    def decline(self, group_id: GroupId, contact_id: str) -> None:
        self._join_requests.pop((group_key(group_id), contact_id), None)

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

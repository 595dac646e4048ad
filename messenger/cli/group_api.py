"""`chinwag-cli group ...`: the group commands of the local API, as JSON-able results.

Mixed into LocalApi (api.py), so they work in-process and over the control socket."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FileError, GroupError, ServiceError
from ..records import GroupId, GroupMessageRecord, GroupRecord

if TYPE_CHECKING:
    from .. import PeerService

GROUP_ACTIONS = (
    "list",
    "create",
    "add",
    "remove",
    "rename",
    "admins",
    "leave",
    "delete",
    "send",
    "file",
    "history",
    "open",
    "close",
    "join",
    "requests",
    "approve",
    "decline",
    "search",
)


def group_json(g: GroupRecord) -> dict[str, Any]:
    return {
        "id": g.id,
        "name": g.name,
        "epoch": g.epoch,
        "state": g.state,
        "admin": g.i_am_admin,
        "unread": g.unread,
        "members": [
            {
                "id": m.contact_id,
                "name": m.name,
                "admin": m.admin,
                "online": m.online,
                "me": m.is_me,
            }
            for m in g.members
        ],
    }


def group_message_json(m: GroupMessageRecord) -> dict[str, Any]:
    return {
        "id": m.msg_id.hex(),
        "outgoing": m.outgoing,
        "author": m.author_name,
        "author_id": m.author_id,
        "seq": m.seq,
        "lamport": m.lamport,
        "sent_at": dt.datetime.fromtimestamp(m.sent_at_ms / 1000, dt.UTC).isoformat(),
        "body": m.body,
        "file": m.file_id,
        "delivered_to": m.delivered_to if m.outgoing else None,
        "members": m.member_count,
    }


class GroupCommands:
    service: PeerService

    async def cmd_group(
        self,
        action: str,
        group: str | None = None,
        names: list[str] | None = None,
        text: str | None = None,
        limit: int = 50,
    ) -> Any:
        try:
            return await self._group(action, group, names or [], text, limit)
        except GroupError as exc:
            raise ServiceError(str(exc)) from None

    async def _group(
        self, action: str, group: str | None, names: list[str], text: str | None, limit: int
    ) -> Any:
        args = _GroupArgs(group, names, text, limit)
        whole = _WHOLE.get(action)  # actions on no particular group
        if whole is not None:
            return await whole(self, args)
        if action not in GROUP_ACTIONS:
            raise ServiceError(f"unknown group action {action!r}: {', '.join(GROUP_ACTIONS)}")
        if not group:
            raise ServiceError(f"use: group {action} GROUP ...")
        group_id = self.service.groups.resolve(group)
        return await _ONE[action](self, action, group_id, args)

    # -- actions on no particular group

    async def _g_list(self, args: _GroupArgs) -> Any:
        return [group_json(g) for g in await self.service.groups.groups()]

    async def _g_requests(self, args: _GroupArgs) -> Any:
        return self.service.groups.join_requests()

    async def _g_join(self, args: _GroupArgs) -> Any:
        if not args.group or not args.names:
            raise ServiceError("use: group join CONTACT GROUP-NAME")
        contact = await self.service.contacts.resolve(args.group)
        await self.service.groups.request_join(contact.id, " ".join(args.names))
        return {"asked": contact.display_name, "group_name": " ".join(args.names)}

    async def _g_search(self, args: _GroupArgs) -> Any:
        groups = self.service.groups
        query = " ".join([args.group or "", *args.names]).strip()
        if not query:
            raise ServiceError("use: group search TEXT")
        found = await groups.search(query, limit=args.limit)
        names_of = {g.id: g.name for g in await groups.groups()}
        return {
            "query": query,
            "messages": [
                {"group": names_of.get(m.group_id, m.group_id), **group_message_json(m)}
                for m in found
            ],
        }

    async def _g_create(self, args: _GroupArgs) -> Any:
        if not args.group:
            raise ServiceError("use: group create NAME [CONTACT ...]")
        ids = [(await self.service.contacts.resolve(n)).id for n in args.names]
        return group_json(await self.service.groups.create_group(args.group, ids))

    # -- actions on one group (resolved already)

    async def _g_add(self, action: str, group_id: GroupId, args: _GroupArgs) -> Any:
        ids = [(await self.service.contacts.resolve(n)).id for n in args.names]
        return group_json(await self.service.groups.add_members(group_id, ids))

    async def _g_remove(self, action: str, group_id: GroupId, args: _GroupArgs) -> Any:
        ids = [await self._member(group_id, n) for n in args.names]
        return group_json(await self.service.groups.remove_members(group_id, ids))

    async def _g_admins(self, action: str, group_id: GroupId, args: _GroupArgs) -> Any:
        ids = [await self._member(group_id, n) for n in args.names]
        return group_json(await self.service.groups.set_admins(group_id, ids))

    async def _g_rename(self, action: str, group_id: GroupId, args: _GroupArgs) -> Any:
        if not args.text:
            raise ServiceError("use: group rename GROUP NEW-NAME")
        return group_json(await self.service.groups.rename(group_id, args.text))

    async def _g_open(self, action: str, group_id: GroupId, args: _GroupArgs) -> Any:
        groups = self.service.groups
        return {
            **group_json(await groups.set_open(group_id, action == "open")),
            "open": group_id in groups.open_groups(),
        }

    async def _g_answer(self, action: str, group_id: GroupId, args: _GroupArgs) -> Any:
        """approve or decline a join request."""
        if len(args.names) != 1:
            raise ServiceError(f"use: group {action} GROUP CONTACT")
        contact = await self.service.contacts.resolve(args.names[0])
        if action == "decline":
            self.service.groups.decline(group_id, contact.id)
            return {"declined": contact.display_name}
        return group_json(await self.service.groups.approve(group_id, contact.id))

    async def _g_leave(self, action: str, group_id: GroupId, args: _GroupArgs) -> Any:
        return group_json(await self.service.groups.leave(group_id))

    async def _g_delete(self, action: str, group_id: GroupId, args: _GroupArgs) -> Any:
        await self.service.groups.delete(group_id)
        return {"deleted": group_id}

    async def _g_file(self, action: str, group_id: GroupId, args: _GroupArgs) -> Any:
        from .api import transfer_json

        if len(args.names) != 1:
            raise ServiceError("use: group file GROUP PATH")
        try:
            sent = await self.service.files.send_to_group(group_id, Path(args.names[0]))
        except FileError as exc:
            raise ServiceError(str(exc)) from None
        return transfer_json(sent, await self.service.contacts.display_names())

    async def _g_send(self, action: str, group_id: GroupId, args: _GroupArgs) -> Any:
        groups = self.service.groups
        if args.text is None:
            raise ServiceError("use: group send GROUP TEXT")
        record = await groups.send_text(group_id, args.text)
        return {"group": (await groups.group(group_id)).name, **group_message_json(record)}

    async def _g_history(self, action: str, group_id: GroupId, args: _GroupArgs) -> Any:
        groups = self.service.groups
        messages = await groups.history(group_id, limit=args.limit)
        await groups.mark_read(group_id)
        return {
            "group": group_json(await groups.group(group_id)),
            "messages": [group_message_json(m) for m in messages],
        }

    def _group_id(self, query: str) -> GroupId:
        """A group by name or id prefix, for commands outside `group` (file forward #GROUP)."""
        try:
            return self.service.groups.resolve(query)
        except GroupError as exc:
            raise ServiceError(str(exc)) from None

    async def _member(self, group_id: GroupId, query: str) -> str:
        """A member by name (case-insensitive) or id prefix; members need not be contacts."""
        record = await self.service.groups.group(group_id)
        q = query.strip().casefold()
        found = [m for m in record.members if m.name.casefold() == q] or [
            m for m in record.members if q and m.contact_id.startswith(q)
        ]
        if len(found) != 1:
            what = "no member" if not found else "several members"
            raise ServiceError(f"{what} of {record.name!r} named {query!r} or with that id prefix")
        return found[0].contact_id


@dataclass(frozen=True, slots=True)
class _GroupArgs:
    group: str | None  # a group (or, for join, a contact) by name or id prefix
    names: list[str]
    text: str | None
    limit: int


# Which method runs each action (a table, not a branch chain).
_WHOLE: dict[str, Callable[[GroupCommands, _GroupArgs], Awaitable[Any]]] = {
    "list": GroupCommands._g_list,
    "requests": GroupCommands._g_requests,
    "join": GroupCommands._g_join,
    "search": GroupCommands._g_search,
    "create": GroupCommands._g_create,
}
_ONE: dict[str, Callable[[GroupCommands, str, GroupId, _GroupArgs], Awaitable[Any]]] = {
    "add": GroupCommands._g_add,
    "remove": GroupCommands._g_remove,
    "admins": GroupCommands._g_admins,
    "rename": GroupCommands._g_rename,
    "open": GroupCommands._g_open,
    "close": GroupCommands._g_open,
    "approve": GroupCommands._g_answer,
    "decline": GroupCommands._g_answer,
    "leave": GroupCommands._g_leave,
    "delete": GroupCommands._g_delete,
    "file": GroupCommands._g_file,
    "send": GroupCommands._g_send,
    "history": GroupCommands._g_history,
}

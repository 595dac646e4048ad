"""`chinwag-cli group ...`: the group commands of the local API, as JSON-able results.

Mixed into LocalApi (api.py), so they work in-process and over the control socket."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FileError, GroupError, ServiceError
from ..records import GroupMessageRecord, GroupRecord

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
        groups = self.service.groups
        if action == "list":
            return [group_json(g) for g in await groups.groups()]
        if action == "requests":
            return groups.join_requests()
        if action == "join":
            if not group or not names:
                raise ServiceError("use: group join CONTACT GROUP-NAME")
            contact = await self.service.contacts.resolve(group)
            await groups.request_join(contact.id, " ".join(names))
            return {"asked": contact.display_name, "group_name": " ".join(names)}
        if action == "search":
            query = " ".join([group or "", *names]).strip()
            if not query:
                raise ServiceError("use: group search TEXT")
            found = await groups.search(query, limit=limit)
            names_of = {g.id: g.name for g in await groups.groups()}
            return {
                "query": query,
                "messages": [
                    {"group": names_of.get(m.group_id, m.group_id), **group_message_json(m)}
                    for m in found
                ],
            }
        if action == "create":
            if not group:
                raise ServiceError("use: group create NAME [CONTACT ...]")
            ids = [(await self.service.contacts.resolve(n)).id for n in names]
            return group_json(await groups.create_group(group, ids))
        if action not in GROUP_ACTIONS:
            raise ServiceError(f"unknown group action {action!r}: {', '.join(GROUP_ACTIONS)}")
        if not group:
            raise ServiceError(f"use: group {action} GROUP ...")
        group_id = groups.resolve(group)
        if action == "add":
            ids = [(await self.service.contacts.resolve(n)).id for n in names]
            return group_json(await groups.add_members(group_id, ids))
        if action == "remove":
            ids = [await self._member(group_id, n) for n in names]
            return group_json(await groups.remove_members(group_id, ids))
        if action == "admins":
            ids = [await self._member(group_id, n) for n in names]
            return group_json(await groups.set_admins(group_id, ids))
        if action == "rename":
            if not text:
                raise ServiceError("use: group rename GROUP NEW-NAME")
            return group_json(await groups.rename(group_id, text))
        if action in ("open", "close"):
            return {
                **group_json(await groups.set_open(group_id, action == "open")),
                "open": group_id.hex() in groups.open_groups(),
            }
        if action in ("approve", "decline"):
            if len(names) != 1:
                raise ServiceError(f"use: group {action} GROUP CONTACT")
            contact = await self.service.contacts.resolve(names[0])
            if action == "decline":
                groups.decline(group_id, contact.id)
                return {"declined": contact.display_name}
            return group_json(await groups.approve(group_id, contact.id))
        if action == "leave":
            return group_json(await groups.leave(group_id))
        if action == "delete":
            await groups.delete(group_id)
            return {"deleted": group_id.hex()}
        if action == "file":
            from .api import transfer_json

            if len(names) != 1:
                raise ServiceError("use: group file GROUP PATH")
            try:
                sent = await self.service.files.send_to_group(group_id, Path(names[0]))
            except FileError as exc:
                raise ServiceError(str(exc)) from None
            return transfer_json(sent, await self.service.contacts.display_names())
        if action == "send":
            if text is None:
                raise ServiceError("use: group send GROUP TEXT")
            record = await groups.send_text(group_id, text)
            return {"group": (await groups.group(group_id)).name, **group_message_json(record)}
        messages = await groups.history(group_id, limit=limit)
        await groups.mark_read(group_id)
        return {
            "group": group_json(await groups.group(group_id)),
            "messages": [group_message_json(m) for m in messages],
        }

    def _group_id(self, query: str) -> bytes:
        """A group by name or id prefix, for commands outside `group` (file forward #GROUP)."""
        try:
            return self.service.groups.resolve(query)
        except GroupError as exc:
            raise ServiceError(str(exc)) from None

    async def _member(self, group_id: bytes, query: str) -> str:
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

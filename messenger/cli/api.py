"""The local API: the commands the CLI, scripts and bots use, as JSON-able results.

The same `LocalApi` serves a profile opened in-process and, over the control socket
(`control.py`), the profile held by a running `chinwag-cli run`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from .. import PeerService
from ..errors import FileError, ServiceError
from ..identity import format_safety_number
from ..net.tor.control import MAX_STREAMS_PER_CIRCUIT
from ..qr import save_invite_qr
from ..records import ContactRecord, MessageRecord, TransferRecord
from .group_api import GroupCommands


def contact_json(
    service: PeerService, c: ContactRecord, unread: int = 0, queued: int = 0
) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.display_name,
        "verified": c.verified,
        # A new identity under a known name: nothing is sent until verified or accepted.
        "key_changed": c.key_changed,
        "replaces": c.replaces,
        "online": service.contacts.is_online(c.id),
        "last_seen": c.last_seen,
        "addresses": list(c.addresses),
        "unread": unread,
        "queued": queued,
    }


def message_json(m: MessageRecord, author: str) -> dict[str, Any]:
    return {
        "id": m.msg_id.hex(),
        "outgoing": m.outgoing,
        "author": author,
        "seq": m.seq,
        "lamport": m.lamport,
        "sent_at": dt.datetime.fromtimestamp(m.sent_at_ms / 1000, dt.UTC).isoformat(),
        "state": m.state.name.lower(),
        "body": m.body,
    }


def transfer_json(t: TransferRecord, names: dict[str, str] | None = None) -> dict[str, Any]:
    names = names or {}
    return {
        "id": t.id,
        "name": t.name,
        "mime": t.mime,
        "size": t.size,
        "state": t.state.name.lower(),
        "have_bytes": t.have_bytes,
        "progress": round(t.progress, 4),
        "outgoing": t.outgoing,
        "serving": t.serving,
        "contacts": [names.get(c, c) for c in t.contacts],
        "groups": [names.get(g, g) for g in t.groups],
        "sources": [names.get(c, c) for c in t.sources],
        "dropped_sources": [names.get(c, c) for c in t.dropped_sources],
        "error": t.error,
        "speed": round(t.speed),
        "eta": None if t.eta is None else round(t.eta, 1),
        "fetched_chunks": t.fetched_chunks,
        "chunks_by_source": {names.get(c, c): n for c, n in t.chunks_by_source},
        "peers": {names.get(c, c): status for c, status in t.peers},
        "messages": [m.hex() for m in t.msg_ids],
    }


FILE_ACTIONS = (
    "send",
    "list",
    "show",
    "accept",
    "pause",
    "resume",
    "cancel",
    "save",
    "forward",
    "config",
)


class LocalApi(GroupCommands):
    def __init__(self, service: PeerService) -> None:
        self.service = service

    async def call(self, command: str, args: dict[str, Any]) -> Any:
        handler = getattr(self, f"cmd_{command}", None)
        if handler is None:
            raise ServiceError(f"unknown command {command!r}")
        return await handler(**args)

    async def cmd_whoami(self) -> dict[str, Any]:
        s = self.service
        return {
            "name": s.display_name,
            "id": s.contact_id,
            "fingerprint": s.fingerprint,
            "profile": str(s.profile.path),
            "listen_port": s.listen_port,
            "running": s.listen_port is not None,
            "addresses": [str(a) for a in s.addresses()],
            "settings": dict(s.settings),
        }

    async def cmd_tor(self) -> dict[str, Any]:
        """Tor reach of the running peer: state, bootstrap, onion address, tor's ports, and
        the circuits in use."""
        reach = self.service.tor
        if reach is None:
            return {"state": "off", "percent": 0, "summary": "", "onion": None, "error": None}
        status = reach.status
        manager = reach.manager
        return {
            "state": status.state,
            "percent": status.percent,
            "summary": status.summary,
            "onion": reach.address,
            "error": status.error,
            "pid": manager.pid if manager is not None else None,
            "socks": "{}:{}".format(*manager.socks_address)
            if manager is not None and manager.socks_address
            else None,
            "restarts": manager.restarts if manager is not None else 0,
            "circuits": await manager.circuits() if manager is not None else {},
            # tor's proof-of-work defence on our onion (None: no onion yet)
            "pow_defence": manager.service.pow_defence
            if manager is not None and manager.service is not None
            else None,
            "streams_per_circuit": MAX_STREAMS_PER_CIRCUIT,
        }

    async def cmd_invite(
        self, ttl: int = 24 * 3600, addresses: list[str] | None = None, qr: str | None = None
    ) -> dict[str, Any]:
        code, invite = await self.service.invites.create_invite(ttl=ttl, addresses=addresses or [])
        if qr:
            save_invite_qr(code, Path(qr))
        return {
            "code": code,
            "expires_at": dt.datetime.fromtimestamp(invite.expires_at, dt.UTC).isoformat(),
            "addresses": [str(a) for a in invite.addresses],
            "qr": qr,
        }

    async def cmd_accept(self, code: str) -> dict[str, Any]:
        contact = await self.service.invites.accept_invite(code)
        return contact_json(self.service, contact)

    async def cmd_contacts(self) -> list[dict[str, Any]]:
        unread = await self.service.chat.unread_counts()
        queued = await self.service.chat.outbox_counts()
        return [
            contact_json(self.service, c, unread.get(c.id, 0), queued.get(c.id, 0))
            for c in await self.service.contacts.all()
        ]

    async def cmd_send(self, contact: str, text: str) -> dict[str, Any]:
        record = await self.service.contacts.resolve(contact)
        message = await self.service.chat.send_text(record.id, text)
        return {
            "contact": record.display_name,
            "online": self.service.contacts.is_online(record.id),
            **message_json(message, self.service.display_name),
        }

    async def cmd_history(
        self, contact: str, limit: int = 50, mark_read: bool = True
    ) -> dict[str, Any]:
        record = await self.service.contacts.resolve(contact)
        messages = await self.service.chat.history(record.id, limit=limit)
        if mark_read:
            await self.service.chat.mark_read(record.id)
        me = self.service.display_name
        return {
            "contact": contact_json(self.service, record),
            "messages": [
                message_json(m, me if m.outgoing else record.display_name) for m in messages
            ],
        }

    async def cmd_verify(self, contact: str, confirm: bool = False) -> dict[str, Any]:
        record = await self.service.contacts.resolve(contact)
        digits = self.service.contacts.safety_number(record)
        if confirm:
            await self.service.contacts.set_verified(record.id, True)
        return {
            "contact": record.display_name,
            "id": record.id,
            "safety_number": digits,
            "formatted": format_safety_number(digits),
            "verified": confirm or record.verified,
        }

    async def cmd_accept_key(self, contact: str, send_queued: bool = False) -> dict[str, Any]:
        """Accept a contact's changed safety number without verifying it."""
        record = await self.service.contacts.resolve(contact)
        waiting = await self.service.contacts.waiting_for_replaced(record.id) if send_queued else 0
        updated = await self.service.contacts.accept_new_key(record.id, send_queued=send_queued)
        return {**contact_json(self.service, updated), "moved": waiting}

    async def cmd_set(self, key: str, value: Any) -> dict[str, Any]:
        await self.service.set_setting(key, value)
        return {"key": key, "value": value}

    # -- LAN discovery and nearby pairing (need a running peer) --------------------------

    async def cmd_lan(self) -> dict[str, Any]:
        return {**self.service.lan.status(), "pairings": len(self.service.pairing.pending())}

    async def cmd_nearby(self) -> dict[str, Any]:
        s = self.service
        return {
            "visible": s.visible,
            "discovery": s.lan.status()["discovery"],
            "people": [
                {
                    "id": p.id,
                    "name": p.name,
                    "addresses": list(p.addresses),
                    "seen_at": p.seen_at,
                    "open_group": p.open_group,
                }
                for p in s.lan.nearby()
            ],
        }

    async def cmd_pair(self, nearby: str) -> dict[str, Any]:
        started = await self.service.pairing.pair(nearby)
        return {"pairing": started.pairing_id, "name": started.name, "sas": started.sas}

    async def cmd_pairing(self, action: str = "list", pairing: str | None = None) -> Any:
        if action == "list":
            return self.service.pairing.pairings()
        if action not in ("accept", "reject") or not pairing:
            raise ServiceError("use: pairing list | pairing accept ID | pairing reject ID")
        contact = await self.service.pairing.answer(pairing, action == "accept")
        if contact is None:
            return {"pairing": pairing, "paired": False}
        return {"pairing": pairing, "paired": True, **contact_json(self.service, contact)}

    async def cmd_remove(self, contact: str) -> dict[str, Any]:
        record = await self.service.contacts.resolve(contact)
        await self.service.contacts.remove(record.id)
        return {"removed": record.id, "name": record.display_name}

    # -- files (docs/protocol.md §17) ------------------------------------------------------

    async def cmd_file(
        self,
        action: str,
        id: str | None = None,
        contact: str | None = None,
        path: str | None = None,
        settings: dict[str, int] | None = None,
    ) -> Any:
        files = self.service.files
        names = await self.service.contacts.display_names()
        try:
            if action == "list":
                return [transfer_json(t, names) for t in files.transfers()]
            if action == "config":
                return await files.configure(**(settings or {}))
            if action == "send":
                if not contact or not path:
                    raise ServiceError("use: file send CONTACT PATH")
                record = await self.service.contacts.resolve(contact)
                return transfer_json(await files.send_file(record.id, Path(path)), names)
            if not id:
                raise ServiceError(f"use: file {action} ID (see `file list`)")
            done = await self._file_action(action, id, contact, path, names)
            if done is not None:
                return done
        except FileError as exc:
            raise ServiceError(str(exc)) from None
        raise ServiceError(f"unknown file action {action!r}; one of {', '.join(FILE_ACTIONS)}")

    async def _file_action(
        self, action: str, id: str, contact: str | None, path: str | None, names: dict[str, str]
    ) -> Any:
        """An action on one transfer; None: not one of those (unknown action)."""
        files = self.service.files
        if action == "show":
            return transfer_json(files.find(id), names)
        if action in ("accept", "pause", "resume", "cancel"):
            return transfer_json(await getattr(files, action)(id), names)
        if action == "save":
            if not path:
                raise ServiceError("use: file save ID PATH")
            saved = await files.save_as(id, Path(path))
            return {**transfer_json(files.find(id), names), "saved_to": str(saved)}
        if action == "forward":
            if not contact:
                raise ServiceError("use: file forward ID CONTACT (or #GROUP)")
            if contact.startswith("#"):
                group_id = self._group_id(contact[1:])
                return transfer_json(await files.forward_to_group(id, group_id), names)
            record = await self.service.contacts.resolve(contact)
            return transfer_json(await files.forward(id, record.id), names)
        return None

"""Membership: admin changes, building our rosters, checking and applying anyone's
(docs/protocol.md §16.3, §16.6, §16.7)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import nacl.utils

from ..core.text import safe_name
from ..errors import GroupError
from ..identity import contact_id as make_contact_id
from ..identity import conversation_id
from ..net.transport import Connection
from ..protocol import wire
from ..records import GroupId, GroupRecord
from ..storage.repository import ContactKeys, NewContact
from .base import GroupBase
from .model import GROUP_ID_LEN, Group, GroupState, check_roster_shape, newer
from .signing import LEAVE_CONTEXT, NO_SIGNATURE, group_psk, roster_hash, sign_roster, verify

log = logging.getLogger(__name__)


class GroupRosters(GroupBase):
    """Roster changes: ours (signed and pushed) and arriving ones (checked, applied, passed on)."""

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

    async def add_members(self, group_id: GroupId, member_ids: Sequence[str]) -> GroupRecord:
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

    async def remove_members(self, group_id: GroupId, member_ids: Sequence[str]) -> GroupRecord:
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

    async def rename(self, group_id: GroupId, name: str) -> GroupRecord:
        group = self._admin(group_id)
        return await self._update(group, name=self._group_name(name))

    async def set_admins(self, group_id: GroupId, admin_ids: Sequence[str]) -> GroupRecord:
        """Hand over (or share) administration: the new admins, in order."""
        group = self._admin(group_id)
        keys = self._member_keys(group, admin_ids)
        admins = tuple(m.ed25519_public for m in group.roster.members if m.ed25519_public in keys)
        return await self._update(group, admins=admins)

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

"""Contacts: the keyring (every contact's keys in memory, looked up by id or identity
key) and the Contacts worker (the list, verification, a changed safety number, removal).

PeerService builds both; the other workers (links, groups, files, nearby pairing) read the
keyring through the ContactKeyring port (core/ports.py), front ends use `service.contacts`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from .core.text import safe_name
from .errors import ContactNotFound, ServiceError
from .events import ContactAdded, ContactChanged, ContactRemoved, SafetyNumberChanged
from .identity import conversation_id, safety_number
from .records import ContactRecord
from .storage.repository import ContactKeys, NewContact

if TYPE_CHECKING:
    from .core.ports import Db, Emit
    from .records import GroupRecord
    from .storage.repository import Repository

log = logging.getLogger(__name__)


class ContactBook:
    def __init__(self, own_ed25519: bytes) -> None:
        self._own = own_ed25519
        self._keys: dict[str, ContactKeys] = {}
        self._by_ed25519: dict[bytes, str] = {}
        self._conversations: dict[bytes, bytes] = {}
        # Contacts whose safety number changed and is not yet verified or accepted by the
        # user: nothing of ours is sent to them (docs/threat-model.md §4.14).
        self._held: set[str] = set()

    def keys(self, contact_id: str) -> ContactKeys | None:
        return self._keys.get(contact_id)

    def by_ed25519(self, ed25519_public: bytes) -> str | None:
        return self._by_ed25519.get(ed25519_public)

    def __contains__(self, contact_id: object) -> bool:
        return contact_id in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._keys))

    def __len__(self) -> int:
        return len(self._keys)

    def remember(self, keys: ContactKeys) -> None:
        old = self._keys.get(keys.id)
        if old is not None and old.ed25519_public != keys.ed25519_public:
            self._by_ed25519.pop(old.ed25519_public, None)
        self._keys[keys.id] = keys
        self._by_ed25519[keys.ed25519_public] = keys.id

    def hold(self, contact_id: str, held: bool = True) -> None:
        if held:
            self._held.add(contact_id)
        else:
            self._held.discard(contact_id)

    def is_held(self, contact_id: str) -> bool:
        """Is this contact's changed safety number still waiting for the user's answer?"""
        return contact_id in self._held

    def forget(self, contact_id: str) -> ContactKeys | None:
        self._held.discard(contact_id)
        keys = self._keys.pop(contact_id, None)
        if keys is not None:
            self._by_ed25519.pop(keys.ed25519_public, None)
        return keys

    def conversation(self, contact_id: str) -> bytes:
        """The id of our 1:1 conversation with a contact (KeyError if it is none)."""
        return self.conversation_with(self._keys[contact_id])

    def conversation_with(self, keys: ContactKeys) -> bytes:
        # Cached: a BLAKE2b through PyNaCl costs ~17 us and runs twice per chat message.
        conv = self._conversations.get(keys.ed25519_public)
        if conv is None:
            conv = conversation_id(self._own, keys.ed25519_public)
            self._conversations[keys.ed25519_public] = conv
        return conv


class ContactLinks(Protocol):
    """What the contacts worker uses of the links worker (net/links.py)."""

    def is_online(self, contact_id: str) -> bool: ...

    def route(self, contact_id: str) -> str | None: ...

    def forget(self, contact_id: str) -> None: ...


class ContactLan(Protocol):
    """What the contacts worker uses of LAN presence (net/presence.py)."""

    def forget_contact(self, contact_id: str) -> None: ...

    async def rotate_key(self) -> None: ...


class Contacts:
    """Our contacts: the list and its queries, verification, a changed safety number
    (held until the user answers), names they tell us, removal. PeerService builds one
    and exposes it as `service.contacts`."""

    def __init__(  # noqa: PLR0913  (the ports PeerService wires in, keyword-only)
        self,
        *,
        own_ed25519: bytes,
        db: Db,
        repo: Repository,
        emit: Emit,
        keyring: ContactBook,
        links: ContactLinks,
        lan: ContactLan,
        groups: Callable[[], Awaitable[list[GroupRecord]]],
        send_waiting: Callable[[str], None],
    ) -> None:
        self._own = own_ed25519
        self._db = db
        self._repo = repo
        self._emit = emit
        self._keyring = keyring
        self._links = links
        self._lan = lan
        self._groups = groups  # for the names of group-only members and of groups
        self._send_waiting = send_waiting  # chat: send a contact's outbox now, or dial it

    async def load(self) -> None:
        """Every contact's keys into the keyring; changed safety numbers held."""
        for keys in await self._db.run(self._repo.contact_keys):
            self._keyring.remember(keys)
        for contact_id in await self._db.run(self._repo.key_changed_contacts):
            self._keyring.hold(contact_id)

    # -- queries ----------------------------------------------------------------------

    async def all(self) -> list[ContactRecord]:
        return await self._db.run(self._repo.contacts)

    async def get(self, contact_id: str) -> ContactRecord | None:
        return await self._db.run(self._repo.contact, contact_id)

    async def display_names(self) -> dict[str, str]:
        """Names by id for what the CLI prints: contacts, group-only members and groups."""
        names: dict[str, str] = {}
        for group in await self._groups():
            names[group.id] = group.name
            names.update((m.contact_id, m.name) for m in group.members)
        names.update((c.id, c.display_name) for c in await self.all())
        return names

    async def resolve(self, query: str) -> ContactRecord:
        """The one contact a name or id prefix names (ContactNotFound: none, or several)."""
        found = await self._db.run(self._repo.find_contacts, query)
        if not found:
            raise ContactNotFound(f"no contact named {query!r} or with an id starting so")
        if len(found) > 1:
            names = ", ".join(f"{c.display_name} ({c.id[:8]})" for c in found)
            raise ContactNotFound(f"{query!r} matches several contacts: {names}; use an id prefix")
        return found[0]

    def is_online(self, contact_id: str) -> bool:
        return self._links.is_online(contact_id)

    def route(self, contact_id: str) -> str | None:
        """How the contact's live session runs: "lan", "direct", "tor"; None: offline."""
        return self._links.route(contact_id)

    def safety_number(self, contact: ContactRecord) -> str:
        return safety_number(self._own, contact.ed25519_public)

    # -- changes ----------------------------------------------------------------------

    async def added(self, new: NewContact) -> ContactRecord:
        """A contact was stored (invite, nearby pairing): known in memory, and shown."""
        self._keyring.remember(ContactKeys(new.id, new.ed25519_public, new.x25519_public, new.psk))
        record = await self._db.run(self._repo.contact, new.id)
        assert record is not None
        if record.key_changed:
            self._keyring.hold(record.id)
            log.warning(
                "%s (%s) uses the name of contact %s with another identity key: held until "
                "the user verifies or accepts its safety number",
                record.display_name,
                record.id[:8],
                (record.replaces or "?")[:8],
            )
        self._emit(ContactAdded(record))
        if record.key_changed:
            self._emit(SafetyNumberChanged(record))
        return record

    async def changed(self, contact_id: str) -> None:
        """Show the contact as it is stored now."""
        record = await self._db.run(self._repo.contact, contact_id)
        if record is not None:
            self._emit(ContactChanged(record))

    async def renamed(self, contact_id: str, display_name: str) -> None:
        """The contact told us its new name (ProfileUpdate): made safe, stored, shown."""
        await self._db.run(self._repo.set_display_name, contact_id, safe_name(display_name))
        await self.changed(contact_id)

    async def set_verified(self, contact_id: str, verified: bool = True) -> None:
        """Mark a contact (un)verified. Verifying also answers a changed safety number:
        the hold is lifted (messages waiting for the contact it replaces stay there)."""
        await self._db.run(self._repo.set_verified, contact_id, verified)
        if verified:
            self._keyring.hold(contact_id, False)
        await self.changed(contact_id)

    async def waiting_for_replaced(self, contact_id: str) -> int:
        """How many of our texts wait for the earlier contact this one replaces (what
        accept_new_key(send_queued=True) would move); 0 when it replaces none."""
        record = await self._db.run(self._repo.contact, contact_id)
        if record is None or record.replaces is None:
            return 0
        return await self._db.run(self._repo.waiting_texts, record.replaces)

    async def accept_new_key(self, contact_id: str, *, send_queued: bool = False) -> ContactRecord:
        """The user accepts a contact's changed safety number without verifying it: from now
        on messages are sent to it. With `send_queued`, our messages still waiting for the
        earlier contact it replaces (texts; file offers stay) are moved to it and sent;
        without, they stay queued for the earlier contact. Only what the user chooses goes."""
        record = await self._db.run(self._repo.contact, contact_id)
        if record is None:
            raise ContactNotFound(f"no contact {contact_id}")
        if not self._keyring.is_held(contact_id):
            raise ServiceError(f"{record.display_name}'s safety number has not changed")
        moved = await self._db.run(self._repo.accept_new_key, contact_id, move_queued=send_queued)
        self._keyring.hold(contact_id, False)
        await self.changed(contact_id)
        if moved and record.replaces is not None:
            await self.changed(record.replaces)  # its outbox count changed
            self._send_waiting(contact_id)
        updated = await self._db.run(self._repo.contact, contact_id)
        assert updated is not None
        return updated

    async def remove(self, contact_id: str) -> None:
        """Forget a contact and its conversation; then rotate our LAN advertising key, so
        it can no longer recognise us on a LAN (the others learn the new key)."""
        if self._keyring.forget(contact_id) is None:
            raise ContactNotFound(f"no contact {contact_id}")
        self._links.forget(contact_id)
        await self._db.run(self._repo.delete_contact, contact_id)
        self._lan.forget_contact(contact_id)
        await self._lan.rotate_key()
        self._emit(ContactRemoved(contact_id))

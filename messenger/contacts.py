"""The contact keyring: every contact's keys in memory, looked up by id or identity key.

Built and filled by PeerService from the database; the workers (links, groups, files,
nearby pairing) read it through the ContactKeyring port (core/ports.py).
"""

from __future__ import annotations

from collections.abc import Iterator

from .identity import conversation_id
from .storage.repository import ContactKeys


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

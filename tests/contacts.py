"""A contact row with fresh random keys, for tests that store rows straight into a
repository (no handshake ever uses these keys)."""

from __future__ import annotations

import os

from messenger.storage.repository import NewContact


def random_contact(name: str, addresses: tuple[str, ...] = ()) -> NewContact:
    return NewContact(
        id=os.urandom(16).hex(),
        display_name=name,
        ed25519_public=os.urandom(32),
        x25519_public=os.urandom(32),
        static_certificate=os.urandom(64),
        psk=os.urandom(32),
        discovery_key=os.urandom(32),
        conversation_id=os.urandom(16),
        verified=False,
        addresses=addresses,
    )

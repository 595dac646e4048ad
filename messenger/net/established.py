"""What happens when a contact's session is established (a LinkHooks hook): a first
contact through one of our invites is stored with the redeemed invite in one transaction;
a known contact's rotated static key and where it was reached are recorded; then the links
worker adopts the session. PeerService builds it and wires it to the ports below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Protocol

from ..core.text import safe_name
from ..identity import contact_id as make_contact_id
from ..identity import conversation_id, derive_contact_secrets
from ..protocol import wire
from ..protocol.invite import Address
from ..protocol.session import Established, PeerIdentity
from ..records import ContactRecord, InviteRecord
from ..storage.repository import ContactExists, ContactKeys, InviteUnusable, NewContact
from .transport import Connection

if TYPE_CHECKING:
    from ..core.ports import Clock, ContactKeyring, Db, Me
    from ..storage.repository import Repository


def new_contact(
    peer: PeerIdentity,
    own_ed25519: bytes,
    addresses: tuple[str, ...],
    *,
    verified: bool = False,
) -> NewContact:
    """The contact to store for a peer met through an invite (either side of it): keys
    and secrets from the handshake, its name made safe to show."""
    secrets = derive_contact_secrets(peer.handshake_hash)
    return NewContact(
        id=make_contact_id(peer.hello.ed25519_public),
        display_name=safe_name(peer.hello.display_name) or "?",
        ed25519_public=peer.hello.ed25519_public,
        x25519_public=peer.remote_static,
        static_certificate=peer.hello.static_certificate,
        psk=secrets.psk,
        discovery_key=secrets.discovery_key,
        conversation_id=conversation_id(own_ed25519, peer.hello.ed25519_public),
        verified=verified,
        addresses=addresses,
    )


class SessionLinks(Protocol):
    """What this worker uses of the links worker (net/links.py's Links)."""

    def invite_of(self, conn: Connection) -> bytes: ...

    def adopt(self, conn: Connection, contact_id: str) -> None: ...

    def via_tor(self, conn: Connection) -> bool: ...


class EstablishedSessions:
    """Turns an established session into a contact's live session (see the module doc)."""

    def __init__(  # noqa: PLR0913  (the ports PeerService wires in, keyword-only)
        self,
        *,
        me: Me,
        db: Db,
        repo: Repository,
        links: SessionLinks,
        contacts: ContactKeyring,
        invites: MutableMapping[bytes, InviteRecord],
        contact_added: Callable[[NewContact], Awaitable[ContactRecord]],
        clock: Clock,
    ) -> None:
        self._me = me
        self._db = db
        self._repo = repo
        self._links = links
        self._contacts = contacts
        self._invites = invites  # the service's open invites (shared: redeemed here)
        self._contact_added = contact_added
        self._clock = clock

    async def on_established(self, conn: Connection, event: Established) -> None:
        peer = event.peer
        if peer.contact_id is None:
            # First contact through one of our invites: store both the contact and the used
            # invite in one transaction, then let the session send our hello.
            invite_id = self._links.invite_of(conn)
            new = new_contact(
                peer, self._me.identity.ed25519_public, self.peer_addresses(conn, peer.hello)
            )
            try:
                await self._db.run(self._repo.redeem_invite, invite_id, new, self._clock())
            except InviteUnusable as exc:
                conn.close(
                    {
                        "used": "this invite has already been used",
                        "expired": "this invite expired",
                    }.get(exc.reason, "unknown invite")
                )
                return
            except ContactExists:
                conn.close("you are already contacts")
                return
            used = self._invites[invite_id]
            self._invites[invite_id] = dataclasses.replace(
                used, used_at=self._clock(), used_by=new.id
            )
            # Known in memory (and shown) as soon as it is stored, even if the connection
            # ended meanwhile: the new contact then reconnects as a contact.
            await self._contact_added(new)
            try:
                conn.session.accept_peer()
            except RuntimeError:  # the session ended while the contact was stored
                return
            self._links.adopt(conn, new.id)
            return
        contact_id = peer.contact_id
        keys = self._contacts.keys(contact_id)
        if keys is not None and keys.x25519_public != peer.remote_static:
            # A static-key rotation certified by the same identity key (checked by the session).
            await self._db.run(
                self._repo.update_static,
                contact_id,
                peer.remote_static,
                peer.hello.static_certificate,
            )
            self._contacts.remember(
                ContactKeys(contact_id, keys.ed25519_public, peer.remote_static, keys.psk)
            )
        addresses = self.peer_addresses(conn, peer.hello)
        await self._db.run(
            self._repo.update_presence,
            contact_id,
            addresses,
            self._clock(),
            safe_name(peer.hello.display_name) or "?",
        )
        self._links.adopt(conn, contact_id)

    def peer_addresses(
        self, conn: Connection, hello: wire.Hello, known: Iterable[Address | str] = ()
    ) -> tuple[str, ...]:
        found: list[str] = []
        # Over Tor the peer address is our own tor's (loopback): not the contact's.
        if conn.peer_address and hello.listen_port and not self._links.via_tor(conn):
            host = conn.peer_address[0]
            found.append(
                f"[{host}]:{hello.listen_port}" if ":" in host else f"{host}:{hello.listen_port}"
            )
        found += list(hello.addresses)
        found += [str(a) for a in known]
        return tuple(dict.fromkeys(found))[: wire.MAX_ADDRESSES]

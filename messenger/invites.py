"""Invites: create one (a code naming our addresses and a one-time secret), and accept
one (dial the inviter's addresses, run the XXpsk3 handshake, store each other as contacts).

PeerService builds one Invites worker and wires it to the ports it uses (core/ports.py);
the service's create_invite and accept_invite delegate here. The inviter's side of an
invite handshake (an inbound session naming one of our invites) is net/established.py's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from .core.settings import SETTING_PORT
from .errors import InviteFailed, ServiceError
from .net.established import new_contact
from .net.links import Route, Streams
from .net.netif import interface_addresses
from .net.reach import is_onion_address
from .net.tor import TorError
from .net.transport import Connection
from .protocol import wire
from .protocol.invite import (
    Address,
    Invite,
    InviteError,
    create_invite,
    decode_invite,
    encode_invite,
    parse_address,
)
from .protocol.session import Closed, Established, InviteTarget, Rejected, Session, SessionEvent
from .records import ContactRecord, InviteRecord
from .storage.repository import ContactExists, NewContact

if TYPE_CHECKING:
    from .core.ports import Clock, ContactKeyring, Db, Me, SessionOpener
    from .net.reach import TorReach
    from .storage.repository import Repository

REJECTION_MESSAGES = {
    wire.RejectCode.INVITE_USED: "this invite has already been used; ask for a new one",
    wire.RejectCode.INVITE_EXPIRED: "this invite has expired; ask for a new one",
    wire.RejectCode.BUSY: "the inviter is busy; try again in a moment",
    wire.RejectCode.VERSION: "the inviter runs an incompatible Chinwag version",
}


class _Unreachable(Exception):
    pass


class Invites:
    """The invites we give out (records kept in `invites`) and the ones we accept."""

    def __init__(  # noqa: PLR0913  (the ports PeerService wires in, keyword-only)
        self,
        *,
        me: Me,
        db: Db,
        repo: Repository,
        clock: Clock,
        links: SessionOpener,
        contacts: ContactKeyring,
        invites: dict[bytes, InviteRecord],
        tor: Callable[[], TorReach | None],
        tor_only: Callable[[], bool],
        peer_addresses: Callable[[Connection, wire.Hello, Sequence[Address]], tuple[str, ...]],
        contact_added: Callable[[NewContact], Awaitable[ContactRecord]],
    ) -> None:
        self._me = me
        self._db = db
        self._repo = repo
        self._clock = clock
        self._links = links
        self._contacts = contacts
        self._invites = invites  # shared with net/established.py, which answers them
        self._tor = tor  # Tor reach now (switched on and off while running)
        self._tor_only = tor_only
        self._peer_addresses = peer_addresses
        self._contact_added = contact_added

    async def create_invite(
        self, *, ttl: int = 24 * 3600, addresses: Sequence[str] = ()
    ) -> tuple[str, Invite]:
        extra = [parse_address(a) for a in addresses]
        port = self._me.listen_port or await self._db.run(self._repo.get_setting, SETTING_PORT, 0)
        if not port and not extra:
            raise ServiceError("no listening port yet: run the service once, or give --address")
        tor = self._tor()
        if self._tor_only() and not extra and (tor is None or tor.address is None):
            raise ServiceError(
                "your onion address is not known yet (Tor only): wait until Tor is reachable"
            )
        if self._me.listen_port:
            own = self._me.addresses()
        elif self._tor_only():
            own = []
        else:
            own = interface_addresses(port) if port else []
        all_addresses = list(dict.fromkeys([*extra, *own]))[:16]
        if not all_addresses:
            raise ServiceError("this machine has no network address; give one with --address")
        invite = create_invite(
            self._me.identity,
            addresses=all_addresses,
            display_name=self._me.display_name,
            ttl=ttl,
            now=self._clock(),
        )
        record = await self._db.run(
            self._repo.add_invite, invite.invite_id, invite.secret, invite.expires_at, self._clock()
        )
        self._invites[invite.invite_id] = record
        return encode_invite(invite), invite

    async def accept_invite(self, code: str, *, verified: bool = False) -> ContactRecord:
        """Contact the inviter, run the XXpsk3 handshake, and store each other as contacts."""
        try:
            invite = decode_invite(code, now=self._clock())
        except InviteError as exc:
            raise InviteFailed(str(exc)) from exc
        if invite.ed25519_public == self._me.identity.ed25519_public:
            raise InviteFailed("this is your own invite")
        if self._contacts.by_ed25519(invite.ed25519_public) is not None:
            raise InviteFailed(f"{invite.display_name or 'the inviter'} is already a contact")
        target = InviteTarget(
            invite.invite_id, invite.secret, invite.ed25519_public, invite.x25519_public
        )
        failures: list[str] = []
        for address in invite.addresses:
            outcome: asyncio.Future[ContactRecord] = asyncio.get_running_loop().create_future()
            session = Session(
                initiator=True,
                static=self._links.static_keypair(),
                hello=self._links.hello(),
                target=target,
            )
            handler = self._invite_handler(invite, outcome, verified)
            try:
                if is_onion_address(str(address)):
                    route = self._invite_onion_route(str(address), invite.invite_id)
                    await self._links.open_route(route, session, handler)
                else:
                    await self._links.open(address.host, address.port, session, handler)
            except (OSError, TimeoutError, TorError) as exc:
                failures.append(f"{address}: {str(exc) or 'timed out'}")
                continue
            try:
                return await outcome
            except _Unreachable as exc:
                failures.append(f"{address}: {exc}")
        raise InviteFailed(
            "could not reach the inviter; is their Chinwag running? " + "; ".join(failures)
        )

    def _invite_onion_route(self, text: str, invite_id: bytes) -> Route:
        address = parse_address(text)

        async def connect(_timeout: float) -> Streams:
            tor = self._tor()
            if tor is None:
                raise TorError(f"cannot reach {address.host}: Tor is off (run without --no-tor)")
            # Circuits of their own (not shared with any contact's).
            return await tor.dial(address.host, address.port, isolation="invite-" + invite_id.hex())

        return Route(text, connect, tor=True)

    def _invite_handler(
        self, invite: Invite, outcome: asyncio.Future[ContactRecord], verified: bool
    ) -> Callable[[Connection, SessionEvent], Coroutine[Any, Any, None]]:
        async def handle(conn: Connection, event: SessionEvent) -> None:
            if isinstance(event, Established):
                if outcome.done():
                    return
                peer = event.peer
                new = new_contact(
                    peer,
                    self._me.identity.ed25519_public,
                    self._peer_addresses(conn, peer.hello, invite.addresses),
                    verified=verified,
                )
                try:
                    await self._db.run(self._repo.add_contact, new, self._clock())
                except ContactExists as exc:
                    conn.close("already contacts")
                    outcome.set_exception(InviteFailed(str(exc)))
                    return
                record = await self._contact_added(new)
                self._links.adopt(conn, new.id)
                outcome.set_result(record)
            elif isinstance(event, Rejected):
                if not outcome.done():
                    reason = REJECTION_MESSAGES.get(event.code, event.code.name)
                    outcome.set_exception(InviteFailed(reason))
            elif isinstance(event, Closed):
                if conn.contact_id is not None:
                    await self._links.dispatch(conn, event)
                elif not outcome.done():
                    if "does not match the invite" in event.reason:
                        outcome.set_exception(InviteFailed(event.reason))
                    elif event.clean:  # the inviter completed the handshake, then refused
                        outcome.set_exception(InviteFailed(f"the inviter refused: {event.reason}"))
                    else:
                        outcome.set_exception(_Unreachable(event.reason))
            else:
                await self._links.dispatch(conn, event)

        return handle

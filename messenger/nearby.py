"""Nearby pairing: two people on the same LAN become verified contacts without a code.

Both must have "visible on this network" switched on (discovery then publishes their
display names and each sees the other in its Nearby list). One of them asks to pair:

1. The asker dials the other's advertised address with a NEARBY handshake (Noise XX with
   one-time static keys, session.py): unauthenticated, anyone could be at the other end.
2. Both sides compute the same 6-digit short authentication string (SAS) from the
   handshake; each user sees it (PairingRequested event, CLI prompt) and checks it
   against the other person's screen.
3. A user who confirms sends wire.PairAccept: identity key, static key and certificate,
   name, port, and an Ed25519 signature of the handshake hash (binding that identity to
   this very session). A user who declines closes the connection.
4. A side stores the contact (verified) only when its own user confirmed AND the other
   side's PairAccept arrived and checked out. Anything else (decline, mismatch, timeout,
   a bad signature, a closed connection) ends the pairing and writes nothing.

The connection then becomes the new contact's live session; later ones use IKpsk2 with
the psk derived from the handshake hash, as after an invite.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .core.text import safe_name
from .errors import PairingError, ServiceError
from .events import PairingEnded, PairingRequested
from .identity import (
    IdentityError,
    conversation_id,
    derive_contact_secrets,
    pairing_signature,
    verify_pairing_signature,
    verify_static_certificate,
)
from .identity import contact_id as make_contact_id
from .net.transport import Connection
from .protocol import wire
from .protocol.invite import InviteError, parse_address
from .protocol.session import Closed, NearbyTarget, PairingReady, Received, Session, SessionEvent
from .records import ContactRecord
from .storage.repository import ContactExists, NewContact

if TYPE_CHECKING:
    from .core.ports import Clock, ContactKeyring, Db, Emit, Me, SessionOpener
    from .net.discovery import Sighting
    from .storage.repository import Repository

log = logging.getLogger(__name__)

PAIRING_TIMEOUT = 120.0  # seconds both users have to compare and confirm
MAX_PENDING = 4  # pairings waiting for confirmation at once; more are refused silently
INCOMING_COOLDOWN = 5.0  # seconds between two requests from the same address


@dataclass(eq=False)
class Pairing:
    id: str
    conn: Connection
    incoming: bool
    sas: str
    handshake_hash: bytes = field(repr=False)
    peer_name: str
    started: float
    confirmed: bool = False  # our user said yes (our PairAccept went out)
    remote: wire.PairAccept | None = None  # their user said yes
    finishing: bool = False
    outcome: asyncio.Future[ContactRecord] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    timer: asyncio.TimerHandle | None = None

    def summary(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.peer_name,
            "sas": self.sas,
            "incoming": self.incoming,
            "confirmed_here": self.confirmed,
            "confirmed_there": self.remote is not None,
            "age": round(time.monotonic() - self.started, 1),
        }


class NearbyLan(Protocol):
    """What pairing uses of LAN presence (net/presence.py): who is visible nearby."""

    @property
    def running(self) -> bool: ...

    def find_nearby(self, nearby_id: str) -> Sighting | None: ...


class PairingManager:
    """The nearby pairings of one service: pending ones and their outcome. PeerService
    exposes it as `service.pairing`."""

    def __init__(  # noqa: PLR0913  (the ports PeerService wires in, keyword-only)
        self,
        *,
        me: Me,
        links: SessionOpener,
        contacts: ContactKeyring,
        db: Db,
        repo: Repository,
        emit: Emit,
        clock: Clock,
        contact_added: Callable[[NewContact], Awaitable[ContactRecord]],
        nearby_offered: Callable[[], bool],
        lan: NearbyLan,
        visible: Callable[[], bool],
    ) -> None:
        self._me = me
        self._lan = lan
        self._visible = visible  # "visible on this network", read live
        self._links = links
        self._contacts = contacts
        self._db = db
        self._repo = repo
        self._emit = emit
        self._clock = clock
        self._contact_added = contact_added
        self._nearby_offered = nearby_offered
        self._pairings: dict[str, Pairing] = {}
        self._by_conn: dict[Connection, Pairing] = {}
        self._waiting: dict[Connection, asyncio.Future[Pairing]] = {}
        self._last_request: dict[str, float] = {}

    def pending(self) -> list[Pairing]:
        return list(self._pairings.values())

    def pairings(self) -> list[dict[str, object]]:
        """The pending pairings, as the CLI shows them."""
        return [p.summary() for p in self.pending()]

    async def pair(self, nearby_id: str) -> PairingRequested:
        """Start pairing with someone in the Nearby list; returns once both screens show the
        digits. Then `answer(id, True)` once the user compared them."""
        if not self._lan.running:
            raise ServiceError("LAN discovery is not running")
        if not self._visible():
            raise ServiceError("switch on `visible` first: only visible people can pair")
        found = self._lan.find_nearby(nearby_id)
        if found is None:
            raise ServiceError(f"nobody nearby with id {nearby_id!r}; look again with `nearby`")
        pairing = await self.start(list(found.addresses))
        return PairingRequested(pairing.id, pairing.peer_name, pairing.sas, pairing.incoming)

    def find(self, pairing_id: str) -> Pairing:
        wanted = pairing_id.strip().lower()
        matches = [p for p in self._pairings.values() if wanted and p.id.startswith(wanted)]
        if len(matches) != 1:
            raise PairingError(f"no pending pairing {pairing_id!r}")
        return matches[0]

    # -- asking someone nearby

    async def start(self, address_list: list[str]) -> Pairing:
        """Dial a visible stranger at its advertised addresses; returns once both sides
        show the SAS (the pairing is then pending until both users confirm)."""
        if len(self._pairings) >= MAX_PENDING:
            raise PairingError("too many pairings are waiting; confirm or decline one first")
        failures: list[str] = []
        for text in address_list:
            session = Session(
                initiator=True,
                static=self._links.static_keypair(),
                hello=self._links.hello(),
                target=NearbyTarget(),
            )
            ready: asyncio.Future[Pairing] = asyncio.get_running_loop().create_future()
            try:
                address = parse_address(text)
                conn = await self._links.open(address.host, address.port, session)
            except (OSError, TimeoutError, InviteError) as exc:
                failures.append(f"{text}: {str(exc) or 'timed out'}")
                continue
            self._waiting[conn] = ready
            try:
                async with asyncio.timeout(self._links.timing.handshake_timeout + 1):
                    return await ready
            except (PairingError, TimeoutError) as exc:
                conn.close("pairing failed")
                failures.append(f"{text}: {str(exc) or 'no answer'}")
            finally:
                self._waiting.pop(conn, None)
        raise PairingError("could not reach them (are they still visible?): " + "; ".join(failures))

    # -- events of NEARBY connections (from PeerService._on_connection_event)

    async def on_event(self, conn: Connection, event: SessionEvent) -> None:
        if isinstance(event, PairingReady):
            self._ready(conn, event)
        elif isinstance(event, Received):
            await self._on_message(conn, event.message)
        elif isinstance(event, Closed):
            waiting = self._waiting.pop(conn, None)
            if waiting is not None and not waiting.done():
                waiting.set_exception(PairingError(f"they did not answer ({event.reason})"))
            pairing = self._by_conn.get(conn)
            if pairing is not None:
                reason = event.reason if event.clean else f"connection lost: {event.reason}"
                self._end(pairing, None, f"the other side ended the pairing ({reason})")

    def _ready(self, conn: Connection, event: PairingReady) -> None:
        incoming = not conn.initiator
        host = conn.peer_address[0] if conn.peer_address else "?"
        now = time.monotonic()
        if incoming:
            last = self._last_request.get(host)
            if (
                len(self._pairings) >= MAX_PENDING
                or (last is not None and now - last < INCOMING_COOLDOWN)
                or not self._nearby_offered()
            ):
                conn.close("busy")
                return
            self._last_request[host] = now
            if len(self._last_request) > 256:
                self._last_request = {
                    h: t for h, t in self._last_request.items() if now - t < INCOMING_COOLDOWN
                }
        pairing = Pairing(
            id=secrets.token_hex(4),
            conn=conn,
            incoming=incoming,
            sas=event.sas,
            handshake_hash=event.handshake_hash,
            peer_name=safe_name(event.peer_name) or "someone nearby",
            started=now,
        )
        pairing.outcome.add_done_callback(_retrieve)
        pairing.timer = asyncio.get_running_loop().call_later(
            PAIRING_TIMEOUT, self._expire, pairing
        )
        self._pairings[pairing.id] = pairing
        self._by_conn[conn] = pairing
        waiting = self._waiting.get(conn)
        if waiting is not None and not waiting.done():
            waiting.set_result(pairing)
        self._emit(PairingRequested(pairing.id, pairing.peer_name, pairing.sas, incoming))

    async def _on_message(self, conn: Connection, message: wire.WireMessage) -> None:
        pairing = self._by_conn.get(conn)
        if pairing is None:
            conn.close("no pairing on this connection")
            return
        if pairing.finishing:
            # Our side is storing the contact (the user's confirmation came from the API,
            # not from this read loop) while the other side, done already, talks to its
            # new contact. Hold the message until this connection is the contact's.
            with contextlib.suppress(PairingError, asyncio.CancelledError):
                await asyncio.shield(pairing.outcome)
            if conn.contact_id is not None:
                await self._links.dispatch(conn, Received(message))
            return
        if isinstance(message, wire.Ping):
            conn.send(wire.Pong(message.nonce))
        elif isinstance(message, wire.Pong):
            pass
        elif isinstance(message, wire.PairAccept) and pairing.remote is None:
            try:
                self._check(pairing, message)
            except PairingError as exc:
                conn.close(str(exc))
                self._end(pairing, None, str(exc))
                return
            pairing.remote = message
            if pairing.confirmed:
                await self._finish(pairing)
        else:
            conn.close("unexpected message during pairing")
            self._end(pairing, None, f"the other side sent {type(message).__name__}")

    def _check(self, pairing: Pairing, accept: wire.PairAccept) -> None:
        try:
            verify_static_certificate(
                accept.ed25519_public, accept.static_public, accept.static_certificate
            )
            verify_pairing_signature(
                accept.ed25519_public, pairing.handshake_hash, accept.signature
            )
        except IdentityError as exc:
            raise PairingError(f"their identity does not check out: {exc}") from None
        if accept.ed25519_public == self._me.identity.ed25519_public:
            raise PairingError("that is this profile itself")

    # -- the user's answer

    async def answer(
        self, pairing_id: str, accept: bool, *, wait: bool = True
    ) -> ContactRecord | None:
        """Our user compared the digits: confirm (and, with wait, return the new contact
        once the other user confirmed too) or decline."""
        pairing = self.find(pairing_id)
        if not accept:
            pairing.conn.close("pairing declined")
            self._end(pairing, None, "declined here")
            return None
        if not pairing.confirmed:
            pairing.confirmed = True
            pairing.conn.send(self._own_accept(pairing))
            if pairing.remote is not None:
                await self._finish(pairing)
        if not wait:
            return None
        remaining = PAIRING_TIMEOUT - (time.monotonic() - pairing.started) + 1.0
        try:
            async with asyncio.timeout(max(1.0, remaining)):
                return await asyncio.shield(pairing.outcome)
        except TimeoutError:
            raise PairingError("the pairing timed out") from None

    def _own_accept(self, pairing: Pairing) -> wire.PairAccept:
        identity = self._me.identity
        return wire.PairAccept(
            ed25519_public=identity.ed25519_public,
            static_public=identity.static_public,
            static_certificate=identity.static_certificate,
            display_name=self._me.display_name,
            listen_port=self._me.listen_port or 0,
            signature=pairing_signature(identity.signing_key, pairing.handshake_hash),
        )

    async def _finish(self, pairing: Pairing) -> None:
        """Both users confirmed: store the verified contact, make this its live session."""
        if pairing.finishing or pairing.outcome.done():
            return
        pairing.finishing = True
        accept = pairing.remote
        assert accept is not None
        if self._contacts.by_ed25519(accept.ed25519_public) is not None:
            pairing.conn.close("already contacts")
            self._end(pairing, None, "you are already contacts")
            return
        secrets_ = derive_contact_secrets(pairing.handshake_hash)
        addresses: tuple[str, ...] = ()
        if pairing.conn.peer_address and accept.listen_port:
            host = pairing.conn.peer_address[0]
            addresses = (
                f"[{host}]:{accept.listen_port}" if ":" in host else f"{host}:{accept.listen_port}",
            )
        new = NewContact(
            id=make_contact_id(accept.ed25519_public),
            display_name=safe_name(accept.display_name) or pairing.peer_name,
            ed25519_public=accept.ed25519_public,
            x25519_public=accept.static_public,
            static_certificate=accept.static_certificate,
            psk=secrets_.psk,
            discovery_key=secrets_.discovery_key,
            conversation_id=conversation_id(
                self._me.identity.ed25519_public, accept.ed25519_public
            ),
            verified=True,  # both users compared the digits on both screens
            addresses=addresses,
        )
        try:
            await self._db.run(self._repo.add_contact, new, self._clock())
        except ContactExists:
            pairing.conn.close("already contacts")
            self._end(pairing, None, "you are already contacts")
            return
        if pairing.conn.closed.is_set():
            # Stored, but the session is gone: the dialler takes over (IKpsk2 works now).
            record = await self._contact_added(new)
            self._links.dial_now(new.id)
        else:
            record = await self._contact_added(new)
            self._forget(pairing)
            self._links.adopt(pairing.conn, new.id)
        self._end(pairing, record, "paired")

    # -- ending

    def _expire(self, pairing: Pairing) -> None:
        pairing.conn.close("pairing timed out")
        self._end(pairing, None, "timed out")

    def _forget(self, pairing: Pairing) -> None:
        self._pairings.pop(pairing.id, None)
        self._by_conn.pop(pairing.conn, None)
        if pairing.timer is not None:
            pairing.timer.cancel()

    def _end(self, pairing: Pairing, contact: ContactRecord | None, reason: str) -> None:
        self._forget(pairing)
        if pairing.outcome.done():
            return
        if contact is not None:
            pairing.outcome.set_result(contact)
        else:
            pairing.outcome.set_exception(PairingError(f"no pairing: {reason}"))
        log.info("pairing %s ended: %s", pairing.id, reason)
        self._emit(PairingEnded(pairing.id, contact.id if contact is not None else None, reason))

    def close(self) -> None:
        for pairing in list(self._pairings.values()):
            pairing.conn.close("shutting down")
            self._end(pairing, None, "shutting down")
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_exception(PairingError("shutting down"))


def _retrieve(future: asyncio.Future[ContactRecord]) -> None:
    """Nobody may be waiting for an outcome: mark its exception as seen."""
    with contextlib.suppress(asyncio.CancelledError):
        future.exception()

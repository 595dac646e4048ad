"""One connection's state machine: preamble -> Noise handshake -> transport -> close.

Sans-I/O: feed it the bytes that arrived (`receive_data`), collect the bytes to write
(`data_to_send`) and the events it produced. It never touches a socket or a clock, so
every path (split chunks, corrupted frames, strangers) is tested by feeding bytes.

Handshakes (docs/protocol.md has the byte layout):

- INVITE, Noise_XXpsk3: the acceptor (initiator) dials the inviter. Its first frame is the
  clear preamble ``CW|ver|1|invite_id`` followed by Noise message 1. The inviter answers
  only for an invite it issued (else silence, or a Rejection frame for a used or expired
  one). The acceptor checks that the inviter's static key is the one in the invite before
  it reveals anything of itself in message 3, which carries its Hello. The inviter
  stores the new contact, then sends its own Hello as its first transport message.
- RECONNECT, Noise_IKpsk2: message 1 carries the initiator's Hello (encrypted to the
  responder's static key); the responder answers only a known contact, mixing in that
  contact's psk, and puts its Hello in message 2.
- NEARBY, Noise_XX with one-time static keys, offered only by a responder that is visible
  on the LAN: unauthenticated. Message 1 carries the initiator's commitment to a random
  nonce, message 2 the responder's display name, message 3 the nonce and the initiator's
  name. Both sides then emit PairingReady with a 6-digit short authentication string
  (SAS) from the hash after message 2 and the nonce; the users compare it, and the
  service exchanges identities (wire.PairAccept) only once its user confirmed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum, auto
from typing import Protocol

import nacl.bindings
import nacl.utils

from ..identity import (
    SAS_NONCE_LEN,
    IdentityError,
    sas_commitment,
    short_authentication_string,
    verify_static_certificate,
)
from . import framing, wire
from .noise import CipherState, HandshakeState, KeyPair, NoiseError

log = logging.getLogger(__name__)

XXPSK3 = "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b"
IKPSK2 = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b"
XX = "Noise_XX_25519_ChaChaPoly_BLAKE2b"
PROLOGUE = b"chinwag/1"

# A Batch record is at most this big, so that it fits one frame (framing.MAX_CHUNK less the
# batch's own header of at most 5 bytes).
BATCH_BYTES = framing.MAX_CHUNK - 8

# Re-handshake (a fresh IKpsk2 with new ephemeral keys) after this many frames either way.
REHANDSHAKE_FRAMES = 1 << 20


class ProtocolViolation(Exception):
    """The peer broke the protocol; the connection is closed with this reason."""


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """Who is on the other end, proven by the handshake."""

    hello: wire.Hello
    remote_static: bytes
    handshake_hash: bytes
    contact_id: str | None  # known contact (RECONNECT), None on first contact (INVITE)


@dataclass(frozen=True, slots=True)
class Established:
    peer: PeerIdentity


@dataclass(frozen=True, slots=True)
class Received:
    message: wire.WireMessage


@dataclass(frozen=True, slots=True)
class Rejected:
    code: wire.RejectCode


@dataclass(frozen=True, slots=True)
class Closed:
    reason: str
    clean: bool  # the peer said Close; otherwise a violation or an abort


@dataclass(frozen=True, slots=True)
class PairingReady:
    """NEARBY handshake done: show `sas` to the user. Nobody is authenticated yet."""

    sas: str
    handshake_hash: bytes  # final hash: what PairAccept signatures and contact secrets bind
    peer_name: str  # self-chosen, unverified until the users compared the SAS


SessionEvent = Established | Received | Rejected | Closed | PairingReady


@dataclass(frozen=True, slots=True)
class ContactMatch:
    contact_id: str
    psk: bytes


class Authority(Protocol):
    """What a responder asks while a handshake is under way. Answers come from memory."""

    def invite_psk(self, invite_id: bytes) -> bytes | wire.RejectCode | None:
        """The psk of an invite we issued; a RejectCode if used/expired; None if unknown."""
        ...

    def match_contact(self, remote_static: bytes, hello: wire.Hello) -> ContactMatch | None:
        """The contact behind a RECONNECT (hello already certificate-checked), or None."""
        ...


@dataclass(frozen=True, slots=True)
class InviteTarget:
    invite_id: bytes
    secret: bytes
    ed25519_public: bytes
    x25519_public: bytes


@dataclass(frozen=True, slots=True)
class ContactTarget:
    contact_id: str
    ed25519_public: bytes
    x25519_public: bytes
    psk: bytes


@dataclass(frozen=True, slots=True)
class NearbyTarget:
    """Dial a visible stranger for nearby pairing (NEARBY handshake)."""


class State(Enum):
    HANDSHAKE = auto()
    AWAIT_ACCEPT = auto()  # INVITE responder: contact being stored before our Hello goes out
    AWAIT_HELLO = auto()  # INVITE initiator: waiting for the inviter's Hello
    # RECONNECT responder: message 1 can be replayed by anyone who recorded it, so the
    # initiator is believed only once a transport frame proves it holds the session keys.
    AWAIT_CONFIRM = auto()
    TRANSPORT = auto()
    CLOSED = auto()


def _prologue(kind: wire.HandshakeKind, invite_id: bytes | None) -> bytes:
    return PROLOGUE + bytes([wire.PROTOCOL_VERSION, int(kind)]) + (invite_id or b"")


def _checked_hello(payload: bytes, remote_static: bytes) -> wire.Hello:
    try:
        hello = wire.decode_hello(payload)
        verify_static_certificate(hello.ed25519_public, remote_static, hello.static_certificate)
    except wire.WireError as exc:
        raise ProtocolViolation(f"malformed hello: {exc}") from exc
    except IdentityError as exc:
        raise ProtocolViolation(f"static key not certified by the identity key: {exc}") from exc
    return hello


def _nearby_name(payload: bytes) -> str:
    try:
        name = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation("display name in a NEARBY handshake is not UTF-8") from None
    if len(name) > wire.MAX_NAME_CHARS:
        raise ProtocolViolation("display name in a NEARBY handshake is too long")
    return name


def _as_close(record: bytes) -> wire.Close | None:
    try:
        message = wire.decode_message(record)
    except wire.WireError:
        return None
    return message if isinstance(message, wire.Close) else None


@dataclass(frozen=True, slots=True)
class Pinned:
    """What a test fixes where a session otherwise draws fresh values or takes the default
    (the service passes none): its ephemeral key, the NEARBY one-time static key and SAS
    nonce, the largest record it accepts."""

    ephemeral: KeyPair | None = None
    nearby_static: KeyPair | None = None
    sas_nonce: bytes | None = None
    max_record: int = framing.MAX_RECORD


class Session:
    def __init__(
        self,
        *,
        initiator: bool,
        static: KeyPair,
        hello: wire.Hello,
        target: InviteTarget | ContactTarget | NearbyTarget | None = None,
        authority: Authority | None = None,
        nearby: bool = False,
        pinned: Pinned | None = None,
    ) -> None:
        if initiator and target is None:
            raise ValueError("an initiator needs a target")
        if not initiator and authority is None:
            raise ValueError("a responder needs an authority")
        self.initiator = initiator
        self.state = State.HANDSHAKE
        self.kind: wire.HandshakeKind | None = None
        self.peer: PeerIdentity | None = None
        self.close_reason: str | None = None
        self.frames_sent = 0
        self.frames_received = 0
        self._static = static
        pinned = pinned or Pinned()
        self._ephemeral = pinned.ephemeral
        self._hello = hello
        self._target = target
        self._authority = authority
        self._decoder = framing.FrameDecoder()
        self._reassembler = framing.Reassembler(pinned.max_record)
        self._out = bytearray()
        self._events: list[SessionEvent] = []
        self._hs: HandshakeState | None = None
        self._send: CipherState | None = None
        self._recv: CipherState | None = None
        self._contact_id: str | None = None
        self._pending_hello: wire.Hello | None = None
        # NEARBY: offered by this responder?; one-time static key; SAS state.
        self._nearby = nearby
        self._nearby_static = pinned.nearby_static
        self._sas_nonce = pinned.sas_nonce
        self._sas_commitment: bytes | None = None
        self._sas_hash: bytes | None = None
        if initiator:
            self._start_initiator()

    # -- public API -----------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def receive_data(self, data: bytes) -> list[SessionEvent]:
        """Process bytes from the peer. After a Closed event, everything further is ignored."""
        if self.state is State.CLOSED:
            return []
        try:
            for frame in self._decoder.feed(data):
                if self._recv is not None:  # live: _on_frame's first case, without its call
                    self._on_transport_frame(frame)
                else:
                    self._on_frame(frame)
                if self.closed:
                    break
        except (ProtocolViolation, framing.FrameError, wire.WireError, NoiseError) as exc:
            self._abort(str(exc) or type(exc).__name__)
        return self._take_events()

    def receive_eof(self) -> list[SessionEvent]:
        if self.state is not State.CLOSED:
            reason = "connection closed by the peer without a close message"
            if self._decoder.buffered:
                reason += f" (truncated frame, {self._decoder.buffered} bytes pending)"
            self._abort(reason)
        return self._take_events()

    def send(self, message: wire.WireMessage) -> None:
        if self.state is not State.TRANSPORT:
            raise RuntimeError(f"cannot send in state {self.state.name}")
        self._send_record(wire.encode_message(message))

    def send_many(self, messages: list[wire.WireMessage]) -> None:
        """Send in order; runs of chat messages, receipts and group messages go out as
        Batch records of up to one frame each (one AEAD call and a few bytes of framing for
        the lot). Every message is validated before anything is sent."""
        self.send_records(
            [(wire.encode_message(m), isinstance(m, wire.BATCHABLE)) for m in messages]
        )

    def send_records(self, records: list[tuple[bytes, bool]]) -> None:
        """send_many for messages already encoded: (record, may it go in a Batch)."""
        if self.state is not State.TRANSPORT:
            raise RuntimeError(f"cannot send in state {self.state.name}")
        if len(records) == 1:  # one record (an ack, a lone message) goes alone either way
            self._send_record(records[0][0])
            return
        group: list[bytes] = []
        size = 0
        for record, batchable in records:
            n = len(record)
            if not batchable or n > BATCH_BYTES:
                self._send_group(group)
                group, size = [], 0
                self._send_record(record)
                continue
            if size + n > BATCH_BYTES or len(group) >= wire.MAX_BATCH_MESSAGES:
                self._send_group(group)
                group, size = [], 0
            group.append(record)
            size += n
        self._send_group(group)

    def _send_group(self, group: list[bytes]) -> None:
        if len(group) == 1:
            self._send_record(group[0])
        elif group:
            self._send_record(wire.encode_batch(group))

    def close(self, reason: str) -> None:
        """Say goodbye (an explicit Close, so the peer can tell it from truncation)."""
        if self._send is not None and self.state is not State.CLOSED:
            self._send_record(wire.encode_message(wire.Close(reason[:200])))
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            self.close_reason = reason

    def accept_peer(self) -> None:
        """INVITE responder: the new contact is stored; now send our Hello and go live."""
        if self.state is not State.AWAIT_ACCEPT:
            raise RuntimeError("no peer is waiting to be accepted")
        self.state = State.TRANSPORT
        self._send_record(wire.encode_hello(self._hello))

    def reject(self, code: wire.RejectCode) -> None:
        """Refuse in clear text (before transport): used or expired invite, busy."""
        self._out += framing.encode_frame(wire.encode_rejection(wire.Rejection(code)))
        self.state = State.CLOSED
        self.close_reason = f"rejected: {code.name}"

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def established(self) -> bool:
        return self.state is State.TRANSPORT

    @property
    def hello(self) -> wire.Hello:
        """The Hello this side sends (or sent) on this session."""
        return self._hello

    @property
    def needs_rehandshake(self) -> bool:
        return max(self.frames_sent, self.frames_received) >= REHANDSHAKE_FRAMES

    @property
    def handshake_hash(self) -> bytes | None:
        return self.peer.handshake_hash if self.peer else None

    # -- internals ------------------------------------------------------------------------

    def _take_events(self) -> list[SessionEvent]:
        events, self._events = self._events, []
        return events

    def _abort(self, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self.close_reason = reason
        self._events.append(Closed(reason, clean=False))

    def _start_initiator(self) -> None:
        target = self._target
        if isinstance(target, InviteTarget):
            self.kind = wire.HandshakeKind.INVITE
            self._hs = HandshakeState(
                XXPSK3,
                initiator=True,
                prologue=_prologue(self.kind, target.invite_id),
                s=self._static,
                e=self._ephemeral,
                psks=[target.secret],
            )
            preamble = wire.Preamble(self.kind, target.invite_id)
            first = self._hs.write_message(b"")
        elif isinstance(target, NearbyTarget):
            self.kind = wire.HandshakeKind.NEARBY
            self._hs = HandshakeState(
                XX,
                initiator=True,
                prologue=_prologue(self.kind, None),
                s=self._nearby_static or KeyPair.generate(),
                e=self._ephemeral,
            )
            if self._sas_nonce is None:
                self._sas_nonce = nacl.utils.random(SAS_NONCE_LEN)
            preamble = wire.Preamble(self.kind, None)
            first = self._hs.write_message(sas_commitment(self._sas_nonce))
        else:
            assert isinstance(target, ContactTarget)
            self.kind = wire.HandshakeKind.RECONNECT
            self._contact_id = target.contact_id
            self._hs = HandshakeState(
                IKPSK2,
                initiator=True,
                prologue=_prologue(self.kind, None),
                s=self._static,
                e=self._ephemeral,
                rs=target.x25519_public,
                psks=[target.psk],
            )
            preamble = wire.Preamble(self.kind, None)
            first = self._hs.write_message(wire.encode_hello(self._hello))
        self._out += framing.encode_frame(wire.encode_preamble(preamble) + first)

    def _on_frame(self, frame: bytes) -> None:
        if self._recv is not None:
            self._on_transport_frame(frame)
        elif self.initiator:
            self._on_initiator_handshake(frame)
        else:
            self._on_responder_handshake(frame)

    def _on_initiator_handshake(self, frame: bytes) -> None:
        rejection = wire.parse_rejection(frame)
        if rejection is not None:
            self.state = State.CLOSED
            self.close_reason = f"rejected: {rejection.code.name}"
            self._events.append(Rejected(rejection.code))
            return
        hs = self._hs
        assert hs is not None
        payload = hs.read_message(frame)
        target = self._target
        rs = hs.remote_static
        assert rs is not None
        if isinstance(target, NearbyTarget):
            # XX message 2 carries the responder's name; the SAS is fixed from here on.
            peer_name = _nearby_name(payload)
            nonce = self._sas_nonce
            assert nonce is not None
            sas = short_authentication_string(hs.handshake_hash, nonce)
            name = self._hello.display_name.encode("utf-8")
            self._out += framing.encode_frame(hs.write_message(nonce + name))
            self._split(hs)
            self.state = State.TRANSPORT
            self._events.append(PairingReady(sas, hs.handshake_hash, peer_name))
        elif isinstance(target, InviteTarget):
            # XXpsk3 message 2: is this the peer the invite names? Check before we say who we are.
            if rs != target.x25519_public:
                raise ProtocolViolation(
                    "the peer's key does not match the invite: not the person who invited you"
                )
            if payload:
                raise ProtocolViolation("unexpected payload in handshake message 2")
            self._out += framing.encode_frame(hs.write_message(wire.encode_hello(self._hello)))
            self._split(hs)
            self.state = State.AWAIT_HELLO
        else:
            assert isinstance(target, ContactTarget)
            hello = _checked_hello(payload, rs)
            if hello.ed25519_public != target.ed25519_public:
                raise ProtocolViolation("the peer's identity key is not the contact's key")
            self._split(hs)
            self.peer = PeerIdentity(hello, rs, hs.handshake_hash, target.contact_id)
            self.state = State.TRANSPORT
            # Key confirmation for the responder (see State.AWAIT_CONFIRM).
            self._send_record(wire.encode_message(wire.Ping(0)))
            self._events.append(Established(self.peer))

    def _on_responder_handshake(self, frame: bytes) -> None:
        if self._hs is None:
            self._on_responder_first(frame)
        elif self.kind is wire.HandshakeKind.NEARBY:
            self._on_nearby_last(frame)
        else:
            self._on_invite_last(frame)

    def _on_responder_first(self, frame: bytes) -> None:
        """Message 1 behind its preamble: the handshake kind picks the pattern."""
        try:
            preamble, first = wire.parse_preamble(frame)
        except wire.UnsupportedVersion as exc:
            self.reject(wire.RejectCode.VERSION)
            self._events.append(Closed(str(exc), clean=False))
            return
        self.kind = preamble.kind
        if preamble.kind is wire.HandshakeKind.INVITE:
            self._on_invite_first(preamble, first)
        elif preamble.kind is wire.HandshakeKind.RECONNECT:
            self._on_reconnect_first(first)
        elif preamble.kind is wire.HandshakeKind.NEARBY and self._nearby:
            self._on_nearby_first(first)
        else:
            raise ProtocolViolation(f"handshake kind {preamble.kind.name} is not offered here")

    def _on_invite_first(self, preamble: wire.Preamble, first: bytes) -> None:
        assert self._authority is not None and preamble.invite_id is not None
        answer = self._authority.invite_psk(preamble.invite_id)
        if answer is None:
            raise ProtocolViolation("handshake for an invite we never issued")
        if isinstance(answer, wire.RejectCode):
            self.reject(answer)
            self._events.append(Closed(f"invite refused: {answer.name}", clean=False))
            return
        self._hs = HandshakeState(
            XXPSK3,
            initiator=False,
            prologue=_prologue(preamble.kind, preamble.invite_id),
            s=self._static,
            e=self._ephemeral,
            psks=[answer],
        )
        if self._hs.read_message(first):
            raise ProtocolViolation("unexpected payload in handshake message 1")
        self._out += framing.encode_frame(self._hs.write_message(b""))

    def _on_reconnect_first(self, first: bytes) -> None:
        assert self._authority is not None
        hs = HandshakeState(
            IKPSK2,
            initiator=False,
            prologue=_prologue(wire.HandshakeKind.RECONNECT, None),
            s=self._static,
            e=self._ephemeral,
        )
        self._hs = hs
        payload = hs.read_message(first)
        rs = hs.remote_static
        assert rs is not None
        hello = _checked_hello(payload, rs)
        match = self._authority.match_contact(rs, hello)
        if match is None:
            # Strangers get silence: nothing tells them a Chinwag peer is here.
            raise ProtocolViolation("reconnect from a key that is not a contact")
        hs.set_psk(match.psk)
        self._out += framing.encode_frame(hs.write_message(wire.encode_hello(self._hello)))
        self._split(hs)
        self.peer = PeerIdentity(hello, rs, hs.handshake_hash, match.contact_id)
        self.state = State.AWAIT_CONFIRM

    def _on_nearby_first(self, first: bytes) -> None:
        hs = HandshakeState(
            XX,
            initiator=False,
            prologue=_prologue(wire.HandshakeKind.NEARBY, None),
            s=self._nearby_static or KeyPair.generate(),
            e=self._ephemeral,
        )
        self._hs = hs
        commitment = hs.read_message(first)
        if len(commitment) != 32:
            raise ProtocolViolation("NEARBY message 1 must carry a 32-byte commitment")
        self._sas_commitment = commitment
        name = self._hello.display_name.encode("utf-8")
        self._out += framing.encode_frame(hs.write_message(name))
        self._sas_hash = hs.handshake_hash

    def _on_nearby_last(self, frame: bytes) -> None:
        """XX message 3: the initiator's nonce (checked against its commitment) and name."""
        hs = self._hs
        assert hs is not None
        payload = hs.read_message(frame)
        nonce, name_bytes = payload[:SAS_NONCE_LEN], payload[SAS_NONCE_LEN:]
        assert self._sas_commitment is not None and self._sas_hash is not None
        if len(nonce) != SAS_NONCE_LEN or not nacl.bindings.sodium_memcmp(
            sas_commitment(nonce), self._sas_commitment
        ):
            raise ProtocolViolation("the SAS nonce does not match its commitment")
        peer_name = _nearby_name(name_bytes)
        self._split(hs)
        self.state = State.TRANSPORT
        sas = short_authentication_string(self._sas_hash, nonce)
        self._events.append(PairingReady(sas, hs.handshake_hash, peer_name))

    def _on_invite_last(self, frame: bytes) -> None:
        """INVITE message 3: the acceptor's static key and Hello, under the invite's psk."""
        hs = self._hs
        assert hs is not None
        payload = hs.read_message(frame)
        rs = hs.remote_static
        assert rs is not None
        hello = _checked_hello(payload, rs)
        self._split(hs)
        self.peer = PeerIdentity(hello, rs, hs.handshake_hash, None)
        self.state = State.AWAIT_ACCEPT
        self._events.append(Established(self.peer))

    def _split(self, hs: HandshakeState) -> None:
        if not hs.is_complete:
            raise ProtocolViolation("handshake incomplete")
        self._send, self._recv = hs.split()

    def _send_record(self, record: bytes) -> None:
        send = self._send
        assert send is not None
        if len(record) <= framing.MAX_CHUNK:  # one frame, as nearly every record: no list
            body = send.encrypt_with_ad(b"", framing.pad(record, more=False))
            self._out += len(body).to_bytes(2, "big")  # the frame's length prefix
            self._out += body
            self.frames_sent += 1
            return
        for chunk, more in framing.fragment(record):
            self._out += framing.encode_frame(
                send.encrypt_with_ad(b"", framing.pad(chunk, more=more))
            )
            self.frames_sent += 1

    def _on_transport_frame(self, frame: bytes) -> None:
        recv = self._recv
        assert recv is not None
        try:
            plaintext = recv.decrypt_with_ad(b"", frame)
        except NoiseError:
            raise ProtocolViolation(
                "frame failed authentication (tampered, replayed, reordered or wrong key)"
            ) from None
        self.frames_received += 1
        if self.state is State.AWAIT_CONFIRM:
            assert self.peer is not None
            self.state = State.TRANSPORT
            self._events.append(Established(self.peer))
        chunk, more = framing.unpad(plaintext)
        record = self._reassembler.add(chunk, more)
        if record is None:
            return
        if self.state is State.AWAIT_ACCEPT:
            raise ProtocolViolation("message before the contact was accepted")
        if self.state is State.AWAIT_HELLO:
            # The inviter's first transport record is its Hello (kept out of message 2, where
            # only the ee key protects it, so a sniffed invite id cannot reveal who invited).
            target = self._target
            assert isinstance(target, InviteTarget) and self._hs is not None
            rs = self._hs.remote_static
            assert rs is not None
            refusal = _as_close(record)
            if refusal is not None:  # the inviter could not take us (invite used meanwhile)
                self.state = State.CLOSED
                self.close_reason = f"peer closed: {refusal.reason}"
                self._events.append(Closed(refusal.reason, clean=True))
                return
            hello = _checked_hello(record, rs)
            if hello.ed25519_public != target.ed25519_public:
                raise ProtocolViolation("the inviter's identity key does not match the invite")
            self.peer = PeerIdentity(hello, rs, self._hs.handshake_hash, None)
            self.state = State.TRANSPORT
            self._events.append(Established(self.peer))
            return
        message = wire.decode_message(record)
        if isinstance(message, wire.Batch):
            self._events.extend(Received(m) for m in message.messages)
            return
        if isinstance(message, wire.Close):
            self.state = State.CLOSED
            self.close_reason = f"peer closed: {message.reason}"
            self._events.append(Closed(message.reason, clean=True))
            return
        self._events.append(Received(message))

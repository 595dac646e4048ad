"""Hostile input against a real PeerService listening on 127.0.0.1.

For each attack the test checks that the service hangs up (the attacker's reader sees
EOF), logs why, emits no service event for the hostile connection, writes nothing to
its database, and still carries a normal contact's messages afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
from dataclasses import dataclass
from typing import Any

import pytest

from messenger.events import ContactAdded, MessageAdded, PresenceChanged
from messenger.identity import Identity, certify_static, conversation_id
from messenger.net.transport import Timing
from messenger.protocol import framing, wire
from messenger.protocol.noise import KeyPair
from messenger.protocol.session import Closed, ContactTarget, InviteTarget, Session
from messenger.service import PeerService

from .conftest import Recorder, befriend, wait_for

CLOSE_WITHIN = 4.0  # seconds the service may take to hang up on an attacker

# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Snapshot:
    contacts: list[Any]
    histories: dict[str, list[Any]]
    message_count: int
    invites: list[Any]
    outbox: dict[str, int]


async def snapshot(service: PeerService, *, ignore_last_seen: bool = False) -> Snapshot:
    contacts = await service.contacts.all()
    if ignore_last_seen:
        contacts = [dataclasses.replace(c, last_seen=None) for c in contacts]
    histories = {c.id: await service.chat.history(c.id, limit=1000) for c in contacts}
    return Snapshot(
        contacts=contacts,
        histories=histories,
        message_count=await service.db.run(service.repo.message_count),
        invites=await service.db.run(service.repo.invites),
        outbox=await service.chat.outbox_counts(),
    )


@dataclass
class Victim:
    alice: PeerService
    carol: PeerService
    carol_at_alice: str
    alice_at_carol: str
    recorder: Recorder
    caplog: pytest.LogCaptureFixture


@pytest.fixture
async def victim(make_peer, caplog) -> Victim:
    caplog.set_level(logging.INFO, logger="messenger")
    alice = await make_peer("alice")
    carol = await make_peer("carol")
    carol_at_alice, alice_at_carol = await befriend(alice, carol)
    return Victim(alice, carol, carol_at_alice, alice_at_carol, Recorder(alice), caplog)


@dataclass
class Stolen:
    """What an attacker who plays Bob (a real contact of Alice's) holds."""

    bob_id: str
    identity: Identity
    psk: bytes


@pytest.fixture
async def bob_keys(victim: Victim, make_peer) -> Stolen:
    """Bob befriends Alice, then goes away; the test plays Bob with Bob's real keys."""
    bob = await make_peer("bob")
    bob_at_alice, _ = await befriend(victim.alice, bob)
    psk = victim.alice.contact_keys.keys(bob_at_alice).psk
    identity = bob.identity
    await bob.aclose()
    await wait_for(lambda: not victim.alice.contacts.is_online(bob_at_alice), timeout=5)
    await asyncio.sleep(0.05)
    victim.recorder.events.clear()
    return Stolen(bob_at_alice, identity, psk)


async def connect(service: PeerService) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    assert service.listen_port
    reader, writer = await asyncio.open_connection("127.0.0.1", service.listen_port)
    return reader, writer, writer.get_extra_info("sockname")[1]


async def send(writer: asyncio.StreamWriter, data: bytes, *, eof: bool = False) -> None:
    with contextlib.suppress(ConnectionError):
        writer.write(data)
        await writer.drain()
        if eof:
            writer.write_eof()


async def read_until_closed(reader: asyncio.StreamReader, timeout: float = CLOSE_WITHIN) -> bytes:
    """Everything the service writes before it hangs up (EOF or reset) within `timeout`."""
    got = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                got += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the service kept the connection open for {timeout} s")
    return bytes(got)


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def assert_logged(v: Victim, port: int, *fragments: str) -> str:
    """The service logged that the connection from `port` closed, and why."""
    tag = f"('127.0.0.1', {port})"

    def matching() -> list[str]:
        return [
            r.getMessage()
            for r in v.caplog.records
            if r.name.startswith("messenger")
            and r.levelno >= logging.INFO
            and tag in r.getMessage()
            and "closed" in r.getMessage()
        ]

    await wait_for(lambda: bool(matching()), timeout=2)
    messages = matching()
    for fragment in fragments:
        assert any(fragment in m for m in messages), (fragment, messages)
    return messages[0]


def assert_no_events(v: Victim) -> None:
    bad = [
        e for e in v.recorder.events if isinstance(e, PresenceChanged | MessageAdded | ContactAdded)
    ]
    assert bad == [], bad


async def assert_still_works(v: Victim) -> None:
    """A normal contact can still talk to Alice (both ways) after the attack."""
    body = f"still here {os.urandom(4).hex()}"
    await v.carol.chat.send_text(v.alice_at_carol, body)
    reply = f"yes {os.urandom(4).hex()}"
    await v.alice.chat.send_text(v.carol_at_alice, reply)

    async def arrived() -> bool:
        at_alice = [m.body for m in await v.alice.chat.history(v.carol_at_alice, limit=1000)]
        at_carol = [m.body for m in await v.carol.chat.history(v.alice_at_carol, limit=1000)]
        return body in at_alice and reply in at_carol

    await wait_for(arrived, timeout=5)


async def hostile(v: Victim, payload: bytes, *, eof: bool, log: tuple[str, ...] = ()) -> bytes:
    """Send `payload` from a fresh TCP connection; check everything a hostile peer must not
    achieve. Returns what the service wrote back."""
    before = await snapshot(v.alice)
    reader, writer, port = await connect(v.alice)
    try:
        await send(writer, payload, eof=eof)
        reply = await read_until_closed(reader)
    finally:
        await close_writer(writer)
    await assert_logged(v, port, *log)
    await asyncio.sleep(0.05)  # let anything (wrongly) scheduled by the connection run
    assert await snapshot(v.alice) == before
    assert_no_events(v)
    await assert_still_works(v)
    return reply


def stranger_session(target: PeerService, identity: Identity | None = None) -> Session:
    """A RECONNECT initiator that knows the target's real static key but is not a contact."""
    ident = identity or Identity.generate()
    hello = wire.Hello(ident.ed25519_public, ident.static_certificate, "Mallory", 0, ())
    return Session(
        initiator=True,
        static=KeyPair(ident.static_private, ident.static_public),
        hello=hello,
        target=ContactTarget(
            target.contact_id,
            target.identity.ed25519_public,
            target.identity.static_public,
            os.urandom(32),
        ),
    )


def as_bob(
    v: Victim, bob: Stolen, *, hello: wire.Hello | None = None, static: KeyPair | None = None
) -> Session:
    ident = bob.identity
    hello = hello or wire.Hello(ident.ed25519_public, ident.static_certificate, "Bob", 0, ())
    return Session(
        initiator=True,
        static=static or KeyPair(ident.static_private, ident.static_public),
        hello=hello,
        target=ContactTarget(
            v.alice.contact_id,
            v.alice.identity.ed25519_public,
            v.alice.identity.static_public,
            bob.psk,
        ),
    )


def bob_chat(v: Victim, bob: Stolen, n: int) -> wire.ChatMessage:
    return wire.ChatMessage(
        msg_id=os.urandom(16),
        conversation=conversation_id(v.alice.identity.ed25519_public, bob.identity.ed25519_public),
        seq=n,
        lamport=n,
        sent_at_ms=1_700_000_000_000 + n,
        body=f"bob says {n}",
    )


async def establish(
    session: Session, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await send(writer, session.data_to_send())
    async with asyncio.timeout(CLOSE_WITHIN):
        while not session.established:
            data = await reader.read(65536)
            assert data, "the service hung up on a genuine contact"
            events = session.receive_data(data)
            assert not [e for e in events if isinstance(e, Closed)], events
    await send(writer, session.data_to_send())  # whatever the session says once it is live


# --------------------------------------------------------------------------- garbage


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_bytes(victim: Victim, seed: int) -> None:
    # 70000 bytes: whatever length the first two bytes announce, that frame is complete.
    payload = random.Random(seed).randbytes(70_000)
    assert await hostile(victim, payload, eof=False) == b""


async def test_http_request(victim: Victim) -> None:
    payload = b"GET / HTTP/1.1\r\nHost: chinwag\r\n\r\n" + b"x" * 0x4730
    assert await hostile(victim, payload, eof=False, log=("bad magic",)) == b""


async def test_zero_length_frame(victim: Victim) -> None:
    assert await hostile(victim, b"\x00\x00", eof=False, log=("zero-length",)) == b""


async def test_truncated_frame_then_eof(victim: Victim) -> None:
    first = stranger_session(victim.alice).data_to_send()
    half = first[: len(first) // 2]
    reply = await hostile(victim, half, eof=True, log=("truncated", f"{len(half)} bytes pending"))
    assert reply == b""


async def test_max_length_prefix_then_eof(victim: Victim) -> None:
    payload = b"\xff\xff" + b"CW\x01\x02\x00"
    reply = await hostile(victim, payload, eof=True, log=("truncated frame, 7 bytes pending",))
    assert reply == b""


async def test_max_length_prefix_then_silence(victim: Victim) -> None:
    """The peer sends part of a frame and then nothing: the handshake deadline ends it."""
    assert victim.alice.config.timing.handshake_timeout < CLOSE_WITHIN
    reply = await hostile(victim, b"\xff\xff" + b"CW\x01", eof=False, log=("timed out",))
    assert reply == b""


async def test_eof_before_anything(victim: Victim) -> None:
    await hostile(victim, b"", eof=True, log=("without a close message",))


_JUNK = bytes(range(7, 71))


@pytest.mark.parametrize(
    ("body", "log"),
    [
        pytest.param(
            b"CW\x01\x02" + bytes(range(200)), ("decryption failed",), id="reconnect-junk"
        ),
        pytest.param(b"CW\x01\x02" + bytes(96), ("low-order",), id="reconnect-low-order-key"),
        pytest.param(b"CW\x01\x02" + b"\x01" * 20, ("too short",), id="reconnect-short"),
        pytest.param(b"CW\x01\x01" + bytes(16) + _JUNK, ("never issued",), id="invite-unknown"),
        pytest.param(b"CW\x01\x03" + _JUNK, ("not offered",), id="nearby-not-offered"),
    ],
)
async def test_valid_preamble_garbage_noise(
    victim: Victim, body: bytes, log: tuple[str, ...]
) -> None:
    assert await hostile(victim, framing.encode_frame(body), eof=False, log=log) == b""


async def test_future_protocol_version(victim: Victim) -> None:
    """A newer peer is told which version is spoken here, and nothing else."""
    body = b"CW\x07\x02" + _JUNK
    reply = await hostile(
        victim, framing.encode_frame(body), eof=False, log=("unsupported protocol version 7",)
    )
    rejection = wire.Rejection(wire.RejectCode.VERSION)
    assert reply == framing.encode_frame(wire.encode_rejection(rejection))


async def test_garbage_noise_for_a_real_invite(victim: Victim) -> None:
    """The invite id is one Alice issued; the Noise message is junk. The invite survives."""
    _, invite = await victim.alice.invites.create_invite()
    body = b"CW\x01\x01" + invite.invite_id + os.urandom(48)
    assert await hostile(victim, framing.encode_frame(body), eof=False) == b""
    record = await victim.alice.db.run(victim.alice.repo.invite, invite.invite_id)
    assert record is not None and record.used_at is None


async def test_invite_with_wrong_secret(victim: Victim) -> None:
    """Someone who saw the invite id (it travels in clear) but not the secret."""
    _, invite = await victim.alice.invites.create_invite()
    mallory = Identity.generate()
    session = Session(
        initiator=True,
        static=KeyPair(mallory.static_private, mallory.static_public),
        hello=wire.Hello(mallory.ed25519_public, mallory.static_certificate, "Mallory", 0, ()),
        target=InviteTarget(
            invite.invite_id, os.urandom(32), invite.ed25519_public, invite.x25519_public
        ),
    )
    before = await snapshot(victim.alice)
    reader, writer, port = await connect(victim.alice)
    try:
        await send(writer, session.data_to_send())
        msg2 = await reader.read(65536)
        assert msg2  # the inviter answers a known invite id
        assert session.receive_data(msg2) == []  # it has the key the invite names
        await send(writer, session.data_to_send())  # message 3 under the wrong psk
        assert await read_until_closed(reader) == b""
    finally:
        await close_writer(writer)
    await assert_logged(victim, port, "decryption failed")
    assert await snapshot(victim.alice) == before
    assert_no_events(victim)
    await assert_still_works(victim)


async def test_reconnect_from_stranger(victim: Victim) -> None:
    payload = stranger_session(victim.alice).data_to_send()
    reply = await hostile(victim, payload, eof=False, log=("not a contact",))
    assert reply == b""  # silence: nothing tells a stranger that Alice is here


# --------------------------------------------------------------------------- contacts gone bad


async def test_contact_hello_with_changed_identity_key(victim: Victim, bob_keys: Stolen) -> None:
    """Bob's static key and psk, but the hello names a new identity key certifying it."""
    other = Identity.generate()
    hello = wire.Hello(
        other.ed25519_public,
        certify_static(other.signing_key, bob_keys.identity.static_public),
        "Bob",
        0,
        (),
    )
    payload = as_bob(victim, bob_keys, hello=hello).data_to_send()
    assert await hostile(victim, payload, eof=False, log=("not a contact",)) == b""
    assert not victim.alice.contacts.is_online(bob_keys.bob_id)


async def test_contact_identity_over_a_foreign_static_key(victim: Victim, bob_keys: Stolen) -> None:
    """Bob's hello (identity key and certificate) replayed over Mallory's static key."""
    mallory = KeyPair.generate()
    payload = as_bob(victim, bob_keys, static=mallory).data_to_send()
    assert await hostile(victim, payload, eof=False, log=("not certified",)) == b""


async def _transport_attack(
    v: Victim, bob: Stolen, build: Any, *, stored: int, log: tuple[str, ...]
) -> None:
    """Play Bob for real, then send what `build(frames)` makes of three chat frames."""
    before = await snapshot(v.alice, ignore_last_seen=True)
    session = as_bob(v, bob)
    reader, writer, port = await connect(v.alice)
    messages = [bob_chat(v, bob, n) for n in (1, 2, 3)]
    try:
        await establish(session, reader, writer)
        await wait_for(lambda: v.alice.contacts.is_online(bob.bob_id), timeout=3)
        frames = []
        for message in messages:
            session.send(message)
            frames.append(session.data_to_send())
        await send(writer, build(frames))
        await read_until_closed(reader)
    finally:
        await close_writer(writer)
    await assert_logged(v, port, *log)
    await wait_for(lambda: not v.alice.contacts.is_online(bob.bob_id), timeout=3)
    wanted = {m.msg_id for m in messages[:stored]}
    await wait_for(
        lambda: {e.message.msg_id for e in v.recorder.of(MessageAdded)} == wanted, timeout=3
    )
    await asyncio.sleep(0.1)

    after = await snapshot(v.alice, ignore_last_seen=True)
    assert after.contacts == before.contacts
    assert after.invites == before.invites
    assert after.message_count == before.message_count + stored
    bodies = [m.body for m in after.histories[bob.bob_id]]
    assert bodies == [m.body for m in before.histories[bob.bob_id]] + [
        m.body for m in messages[:stored]
    ]
    assert {e.message.msg_id for e in v.recorder.of(MessageAdded)} == wanted
    assert v.recorder.of(ContactAdded) == []
    # The handshake itself was genuine, so Bob was online for a moment; nobody else moved.
    assert v.recorder.of(PresenceChanged) == [
        PresenceChanged(bob.bob_id, online=True, route="lan"),
        PresenceChanged(bob.bob_id, online=False),
    ]
    v.recorder.events.clear()
    await assert_still_works(v)


async def test_replayed_transport_frame(victim: Victim, bob_keys: Stolen) -> None:
    await _transport_attack(
        victim, bob_keys, lambda f: f[0] + f[0] + f[1], stored=1, log=("failed authentication",)
    )


async def test_reordered_transport_frames(victim: Victim, bob_keys: Stolen) -> None:
    await _transport_attack(
        victim, bob_keys, lambda f: f[1] + f[0] + f[2], stored=0, log=("failed authentication",)
    )


async def test_tampered_transport_frame(victim: Victim, bob_keys: Stolen) -> None:
    def flip(frames: list[bytes]) -> bytes:
        bad = bytearray(frames[1])
        bad[len(bad) // 2] ^= 0x01
        return frames[0] + bytes(bad) + frames[2]

    await _transport_attack(victim, bob_keys, flip, stored=1, log=("failed authentication",))


async def test_frame_replayed_into_a_new_session(victim: Victim, bob_keys: Stolen) -> None:
    """A frame captured from one of Bob's sessions means nothing in the next one."""
    old = as_bob(victim, bob_keys)
    reader, writer, _ = await connect(victim.alice)
    await establish(old, reader, writer)
    old_message = bob_chat(victim, bob_keys, 7)
    old.send(old_message)
    old_frame = old.data_to_send()
    old.close("bye")
    await send(writer, old_frame + old.data_to_send())
    await read_until_closed(reader)
    await close_writer(writer)

    def old_stored() -> bool:
        return any(e.message.msg_id == old_message.msg_id for e in victim.recorder.of(MessageAdded))

    await wait_for(old_stored, timeout=3)
    await wait_for(lambda: not victim.alice.contacts.is_online(bob_keys.bob_id), timeout=3)
    victim.recorder.events.clear()
    await _transport_attack(
        victim, bob_keys, lambda f: old_frame + f[1], stored=0, log=("failed authentication",)
    )


# --------------------------------------------------------------------------- replays and slow peers


async def test_replayed_reconnect_handshake(victim: Victim, bob_keys: Stolen) -> None:
    # Capture a genuine first message from Bob (as a LAN eavesdropper would).
    genuine = as_bob(victim, bob_keys)
    captured = genuine.data_to_send()
    reader, writer, _ = await connect(victim.alice)
    await send(writer, captured)
    await establish(genuine, reader, writer)
    genuine.close("bye")
    await send(writer, genuine.data_to_send())
    await read_until_closed(reader)
    await close_writer(writer)
    await wait_for(lambda: not victim.alice.contacts.is_online(bob_keys.bob_id), timeout=3)
    victim.recorder.events.clear()

    # The eavesdropper replays it; it cannot read the answer nor send a single frame.
    before = await snapshot(victim.alice)
    reader, writer, port = await connect(victim.alice)
    await send(writer, captured)
    # Alice's answer (message 2) is out: her side of the handshake is done, and she must
    # still not call Bob online (awaited, not slept on).
    async with asyncio.timeout(CLOSE_WITHIN):
        reply = await reader.read(65536)
    assert reply  # message 2: only the real Bob could read it
    assert not victim.alice.contacts.is_online(bob_keys.bob_id)
    await send(writer, b"", eof=True)
    reply += await read_until_closed(reader)
    await close_writer(writer)
    await assert_logged(victim, port, "without a close message")
    await asyncio.sleep(0.05)
    assert_no_events(victim)
    assert await snapshot(victim.alice) == before  # no presence, no last_seen written
    await assert_still_works(victim)


async def test_slow_dribble_handshake_is_cut_off(make_peer, caplog) -> None:
    """One byte every 0.3 s never lets a per-read timeout fire; the handshake deadline must."""
    caplog.set_level(logging.INFO, logger="messenger")
    timing = Timing(handshake_timeout=1.0, keepalive_interval=1.0, dead_after=3.0)
    alice = await make_peer("alice", timing=timing)
    reader, writer, _ = await connect(alice)
    # A first message that claims 65535 bytes: 66 bytes never complete it, so only the
    # handshake deadline can end the connection while they trickle in (for 20 s).
    payload = b"\xff\xff" + os.urandom(64)
    closed = False
    try:
        for byte in payload:
            await send(writer, bytes([byte]))
            try:
                async with asyncio.timeout(0.3):
                    if await reader.read(1) == b"":
                        closed = True
                        break
            except TimeoutError:
                pass
            except ConnectionResetError:
                closed = True
                break
    finally:
        await close_writer(writer)
    assert closed, "the service kept reading the dribble to its end"

    # Which timer cut it off is in the log (no wall-clock threshold here).
    def messages() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name.startswith("messenger")]

    await wait_for(lambda: any("closed" in m for m in messages()), timeout=CLOSE_WITHIN)
    assert any("closed" in m and "handshake timed out" in m for m in messages()), messages()

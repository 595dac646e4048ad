"""Downloads with FileManager built alone, wired to small fakes of its ports. Chunks
travel over a real loopback TCP connection (the bulk channel) into a real store; only the
chat session that carries offers and requests is a fake pipe."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from messenger.events import MessageAdded, TransferChanged
from messenger.files.manager import FileManager
from messenger.net.transport import Timing
from messenger.protocol import wire
from messenger.records import GroupId, GroupMessageRecord, TransferState

from .fake_ports import (
    Events,
    FakeConn,
    FakeLinks,
    InlineDb,
    Person,
    befriend,
    make_person,
    until,
)


class NoGroups:
    """The groups port of a peer in no group."""

    def is_active(self, group_id: bytes) -> bool:
        return False

    def member_contacts(self, group_id: bytes) -> set[str]:
        return set()

    async def send_text(
        self, group_id: GroupId, body: str, *, attachment: wire.GroupAttachment | None = None
    ) -> GroupMessageRecord:
        raise AssertionError("no group here")

    async def attachment_links(self) -> list[tuple[bytes, bytes, bytes, bool, bytes]]:
        return []


@dataclasses.dataclass
class Peer:
    person: Person
    files: FileManager
    links: FakeLinks
    events: Events
    server: asyncio.Server


async def build(person: Person, folder: Path) -> Peer:
    links, events = FakeLinks(), Events()
    files = FileManager(
        folder=folder,
        db=InlineDb(),
        repo=person.repo,
        emit=events,
        clock=lambda: 1_700_000_000.0,
        links=links,
        contacts=person.contacts,
        groups=NoGroups(),
        timing=Timing(),
    )
    await files.load()

    async def inbound(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await files.peek_inbound(reader, writer)  # a bulk preamble is served
        if first is not None:
            writer.close()  # this peer has no chat sessions on its listener

    server = await asyncio.start_server(inbound, "127.0.0.1", 0)
    return Peer(person, files, links, events, server)


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Peer, Peer]]:
    ann, ben = make_person(tmp_path / "ann", "ann"), make_person(tmp_path / "ben", "ben")
    befriend(ann, ben)
    peers = (await build(ann, tmp_path / "ann"), await build(ben, tmp_path / "ben"))
    yield peers
    for peer in peers:
        for conn in peer.links.conns.values():
            await conn.aclose()
        await peer.files.aclose()
        peer.server.close()
        await peer.server.wait_closed()
        peer.person.repo.close()


def connect(a: Peer, b: Peer) -> None:
    """A live session: each end's address is the other's bulk listener."""
    a_end = FakeConn(b.person.id, peer_address=("127.0.0.1", b.server.sockets[0].getsockname()[1]))
    b_end = FakeConn(a.person.id, peer_address=("127.0.0.1", a.server.sockets[0].getsockname()[1]))
    a_end.other, b_end.other = b_end, a_end

    async def to_a(conn: FakeConn, message: wire.WireMessage) -> None:
        await a.files.on_message(b.person.id, conn, message)  # type: ignore[arg-type]

    async def to_b(conn: FakeConn, message: wire.WireMessage) -> None:
        await b.files.on_message(a.person.id, conn, message)  # type: ignore[arg-type]

    a_end.handler, b_end.handler = to_a, to_b
    a.links.conns[b.person.id], b.links.conns[a.person.id] = a_end, b_end
    a.files.contact_online(b.person.id)
    b.files.contact_online(a.person.id)


def state(peer: Peer, transfer_id: str) -> TransferState:
    return peer.files.find(transfer_id).state


async def test_an_accepted_offer_downloads_over_the_bulk_channel(pair, tmp_path: Path) -> None:
    ann, ben = pair
    data = os.urandom(3 * 1024 * 1024 + 5)
    source = tmp_path / "notes.bin"
    source.write_bytes(data)
    connect(ann, ben)
    sent = await ann.files.send_file(ben.person.id, source)
    assert sent.state is TransferState.COMPLETE and sent.outgoing
    await until(lambda: any(r.id == sent.id for r in ben.files.transfers()))
    assert state(ben, sent.id) is TransferState.OFFERED  # not an image: asked first
    assert len(ben.events.of(MessageAdded)) == 1  # the offer is a message in the chat
    await ben.files.accept(sent.id)
    await until(lambda: state(ben, sent.id) is TransferState.COMPLETE)
    out = await ben.files.save_as(sent.id, tmp_path / "out.bin")
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert ben.files.find(sent.id).sources == (ann.person.id,)
    # ann hears that ben downloaded it (served bytes counted in its record).
    await until(lambda: any("sent" in status for _, status in ann.files.find(sent.id).peers))


async def test_a_download_waits_for_its_source_and_goes_on_when_it_is_back(
    pair, tmp_path: Path
) -> None:
    ann, ben = pair
    source = tmp_path / "a.bin"
    source.write_bytes(os.urandom(200_000))
    connect(ann, ben)
    sent = await ann.files.send_file(ben.person.id, source)
    await until(lambda: any(r.id == sent.id for r in ben.files.transfers()))
    # ann goes offline before ben accepts.
    for peer in (ann, ben):
        for conn in peer.links.conns.values():
            await conn.aclose()
        peer.links.conns.clear()
    await ben.files.accept(sent.id)
    await until(lambda: ben.files.find(sent.id).error == "waiting for a source to come online")
    assert state(ben, sent.id) is TransferState.DOWNLOADING
    changed = len(ben.events.of(TransferChanged))
    connect(ann, ben)  # back: contact_online wakes the download
    await until(lambda: state(ben, sent.id) is TransferState.COMPLETE)
    assert len(ben.events.of(TransferChanged)) > changed
    assert ben.files.find(sent.id).have_bytes == 200_000


async def test_an_offer_for_another_conversation_is_refused(pair) -> None:
    ann, ben = pair
    connect(ann, ben)
    conn = ann.links.conns[ben.person.id]
    conn.send(
        wire.FileOffer(
            msg_id=os.urandom(16),
            conversation=os.urandom(16),  # not ann's and ben's
            seq=1,
            lamport=1,
            sent_at_ms=1,
            root=os.urandom(32),
            name="x.bin",
            mime="application/octet-stream",
            size=10,
            chunk_size=1 << 20,
            key=os.urandom(32),
        )
    )
    await conn.drain()
    assert ben.files.transfers() == []
    answers = ben.links.conns[ann.person.id].sent
    assert isinstance(answers[0], wire.FileControl)
    assert answers[0].action is wire.FileAction.REJECT
    assert "unknown conversation" in answers[0].reason

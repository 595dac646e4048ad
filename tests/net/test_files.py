"""File transfer between real peers on 127.0.0.1 (docs/protocol.md §17): real sockets,
real SQLCipher, real attachment stores on disk."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from messenger import FileError
from messenger.events import FileOfferRejected, MessageAdded, TransferChanged
from messenger.files.chunks import DEFAULT_CHUNK_SIZE, TAG_LEN, stored_offset
from messenger.protocol import wire
from messenger.records import TransferState
from messenger.service import PeerService

from .conftest import Recorder, befriend, wait_for

MiB = 1 << 20


def random_file(path: Path, size: int) -> Path:
    with open(path, "wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MiB))
            out.write(block)
            left -= len(block)
    return path


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MiB):
            h.update(block)
    return h.hexdigest()


def offered(service: PeerService):
    transfers = service.files.transfers()
    return transfers[0] if transfers else None


async def deliver(sender: PeerService, receiver: PeerService, path: Path) -> str:
    """sender offers `path` to receiver; returns the transfer id once the offer arrived."""
    contact = receiver.contact_id
    record = await sender.files.send_file(contact, path)
    await wait_for(lambda: any(t.id == record.id for t in receiver.files.transfers()))
    return record.id


async def complete(service: PeerService, transfer_id: str, timeout: float = 60.0) -> None:
    last: list = []

    def done() -> bool:
        t = service.files.find(transfer_id)
        last[:] = [t]
        assert t.state not in (TransferState.FAILED, TransferState.CANCELLED), t.error
        return t.state is TransferState.COMPLETE

    try:
        await wait_for(done, timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"not complete: {last}") from None


async def test_100_mib_arrives_identical_and_the_store_holds_no_plaintext(make_peer, tmp_path):
    alice, bob = await make_peer("alice"), await make_peer("bob")
    await befriend(alice, bob)
    events = Recorder(bob)
    source = random_file(tmp_path / "big.bin", 100 * MiB + 12345)
    tid = await deliver(alice, bob, source)
    offer = bob.files.find(tid)
    assert offer.state is TransferState.OFFERED  # not an image: waits for the user
    assert offer.name == "big.bin" and offer.size == source.stat().st_size
    # The offer is a message in the conversation, linked to the transfer.
    (message,) = [e.message for e in events.of(MessageAdded)]
    assert "big.bin" in message.body and bob.files.for_message(message.msg_id).id == tid

    await bob.files.accept(tid)
    await complete(bob, tid)
    saved = await bob.files.save_as(tid, tmp_path / "saved.bin")
    assert digest(saved) == digest(source)
    assert bob.files.find(tid).fetched_chunks == -(-source.stat().st_size // DEFAULT_CHUNK_SIZE)
    assert any(e.transfer.state is TransferState.DOWNLOADING for e in events.of(TransferChanged))

    # Both stores hold the ciphertext only: no 64-byte run of the plaintext is in them.
    plain = source.read_bytes()
    samples = [plain[i : i + 64] for i in range(0, len(plain), len(plain) // 97)]
    for store_file in (
        alice.files.store.path(bytes.fromhex(tid)),
        bob.files.store.path(bytes.fromhex(tid)),
    ):
        stored = store_file.read_bytes()
        # 100 full chunks in their slots, then the last (12345 bytes + tag) ends the file.
        assert len(stored) == stored_offset(DEFAULT_CHUNK_SIZE, 100) + 12345 + TAG_LEN
        assert not any(s in stored for s in samples)


async def _three_holders(make_peer, tmp_path, size: int):
    """alice sends a file to bob and carol; then all three offer it to dave."""
    alice, bob, carol, dave = [await make_peer(n) for n in ("alice", "bob", "carol", "dave")]
    for a, b in ((alice, bob), (alice, carol), (alice, dave), (bob, dave), (carol, dave)):
        await befriend(a, b)
    source = random_file(tmp_path / "shared.bin", size)
    tid = await deliver(alice, bob, source)
    await alice.files.forward(tid, carol.contact_id)
    await wait_for(lambda: offered(carol) is not None)
    for holder in (bob, carol):
        await holder.files.accept(tid)
        await complete(holder, tid)
    for holder in (alice, bob, carol):
        await holder.files.forward(tid, dave.contact_id)
    await wait_for(lambda: offered(dave) is not None and len(offered(dave).sources) == 3)
    return (alice, bob, carol, dave), source, tid


async def test_three_sources_serve_one_download(make_peer, tmp_path):
    (alice, bob, carol, dave), source, tid = await _three_holders(make_peer, tmp_path, 24 * MiB)
    # Slow (6 s for the file) until each source has served a chunk, then full speed: the
    # three join in however busy the machine is.
    await dave.files.configure(rate_limit=4 * MiB)
    await dave.files.accept(tid)
    await wait_for(
        lambda: len(dict(dave.files.find(tid).chunks_by_source)) == 3, what="all three serving"
    )
    await dave.files.configure(rate_limit=0)
    await complete(dave, tid)
    used = dict(dave.files.find(tid).chunks_by_source)
    assert set(used) == {alice.contact_id, bob.contact_id, carol.contact_id}
    assert all(n > 0 for n in used.values()) and sum(used.values()) == 24
    assert digest(await dave.files.save_as(tid, tmp_path / "out.bin")) == digest(source)
    # The message appears in each of the three conversations at dave's end.
    assert set(dave.files.find(tid).contacts) == {
        alice.contact_id,
        bob.contact_id,
        carol.contact_id,
    }


async def test_a_source_serving_corrupt_chunks_is_dropped(make_peer, tmp_path):
    (_alice, _bob, carol, dave), source, tid = await _three_holders(make_peer, tmp_path, 16 * MiB)
    # Damage every chunk in carol's store: whatever she serves is wrong.
    store_file = carol.files.store.path(bytes.fromhex(tid))
    data = bytearray(store_file.read_bytes())
    for offset in range(100, len(data), stored_offset(DEFAULT_CHUNK_SIZE, 1)):
        data[offset] ^= 0x55
    store_file.write_bytes(data)
    # Slow until carol has been caught, then full speed (however busy the machine, she is
    # asked for a chunk before the others have served the whole file).
    await dave.files.configure(rate_limit=4 * MiB)
    await dave.files.accept(tid)
    await wait_for(lambda: dave.files.find(tid).dropped_sources != (), what="carol dropped")
    await dave.files.configure(rate_limit=0)
    await complete(dave, tid)
    record = dave.files.find(tid)
    assert record.dropped_sources == (carol.contact_id,)
    assert carol.contact_id not in dict(record.chunks_by_source)
    assert sum(dict(record.chunks_by_source).values()) == 16
    assert digest(await dave.files.save_as(tid, tmp_path / "out.bin")) == digest(source)


def _offer(conn, service_from: PeerService, contact_id: str, **fields) -> wire.FileOffer:
    values = {
        "msg_id": os.urandom(16),
        "conversation": service_from.contact_keys.conversation(contact_id),
        "seq": 1,
        "lamport": 1,
        "sent_at_ms": 1,
        "root": os.urandom(32),
        "name": "photo.png",
        "mime": "image/png",
        "size": 1000,
        "chunk_size": DEFAULT_CHUNK_SIZE,
        "key": os.urandom(32),
    }
    values.update(fields)
    message = wire.FileOffer(**values)
    conn.send(message)
    return message


HOSTILE = [
    ({"name": "../../.bashrc"}, "path separator"),
    ({"name": "..\\..\\boot.ini"}, "path separator"),
    ({"name": "CON.txt"}, "reserved device name"),
    ({"name": "nul"}, "reserved device name"),
    ({"name": "evil\x00.png"}, "forbidden characters"),
    ({"name": "gnp.exe\u202e.png"}, "forbidden characters"),
    ({"name": ".."}, "not a file name"),
    ({"name": ""}, "empty"),
    ({"size": -1}, "negative"),
    ({"size": 1 << 62}, "limit"),
    ({"chunk_size": 1000}, "chunk size"),
    ({"mime": "image/png; evil"}, "media type"),
]


async def test_hostile_offers_are_refused_with_a_reason(make_peer, tmp_path):
    alice, bob = await make_peer("alice"), await make_peer("bob")
    await befriend(alice, bob)
    sent, got = Recorder(alice), Recorder(bob)
    conn = alice.links.connection(bob.contact_id)
    for fields, _ in HOSTILE:
        _offer(conn, alice, bob.contact_id, **fields)
    await wait_for(lambda: len(sent.of(FileOfferRejected)) == len(HOSTILE))
    reasons = [e.reason for e in sent.of(FileOfferRejected)]
    for (fields, expected), reason in zip(HOSTILE, reasons, strict=True):
        assert expected in reason, (fields, reason)
    assert len(got.of(FileOfferRejected)) == len(HOSTILE)
    assert bob.files.transfers() == []
    assert not bob.files.store.root_dir.exists() or not any(bob.files.store.root_dir.iterdir())
    assert alice.contacts.is_online(bob.contact_id)  # refused offers, not a broken session


async def test_a_manifest_that_does_not_match_the_offered_size_fails_clearly(make_peer, tmp_path):
    alice, bob, carol = await make_peer("alice"), await make_peer("bob"), await make_peer("carol")
    await befriend(alice, bob)
    await befriend(alice, carol)
    sent = Recorder(alice)
    # alice holds a real 3 MiB file (sent to carol) ...
    real = await alice.files.send_file(carol.contact_id, random_file(tmp_path / "a.bin", 3 * MiB))
    key = alice.files.file_key(real.id)
    # ... and offers its root to bob claiming 5 MiB: the manifest she serves cannot match.
    fields = {"root": bytes.fromhex(real.id), "mime": "application/octet-stream", "key": key}
    _offer(
        alice.links.connection(bob.contact_id),
        alice,
        bob.contact_id,
        name="x.bin",
        size=5 * MiB,
        **fields,
    )
    await wait_for(lambda: offered(bob) is not None)
    await bob.files.accept(real.id)
    await wait_for(lambda: bob.files.find(real.id).state is TransferState.FAILED)
    error = bob.files.find(real.id).error or ""
    assert "manifest describes 3145728 bytes" in error and "5242880" in error, error
    await wait_for(lambda: len(sent.of(FileOfferRejected)) == 1)
    assert "manifest" in sent.of(FileOfferRejected)[0].reason
    # An offer of a root bob knows, with another size or key, is refused at once.
    _offer(
        alice.links.connection(bob.contact_id),
        alice,
        bob.contact_id,
        name="y.bin",
        size=7,
        **fields,
    )
    await wait_for(lambda: len(sent.of(FileOfferRejected)) == 2)
    assert "conflicts" in sent.of(FileOfferRejected)[1].reason


async def test_pause_resume_and_cancel_from_either_side(make_peer, tmp_path):
    alice, bob = await make_peer("alice"), await make_peer("bob")
    await befriend(alice, bob)
    source = random_file(tmp_path / "a.bin", 40 * MiB)
    tid = await deliver(alice, bob, source)
    await bob.files.configure(rate_limit=10 * MiB)
    await bob.files.accept(tid)
    await wait_for(lambda: bob.files.find(tid).have_bytes > 5 * MiB)

    # The receiver pauses: nothing more arrives; the sender sees it.
    await bob.files.pause(tid)
    held = bob.files.find(tid).have_bytes
    assert bob.files.find(tid).state is TransferState.PAUSED
    await wait_for(
        lambda: "paused by them" in dict(alice.files.find(tid).peers).get(bob.contact_id, "")
    )
    await bob.files.resume(tid)
    await wait_for(lambda: bob.files.find(tid).have_bytes > held + 2 * MiB)

    # The sender pauses: the receiver waits, saying why; then resumes.
    await alice.files.pause(tid)
    await wait_for(lambda: bob.files.find(tid).error == "paused by the sender")
    stalled = bob.files.find(tid).have_bytes
    await wait_for(lambda: bob.files.find(tid).speed < 1)
    assert bob.files.find(tid).have_bytes - stalled <= 8 * MiB  # at most the window in flight
    await alice.files.resume(tid)
    await bob.files.configure(rate_limit=0)
    await complete(bob, tid)
    assert digest(await bob.files.save_as(tid, tmp_path / "out.bin")) == digest(source)

    # A second file: the receiver cancels, its partial copy is deleted.
    tid2 = await deliver(alice, bob, random_file(tmp_path / "b.bin", 30 * MiB))
    await bob.files.configure(rate_limit=5 * MiB)
    await bob.files.accept(tid2)
    await wait_for(lambda: bob.files.find(tid2).have_bytes > 0)
    await bob.files.cancel(tid2)
    assert bob.files.find(tid2).state is TransferState.CANCELLED
    assert not bob.files.store.path(bytes.fromhex(tid2)).exists()
    await wait_for(
        lambda: "cancelled by them" in dict(alice.files.find(tid2).peers).get(bob.contact_id, "")
    )

    # A third: the sender withdraws it mid-way.
    tid3 = await deliver(alice, bob, random_file(tmp_path / "c.bin", 30 * MiB))
    await bob.files.accept(tid3)
    await wait_for(lambda: bob.files.find(tid3).have_bytes > 0)
    await alice.files.cancel(tid3)
    await wait_for(lambda: bob.files.find(tid3).state is TransferState.CANCELLED)
    assert bob.files.find(tid3).error == "cancelled by the sender"


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
async def test_a_full_disk_fails_clearly_and_keeps_the_partial_for_resume(make_peer, tmp_path):
    """The disk fills while downloading (something else wrote to it after the download
    started with room enough): the download fails plainly, the partial is kept, resume."""
    alice, bob = await make_peer("alice"), await make_peer("bob")
    await befriend(alice, bob)
    source = random_file(tmp_path / "a.bin", 30 * MiB)
    tid = await deliver(alice, bob, source)
    attachments = bob.files.store.root_dir
    attachments.mkdir(mode=0o700, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(attachments)], check=True
    )
    filler = attachments / "filler"
    try:
        await bob.files.configure(rate_limit=20 * MiB)  # the filler lands before the end
        await bob.files.accept(tid)  # 30 MiB + a 2 MiB margin fit in 40 MiB
        with open(filler, "wb") as out:  # leave about 12 MiB for the download
            out.write(b"\0" * (40 * MiB - 12 * MiB - _used(attachments)))
        await wait_for(lambda: bob.files.find(tid).state is TransferState.FAILED, timeout=30)
        failed = bob.files.find(tid)
        assert "disk is full" in (failed.error or "")
        held = failed.have_bytes // MiB
        assert 5 <= held < 30 and bob.files.store.path(bytes.fromhex(tid)).exists()
        filler.unlink()
        await bob.files.configure(rate_limit=0)
        await bob.files.accept(tid)  # resume
        await complete(bob, tid)
        assert bob.files.find(tid).fetched_chunks == 30 - held
        assert digest(await bob.files.save_as(tid, tmp_path / "out.bin")) == digest(source)
    finally:
        await bob.aclose()
        subprocess.run(["umount", "-l", str(attachments)], check=False)


def _used(folder: Path) -> int:
    usage = shutil.disk_usage(folder)
    return usage.total - usage.free


async def test_a_download_that_cannot_fit_is_refused_before_it_starts(make_peer, tmp_path):
    """Free space below the file's size plus the database's margin: refused with a clear
    FileError, nothing written, the offer still there to accept once there is room."""
    alice, bob = await make_peer("alice"), await make_peer("bob")
    await befriend(alice, bob)
    source = random_file(tmp_path / "a.bin", 30 * MiB)
    tid = await deliver(alice, bob, source)
    attachments = bob.files.store.root_dir
    attachments.mkdir(mode=0o700, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=31m", "tmpfs", str(attachments)], check=True
    )
    try:
        with pytest.raises(FileError, match=r"needs 30\.0 MiB more.*free some space"):
            await bob.files.accept(tid)  # 30 MiB fits, but not with the margin
        assert bob.files.find(tid).state is TransferState.OFFERED
        assert not bob.files.store.path(bytes.fromhex(tid)).exists()
        subprocess.run(["mount", "-o", "remount,size=64m", str(attachments)], check=True)
        await bob.files.accept(tid)
        await complete(bob, tid)
    finally:
        await bob.aclose()
        subprocess.run(["umount", "-l", str(attachments)], check=False)


async def test_a_file_stored_by_an_earlier_version_is_moved_to_slots_on_start(make_peer, tmp_path):
    alice, bob = await make_peer("alice"), await make_peer("bob")
    await befriend(alice, bob)
    source = random_file(tmp_path / "old.bin", 3 * MiB + 777)
    tid = await deliver(alice, bob, source)
    await bob.files.accept(tid)
    await complete(bob, tid)
    store, root = bob.files.store, bytes.fromhex(tid)
    await bob.aclose()
    # Rewrite bob's copy as earlier versions kept it: chunks packed at i * (chunk + 16).
    slots = store.path(root).read_bytes()
    sizes = [DEFAULT_CHUNK_SIZE + TAG_LEN] * 3 + [777 + TAG_LEN]
    packed = b"".join(
        slots[stored_offset(DEFAULT_CHUNK_SIZE, i) :][:n] for i, n in enumerate(sizes)
    )
    store.path(root).unlink()
    store.legacy_path(root).write_bytes(packed)

    bob = await make_peer("bob", reopen=True)
    assert not bob.files.store.legacy_path(root).exists()
    assert bob.files.find(tid).state is TransferState.COMPLETE
    assert digest(await bob.files.save_as(tid, tmp_path / "out.bin")) == digest(source)
